//! The process launcher runs the real `runner` binary against the fake control plane:
//! one scripted session (bash, write, read, edit, glob, grep), claimed the way the
//! webhook does (poll + ack), launched with the item's plaintext secret.
//!
//! The runner binary ([`cma_tests::runner_bin`]): `CMA_RUNNER_BIN` if set, else `runner` beside this test's profile
//! directory (`<target dir>/debug/runner`; `cargo nextest run --workspace` builds it
//! first), else it is built here with `cargo build -p runner`.

use std::path::Path;
use std::time::Duration;

use cma_shared::{ClientConfig, ControlPlane, SecretString};
use cma_tests::fake::{FakeConfig, FakeControlPlane, ScriptStep, SessionScript};
use dispatcher::process::{ProcessConfig, ProcessLauncher};
use dispatcher::{LaunchOutcome, LaunchRequest, LaunchSecret, Launcher};
use serde_json::{Value, json};

/// What the webhook does before dispatching: poll the queued item and ack it.
async fn claim(fake: &FakeControlPlane) {
    let c = ControlPlane::new(
        ClientConfig::with_base_url(Some(&fake.base_url())),
        SecretString::new(fake.environment_key()),
    )
    .unwrap();
    let item = c
        .poll(&fake.environment_id(), Default::default(), "test-webhook")
        .await
        .unwrap()
        .expect("queued item");
    c.ack(&fake.environment_id(), &item.id).await.unwrap();
}

fn result_text(r: &Value) -> String {
    r["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn process_launcher_serves_a_full_session() {
    let bin = cma_tests::runner_bin();
    let fake = FakeControlPlane::start(FakeConfig {
        ping_interval: Duration::from_millis(200),
        ..FakeConfig::default()
    })
    .await;
    let created = fake.create_session(SessionScript::new(vec![
        ScriptStep::tool("bash", json!({"command": "echo hello; echo err >&2"})),
        ScriptStep::tool(
            "write",
            json!({"file_path": "notes/a.txt", "content": "line1\nline2\n"}),
        ),
        ScriptStep::tool(
            "read",
            json!({"file_path": "notes/a.txt", "view_range": [2, 2]}),
        ),
        ScriptStep::tool(
            "edit",
            json!({"file_path": "notes/a.txt", "old_string": "line2", "new_string": "LINE2"}),
        ),
        ScriptStep::tool("glob", json!({"pattern": "**/*.txt"})),
        ScriptStep::tool("grep", json!({"pattern": "LINE"})),
        ScriptStep::tool(
            "bash",
            json!({"command": "env | grep -c ANTHROPIC_ || true"}),
        ),
    ]));
    claim(&fake).await;

    let tmp = tempfile::tempdir().unwrap();
    let mut config = ProcessConfig::new(&bin, tmp.path().join("runners"));
    config.extra_args = vec!["--max-idle".into(), "1s".into()];
    config.extra_env = vec![("RUST_LOG".into(), "info".into())];
    let launcher = ProcessLauncher::new(config);
    let req = LaunchRequest {
        work_id: created.work_id.clone(),
        environment_id: fake.environment_id(),
        session_id: created.session_id.clone(),
        base_url: Some(fake.base_url()),
        secret: LaunchSecret::Plaintext(SecretString::new(created.secret.clone())),
    };
    let log =
        || std::fs::read_to_string(launcher.log_path(&created.session_id)).unwrap_or_default();

    let LaunchOutcome::Started { id } = launcher.launch(&req).await.unwrap() else {
        panic!("the first launch must start a runner");
    };
    // The webhook delivered the item twice (or SQS redelivered): nothing new starts.
    assert_eq!(
        launcher.launch(&req).await.unwrap(),
        LaunchOutcome::AlreadyRunning { id: id.clone() },
        "{}",
        log()
    );
    assert_eq!(launcher.running(), vec![created.work_id.clone()]);

    let code = match tokio::time::timeout(Duration::from_secs(60), launcher.wait(&created.work_id))
        .await
    {
        Ok(code) => code,
        Err(_) => {
            launcher.terminate_all();
            panic!("the runner did not exit within 60 s; log:\n{}", log());
        }
    };
    let log = log();
    assert_eq!(code, Some(0), "runner exit code; log:\n{log}");
    assert!(fake.script_finished(&created.session_id), "{log}");

    let results = fake.results(&created.session_id);
    let texts: Vec<String> = results.iter().map(result_text).collect();
    let ws = launcher
        .workdir(&created.session_id)
        .canonicalize()
        .unwrap()
        .display()
        .to_string();
    assert_eq!(
        texts,
        vec![
            "hello\nerr".to_owned(),
            "wrote 12 bytes to notes/a.txt".into(),
            "line2".into(),
            "edited notes/a.txt (1 replacement(s))".into(),
            format!("{ws}/notes/a.txt"),
            format!("{ws}/notes/a.txt:2:LINE2\n"),
            "0".into(),
        ],
        "{log}"
    );
    for r in &results {
        assert_eq!(r["is_error"], json!(false), "{r:#}\n{log}");
    }
    assert_eq!(
        std::fs::read_to_string(Path::new(&ws).join("notes/a.txt")).unwrap(),
        "line1\nLINE2\n"
    );
    assert_eq!(fake.work_state(&created.work_id), "stopped", "{log}");
    assert_eq!(
        fake.stop_calls(&created.work_id),
        vec![json!({"force": true})],
        "{log}"
    );
    assert!(
        log.contains(&created.session_id),
        "runner log in the session's log file: {log}"
    );
    assert!(
        !log.contains(&created.secret) && !log.contains(&created.sessions_token),
        "secret in the log:\n{log}"
    );
    assert!(launcher.running().is_empty());
    assert_eq!(
        launcher.wait_all().await,
        vec![(created.work_id.clone(), Some(0))]
    );
}
