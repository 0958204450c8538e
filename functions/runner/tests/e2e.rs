//! The real `runner` binary against the fake control plane.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use cma_shared::client::NO_HEARTBEAT;
use cma_shared::{ClientConfig, ControlPlane, SecretString};
use cma_tests::fake::{
    CreatedSession, Endpoint, FakeConfig, FakeControlPlane, Faults, ScriptStep, SessionScript,
};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

const RUNNER: &str = env!("CARGO_BIN_EXE_runner");

async fn fake_with_ttl(ttl: u64) -> FakeControlPlane {
    FakeControlPlane::start(FakeConfig {
        lease_ttl_seconds: ttl,
        ping_interval: Duration::from_millis(200),
        ..FakeConfig::default()
    })
    .await
}

struct Spawned {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
    workdir: PathBuf,
}

impl Spawned {
    async fn wait(&mut self, limit: Duration) -> i32 {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) => status.code().unwrap_or(-1),
            _ => {
                let _ = self.child.start_kill();
                panic!("runner did not exit within {limit:?}; log:\n{}", self.log());
            }
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn runner_cmd(
    fake: &FakeControlPlane,
    created: &CreatedSession,
    workdir: &Path,
    log: &Path,
) -> Command {
    let mut cmd = Command::new(RUNNER);
    cmd.env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        )
        .env("ANTHROPIC_WORK_ID", &created.work_id)
        .env("ANTHROPIC_ENVIRONMENT_ID", fake.environment_id())
        .env("ANTHROPIC_SESSION_ID", &created.session_id)
        .env("ANTHROPIC_WORK_SECRET", &created.secret)
        .env("ANTHROPIC_BASE_URL", fake.base_url())
        .env("ANTHROPIC_API_KEY", "sk-ant-api-SHOULD-NOT-LEAK")
        .env("AWS_SECRET_ACCESS_KEY", "aws-SHOULD-NOT-LEAK")
        .env("RUST_LOG", "info")
        .args(["--workdir", workdir.to_str().unwrap(), "--max-idle", "1s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true);
    cmd
}

fn spawn(fake: &FakeControlPlane, created: &CreatedSession) -> Spawned {
    let dir = tempfile::tempdir().unwrap();
    let workdir = dir.path().join("workspace");
    std::fs::create_dir_all(&workdir).unwrap();
    let log = dir.path().join("runner.log");
    let child = runner_cmd(fake, created, &workdir, &log).spawn().unwrap();
    Spawned {
        child,
        log,
        workdir: workdir.canonicalize().unwrap(),
        _dir: dir,
    }
}

/// Hand the queued item to "the webhook" (poll + ack) so the runner can claim it.
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

/// True if `pid` exists and is not a zombie (a killed orphan may wait for its reaper).
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

fn result_text(r: &Value) -> String {
    r["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn stop_requests(fake: &FakeControlPlane, work_id: &str) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.path.ends_with(&format!("/work/{work_id}/stop")))
        .count()
}

#[tokio::test]
async fn full_scripted_session_idle_exit_and_force_stop() {
    let fake = fake_with_ttl(60).await;
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
        ScriptStep::tool("bash", json!({"command": "false"})),
    ]));
    claim(&fake).await;
    let mut r = spawn(&fake, &created);
    let code = r.wait(Duration::from_secs(30)).await;
    let log = r.log();
    assert_eq!(code, 0, "{log}");
    assert!(fake.script_finished(&created.session_id), "{log}");
    let results = fake.results(&created.session_id);
    let texts: Vec<String> = results.iter().map(result_text).collect();
    let ws = r.workdir.display().to_string();
    assert_eq!(
        texts,
        vec![
            "hello\nerr".to_owned(),
            "wrote 12 bytes to notes/a.txt".into(),
            "line2".into(),
            "edited notes/a.txt (1 replacement(s))".into(),
            format!("{ws}/notes/a.txt"),
            format!("{ws}/notes/a.txt:2:LINE2\n"),
            "(no output)".into(),
        ],
        "{log}"
    );
    let errors: Vec<bool> = results
        .iter()
        .map(|r| r["is_error"].as_bool().unwrap())
        .collect();
    assert_eq!(errors, vec![false, false, false, false, false, false, true]);
    assert_eq!(fake.work_state(&created.work_id), "stopped");
    assert_eq!(
        fake.stop_calls(&created.work_id),
        vec![json!({"force": true})]
    );
    assert!(
        log.contains(&created.session_id) && log.contains(&created.work_id),
        "spans carry ids: {log}"
    );
    assert!(
        !log.contains(&created.sessions_token),
        "token leaked into logs"
    );
    assert!(!log.contains("SHOULD-NOT-LEAK"));
    assert!(!log.contains(&created.secret));
}

#[tokio::test]
async fn lease_lost_kills_the_tool_and_never_stops() {
    let fake = fake_with_ttl(2).await;
    let created = fake.create_session(SessionScript::new(vec![ScriptStep::tool(
        "bash",
        json!({"command": "sleep 20; touch done.flag", "timeout_ms": 60000}),
    )]));
    claim(&fake).await;
    let mut r = spawn(&fake, &created);
    // Wait until the tool is running (the stream is open and a beat succeeded).
    assert!(
        fake.wait_until(Duration::from_secs(10), |f| f
            .requests()
            .iter()
            .any(|q| q.path.ends_with("/events/stream")))
            .await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    fake.set_faults(Faults {
        status_override: vec![(Endpoint::Heartbeat, 412, 100)],
        ..Faults::default()
    });
    let t0 = Instant::now();
    let code = r.wait(Duration::from_secs(10)).await;
    assert_eq!(code, 0, "{}", r.log());
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "exit right after the 412"
    );
    assert_eq!(
        stop_requests(&fake, &created.work_id),
        0,
        "a lost lease is never stopped"
    );
    assert!(
        fake.results(&created.session_id).is_empty(),
        "nothing posted after losing the lease"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!r.workdir.join("done.flag").exists());
    assert!(r.log().contains("lease lost"), "{}", r.log());
}

#[tokio::test]
async fn stopping_tears_down_and_force_stops() {
    let fake = fake_with_ttl(2).await;
    let created = fake.create_session(SessionScript::new(vec![ScriptStep::tool(
        "bash",
        json!({"command": "sleep 20; touch done.flag", "timeout_ms": 60000}),
    )]));
    claim(&fake).await;
    let mut r = spawn(&fake, &created);
    assert!(
        fake.wait_until(Duration::from_secs(10), |f| f
            .requests()
            .iter()
            .any(|q| q.path.ends_with("/events/stream")))
            .await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    fake.request_stop(&created.work_id);
    let code = r.wait(Duration::from_secs(10)).await;
    assert_eq!(code, 0, "{}", r.log());
    assert_eq!(fake.work_state(&created.work_id), "stopped");
    assert_eq!(
        fake.stop_calls(&created.work_id).last(),
        Some(&json!({"force": true}))
    );
    assert!(fake.results(&created.session_id).is_empty());
    assert!(!r.workdir.join("done.flag").exists());
}

#[tokio::test]
async fn second_runner_gets_412_and_leaves_the_session_alone() {
    let fake = fake_with_ttl(60).await;
    let created = fake.create_session(SessionScript::new(vec![ScriptStep::tool(
        "bash",
        json!({"command": "echo 1"}),
    )]));
    claim(&fake).await;
    // The "first runner" claims the lease.
    let c = ControlPlane::new(
        ClientConfig::with_base_url(Some(&fake.base_url())),
        SecretString::new(created.sessions_token.clone()),
    )
    .unwrap();
    c.heartbeat(
        &fake.environment_id(),
        &created.work_id,
        NO_HEARTBEAT,
        None,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    fake.clear_requests();
    let mut r = spawn(&fake, &created);
    let code = r.wait(Duration::from_secs(10)).await;
    assert_eq!(code, 0, "{}", r.log());
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1, "only the failed first heartbeat: {reqs:#?}");
    assert!(reqs[0].path.ends_with("/heartbeat") && reqs[0].status == 412);
}

#[tokio::test]
async fn chaos_every_call_answered_once_never_executed_twice() {
    let fake = fake_with_ttl(60).await;
    let n = 50;
    let steps = (0..n)
        .map(|i| {
            ScriptStep::tool(
                "bash",
                json!({"command": format!("echo {i} >> exec.log; echo call-{i}")}),
            )
        })
        .collect();
    let created = fake.create_session(SessionScript::new(steps));
    claim(&fake).await;
    let all = [
        Endpoint::Heartbeat,
        Endpoint::Stop,
        Endpoint::SessionRetrieve,
        Endpoint::EventsList,
        Endpoint::EventsStream,
        Endpoint::EventsSend,
    ];
    fake.set_faults(Faults {
        seed: 7,
        error_rate: all.iter().map(|e| (*e, 0.1)).collect(),
        stream_drop_after: Some(3),
        ..Faults::default()
    });
    let mut r = spawn(&fake, &created);
    let code = r.wait(Duration::from_secs(120)).await;
    let log = r.log();
    assert_eq!(code, 0, "{log}");
    assert!(fake.script_finished(&created.session_id), "{log}");
    let results = fake.results(&created.session_id);
    assert_eq!(results.len(), n, "every call answered exactly once");
    assert_eq!(fake.duplicate_results(&created.session_id), 0);
    for (i, res) in results.iter().enumerate() {
        assert_eq!(result_text(res), format!("call-{i}"));
    }
    let exec = std::fs::read_to_string(r.workdir.join("exec.log")).unwrap();
    let lines: Vec<&str> = exec.lines().collect();
    let want: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    assert_eq!(lines, want, "each call executed exactly once, in order");
    let injected = fake.requests().iter().filter(|q| q.status == 500).count();
    assert!(injected > 5, "faults were injected ({injected})");
}

#[tokio::test]
async fn ownership_and_permission_gating() {
    let fake = fake_with_ttl(60).await;
    let created = fake.create_session(SessionScript::new(vec![
        ScriptStep::tool("web_fetch", json!({"url": "https://example.com"})),
        ScriptStep::custom("lookup", json!({"q": 1})),
        ScriptStep::tool(
            "bash",
            json!({"command": "touch allowed.flag; echo allowed"}),
        )
        .with_permission("ask"),
        ScriptStep::tool("bash", json!({"command": "touch denied.flag"})).with_permission("ask"),
        ScriptStep::tool("bash", json!({"command": "echo last"})),
    ]));
    claim(&fake).await;
    let mut r = spawn(&fake, &created);
    let sid = created.session_id.clone();
    let call_ids = |f: &FakeControlPlane, pred: &dyn Fn(&Value) -> bool| -> Vec<String> {
        f.events(&sid)
            .iter()
            .filter(|e| e["type"] == "agent.tool_use" || e["type"] == "agent.custom_tool_use")
            .filter(|e| pred(e))
            .filter_map(|e| e["id"].as_str().map(str::to_owned))
            .collect()
    };

    // 1. An unowned built-in name: nothing posted; another client answers it.
    assert!(
        fake.wait_until(Duration::from_secs(10), |f| !call_ids(f, &|e| e["name"]
            == "web_fetch")
        .is_empty())
            .await
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(fake.results(&sid).is_empty(), "unowned call left pending");
    let web = call_ids(&fake, &|e| e["name"] == "web_fetch").remove(0);
    let other_client = ControlPlane::new(
        ClientConfig::with_base_url(Some(&fake.base_url())),
        SecretString::new(fake.environment_key()),
    )
    .unwrap();
    let answer = cma_shared::types::OutgoingEvent::result_for(
        false,
        &web,
        false,
        vec![cma_shared::types::ContentBlock::text("fetched elsewhere")],
    );
    other_client.send_events(&sid, &[answer]).await.unwrap();

    // 2. A custom tool: left pending for the customer backend.
    assert!(
        fake.wait_until(Duration::from_secs(10), |f| !call_ids(f, &|e| e["name"]
            == "lookup")
        .is_empty())
            .await
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(fake.results(&sid).len(), 1, "custom call left pending");
    let lookup = call_ids(&fake, &|e| e["name"] == "lookup").remove(0);
    fake.answer_custom(&sid, &lookup, "backend answer");

    // 3. ask → held until confirmed, then runs.
    let asks = |f: &FakeControlPlane| call_ids(f, &|e| e["evaluated_permission"] == "ask");
    assert!(
        fake.wait_until(Duration::from_secs(10), |f| asks(f).len() == 1)
            .await
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !r.workdir.join("allowed.flag").exists(),
        "held until confirmed"
    );
    fake.confirm(&sid, &asks(&fake)[0], true);

    // 4. ask → deny never runs.
    assert!(
        fake.wait_until(Duration::from_secs(10), |f| asks(f).len() == 2)
            .await
    );
    fake.confirm(&sid, &asks(&fake)[1], false);

    let code = r.wait(Duration::from_secs(20)).await;
    assert_eq!(code, 0, "{}", r.log());
    assert!(r.workdir.join("allowed.flag").exists());
    assert!(
        !r.workdir.join("denied.flag").exists(),
        "ask→deny never runs"
    );
    let texts: Vec<String> = fake.results(&sid).iter().map(result_text).collect();
    assert_eq!(
        texts,
        vec!["fetched elsewhere", "backend answer", "allowed", "last"],
        "{}",
        r.log()
    );
}

#[tokio::test]
async fn sigterm_mid_tool_kills_the_group_and_force_stops() {
    let fake = fake_with_ttl(60).await;
    let created = fake.create_session(SessionScript::new(vec![ScriptStep::tool(
        "bash",
        json!({"command": "(sleep 30; touch child.flag) & echo $! > child.pid; sleep 30; touch done.flag", "timeout_ms": 60000}),
    )]));
    claim(&fake).await;
    let mut r = spawn(&fake, &created);
    let pid_file = r.workdir.join("child.pid");
    let t = Instant::now();
    while !pid_file.exists() && t.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let child_pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let runner_pid = r.child.id().unwrap() as i32;
    unsafe { libc::kill(runner_pid, libc::SIGTERM) };
    let t0 = Instant::now();
    let code = r.wait(Duration::from_secs(10)).await;
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_eq!(code, 0, "{}", r.log());
    assert_eq!(fake.work_state(&created.work_id), "stopped");
    assert_eq!(
        fake.stop_calls(&created.work_id),
        vec![json!({"force": true})]
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !running(child_pid),
        "background child of the tool survived teardown"
    );
}

#[tokio::test]
async fn secrets_never_reach_tools() {
    let fake = fake_with_ttl(60).await;
    let created = fake.create_session(SessionScript::new(vec![
        ScriptStep::tool("bash", json!({"command": "env"})),
        ScriptStep::tool(
            "bash",
            json!({"command": "if cat /proc/$PPID/environ >/dev/null 2>&1; then echo READABLE; else echo unreadable; fi; [ $(id -u) = $(stat -c %u /proc/$PPID) ] && echo same-uid"}),
        ),
    ]));
    claim(&fake).await;
    let dir = tempfile::tempdir().unwrap();
    let workdir = dir.path().join("workspace");
    std::fs::create_dir_all(&workdir).unwrap();
    // As in the container, run as an unprivileged user: root could read anything.
    let as_root = unsafe { libc::geteuid() } == 0;
    if as_root {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::set_permissions(&workdir, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let log = dir.path().join("runner.log");
    let plain = runner_cmd(&fake, &created, &workdir, &log);
    let mut cmd = if as_root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(RUNNER);
        let std_cmd = plain.as_std();
        c.env_clear();
        for (k, v) in std_cmd.get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        c.args(std_cmd.get_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true);
        c
    } else {
        plain
    };
    let status = tokio::time::timeout(Duration::from_secs(20), cmd.status())
        .await
        .unwrap()
        .unwrap();
    let logtext = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{logtext}");
    let texts: Vec<String> = fake
        .results(&created.session_id)
        .iter()
        .map(result_text)
        .collect();
    assert_eq!(texts.len(), 2, "{logtext}");
    for t in &texts {
        assert!(!t.contains("ANTHROPIC_"), "{t}");
        assert!(!t.contains("SHOULD-NOT-LEAK"), "{t}");
        assert!(!t.contains(&created.sessions_token), "{t}");
        assert!(!t.contains("AWS_SECRET_ACCESS_KEY"), "{t}");
    }
    assert_eq!(
        texts[1], "unreadable\nsame-uid",
        "a same-uid tool cannot read the runner's environ"
    );
}

#[tokio::test]
async fn bad_input_exits_2_without_network() {
    let out = std::process::Command::new(RUNNER)
        .env_clear()
        .env("ANTHROPIC_WORK_ID", "w")
        .env("ANTHROPIC_ENVIRONMENT_ID", "e")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim(), "runner: ANTHROPIC_SESSION_ID is not set");
    let out = std::process::Command::new(RUNNER)
        .args(["--max-idle", "later"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-idle"));
    let out = std::process::Command::new(RUNNER)
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--workdir"));
}

#[tokio::test]
async fn no_successful_beat_for_a_ttl_is_assumed_lost() {
    let fake = fake_with_ttl(2).await;
    let created = fake.create_session(SessionScript::new(vec![ScriptStep::tool(
        "bash",
        json!({"command": "sleep 20; touch done.flag", "timeout_ms": 60000}),
    )]));
    claim(&fake).await;
    let mut r = spawn(&fake, &created);
    assert!(
        fake.wait_until(Duration::from_secs(10), |f| f
            .requests()
            .iter()
            .any(|q| q.path.ends_with("/events/stream")))
            .await
    );
    fake.set_faults(Faults {
        error_rate: vec![(Endpoint::Heartbeat, 1.0)],
        ..Faults::default()
    });
    let code = r.wait(Duration::from_secs(15)).await;
    assert_eq!(code, 0, "{}", r.log());
    assert!(r.log().contains("lease assumed lost"), "{}", r.log());
    assert_eq!(
        stop_requests(&fake, &created.work_id),
        0,
        "an assumed-lost lease is never stopped"
    );
    assert!(fake.results(&created.session_id).is_empty());
    assert!(!r.workdir.join("done.flag").exists());
}

#[tokio::test]
async fn terminated_session_ends_the_run_and_force_stops() {
    let fake = fake_with_ttl(60).await;
    let created = fake.create_session(SessionScript::new(vec![ScriptStep::tool(
        "bash",
        json!({"command": "sleep 20", "timeout_ms": 60000}),
    )]));
    claim(&fake).await;
    let mut r = spawn(&fake, &created);
    assert!(
        fake.wait_until(Duration::from_secs(10), |f| f
            .requests()
            .iter()
            .any(|q| q.path.ends_with("/events/stream")))
            .await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    fake.terminate_session(&created.session_id);
    let code = r.wait(Duration::from_secs(10)).await;
    assert_eq!(code, 0, "{}", r.log());
    assert_eq!(fake.work_state(&created.work_id), "stopped");
    assert!(
        fake.results(&created.session_id).is_empty(),
        "a terminated session takes no results"
    );

    // A session already terminated before the runner starts: no tool loop at all.
    let again = fake.enqueue_for_session(&created.session_id);
    claim(&fake).await;
    let mut r = spawn(&fake, &again);
    assert_eq!(r.wait(Duration::from_secs(10)).await, 0, "{}", r.log());
    assert_eq!(fake.work_state(&again.work_id), "stopped");
    assert!(
        !fake
            .requests()
            .iter()
            .any(|q| q.path.ends_with("/events/stream")
                && q.at
                    > fake
                        .requests()
                        .iter()
                        .find(|x| x.path.contains(&again.work_id))
                        .unwrap()
                        .at),
        "no stream opened for a terminated session"
    );
}
