//! Integration tests of the fake control plane itself, speaking raw HTTP
//! through reqwest with the headers the spec requires.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cma_tests::fake::{Endpoint, FakeConfig, FakeControlPlane, Faults, ScriptStep, SessionScript};
use futures_util::StreamExt;
use serde_json::{Value, json};

const VERSION: &str = "2026-10-21";
const BETA: &str = "managed-agents-2026-04-01";

/// Percent-encodes a query value (everything but unreserved characters).
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Resp {
    status: u16,
    body: Value,
    headers: reqwest::header::HeaderMap,
}

struct Api {
    http: reqwest::Client,
    base: String,
    env: String,
    key: String,
}

impl Api {
    fn new(fake: &FakeControlPlane) -> Self {
        Api {
            http: reqwest::Client::new(),
            base: fake.base_url(),
            env: fake.environment_id(),
            key: fake.environment_key(),
        }
    }

    fn work(&self, rest: &str) -> String {
        format!("/v1/environments/{}/work{rest}", self.env)
    }

    fn builder(&self, method: reqwest::Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        let mut b = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("anthropic-version", VERSION)
            .header("anthropic-beta", BETA);
        if method == reqwest::Method::POST {
            b = b.header("content-type", "application/json");
        }
        b
    }

    async fn send(b: reqwest::RequestBuilder) -> Resp {
        let r = b.send().await.expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("json body")
        };
        Resp {
            status,
            body,
            headers,
        }
    }

    async fn get(&self, path: &str) -> Resp {
        Self::send(self.builder(reqwest::Method::GET, path, &self.key)).await
    }

    async fn get_as(&self, path: &str, token: &str) -> Resp {
        Self::send(self.builder(reqwest::Method::GET, path, token)).await
    }

    async fn post_as(&self, path: &str, token: &str, body: Option<Value>) -> Resp {
        let mut b = self.builder(reqwest::Method::POST, path, token);
        b = match body {
            Some(v) => b.body(v.to_string()),
            None => b.header("content-length", "0"),
        };
        Self::send(b).await
    }

    async fn post(&self, path: &str, body: Option<Value>) -> Resp {
        self.post_as(path, &self.key.clone(), body).await
    }

    async fn poll(&self, query: &str) -> Resp {
        self.get(&format!("{}{query}", self.work("/poll"))).await
    }

    async fn heartbeat(&self, work_id: &str, token: &str, expected: &str) -> Resp {
        let path = self.work(&format!(
            "/{work_id}/heartbeat?expected_last_heartbeat={}",
            enc(expected)
        ));
        self.post_as(&path, token, None).await
    }

    async fn send_events(&self, sid: &str, token: &str, events: Value) -> Resp {
        self.post_as(
            &format!("/v1/sessions/{sid}/events"),
            token,
            Some(json!({ "events": events })),
        )
        .await
    }
}

fn one_step() -> SessionScript {
    SessionScript::new(vec![ScriptStep::tool("bash", json!({"command": "true"}))])
}

fn error_type(r: &Resp) -> &str {
    r.body["error"]["type"].as_str().unwrap_or("<none>")
}

async fn start() -> (FakeControlPlane, Api) {
    let fake = FakeControlPlane::start(FakeConfig::default()).await;
    let api = Api::new(&fake);
    (fake, api)
}

#[tokio::test]
async fn poll_empty_returns_null_with_request_id() {
    let (_fake, api) = start().await;
    let r = api.poll("").await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_null());
    assert_eq!(r.headers["content-type"], "application/json");
    assert!(
        r.headers["request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_")
    );
}

#[tokio::test]
async fn poll_hands_out_secret_then_ack_starts() {
    let (fake, api) = start().await;
    let s = fake.create_session(one_step());
    let r = api.poll("").await;
    assert_eq!(r.status, 200);
    let item = r.body;
    assert_eq!(item["type"], "work");
    assert_eq!(item["id"], s.work_id.as_str());
    assert_eq!(item["environment_id"], "env_fake01");
    assert_eq!(item["state"], "queued");
    assert_eq!(item["data"], json!({"type": "session", "id": s.session_id}));
    assert_eq!(item["secret"], s.secret.as_str());
    assert_eq!(item["metadata"], json!({}));
    assert!(item["created_at"].as_str().unwrap().ends_with('Z'));
    for k in [
        "acknowledged_at",
        "started_at",
        "latest_heartbeat_at",
        "stop_requested_at",
        "stopped_at",
    ] {
        assert!(item[k].is_null(), "{k}");
    }
    // Secret: base64url without padding of {"sessions_token","api_base_url"}.
    assert!(!s.secret.contains('='));
    let decoded: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&s.secret).unwrap()).unwrap();
    assert_eq!(decoded["sessions_token"], s.sessions_token.as_str());
    assert!(s.sessions_token.starts_with("sk-ant-req-"));
    assert_eq!(decoded["api_base_url"], fake.base_url().as_str());
    assert!(fake.is_pending(&s.work_id));
    assert_eq!(fake.work_state(&s.work_id), "queued");
    // Pending items are not offered again before the reclaim window.
    assert!(api.poll("").await.body.is_null());

    let r = api
        .post(&api.work(&format!("/{}/ack", s.work_id)), None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["state"], "starting");
    assert!(r.body["acknowledged_at"].is_string());
    assert!(r.body["secret"].is_null());
    assert_eq!(fake.work_state(&s.work_id), "starting");
    assert!(fake.work_item(&s.work_id)["secret"].is_null());

    let again = api
        .post(&api.work(&format!("/{}/ack", s.work_id)), None)
        .await;
    assert_eq!(again.status, 409);
    assert_eq!(error_type(&again), "conflict_error");
    let unknown = api.post(&api.work("/work_nope/ack"), None).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(error_type(&unknown), "not_found_error");

    // Healthcheck items carry a healthcheck payload.
    let hc = fake.enqueue_healthcheck();
    let r = api.poll("").await;
    assert_eq!(r.body["id"], hc.as_str());
    assert_eq!(r.body["data"]["type"], "healthcheck");
    assert!(r.body["data"]["id"].as_str().unwrap().starts_with("hc_"));
}

#[tokio::test]
async fn poll_validates_query() {
    let (_fake, api) = start().await;
    for q in [
        "?block_ms=0",
        "?block_ms=1000",
        "?block_ms=abc",
        "?reclaim_older_than_ms=0",
        "?reclaim_older_than_ms=-5",
    ] {
        let r = api.poll(q).await;
        assert_eq!(r.status, 400, "{q}");
        assert_eq!(error_type(&r), "invalid_request_error");
        assert_eq!(r.body["type"], "error");
    }
    assert_eq!(api.poll("?block_ms=1").await.status, 200);
}

#[tokio::test]
async fn long_poll_wakes_on_enqueue() {
    let (fake, api) = start().await;
    let started = Instant::now();
    let poller = tokio::spawn(async move { api.poll("?block_ms=999").await.body });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let s = fake.create_session(one_step());
    let item = poller.await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(item["id"], s.work_id.as_str());
    assert!(elapsed < Duration::from_millis(900), "{elapsed:?}");

    // Without an item the long poll returns null after ~block_ms.
    let api = Api::new(&fake);
    let t = Instant::now();
    let r = api.poll("?block_ms=200").await;
    assert!(r.body.is_null());
    assert!(
        t.elapsed() >= Duration::from_millis(190),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn unacked_item_is_reclaimed() {
    let (fake, api) = start().await;
    let s = fake.create_session(one_step());
    let q = "?reclaim_older_than_ms=60";
    assert_eq!(api.poll(q).await.body["id"], s.work_id.as_str());
    assert!(api.poll(q).await.body.is_null());
    tokio::time::sleep(Duration::from_millis(90)).await;
    let again = api.poll(q).await.body;
    assert_eq!(again["id"], s.work_id.as_str());
    assert_eq!(again["secret"], s.secret.as_str());
}

#[tokio::test]
async fn heartbeat_cas_chain_and_412() {
    let (fake, api) = start().await;
    let s = fake.create_session(one_step());
    api.poll("").await;
    api.post(&api.work(&format!("/{}/ack", s.work_id)), None)
        .await;

    let missing = api
        .post_as(
            &api.work(&format!("/{}/heartbeat", s.work_id)),
            &s.sessions_token,
            None,
        )
        .await;
    assert_eq!(missing.status, 400);

    let r1 = api
        .heartbeat(&s.work_id, &s.sessions_token, "NO_HEARTBEAT")
        .await;
    assert_eq!(r1.status, 200, "{}", r1.body);
    assert_eq!(r1.body["type"], "work_heartbeat");
    assert_eq!(r1.body["state"], "active");
    assert_eq!(r1.body["lease_extended"], true);
    assert_eq!(r1.body["ttl_seconds"], 60);
    let t1 = r1.body["last_heartbeat"].as_str().unwrap().to_string();
    assert_eq!(t1.len(), "2026-05-01T12:00:31.123456+00:00".len(), "{t1}");
    assert!(t1.ends_with("+00:00") && t1.contains('.'), "{t1}");
    let item = fake.work_item(&s.work_id);
    assert_eq!(item["state"], "active");
    assert!(item["started_at"].is_string());
    assert!(item["latest_heartbeat_at"].is_string());

    // A second runner presenting NO_HEARTBEAT loses (split-brain guard).
    let dup = api
        .heartbeat(&s.work_id, &s.sessions_token, "NO_HEARTBEAT")
        .await;
    assert_eq!(dup.status, 412);

    let r2 = api.heartbeat(&s.work_id, &s.sessions_token, &t1).await;
    assert_eq!(r2.status, 200);
    let t2 = r2.body["last_heartbeat"].as_str().unwrap().to_string();
    assert_ne!(t1, t2);
    // Environment key works too (fallback credential).
    let r3 = api.heartbeat(&s.work_id, &api.key, &t2).await;
    assert_eq!(r3.status, 200);
    let t3 = r3.body["last_heartbeat"].as_str().unwrap().to_string();

    // Stale token → documented 412 body.
    let stale = api.heartbeat(&s.work_id, &s.sessions_token, &t1).await;
    assert_eq!(stale.status, 412);
    let err = &stale.body["error"];
    assert_eq!(stale.body["type"], "error");
    assert_eq!(
        err["details"]["error_code"],
        "heartbeat_precondition_failed"
    );
    let cs = &err["details"]["current_state"];
    assert_eq!(cs["state"], "active");
    assert_eq!(cs["ttl_seconds"], 60);
    assert_eq!(cs["last_heartbeat"], t3.as_str());
    assert_eq!(cs["lease_extended"], false);

    // An unencoded '+' reads as a space on the server → mismatch.
    let raw = api
        .post_as(
            &api.work(&format!(
                "/{}/heartbeat?expected_last_heartbeat={t3}",
                s.work_id
            )),
            &s.sessions_token,
            None,
        )
        .await;
    assert_eq!(raw.status, 412);
    assert_eq!(fake.last_heartbeat(&s.work_id), t3);
}

#[tokio::test]
async fn lease_expiry_requeues_item() {
    let fake = FakeControlPlane::start(FakeConfig {
        lease_ttl_seconds: 1,
        ..Default::default()
    })
    .await;
    let api = Api::new(&fake);
    let s = fake.create_session(one_step());
    api.poll("").await;
    api.post(&api.work(&format!("/{}/ack", s.work_id)), None)
        .await;
    let r = api
        .heartbeat(&s.work_id, &s.sessions_token, "NO_HEARTBEAT")
        .await;
    assert_eq!(r.body["ttl_seconds"], 1);
    let token = r.body["last_heartbeat"].as_str().unwrap().to_string();
    // The background tick lapses it without any request.
    assert!(
        fake.wait_until(Duration::from_secs(3), |f| f.work_state(&s.work_id)
            == "queued")
            .await
    );
    let late = api.heartbeat(&s.work_id, &s.sessions_token, &token).await;
    assert_eq!(late.status, 412);
    let cs = &late.body["error"]["details"]["current_state"];
    assert_eq!(cs["state"], "queued");
    assert!(cs["last_heartbeat"].is_null());
    let again = api.poll("").await.body;
    assert_eq!(again["id"], s.work_id.as_str());
    assert!(again["acknowledged_at"].is_null());

    // force_requeue invalidates the current token immediately.
    let s2 = fake.create_session(one_step());
    fake.ack(&s2.work_id).unwrap();
    let r = api
        .heartbeat(&s2.work_id, &s2.sessions_token, "NO_HEARTBEAT")
        .await;
    let t = r.body["last_heartbeat"].as_str().unwrap().to_string();
    fake.force_requeue(&s2.work_id);
    assert_eq!(fake.work_state(&s2.work_id), "queued");
    assert_eq!(
        api.heartbeat(&s2.work_id, &s2.sessions_token, &t)
            .await
            .status,
        412
    );
}

#[tokio::test]
async fn stop_force_graceful_and_conflict() {
    let (fake, api) = start().await;
    let a = fake.create_session(one_step());
    let b = fake.create_session(one_step());
    fake.ack(&a.work_id).unwrap();
    fake.ack(&b.work_id).unwrap();

    let stop_a = api.work(&format!("/{}/stop", a.work_id));
    let r = api
        .post_as(&stop_a, &a.sessions_token, Some(json!({"force": true})))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["state"], "stopped");
    assert!(r.body["stopped_at"].is_string());
    let r = api
        .post_as(&stop_a, &a.sessions_token, Some(json!({"force": true})))
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(error_type(&r), "conflict_error");
    assert_eq!(fake.stop_calls(&a.work_id), vec![json!({"force": true}); 2]);
    // Heartbeat on a stopped item: 200, stopped, not extended.
    let hb = api
        .heartbeat(&a.work_id, &a.sessions_token, "whatever")
        .await;
    assert_eq!(hb.status, 200);
    assert_eq!(hb.body["state"], "stopped");
    assert_eq!(hb.body["lease_extended"], false);

    // Graceful stop → stopping; heartbeats skip the comparison and report it.
    let t = api
        .heartbeat(&b.work_id, &b.sessions_token, "NO_HEARTBEAT")
        .await;
    assert_eq!(t.status, 200);
    let r = api
        .post(&api.work(&format!("/{}/stop", b.work_id)), Some(json!({})))
        .await;
    assert_eq!(r.body["state"], "stopping");
    assert!(r.body["stop_requested_at"].is_string());
    let hb = api.heartbeat(&b.work_id, &b.sessions_token, "stale").await;
    assert_eq!(hb.status, 200);
    assert_eq!(hb.body["state"], "stopping");
    assert_eq!(hb.body["lease_extended"], true);

    // request_stop helper.
    let c = fake.create_session(one_step());
    fake.ack(&c.work_id).unwrap();
    fake.request_stop(&c.work_id);
    let hb = api
        .heartbeat(&c.work_id, &c.sessions_token, "NO_HEARTBEAT")
        .await;
    assert_eq!(hb.body["state"], "stopping");
}

#[tokio::test]
async fn stats_and_list() {
    let (fake, api) = start().await;
    let empty = api.get(&api.work("/stats")).await.body;
    assert_eq!(
        empty,
        json!({"type":"work_queue_stats","depth":0,"pending":0,"oldest_queued_at":null,"workers_polling":0})
    );
    let ids: Vec<String> = (0..3)
        .map(|_| fake.create_session(one_step()).work_id)
        .collect();
    let r = api
        .http
        .get(format!("{}{}", api.base, api.work("/poll")))
        .bearer_auth(&api.key)
        .header("anthropic-version", VERSION)
        .header("anthropic-beta", BETA)
        .header("Anthropic-Worker-ID", "worker-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    api.poll("").await; // no worker id: not counted
    let st = api.get(&api.work("/stats")).await.body;
    assert_eq!(st["depth"], 1);
    assert_eq!(st["pending"], 2);
    assert_eq!(st["workers_polling"], 1);
    assert!(st["oldest_queued_at"].as_str().unwrap().ends_with('Z'));
    fake.ack(&ids[0]).unwrap();
    let st = fake.stats();
    assert_eq!(
        (st["depth"].clone(), st["pending"].clone()),
        (json!(1), json!(1))
    );

    // List pages through all items.
    let mut seen = Vec::new();
    let mut page: Option<String> = None;
    loop {
        let q = match &page {
            Some(p) => format!("?limit=2&page={}", enc(p)),
            None => "?limit=2".into(),
        };
        let r = api.get(&format!("{}{q}", api.work(""))).await.body;
        for w in r["data"].as_array().unwrap() {
            assert!(w["secret"].is_null());
            seen.push(w["id"].as_str().unwrap().to_string());
        }
        match r["next_page"].as_str() {
            Some(p) => page = Some(p.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    let one = api.get(&api.work(&format!("/{}", ids[0]))).await;
    assert_eq!(one.body["state"], "starting");
}

#[tokio::test]
async fn credentials_and_headers_are_enforced() {
    let (fake, api) = start().await;
    let a = fake.create_session(one_step());
    let b = fake.create_session(one_step());
    // Token A on item B / session B → 403.
    let r = api
        .heartbeat(&b.work_id, &a.sessions_token, "NO_HEARTBEAT")
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(error_type(&r), "permission_error");
    let r = api
        .get_as(&format!("/v1/sessions/{}", b.session_id), &a.sessions_token)
        .await;
    assert_eq!(r.status, 403);
    // Token A on its own session works; on poll/ack/list it does not.
    let r = api
        .get_as(&format!("/v1/sessions/{}", a.session_id), &a.sessions_token)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["type"], "session");
    assert_eq!(r.body["status"], "running");
    assert_eq!(
        r.body["agent"]["tools"][0]["type"],
        "agent_toolset_20260401"
    );
    assert_eq!(
        api.get_as(&api.work("/poll"), &a.sessions_token)
            .await
            .status,
        403
    );
    assert_eq!(
        api.post_as(
            &api.work(&format!("/{}/ack", a.work_id)),
            &a.sessions_token,
            None
        )
        .await
        .status,
        403
    );
    // Unknown token → 401; wrong environment → 404.
    let r = api.get_as(&api.work("/poll"), "sk-ant-env-WRONG").await;
    assert_eq!(r.status, 401);
    assert_eq!(error_type(&r), "authentication_error");
    assert!(r.headers.contains_key("request-id"));
    let r = api.get("/v1/environments/env_other/work/poll").await;
    assert_eq!(r.status, 404);

    let url = format!("{}{}", api.base, api.work("/poll"));
    let raw = |b: reqwest::RequestBuilder| async move {
        let r = b.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap())
    };
    // Missing beta / version.
    let (st, body) = raw(api
        .http
        .get(&url)
        .bearer_auth(&api.key)
        .header("anthropic-version", VERSION))
    .await;
    assert_eq!(st, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("anthropic-beta")
    );
    let (st, body) = raw(api
        .http
        .get(&url)
        .bearer_auth(&api.key)
        .header("anthropic-beta", BETA))
    .await;
    assert_eq!(st, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("anthropic-version")
    );
    // Beta list containing the right value is fine.
    let (st, _) = raw(api
        .http
        .get(&url)
        .bearer_auth(&api.key)
        .header("anthropic-version", VERSION)
        .header("anthropic-beta", format!("other-beta,{BETA}")))
    .await;
    assert_eq!(st, 200);
    // Skills with a beta header → 400.
    let (st, body) = raw(api
        .http
        .get(format!("{}/v1/skills/skill_1/versions/latest", api.base))
        .bearer_auth(&api.key)
        .header("anthropic-version", VERSION)
        .header("anthropic-beta", "skills-2025-10-02"))
    .await;
    assert_eq!(st, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("anthropic-beta")
    );
    // POST without Content-Type → 400.
    let (st, body) = raw(api
        .http
        .post(format!(
            "{}{}",
            api.base,
            api.work(&format!("/{}/ack", a.work_id))
        ))
        .bearer_auth(&api.key)
        .header("anthropic-version", VERSION)
        .header("anthropic-beta", BETA))
    .await;
    assert_eq!(st, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Content-Type")
    );
    // No Authorization at all → 401.
    let (st, _) = raw(api
        .http
        .get(&url)
        .header("anthropic-version", VERSION)
        .header("anthropic-beta", BETA))
    .await;
    assert_eq!(st, 401);
}

#[tokio::test]
async fn event_list_pagination_order_and_filter() {
    let (fake, api) = start().await;
    let s = fake.create_session(one_step());
    for i in 0..25 {
        fake.push_event(
            &s.session_id,
            json!({"type": "agent.message", "content": [{"type":"text","text": i.to_string()}]}),
        );
    }
    let all = fake.events(&s.session_id);
    assert_eq!(all.len(), 3 + 25);
    assert_eq!(all[0]["type"], "user.message");
    assert_eq!(all[1]["type"], "session.status_running");
    assert_eq!(all[2]["type"], "agent.tool_use");

    let fetch = |order: &'static str, extra: &'static str| {
        let api = &api;
        let sid = s.session_id.clone();
        async move {
            let mut out = Vec::new();
            let mut page: Option<String> = None;
            let mut pages = 0;
            loop {
                let mut q = format!("?limit=10&order={order}{extra}");
                if let Some(p) = &page {
                    q.push_str(&format!("&page={}", enc(p)));
                }
                let r = api.get(&format!("/v1/sessions/{sid}/events{q}")).await;
                assert_eq!(r.status, 200, "{}", r.body);
                pages += 1;
                out.extend(r.body["data"].as_array().unwrap().iter().cloned());
                match r.body["next_page"].as_str() {
                    Some(p) => page = Some(p.to_string()),
                    None => break,
                }
            }
            (out, pages)
        }
    };
    let (asc, pages) = fetch("asc", "").await;
    assert_eq!(asc, all);
    assert_eq!(pages, 3);
    let (desc, _) = fetch("desc", "").await;
    let mut rev = all.clone();
    rev.reverse();
    assert_eq!(desc, rev);
    let (calls, _) = fetch(
        "asc",
        "&types%5B%5D=agent.tool_use&types%5B%5D=user.message",
    )
    .await;
    assert_eq!(
        calls
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["user.message", "agent.tool_use"]
    );
    // Default limit 20, processed_at present everywhere.
    let r = api
        .get(&format!("/v1/sessions/{}/events", s.session_id))
        .await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 20);
    assert!(
        r.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["processed_at"].is_string())
    );
    for bad in ["?limit=0", "?limit=1001", "?order=up", "?page=garbage"] {
        let r = api
            .get(&format!("/v1/sessions/{}/events{bad}", s.session_id))
            .await;
        assert_eq!(r.status, 400, "{bad}");
    }
}

/// Reads SSE frames `(event, data)` until `stop` says so or `timeout` passes.
async fn read_frames(
    resp: reqwest::Response,
    timeout: Duration,
    stop: impl Fn(&[(String, String)]) -> bool,
) -> (Vec<(String, String)>, bool) {
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::<u8>::new();
    let mut frames = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next()).await;
        let chunk = match next {
            Err(_) => return (frames, false),
            Ok(None) => return (frames, true),
            Ok(Some(c)) => c.expect("chunk"),
        };
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.windows(2).position(|w| w == b"\n\n") {
            let raw: Vec<u8> = buf.drain(..pos + 2).collect();
            let text = String::from_utf8(raw).unwrap();
            let mut ev = String::new();
            let mut data = String::new();
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    ev = v.to_string();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = v.to_string();
                }
            }
            frames.push((ev, data));
        }
        if stop(&frames) {
            return (frames, false);
        }
    }
}

async fn open_stream(api: &Api, sid: &str, token: &str) -> reqwest::Response {
    let r = api
        .builder(
            reqwest::Method::GET,
            &format!("/v1/sessions/{sid}/events/stream"),
            token,
        )
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    r
}

#[tokio::test]
async fn sse_delivers_only_new_events_and_pings() {
    let fake = FakeControlPlane::start(FakeConfig {
        ping_interval: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    let api = Api::new(&fake);
    let s = fake.create_session(one_step());
    fake.push_event(
        &s.session_id,
        json!({"type": "agent.message", "marker": "before"}),
    );
    let resp = open_stream(&api, &s.session_id, &s.sessions_token).await;
    assert_eq!(fake.open_streams(&s.session_id), 1);
    let pushed = fake.push_event(
        &s.session_id,
        json!({"type": "agent.message", "marker": "after"}),
    );
    assert!(pushed["id"].as_str().unwrap().starts_with("sevt_"));
    let (frames, _) = read_frames(resp, Duration::from_secs(3), |f| {
        f.iter().any(|(e, _)| e == "ping") && f.iter().any(|(e, _)| e == "agent.message")
    })
    .await;
    assert!(
        frames.iter().any(|(e, d)| e == "ping" && d == "{}"),
        "{frames:?}"
    );
    let msgs: Vec<Value> = frames
        .iter()
        .filter(|(e, _)| e == "agent.message")
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(msgs, vec![pushed]);

    // Terminated: the event is delivered, then the stream ends.
    let resp = open_stream(&api, &s.session_id, &api.key).await;
    fake.terminate_session(&s.session_id);
    let (frames, ended) = read_frames(resp, Duration::from_secs(3), |_| false).await;
    assert!(ended);
    assert_eq!(frames.last().unwrap().0, "session.status_terminated");
    assert_eq!(fake.session(&s.session_id)["status"], "terminated");
    // Terminated sessions take no events.
    let r = api
        .send_events(
            &s.session_id,
            &s.sessions_token,
            json!([{"type": "user.message", "content": []}]),
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn sse_stream_faults() {
    let (fake, api) = start().await;
    let s = fake.create_session(one_step());
    fake.set_faults(Faults {
        stream_drop_after: Some(2),
        split_frames: true,
        ..Default::default()
    });
    let resp = open_stream(&api, &s.session_id, &s.sessions_token).await;
    for i in 0..3 {
        fake.push_event(&s.session_id, json!({"type": "agent.message", "n": i}));
    }
    let (frames, ended) = read_frames(resp, Duration::from_secs(3), |_| false).await;
    assert!(ended);
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(serde_json::from_str::<Value>(&frames[1].1).unwrap()["n"], 1);

    fake.set_faults(Faults {
        stream_error_after: Some(1),
        ..Default::default()
    });
    let resp = open_stream(&api, &s.session_id, &s.sessions_token).await;
    fake.push_event(&s.session_id, json!({"type": "agent.message"}));
    let (frames, ended) = read_frames(resp, Duration::from_secs(3), |_| false).await;
    assert!(ended);
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[1].0, "error");
    let err: Value = serde_json::from_str(&frames[1].1).unwrap();
    assert_eq!(err["type"], "error");
}

#[tokio::test]
async fn send_events_validation_and_duplicates() {
    let (fake, api) = start().await;
    let s = fake.create_session(SessionScript::new(vec![
        ScriptStep::tool("bash", json!({"command": "ls"})),
        ScriptStep::custom("lookup", json!({"q": "x"})),
    ]));
    let call = fake.events(&s.session_id)[2].clone();
    assert_eq!(call["type"], "agent.tool_use");
    assert_eq!(call["name"], "bash");
    assert_eq!(call["input"], json!({"command": "ls"}));
    let id = call["id"].as_str().unwrap().to_string();
    let tok = &s.sessions_token;

    let r = api
        .send_events(
            &s.session_id,
            tok,
            json!([{"type":"user.custom_tool_result","custom_tool_use_id": id,"content":[]}]),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("kind mismatch")
    );
    let r = api
        .send_events(
            &s.session_id,
            tok,
            json!([{"type":"user.tool_result","tool_use_id":"sevt_unknown","content":[]}]),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(error_type(&r), "invalid_request_error");
    let r = api
        .send_events(
            &s.session_id,
            tok,
            json!([{"type":"user.tool_result","tool_use_id": id,"content":"text"}]),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = api
        .send_events(
            &s.session_id,
            tok,
            json!([{"type":"agent.message","content":[]}]),
        )
        .await;
    assert_eq!(r.status, 400);

    let result = json!({"type":"user.tool_result","tool_use_id": id,"is_error":false,"content":[{"type":"text","text":"ok"}]});
    let r = api
        .send_events(&s.session_id, tok, json!([result.clone()]))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let stored = &r.body["data"][0];
    assert!(stored["id"].as_str().unwrap().starts_with("sevt_"));
    assert!(stored["processed_at"].is_string());
    assert_eq!(stored["tool_use_id"], id.as_str());

    let dup = api.send_events(&s.session_id, tok, json!([result])).await;
    assert_eq!(dup.status, 400);
    assert_eq!(
        dup.body["error"]["details"]["error_code"],
        "tool_use_already_answered"
    );
    assert_eq!(fake.duplicate_results(&s.session_id), 1);
    assert_eq!(fake.results(&s.session_id).len(), 1);

    // The custom call is next; a builtin result for it is a kind mismatch.
    let custom = fake.events(&s.session_id).last().unwrap().clone();
    assert_eq!(custom["type"], "agent.custom_tool_use");
    let cid = custom["id"].as_str().unwrap().to_string();
    let r = api
        .send_events(
            &s.session_id,
            tok,
            json!([{"type":"user.tool_result","tool_use_id": cid}]),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("kind mismatch")
    );
}

#[tokio::test]
async fn scripted_session_runs_to_end_turn() {
    let (fake, api) = start().await;
    let s = fake.create_session(SessionScript::new(vec![
        ScriptStep::tool("bash", json!({"command": "echo 1"})),
        ScriptStep::tool("read", json!({"file_path": "a.txt"})).with_permission("ask"),
        ScriptStep::tool("write", json!({"file_path": "b", "content": ""})).with_permission("deny"),
        ScriptStep::custom("lookup", json!({})).with_thread("sthr_1"),
    ]));
    let sid = &s.session_id;
    let last_call = |fake: &FakeControlPlane| {
        fake.events(sid)
            .into_iter()
            .rev()
            .find(|e| e["type"].as_str().unwrap().ends_with("tool_use"))
            .unwrap()
    };
    let answer = |id: String| {
        let api = &api;
        let tok = s.sessions_token.clone();
        async move {
            let r = api
                .send_events(sid, &tok, json!([{"type":"user.tool_result","tool_use_id": id,"content":[{"type":"text","text":"ok"}]}]))
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
        }
    };
    let c0 = last_call(&fake);
    assert_eq!(c0["name"], "bash");
    answer(c0["id"].as_str().unwrap().into()).await;

    let c1 = last_call(&fake);
    assert_eq!(c1["name"], "read");
    assert_eq!(c1["evaluated_permission"], "ask");
    let idle = fake.events(sid).last().unwrap().clone();
    assert_eq!(idle["type"], "session.status_idle");
    assert_eq!(idle["stop_reason"]["type"], "requires_action");
    assert_eq!(idle["stop_reason"]["event_ids"], json!([c1["id"]]));
    assert_eq!(fake.session_status(sid), "idle");
    fake.confirm(sid, c1["id"].as_str().unwrap(), true);
    assert_eq!(fake.session_status(sid), "running");
    answer(c1["id"].as_str().unwrap().into()).await;

    // The deny step was emitted and resolved server-side; the custom call follows.
    let types: Vec<String> = fake
        .events(sid)
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    let write = fake
        .events(sid)
        .into_iter()
        .find(|e| e["name"] == "write")
        .unwrap();
    assert_eq!(write["evaluated_permission"], "deny");
    let c3 = last_call(&fake);
    assert_eq!(c3["type"], "agent.custom_tool_use", "{types:?}");
    assert_eq!(c3["session_thread_id"], "sthr_1");
    assert!(!fake.script_finished(sid));
    assert_eq!(
        fake.open_calls(sid),
        vec![c3["id"].as_str().unwrap().to_string()]
    );
    // Posting a result for the denied call is a duplicate.
    let r = api
        .send_events(
            sid,
            &s.sessions_token,
            json!([{"type":"user.tool_result","tool_use_id": write["id"]}]),
        )
        .await;
    assert_eq!(r.status, 400);

    fake.answer_custom(sid, c3["id"].as_str().unwrap(), "42");
    assert!(fake.script_finished(sid));
    let last = fake.events(sid).last().unwrap().clone();
    assert_eq!(last["type"], "session.status_idle");
    assert_eq!(last["stop_reason"], json!({"type": "end_turn"}));
    assert_eq!(fake.session_status(sid), "idle");
    assert_eq!(fake.results(sid).len(), 3);

    // Deleted sessions answer 404.
    fake.delete_session(sid);
    assert_eq!(api.get(&format!("/v1/sessions/{sid}")).await.status, 404);
}

#[tokio::test]
async fn seeded_faults_are_deterministic() {
    let (fake, api) = start().await;
    let faults = Faults {
        seed: 42,
        error_rate: vec![(Endpoint::Poll, 0.5)],
        retry_after_ms: Some(7),
        ..Default::default()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        fake.set_faults(faults.clone());
        let mut statuses = Vec::new();
        for _ in 0..16 {
            let r = api.poll("").await;
            if r.status == 500 {
                assert_eq!(r.body["error"]["type"], "api_error");
                assert_eq!(r.body["error"]["message"], "injected fault");
                assert_eq!(r.headers["retry-after-ms"], "7");
            }
            statuses.push(r.status);
        }
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(
        runs[0].contains(&500) && runs[0].contains(&200),
        "{:?}",
        runs[0]
    );
    // Other endpoints are unaffected.
    assert_eq!(api.get(&api.work("/stats")).await.status, 200);

    // Status overrides count down.
    let a = fake.create_session(one_step());
    let b = fake.create_session(one_step());
    fake.set_faults(Faults {
        status_override: vec![
            (Endpoint::Poll, 429, 1),
            (Endpoint::Poll, 404, 1),
            (Endpoint::Heartbeat, 412, 1),
        ],
        ..Default::default()
    });
    let r = api.poll("").await;
    assert_eq!((r.status, error_type(&r)), (429, "rate_limit_error"));
    let r = api.poll("").await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.body["error"]["message"],
        "EnvironmentInstance not found for session"
    );
    assert_eq!(fake.work_state(&a.work_id), "stopped"); // consumed
    assert_eq!(api.poll("").await.body["id"], b.work_id.as_str());
    fake.ack(&b.work_id).unwrap();
    let r = api
        .heartbeat(&b.work_id, &b.sessions_token, "NO_HEARTBEAT")
        .await;
    assert_eq!(r.status, 412);
    assert_eq!(
        r.body["error"]["details"]["error_code"],
        "heartbeat_precondition_failed"
    );
    let r = api
        .heartbeat(&b.work_id, &b.sessions_token, "NO_HEARTBEAT")
        .await;
    assert_eq!(r.status, 200);

    // Heartbeat-driven faults.
    fake.set_faults(Faults {
        stopping_after_heartbeats: Some(2),
        lease_extended_false_after: Some(1),
        ..Default::default()
    });
    let t = r.body["last_heartbeat"].as_str().unwrap().to_string();
    let r = api.heartbeat(&b.work_id, &b.sessions_token, &t).await;
    assert_eq!(
        (r.body["state"].clone(), r.body["lease_extended"].clone()),
        (json!("active"), json!(false))
    );
    let t = r.body["last_heartbeat"].as_str().unwrap().to_string();
    let r = api.heartbeat(&b.work_id, &b.sessions_token, &t).await;
    assert_eq!(r.body["state"], "stopping");

    // Latency.
    fake.set_faults(Faults {
        latency: Some(Duration::from_millis(150)),
        ..Default::default()
    });
    let t0 = Instant::now();
    api.get(&api.work("/stats")).await;
    assert!(t0.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn requests_are_recorded() {
    let (fake, api) = start().await;
    let s = fake.create_session(one_step());
    fake.ack(&s.work_id).unwrap();
    fake.set_faults(Faults {
        status_override: vec![(Endpoint::Stats, 503, 1)],
        ..Default::default()
    });
    api.get(&api.work("/stats")).await;
    let r = api
        .heartbeat(&s.work_id, &s.sessions_token, "NO_HEARTBEAT")
        .await;
    let token = r.body["last_heartbeat"].as_str().unwrap().to_string();
    api.heartbeat(&s.work_id, &s.sessions_token, &token).await;

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(reqs[0].path, "/v1/environments/env_fake01/work/stats");
    assert_eq!(reqs[0].status, 503);
    assert_eq!(reqs[0].query, "");
    let hb = &reqs[2];
    assert_eq!(hb.method, "POST");
    assert_eq!(hb.status, 200);
    assert!(hb.query.contains("%2B00%3A00"), "{}", hb.query);
    assert_eq!(
        hb.query_pairs(),
        vec![("expected_last_heartbeat".to_string(), token)]
    );
    assert_eq!(
        hb.header("Authorization"),
        Some(format!("Bearer {}", s.sessions_token).as_str())
    );
    assert_eq!(hb.header("anthropic-version"), Some(VERSION));
    assert_eq!(hb.header("anthropic-beta"), Some(BETA));
    assert!(hb.headers.iter().all(|(k, _)| *k == k.to_ascii_lowercase()));
    assert!(hb.body.is_empty());
    assert_eq!(hb.header("content-length"), Some("0"));
    assert_eq!(hb.header("content-type"), Some("application/json"));
    assert!(reqs[1].at <= hb.at);

    fake.clear_requests();
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn heartbeat_claims_queued_item_and_enqueue_for_session() {
    let (fake, api) = start().await;
    let s = fake.create_session(one_step());
    // A runner started straight from create_session (no drain) claims the item.
    let r = api
        .heartbeat(&s.work_id, &s.sessions_token, "NO_HEARTBEAT")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(fake.work_state(&s.work_id), "active");
    assert!(api.poll("").await.body.is_null());
    let again = fake.enqueue_for_session(&s.session_id);
    assert_eq!(again.session_id, s.session_id);
    assert_ne!(again.sessions_token, s.sessions_token);
    let r = api
        .get_as(
            &format!("/v1/sessions/{}", s.session_id),
            &again.sessions_token,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(api.poll("").await.body["id"], again.work_id.as_str());
}
