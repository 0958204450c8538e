//! `cma-local serve` against the fake control plane with the process launcher: poll
//! mode (a queued session → runner launched → script finished, the concurrency cap, a
//! rejected key), webhook mode (a signed delivery, a forged one, the sweep), and the
//! credential checks.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use cma_shared::SecretString;
use cma_tests::fake::{FakeConfig, FakeControlPlane, ScriptStep, SessionScript};
use local::launchers::{Kind, LauncherSettings};
use local::serve::{self, Credentials, ServeMode, ServeOptions};
use serde_json::json;
use tokio::sync::watch;

fn script() -> SessionScript {
    SessionScript::new(vec![
        ScriptStep::tool("bash", json!({"command": "echo served from a laptop"})),
        ScriptStep::tool(
            "write",
            json!({"file_path": "notes.txt", "content": "hello\n"}),
        ),
        ScriptStep::tool("read", json!({"file_path": "notes.txt"})),
    ])
}

fn options(mode: ServeMode, base: &std::path::Path) -> ServeOptions {
    let mut launcher = LauncherSettings::demo();
    launcher.kind = Kind::Process;
    launcher.runner_bin = Some(common::runner_bin());
    launcher.base_dir = Some(base.to_path_buf());
    launcher.keep_workdirs = true;
    launcher.max_idle = Duration::from_millis(300);
    let mut o = ServeOptions::new(mode, launcher);
    o.block_ms = 200;
    o
}

fn credentials(fake: &FakeControlPlane, signing_key: Option<&str>) -> Credentials {
    Credentials {
        environment_id: fake.environment_id(),
        environment_key: SecretString::new(fake.environment_key()),
        base_url: Some(fake.base_url()),
        signing_key: signing_key.map(SecretString::new),
    }
}

fn done(fake: &FakeControlPlane, s: &cma_tests::fake::CreatedSession) -> bool {
    fake.script_finished(&s.session_id) && fake.work_state(&s.work_id) == "stopped"
}

fn texts(fake: &FakeControlPlane, session_id: &str) -> Vec<String> {
    fake.results(session_id)
        .iter()
        .map(|r| {
            r["content"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_mode_launches_a_runner_for_a_queued_session() {
    let fake = FakeControlPlane::start(FakeConfig::default()).await;
    let created = fake.create_session(script());
    let base = tempfile::tempdir().unwrap();
    let opts = options(ServeMode::Poll, base.path());
    let creds = credentials(&fake, None);
    let (stop, rx) = watch::channel(0u32);
    let task = tokio::spawn(async move { serve::serve(&opts, &creds, rx).await });

    assert!(
        fake.wait_until(Duration::from_secs(30), |f| done(f, &created))
            .await,
        "session not served: results {:?}, state {}",
        texts(&fake, &created.session_id),
        fake.work_state(&created.work_id)
    );
    stop.send(1).unwrap();
    let r = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("serve returns after the stop")
        .unwrap();
    assert_eq!(r, Ok(()));

    let t = texts(&fake, &created.session_id);
    assert_eq!(
        t,
        [
            "served from a laptop",
            "wrote 6 bytes to notes.txt",
            "hello\n"
        ]
    );
    assert!(
        fake.results(&created.session_id)
            .iter()
            .all(|r| r["is_error"] == json!(false))
    );
    assert_eq!(fake.duplicate_results(&created.session_id), 0);

    // Long polls with block_ms and the worker id, then the ack; the runner's files are
    // in its per-session workdir under the base directory, its log beside it.
    let requests = fake.requests();
    let polls: Vec<_> = requests
        .iter()
        .filter(|r| r.path.ends_with("/work/poll"))
        .collect();
    assert!(!polls.is_empty());
    for p in &polls {
        assert_eq!(p.query_param("block_ms").as_deref(), Some("200"));
        assert!(
            p.header("anthropic-worker-id")
                .is_some_and(|v| !v.is_empty())
        );
    }
    assert!(
        requests
            .iter()
            .any(|r| r.method == "POST"
                && r.path.ends_with(&format!("/work/{}/ack", created.work_id)))
    );
    let workdir = base.path().join(&created.session_id);
    assert_eq!(
        std::fs::read_to_string(workdir.join("notes.txt")).unwrap(),
        "hello\n"
    );
    let log =
        std::fs::read_to_string(base.path().join(format!("{}.log", created.session_id))).unwrap();
    // The runner never sees the environment key, and logs no secret.
    assert!(!log.contains(&fake.environment_key()), "{log}");
    assert!(
        log.contains("using the work item's sessions token"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_mode_keeps_to_max_concurrent() {
    let fake = FakeControlPlane::start(FakeConfig::default()).await;
    let a = fake.create_session(script());
    let b = fake.create_session(script());
    let base = tempfile::tempdir().unwrap();
    let mut opts = options(ServeMode::Poll, base.path());
    opts.max_concurrent = 1;
    let creds = credentials(&fake, None);
    let (stop, rx) = watch::channel(0u32);
    let task = tokio::spawn(async move { serve::serve(&opts, &creds, rx).await });
    assert!(
        fake.wait_until(Duration::from_secs(40), |f| done(f, &a) && done(f, &b))
            .await,
        "not both served"
    );
    stop.send(1).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(20), task).await;

    // The second item was claimed only after the first runner had stopped its item.
    let requests = fake.requests();
    let at = |suffix: &str| {
        requests
            .iter()
            .find(|r| r.method == "POST" && r.path.ends_with(suffix))
            .map(|r| r.at)
            .unwrap_or_else(|| panic!("no request {suffix}"))
    };
    let (first, second) =
        if at(&format!("/work/{}/ack", a.work_id)) < at(&format!("/work/{}/ack", b.work_id)) {
            (&a, &b)
        } else {
            (&b, &a)
        };
    assert!(
        at(&format!("/work/{}/ack", second.work_id)) > at(&format!("/work/{}/stop", first.work_id)),
        "the second item was claimed while the first runner was still running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_mode_stops_on_a_rejected_key() {
    let fake = FakeControlPlane::start(FakeConfig::default()).await;
    let base = tempfile::tempdir().unwrap();
    let opts = options(ServeMode::Poll, base.path());
    let mut creds = credentials(&fake, None);
    creds.environment_key = SecretString::new("sk-ant-env-WRONG-KEY-VALUE");
    let (_stop, rx) = watch::channel(0u32);
    let r = tokio::time::timeout(Duration::from_secs(20), serve::serve(&opts, &creds, rx))
        .await
        .expect("serve gives up on a rejected key");
    let e = r.unwrap_err();
    assert!(
        e.contains("the control plane rejected ANTHROPIC_ENVIRONMENT_KEY (401)"),
        "{e}"
    );
    assert!(!e.contains("WRONG-KEY-VALUE"), "{e}");
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_mode_serves_a_signed_delivery_and_refuses_a_forged_one() {
    let fake = FakeControlPlane::start(FakeConfig::default()).await;
    let created = fake.create_session(script());
    let base = tempfile::tempdir().unwrap();
    let mut opts = options(ServeMode::Webhook, base.path());
    opts.listen = free_port();
    opts.sweep_interval = Duration::ZERO; // only the delivery may claim the item
    let signing_key = local::stack::random_signing_key();
    let creds = credentials(&fake, Some(signing_key.expose()));
    let url = format!("http://{}/", opts.listen);
    let (stop, rx) = watch::channel(0u32);
    let task = tokio::spawn(async move { serve::serve(&opts, &creds, rx).await });

    let http = reqwest::Client::new();
    let mut forged = None;
    for _ in 0..100 {
        match local::stack::post_signed_delivery(
            &http,
            &url,
            &local::stack::random_signing_key(),
            cma_shared::types::RUN_STARTED,
            &created.session_id,
        )
        .await
        {
            Ok(r) => {
                forged = Some(r);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let (status, _) = forged.expect("the webhook handler listens");
    assert_eq!(status, 401);
    assert_eq!(fake.work_state(&created.work_id), "queued");

    let (status, body) = local::stack::post_signed_delivery(
        &http,
        &url,
        &signing_key,
        cma_shared::types::RUN_STARTED,
        &created.session_id,
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["enqueued"], json!(1), "{body}");
    assert!(
        fake.wait_until(Duration::from_secs(30), |f| done(f, &created))
            .await,
        "session not served: {:?}",
        texts(&fake, &created.session_id)
    );
    stop.send(1).unwrap();
    let r = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("serve returns after the stop")
        .unwrap();
    assert_eq!(r, Ok(()));
    assert_eq!(texts(&fake, &created.session_id).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_mode_sweeps_without_a_delivery() {
    let fake = FakeControlPlane::start(FakeConfig::default()).await;
    let created = fake.create_session(script());
    let base = tempfile::tempdir().unwrap();
    let mut opts = options(ServeMode::Webhook, base.path());
    opts.listen = free_port();
    opts.sweep_interval = Duration::from_millis(200);
    let creds = credentials(&fake, Some(local::stack::random_signing_key().expose()));
    let (stop, rx) = watch::channel(0u32);
    let task = tokio::spawn(async move { serve::serve(&opts, &creds, rx).await });
    assert!(
        fake.wait_until(Duration::from_secs(30), |f| done(f, &created))
            .await,
        "the sweep did not claim the item"
    );
    stop.send(1).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
}

#[test]
fn credentials_name_every_missing_variable_and_never_a_value() {
    let e = Credentials::from_lookup(ServeMode::Webhook, |_| None).unwrap_err();
    for name in [
        "ANTHROPIC_ENVIRONMENT_ID",
        "ANTHROPIC_ENVIRONMENT_KEY",
        "ANTHROPIC_WEBHOOK_SIGNING_KEY",
    ] {
        assert!(e.contains(name), "{e}");
    }
    let e = Credentials::from_lookup(ServeMode::Poll, |_| None).unwrap_err();
    assert!(!e.contains("ANTHROPIC_WEBHOOK_SIGNING_KEY"), "{e}");

    let vars = |k: &str| match k {
        "ANTHROPIC_ENVIRONMENT_ID" => Some("env_1".to_owned()),
        "ANTHROPIC_ENVIRONMENT_KEY" => Some("sk-ant secret-value".to_owned()),
        "ANTHROPIC_WEBHOOK_SIGNING_KEY" => Some("not-a-whsec-value".to_owned()),
        _ => None,
    };
    let e = Credentials::from_lookup(ServeMode::Webhook, vars).unwrap_err();
    assert!(
        e.contains("ANTHROPIC_ENVIRONMENT_KEY contains whitespace"),
        "{e}"
    );
    assert!(
        e.contains("ANTHROPIC_WEBHOOK_SIGNING_KEY must start with whsec_"),
        "{e}"
    );
    assert!(
        !e.contains("secret-value") && !e.contains("not-a-whsec"),
        "{e}"
    );

    let ok = Credentials::from_lookup(ServeMode::Poll, |k| match k {
        "ANTHROPIC_ENVIRONMENT_ID" => Some(" env_1 ".to_owned()),
        "ANTHROPIC_ENVIRONMENT_KEY" => Some("sk-ant-env-KEY".to_owned()),
        _ => None,
    })
    .unwrap();
    assert_eq!(ok.environment_id, "env_1");
    assert_eq!(ok.base_url, None);
    assert!(!format!("{ok:?}").contains("sk-ant-env-KEY"));
}

#[test]
fn the_binary_names_missing_variables() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cma-local"))
        .args(["serve", "--mode", "poll"])
        .env_remove("ANTHROPIC_ENVIRONMENT_ID")
        .env_remove("ANTHROPIC_ENVIRONMENT_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("missing environment variable(s): ANTHROPIC_ENVIRONMENT_ID"),
        "{stderr}"
    );
    assert!(stderr.contains("ANTHROPIC_ENVIRONMENT_KEY"), "{stderr}");
}
