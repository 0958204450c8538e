//! The fake control plane's skills and memory-store endpoints, exercised with
//! raw reqwest (exact headers) and with the shared `ControlPlane` client (which
//! also checks our client against the fake).

use std::sync::Arc;

use cma_shared::client::{DeleteOutcome, ListMemoriesParams, MemoryView};
use cma_shared::retry::{FixedJitter, RecordingClock};
use cma_shared::{ClientConfig, ControlPlane, SecretString};
use cma_tests::fake::{
    CreatedSession, Endpoint, FakeConfig, FakeControlPlane, Faults, MAX_MEMORY_BYTES, MEMORY_BETA,
    SessionScript, content_sha256,
};
use futures_util::StreamExt;
use serde_json::{Value, json};

const VERSION: &str = "2026-10-21";

struct Resp {
    status: u16,
    body: Value,
    bytes: bytes::Bytes,
    headers: reqwest::header::HeaderMap,
}

impl Resp {
    fn error_type(&self) -> &str {
        self.body["error"]["type"].as_str().unwrap_or("<none>")
    }
}

/// Raw HTTP with explicit control over the beta header.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(fake: &FakeControlPlane) -> Self {
        Api {
            http: reqwest::Client::new(),
            base: fake.base_url(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        beta: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut b = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("anthropic-version", VERSION);
        if let Some(beta) = beta {
            b = b.header("anthropic-beta", beta);
        }
        if method == reqwest::Method::POST {
            b = b
                .header("content-type", "application/json")
                .body(body.unwrap_or(json!({})).to_string());
        }
        let r = b.send().await.expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            body,
            bytes,
            headers,
        }
    }

    async fn skill(&self, path: &str, token: &str) -> Resp {
        self.call(reqwest::Method::GET, path, token, None, None)
            .await
    }

    async fn mem_get(&self, path: &str, token: &str) -> Resp {
        self.call(reqwest::Method::GET, path, token, Some(MEMORY_BETA), None)
            .await
    }

    async fn mem_post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(
            reqwest::Method::POST,
            path,
            token,
            Some(MEMORY_BETA),
            Some(body),
        )
        .await
    }

    async fn mem_delete(&self, path: &str, token: &str) -> Resp {
        self.call(
            reqwest::Method::DELETE,
            path,
            token,
            Some(MEMORY_BETA),
            None,
        )
        .await
    }
}

async fn start() -> (FakeControlPlane, Api) {
    let fake = FakeControlPlane::start(FakeConfig::default()).await;
    let api = Api::new(&fake);
    (fake, api)
}

fn session(fake: &FakeControlPlane) -> CreatedSession {
    fake.create_session(SessionScript::new(vec![]))
}

fn client(fake: &FakeControlPlane, bearer: &str) -> ControlPlane {
    ControlPlane::new(
        ClientConfig::with_base_url(Some(&fake.base_url())),
        SecretString::new(bearer),
    )
    .unwrap()
    .with_time(
        Arc::new(RecordingClock::default()),
        Arc::new(FixedJitter(0.0)),
    )
}

fn mems(store: &str) -> String {
    format!("/v1/memory_stores/{store}/memories")
}

// ---------------------------------------------------------------------- skills

#[tokio::test]
async fn skill_latest_resolves_to_newest_and_content_needs_concrete_id() {
    let (fake, api) = start().await;
    let s = session(&fake);
    fake.add_skill_version("skill_01", "skillver_a", "pdf-tools", b"PK-old".to_vec());
    fake.add_skill_version("skill_01", "skillver_b", "pdf-tools", b"PK-new".to_vec());

    for token in [fake.environment_key(), s.sessions_token.clone()] {
        let r = api
            .skill("/v1/skills/skill_01/versions/latest", &token)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["type"], "skill_version");
        assert_eq!(r.body["id"], "skillver_b");
        assert_eq!(r.body["skill_id"], "skill_01");
        assert_eq!(r.body["name"], "pdf-tools");
        assert!(r.body["description"].is_string());
        assert!(r.body["created_at"].as_str().unwrap().ends_with('Z'));
    }
    let t = &s.sessions_token;
    let r = api
        .skill("/v1/skills/skill_01/versions/skillver_a", t)
        .await;
    assert_eq!(r.body["id"], "skillver_a");

    let r = api
        .skill("/v1/skills/skill_01/versions/skillver_a/content", t)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/octet-stream");
    assert_eq!(&r.bytes[..], b"PK-old");
    let r = api
        .skill("/v1/skills/skill_01/versions/skillver_b/content", t)
        .await;
    assert_eq!(&r.bytes[..], b"PK-new");

    // The alias only resolves on retrieve.
    let r = api
        .skill("/v1/skills/skill_01/versions/latest/content", t)
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["type"], "error");
    assert_eq!(r.error_type(), "not_found_error");
    for path in [
        "/v1/skills/skill_nope/versions/latest",
        "/v1/skills/skill_01/versions/skillver_zz",
        "/v1/skills/skill_01/versions/skillver_zz/content",
        "/v1/skills/skill_01",
    ] {
        let r = api.skill(path, t).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.error_type(), "not_found_error", "{path}");
    }
    // No beta header on skills, ever.
    let r = api
        .call(
            reqwest::Method::GET,
            "/v1/skills/skill_01/versions/latest",
            t,
            Some("managed-agents-2026-04-01"),
            None,
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn skill_endpoints_with_the_shared_client() {
    let (fake, _api) = start().await;
    let s = session(&fake);
    let archive: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    fake.add_skill_version("skill_01", "skillver_1", "big", archive.clone());
    let c = client(&fake, &s.sessions_token);
    let v = c
        .retrieve_skill_version("skill_01", "latest")
        .await
        .unwrap();
    assert_eq!(v.id, "skillver_1");
    assert_eq!(v.name.as_deref(), Some("big"));
    let mut stream = Box::pin(c.download_skill_version("skill_01", &v.id).await.unwrap());
    let mut got = Vec::new();
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(got, archive);
    let err = c
        .retrieve_skill_version("skill_missing", "latest")
        .await
        .unwrap_err();
    assert_eq!(err.status, Some(404));

    let reqs = fake.requests();
    let dl = reqs
        .iter()
        .find(|r| r.path.ends_with("/content"))
        .expect("download recorded");
    assert_eq!(dl.header("accept"), Some("application/binary"));
    assert_eq!(dl.header("anthropic-beta"), None);
    assert_eq!(
        dl.header("authorization"),
        Some(format!("Bearer {}", s.sessions_token).as_str())
    );
}

#[tokio::test]
async fn skills_can_refuse_sessions_tokens() {
    let (fake, api) = start().await;
    let s = session(&fake);
    fake.add_skill_version("skill_01", "skillver_1", "x", b"zip".to_vec());
    fake.set_skills_refuse_sessions_token(true);
    for path in [
        "/v1/skills/skill_01/versions/latest",
        "/v1/skills/skill_01/versions/skillver_1/content",
    ] {
        let r = api.skill(path, &s.sessions_token).await;
        assert_eq!(r.status, 403, "{path}");
        assert_eq!(r.error_type(), "permission_error");
        let r = api.skill(path, &fake.environment_key()).await;
        assert_eq!(r.status, 200, "{path}");
    }
    // An unknown bearer is still 401, not 403.
    let r = api
        .skill("/v1/skills/skill_01/versions/latest", "sk-ant-req-bogus")
        .await;
    assert_eq!(r.status, 401);
    fake.set_skills_refuse_sessions_token(false);
    let r = api
        .skill("/v1/skills/skill_01/versions/latest", &s.sessions_token)
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn skill_faults_are_injectable() {
    let (fake, api) = start().await;
    let s = session(&fake);
    fake.add_skill_version("skill_01", "skillver_1", "x", b"zip".to_vec());
    fake.set_faults(Faults {
        status_override: vec![
            (Endpoint::SkillRetrieve, 503, 1),
            (Endpoint::SkillContent, 500, 2),
        ],
        ..Default::default()
    });
    let t = &s.sessions_token;
    assert_eq!(
        api.skill("/v1/skills/skill_01/versions/latest", t)
            .await
            .status,
        503
    );
    assert_eq!(
        api.skill("/v1/skills/skill_01/versions/latest", t)
            .await
            .status,
        200
    );
    let content = "/v1/skills/skill_01/versions/skillver_1/content";
    assert_eq!(api.skill(content, t).await.status, 500);
    assert_eq!(api.skill(content, t).await.status, 500);
    assert_eq!(api.skill(content, t).await.status, 200);
}

// ------------------------------------------------------------------- sessions

#[tokio::test]
async fn session_carries_skills_and_memory_store_resources() {
    let (fake, _api) = start().await;
    let store = fake.create_memory_store("User Preferences");
    let script = SessionScript::new(vec![])
        .with_skill("skill_01", "latest")
        .with_skill("skill_02", "skillver_7")
        .with_memory_store(
            &store,
            "read_write",
            Some("/mnt/memory/user-preferences"),
            "User Preferences",
        )
        .with_memory_store("memstore_ro", "read_only", None, "Docs");
    let s = fake.create_session(script);
    let json = fake.session(&s.session_id);
    assert_eq!(
        json["agent"]["skills"],
        json!([
            {"type": "custom", "skill_id": "skill_01", "version": "latest"},
            {"type": "custom", "skill_id": "skill_02", "version": "skillver_7"},
        ])
    );
    assert_eq!(json["agent"]["tools"][0]["type"], "agent_toolset_20260401");
    assert!(json["resources"][1].get("mount_path").is_none());

    let c = client(&fake, &s.sessions_token);
    let sess = c.retrieve_session(&s.session_id).await.unwrap();
    assert_eq!(sess.agent.skills.len(), 2);
    assert_eq!(sess.agent.skills[1].version.as_deref(), Some("skillver_7"));
    assert_eq!(sess.resources.len(), 2);
    let rw = &sess.resources[0];
    assert!(rw.is_memory_store() && !rw.is_read_only());
    assert_eq!(rw.memory_store_id.as_deref(), Some(store.as_str()));
    assert_eq!(
        rw.mount_path.as_deref(),
        Some("/mnt/memory/user-preferences")
    );
    assert_eq!(rw.name.as_deref(), Some("User Preferences"));
    assert!(sess.resources[1].is_read_only());
    assert_eq!(sess.resources[1].mount_path, None);
}

// ---------------------------------------------------------------- memory: auth

#[tokio::test]
async fn memory_refuses_env_key_and_wrong_or_missing_beta() {
    let (fake, api) = start().await;
    let s = session(&fake);
    let store = fake.create_memory_store("m");
    let path = mems(&store);

    let r = api.mem_get(&path, &fake.environment_key()).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.error_type(), "permission_error");
    let r = api
        .mem_post(
            &path,
            &fake.environment_key(),
            json!({"path": "/a.md", "content": "x"}),
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(fake.memories(&store).is_empty());

    let t = &s.sessions_token;
    for beta in [
        None,
        Some("managed-agents-2026-04-01"),
        Some("agent-memory-2026-07-22,managed-agents-2026-04-01"),
        Some("agent-memory-2025-01-01"),
    ] {
        let r = api.call(reqwest::Method::GET, &path, t, beta, None).await;
        assert_eq!(r.status, 400, "{beta:?}");
        assert_eq!(r.error_type(), "invalid_request_error");
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("anthropic-beta")
        );
    }
    assert_eq!(api.mem_get(&path, t).await.status, 200);
    assert_eq!(api.mem_get(&path, "sk-ant-req-bogus").await.status, 401);
    // Unknown store.
    let r = api.mem_get(&mems("memstore_nope"), t).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_type(), "not_found_error");

    // The shared client with the environment key gets a permanent 403.
    let err = client(&fake, &fake.environment_key())
        .list_memories(&store, &ListMemoriesParams::default(), None)
        .await
        .unwrap_err();
    assert_eq!(err.status, Some(403));
    assert!(err.is_auth());
}

#[tokio::test]
async fn read_only_mount_refuses_writes() {
    let (fake, api) = start().await;
    let store = fake.create_memory_store("docs");
    let id = fake.put_memory(&store, "/a.md", "A");
    let s = fake.create_session(SessionScript::new(vec![]).with_memory_store(
        &store,
        "read_only",
        None,
        "docs",
    ));
    let t = &s.sessions_token;
    let p = mems(&store);
    assert_eq!(api.mem_get(&format!("{p}?view=full"), t).await.status, 200);
    let r = api
        .mem_post(&p, t, json!({"path": "/b.md", "content": "B"}))
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.error_type(), "permission_error");
    let r = api
        .mem_post(&format!("{p}/{id}"), t, json!({"content": "A2"}))
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(api.mem_delete(&format!("{p}/{id}"), t).await.status, 403);
    assert_eq!(fake.memories(&store), vec![("/a.md".into(), "A".into())]);
}

// ------------------------------------------------------------- memory: listing

#[tokio::test]
async fn memory_listing_pages_sorted_by_path() {
    let (fake, api) = start().await;
    let s = session(&fake);
    let t = &s.sessions_token;
    let store = fake.create_memory_store("m");
    // Inserted out of order; 45 memories = pages of 20, 20, 5.
    for i in (0..45).rev() {
        fake.put_memory(&store, &format!("/notes/{i:03}.md"), &format!("note {i}"));
    }
    let mut seen = Vec::new();
    let mut page: Option<String> = None;
    let mut sizes = Vec::new();
    loop {
        let q = match &page {
            Some(p) => format!("?view=full&limit=20&page={p}"),
            None => "?view=full&limit=20".into(),
        };
        let r = api.mem_get(&format!("{}{q}", mems(&store)), t).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let data = r.body["data"].as_array().unwrap();
        sizes.push(data.len());
        for m in data {
            assert_eq!(m["type"], "memory");
            assert_eq!(m["memory_store_id"], store.as_str());
            assert!(m["id"].as_str().unwrap().starts_with("mem_"));
            assert!(
                m["memory_version_id"]
                    .as_str()
                    .unwrap()
                    .starts_with("memver_")
            );
            let content = m["content"].as_str().unwrap();
            assert_eq!(m["content_sha256"], content_sha256(content).as_str());
            assert_eq!(m["content_size_bytes"], content.len());
            seen.push(m["path"].as_str().unwrap().to_string());
        }
        match r.body["next_page"].as_str() {
            Some(n) => page = Some(n.to_string()),
            None => {
                assert!(r.body["next_page"].is_null());
                break;
            }
        }
    }
    assert_eq!(sizes, vec![20, 20, 5]);
    let expected: Vec<String> = (0..45).map(|i| format!("/notes/{i:03}.md")).collect();
    assert_eq!(seen, expected);

    // view=basic: no content, but sha and size. Default limit is 20.
    let r = api
        .mem_get(&format!("{}?view=basic", mems(&store)), t)
        .await;
    let data = r.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 20);
    assert!(r.body["next_page"].is_string());
    for m in data {
        assert!(m["content"].is_null());
        assert_eq!(m["content_sha256"].as_str().unwrap().len(), 64);
        assert!(m["content_size_bytes"].as_u64().unwrap() > 0);
    }
    // Exactly one full page: next_page is null.
    let r = api.mem_get(&format!("{}?limit=100", mems(&store)), t).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 45);
    assert!(r.body["next_page"].is_null());

    // path_prefix.
    let r = api
        .mem_get(
            &format!("{}?path_prefix=%2Fnotes%2F04&limit=100", mems(&store)),
            t,
        )
        .await;
    let paths: Vec<&str> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/notes/040.md",
            "/notes/041.md",
            "/notes/042.md",
            "/notes/043.md",
            "/notes/044.md"
        ]
    );

    // Bad parameters.
    for q in [
        "?limit=0",
        "?limit=101",
        "?limit=1000",
        "?view=weird",
        "?page=garbage!",
    ] {
        let r = api.mem_get(&format!("{}{q}", mems(&store)), t).await;
        assert_eq!(r.status, 400, "{q}");
    }

    // The shared client walks all pages (basic and full).
    let c = client(&fake, t);
    let all = c
        .list_all_memories(
            &store,
            &ListMemoriesParams {
                view: Some(MemoryView::Basic),
                limit: Some(20),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 45);
    assert!(all.iter().all(|m| m.content.is_none()));
    assert_eq!(
        all.iter().map(|m| m.path.clone()).collect::<Vec<_>>(),
        expected
    );
    let page_calls = fake
        .requests()
        .iter()
        .filter(|r| r.path == mems(&store) && r.query_param("view").as_deref() == Some("basic"))
        .filter(|r| r.query_param("limit").as_deref() == Some("20"))
        .count();
    assert_eq!(page_calls, 3);
}

#[tokio::test]
async fn memory_cursor_survives_changes_between_pages() {
    let (fake, api) = start().await;
    let s = session(&fake);
    let store = fake.create_memory_store("m");
    for p in ["/a", "/b", "/c", "/d"] {
        fake.put_memory(&store, p, p);
    }
    let r = api
        .mem_get(&format!("{}?limit=2", mems(&store)), &s.sessions_token)
        .await;
    let next = r.body["next_page"].as_str().unwrap().to_string();
    // A memory before the cursor disappears, one after it appears.
    fake.delete_memory_remote(&store, "/a");
    fake.put_memory(&store, "/bb", "x");
    let r = api
        .mem_get(
            &format!("{}?limit=2&page={next}", mems(&store)),
            &s.sessions_token,
        )
        .await;
    let paths: Vec<&str> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/bb", "/c"]);
    assert!(r.body["next_page"].is_string());
}

// --------------------------------------------------------- memory: read/write

#[tokio::test]
async fn memory_create_retrieve_update_with_preconditions() {
    let (fake, api) = start().await;
    let s = session(&fake);
    let t = &s.sessions_token;
    let store = fake.create_memory_store("m");
    let p = mems(&store);

    let r = api
        .mem_post(
            &p,
            t,
            json!({"path": "/prefs/editor.md", "content": "vim\n"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = r.body.clone();
    let id = m["id"].as_str().unwrap().to_string();
    assert_eq!(m["type"], "memory");
    assert_eq!(m["path"], "/prefs/editor.md");
    assert_eq!(m["content"], "vim\n");
    assert_eq!(m["content_sha256"], content_sha256("vim\n").as_str());
    assert_eq!(m["content_size_bytes"], 4);
    let v1 = m["memory_version_id"].as_str().unwrap().to_string();
    assert_eq!(
        fake.memories(&store),
        vec![("/prefs/editor.md".into(), "vim\n".into())]
    );
    assert_eq!(fake.memory_id(&store, "/prefs/editor.md"), Some(id.clone()));

    // Same path again: 409.
    let r = api
        .mem_post(
            &p,
            t,
            json!({"path": "/prefs/editor.md", "content": "emacs"}),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.error_type(), "conflict_error");

    // Bad paths / bodies: 400; too big: 413.
    for body in [
        json!({"path": "prefs/x.md", "content": "x"}),
        json!({"path": "/a/../b.md", "content": "x"}),
        json!({"path": "/a//b.md", "content": "x"}),
        json!({"path": "/a/", "content": "x"}),
        json!({"path": "/", "content": "x"}),
        json!({"path": "/x.md"}),
        json!({"path": "/x.md", "content": 5}),
        json!({"content": "x"}),
    ] {
        let r = api.mem_post(&p, t, body.clone()).await;
        assert_eq!(r.status, 400, "{body}");
        assert_eq!(r.error_type(), "invalid_request_error");
    }
    let exact = "é".repeat(MAX_MEMORY_BYTES / 2);
    let r = api
        .mem_post(&p, t, json!({"path": "/max.md", "content": exact}))
        .await;
    assert_eq!(r.status, 200, "exactly {MAX_MEMORY_BYTES} bytes is fine");
    let r = api
        .mem_post(
            &p,
            t,
            json!({"path": "/big.md", "content": format!("{exact}x")}),
        )
        .await;
    assert_eq!(r.status, 413);
    assert_eq!(r.error_type(), "request_too_large");

    // Retrieve (default view = full, explicit basic).
    let r = api.mem_get(&format!("{p}/{id}"), t).await;
    assert_eq!(r.body["content"], "vim\n");
    let r = api.mem_get(&format!("{p}/{id}?view=basic"), t).await;
    assert!(r.body["content"].is_null());
    assert_eq!(r.body["content_sha256"], content_sha256("vim\n").as_str());
    assert_eq!(api.mem_get(&format!("{p}/mem_nope"), t).await.status, 404);

    // Update with the right precondition.
    let pre = |sha: &str| json!({"type": "content_sha256", "content_sha256": sha});
    let r = api
        .mem_post(
            &format!("{p}/{id}"),
            t,
            json!({"content": "helix\n", "precondition": pre(&content_sha256("vim\n"))}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["id"], id.as_str());
    assert_eq!(r.body["content"], "helix\n");
    assert_eq!(r.body["content_sha256"], content_sha256("helix\n").as_str());
    assert_ne!(r.body["memory_version_id"], v1.as_str());

    // Stale precondition: 409, nothing changes.
    let r = api
        .mem_post(
            &format!("{p}/{id}"),
            t,
            json!({"content": "nano\n", "precondition": pre(&content_sha256("vim\n"))}),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.error_type(), "conflict_error");
    assert_eq!(
        fake.memory_content(&store, "/prefs/editor.md").as_deref(),
        Some("helix\n")
    );
    // Malformed precondition: 400. Unknown id: 404. Too big: 413.
    let r = api
        .mem_post(
            &format!("{p}/{id}"),
            t,
            json!({"content": "x", "precondition": {"type": "etag", "etag": "1"}}),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = api
        .mem_post(&format!("{p}/mem_nope"), t, json!({"content": "x"}))
        .await;
    assert_eq!(r.status, 404);
    let r = api
        .mem_post(
            &format!("{p}/{id}"),
            t,
            json!({"content": "x".repeat(MAX_MEMORY_BYTES + 1)}),
        )
        .await;
    assert_eq!(r.status, 413);
    // No precondition: unconditional.
    let r = api
        .mem_post(&format!("{p}/{id}"), t, json!({"content": "ed\n"}))
        .await;
    assert_eq!(r.status, 200);

    // A remote edit changes the version and makes a stale update fail.
    let before = fake.memory(&store, "/prefs/editor.md").unwrap();
    fake.put_memory(&store, "/prefs/editor.md", "remote\n");
    let after = fake.memory(&store, "/prefs/editor.md").unwrap();
    assert_eq!(after["id"], before["id"]);
    assert_ne!(after["memory_version_id"], before["memory_version_id"]);
    let r = api
        .mem_post(
            &format!("{p}/{id}"),
            t,
            json!({"content": "mine\n", "precondition": pre(&content_sha256("ed\n"))}),
        )
        .await;
    assert_eq!(r.status, 409);

    // The recorded request carries the precondition, the beta and the token.
    let rec = fake
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.method == "POST" && r.path == format!("{p}/{id}"))
        .unwrap();
    assert_eq!(rec.status, 409);
    assert_eq!(
        rec.json().unwrap()["precondition"]["content_sha256"],
        content_sha256("ed\n").as_str()
    );
    assert_eq!(rec.header("anthropic-beta"), Some(MEMORY_BETA));
    assert_eq!(
        rec.header("authorization"),
        Some(format!("Bearer {t}").as_str())
    );
}

#[tokio::test]
async fn memory_delete_with_expected_sha() {
    let (fake, api) = start().await;
    let s = session(&fake);
    let t = &s.sessions_token;
    let store = fake.create_memory_store("m");
    let id = fake.put_memory(&store, "/a.md", "A");
    let p = mems(&store);

    let r = api
        .mem_delete(
            &format!("{p}/{id}?expected_content_sha256={}", content_sha256("B")),
            t,
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.error_type(), "conflict_error");
    assert_eq!(fake.memories(&store).len(), 1);

    let r = api
        .mem_delete(
            &format!("{p}/{id}?expected_content_sha256={}", content_sha256("A")),
            t,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({"type": "memory_deleted", "id": id}));
    assert!(fake.memories(&store).is_empty());

    let r = api.mem_delete(&format!("{p}/{id}"), t).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_type(), "not_found_error");
    // Re-created at the same path: a new id.
    let id2 = fake.put_memory(&store, "/a.md", "A");
    assert_ne!(id2, id);
    // Without expected sha: unconditional.
    assert_eq!(api.mem_delete(&format!("{p}/{id2}"), t).await.status, 200);
    assert!(!fake.delete_memory_remote(&store, "/a.md"));
}

#[tokio::test]
async fn memory_endpoints_with_the_shared_client() {
    let (fake, _api) = start().await;
    let s = session(&fake);
    let store = fake.create_memory_store("m");
    let c = client(&fake, &s.sessions_token);

    let m = c.create_memory(&store, "/x/y.md", "hello").await.unwrap();
    assert_eq!(m.path, "/x/y.md");
    assert_eq!(m.content.as_deref(), Some("hello"));
    assert_eq!(m.content_sha256, Some(content_sha256("hello")));
    assert_eq!(m.content_size_bytes, Some(5));

    let got = c
        .retrieve_memory(&store, &m.id, MemoryView::Full)
        .await
        .unwrap();
    assert_eq!(got.content.as_deref(), Some("hello"));

    let up = c
        .update_memory(&store, &m.id, "world", m.content_sha256.as_deref())
        .await
        .unwrap();
    assert_eq!(up.content_sha256, Some(content_sha256("world")));
    assert_ne!(up.memory_version_id, m.memory_version_id);

    let err = c
        .update_memory(&store, &m.id, "again", m.content_sha256.as_deref())
        .await
        .unwrap_err();
    assert_eq!(err.status, Some(409));
    assert_eq!(err.error_type.as_deref(), Some("conflict_error"));

    let err = c
        .create_memory(&store, "/bad/../path", "x")
        .await
        .unwrap_err();
    assert_eq!(err.status, Some(400));
    let err = c
        .create_memory(&store, "/big", &"x".repeat(MAX_MEMORY_BYTES + 1))
        .await
        .unwrap_err();
    assert_eq!(err.status, Some(413));

    let err = c
        .delete_memory(&store, &m.id, m.content_sha256.as_deref())
        .await
        .unwrap_err();
    assert_eq!(err.status, Some(409));
    assert_eq!(
        c.delete_memory(&store, &m.id, up.content_sha256.as_deref())
            .await
            .unwrap(),
        DeleteOutcome::Deleted
    );
    assert_eq!(
        c.delete_memory(&store, &m.id, None).await.unwrap(),
        DeleteOutcome::NotFound
    );
    assert!(fake.memories(&store).is_empty());
}

#[tokio::test]
async fn memory_faults_and_lost_responses() {
    let (fake, api) = start().await;
    let s = session(&fake);
    let t = &s.sessions_token;
    let store = fake.create_memory_store("m");
    let p = mems(&store);
    fake.set_faults(Faults {
        status_override: vec![
            (Endpoint::MemoryList, 503, 1),
            (Endpoint::MemoryUpdate, 500, 1),
        ],
        lose_response: vec![(Endpoint::MemoryCreate, 1)],
        ..Default::default()
    });
    let r = api.mem_get(&p, t).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.error_type(), "api_error");
    assert_eq!(api.mem_get(&p, t).await.status, 200);

    // Lost response: the create took effect, the client saw a 500.
    let r = api
        .mem_post(&p, t, json!({"path": "/a.md", "content": "A"}))
        .await;
    assert_eq!(r.status, 500);
    assert_eq!(fake.memories(&store), vec![("/a.md".into(), "A".into())]);
    let r = api
        .mem_post(&p, t, json!({"path": "/a.md", "content": "A"}))
        .await;
    assert_eq!(r.status, 409, "the retry sees its own earlier write");

    // An injected failure is not processed.
    let id = fake.memory_id(&store, "/a.md").unwrap();
    let r = api
        .mem_post(&format!("{p}/{id}"), t, json!({"content": "B"}))
        .await;
    assert_eq!(r.status, 500);
    assert_eq!(fake.memory_content(&store, "/a.md").as_deref(), Some("A"));
    let r = api
        .mem_post(&format!("{p}/{id}"), t, json!({"content": "B"}))
        .await;
    assert_eq!(r.status, 200);

    // The shared client retries a 5xx on the listing.
    fake.set_faults(Faults {
        status_override: vec![
            (Endpoint::MemoryList, 500, 1),
            (Endpoint::MemoryRetrieve, 503, 1),
        ],
        ..Default::default()
    });
    let c = client(&fake, t);
    let all = c
        .list_all_memories(&store, &ListMemoriesParams::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    let got = c
        .retrieve_memory(&store, &id, MemoryView::Full)
        .await
        .unwrap();
    assert_eq!(got.content.as_deref(), Some("B"));
    let statuses: Vec<u16> = fake
        .requests()
        .iter()
        .rev()
        .take(4)
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![200, 503, 200, 500]);
}
