//! The shared control-plane client against the fake control plane: every endpoint,
//! the retry layer, the typed errors and SSE parsing.

use std::sync::Arc;
use std::time::Duration;

use cma_shared::client::{ListEventsParams, NO_HEARTBEAT, PollParams, StopOutcome};
use cma_shared::retry::{FixedJitter, RecordingClock};
use cma_shared::types::{ContentBlock, EventKind, OutgoingEvent, WorkState};
use cma_shared::{ClientConfig, ControlPlane, ErrorKind, SecretString};
use cma_tests::fake::{Endpoint, FakeConfig, FakeControlPlane, Faults, ScriptStep, SessionScript};
use serde_json::json;

const WORKER: &str = "test-worker-0123456789ab";

async fn fake() -> FakeControlPlane {
    FakeControlPlane::start(FakeConfig {
        ping_interval: Duration::from_millis(50),
        ..FakeConfig::default()
    })
    .await
}

fn env_client(fake: &FakeControlPlane) -> (ControlPlane, RecordingClock) {
    let clock = RecordingClock::default();
    let c = ControlPlane::new(
        ClientConfig::with_base_url(Some(&fake.base_url())),
        SecretString::new(fake.environment_key()),
    )
    .unwrap()
    .with_time(Arc::new(clock.clone()), Arc::new(FixedJitter(0.0)));
    (c, clock)
}

fn one_step() -> SessionScript {
    SessionScript::new(vec![ScriptStep::tool(
        "bash",
        json!({"command": "echo hi"}),
    )])
}

#[tokio::test]
async fn poll_ack_heartbeat_stop_lifecycle() {
    let fake = fake().await;
    let (c, _) = env_client(&fake);
    let env = fake.environment_id();

    assert!(
        c.poll(&env, PollParams::default(), WORKER)
            .await
            .unwrap()
            .is_none(),
        "200 null = no work"
    );

    let created = fake.create_session(one_step());
    let params = PollParams {
        block_ms: None,
        reclaim_older_than_ms: Some(15_000),
    };
    let item = c
        .poll(&env, params, WORKER)
        .await
        .unwrap()
        .expect("an item");
    assert_eq!(item.id, created.work_id);
    assert_eq!(item.data.session_id(), Some(created.session_id.as_str()));
    assert_eq!(item.secret.as_ref().unwrap().expose(), created.secret);
    assert_eq!(
        item.secret
            .as_ref()
            .unwrap()
            .sessions_token()
            .unwrap()
            .expose(),
        created.sessions_token
    );

    let acked = c.ack(&env, &item.id).await.unwrap();
    assert_eq!(acked.state, WorkState::Starting);

    // The runner's client uses the sessions token.
    let token = item.secret.unwrap().sessions_token().unwrap();
    let rc = c.with_bearer(SecretString::new(token.expose()));
    let hb1 = rc
        .heartbeat(&env, &item.id, NO_HEARTBEAT, None, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(hb1.state, WorkState::Active);
    assert!(hb1.lease_extended);
    assert_eq!(hb1.ttl_seconds, Some(60));
    let hb2 = rc
        .heartbeat(
            &env,
            &item.id,
            &hb1.last_heartbeat,
            None,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_ne!(hb1.last_heartbeat, hb2.last_heartbeat);

    // A stale token is a lost lease, not a retryable error.
    let err = rc
        .heartbeat(
            &env,
            &item.id,
            &hb1.last_heartbeat,
            None,
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::LeaseLost);
    assert_eq!(err.status, Some(412));
    assert_eq!(
        err.error_code.as_deref(),
        Some("heartbeat_precondition_failed")
    );
    assert!(err.current_state.is_some());
    assert!(err.request_id.is_some(), "request-id is captured");

    assert_eq!(
        rc.stop(&env, &item.id, true).await.unwrap(),
        StopOutcome::Stopped
    );
    assert_eq!(fake.work_state(&item.id), "stopped");
    assert_eq!(
        rc.stop(&env, &item.id, true).await.unwrap(),
        StopOutcome::AlreadyStopped
    );
    let stops = fake
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/stop"))
        .count();
    assert_eq!(stops, 2, "stop 409 is success, not retried");
    assert_eq!(
        fake.stop_calls(&item.id),
        vec![json!({"force": true}), json!({"force": true})]
    );
}

#[tokio::test]
async fn graceful_stop_then_heartbeat_reports_stopping() {
    let fake = fake().await;
    let (c, _) = env_client(&fake);
    let env = fake.environment_id();
    let created = fake.create_session(one_step());
    c.poll(&env, PollParams::default(), WORKER)
        .await
        .unwrap()
        .unwrap();
    c.ack(&env, &created.work_id).await.unwrap();
    let hb = c
        .heartbeat(
            &env,
            &created.work_id,
            NO_HEARTBEAT,
            None,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(
        c.stop(&env, &created.work_id, false).await.unwrap(),
        StopOutcome::Stopped
    );
    let hb = c
        .heartbeat(
            &env,
            &created.work_id,
            &hb.last_heartbeat,
            None,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(hb.state, WorkState::Stopping);
    assert!(hb.state.is_stopping_or_stopped());
}

#[tokio::test]
async fn list_stats_and_pagination() {
    let fake = fake().await;
    let (c, _) = env_client(&fake);
    let env = fake.environment_id();
    for _ in 0..5 {
        fake.create_session(one_step());
    }
    let stats = c.stats(&env).await.unwrap();
    assert_eq!(stats.depth, 5);
    assert_eq!(stats.pending, 0);
    assert!(stats.oldest_queued_at.is_some());

    c.poll(&env, PollParams::default(), WORKER)
        .await
        .unwrap()
        .unwrap();
    let stats = c.stats(&env).await.unwrap();
    assert_eq!((stats.depth, stats.pending), (4, 1));
    assert_eq!(stats.workers_polling, Some(1));

    let mut ids = Vec::new();
    let mut page: Option<String> = None;
    let mut pages = 0;
    loop {
        let p = c.list_work(&env, Some(2), page.as_deref()).await.unwrap();
        pages += 1;
        assert!(
            p.data.iter().all(|w| w.secret.is_none()),
            "list never carries secrets"
        );
        ids.extend(p.data.into_iter().map(|w| w.id));
        match p.next_page {
            Some(n) if !n.is_empty() => page = Some(n),
            _ => break,
        }
    }
    assert_eq!(ids.len(), 5);
    assert_eq!(pages, 3);
}

#[tokio::test]
async fn sessions_events_list_send_and_validation() {
    let fake = fake().await;
    let (c, _) = env_client(&fake);
    let created = fake.create_session(SessionScript::new(vec![
        ScriptStep::tool("bash", json!({"command": "echo 1"})),
        ScriptStep::custom("lookup", json!({"q": 1})),
    ]));
    let rc = c.with_bearer(SecretString::new(created.sessions_token.clone()));

    let s = rc.retrieve_session(&created.session_id).await.unwrap();
    assert_eq!(s.id, created.session_id);

    // Paginate with a tiny page size: same events as one big page.
    let small = ListEventsParams {
        limit: Some(1),
        ..Default::default()
    };
    let all_small = rc
        .list_all_events(&created.session_id, &small)
        .await
        .unwrap();
    let big = ListEventsParams {
        limit: Some(1000),
        ..Default::default()
    };
    let all_big = rc.list_all_events(&created.session_id, &big).await.unwrap();
    assert_eq!(all_small, all_big);
    assert!(all_big.len() >= 3);
    let call = all_big
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::AgentToolUse(c) => Some(c.clone()),
            _ => None,
        })
        .expect("first scripted call in history");
    assert_eq!(call.name, "bash");

    // Wrong kind for the call: rejected, not retried.
    let wrong = OutgoingEvent::result_for(true, &call.id, false, vec![ContentBlock::text("x")]);
    let err = rc
        .send_events(&created.session_id, &[wrong])
        .await
        .unwrap_err();
    assert_eq!(err.status, Some(400));
    assert_eq!(err.kind, ErrorKind::Permanent);

    let ok = OutgoingEvent::result_for(false, &call.id, false, vec![ContentBlock::text("1")]);
    let stored = rc
        .send_events(&created.session_id, std::slice::from_ref(&ok))
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert!(matches!(stored[0].kind, EventKind::UserToolResult { .. }));
    assert_eq!(fake.results(&created.session_id).len(), 1);

    let err = rc
        .send_events(&created.session_id, &[ok])
        .await
        .unwrap_err();
    assert_eq!(err.status, Some(400));
    assert_eq!(fake.duplicate_results(&created.session_id), 1);

    // types[] filter
    let only_calls = ListEventsParams {
        types: vec!["agent.custom_tool_use".into()],
        ..Default::default()
    };
    let calls = rc
        .list_all_events(&created.session_id, &only_calls)
        .await
        .unwrap();
    assert_eq!(calls.len(), 1);
    assert!(matches!(calls[0].kind, EventKind::AgentCustomToolUse(_)));
}

#[tokio::test]
async fn sessions_token_is_scoped_to_its_item() {
    let fake = fake().await;
    let (c, _) = env_client(&fake);
    let env = fake.environment_id();
    let a = fake.create_session(one_step());
    let b = fake.create_session(one_step());
    let token_a = c.with_bearer(SecretString::new(a.sessions_token.clone()));
    let err = token_a.retrieve_session(&b.session_id).await.unwrap_err();
    assert_eq!(err.status, Some(403));
    assert!(err.is_auth());
    let err = token_a
        .heartbeat(&env, &b.work_id, NO_HEARTBEAT, None, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(err.status, Some(403));
    let bad = c.with_bearer(SecretString::new("sk-ant-wrong"));
    let err = bad.stats(&env).await.unwrap_err();
    assert_eq!(err.status, Some(401));
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert!(err.to_string().contains("environment key"), "{err}");
}

#[tokio::test]
async fn retries_transient_statuses_with_backoff() {
    for status in [500u16, 502, 503, 408, 409, 429] {
        let fake = fake().await;
        let (c, clock) = env_client(&fake);
        fake.set_faults(Faults {
            status_override: vec![(Endpoint::Stats, status, 2)],
            ..Faults::default()
        });
        let stats = c.stats(&fake.environment_id()).await;
        assert!(stats.is_ok(), "{status}: {stats:?}");
        let n = fake
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/stats"))
            .count();
        assert_eq!(n, 3, "{status}: two retries then success");
        // FixedJitter(0): 0.5 s then 1 s (spec §13.3).
        assert_eq!(
            clock.sleeps(),
            vec![Duration::from_millis(500), Duration::from_secs(1)],
            "{status}"
        );
    }
}

#[tokio::test]
async fn gives_up_after_max_retries() {
    let fake = fake().await;
    let (c, clock) = env_client(&fake);
    fake.set_faults(Faults {
        status_override: vec![(Endpoint::Stats, 503, 10)],
        ..Faults::default()
    });
    let err = c.stats(&fake.environment_id()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient);
    assert_eq!(err.status, Some(503));
    assert_eq!(fake.requests().len(), 3);
    assert_eq!(clock.sleeps().len(), 2);
}

#[tokio::test]
async fn honours_retry_after_ms() {
    let fake = fake().await;
    let (c, clock) = env_client(&fake);
    fake.set_faults(Faults {
        status_override: vec![(Endpoint::Stats, 429, 1)],
        retry_after_ms: Some(1234),
        ..Faults::default()
    });
    c.stats(&fake.environment_id()).await.unwrap();
    assert_eq!(clock.sleeps(), vec![Duration::from_millis(1234)]);
}

#[tokio::test]
async fn no_retry_on_other_4xx() {
    for status in [400u16, 401, 403, 404, 413, 422] {
        let fake = fake().await;
        let (c, clock) = env_client(&fake);
        fake.set_faults(Faults {
            status_override: vec![(Endpoint::Stats, status, 5)],
            ..Faults::default()
        });
        let err = c.stats(&fake.environment_id()).await.unwrap_err();
        assert_eq!(err.status, Some(status));
        assert_eq!(err.kind, ErrorKind::Permanent, "{status}");
        assert_eq!(fake.requests().len(), 1, "{status}: not retried");
        assert!(clock.sleeps().is_empty());
    }
}

#[tokio::test]
async fn heartbeat_is_never_retried_by_the_client() {
    let fake = fake().await;
    let (c, clock) = env_client(&fake);
    let env = fake.environment_id();
    let created = fake.create_session(one_step());
    c.poll(&env, PollParams::default(), WORKER).await.unwrap();
    c.ack(&env, &created.work_id).await.unwrap();
    fake.set_faults(Faults {
        status_override: vec![(Endpoint::Heartbeat, 500, 1)],
        ..Faults::default()
    });
    let err = c
        .heartbeat(
            &env,
            &created.work_id,
            NO_HEARTBEAT,
            None,
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient);
    assert!(
        clock.sleeps().is_empty(),
        "the lease loop owns heartbeat retries"
    );
    // 412 override uses the documented body.
    fake.set_faults(Faults {
        status_override: vec![(Endpoint::Heartbeat, 412, 1)],
        ..Faults::default()
    });
    let err = c
        .heartbeat(
            &env,
            &created.work_id,
            NO_HEARTBEAT,
            None,
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert!(err.is_lease_lost());
}

#[tokio::test]
async fn heartbeat_timeout_bounds_the_call() {
    let fake = fake().await;
    let (c, _) = env_client(&fake);
    let env = fake.environment_id();
    let created = fake.create_session(one_step());
    c.poll(&env, PollParams::default(), WORKER).await.unwrap();
    c.ack(&env, &created.work_id).await.unwrap();
    fake.set_faults(Faults {
        latency: Some(Duration::from_secs(3)),
        ..Faults::default()
    });
    let t0 = std::time::Instant::now();
    let err = c
        .heartbeat(
            &env,
            &created.work_id,
            NO_HEARTBEAT,
            None,
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient);
    assert!(err.status.is_none());
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
}

#[tokio::test]
async fn poll_block_ms_is_clamped_and_zero_never_sent() {
    let fake = fake().await;
    let (c, _) = env_client(&fake);
    let env = fake.environment_id();
    c.poll(
        &env,
        PollParams {
            block_ms: Some(0),
            reclaim_older_than_ms: None,
        },
        WORKER,
    )
    .await
    .unwrap();
    c.poll(
        &env,
        PollParams {
            block_ms: Some(5000),
            reclaim_older_than_ms: Some(0),
        },
        WORKER,
    )
    .await
    .unwrap();
    let reqs = fake.requests();
    assert_eq!(reqs[0].query, "");
    assert_eq!(reqs[1].query, "block_ms=999&reclaim_older_than_ms=1");
}

#[tokio::test]
async fn poll_long_poll_wakes_on_new_work() {
    let fake = fake().await;
    let (c, _) = env_client(&fake);
    let env = fake.environment_id();
    let f2 = fake.clone();
    let h = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        f2.create_session(one_step())
    });
    let item = c
        .poll(
            &env,
            PollParams {
                block_ms: Some(999),
                reclaim_older_than_ms: None,
            },
            WORKER,
        )
        .await
        .unwrap();
    let created = h.await.unwrap();
    assert_eq!(item.map(|i| i.id), Some(created.work_id));
}

#[tokio::test]
async fn sse_stream_delivers_events_skips_pings_and_survives_split_frames() {
    let fake = fake().await;
    let (c, _) = env_client(&fake);
    let created = fake.create_session(one_step());
    fake.set_faults(Faults {
        split_frames: true,
        ..Faults::default()
    });
    let mut stream = c.stream_events(&created.session_id).await.unwrap();
    // Let a few pings through first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    fake.push_event(
        &created.session_id,
        json!({"type": "agent.message", "content": [{"type": "text", "text": "héllo 😀"}]}),
    );
    fake.push_event(
        &created.session_id,
        json!({"type": "session.status_idle", "stop_reason": {"type": "end_turn"}}),
    );
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        first.event_type, "agent.message",
        "pings are skipped, history is not replayed"
    );
    assert_eq!(first.raw["content"][0]["text"], "héllo 😀");
    let second = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(second.ends_turn());
    let reqs = fake.requests();
    let sreq = reqs
        .iter()
        .find(|r| r.path.ends_with("/events/stream"))
        .unwrap();
    assert_eq!(sreq.header("accept"), Some("application/json"));
}

#[tokio::test]
async fn sse_error_event_and_drop_are_reported() {
    let fake = fake().await;
    let (c, _) = env_client(&fake);
    let created = fake.create_session(one_step());
    fake.set_faults(Faults {
        stream_error_after: Some(1),
        ..Faults::default()
    });
    let mut stream = c.stream_events(&created.session_id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    fake.push_event(&created.session_id, json!({"type": "agent.message"}));
    let ev = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap();
    assert!(ev.is_ok());
    let err = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient);
    assert!(
        tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .unwrap()
            .is_none()
    );

    fake.set_faults(Faults {
        stream_drop_after: Some(1),
        ..Faults::default()
    });
    let mut stream = c.stream_events(&created.session_id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    fake.push_event(&created.session_id, json!({"type": "agent.message"}));
    fake.push_event(&created.session_id, json!({"type": "agent.message"}));
    assert!(stream.next().await.unwrap().is_ok());
    assert!(
        tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .unwrap()
            .is_none(),
        "dropped connection ends the stream"
    );
}

#[tokio::test]
async fn connection_refused_is_transient_and_retried() {
    // Bind then drop a listener to get a port with nothing behind it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let clock = RecordingClock::default();
    let c = ControlPlane::new(
        ClientConfig::with_base_url(Some(&format!("http://127.0.0.1:{port}"))),
        SecretString::new("k"),
    )
    .unwrap()
    .with_time(Arc::new(clock.clone()), Arc::new(FixedJitter(0.0)));
    let err = c.stats("env_x").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient);
    assert_eq!(err.status, None);
    assert_eq!(clock.sleeps().len(), 2);
    assert!(!err.to_string().contains("Bearer"));
}

#[tokio::test]
async fn configured_retry_policy_is_honoured() {
    let fake = fake().await;
    let mut cfg = ClientConfig::with_base_url(Some(&fake.base_url()));
    cfg.retry = cma_shared::retry::RetryPolicy::NONE;
    let clock = RecordingClock::default();
    let c = ControlPlane::new(cfg, SecretString::new(fake.environment_key()))
        .unwrap()
        .with_time(Arc::new(clock.clone()), Arc::new(FixedJitter(0.0)));
    fake.set_faults(Faults {
        status_override: vec![(Endpoint::Stats, 503, 5)],
        ..Faults::default()
    });
    let err = c.stats(&fake.environment_id()).await.unwrap_err();
    assert_eq!(err.status, Some(503));
    assert_eq!(
        fake.requests().len(),
        1,
        "no retries with RetryPolicy::NONE"
    );
    assert!(clock.sleeps().is_empty());
}
