//! Wire test: the exact method, path, query and headers of every request the shared
//! client sends, compared with the spec's [wire] facts (control-plane.md §2, §5, §10).

use std::time::Duration;

use cma_shared::client::{
    ListEventsParams, ListMemoriesParams, MemoryView, NO_HEARTBEAT, Order, PollParams, USER_AGENT,
};
use cma_shared::types::{ContentBlock, OutgoingEvent};
use cma_shared::{ClientConfig, ControlPlane, SecretString};
use cma_tests::fake::{FakeConfig, FakeControlPlane, RecordedRequest, ScriptStep, SessionScript};
use serde_json::json;

const MA_BETA: &str = "managed-agents-2026-04-01";
const MEM_BETA: &str = "agent-memory-2026-07-22";

#[derive(Debug)]
struct Expect {
    method: &'static str,
    path: String,
    query: String,
    beta: Option<&'static str>,
    /// `Some(body)` for POSTs.
    body: Option<String>,
    accept: &'static str,
    worker_id: bool,
}

fn check(r: &RecordedRequest, e: &Expect, bearer: &str) {
    let ctx = format!("{} {}?{}", r.method, r.path, r.query);
    assert_eq!(r.method, e.method, "{ctx}");
    assert_eq!(r.path, e.path, "{ctx}");
    assert_eq!(r.query, e.query, "{ctx}");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {bearer}").as_str()),
        "{ctx}"
    );
    assert_eq!(r.header("x-api-key"), None, "{ctx}: bearer only");
    assert_eq!(r.header("anthropic-version"), Some("2026-10-21"), "{ctx}");
    assert_eq!(r.header("anthropic-beta"), e.beta, "{ctx}");
    assert_eq!(r.header("accept"), Some(e.accept), "{ctx}");
    assert_eq!(r.header("user-agent"), Some(USER_AGENT), "{ctx}");
    assert_eq!(
        r.header("anthropic-worker-id").is_some(),
        e.worker_id,
        "{ctx}"
    );
    match &e.body {
        Some(body) => {
            assert_eq!(r.header("content-type"), Some("application/json"), "{ctx}");
            assert_eq!(
                r.header("content-length"),
                Some(body.len().to_string().as_str()),
                "{ctx}"
            );
            assert_eq!(String::from_utf8_lossy(&r.body), *body, "{ctx}");
        }
        None => {
            assert_eq!(r.header("content-type"), None, "{ctx}");
            assert!(r.body.is_empty(), "{ctx}");
        }
    }
}

fn get(path: String, query: &str, beta: Option<&'static str>) -> Expect {
    Expect {
        method: "GET",
        path,
        query: query.into(),
        beta,
        body: None,
        accept: "application/json",
        worker_id: false,
    }
}

fn post(path: String, query: &str, beta: Option<&'static str>, body: &str) -> Expect {
    Expect {
        method: "POST",
        body: Some(body.into()),
        ..get(path, query, beta)
    }
}

#[tokio::test]
async fn every_request_has_the_exact_wire_shape() {
    let fake = FakeControlPlane::start(FakeConfig {
        ping_interval: Duration::from_millis(50),
        ..FakeConfig::default()
    })
    .await;
    let env = fake.environment_id();
    let key = fake.environment_key();
    let created = fake.create_session(SessionScript::new(vec![ScriptStep::tool(
        "bash",
        json!({"command": "echo hi"}),
    )]));
    let c = ControlPlane::new(
        ClientConfig::with_base_url(Some(&fake.base_url())),
        SecretString::new(key.clone()),
    )
    .unwrap();
    let w = format!("/v1/environments/{env}/work");
    let s = format!("/v1/sessions/{}", created.session_id);

    // --- environment key calls (webhook drain) ---
    let params = PollParams {
        block_ms: None,
        reclaim_older_than_ms: Some(15000),
    };
    c.poll(&env, params, "lambda-0123456789ab")
        .await
        .unwrap()
        .unwrap();
    c.ack(&env, &created.work_id).await.unwrap();
    c.stats(&env).await.unwrap();
    c.list_work(&env, Some(10), None).await.unwrap();
    let _ = c.retrieve_work(&env, &created.work_id).await;
    let _ = c
        .update_work_metadata(&env, &created.work_id, &json!({"k": "v", "gone": null}))
        .await;
    c.poll(
        &env,
        PollParams {
            block_ms: Some(250),
            reclaim_older_than_ms: None,
        },
        "w",
    )
    .await
    .unwrap();

    let env_reqs = fake.requests();
    fake.clear_requests();
    let mut poll = get(
        format!("{w}/poll"),
        "reclaim_older_than_ms=15000",
        Some(MA_BETA),
    );
    poll.worker_id = true;
    let mut poll_block = get(format!("{w}/poll"), "block_ms=250", Some(MA_BETA));
    poll_block.worker_id = true;
    let expected = [
        poll,
        post(
            format!("{w}/{}/ack", created.work_id),
            "",
            Some(MA_BETA),
            "",
        ),
        get(format!("{w}/stats"), "", Some(MA_BETA)),
        get(w.clone(), "limit=10", Some(MA_BETA)),
        get(format!("{w}/{}", created.work_id), "", Some(MA_BETA)),
        post(
            format!("{w}/{}", created.work_id),
            "",
            Some(MA_BETA),
            r#"{"metadata":{"gone":null,"k":"v"}}"#,
        ),
        poll_block,
    ];
    assert_eq!(env_reqs.len(), expected.len(), "{env_reqs:#?}");
    for (r, e) in env_reqs.iter().zip(&expected) {
        check(r, e, &key);
    }
    assert_eq!(
        env_reqs[0].header("anthropic-worker-id"),
        Some("lambda-0123456789ab")
    );
    assert_eq!(
        env_reqs[1].header("content-length"),
        Some("0"),
        "empty-body POST"
    );

    // --- sessions-token calls (runner) ---
    let token = created.sessions_token.clone();
    let rc = c.with_bearer(SecretString::new(token.clone()));
    let hb = rc
        .heartbeat(
            &env,
            &created.work_id,
            NO_HEARTBEAT,
            None,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    rc.heartbeat(
        &env,
        &created.work_id,
        &hb.last_heartbeat,
        Some(120),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    rc.retrieve_session(&created.session_id).await.unwrap();
    let mut stream = rc.stream_events(&created.session_id).await.unwrap();
    let list = ListEventsParams {
        limit: Some(1000),
        order: Some(Order::Asc),
        types: vec!["agent.tool_use".into(), "user.tool_result".into()],
        created_at_gte: Some("2026-01-01T00:00:01.5+00:00".into()),
        ..Default::default()
    };
    let events = rc
        .list_all_events(&created.session_id, &list)
        .await
        .unwrap();
    let call_id = events
        .iter()
        .find_map(|e| e.id.clone())
        .expect("a call in history");
    let result = OutgoingEvent::result_for(false, &call_id, false, vec![ContentBlock::text("hi")]);
    rc.send_events(&created.session_id, &[result])
        .await
        .unwrap();
    rc.stop(&env, &created.work_id, true).await.unwrap();
    // Skills and memory: the fake may not serve them; only the request shape matters here.
    let _ = rc.retrieve_skill_version("skill_01", "latest").await;
    let _ = rc.download_skill_version("skill_01", "skillver_02").await;
    let _ = rc
        .list_memories(
            "memstore_01",
            &ListMemoriesParams {
                view: Some(MemoryView::Full),
                limit: Some(20),
                ..Default::default()
            },
            Some("pg2"),
        )
        .await;
    let _ = rc
        .retrieve_memory("memstore_01", "mem_01", MemoryView::Full)
        .await;
    let _ = rc.create_memory("memstore_01", "/a/b.md", "x").await;
    let _ = rc
        .update_memory("memstore_01", "mem_01", "y", Some("ab12"))
        .await;
    let _ = rc
        .delete_memory("memstore_01", "mem_01", Some("ab12"))
        .await;
    drop(stream.next()); // stream request was sent on open

    let reqs = fake.requests();
    let hb2_query = format!(
        "expected_last_heartbeat={}&desired_ttl_seconds=120",
        hb.last_heartbeat.replace(':', "%3A").replace('+', "%2B")
    );
    let m = "/v1/memory_stores/memstore_01/memories";
    let mut expected = vec![
        post(
            format!("{w}/{}/heartbeat", created.work_id),
            "expected_last_heartbeat=NO_HEARTBEAT",
            Some(MA_BETA),
            "",
        ),
        post(
            format!("{w}/{}/heartbeat", created.work_id),
            &hb2_query,
            Some(MA_BETA),
            "",
        ),
        get(s.clone(), "", Some(MA_BETA)),
        get(format!("{s}/events/stream"), "", Some(MA_BETA)),
        get(
            format!("{s}/events"),
            "limit=1000&order=asc&types[]=agent.tool_use&types[]=user.tool_result&created_at[gte]=2026-01-01T00%3A00%3A01.5%2B00%3A00",
            Some(MA_BETA),
        ),
        post(
            format!("{s}/events"),
            "",
            Some(MA_BETA),
            &format!(
                r#"{{"events":[{{"type":"user.tool_result","tool_use_id":"{call_id}","is_error":false,"content":[{{"type":"text","text":"hi"}}]}}]}}"#
            ),
        ),
        post(
            format!("{w}/{}/stop", created.work_id),
            "",
            Some(MA_BETA),
            r#"{"force":true}"#,
        ),
        get("/v1/skills/skill_01/versions/latest".into(), "", None),
        Expect {
            accept: "application/binary",
            ..get(
                "/v1/skills/skill_01/versions/skillver_02/content".into(),
                "",
                None,
            )
        },
        get(m.into(), "view=full&limit=20&page=pg2", Some(MEM_BETA)),
        get(format!("{m}/mem_01"), "view=full", Some(MEM_BETA)),
        post(
            m.into(),
            "",
            Some(MEM_BETA),
            r#"{"content":"x","path":"/a/b.md"}"#,
        ),
        post(
            format!("{m}/mem_01"),
            "",
            Some(MEM_BETA),
            r#"{"content":"y","precondition":{"content_sha256":"ab12","type":"content_sha256"}}"#,
        ),
        Expect {
            method: "DELETE",
            ..get(
                format!("{m}/mem_01"),
                "expected_content_sha256=ab12",
                Some(MEM_BETA),
            )
        },
    ];
    // Skill/memory calls may be retried by the client if the fake answers 5xx; keep
    // only the first of each consecutive duplicate.
    let mut dedup: Vec<RecordedRequest> = Vec::new();
    for r in reqs {
        if dedup
            .last()
            .is_some_and(|l| l.method == r.method && l.path == r.path && l.query == r.query)
        {
            continue;
        }
        dedup.push(r);
    }
    assert_eq!(
        dedup.len(),
        expected.len(),
        "{:#?}",
        dedup
            .iter()
            .map(|r| (&r.method, &r.path))
            .collect::<Vec<_>>()
    );
    for (r, e) in dedup.iter().zip(expected.iter_mut()) {
        check(r, e, &token);
    }
}
