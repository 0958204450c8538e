//! The sweep function: the same drain, no signature.

mod common;

use common::*;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::json;
use webhook::config::{self, Mode};
use webhook::{App, Config, Runtime};

fn fixture(name: &str) -> serde_json::Value {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[tokio::test]
async fn sweep_event_drains_without_a_signature() {
    let h = Builder::new(Mode::Sweep).start().await;
    let created = h.queue_sessions(4);
    let hc = h.fake.enqueue_healthcheck();
    for payload in [
        fixture("sweep.schedule.json"),
        json!({}),
        json!(null),
        json!([1, 2]),
    ] {
        let out = webhook::lambda::sweep(&h.app, LambdaEvent::new(payload, Context::default()))
            .await
            .expect("sweep succeeds");
        assert!(out["result"] == "drained", "{out}");
    }
    let ids = h.enqueued_work_ids();
    assert_eq!(
        ids,
        created
            .iter()
            .map(|c| c.work_id.clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(h.fake.work_state(&hc), "stopped");
    // The sweep never reads a signing secret.
    assert_eq!(h.signing_secret.fetches(), 0);
    let line = h.metrics.last().unwrap();
    assert_eq!(line["Function"], "sweep");
    assert_eq!(h.metric("ItemsEnqueued"), 4);
}

#[tokio::test]
async fn sweep_recovers_items_left_by_a_failed_webhook_drain() {
    // The webhook's drain hit a control-plane outage; the sweep picks up the rest.
    let h = Builder::new(Mode::Webhook).start().await;
    h.queue_sessions(3);
    h.fake.set_faults(cma_tests::fake::Faults {
        status_override: vec![(cma_tests::fake::Endpoint::Poll, 503, 3)],
        ..Default::default()
    });
    let r = h.deliver("msg_outage").await;
    assert_eq!(r.status, http::StatusCode::OK);
    assert_eq!(r.body["result"], "control_plane_unavailable");
    assert!(h.queue.is_empty());
    let sweep = Builder::new(Mode::Sweep).start_with(h.fake.clone());
    let out = webhook::lambda::sweep(&sweep.app, LambdaEvent::new(json!({}), Context::default()))
        .await
        .unwrap();
    assert_eq!(out["enqueued"], 3);
}

#[tokio::test]
async fn sweep_fails_the_invocation_when_our_side_is_broken() {
    // Configuration error.
    let vars = [(config::ENVIRONMENT_ID, "env_1".to_owned())];
    let err = Config::from_lookup(Mode::Sweep, |k| {
        vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })
    .unwrap_err();
    assert_eq!(err.variable(), config::ENVIRONMENT_KEY);
    let metrics = webhook::memory::MemoryMetrics::new();
    let app = App::misconfigured(
        Mode::Sweep,
        err,
        Runtime {
            metrics: metrics.clone(),
            ..Runtime::default()
        },
    );
    let e = webhook::lambda::sweep(&app, LambdaEvent::new(json!({}), Context::default()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("config"), "{e}");
    assert_eq!(metrics.total("Failures"), 1);

    // SQS down.
    let h = Builder::new(Mode::Sweep).start().await;
    h.queue_sessions(1);
    h.queue.fail_always(Some(webhook::PortError::permanent(
        "SQS SendMessage",
        "AccessDenied",
    )));
    let e = webhook::lambda::sweep(&h.app, LambdaEvent::new(json!({}), Context::default()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("sqs"), "{e}");
}
