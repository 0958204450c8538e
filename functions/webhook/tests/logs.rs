//! No secret value ever reaches a log line: every path (success, 401, SQS/KMS
//! failures, rejected key, config errors, the sweep) runs with a TRACE-level capture
//! in the production JSON format, and the capture is searched for every secret.

mod common;

use cma_shared::WebhookSecret;
use common::*;
use http::StatusCode;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::json;
use webhook::config::{self, Mode};
use webhook::{App, Config, PortError, Runtime};

#[tokio::test]
async fn no_secret_value_appears_in_any_log_line() {
    let (logs, _guard) = capture_logs();
    let mut secrets: Vec<String> = vec![
        SIGNING_KEY.to_owned(),
        SIGNING_KEY.trim_start_matches("whsec_").to_owned(),
    ];

    // Success path with sessions and a healthcheck; then a rejected delivery.
    let h = Builder::new(Mode::Webhook).start().await;
    secrets.push(h.fake.environment_key());
    let created = h.queue_sessions(3);
    let hc = h.fake.enqueue_healthcheck();
    let (hc_secret, hc_token) = h.fake.credentials(&hc);
    secrets.extend([hc_secret, hc_token]);
    assert_eq!(h.deliver("msg_logs_ok").await.status, StatusCode::OK);
    let mut tampered = run_started("msg_logs_bad");
    tampered["body"] = json!(
        tampered["body"]
            .as_str()
            .unwrap()
            .replace("run_started", "idled")
    );
    assert_eq!(
        invoke(&h.app, &tampered).await.status,
        StatusCode::UNAUTHORIZED
    );

    // SQS down (retried, then 500), then KMS down.
    let more = h.queue_sessions(2);
    h.queue.fail_always(Some(PortError::retryable(
        "SQS SendMessage",
        "ServiceUnavailable",
    )));
    assert_eq!(
        h.deliver("msg_logs_sqs").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    h.queue.fail_always(None);
    h.sealer
        .fail_always(Some(PortError::permanent("KMS Encrypt", "AccessDenied")));
    assert_eq!(
        h.deliver("msg_logs_kms").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    for c in created.iter().chain(&more) {
        secrets.push(c.secret.clone());
        secrets.push(c.sessions_token.clone());
    }

    // A wrong environment key: 401 from the control plane → 500 here.
    let wrong_key = "sk-ant-env-WRONGKEY-9f8e7d6c5b4a";
    secrets.push(wrong_key.to_owned());
    let mut b = Builder::new(Mode::Webhook);
    b.env_key = Some(wrong_key.into());
    let bad = b.start_with(h.fake.clone());
    assert_eq!(
        bad.deliver("msg_logs_badkey").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );

    // The sweep.
    let sweep = Builder::new(Mode::Sweep).start_with(h.fake.clone());
    let late = sweep.queue_sessions(1);
    secrets.push(late[0].secret.clone());
    secrets.push(late[0].sessions_token.clone());
    let out = webhook::lambda::sweep(
        &sweep.app,
        LambdaEvent::new(json!({"source": "aws.scheduler"}), Context::default()),
    )
    .await
    .unwrap();
    assert_eq!(out["enqueued"], 1, "{out}");

    // Invalid configuration values: one line naming the variable, never the value.
    let bad_signing = "whsk_TOPSECRETSIGNINGVALUE0123456789=";
    secrets.push(bad_signing.to_owned());
    let before = logs.lines().len();
    let vars = [
        (config::ENVIRONMENT_ID, "env_1".to_owned()),
        (config::SIGNING_KEY, bad_signing.to_owned()),
        (
            config::ENVIRONMENT_KEY,
            "sk-ant-env-CONFIGSECRET-abcdef".to_owned(),
        ),
        (config::QUEUE_URL, "https://sqs.example/1/q".to_owned()),
        (config::KMS_KEY_ID, "k".to_owned()),
    ];
    secrets.push("sk-ant-env-CONFIGSECRET-abcdef".to_owned());
    let err = Config::from_lookup(Mode::Webhook, |k| {
        vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })
    .unwrap_err();
    let app = App::misconfigured(
        Mode::Webhook,
        err,
        Runtime {
            metrics: webhook::memory::MemoryMetrics::new(),
            ..Runtime::default()
        },
    );
    assert_eq!(
        invoke(&app, &run_started("msg_logs_cfg")).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    let new_lines = &logs.lines()[before..];
    let naming: Vec<_> = new_lines
        .iter()
        .filter(|l| l.contains(config::SIGNING_KEY))
        .collect();
    assert_eq!(
        naming.len(),
        1,
        "exactly one line names the variable: {new_lines:#?}"
    );
    assert!(naming[0].contains("\"level\":\"ERROR\""), "{}", naming[0]);

    // A signing secret from the secret store that fails validation.
    let h2 = Builder::new(Mode::Webhook).start_with(h.fake.clone());
    let stored_bad = "not-a-whsec-STOREDSECRET-777";
    secrets.push(stored_bad.to_owned());
    h2.signing_secret.set(Ok(stored_bad));
    assert_eq!(
        h2.deliver("msg_logs_stored").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );

    // A freshly signed delivery carries a signature; that is not a secret, but the
    // key that made it is.
    let _ = webhook::local::sign_headers(
        &WebhookSecret::new(SIGNING_KEY),
        "msg_x",
        webhook::local::unix_now(),
        b"{}",
    );

    let text = logs.text();
    if std::env::var_os("WEBHOOK_DUMP_LOGS").is_some() {
        eprintln!("{text}");
    }
    assert!(text.lines().count() > 20, "the capture works:\n{text}");
    for needle in [
        "work item claimed and enqueued",
        "webhook signature verification failed",
        "not a session item; force-stopping it",
        "our side is broken",
        "drain finished",
    ] {
        assert!(text.contains(needle), "expected a line with {needle:?}");
    }
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
    for s in &secrets {
        assert!(s.len() >= 8, "meaningful needle");
        assert!(
            !text.contains(s.as_str()),
            "secret value found in the logs: {s}"
        );
    }
}
