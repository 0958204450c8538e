//! Unit tests against an in-memory [`MemoryApi`] with preconditions, 404/409,
//! size limits, failure injection and remote-edit hooks.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cma_shared::ApiError;
use cma_shared::error::classify_status;
use cma_shared::retry::{Clock, RecordingClock};
use cma_shared::types::{Memory, Resource};
use serde_json::json;

use super::fsops::sha256_hex;
use super::*;

// ---------------------------------------------------------------------------
// Fake API
// ---------------------------------------------------------------------------

type Hook = Box<dyn FnOnce(&mut FakeState) + Send>;

#[derive(Default)]
struct FakeState {
    /// store → path (with leading `/`) → (id, content).
    stores: BTreeMap<String, BTreeMap<String, (String, String)>>,
    next_id: u64,
    calls: Vec<String>,
    /// (op, status): the next call of `op` fails with `status` without effect.
    fail: Vec<(&'static str, u16)>,
    /// (op, status): the next call of `op` takes effect, then answers `status`.
    lose: Vec<(&'static str, u16)>,
    /// (op, hook): runs before the next call of `op` is processed.
    hooks: Vec<(&'static str, Hook)>,
    hang_list: bool,
}

impl FakeState {
    fn put(&mut self, store: &str, path: &str, content: &str) -> String {
        let path = format!("/{}", path.trim_start_matches('/'));
        let entries = self.stores.entry(store.to_owned()).or_default();
        if let Some((_, c)) = entries.get_mut(&path) {
            *c = content.to_owned();
            return entries[&path].0.clone();
        }
        self.next_id += 1;
        let id = format!("mem_{}", self.next_id);
        entries.insert(path, (id.clone(), content.to_owned()));
        id
    }

    fn remove(&mut self, store: &str, path: &str) {
        let path = format!("/{}", path.trim_start_matches('/'));
        self.stores
            .entry(store.to_owned())
            .or_default()
            .remove(&path);
    }

    fn memory(store: &str, path: &str, id: &str, content: &str, full: bool) -> Memory {
        Memory {
            id: id.to_owned(),
            memory_store_id: Some(store.to_owned()),
            path: path.to_owned(),
            content: full.then(|| content.to_owned()),
            content_sha256: Some(sha256_hex(content.as_bytes())),
            content_size_bytes: Some(content.len() as u64),
            memory_version_id: None,
            created_at: None,
        }
    }

    fn by_id(&self, store: &str, id: &str) -> Option<(String, String)> {
        self.stores
            .get(store)?
            .iter()
            .find(|(_, (i, _))| i == id)
            .map(|(p, (_, c))| (p.clone(), c.clone()))
    }
}

#[derive(Default)]
struct FakeApi {
    st: Mutex<FakeState>,
}

fn api_err(op: &str, status: u16) -> ApiError {
    ApiError {
        kind: classify_status(status),
        operation: op.to_owned(),
        status: Some(status),
        error_type: None,
        error_code: None,
        message: format!("fake {status}"),
        request_id: None,
        retry_after: None,
        current_state: None,
    }
}

impl FakeApi {
    fn put(&self, store: &str, path: &str, content: &str) -> String {
        self.st.lock().unwrap().put(store, path, content)
    }
    fn remove(&self, store: &str, path: &str) {
        self.st.lock().unwrap().remove(store, path);
    }
    fn content(&self, store: &str, path: &str) -> Option<String> {
        let st = self.st.lock().unwrap();
        st.stores
            .get(store)?
            .get(&format!("/{path}"))
            .map(|(_, c)| c.clone())
    }
    fn paths(&self, store: &str) -> Vec<String> {
        let st = self.st.lock().unwrap();
        st.stores
            .get(store)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }
    fn calls(&self) -> Vec<String> {
        self.st.lock().unwrap().calls.clone()
    }
    /// Calls other than listings.
    fn writes(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| !c.starts_with("list") && !c.starts_with("get"))
            .collect()
    }
    fn clear_calls(&self) {
        self.st.lock().unwrap().calls.clear();
    }
    fn fail_next(&self, op: &'static str, status: u16) {
        self.st.lock().unwrap().fail.push((op, status));
    }
    fn lose_next(&self, op: &'static str, status: u16) {
        self.st.lock().unwrap().lose.push((op, status));
    }
    fn hook(&self, op: &'static str, f: impl FnOnce(&mut FakeState) + Send + 'static) {
        self.st.lock().unwrap().hooks.push((op, Box::new(f)));
    }

    /// Records the call, runs hooks, and answers an injected failure if any.
    fn enter(&self, op: &'static str, call: String) -> Result<(), ApiError> {
        let mut st = self.st.lock().unwrap();
        st.calls.push(call.clone());
        if let Some(i) = st.hooks.iter().position(|(o, _)| *o == op) {
            let (_, h) = st.hooks.remove(i);
            h(&mut st);
        }
        if let Some(i) = st.fail.iter().position(|(o, _)| *o == op) {
            let (_, s) = st.fail.remove(i);
            return Err(api_err(&call, s));
        }
        Ok(())
    }

    fn exit<T>(&self, op: &'static str, call: &str, v: Result<T, ApiError>) -> Result<T, ApiError> {
        let mut st = self.st.lock().unwrap();
        if v.is_ok()
            && let Some(i) = st.lose.iter().position(|(o, _)| *o == op)
        {
            let (_, s) = st.lose.remove(i);
            return Err(api_err(call, s));
        }
        v
    }
}

#[async_trait]
impl MemoryApi for FakeApi {
    async fn list(
        &self,
        store: &str,
        view: MemoryView,
        limit: u32,
    ) -> Result<Vec<Memory>, ApiError> {
        let v = if view == MemoryView::Full {
            "full"
        } else {
            "basic"
        };
        self.enter("list", format!("list {store} {v} {limit}"))?;
        if self.st.lock().unwrap().hang_list {
            std::future::pending::<()>().await;
        }
        let st = self.st.lock().unwrap();
        Ok(st
            .stores
            .get(store)
            .map(|m| {
                m.iter()
                    .map(|(p, (id, c))| {
                        FakeState::memory(store, p, id, c, view == MemoryView::Full)
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn get(&self, store: &str, memory_id: &str) -> Result<Memory, ApiError> {
        let call = format!("get {store} {memory_id}");
        self.enter("get", call.clone())?;
        let r = match self.st.lock().unwrap().by_id(store, memory_id) {
            Some((p, c)) => Ok(FakeState::memory(store, &p, memory_id, &c, true)),
            None => Err(api_err(&call, 404)),
        };
        self.exit("get", &call, r)
    }

    async fn create(&self, store: &str, path: &str, content: &str) -> Result<Memory, ApiError> {
        let call = format!("create {store} {path}");
        self.enter("create", call.clone())?;
        let r = {
            let mut st = self.st.lock().unwrap();
            if content.len() > 102_400 {
                Err(api_err(&call, 413))
            } else if st.stores.get(store).is_some_and(|m| m.contains_key(path)) {
                Err(api_err(&call, 409))
            } else {
                let id = st.put(store, path, content);
                Ok(FakeState::memory(store, path, &id, content, true))
            }
        };
        self.exit("create", &call, r)
    }

    async fn update(
        &self,
        store: &str,
        memory_id: &str,
        content: &str,
        precondition_sha256: &str,
    ) -> Result<Memory, ApiError> {
        let call = format!("update {store} {memory_id} {precondition_sha256}");
        self.enter("update", call.clone())?;
        let r = {
            let mut st = self.st.lock().unwrap();
            match st.by_id(store, memory_id) {
                None => Err(api_err(&call, 404)),
                Some(_) if content.len() > 102_400 => Err(api_err(&call, 413)),
                Some((_, old)) if sha256_hex(old.as_bytes()) != precondition_sha256 => {
                    Err(api_err(&call, 409))
                }
                Some((p, _)) => {
                    st.put(store, &p, content);
                    Ok(FakeState::memory(store, &p, memory_id, content, true))
                }
            }
        };
        self.exit("update", &call, r)
    }

    async fn delete(
        &self,
        store: &str,
        memory_id: &str,
        expected_sha256: &str,
    ) -> Result<DeleteOutcome, ApiError> {
        let call = format!("delete {store} {memory_id} {expected_sha256}");
        self.enter("delete", call.clone())?;
        let r = {
            let mut st = self.st.lock().unwrap();
            match st.by_id(store, memory_id) {
                None => Ok(DeleteOutcome::NotFound),
                Some((_, old)) if sha256_hex(old.as_bytes()) != expected_sha256 => {
                    Err(api_err(&call, 409))
                }
                Some((p, _)) => {
                    st.remove(store, &p);
                    Ok(DeleteOutcome::Deleted)
                }
            }
        };
        self.exit("delete", &call, r)
    }
}

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

const S: &str = "memstore_1";

fn resource(id: &str, mount: Option<&Path>, read_only: bool, name: Option<&str>) -> Resource {
    let mut v = json!({
        "type": "memory_store",
        "memory_store_id": id,
        "access": if read_only { "read_only" } else { "read_write" },
    });
    if let Some(m) = mount {
        v["mount_path"] = json!(m.to_str().unwrap());
    }
    if let Some(n) = name {
        v["name"] = json!(n);
    }
    serde_json::from_value(v).unwrap()
}

struct H {
    dir: tempfile::TempDir,
    api: Arc<FakeApi>,
    clock: RecordingClock,
    stores: MemoryStores,
}

impl H {
    fn root(&self) -> PathBuf {
        self.dir.path().join("mnt/memory/store")
    }
    fn file(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }
    fn read(&self, rel: &str) -> Option<String> {
        fs::read_to_string(self.file(rel)).ok()
    }
    fn write(&self, rel: &str, content: &str) {
        let p = self.file(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }
    fn advance(&self, d: Duration) {
        drop(self.clock.sleep(d));
    }
    async fn sync(&self) -> StoreReport {
        self.stores.sync_now(false).await.stores.remove(0)
    }
}

fn cfg() -> MemoryConfig {
    MemoryConfig::default()
}

/// One store mounted at `<tmp>/mnt/memory/store` with `initial` remote memories.
async fn setup_with(initial: &[(&str, &str)], read_only: bool, cfg: MemoryConfig) -> H {
    let dir = tempfile::tempdir().unwrap();
    let api = Arc::new(FakeApi::default());
    for (p, c) in initial {
        api.put(S, p, c);
    }
    let clock = RecordingClock::default();
    let root = dir.path().join("mnt/memory/store");
    let stores = MemoryStores::mount_with_clock(
        api.clone(),
        dir.path(),
        &[resource(S, Some(&root), read_only, None)],
        cfg,
        Arc::new(clock.clone()),
    )
    .await
    .unwrap();
    api.clear_calls();
    H {
        dir,
        api,
        clock,
        stores,
    }
}

async fn setup(initial: &[(&str, &str)]) -> H {
    setup_with(initial, false, cfg()).await
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

// ---------------------------------------------------------------------------
// Mount
// ---------------------------------------------------------------------------

#[tokio::test]
async fn download_writes_every_memory_with_nested_paths() {
    let mut initial: Vec<(String, String)> = (0..25)
        .map(|i| (format!("bulk/m{i:02}.md"), format!("memory {i}")))
        .collect();
    initial.push(("a.md".into(), "alpha".into()));
    initial.push(("deep/er/still/b.md".into(), "beta\n".into()));
    initial.push(("empty.md".into(), String::new()));
    let refs: Vec<(&str, &str)> = initial
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let api = Arc::new(FakeApi::default());
    for (p, c) in &refs {
        api.put(S, p, c);
    }
    let root = dir.path().join("mnt/memory/store");
    let stores = MemoryStores::mount(
        api.clone(),
        dir.path(),
        &[resource(S, Some(&root), false, None)],
        cfg(),
    )
    .await
    .unwrap();
    // One full listing with limit 20 (the client pages through all of it).
    assert_eq!(api.calls(), vec![format!("list {S} full 20")]);
    for (p, c) in &refs {
        assert_eq!(fs::read_to_string(root.join(p)).unwrap(), *c, "{p}");
        assert_eq!(mode(&root.join(p)), 0o600, "{p}");
    }
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join("deep/er")), 0o700);
    assert_eq!(mode(&dir.path().join("mnt")), 0o700);
    assert_eq!(stores.roots(), vec![(root.clone(), false)]);
    let st = stores.stores[0].state.lock().await;
    assert_eq!(st.baseline.len(), refs.len());
    assert_eq!(st.baseline["a.md"], sha256_hex(b"alpha"));
}

#[tokio::test]
async fn marker_content_is_exact_and_never_synced() {
    let h = setup(&[("x.md", "x")]).await;
    let marker = h.root().join(MARKER_NAME);
    assert_eq!(fs::read(&marker).unwrap(), b"version 1\nmemstore_1");
    let r = h.sync().await;
    assert_eq!(r.outcome, StoreOutcome::Synced);
    assert!(h.api.writes().is_empty(), "{:?}", h.api.writes());
    assert_eq!(h.api.paths(S), vec!["/x.md"]);
}

#[tokio::test]
async fn remote_marker_and_unclean_paths_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let api = Arc::new(FakeApi::default());
    api.put(S, MARKER_NAME, "evil");
    api.put(S, "ok.md", "ok");
    {
        let mut st = api.st.lock().unwrap();
        let m = st.stores.get_mut(S).unwrap();
        m.insert("/a/../../escape".into(), ("mem_x".into(), "x".into()));
        m.insert("//abs".into(), ("mem_y".into(), "y".into()));
        m.insert("/a/./b".into(), ("mem_z".into(), "z".into()));
    }
    let root = dir.path().join("store");
    let stores = MemoryStores::mount(
        api.clone(),
        dir.path(),
        &[resource(S, Some(&root), false, None)],
        cfg(),
    )
    .await
    .unwrap();
    assert_eq!(
        fs::read(root.join(MARKER_NAME)).unwrap(),
        b"version 1\nmemstore_1"
    );
    assert!(!dir.path().join("escape").exists());
    assert!(!root.join("a").exists());
    let r = stores.sync_now(false).await;
    assert_eq!(r.stores[0].outcome, StoreOutcome::Synced);
    assert!(api.writes().is_empty(), "{:?}", api.writes());
}

#[tokio::test]
async fn pre_existing_root_fails_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let api = Arc::new(FakeApi::default());
    let a = dir.path().join("mem/a");
    let b = dir.path().join("mem/b");
    fs::create_dir_all(&b).unwrap();
    let err = MemoryStores::mount(
        api.clone(),
        dir.path(),
        &[
            resource("ms_a", Some(&a), false, None),
            resource("ms_b", Some(&b), false, None),
        ],
        cfg(),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("something already exists at the memory store's path"),
        "{msg}"
    );
    assert!(
        msg.contains("ms_b") && msg.contains(b.to_str().unwrap()),
        "{msg}"
    );
    assert!(!a.exists());
    // A dangling symlink counts too (lstat).
    let c = dir.path().join("dangling");
    std::os::unix::fs::symlink("/nonexistent", &c).unwrap();
    let err = MemoryStores::mount(
        api,
        dir.path(),
        &[resource("ms_c", Some(&c), false, None)],
        cfg(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, MemoryError::AlreadyExists { .. }), "{err}");
}

#[tokio::test]
async fn unclean_mount_path_fails() {
    let dir = tempfile::tempdir().unwrap();
    let api = Arc::new(FakeApi::default());
    let up = format!("{}/mem/../x", dir.path().display());
    for bad in ["relative/x", up.as_str(), "/"] {
        let mut r = resource("ms_bad", None, false, None);
        r.mount_path = Some(bad.to_owned());
        let err = MemoryStores::mount(api.clone(), dir.path(), &[r], cfg())
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("memory store mount_path is not a clean absolute path"),
            "{msg}"
        );
        assert!(msg.contains("ms_bad"), "{msg}");
    }
    assert!(!dir.path().join("x").exists());
}

#[tokio::test]
async fn more_than_eight_stores_fail() {
    let dir = tempfile::tempdir().unwrap();
    let api = Arc::new(FakeApi::default());
    let res: Vec<Resource> = (0..9)
        .map(|i| {
            resource(
                &format!("ms_{i}"),
                Some(&dir.path().join(format!("m{i}"))),
                false,
                None,
            )
        })
        .collect();
    let err = MemoryStores::mount(api.clone(), dir.path(), &res, cfg())
        .await
        .unwrap_err();
    assert!(
        matches!(err, MemoryError::TooManyStores { count: 9, max: 8 }),
        "{err}"
    );
    assert!(err.to_string().contains("at most 8"));
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    // Eight are fine; other resource types do not count.
    let mut res: Vec<Resource> = res.into_iter().take(8).collect();
    res.push(serde_json::from_value(json!({"type": "file", "file_id": "f"})).unwrap());
    let stores = MemoryStores::mount(api, dir.path(), &res, cfg())
        .await
        .unwrap();
    assert_eq!(stores.roots().len(), 8);
}

#[tokio::test]
async fn roots_without_mount_path_use_a_safe_name() {
    let dir = tempfile::tempdir().unwrap();
    let api = Arc::new(FakeApi::default());
    let res = [
        resource("ms_1", None, false, Some(" ../Team/Notes ")),
        resource("ms_2", None, true, Some("../Team/Notes")),
        resource("ms_3", None, false, Some("..")),
        resource("ms_4", None, false, None),
    ];
    let stores = MemoryStores::mount(api, dir.path(), &res, cfg())
        .await
        .unwrap();
    let base = dir.path().join("memory");
    assert_eq!(
        stores.roots(),
        vec![
            (base.join(".._Team_Notes"), false),
            (base.join("ms_2"), true),
            (base.join("ms_3"), false),
            (base.join("ms_4"), false),
        ]
    );
    let report = stores.teardown(true).await;
    assert_eq!(report.removed.len(), 4);
    // `{workdir}/memory` was created by the mount and is removed again.
    assert!(!base.exists());
}

#[tokio::test]
async fn overlapping_or_duplicate_stores_fail() {
    let dir = tempfile::tempdir().unwrap();
    let api = Arc::new(FakeApi::default());
    let a = dir.path().join("m");
    let err = MemoryStores::mount(
        api.clone(),
        dir.path(),
        &[
            resource("ms_a", Some(&a), false, None),
            resource("ms_b", Some(&a.join("x")), false, None),
        ],
        cfg(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, MemoryError::OverlappingRoots { .. }), "{err}");
    let err = MemoryStores::mount(
        api,
        dir.path(),
        &[
            resource("ms_a", Some(&a), false, None),
            resource("ms_a", Some(&dir.path().join("n")), false, None),
        ],
        cfg(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, MemoryError::DuplicateStore { .. }), "{err}");
    assert!(!a.exists());
}

#[tokio::test]
async fn failed_download_removes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let api = Arc::new(FakeApi::default());
    api.put("ms_b", "x.md", "x");
    api.fail_next("list", 500);
    let err = MemoryStores::mount(
        api.clone(),
        dir.path(),
        &[
            resource("ms_a", Some(&dir.path().join("deep/a")), false, None),
            resource("ms_b", Some(&dir.path().join("deep/b")), false, None),
        ],
        cfg(),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("downloading its memories failed"), "{msg}");
    assert!(msg.contains("ms_a") || msg.contains("ms_b"), "{msg}");
    assert!(
        !dir.path().join("deep").exists(),
        "created ancestors removed too"
    );
}

#[tokio::test]
async fn config_validation() {
    assert!(MemoryConfig::new(Duration::from_secs(4), DeleteMode::Enabled).is_err());
    assert!(MemoryConfig::new(Duration::from_secs(5), DeleteMode::Enabled).is_ok());
    assert!(MemoryConfig::from_secs(f64::NAN, DeleteMode::Enabled).is_err());
    assert!(MemoryConfig::from_secs(4.9, DeleteMode::Enabled).is_err());
    assert!(MemoryConfig::from_secs(1e300, DeleteMode::Enabled).is_err());
    assert!(MemoryConfig::from_secs(f64::INFINITY, DeleteMode::Enabled).is_err());
    assert_eq!(
        MemoryConfig::from_secs(7.5, DeleteMode::LogOnly)
            .unwrap()
            .sync_interval,
        Duration::from_millis(7500)
    );
    let d = MemoryConfig::default();
    assert_eq!(
        (d.sync_interval, d.delete_mode, d.delete_wait, d.max_stores),
        (
            Duration::from_secs(15),
            DeleteMode::Enabled,
            Duration::from_secs(30),
            8
        )
    );
    assert_eq!(
        "log_only".parse::<DeleteMode>().unwrap(),
        DeleteMode::LogOnly
    );
    assert_eq!(
        "Disabled".parse::<DeleteMode>().unwrap(),
        DeleteMode::Disabled
    );
    assert!("sometimes".parse::<DeleteMode>().is_err());
    // mount validates too.
    let dir = tempfile::tempdir().unwrap();
    let bad = MemoryConfig {
        sync_interval: Duration::from_secs(1),
        ..cfg()
    };
    assert!(
        MemoryStores::mount(Arc::new(FakeApi::default()), dir.path(), &[], bad)
            .await
            .is_err()
    );
}

// ---------------------------------------------------------------------------
// Sync decisions
// ---------------------------------------------------------------------------

#[tokio::test]
async fn local_edit_is_pushed_as_update_with_baseline_precondition() {
    let h = setup(&[("a.md", "one")]).await;
    let id = h.api.st.lock().unwrap().stores[S]["/a.md"].0.clone();
    h.write("a.md", "two");
    let r = h.sync().await;
    assert_eq!(r.updated, vec!["a.md"]);
    assert_eq!(
        h.api.writes(),
        vec![format!("update {S} {id} {}", sha256_hex(b"one"))]
    );
    assert_eq!(h.api.content(S, "a.md").as_deref(), Some("two"));
    // Settled: nothing more to do.
    h.api.clear_calls();
    let r = h.sync().await;
    assert!(h.api.writes().is_empty() && r.pulled.is_empty(), "{r:?}");
}

#[tokio::test]
async fn local_create_is_pushed_as_create() {
    let h = setup(&[]).await;
    h.write("notes/new.md", "hello");
    let r = h.sync().await;
    assert_eq!(r.created, vec!["notes/new.md"]);
    assert_eq!(h.api.writes(), vec![format!("create {S} /notes/new.md")]);
    assert_eq!(h.api.content(S, "notes/new.md").as_deref(), Some("hello"));
    h.api.clear_calls();
    h.sync().await;
    assert!(h.api.writes().is_empty());
}

#[tokio::test]
async fn remote_change_is_pulled_and_wins_over_a_local_edit() {
    let h = setup(&[("a.md", "one"), ("b.md", "bee")]).await;
    h.api.put(S, "a.md", "remote two");
    h.api.put(S, "b.md", "remote bee");
    h.api.put(S, "new/c.md", "sea");
    h.write("b.md", "local bee");
    let r = h.sync().await;
    assert_eq!(r.pulled, vec!["a.md", "b.md", "new/c.md"]);
    assert_eq!(r.conflicts, vec!["b.md"]);
    assert_eq!(h.read("a.md").as_deref(), Some("remote two"));
    assert_eq!(h.read("b.md").as_deref(), Some("remote bee"));
    assert_eq!(h.read("new/c.md").as_deref(), Some("sea"));
    assert!(h.api.writes().is_empty(), "{:?}", h.api.writes());
    // Same content on both sides: adopted without a transfer.
    h.api.put(S, "a.md", "same");
    h.write("a.md", "same");
    h.api.clear_calls();
    let r = h.sync().await;
    assert_eq!(r.adopted, vec!["a.md"]);
    assert!(r.pulled.is_empty() && h.api.writes().is_empty());
}

#[tokio::test]
async fn update_conflict_loses_and_next_sync_pulls_the_winner() {
    let h = setup(&[("a.md", "one")]).await;
    h.write("a.md", "local");
    // The remote changes between the listing and the update.
    h.api.hook("update", |st| {
        st.put(S, "a.md", "winner");
    });
    let r = h.sync().await;
    assert_eq!(r.conflicts, vec!["a.md"]);
    assert!(r.updated.is_empty());
    assert_eq!(h.api.content(S, "a.md").as_deref(), Some("winner"));
    assert_eq!(h.read("a.md").as_deref(), Some("local"));
    let r = h.sync().await;
    assert_eq!(r.pulled, vec!["a.md"]);
    assert_eq!(h.read("a.md").as_deref(), Some("winner"));
}

#[tokio::test]
async fn update_404_is_retried_as_create() {
    let h = setup(&[("a.md", "one")]).await;
    h.write("a.md", "local");
    h.api.hook("update", |st| st.remove(S, "a.md"));
    let r = h.sync().await;
    assert_eq!(r.created, vec!["a.md"]);
    assert_eq!(h.api.content(S, "a.md").as_deref(), Some("local"));
    let w = h.api.writes();
    assert!(
        w[0].starts_with("update") && w[1] == format!("create {S} /a.md"),
        "{w:?}"
    );
}

#[tokio::test]
async fn lost_upload_response_is_recognised_as_ours() {
    let h = setup(&[("a.md", "one")]).await;
    h.write("a.md", "two");
    h.api.lose_next("update", 502);
    let r = h.sync().await;
    assert_eq!(r.errors.len(), 1, "{r:?}");
    assert_eq!(h.api.content(S, "a.md").as_deref(), Some("two"));
    h.api.clear_calls();
    let r = h.sync().await;
    assert!(
        r.pulled.is_empty() && r.conflicts.is_empty() && r.adopted.is_empty(),
        "{r:?}"
    );
    assert!(h.api.writes().is_empty(), "{:?}", h.api.writes());
    assert_eq!(
        h.stores.stores[0].state.lock().await.baseline["a.md"],
        sha256_hex(b"two")
    );
}

#[tokio::test]
async fn transient_upload_failure_is_retried_next_sync() {
    let h = setup(&[]).await;
    h.write("n.md", "n");
    h.api.fail_next("create", 503);
    let r = h.sync().await;
    assert_eq!(r.errors.len(), 1);
    let r = h.sync().await;
    assert_eq!(r.created, vec!["n.md"]);
}

#[tokio::test]
async fn remote_delete_removes_an_unchanged_local_file_and_loses_to_an_edit() {
    let h = setup(&[("a.md", "a"), ("b.md", "b"), ("c.md", "c")]).await;
    h.api.remove(S, "a.md");
    h.api.remove(S, "b.md");
    h.write("b.md", "edited");
    let r = h.sync().await;
    assert_eq!(r.removed_local, vec!["a.md"]);
    assert!(!h.file("a.md").exists());
    assert_eq!(r.created, vec!["b.md"]);
    assert_eq!(h.api.content(S, "b.md").as_deref(), Some("edited"));
    assert!(!h.api.writes().iter().any(|w| w.starts_with("delete")));
}

#[tokio::test]
async fn local_delete_waits_for_corroboration() {
    let h = setup(&[("a.md", "one"), ("b.md", "two")]).await;
    let id = h.api.st.lock().unwrap().stores[S]["/a.md"].0.clone();
    fs::remove_file(h.file("a.md")).unwrap();
    let r = h.sync().await;
    assert_eq!(r.delete_pending, vec!["a.md"]);
    assert!(h.api.writes().is_empty());
    h.advance(Duration::from_secs(20));
    let r = h.sync().await;
    assert_eq!(r.delete_pending, vec!["a.md"]);
    assert!(h.api.writes().is_empty());
    h.advance(Duration::from_secs(10));
    let r = h.sync().await;
    assert_eq!(r.deleted_remote, vec!["a.md"]);
    assert_eq!(
        h.api.writes(),
        vec![format!("delete {S} {id} {}", sha256_hex(b"one"))]
    );
    assert_eq!(h.api.paths(S), vec!["/b.md"]);
    assert!(
        !h.stores.stores[0]
            .state
            .lock()
            .await
            .baseline
            .contains_key("a.md")
    );
}

#[tokio::test]
async fn a_file_that_comes_back_resets_the_delete_timer() {
    let h = setup(&[("a.md", "one"), ("b.md", "two")]).await;
    fs::remove_file(h.file("a.md")).unwrap();
    h.sync().await;
    h.advance(Duration::from_secs(31));
    h.write("a.md", "one");
    h.sync().await;
    fs::remove_file(h.file("a.md")).unwrap();
    let r = h.sync().await;
    assert_eq!(r.delete_pending, vec!["a.md"]);
    assert!(h.api.writes().is_empty());
}

#[tokio::test]
async fn delete_conflict_keeps_the_remote_and_restores_it() {
    let h = setup(&[("a.md", "one"), ("b.md", "two")]).await;
    fs::remove_file(h.file("a.md")).unwrap();
    h.sync().await;
    h.advance(Duration::from_secs(31));
    h.api.hook("delete", |st| {
        st.put(S, "a.md", "changed");
    });
    let r = h.sync().await;
    assert_eq!(r.conflicts, vec!["a.md"]);
    assert_eq!(h.api.content(S, "a.md").as_deref(), Some("changed"));
    let r = h.sync().await;
    assert_eq!(r.pulled, vec!["a.md"]);
    assert_eq!(h.read("a.md").as_deref(), Some("changed"));
}

#[tokio::test]
async fn deletes_are_capped_per_sync() {
    let initial: Vec<(String, String)> = (0..40)
        .map(|i| (format!("f{i:02}"), format!("{i}")))
        .collect();
    let refs: Vec<(&str, &str)> = initial
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let h = setup(&refs).await;
    for i in 0..22 {
        fs::remove_file(h.file(&format!("f{i:02}"))).unwrap();
    }
    let r = h.sync().await;
    assert_eq!(r.delete_pending.len(), 22);
    h.advance(Duration::from_secs(30));
    // cap = clamp(40 / 4, 8, 50) = 10
    let r = h.sync().await;
    assert_eq!(r.deleted_remote.len(), 10, "{r:?}");
    assert_eq!(r.delete_pending.len(), 12);
    // cap = clamp(30 / 4, 8, 50) = 8
    let r = h.sync().await;
    assert_eq!(r.deleted_remote.len(), 8);
    let r = h.sync().await;
    assert_eq!(r.deleted_remote.len(), 4);
    assert_eq!(h.api.paths(S).len(), 18);
}

#[tokio::test]
async fn delete_modes_log_only_and_disabled_send_nothing() {
    for mode in [DeleteMode::LogOnly, DeleteMode::Disabled] {
        let h = setup_with(
            &[("a.md", "one"), ("b.md", "two")],
            false,
            MemoryConfig {
                delete_mode: mode,
                ..cfg()
            },
        )
        .await;
        fs::remove_file(h.file("a.md")).unwrap();
        h.sync().await;
        h.advance(Duration::from_secs(31));
        let r = h.sync().await;
        assert!(h.api.writes().is_empty(), "{mode:?}");
        assert_eq!(
            r.delete_logged.len(),
            usize::from(mode == DeleteMode::LogOnly),
            "{mode:?}"
        );
        assert_eq!(h.api.paths(S).len(), 2);
    }
}

#[tokio::test]
async fn read_only_store_never_pushes_and_is_overwritten() {
    let h = setup_with(
        &[("a.md", "one"), ("b.md", "two"), ("c.md", "three")],
        true,
        cfg(),
    )
    .await;
    assert_eq!(h.stores.roots(), vec![(h.root(), true)]);
    h.write("a.md", "local edit");
    h.write("new.md", "local new");
    fs::remove_file(h.file("b.md")).unwrap();
    let r = h.sync().await;
    assert!(h.api.writes().is_empty(), "{:?}", h.api.writes());
    // Local delete in a read-only store: restored from the server.
    assert_eq!(r.pulled, vec!["b.md"]);
    assert_eq!(h.read("a.md").as_deref(), Some("local edit"));
    h.advance(Duration::from_secs(60));
    h.api.put(S, "a.md", "remote edit");
    let r = h.sync().await;
    assert_eq!(r.pulled, vec!["a.md"]);
    assert_eq!(h.read("a.md").as_deref(), Some("remote edit"));
    assert_eq!(h.read("new.md").as_deref(), Some("local new"));
    assert!(h.api.writes().is_empty());
    // Teardown: no flush uploads, no final deletes.
    let t = h.stores.teardown(true).await;
    assert_eq!(t.flush.unwrap().stores[0].outcome, StoreOutcome::Skipped);
    assert!(h.api.writes().is_empty());
    assert_eq!(h.api.paths(S).len(), 3);
}

#[tokio::test]
async fn refused_upload_is_not_retried_until_the_file_changes() {
    let h = setup(&[]).await;
    let big = "x".repeat(102_401);
    h.write("big.md", &big);
    let r = h.sync().await;
    assert_eq!(r.refused, vec!["big.md"]);
    assert_eq!(h.api.writes(), vec![format!("create {S} /big.md")]);
    h.api.clear_calls();
    h.sync().await;
    h.sync().await;
    assert!(h.api.writes().is_empty(), "{:?}", h.api.writes());
    h.write("big.md", "small now");
    let r = h.sync().await;
    assert_eq!(r.created, vec!["big.md"]);

    // Non-UTF-8: refused locally without a request.
    h.api.clear_calls();
    fs::write(h.file("bin.dat"), [0xff, 0xfe, 0x00]).unwrap();
    let r = h.sync().await;
    assert_eq!(r.refused, vec!["bin.dat"]);
    assert!(h.api.writes().is_empty());
    let r = h.sync().await;
    assert!(r.refused.is_empty());
    fs::write(h.file("bin.dat"), "text").unwrap();
    let r = h.sync().await;
    assert_eq!(r.created, vec!["bin.dat"]);
}

#[tokio::test]
async fn refused_update_400_is_remembered() {
    let h = setup(&[("a.md", "one")]).await;
    h.write("a.md", "two");
    h.api.fail_next("update", 400);
    let r = h.sync().await;
    assert_eq!(r.refused, vec!["a.md"]);
    h.api.clear_calls();
    h.sync().await;
    assert!(h.api.writes().is_empty());
}

#[tokio::test]
async fn removed_marker_with_files_present_pushes_and_deletes_nothing() {
    let h = setup(&[("a.md", "one"), ("b.md", "two")]).await;
    fs::remove_file(h.root().join(MARKER_NAME)).unwrap();
    h.write("a.md", "edited");
    h.write("new.md", "new");
    fs::remove_file(h.file("b.md")).unwrap();
    h.api.put(S, "c.md", "remote new");
    for _ in 0..2 {
        let r = h.sync().await;
        assert_eq!(r.outcome, StoreOutcome::Untrusted);
        h.advance(Duration::from_secs(31));
    }
    let (root, api) = (h.root(), h.api.clone());
    let t = h.stores.teardown(true).await;
    assert!(api.writes().is_empty(), "{:?}", api.writes());
    assert!(!root.join("c.md").exists(), "nothing pulled either");
    // Left for inspection.
    assert_eq!(t.kept, vec![root.clone()]);
    assert!(root.join("a.md").exists());
}

#[tokio::test]
async fn wrong_marker_content_is_untrusted_too() {
    let h = setup(&[("a.md", "one")]).await;
    fs::write(h.root().join(MARKER_NAME), "version 1\nmemstore_other").unwrap();
    h.write("a.md", "edited");
    let r = h.sync().await;
    assert_eq!(r.outcome, StoreOutcome::Untrusted);
    assert!(h.api.writes().is_empty());
}

#[tokio::test]
async fn emptied_store_is_redownloaded() {
    let h = setup(&[("a.md", "one"), ("d/b.md", "two")]).await;
    // Every file of the baseline gone, marker intact: re-download, no deletes.
    fs::remove_file(h.file("a.md")).unwrap();
    fs::remove_dir_all(h.file("d")).unwrap();
    let r = h.sync().await;
    assert_eq!(r.outcome, StoreOutcome::Redownloaded);
    assert_eq!(r.redownloaded, 2);
    assert_eq!(h.read("d/b.md").as_deref(), Some("two"));
    assert!(h.api.writes().is_empty());
    // The whole root gone (marker included): re-created 0700 and re-downloaded.
    fs::remove_dir_all(h.root()).unwrap();
    h.advance(Duration::from_secs(31));
    let r = h.sync().await;
    assert_eq!(r.outcome, StoreOutcome::Redownloaded);
    assert_eq!(mode(&h.root()), 0o700);
    assert_eq!(
        fs::read(h.root().join(MARKER_NAME)).unwrap(),
        b"version 1\nmemstore_1"
    );
    assert_eq!(h.read("a.md").as_deref(), Some("one"));
    assert!(h.api.writes().is_empty());
    // Marker gone but no files: same.
    fs::remove_file(h.file("a.md")).unwrap();
    fs::remove_dir_all(h.file("d")).unwrap();
    fs::remove_file(h.root().join(MARKER_NAME)).unwrap();
    let r = h.sync().await;
    assert_eq!(r.outcome, StoreOutcome::Redownloaded);
    assert!(h.api.writes().is_empty());
    // Next sync is quiet.
    let r = h.sync().await;
    assert_eq!(r.outcome, StoreOutcome::Synced);
    assert!(r.pulled.is_empty() && h.api.writes().is_empty());
}

#[tokio::test]
async fn deleting_one_of_a_single_file_baseline_is_a_normal_delete() {
    let h = setup(&[("a.md", "one")]).await;
    fs::remove_file(h.file("a.md")).unwrap();
    let r = h.sync().await;
    assert_eq!(r.outcome, StoreOutcome::Synced);
    assert_eq!(r.delete_pending, vec!["a.md"]);
}

#[tokio::test]
async fn symlinks_in_the_store_are_skipped() {
    let h = setup(&[("a.md", "one")]).await;
    let outside = h.dir.path().join("outside.txt");
    fs::write(&outside, "secret").unwrap();
    std::os::unix::fs::symlink(&outside, h.file("link.md")).unwrap();
    std::os::unix::fs::symlink(h.dir.path(), h.file("dirlink")).unwrap();
    let r = h.sync().await;
    assert!(r.created.is_empty());
    assert!(h.api.writes().is_empty(), "{:?}", h.api.writes());
    // Replacing a synced file by a symlink never uploads the target either.
    fs::remove_file(h.file("a.md")).unwrap();
    std::os::unix::fs::symlink(&outside, h.file("a.md")).unwrap();
    h.sync().await;
    h.advance(Duration::from_secs(31));
    h.sync().await;
    assert!(h.api.writes().is_empty(), "{:?}", h.api.writes());
    assert_eq!(fs::read_to_string(&outside).unwrap(), "secret");
}

#[tokio::test]
async fn pull_does_not_follow_a_symlinked_directory() {
    let h = setup(&[("a.md", "one")]).await;
    let outside = h.dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, h.file("d")).unwrap();
    h.api.put(S, "d/x.md", "x");
    let r = h.sync().await;
    assert_eq!(r.errors.len(), 1, "{r:?}");
    assert!(!outside.join("x.md").exists());
}

#[tokio::test]
async fn failed_listing_is_reported_not_fatal() {
    let h = setup(&[("a.md", "one")]).await;
    h.api.fail_next("list", 500);
    let r = h.sync().await;
    assert!(matches!(r.outcome, StoreOutcome::Failed(_)), "{r:?}");
    let r = h.sync().await;
    assert_eq!(r.outcome, StoreOutcome::Synced);
}

#[tokio::test]
async fn stores_sync_independently() {
    let dir = tempfile::tempdir().unwrap();
    let api = Arc::new(FakeApi::default());
    api.put("ms_a", "a.md", "a");
    api.put("ms_b", "b.md", "b");
    let (ra, rb) = (dir.path().join("a"), dir.path().join("b"));
    let stores = MemoryStores::mount(
        api.clone(),
        dir.path(),
        &[
            resource("ms_a", Some(&ra), false, None),
            resource("ms_b", Some(&rb), false, None),
        ],
        cfg(),
    )
    .await
    .unwrap();
    fs::write(ra.join("a.md"), "a2").unwrap();
    fs::remove_file(rb.join(MARKER_NAME)).unwrap();
    let r = stores.sync_now(false).await;
    assert_eq!(r.store("ms_a").unwrap().updated, vec!["a.md"]);
    assert_eq!(r.store("ms_b").unwrap().outcome, StoreOutcome::Untrusted);
    assert_eq!(api.content("ms_a", "a.md").as_deref(), Some("a2"));
}

// ---------------------------------------------------------------------------
// Interval, flush, teardown
// ---------------------------------------------------------------------------

#[tokio::test]
async fn maybe_sync_respects_the_interval() {
    let h = setup(&[("a.md", "one")]).await;
    assert!(h.stores.maybe_sync().await.is_none());
    h.advance(Duration::from_secs(14));
    assert!(h.stores.maybe_sync().await.is_none());
    assert!(h.api.calls().is_empty());
    h.advance(Duration::from_secs(1));
    assert!(h.stores.maybe_sync().await.is_some());
    assert_eq!(h.api.calls(), vec![format!("list {S} basic 100")]);
    assert!(h.stores.maybe_sync().await.is_none());
    // An explicit sync also restarts the interval.
    h.advance(Duration::from_secs(10));
    h.stores.sync_now(false).await;
    h.advance(Duration::from_secs(10));
    assert!(h.stores.maybe_sync().await.is_none());
    h.advance(Duration::from_secs(5));
    assert!(h.stores.maybe_sync().await.is_some());
}

#[tokio::test]
async fn flush_pushes_local_changes_only() {
    let h = setup(&[
        ("a.md", "one"),
        ("b.md", "two"),
        ("c.md", "three"),
        ("d.md", "four"),
    ])
    .await;
    h.write("a.md", "edited");
    h.write("new.md", "new");
    fs::remove_file(h.file("b.md")).unwrap();
    h.api.put(S, "c.md", "remote three");
    // Changed on both sides: remote wins, not flushed.
    h.write("d.md", "local four");
    h.api.put(S, "d.md", "remote four");
    let r = h.stores.flush().await.stores.remove(0);
    assert_eq!(r.updated, vec!["a.md"]);
    assert_eq!(r.created, vec!["new.md"]);
    assert_eq!(r.conflicts, vec!["d.md"]);
    assert!(r.pulled.is_empty() && r.deleted_remote.is_empty());
    assert_eq!(h.read("c.md").as_deref(), Some("three"), "no pulls");
    assert!(!h.file("b.md").exists());
    assert_eq!(
        h.api.content(S, "b.md").as_deref(),
        Some("two"),
        "no deletes"
    );
    assert_eq!(h.api.content(S, "d.md").as_deref(), Some("remote four"));
    assert!(
        !h.api
            .calls()
            .iter()
            .any(|c| c.starts_with("get") || c.starts_with("delete"))
    );
}

#[tokio::test]
async fn teardown_after_a_clean_loop_syncs_waives_the_wait_and_removes_roots() {
    let h = setup(&[("a.md", "one"), ("b.md", "two")]).await;
    fs::remove_file(h.file("a.md")).unwrap();
    h.write("c.md", "new");
    let root = h.root();
    let api = h.api.clone();
    let t = h.stores.teardown(true).await;
    let finish = t.finish.unwrap().stores.remove(0);
    assert_eq!(finish.deleted_remote, vec!["a.md"]);
    assert_eq!(finish.created, vec!["c.md"]);
    let flush = t.flush.unwrap().stores.remove(0);
    assert!(flush.created.is_empty() && flush.updated.is_empty());
    assert_eq!(t.removed, vec![root.clone()]);
    assert!(!root.exists());
    assert!(
        !h.dir.path().join("mnt").exists(),
        "created ancestors removed"
    );
    assert_eq!(api.paths(S), vec!["/b.md", "/c.md"]);
}

#[tokio::test]
async fn teardown_after_an_error_only_flushes() {
    let h = setup(&[("a.md", "one"), ("b.md", "two")]).await;
    fs::remove_file(h.file("a.md")).unwrap();
    h.write("b.md", "edited");
    h.api.put(S, "z.md", "remote");
    let api = h.api.clone();
    let t = h.stores.teardown(false).await;
    assert!(t.finish.is_none() && !t.finish_timed_out);
    assert_eq!(t.flush.unwrap().stores[0].updated, vec!["b.md"]);
    assert_eq!(api.content(S, "a.md").as_deref(), Some("one"), "no delete");
    assert!(!api.calls().iter().any(|c| c.starts_with("get")));
    assert_eq!(t.removed.len(), 1);
}

#[tokio::test]
async fn teardown_is_bounded() {
    let h = setup_with(
        &[("a.md", "one")],
        false,
        MemoryConfig {
            teardown_timeout: Duration::from_millis(50),
            ..cfg()
        },
    )
    .await;
    h.api.st.lock().unwrap().hang_list = true;
    let root = h.root();
    let t = h.stores.teardown(true).await;
    assert!(t.finish_timed_out && t.flush_timed_out);
    assert_eq!(t.removed, vec![root.clone()]);
    assert!(!root.exists());
}

#[tokio::test]
async fn teardown_removes_an_emptied_untrusted_root() {
    let h = setup(&[("a.md", "one")]).await;
    fs::remove_file(h.file("a.md")).unwrap();
    fs::remove_file(h.root().join(MARKER_NAME)).unwrap();
    fs::create_dir(h.file("empty_dir")).unwrap();
    let root = h.root();
    let t = h.stores.teardown(false).await;
    assert_eq!(t.removed, vec![root.clone()]);
    assert!(!root.exists());
}

// ---------------------------------------------------------------------------
// The real client against the workspace's fake control plane (HTTP, paging)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn control_plane_impl_pages_and_syncs_against_the_fake_server() {
    use cma_shared::{ClientConfig, ControlPlane, SessionsToken};
    use cma_tests::fake::{FakeConfig, FakeControlPlane, SessionScript};

    let fake = FakeControlPlane::start(FakeConfig::default()).await;
    let store = fake.create_memory_store("Notes");
    for i in 0..45 {
        fake.put_memory(&store, &format!("/p/m{i:02}.md"), &format!("c{i}"));
    }
    fake.put_memory(&store, "/top.md", "top");
    let session = fake.create_session(SessionScript::new(vec![]));
    let cp = ControlPlane::with_sessions_token(
        ClientConfig::with_base_url(Some(&fake.base_url())),
        &SessionsToken::new(session.sessions_token.clone()),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mnt/memory/notes");
    let clock = RecordingClock::default();
    let stores = MemoryStores::mount_with_clock(
        Arc::new(cp),
        dir.path(),
        &[resource(&store, Some(&root), false, None)],
        cfg(),
        Arc::new(clock.clone()),
    )
    .await
    .unwrap();
    // 46 memories at limit=20: three pages.
    let lists: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/memories"))
        .map(|r| r.query)
        .collect();
    assert_eq!(lists.len(), 3, "{lists:?}");
    assert!(
        lists
            .iter()
            .all(|q| q.contains("view=full") && q.contains("limit=20")),
        "{lists:?}"
    );
    assert_eq!(fs::read_to_string(root.join("p/m44.md")).unwrap(), "c44");
    assert_eq!(fs::read_to_string(root.join("top.md")).unwrap(), "top");

    // Local edit, local create, local delete; remote edit.
    fs::write(root.join("top.md"), "top 2").unwrap();
    fs::write(root.join("new.md"), "new").unwrap();
    fs::remove_file(root.join("p/m00.md")).unwrap();
    fake.put_memory(&store, "/p/m01.md", "remote c1");
    fake.clear_requests();
    let r = stores.sync_now(false).await.stores.remove(0);
    assert_eq!(r.outcome, StoreOutcome::Synced, "{r:?}");
    assert_eq!(r.updated, vec!["top.md"]);
    assert_eq!(r.created, vec!["new.md"]);
    assert_eq!(r.pulled, vec!["p/m01.md"]);
    assert_eq!(r.delete_pending, vec!["p/m00.md"]);
    assert!(fake.requests().iter().any(|q| q.method == "GET"
        && q.query.contains("view=basic")
        && q.query.contains("limit=100")));
    assert_eq!(
        fake.memory_content(&store, "/top.md").as_deref(),
        Some("top 2")
    );
    assert_eq!(
        fake.memory_content(&store, "/new.md").as_deref(),
        Some("new")
    );
    assert_eq!(
        fs::read_to_string(root.join("p/m01.md")).unwrap(),
        "remote c1"
    );

    let update = fake
        .requests()
        .into_iter()
        .find(|q| q.method == "POST" && q.path.contains("/memories/"))
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&update.body).unwrap();
    assert_eq!(
        body["precondition"],
        json!({"type": "content_sha256", "content_sha256": sha256_hex(b"top")})
    );
    // Corroborated delete after the wait (the expected sha matches).
    drop(clock.sleep(Duration::from_secs(31)));
    let r = stores.sync_now(false).await.stores.remove(0);
    assert_eq!(r.deleted_remote, vec!["p/m00.md"], "{r:?}");
    assert_eq!(fake.memory_content(&store, "/p/m00.md"), None);
    let t = stores.teardown(true).await;
    assert_eq!(t.removed, vec![root.clone()]);
    fake.shutdown().await;
}
