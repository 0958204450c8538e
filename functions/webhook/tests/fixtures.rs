//! The `events/` fixtures and the `sign-delivery` tool, through the same
//! `lambda_http` parsing the Lambda uses.

mod common;

use std::process::Command;
use std::sync::Arc;

use common::*;
use http::StatusCode;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::Value;
use webhook::config::Mode;

fn fixture(name: &str) -> Value {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn every_fixture_parses() {
    let dir = format!("{}/events", env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        if v.get("requestContext").is_some() {
            lambda_http::request::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        n += 1;
    }
    assert_eq!(n, 4);
}

#[tokio::test]
async fn static_post_fixtures_are_stale_and_get_is_405() {
    let h = Builder::new(Mode::Webhook).start().await;
    h.queue_sessions(1);
    for f in [
        "run-started.stale-signature.json",
        "unknown-type.stale-signature.json",
    ] {
        let r = invoke(&h.app, &fixture(f)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{f} is stale by design");
    }
    let r = invoke(&h.app, &fixture("get.405.json")).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(h.polls(), 0);
}

#[tokio::test]
async fn static_post_fixtures_are_correctly_signed_at_their_timestamp() {
    // At the fixture's own time (1777636800 + 10 s) the signatures verify.
    let h = Builder::new(Mode::Webhook)
        .clock(Arc::new(FixedUnixClock(1_777_636_810)))
        .start()
        .await;
    h.queue_sessions(1);
    let r = invoke(&h.app, &fixture("unknown-type.stale-signature.json")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["result"], "ignored");
    let r = invoke(&h.app, &fixture("run-started.stale-signature.json")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["enqueued"], 1);
}

#[tokio::test]
async fn sweep_fixture_drives_the_sweep() {
    let h = Builder::new(Mode::Sweep).start().await;
    h.queue_sessions(2);
    let out = webhook::lambda::sweep(
        &h.app,
        LambdaEvent::new(fixture("sweep.schedule.json"), Context::default()),
    )
    .await
    .unwrap();
    assert_eq!(out["enqueued"], 2);
}

fn sign_delivery(args: &[&str], key: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sign-delivery"));
    cmd.args(args).env_remove("ANTHROPIC_WEBHOOK_SIGNING_KEY");
    if let Some(k) = key {
        cmd.env("ANTHROPIC_WEBHOOK_SIGNING_KEY", k);
    }
    cmd.output().expect("run sign-delivery")
}

#[tokio::test]
async fn sign_delivery_writes_a_fresh_event_that_drains() {
    let h = Builder::new(Mode::Webhook).start().await;
    h.queue_sessions(2);
    let out_file = std::env::temp_dir().join(format!(
        "sign-delivery-{}.json",
        uuid::Uuid::new_v4().simple()
    ));
    let out = sign_delivery(
        &[
            "--session-id",
            "sesn_local",
            "--out",
            out_file.to_str().unwrap(),
        ],
        Some(SIGNING_KEY),
    );
    assert!(out.status.success(), "{out:?}");
    let ev: Value = serde_json::from_str(&std::fs::read_to_string(&out_file).unwrap()).unwrap();
    let _ = std::fs::remove_file(&out_file);
    assert_eq!(ev["requestContext"]["http"]["method"], "POST");
    let body: Value = serde_json::from_str(ev["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["data"]["type"], "session.status_run_started");
    assert_eq!(body["data"]["id"], "sesn_local");
    let r = invoke(&h.app, &ev).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["enqueued"], 2);

    // stdout, base64 body, other type.
    let out = sign_delivery(
        &["--session-id=sesn_x", "--type", "vault.created", "--base64"],
        Some(SIGNING_KEY),
    );
    assert!(out.status.success());
    let ev: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ev["isBase64Encoded"], true);
    let r = invoke(&h.app, &ev).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["result"], "ignored");
}

#[test]
fn sign_delivery_refuses_bad_input() {
    let o = sign_delivery(&["--session-id", "s"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("ANTHROPIC_WEBHOOK_SIGNING_KEY"));
    let o = sign_delivery(&["--session-id", "s"], Some("whsk_notvalid"));
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !stderr.contains("whsk_notvalid"),
        "never echoes the key: {stderr}"
    );
    let o = sign_delivery(&[], Some(SIGNING_KEY));
    assert_eq!(o.status.code(), Some(2));
    let o = sign_delivery(&["--session-id", "s", "--bogus"], Some(SIGNING_KEY));
    assert_eq!(o.status.code(), Some(2));
}
