//! The webhook function against the fake control plane and in-memory ports.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use cma_shared::client::StopOutcome;
use cma_shared::types::WorkItem;
use cma_shared::{ApiError, EnvironmentKey};
use cma_tests::fake::{Endpoint, FakeControlPlane, Faults};
use common::*;
use http::StatusCode;
use serde_json::json;
use webhook::config::{self, Mode};
use webhook::ports::{ControlPlaneApi, ControlPlaneFactory};
use webhook::{EncryptionContext, PortError};

#[tokio::test]
async fn n_queued_items_become_n_messages_with_sealed_secrets() {
    let h = Builder::new(Mode::Webhook).start().await;
    let created = h.queue_sessions(7);
    let r = h.deliver("msg_n_items").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["result"], "drained");
    assert_eq!(r.body["enqueued"], 7);

    let msgs = h.queue.work_messages();
    assert_eq!(msgs.len(), 7);
    let env = h.fake.environment_id();
    for (m, c) in msgs.iter().zip(&created) {
        assert_eq!(m.version, 1);
        assert_eq!(m.work_id, c.work_id);
        assert_eq!(m.session_id, c.session_id);
        assert_eq!(m.environment_id, env);
        assert!(m.acked_at.ends_with('Z') && m.acked_at.contains('T'));
        assert!(m.work_secret.is_none(), "KMS mode: no plaintext");
        let ct = m.work_secret_ciphertext.as_deref().expect("ciphertext");
        let ctx = m.encryption_context();
        assert_eq!(h.sealer.open(ct, &ctx).as_deref(), Some(c.secret.as_str()));
        let wrong = EncryptionContext {
            work_id: "work_other".into(),
            ..ctx.clone()
        };
        assert_eq!(h.sealer.open(ct, &wrong), None);
        assert_eq!(h.fake.work_state(&c.work_id), "starting", "acked");
        assert!(h.fake.stop_calls(&c.work_id).is_empty(), "never stopped");
    }
    for out in h.queue.messages() {
        assert!(!out.body.contains(&h.fake.environment_key()));
        for c in &created {
            assert!(!out.body.contains(&c.secret) && !out.body.contains(&c.sessions_token));
        }
    }

    // The polls were non-blocking with an explicit reclaim and the worker id header.
    let polls: Vec<_> = h
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/work/poll"))
        .collect();
    assert_eq!(polls.len(), 8, "7 items + the empty poll");
    for p in &polls {
        assert_eq!(p.query_param("block_ms"), None);
        assert_eq!(
            p.query_param("reclaim_older_than_ms").as_deref(),
            Some("15000")
        );
        assert_eq!(
            p.header("anthropic-worker-id"),
            Some("webhook-test-0123456789ab")
        );
    }
    assert_eq!(h.metric("ItemsEnqueued"), 7);
    assert_eq!(h.metric("Drains"), 1);
}

#[tokio::test]
async fn max_drain_items_bounds_one_invocation() {
    let h = Builder::new(Mode::Webhook)
        .var(config::MAX_DRAIN_ITEMS, "3")
        .var(config::RECLAIM_OLDER_THAN_MS, "20000")
        .start()
        .await;
    h.queue_sessions(5);
    let r = h.deliver("msg_max").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["result"], "max_items");
    assert_eq!(h.queue.len(), 3);
    let reclaim: Vec<_> = h
        .fake
        .requests()
        .iter()
        .filter_map(|r| r.query_param("reclaim_older_than_ms"))
        .collect();
    assert!(reclaim.iter().all(|r| r == "20000"));
    let r = h.deliver("msg_max_2").await;
    assert_eq!(r.body["result"], "drained");
    assert_eq!(h.queue.len(), 5);
}

#[tokio::test]
async fn get_is_405_and_nothing_is_polled() {
    let h = Builder::new(Mode::Webhook).start().await;
    h.queue_sessions(1);
    for method in ["GET", "PUT", "DELETE", "HEAD"] {
        let ev = webhook::local::http_event(method, &[], b"", false);
        let r = invoke(&h.app, &ev).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(r.headers.get("allow").unwrap(), "POST");
    }
    assert_eq!(h.polls(), 0);
    assert!(h.queue.is_empty());
}

#[tokio::test]
async fn body_over_1_mib_is_413_before_verification_and_1_mib_is_accepted() {
    let h = Builder::new(Mode::Webhook).start().await;
    h.queue_sessions(1);
    let secret = cma_shared::WebhookSecret::new(SIGNING_KEY);
    let base = webhook::local::envelope_body(cma_shared::types::RUN_STARTED, "sesn_x", "wevt_1");
    let sign_and_send = |body: Vec<u8>, id: &'static str| {
        let secret = secret.clone();
        let app = h.app.clone();
        async move {
            let headers =
                webhook::local::sign_headers(&secret, id, webhook::local::unix_now(), &body)
                    .unwrap();
            let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            invoke(
                &app,
                &webhook::local::http_event("POST", &refs, &body, false),
            )
            .await
        }
    };
    // Validly signed, one byte too big: 413, nothing polled.
    let mut big = base.clone().into_bytes();
    big.resize(1024 * 1024 + 1, b' ');
    let r = sign_and_send(big, "msg_big").await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(h.polls(), 0);
    // Unsigned and too big: still 413 (the size check comes first).
    let mut big = base.clone().into_bytes();
    big.resize(2 * 1024 * 1024, b' ');
    let r = invoke(
        &h.app,
        &webhook::local::http_event("POST", &[], &big, false),
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(h.metric("DeliveriesRejected"), 0);
    // Exactly 1 MiB (JSON with trailing whitespace): accepted and drained.
    let mut exact = base.into_bytes();
    exact.resize(1024 * 1024, b' ');
    let r = sign_and_send(exact, "msg_exact").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(h.queue.len(), 1);
}

#[tokio::test]
async fn base64_bodies_are_decoded_before_verification() {
    let h = Builder::new(Mode::Webhook).start().await;
    h.queue_sessions(2);
    let ev = webhook::local::signed_delivery_event(
        &cma_shared::WebhookSecret::new(SIGNING_KEY),
        cma_shared::types::RUN_STARTED,
        "sesn_b64",
        "msg_b64",
        webhook::local::unix_now(),
        true,
    )
    .unwrap();
    assert_eq!(ev["isBase64Encoded"], true);
    let r = invoke(&h.app, &ev).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(h.queue.len(), 2);
}

#[tokio::test]
async fn other_event_types_are_200_without_touching_the_queue() {
    let h = Builder::new(Mode::Webhook).start().await;
    h.queue_sessions(2);
    for (i, t) in [
        "session.status_idled",
        "session.created",
        "vault.created",
        "something.new",
    ]
    .iter()
    .enumerate()
    {
        let r = invoke(&h.app, &delivery(t, &format!("msg_other_{i}"))).await;
        assert_eq!(r.status, StatusCode::OK, "{t}");
        assert_eq!(r.body["result"], "ignored");
    }
    // A verified body that is not an envelope is ignored too.
    let body = br#"{"test": 2432232314}"#;
    let headers = webhook::local::sign_headers(
        &cma_shared::WebhookSecret::new(SIGNING_KEY),
        "msg_not_envelope",
        webhook::local::unix_now(),
        body,
    )
    .unwrap();
    let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = invoke(
        &h.app,
        &webhook::local::http_event("POST", &refs, body, false),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(h.polls(), 0);
    assert!(h.queue.is_empty());
    assert_eq!(h.metric("DeliveriesIgnored"), 5);
}

// ----------------------------------------------------------------- §8.5 vectors

const V2_ID: &str = "msg_2Zx1Y9kAqGJm7Vb3";
const V2_TS: &str = "1777636800";
const V2_BODY: &str = r#"{"type":"event","id":"wevt_011CZkZaBF1tNoB5wlCeusgy","created_at":"2026-05-01T12:00:00Z","data":{"type":"session.status_run_started","id":"sesn_011CZkZaBF1tNoB5wlCeusgy","organization_id":"org_01","workspace_id":"wrkspc_01"}}"#;
const V2_SIG: &str = "v1,1cYscx6ySHI0o5DZq6JgPydzQDO9ykx97f79uapiDtE=";

fn v2_event(headers: &[(&str, &str)], body: &str) -> serde_json::Value {
    webhook::local::http_event("POST", headers, body.as_bytes(), false)
}

async fn vector_harness(now: i64, signing_key: &str) -> Harness {
    Builder::new(Mode::Webhook)
        .clock(Arc::new(FixedUnixClock(now)))
        .var(config::SIGNING_KEY, signing_key)
        .start()
        .await
}

#[tokio::test]
async fn spec_accept_vectors_drain() {
    let cases: Vec<(i64, Vec<(&str, &str)>)> = vec![
        (
            1_777_636_810,
            vec![
                ("webhook-id", V2_ID),
                ("webhook-timestamp", V2_TS),
                ("webhook-signature", V2_SIG),
            ],
        ),
        // Header names in any case.
        (
            1_777_636_810,
            vec![
                ("Webhook-Id", V2_ID),
                ("WEBHOOK-TIMESTAMP", V2_TS),
                ("Webhook-Signature", V2_SIG),
            ],
        ),
        // Exactly +300 s.
        (
            1_777_637_100,
            vec![
                ("webhook-id", V2_ID),
                ("webhook-timestamp", V2_TS),
                ("webhook-signature", V2_SIG),
            ],
        ),
    ];
    for (now, headers) in cases {
        let h = vector_harness(now, SIGNING_KEY).await;
        h.queue_sessions(1);
        let r = invoke(&h.app, &v2_event(&headers, V2_BODY)).await;
        assert_eq!(r.status, StatusCode::OK, "{headers:?} {:?}", r.body);
        assert_eq!(h.queue.len(), 1, "{headers:?}");
    }
    // V3: multiple signatures, non-ASCII body, session.status_idled → verified, ignored.
    let h = vector_harness(1_777_636_805, SIGNING_KEY).await;
    let v3_body = "{\"type\": \"event\", \"id\": \"wevt_x\", \"created_at\": \"2026-05-01T12:00:05Z\", \"data\": {\"type\": \"session.status_idled\", \"id\": \"sesn_\u{00fc}\", \"organization_id\": \"org_01\", \"workspace_id\": \"wrkspc_01\"}}\n";
    let r = invoke(
        &h.app,
        &v2_event(
            &[
                ("webhook-id", "msg_multi"),
                ("webhook-timestamp", "1777636805"),
                (
                    "webhook-signature",
                    "v2,AAAA v1,N53MVIFWM6uObVc3GwXbO5+Oab17cNCk9l697QzbW0A= v1,Xs7bCXf7SQzKcCPo7bfxMDTQEhXrgv9HqqIUQ02JcLw=",
                ),
            ],
            v3_body,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["result"], "ignored");
    assert_eq!(h.metric("DeliveriesRejected"), 0);
}

#[tokio::test]
async fn every_spec_reject_vector_is_401_and_nothing_is_polled() {
    let ok_headers = [
        ("webhook-id", V2_ID),
        ("webhook-timestamp", V2_TS),
        ("webhook-signature", V2_SIG),
    ];
    let with = |k: &str, v: Option<&'static str>| -> Vec<(&'static str, &'static str)> {
        let mut out: Vec<(&str, &str)> = ok_headers
            .iter()
            .filter(|(name, _)| *name != k)
            .cloned()
            .collect();
        if let Some(v) = v {
            out.push((ok_headers.iter().find(|(n, _)| *n == k).unwrap().0, v));
        }
        out
    };
    let tampered = V2_BODY.replace("run_started", "idled");
    struct Case(
        &'static str,
        i64,
        String,
        Vec<(&'static str, &'static str)>,
        String,
    );
    let cases: Vec<Case> = vec![
        Case(
            "R1 tampered body",
            1_777_636_810,
            SIGNING_KEY.into(),
            ok_headers.to_vec(),
            tampered,
        ),
        Case(
            "R2 stale",
            1_777_637_101,
            SIGNING_KEY.into(),
            ok_headers.to_vec(),
            V2_BODY.into(),
        ),
        Case(
            "R3 future",
            1_777_636_499,
            SIGNING_KEY.into(),
            ok_headers.to_vec(),
            V2_BODY.into(),
        ),
        Case(
            "R4 missing webhook-id",
            1_777_636_810,
            SIGNING_KEY.into(),
            with("webhook-id", None),
            V2_BODY.into(),
        ),
        Case(
            "R5 empty signature",
            1_777_636_810,
            SIGNING_KEY.into(),
            with("webhook-signature", Some("")),
            V2_BODY.into(),
        ),
        Case(
            "R7 wrong key",
            1_777_636_810,
            "whsec_AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=".into(),
            ok_headers.to_vec(),
            V2_BODY.into(),
        ),
        Case(
            "R8 only non-v1",
            1_777_636_810,
            SIGNING_KEY.into(),
            with(
                "webhook-signature",
                Some("v2,1cYscx6ySHI0o5DZq6JgPydzQDO9ykx97f79uapiDtE="),
            ),
            V2_BODY.into(),
        ),
        Case(
            "R9 id mismatch",
            1_777_636_810,
            SIGNING_KEY.into(),
            with("webhook-id", Some("msg_other")),
            V2_BODY.into(),
        ),
        Case(
            "R10 bad timestamp",
            1_777_636_810,
            SIGNING_KEY.into(),
            with("webhook-timestamp", Some("abc")),
            V2_BODY.into(),
        ),
        // Extra: no signature headers at all.
        Case(
            "no headers",
            1_777_636_810,
            SIGNING_KEY.into(),
            vec![],
            V2_BODY.into(),
        ),
    ];
    for Case(name, now, secret, headers, body) in cases {
        let h = vector_harness(now, &secret).await;
        h.queue_sessions(1);
        let r = invoke(&h.app, &v2_event(&headers, &body)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(
            r.body,
            json!({"error": "unauthorized"}),
            "{name}: generic body"
        );
        assert_eq!(h.polls(), 0, "{name}: nothing polled");
        assert!(
            h.fake.requests().is_empty(),
            "{name}: no control-plane call at all"
        );
        assert!(h.queue.is_empty(), "{name}");
        assert_eq!(h.metric("DeliveriesRejected"), 1, "{name}");
    }
}

/// R6 (`whsk_` / `WHSEC_` prefix) is a configuration error in our design: the strict
/// `whsec_` check fails the function closed (500) before any delivery is verified.
#[tokio::test]
async fn r6_wrong_secret_prefix_fails_closed_and_nothing_is_polled() {
    for bad in [
        "whsk_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        "WHSEC_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    ] {
        let fake = FakeControlPlane::start(Default::default()).await;
        fake.create_session(cma_tests::fake::SessionScript::new(vec![]));
        let vars = [
            (config::ENVIRONMENT_ID, fake.environment_id()),
            (config::SIGNING_KEY, bad.to_owned()),
            (config::ENVIRONMENT_KEY, fake.environment_key()),
            (config::QUEUE_URL, "https://sqs.example/1/q".to_owned()),
            (config::KMS_KEY_ID, "k".to_owned()),
        ];
        let err = webhook::Config::from_lookup(Mode::Webhook, |k| {
            vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
        })
        .unwrap_err();
        assert_eq!(err.variable(), config::SIGNING_KEY);
        let app = webhook::App::misconfigured(Mode::Webhook, err, webhook::Runtime::default());
        let r = invoke(
            &app,
            &v2_event(
                &[
                    ("webhook-id", V2_ID),
                    ("webhook-timestamp", V2_TS),
                    ("webhook-signature", V2_SIG),
                ],
                V2_BODY,
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(fake.requests().is_empty());
    }
}

// ------------------------------------------------------------ drain behaviour

#[tokio::test]
async fn poll_404_is_skipped_and_the_drain_continues() {
    let h = Builder::new(Mode::Webhook).start().await;
    let created = h.queue_sessions(3);
    h.fake.set_faults(Faults {
        status_override: vec![(Endpoint::Poll, 404, 1)],
        ..Faults::default()
    });
    let r = h.deliver("msg_404").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["result"], "drained");
    // The 404 consumed the first item; the other two were claimed.
    assert_eq!(
        h.enqueued_work_ids(),
        vec![created[1].work_id.clone(), created[2].work_id.clone()]
    );
    assert_eq!(h.metric("PollNotFound"), 1);
    assert_eq!(h.metric("ControlPlaneErrors"), 0);
}

/// Wraps the real client; from poll number `after + 1` on, the fake answers 503.
struct FlakyAfter {
    inner: Arc<dyn ControlPlaneFactory>,
    fake: FakeControlPlane,
    after: u32,
    endpoint: Endpoint,
}

struct FlakyCp {
    inner: Arc<dyn ControlPlaneApi>,
    fake: FakeControlPlane,
    after: u32,
    endpoint: Endpoint,
    polls: AtomicU32,
}

impl ControlPlaneFactory for FlakyAfter {
    fn with_key(&self, key: &EnvironmentKey) -> Arc<dyn ControlPlaneApi> {
        Arc::new(FlakyCp {
            inner: self.inner.with_key(key),
            fake: self.fake.clone(),
            after: self.after,
            endpoint: self.endpoint,
            polls: AtomicU32::new(0),
        })
    }
}

#[async_trait]
impl ControlPlaneApi for FlakyCp {
    async fn poll(&self, env: &str, r: u64, w: &str) -> Result<Option<WorkItem>, ApiError> {
        if self.polls.fetch_add(1, Ordering::SeqCst) == self.after {
            self.fake.set_faults(Faults {
                status_override: vec![(self.endpoint, 503, 1000)],
                ..Faults::default()
            });
        }
        self.inner.poll(env, r, w).await
    }
    async fn ack(&self, env: &str, id: &str) -> Result<(), ApiError> {
        self.inner.ack(env, id).await
    }
    async fn force_stop(&self, env: &str, id: &str) -> Result<StopOutcome, ApiError> {
        self.inner.force_stop(env, id).await
    }
}

#[tokio::test]
async fn control_plane_5xx_mid_drain_is_200_partial_and_counted() {
    for endpoint in [Endpoint::Poll, Endpoint::Ack] {
        let fake = FakeControlPlane::start(Default::default()).await;
        let mut b = Builder::new(Mode::Webhook);
        b.factory = Some(Arc::new(FlakyAfter {
            inner: Arc::new(fake_client(&fake)),
            fake: fake.clone(),
            after: 2,
            endpoint,
        }));
        let h = b.start_with(fake);
        let created = h.queue_sessions(5);
        let r = h.deliver("msg_5xx").await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{endpoint:?}: upstream trouble stays 2xx"
        );
        assert_eq!(r.body["result"], "control_plane_unavailable");
        assert_eq!(
            h.enqueued_work_ids(),
            vec![created[0].work_id.clone(), created[1].work_id.clone()],
            "{endpoint:?}: partial drain"
        );
        assert_eq!(h.metric("ControlPlaneErrors"), 1, "{endpoint:?}");
        assert_eq!(h.metric("Failures"), 0);
        let line = h.metrics.last().unwrap();
        assert_eq!(line["ControlPlaneErrors"], 1);
        // The rest is still queued at Anthropic for the sweep.
        for c in &created[2..] {
            assert_eq!(h.fake.work_state(&c.work_id), "queued", "{endpoint:?}");
        }
    }
}

#[tokio::test]
async fn capacity_cap_stops_the_drain() {
    // cap 3, one task running: two items fit, the rest stays queued.
    let h = Builder::new(Mode::Webhook).cap(3, 1).start().await;
    let created = h.queue_sessions(5);
    let r = h.deliver("msg_cap").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["result"], "at_capacity");
    assert_eq!(h.queue.len(), 2);
    assert_eq!(h.polls(), 2);
    assert_eq!(h.gauge.calls(), 3, "checked before every poll");
    for c in &created[2..] {
        assert_eq!(h.fake.work_state(&c.work_id), "queued");
        assert!(!h.fake.is_pending(&c.work_id), "not even polled");
    }
    assert_eq!(h.metric("AtCapacity"), 1);

    // Already full: nothing is polled at all.
    h.gauge.set_running(10);
    h.fake.clear_requests();
    let r = h.deliver("msg_cap_full").await;
    assert_eq!(r.body["result"], "at_capacity");
    assert_eq!(h.polls(), 0);
}

#[tokio::test]
async fn no_cap_means_no_capacity_call() {
    let mut b = Builder::new(Mode::Webhook);
    b.gauge_without_cap = true;
    let h = b.start().await;
    h.queue_sessions(2);
    assert_eq!(h.deliver("msg_nocap").await.status, StatusCode::OK);
    assert_eq!(h.queue.len(), 2);
    assert_eq!(h.gauge.calls(), 0);
}

#[tokio::test]
async fn capacity_check_failure_is_500_and_nothing_is_polled() {
    let h = Builder::new(Mode::Webhook).cap(3, 0).start().await;
    h.queue_sessions(1);
    h.gauge
        .fail_always(Some(PortError::permanent("ECS ListTasks", "AccessDenied")));
    let r = h.deliver("msg_gauge").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(h.polls(), 0);
    assert_eq!(h.metric("Failures"), 1);
}

#[tokio::test]
async fn healthcheck_items_are_force_stopped_and_sessions_never_stopped() {
    let h = Builder::new(Mode::Webhook).start().await;
    let hc = h.fake.enqueue_healthcheck();
    let created = h.queue_sessions(1);
    let hc2 = h.fake.enqueue_healthcheck();
    let r = h.deliver("msg_hc").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["force_stopped"], 2);
    assert_eq!(h.enqueued_work_ids(), vec![created[0].work_id.clone()]);
    for id in [&hc, &hc2] {
        assert_eq!(h.fake.work_state(id), "stopped");
        assert_eq!(h.fake.stop_calls(id), vec![json!({"force": true})]);
    }
    assert!(h.fake.stop_calls(&created[0].work_id).is_empty());
    assert_eq!(h.metric("ItemsForceStopped"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_deliveries_enqueue_each_item_exactly_once() {
    // 5 items per drain at most, so the 60 items must be shared among many drains.
    let h = Builder::new(Mode::Webhook)
        .var(config::MAX_DRAIN_ITEMS, "5")
        .start()
        .await;
    let created = h.queue_sessions(60);
    let h = Arc::new(h);
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let h = h.clone();
            tokio::spawn(async move { h.deliver(&format!("msg_conc_{i}")).await })
        })
        .collect();
    let mut claimed = 0;
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        claimed += r.body["enqueued"].as_u64().unwrap();
    }
    assert_eq!(claimed, 60);
    let ids = h.enqueued_work_ids();
    let unique: HashSet<_> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), unique.len(), "no item enqueued twice");
    let expected: HashSet<_> = created.iter().map(|c| c.work_id.clone()).collect();
    assert_eq!(unique, expected, "every item enqueued");
    assert_eq!(h.metric("Drains"), 20);
}

#[tokio::test]
async fn duplicate_delivery_is_skipped_on_the_same_instance_and_harmless_elsewhere() {
    let h = Builder::new(Mode::Webhook).start().await;
    h.queue_sessions(2);
    let ev = run_started("msg_dup");
    assert_eq!(invoke(&h.app, &ev).await.body["result"], "drained");
    let polls = h.polls();
    let r = invoke(&h.app, &ev).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["result"], "duplicate");
    assert_eq!(h.polls(), polls, "the repeat did not poll");
    assert_eq!(h.metric("DuplicateDeliveries"), 1);

    // Another instance (no memory of the id) drains again: nothing new is claimed.
    let other = Builder::new(Mode::Webhook).start_with(h.fake.clone());
    let r = invoke(&other.app, &ev).await;
    assert_eq!(r.body["result"], "drained");
    assert!(other.queue.is_empty());
    assert_eq!(h.queue.len(), 2);
}

#[tokio::test]
async fn secrets_are_fetched_once_per_execution_environment() {
    let h = Builder::new(Mode::Webhook).start().await;
    for i in 0..5 {
        assert_eq!(
            h.deliver(&format!("msg_cache_{i}")).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(h.signing_secret.fetches(), 1);
    assert_eq!(h.env_secret.fetches(), 1);
}

#[tokio::test]
async fn secret_store_failure_is_500() {
    let h = Builder::new(Mode::Webhook).start().await;
    h.queue_sessions(1);
    h.signing_secret.set(Err(PortError::retryable(
        "Secrets Manager GetSecretValue",
        "connection refused",
    )));
    let r = h.deliver("msg_sm").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(h.polls(), 0);
    // It recovers as soon as the store answers (failures are not cached).
    h.signing_secret.set(Ok(SIGNING_KEY));
    assert_eq!(h.deliver("msg_sm2").await.status, StatusCode::OK);
    assert_eq!(h.queue.len(), 1);
}

#[tokio::test]
async fn rejected_environment_key_is_500() {
    let mut b = Builder::new(Mode::Webhook);
    b.env_key = Some("sk-ant-env-WRONG".into());
    let h = b.start().await;
    h.queue_sessions(1);
    let r = h.deliver("msg_badkey").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(h.queue.is_empty());
    assert_eq!(h.metric("Failures"), 1);
}

#[tokio::test]
async fn sqs_send_failure_is_retried_with_backoff_then_reported() {
    // Transient failures: retried, then sent.
    let h = Builder::new(Mode::Webhook).start().await;
    h.queue_sessions(2);
    h.queue.fail_next(
        2,
        PortError::retryable("SQS SendMessage", "ServiceUnavailable"),
    );
    let r = h.deliver("msg_sqs_retry").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(h.queue.len(), 2);
    assert_eq!(h.metric("EnqueueRetries"), 2);

    // Persistent failure: retried within the time budget, then 500 + metric; the acked
    // item is not stopped, and no further item is claimed.
    let h = Builder::new(Mode::Webhook).start().await;
    let created = h.queue_sessions(2);
    h.queue.fail_always(Some(PortError::retryable(
        "SQS SendMessage",
        "ServiceUnavailable",
    )));
    let r = h.deliver("msg_sqs_down").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(h.queue.attempts() > 5, "retried: {}", h.queue.attempts());
    assert_eq!(h.metric("EnqueueFailures"), 1);
    assert_eq!(h.metric("Failures"), 1);
    assert_eq!(h.fake.work_state(&created[0].work_id), "starting");
    assert!(h.fake.stop_calls(&created[0].work_id).is_empty());
    assert_eq!(h.fake.work_state(&created[1].work_id), "queued");

    // Permanent failure: no retry.
    let h = Builder::new(Mode::Webhook).start().await;
    h.queue_sessions(1);
    h.queue.fail_always(Some(PortError::permanent(
        "SQS SendMessage",
        "AWS.SimpleQueueService.NonExistentQueue",
    )));
    assert_eq!(
        h.deliver("msg_sqs_perm").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(h.queue.attempts(), 1);
}

#[tokio::test]
async fn kms_failure_is_500_and_nothing_is_sent() {
    let h = Builder::new(Mode::Webhook).start().await;
    h.queue_sessions(2);
    h.sealer.fail_always(Some(PortError::permanent(
        "KMS Encrypt",
        "AccessDeniedException",
    )));
    let r = h.deliver("msg_kms").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(h.queue.is_empty());
    assert_eq!(h.metric("SealFailures"), 1);
}

#[tokio::test]
async fn plaintext_mode_puts_the_secret_in_the_message() {
    let mut b = Builder::new(Mode::Webhook).var(config::ALLOW_PLAINTEXT_WORK_SECRET, "true");
    b.vars.remove(config::KMS_KEY_ID);
    let h = b.start().await;
    let created = h.queue_sessions(1);
    assert_eq!(h.deliver("msg_plain").await.status, StatusCode::OK);
    let m = &h.queue.work_messages()[0];
    assert_eq!(m.work_secret.as_deref(), Some(created[0].secret.as_str()));
    assert!(m.work_secret_ciphertext.is_none());
}

#[tokio::test]
async fn items_without_a_usable_secret_are_force_stopped() {
    // The runner never holds the environment key, so such an item could not run.
    let h = Builder::new(Mode::Webhook).start().await;
    // The fake always issues secrets; use a control plane wrapper that drops them.
    struct NoSecret(Arc<dyn ControlPlaneApi>, AtomicU32);
    #[async_trait]
    impl ControlPlaneApi for NoSecret {
        async fn poll(&self, e: &str, r: u64, w: &str) -> Result<Option<WorkItem>, ApiError> {
            let n = self.1.fetch_add(1, Ordering::SeqCst);
            Ok(self.0.poll(e, r, w).await?.map(|mut i| {
                // First item: no secret; second: a secret without a sessions token.
                i.secret = (n > 0).then(|| cma_shared::secret::WorkSecret::new("W10"));
                i
            }))
        }
        async fn ack(&self, e: &str, id: &str) -> Result<(), ApiError> {
            self.0.ack(e, id).await
        }
        async fn force_stop(&self, e: &str, id: &str) -> Result<StopOutcome, ApiError> {
            self.0.force_stop(e, id).await
        }
    }
    let key = EnvironmentKey::new(h.fake.environment_key());
    let cp = NoSecret(fake_client(&h.fake).with_key(&key), AtomicU32::new(0));
    let created = h.queue_sessions(2);
    let settings = webhook::DrainSettings {
        environment_id: h.fake.environment_id(),
        reclaim_older_than_ms: 15_000,
        max_items: 25,
        max_concurrent_sessions: None,
        worker_id: "w".into(),
    };
    let clock = cma_shared::retry::TokioClock;
    let drainer = webhook::Drainer {
        control_plane: &cp,
        queue: h.queue.as_ref(),
        sealer: h.sealer.as_ref(),
        gauge: None,
        clock: &clock,
        jitter: &cma_shared::retry::FixedJitter(0.5),
        settings: &settings,
    };
    let report = drainer
        .run(webhook::Budget::from_remaining(
            std::time::Instant::now(),
            std::time::Duration::from_secs(10),
        ))
        .await;
    assert_eq!(report.end, webhook::DrainEnd::Drained);
    assert!(report.enqueued.is_empty());
    assert_eq!(report.force_stopped.len(), 2);
    for c in &created {
        assert_eq!(h.fake.work_state(&c.work_id), "stopped");
    }
}

#[tokio::test]
async fn time_budget_stops_polling_new_items() {
    let h = Builder::new(Mode::Webhook).start().await;
    h.queue_sessions(3);
    // A budget already inside the soft margin: nothing is polled, still 200.
    let ev = run_started("msg_budget");
    let req = lambda_http::request::from_str(&ev.to_string()).unwrap();
    let (parts, body) = req.into_parts();
    let now = h.app.clock().now();
    let budget = webhook::Budget {
        soft: now,
        hard: now + std::time::Duration::from_secs(5),
    };
    let resp = h
        .app
        .handle_webhook(&parts.method, &parts.headers, body.as_ref(), budget)
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.body().contains("time_budget"), "{}", resp.body());
    assert_eq!(h.polls(), 0);
    // A drain that stopped early does not mark the delivery as answered: a repeat
    // of it drains.
    let r = invoke(&h.app, &ev).await;
    assert_eq!(r.body["result"], "drained");
    assert_eq!(h.queue.len(), 3);
}
