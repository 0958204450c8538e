//! The runner container image against the fake control plane: one scripted session
//! served by `docker run --rm --network host $CMA_RUNNER_IMAGE`.
//!
//! Needs a Docker engine and an image built by `.ci/docker-image.sh`, named in
//! `CMA_RUNNER_IMAGE` (e.g. `cma/runner:ci`). Without the variable the test is skipped,
//! except on CI with a working engine, where a missing image is a wiring error.

use std::process::Stdio;
use std::time::Duration;

use cma_shared::{ClientConfig, ControlPlane, SecretString};
use cma_tests::fake::{FakeConfig, FakeControlPlane, ScriptStep, SessionScript};
use serde_json::{Value, json};
use tokio::process::Command;

const IMAGE_VAR: &str = "CMA_RUNNER_IMAGE";

fn docker_works() -> bool {
    std::process::Command::new("docker")
        .arg("info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The image to test, or `None` to skip (panics when CI should have provided one).
fn image_or_skip() -> Option<String> {
    if let Some(image) = std::env::var(IMAGE_VAR)
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        return Some(image);
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty());
    if ci && docker_works() {
        panic!(
            "{IMAGE_VAR} is unset but this CI machine has a Docker engine: .ci/run must build the \
             runner image (`bash .ci/docker-image.sh`) and `export {IMAGE_VAR}=cma/runner:ci` \
             before `make test`"
        );
    }
    eprintln!(
        "SKIPPED: {IMAGE_VAR} is unset (build the image with `bash .ci/docker-image.sh`, then set it)"
    );
    None
}

/// Removes the container if the test ends early; the normal path leaves nothing to do.
struct ContainerGuard(String);

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn containers_named(name: &str) -> String {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            &format!("name={name}"),
            "--format",
            "{{.ID}} {{.Names}} {{.Status}}",
        ])
        .output()
        .expect("docker ps");
    assert!(
        out.status.success(),
        "docker ps failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn text(r: &Value) -> String {
    r["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn one_session_in_the_runner_container() {
    let Some(image) = image_or_skip() else { return };

    let fake = FakeControlPlane::start(FakeConfig {
        ping_interval: Duration::from_millis(200),
        ..FakeConfig::default()
    })
    .await;
    let created = fake.create_session(SessionScript::new(vec![
        ScriptStep::tool("bash", json!({"command": "id -u; id -un; echo \"home=$HOME\""})),
        ScriptStep::tool("bash", json!({"command": "env | sort"})),
        ScriptStep::tool("write", json!({"file_path": "notes/a.txt", "content": "hello from the container\n"})),
        ScriptStep::tool("read", json!({"file_path": "notes/a.txt"})),
        ScriptStep::tool(
            "bash",
            json!({"command": "pwd; stat -c '%u %a' notes/a.txt; ls -l /bin/bash | cut -c1; \
                              git init -q repo && cd repo && git add . \
                              && git -c user.name=t -c user.email=t@example.invalid commit -q --allow-empty -m init \
                              && git log --format=%s"}),
        ),
    ]));
    // What the webhook does before the task starts: poll and ack.
    let webhook = ControlPlane::new(
        ClientConfig::with_base_url(Some(&fake.base_url())),
        SecretString::new(fake.environment_key()),
    )
    .unwrap();
    let item = webhook
        .poll(&fake.environment_id(), Default::default(), "test-webhook")
        .await
        .unwrap()
        .expect("queued item");
    webhook.ack(&fake.environment_id(), &item.id).await.unwrap();

    let name = format!("cma-test-{}", uuid::Uuid::new_v4().simple());
    let _guard = ContainerGuard(name.clone());
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("container.log");
    // Secrets reach the container as `-e NAME` (value from this process's environment),
    // never on the docker command line.
    let mut cmd = Command::new("docker");
    cmd.args(["run", "--rm", "--network", "host", "--name", &name])
        .args([
            "-e",
            "ANTHROPIC_WORK_ID",
            "-e",
            "ANTHROPIC_ENVIRONMENT_ID",
            "-e",
            "ANTHROPIC_SESSION_ID",
        ])
        .args([
            "-e",
            "ANTHROPIC_WORK_SECRET",
            "-e",
            "ANTHROPIC_BASE_URL",
            "-e",
            "ANTHROPIC_API_KEY",
        ])
        .args(["-e", "AWS_SECRET_ACCESS_KEY", "-e", "RUST_LOG=info"])
        .arg(&image)
        .args(["--workdir", "/workspace", "--max-idle", "1s"])
        .env("ANTHROPIC_WORK_ID", &created.work_id)
        .env("ANTHROPIC_ENVIRONMENT_ID", fake.environment_id())
        .env("ANTHROPIC_SESSION_ID", &created.session_id)
        .env("ANTHROPIC_WORK_SECRET", &created.secret)
        .env("ANTHROPIC_BASE_URL", fake.base_url())
        .env("ANTHROPIC_API_KEY", "sk-ant-api-SHOULD-NOT-LEAK")
        .env("AWS_SECRET_ACCESS_KEY", "aws-SHOULD-NOT-LEAK")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log_path).unwrap())
        .stderr(std::fs::File::create(dir.path().join("container.err")).unwrap())
        .kill_on_drop(true);
    let t0 = std::time::Instant::now();
    let mut child = cmd.spawn().expect("spawn docker");
    let log = || {
        let out = std::fs::read_to_string(&log_path).unwrap_or_default();
        let err = std::fs::read_to_string(dir.path().join("container.err")).unwrap_or_default();
        format!("--- stdout\n{out}\n--- stderr\n{err}")
    };
    let status = match tokio::time::timeout(Duration::from_secs(60), child.wait()).await {
        Ok(status) => status.expect("wait for docker run"),
        Err(_) => panic!("the container did not exit within 60 s\n{}", log()),
    };
    eprintln!("container ran for {:?}", t0.elapsed());
    let log = log();
    assert_eq!(status.code(), Some(0), "docker run exit status\n{log}");
    assert!(
        fake.script_finished(&created.session_id),
        "script not finished\n{log}"
    );

    let results = fake.results(&created.session_id);
    let texts: Vec<String> = results.iter().map(text).collect();
    eprintln!("tool results: {texts:#?}");
    assert_eq!(texts.len(), 5, "{texts:#?}\n{log}");
    for r in &results {
        assert_eq!(r["is_error"], json!(false), "{r:#}\n{log}");
    }
    let mut id = texts[0].lines();
    let uid: u32 = id.next().unwrap_or_default().parse().expect("uid");
    assert_ne!(uid, 0, "the tools must not run as root: {}", texts[0]);
    assert_eq!(id.next(), Some("runner"), "{}", texts[0]);
    assert_eq!(id.next(), Some("home=/home/runner"), "{}", texts[0]);
    assert!(texts[1].contains("PATH="), "env output: {}", texts[1]);
    assert!(
        !texts[1].contains("ANTHROPIC_"),
        "secrets leaked into tools: {}",
        texts[1]
    );
    assert!(
        !texts[1].contains("SHOULD-NOT-LEAK"),
        "secrets leaked into tools: {}",
        texts[1]
    );
    assert_eq!(texts[2], "wrote 25 bytes to notes/a.txt");
    assert!(
        texts[3].contains("hello from the container"),
        "{}",
        texts[3]
    );
    assert_eq!(
        texts[4],
        format!("/workspace\n{uid} 644\n-\ninit"),
        "bash/git in the image"
    );

    assert_eq!(fake.work_state(&created.work_id), "stopped", "{log}");
    assert_eq!(
        fake.stop_calls(&created.work_id),
        vec![json!({"force": true})],
        "{log}"
    );
    assert!(
        !log.contains("SHOULD-NOT-LEAK") && !log.contains(&created.secret),
        "secret in the logs\n{log}"
    );

    // `docker run --rm` returns after the engine removed the container; allow a moment.
    let mut left = containers_named(&name);
    for _ in 0..50 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = containers_named(&name);
    }
    assert_eq!(left, "", "the container was not removed");
}
