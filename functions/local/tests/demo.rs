//! The demo pipeline (`cma-local demo`) end to end: in-process with the process
//! launcher, through the binary (exit status, transcript), its failure modes, and with
//! the Docker launcher when `CMA_RUNNER_IMAGE` names a runner image.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use local::demo::{self, DemoOptions};
use local::launchers::{Kind, LauncherSettings};

const BIN: &str = env!("CARGO_BIN_EXE_cma-local");

fn process_options() -> DemoOptions {
    let mut launcher = LauncherSettings::demo();
    launcher.kind = Kind::Process;
    launcher.runner_bin = Some(common::runner_bin());
    DemoOptions {
        launcher,
        timeout: Duration::from_secs(60),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_every_call_with_the_process_launcher() {
    let opts = process_options();
    let mut buf = Vec::new();
    let report = demo::run(&opts, &mut buf).await;
    let text = String::from_utf8(buf).unwrap();
    assert!(report.success(), "{:?}\n{text}", report.failure);
    assert_eq!(report.launcher, "process");

    // Every scripted call answered in order, with the expected is_error.
    let steps = demo::demo_steps();
    assert_eq!(report.calls.len(), steps.len(), "{text}");
    for (call, step) in report.calls.iter().zip(&steps) {
        assert_eq!(call.tool, step.step.name, "{text}");
        assert_eq!(
            call.is_error, step.expect_error,
            "call #{}: {}",
            call.index, call.text
        );
    }
    let tools: std::collections::BTreeSet<&str> =
        report.calls.iter().map(|c| c.tool.as_str()).collect();
    assert_eq!(
        tools.into_iter().collect::<Vec<_>>(),
        ["bash", "edit", "glob", "grep", "read", "write"]
    );
    // The real tools ran: the test failed before the fix and passed after it.
    assert!(
        report.calls[2].text.contains("FAIL greets by name"),
        "{text}"
    );
    assert!(
        report.calls[7].text.contains("ok   defaults to world"),
        "{text}"
    );
    assert!(report.calls[7].text.contains("all tests passed"), "{text}");
    assert!(
        report.calls[4].text.contains("echo \"Hello, $1\""),
        "{text}"
    );

    // Timings exist and are in pipeline order.
    let t = &report.timings;
    let order = [
        ("claimed", t.claimed),
        ("enqueued", t.enqueued),
        ("launched", t.launched),
        ("runner_started", t.runner_started),
        ("first_result", t.first_result),
        ("last_result", t.last_result),
        ("stopped", t.stopped),
    ];
    let mut prev = Duration::ZERO;
    for (name, v) in order {
        let v = v.unwrap_or_else(|| panic!("no {name} timing\n{text}"));
        assert!(
            v >= prev,
            "{name} ({v:?}) before the previous stage ({prev:?})\n{text}"
        );
        prev = v;
    }

    // The transcript: each call with its input, result lines and the summary.
    for needle in [
        "POST http://127.0.0.1:",
        "session.status_run_started (signed) → 200",
        "claim    poll + ack of work_",
        "launch   process launcher: started runner pid",
        "first heartbeat accepted",
        "#1 write greeter/greet.sh (5 lines, 92 bytes)",
        "#3 bash  cd greeter && ls -l && bash test.sh",
        "│ FAIL greets by name: got 'Hello, Ada', want 'Hello, Ada!'",
        "#4 grep  \"Hello\" in greeter",
        "│ greeter/greet.sh:4:  echo \"Hello, $1\"",
        "#6 edit  greeter/greet.sh",
        "#9 glob  \"**/*.sh\"",
        "#10 read greeter/CHANGELOG.md",
        "is_error (as scripted)",
        "end_turn",
        "stopped  the runner force-stopped",
        "10 of 10 tool calls answered (9 ok, 1 is_error), launcher: process",
        "webhook → first tool result",
        "OK: every call answered, the script finished, the runner stopped the work item.",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    // Paths are shown relative to the runner's workdir.
    assert!(!text.contains("/greeter/greet.sh:4:"), "{text}");
}

#[test]
fn the_binary_exits_0_and_prints_the_transcript() {
    let runner = common::runner_bin();
    let out = Command::new(BIN)
        .args(["demo", "--launcher", "process", "--runner"])
        .arg(&runner)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("cma-local demo: the whole pipeline"),
        "{stdout}"
    );
    assert!(stdout.contains("OK: every call answered"), "{stdout}");
    assert!(stdout.contains("│ all tests passed"), "{stdout}");
    // Nothing on stderr in a good run (no log noise, no secrets).
    assert!(stderr.trim().is_empty(), "{stderr}");
}

#[test]
fn a_runner_that_never_starts_fails_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let fake_runner = dir.path().join("runner");
    std::fs::write(&fake_runner, "#!/bin/sh\necho 'not a runner' >&2\nexit 3\n").unwrap();
    std::fs::set_permissions(&fake_runner, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(BIN)
        .args([
            "demo",
            "--launcher",
            "process",
            "--timeout",
            "2s",
            "--runner",
        ])
        .arg(&fake_runner)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAILED: timed out after 2.00 s: the runner never heartbeated"),
        "{stdout}"
    );
    // The log of the failed runner is kept and named.
    let log_line = stdout
        .lines()
        .find(|l| l.starts_with("runner log kept: "))
        .unwrap_or_else(|| panic!("no log path in\n{stdout}"));
    let log = std::fs::read_to_string(log_line.trim_start_matches("runner log kept: ")).unwrap();
    assert!(log.contains("not a runner"), "{log}");
    let _ = std::fs::remove_dir_all(
        std::path::Path::new(log_line.trim_start_matches("runner log kept: "))
            .parent()
            .unwrap(),
    );
}

#[test]
fn a_missing_runner_or_image_is_a_clear_error() {
    let out = Command::new(BIN)
        .args([
            "demo",
            "--launcher",
            "process",
            "--runner",
            "/nonexistent/runner",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAILED: --runner /nonexistent/runner: no such file"),
        "{stdout}"
    );

    // --launcher docker with an image that cannot exist: says why (no engine, or no
    // such image), never falls back silently.
    let out = Command::new(BIN)
        .args([
            "demo",
            "--launcher",
            "docker",
            "--image",
            "cma/no-such-image:never",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAILED: --launcher docker: "), "{stdout}");

    let out = Command::new(BIN)
        .args(["demo", "--bogus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bogus"));
}

#[test]
fn auto_falls_back_to_the_process_launcher_and_says_why() {
    let runner = common::runner_bin();
    let out = Command::new(BIN)
        .args(["demo", "--image", "cma/no-such-image:never", "--runner"])
        .arg(&runner)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("launcher       process: "), "{stdout}");
    assert!(stdout.contains("(auto: not Docker because "), "{stdout}");
}

/// With a runner image (`CMA_RUNNER_IMAGE`, set by `.ci/run`): the same demo in one
/// container per session on the host network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_with_the_docker_launcher() {
    let Some(image) = std::env::var("CMA_RUNNER_IMAGE")
        .ok()
        .filter(|v| !v.trim().is_empty())
    else {
        eprintln!(
            "SKIPPED: CMA_RUNNER_IMAGE is unset (build the image with `bash .ci/docker-image.sh`)"
        );
        return;
    };
    let mut launcher = LauncherSettings::demo();
    launcher.kind = Kind::Docker;
    launcher.image = image;
    let opts = DemoOptions {
        launcher,
        timeout: Duration::from_secs(90),
    };
    let mut buf = Vec::new();
    let report = demo::run(&opts, &mut buf).await;
    let text = String::from_utf8(buf).unwrap();
    assert!(report.success(), "{:?}\n{text}", report.failure);
    assert_eq!(report.launcher, "docker");
    assert_eq!(report.calls.len(), demo::demo_steps().len(), "{text}");
    assert!(
        text.contains("launch   docker launcher: started container "),
        "{text}"
    );
    assert!(text.contains("(workdir /workspace)"), "{text}");
}
