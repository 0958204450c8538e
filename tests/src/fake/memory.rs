//! Memory stores (control-plane spec §10.6, tools spec §10).
//!
//! Endpoints (all under `/v1/memory_stores/{store}/memories`, all requiring
//! `anthropic-beta: agent-memory-2026-07-22` exactly and a sessions token):
//!
//! | Call | Answer |
//! |---|---|
//! | `GET …/memories?view&limit&page&path_prefix&depth` | `{"data":[memory…],"next_page":cursor\|null}` sorted by path |
//! | `GET …/memories/{id}?view` | one memory |
//! | `POST …/memories {"path","content"}` | 200 + the new memory (`view=full`) |
//! | `POST …/memories/{id} {"content","precondition"?,"path"?}` | 200 + the updated memory (`view=full`) |
//! | `DELETE …/memories/{id}?expected_content_sha256` | 200 `{"type":"memory_deleted","id"}` |
//!
//! Memory object: `{"type":"memory","id":"mem_…","memory_store_id","path",
//! "content" (null with view=basic),"content_sha256" (lowercase hex SHA-256 of
//! the UTF-8 content),"content_size_bytes","memory_version_id":"memver_…",
//! "created_at"}`. Every successful write (create, update, test-side
//! [`put_memory`]) assigns a new `memory_version_id`.
//!
//! Decisions where the spec is silent (tests may rely on them):
//! * **Credentials**: the environment key is refused with
//!   `403 permission_error` (it is a valid credential, just not for this
//!   family). Any sessions token issued by the fake is accepted for any store
//!   (tokens are not scoped to the session's resources), except that a write
//!   (create/update/delete) with the token of a session whose `resources` list
//!   the store with `access: "read_only"` is refused with `403
//!   permission_error` — a runner must never push to a read-only store.
//! * **Unknown store** ⇒ `404 not_found_error` on every endpoint.
//! * **Paging**: `limit` defaults to 20 and must be 1..=100 (anything else ⇒
//!   400, so a runner sending the event listing's 1000 notices). The cursor is
//!   opaque (base64url of the last path returned); the next page holds the
//!   paths sorted after it, so creations/deletions between pages neither
//!   repeat nor skip the other memories. `next_page` is `null` exactly when no
//!   matching memory follows (no empty last page).
//! * **`view`**: `basic` | `full`, anything else ⇒ 400. Absent ⇒ `basic` on
//!   the listing and `full` on retrieve. Create/update answers are always full.
//! * **`path_prefix`** is a plain string prefix of `path` (`/a` matches `/a/x`
//!   and `/ab`). **`depth`** is validated as an integer and otherwise ignored
//!   (the fake never returns `memory_prefix` items).
//! * **Paths**: must start with `/`, have no empty, `.` or `..` component
//!   (so no trailing `/` and no `//`), no NUL/control characters, at most
//!   1024 bytes ⇒ else 400. The marker name `.anthropic-memory-store` is an
//!   ordinary path for the server.
//! * **Size**: content longer than 102 400 bytes (UTF-8) ⇒ `413
//!   request_too_large` on create and update. A non-string `content` ⇒ 400.
//! * **Create** on an existing path ⇒ `409 conflict_error`.
//! * **Update**: `precondition` is optional; when present it must be
//!   `{"type":"content_sha256","content_sha256":<hex>}` (other shapes ⇒ 400);
//!   the sha is compared case-insensitively; mismatch ⇒ `409 conflict_error`.
//!   An optional `path` moves the memory (409 if another memory has it). An
//!   update with unchanged content still makes a new version. Unknown id ⇒ 404.
//! * **Delete** answers `200 {"type":"memory_deleted","id"}`; an absent or
//!   empty `expected_content_sha256` deletes unconditionally; mismatch ⇒ 409;
//!   unknown id ⇒ 404.
//! * Ids are never reused: a path deleted and created again gets a new `mem_…`.
//!
//! [`put_memory`]: super::FakeControlPlane::put_memory

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::errors::ApiError;
use super::util::{new_id, rfc3339_secs};

/// Server-side cap on a memory's content (tools spec §10.8).
pub const MAX_MEMORY_BYTES: usize = 102_400;
const MAX_PATH_BYTES: usize = 1024;
const CURSOR_PREFIX: &str = "memories:";

/// Lowercase hex SHA-256 of the UTF-8 bytes of `content` (the memory's
/// `content_sha256`).
pub fn content_sha256(content: &str) -> String {
    Sha256::digest(content.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `view` query parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum View {
    Basic,
    Full,
}

impl View {
    pub(crate) fn parse(v: Option<&str>, default: View) -> Result<View, ApiError> {
        match v {
            None => Ok(default),
            Some("basic") => Ok(View::Basic),
            Some("full") => Ok(View::Full),
            Some(o) => Err(ApiError::invalid(format!(
                "view must be basic or full, got {o:?}"
            ))),
        }
    }
}

pub(crate) struct MemoryRec {
    pub(crate) id: String,
    pub(crate) path: String,
    pub(crate) content: String,
    pub(crate) sha: String,
    pub(crate) version_id: String,
    pub(crate) created_at: SystemTime,
}

impl MemoryRec {
    fn new(path: String, content: String) -> Self {
        MemoryRec {
            id: new_id("mem"),
            path,
            sha: content_sha256(&content),
            content,
            version_id: new_id("memver"),
            created_at: SystemTime::now(),
        }
    }

    fn set_content(&mut self, content: String) {
        self.sha = content_sha256(&content);
        self.content = content;
        self.version_id = new_id("memver");
    }

    fn to_json(&self, store_id: &str, view: View) -> Value {
        json!({
            "type": "memory",
            "id": self.id,
            "memory_store_id": store_id,
            "path": self.path,
            "content": match view {
                View::Full => Value::String(self.content.clone()),
                View::Basic => Value::Null,
            },
            "content_sha256": self.sha,
            "content_size_bytes": self.content.len(),
            "memory_version_id": self.version_id,
            "created_at": rfc3339_secs(self.created_at),
        })
    }
}

pub(crate) struct MemoryStore {
    pub(crate) id: String,
    pub(crate) name: String,
    /// Path → memory.
    pub(crate) memories: BTreeMap<String, MemoryRec>,
}

impl MemoryStore {
    fn path_of(&self, memory_id: &str) -> Result<String, ApiError> {
        self.memories
            .values()
            .find(|m| m.id == memory_id)
            .map(|m| m.path.clone())
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "memory {memory_id} not found in memory store {}",
                    self.id
                ))
            })
    }
}

/// Query of the listing, parsed by the HTTP layer.
pub(crate) struct ListParams<'a> {
    pub(crate) view: View,
    pub(crate) limit: usize,
    pub(crate) page: Option<&'a str>,
    pub(crate) path_prefix: Option<&'a str>,
}

/// All memory stores.
#[derive(Default)]
pub(crate) struct MemoryStores {
    pub(crate) stores: HashMap<String, MemoryStore>,
}

/// Validates a memory path (see the module docs).
pub(crate) fn validate_path(path: &str) -> Result<(), ApiError> {
    let bad = |why: &str| {
        Err(ApiError::invalid(format!(
            "invalid memory path {path:?}: {why}"
        )))
    };
    let Some(rest) = path.strip_prefix('/') else {
        return bad("must start with '/'");
    };
    if path.len() > MAX_PATH_BYTES {
        return bad("longer than 1024 bytes");
    }
    if path.chars().any(char::is_control) {
        return bad("contains a control character");
    }
    for comp in rest.split('/') {
        match comp {
            "" => return bad("empty path component"),
            "." | ".." => return bad("'.' and '..' components are not allowed"),
            _ => {}
        }
    }
    Ok(())
}

fn content_field(body: &Value, required: bool) -> Result<Option<String>, ApiError> {
    match body.get("content") {
        None | Some(Value::Null) if !required => Ok(None),
        Some(Value::String(s)) => {
            if s.len() > MAX_MEMORY_BYTES {
                return Err(ApiError::new(
                    413,
                    "request_too_large",
                    format!(
                        "memory content is {} bytes; the maximum is {MAX_MEMORY_BYTES}",
                        s.len()
                    ),
                ));
            }
            Ok(Some(s.clone()))
        }
        _ => Err(ApiError::invalid("content must be a string")),
    }
}

fn sha_matches(expected: &str, actual: &str) -> bool {
    expected.eq_ignore_ascii_case(actual)
}

impl MemoryStores {
    pub(crate) fn create_store(&mut self, name: &str) -> String {
        let id = new_id("memstore");
        self.stores.insert(
            id.clone(),
            MemoryStore {
                id: id.clone(),
                name: name.to_string(),
                memories: BTreeMap::new(),
            },
        );
        id
    }

    pub(crate) fn store(&self, id: &str) -> Result<&MemoryStore, ApiError> {
        self.stores
            .get(id)
            .ok_or_else(|| ApiError::not_found(format!("memory store {id} not found")))
    }

    pub(crate) fn store_mut(&mut self, id: &str) -> Result<&mut MemoryStore, ApiError> {
        self.stores
            .get_mut(id)
            .ok_or_else(|| ApiError::not_found(format!("memory store {id} not found")))
    }

    /// `GET …/memories`.
    pub(crate) fn list(&self, store_id: &str, p: &ListParams<'_>) -> Result<Value, ApiError> {
        let store = self.store(store_id)?;
        let after = p
            .page
            .filter(|c| !c.is_empty())
            .map(|c| {
                URL_SAFE_NO_PAD
                    .decode(c)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|s| s.strip_prefix(CURSOR_PREFIX).map(str::to_string))
                    .ok_or_else(|| ApiError::invalid("invalid page cursor"))
            })
            .transpose()?;
        let prefix = p.path_prefix.unwrap_or("");
        let mut matching = store
            .memories
            .values()
            .filter(|m| after.as_deref().is_none_or(|a| m.path.as_str() > a))
            .filter(|m| m.path.starts_with(prefix));
        let data: Vec<Value> = matching
            .by_ref()
            .take(p.limit)
            .map(|m| m.to_json(store_id, p.view))
            .collect();
        let next = match matching.next() {
            Some(_) => {
                let last = data.last().and_then(|m| m["path"].as_str()).unwrap_or("");
                Value::String(URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{last}")))
            }
            None => Value::Null,
        };
        Ok(json!({ "data": data, "next_page": next }))
    }

    /// `GET …/memories/{id}`.
    pub(crate) fn retrieve(
        &self,
        store_id: &str,
        memory_id: &str,
        view: View,
    ) -> Result<Value, ApiError> {
        let store = self.store(store_id)?;
        let path = store.path_of(memory_id)?;
        Ok(store.memories[&path].to_json(store_id, view))
    }

    /// `POST …/memories`.
    pub(crate) fn create(&mut self, store_id: &str, body: &Value) -> Result<Value, ApiError> {
        let store = self.store_mut(store_id)?;
        let path = body
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::invalid("path is required and must be a string"))?
            .to_string();
        validate_path(&path)?;
        let content = content_field(body, true)?.expect("required");
        if store.memories.contains_key(&path) {
            return Err(ApiError::conflict(format!(
                "a memory already exists at path {path}"
            )));
        }
        let rec = MemoryRec::new(path.clone(), content);
        let out = rec.to_json(store_id, View::Full);
        store.memories.insert(path, rec);
        Ok(out)
    }

    /// `POST …/memories/{id}`.
    pub(crate) fn update(
        &mut self,
        store_id: &str,
        memory_id: &str,
        body: &Value,
    ) -> Result<Value, ApiError> {
        if !body.is_object() {
            return Err(ApiError::invalid("request body must be a JSON object"));
        }
        let store = self.store_mut(store_id)?;
        let path = store.path_of(memory_id)?;
        let content = content_field(body, false)?;
        let new_path = match body.get("path") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) => {
                validate_path(p)?;
                Some(p.clone()).filter(|p| *p != path)
            }
            Some(_) => return Err(ApiError::invalid("path must be a string")),
        };
        if content.is_none() && new_path.is_none() && body.get("path").is_none() {
            return Err(ApiError::invalid("content is required"));
        }
        let expected = match body.get("precondition") {
            None | Some(Value::Null) => None,
            Some(pre) => {
                if pre.get("type").and_then(Value::as_str) != Some("content_sha256") {
                    return Err(ApiError::invalid(
                        "precondition.type must be \"content_sha256\"",
                    ));
                }
                Some(
                    pre.get("content_sha256")
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            ApiError::invalid("precondition.content_sha256 must be a string")
                        })?
                        .to_string(),
                )
            }
        };
        let current = &store.memories[&path];
        if let Some(exp) = &expected
            && !sha_matches(exp, &current.sha)
        {
            return Err(ApiError::conflict(format!(
                "precondition failed: memory {memory_id} has content_sha256 {}, not {exp}",
                current.sha
            )));
        }
        if let Some(np) = &new_path
            && store.memories.contains_key(np)
        {
            return Err(ApiError::conflict(format!(
                "a memory already exists at path {np}"
            )));
        }
        let mut rec = store.memories.remove(&path).expect("present");
        match content {
            Some(c) => rec.set_content(c),
            None => rec.version_id = new_id("memver"),
        }
        if let Some(np) = new_path {
            rec.path = np;
        }
        let out = rec.to_json(store_id, View::Full);
        store.memories.insert(rec.path.clone(), rec);
        Ok(out)
    }

    /// `DELETE …/memories/{id}`.
    pub(crate) fn delete(
        &mut self,
        store_id: &str,
        memory_id: &str,
        expected: Option<&str>,
    ) -> Result<Value, ApiError> {
        let store = self.store_mut(store_id)?;
        let path = store.path_of(memory_id)?;
        let current = &store.memories[&path];
        if let Some(exp) = expected.filter(|e| !e.is_empty())
            && !sha_matches(exp, &current.sha)
        {
            return Err(ApiError::conflict(format!(
                "precondition failed: memory {memory_id} has content_sha256 {}, not {exp}",
                current.sha
            )));
        }
        store.memories.remove(&path);
        Ok(json!({ "type": "memory_deleted", "id": memory_id }))
    }

    // ------------------------------------------------------- test-side helpers

    /// Creates or overwrites (new version, same id) without preconditions.
    /// Returns the memory id. Panics on an unknown store or an invalid path.
    pub(crate) fn put(&mut self, store_id: &str, path: &str, content: &str) -> String {
        if let Err(e) = validate_path(path) {
            panic!("put_memory: {}", e.message);
        }
        let store = self
            .store_mut(store_id)
            .unwrap_or_else(|_| panic!("unknown memory store {store_id}"));
        match store.memories.get_mut(path) {
            Some(m) => {
                m.set_content(content.to_string());
                m.id.clone()
            }
            None => {
                let rec = MemoryRec::new(path.to_string(), content.to_string());
                let id = rec.id.clone();
                store.memories.insert(path.to_string(), rec);
                id
            }
        }
    }

    pub(crate) fn store_or_panic(&self, store_id: &str) -> &MemoryStore {
        self.store(store_id)
            .unwrap_or_else(|_| panic!("unknown memory store {store_id}"))
    }

    pub(crate) fn store_mut_or_panic(&mut self, store_id: &str) -> &mut MemoryStore {
        self.store_mut(store_id)
            .unwrap_or_else(|_| panic!("unknown memory store {store_id}"))
    }

    /// The memory at `path` as `view=full` would return it.
    pub(crate) fn get_json(&self, store_id: &str, path: &str) -> Option<Value> {
        self.store_or_panic(store_id)
            .memories
            .get(path)
            .map(|m| m.to_json(store_id, View::Full))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha_of_known_strings() {
        assert_eq!(
            content_sha256(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            content_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn path_rules() {
        for ok in [
            "/a.md",
            "/a/b/c.txt",
            "/.anthropic-memory-store",
            "/a b/ü.md",
        ] {
            assert!(validate_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "a.md", "/", "/a/", "//a", "/a//b", "/../a", "/a/../b", "/./a", "/a/.", "/a\0b",
        ] {
            assert!(validate_path(bad).is_err(), "{bad:?}");
        }
        assert!(validate_path(&format!("/{}", "x".repeat(1024))).is_err());
    }
}
