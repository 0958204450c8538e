//! The Docker launcher against a real engine: one scripted session served by a runner
//! container (image `CMA_RUNNER_IMAGE`, host networking so that the runner reaches the
//! fake control plane on 127.0.0.1), a duplicate launch that must be a no-op, and the
//! container gone afterwards (`AutoRemove`).
//!
//! Needs a Docker engine and the image built by `bash .ci/docker-image.sh`, named in
//! `CMA_RUNNER_IMAGE` (e.g. `cma/runner:ci`). Without the variable the test is skipped
//! locally and fails under `CI` (where `.ci/run` exports it).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use cma_shared::{ClientConfig, ControlPlane, SecretString};
use cma_tests::fake::{FakeConfig, FakeControlPlane, ScriptStep, SessionScript};
use dispatcher::docker::{
    DockerConfig, DockerLauncher, container_name, ping, socket_from_env, volume_name,
};
use dispatcher::{LaunchOutcome, LaunchRequest, LaunchSecret, Launcher};
use serde_json::{Value, json};

const IMAGE_VAR: &str = "CMA_RUNNER_IMAGE";

/// The image to test, or `None` to skip (panics under CI on a machine with a Docker
/// engine, where `.ci/run` must have provided it).
fn image_or_skip() -> Option<String> {
    if let Some(image) = std::env::var(IMAGE_VAR)
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        return Some(image);
    }
    let engine = std::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if engine && std::env::var("CI").is_ok_and(|v| !v.is_empty()) {
        panic!(
            "{IMAGE_VAR} is unset but this CI machine has a Docker engine: .ci/run must build \
             the runner image (`bash .ci/docker-image.sh`) and `export {IMAGE_VAR}=cma/runner:ci` \
             before `make test`"
        );
    }
    eprintln!(
        "SKIPPED: {IMAGE_VAR} is unset (build the image with `bash .ci/docker-image.sh`, then set it)"
    );
    None
}

/// Removes the container and the workspace volume even when the test fails, and stops
/// the `docker logs -f` follower.
struct Cleanup {
    container: String,
    volume: String,
    logs: Option<std::process::Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let quiet = |args: &[&str]| {
            let _ = std::process::Command::new("docker")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        quiet(&["rm", "-f", &self.container]);
        quiet(&["volume", "rm", "-f", &self.volume]);
        if let Some(mut child) = self.logs.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

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
async fn docker_launcher_serves_a_full_session_in_a_container() {
    let Some(image) = image_or_skip() else { return };
    let socket = socket_from_env().unwrap();
    assert!(
        ping(&socket).await,
        "{IMAGE_VAR} is set but no Docker engine answers on {}",
        socket.display()
    );

    let fake = FakeControlPlane::start(FakeConfig {
        ping_interval: Duration::from_millis(200),
        ..FakeConfig::default()
    })
    .await;
    let created = fake.create_session(SessionScript::new(vec![
        ScriptStep::tool("bash", json!({"command": "id -u; pwd; echo err >&2"})),
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

    let mut config = DockerConfig::new(image, socket);
    config.network_mode = "host".into();
    config.workspace_volume = true;
    config.extra_args = vec!["--max-idle".into(), "1s".into()];
    config.extra_env = vec![("RUST_LOG".into(), "info".into())];
    let launcher = DockerLauncher::new(config);
    let session = created.session_id.clone();
    let mut cleanup = Cleanup {
        container: container_name(&session),
        volume: volume_name(&session),
        logs: None,
    };
    let req = LaunchRequest {
        work_id: created.work_id.clone(),
        environment_id: fake.environment_id(),
        session_id: session.clone(),
        base_url: Some(fake.base_url()),
        secret: LaunchSecret::Plaintext(SecretString::new(created.secret.clone())),
    };

    let t0 = Instant::now();
    let LaunchOutcome::Started { id } = launcher.launch(&req).await.unwrap() else {
        panic!("the first launch must start a container");
    };
    // The container's logs go with it (AutoRemove): keep a copy for failure messages.
    let dir = tempfile::tempdir().unwrap();
    let log_path: PathBuf = dir.path().join("container.log");
    cleanup.logs = std::process::Command::new("docker")
        .args(["logs", "-f", &id])
        .stdout(std::fs::File::create(&log_path).unwrap())
        .stderr(std::fs::File::create(dir.path().join("container.err")).unwrap())
        .spawn()
        .ok();
    let log = || {
        let out = std::fs::read_to_string(&log_path).unwrap_or_default();
        let err = std::fs::read_to_string(dir.path().join("container.err")).unwrap_or_default();
        format!("--- stdout\n{out}\n--- stderr\n{err}")
    };
    let waiter = {
        let launcher = launcher.clone();
        let id = id.clone();
        tokio::spawn(async move { launcher.wait(&id).await })
    };

    // A duplicate delivery for the live session: nothing new starts.
    assert_eq!(
        launcher.launch(&req).await.unwrap(),
        LaunchOutcome::AlreadyRunning { id: id.clone() },
        "{}",
        log()
    );
    // What the engine made of the create call (the runner is still in its idle window).
    let inspected = std::process::Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.HostConfig.Init}} {{.HostConfig.AutoRemove}} {{.HostConfig.NanoCpus}} \
             {{.HostConfig.Memory}} {{.HostConfig.NetworkMode}} {{.Config.User}} \
             {{index .Config.Labels \"cma.launcher\"}} {{index .Config.Labels \"cma.session_id\"}}",
            &id,
        ])
        .output()
        .expect("docker inspect");
    assert_eq!(
        String::from_utf8_lossy(&inspected.stdout).trim(),
        format!("true true 1000000000 2147483648 host 10001:10001 docker {session}"),
        "{}",
        String::from_utf8_lossy(&inspected.stderr)
    );
    let listed = launcher.list(Some(&session)).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, id);
    assert_eq!(listed[0].name, container_name(&session));
    assert_eq!(listed[0].work_id.as_deref(), Some(created.work_id.as_str()));

    let code = match tokio::time::timeout(Duration::from_secs(90), waiter).await {
        Ok(joined) => joined
            .expect("wait task")
            .unwrap_or_else(|e| panic!("{e}\n{}", log())),
        Err(_) => panic!("the container did not exit within 90 s\n{}", log()),
    };
    eprintln!("container ran and was removed after {:?}", t0.elapsed());
    if let Some(mut child) = cleanup.logs.take() {
        // `docker logs -f` ends with the container; give it a moment to flush.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let log = log();
    assert_eq!(code, 0, "runner exit code\n{log}");
    assert!(fake.script_finished(&session), "{log}");

    let results = fake.results(&session);
    let texts: Vec<String> = results.iter().map(result_text).collect();
    eprintln!("tool results: {texts:#?}");
    assert_eq!(texts.len(), 7, "{texts:#?}\n{log}");
    let mut first = texts[0].lines();
    let uid: u32 = first.next().unwrap_or_default().parse().expect("uid");
    assert_ne!(uid, 0, "the tools must not run as root");
    assert_eq!(first.next(), Some("/workspace"));
    assert_eq!(
        texts[1..],
        [
            "wrote 12 bytes to notes/a.txt".to_owned(),
            "line2".into(),
            "edited notes/a.txt (1 replacement(s))".into(),
            "/workspace/notes/a.txt".into(),
            "/workspace/notes/a.txt:2:LINE2\n".into(),
            "0".into(),
        ],
        "{log}"
    );
    for r in &results {
        assert_eq!(r["is_error"], json!(false), "{r:#}\n{log}");
    }
    assert_eq!(fake.work_state(&created.work_id), "stopped", "{log}");
    assert_eq!(
        fake.stop_calls(&created.work_id),
        vec![json!({"force": true})],
        "{log}"
    );
    assert!(
        !log.contains(&created.secret) && !log.contains(&created.sessions_token),
        "secret in the container log\n{log}"
    );

    // AutoRemove: the container is gone (wait?condition=removed already implies it;
    // the listing must agree within 30 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = launcher.list(Some(&session)).await.unwrap();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "container not removed after 30 s: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The workspace volume outlives the container (the session may resume) until
    // whoever ends the session removes it.
    assert!(launcher.remove_workspace_volume(&session).await.unwrap());
    assert!(!launcher.remove_workspace_volume(&session).await.unwrap());
}
