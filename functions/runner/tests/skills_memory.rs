//! Skills and memory stores through the real `runner` binary against the fake
//! control plane (issue: "a session with two memory stores and one skill runs end to
//! end through the `runner` binary"). The algorithms themselves (archive rules, the
//! §10.5 decision table, corroborated deletes) are unit-tested in `src/skills` and
//! `src/memory`; here we check the wiring: order, credentials, tool roots, syncs
//! after calls, the final sync on idle exit, the flush on SIGTERM, and failures.

use std::io::{Cursor, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use cma_shared::{ClientConfig, ControlPlane, SecretString};
use cma_tests::fake::{
    CreatedSession, FakeConfig, FakeControlPlane, ScriptStep, SessionScript, content_sha256,
};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

const RUNNER: &str = env!("CARGO_BIN_EXE_runner");

async fn fake() -> FakeControlPlane {
    FakeControlPlane::start(FakeConfig {
        ping_interval: Duration::from_millis(200),
        ..FakeConfig::default()
    })
    .await
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

struct Run {
    child: Child,
    log: PathBuf,
    dir: tempfile::TempDir,
    workdir: PathBuf,
}

impl Run {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait(&mut self, limit: Duration) -> i32 {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) => status.code().unwrap_or(-1),
            _ => {
                let _ = self.child.start_kill();
                panic!("runner did not exit within {limit:?}; log:\n{}", self.log());
            }
        }
    }

    /// `mnt/<name>` below the test's temp dir (an absolute `mount_path` that does not
    /// exist yet, like `/mnt/memory/<slug>` in a task).
    fn mount(&self, name: &str) -> PathBuf {
        self.dir.path().join("mnt").join(name)
    }
}

/// Prepare a run (workdir, log) without starting it, so mount paths can be derived.
fn prepare() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let workdir = dir.path().join("workspace");
    std::fs::create_dir_all(&workdir).unwrap();
    let workdir = workdir.canonicalize().unwrap();
    let log = dir.path().join("runner.log");
    (dir, workdir, log)
}

fn start(
    fake: &FakeControlPlane,
    created: &CreatedSession,
    prepared: (tempfile::TempDir, PathBuf, PathBuf),
    extra_env: &[(&str, &str)],
    with_secret: bool,
) -> Run {
    let (dir, workdir, log) = prepared;
    let mut cmd = Command::new(RUNNER);
    cmd.env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        )
        .env("ANTHROPIC_WORK_ID", &created.work_id)
        .env("ANTHROPIC_ENVIRONMENT_ID", fake.environment_id())
        .env("ANTHROPIC_SESSION_ID", &created.session_id)
        .env("ANTHROPIC_BASE_URL", fake.base_url())
        .env("RUST_LOG", "info")
        .args(["--workdir", workdir.to_str().unwrap(), "--max-idle", "1s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true);
    if with_secret {
        cmd.env("ANTHROPIC_WORK_SECRET", &created.secret);
    }
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    Run {
        child: cmd.spawn().unwrap(),
        log,
        dir,
        workdir,
    }
}

fn texts(fake: &FakeControlPlane, session: &str) -> Vec<String> {
    fake.results(session)
        .iter()
        .map(|r| {
            r["content"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// A skill zip with a wrapper folder, an executable script and a plain file.
fn skill_zip(top: &str) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let exec = SimpleFileOptions::default().unix_permissions(0o755);
    let plain = SimpleFileOptions::default().unix_permissions(0o644);
    w.add_directory(format!("{top}/"), plain).unwrap();
    w.start_file(format!("{top}/SKILL.md"), plain).unwrap();
    w.write_all(b"---\nname: pdf\n---\nUse run.sh\n").unwrap();
    w.start_file(format!("{top}/scripts/run.sh"), exec).unwrap();
    w.write_all(b"#!/bin/sh\necho skill-ran\n").unwrap();
    w.finish().unwrap().into_inner()
}

/// A tar.gz skill with a wrapper folder, an executable, and a symlink member that
/// must be skipped.
fn skill_tar_gz(top: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    let mut add = |path: &str, mode: u32, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append_data(&mut h, path, data).unwrap();
    };
    add(&format!("{top}/SKILL.md"), 0o644, b"# lint\n");
    add(&format!("{top}/bin/lint"), 0o775, b"#!/bin/sh\necho lint\n");
    let mut h = tar::Header::new_gnu();
    h.set_size(0);
    h.set_mode(0o777);
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_cksum();
    b.append_link(&mut h, format!("{top}/passwd"), "/etc/passwd")
        .unwrap();
    b.into_inner().unwrap().finish().unwrap()
}

/// A zip whose only file escapes (`../escape.txt`): the whole skill is rejected.
fn zip_slip() -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    w.start_file("good/SKILL.md", SimpleFileOptions::default())
        .unwrap();
    w.write_all(b"ok").unwrap();
    w.start_file("../escape.txt", SimpleFileOptions::default())
        .unwrap();
    w.write_all(b"pwned").unwrap();
    w.finish().unwrap().into_inner()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn memory_requests(fake: &FakeControlPlane) -> Vec<cma_tests::fake::RecordedRequest> {
    fake.requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/v1/memory_stores/"))
        .collect()
}

/// The end-to-end case: two memory stores (read-write with a mount path,
/// read-only under the workdir) and skills, through one session.
#[tokio::test]
async fn two_memory_stores_and_skills_end_to_end() {
    let fake = fake().await;
    // Skills: `latest` resolves to v2 (v1 is stale and must not be downloaded).
    fake.add_skill_version("skill_pdf", "skillver_1", "pdf", skill_zip("old"));
    fake.add_skill_version("skill_pdf", "skillver_2", "pdf", skill_zip("pdf"));
    fake.add_skill_version("skill_lint", "skillver_9", "lint", skill_tar_gz("lint"));
    fake.add_skill_version("skill_evil", "skillver_e", "evil", zip_slip());

    let rw = fake.create_memory_store("User Preferences");
    let ro = fake.create_memory_store("Team Docs");
    fake.put_memory(&rw, "/notes.md", "v1 notes");
    fake.put_memory(&rw, "/conflict.md", "base");
    fake.put_memory(&rw, "/deep/a/b.md", "nested");
    fake.put_memory(&ro, "/handbook.md", "read me");
    let notes_sha_v1 = content_sha256("v1 notes");

    let prepared = prepare();
    let rw_root = prepared.0.path().join("mnt").join("prefs");
    let ready = prepared.0.path().join("ready.flag");
    let ro_root = prepared.1.join("memory").join("Team Docs");
    let rw_s = rw_root.display().to_string();
    let ro_s = ro_root.display().to_string();
    let created = fake.create_session(
        SessionScript::new(vec![
            // 1: skills placed, wrapper stripped, exec bit kept, symlink skipped.
            ScriptStep::tool(
                "bash",
                json!({"command": "ls skills; ls skills/lint; skills/pdf/scripts/run.sh; cat skills/pdf/SKILL.md | head -1"}),
            ),
            // 2: the memory stores are mounted with their content.
            ScriptStep::tool(
                "bash",
                json!({"command": format!("cat '{rw_s}/notes.md'; echo; cat '{rw_s}/deep/a/b.md'; echo; cat '{ro_s}/handbook.md'")}),
            ),
            // 3: local edit, local create, local edit of a file that changes remotely.
            ScriptStep::tool(
                "write",
                json!({"file_path": format!("{rw_s}/notes.md"), "content": "v2 notes"}),
            ),
            ScriptStep::tool(
                "write",
                json!({"file_path": format!("{rw_s}/new.md"), "content": "created here"}),
            ),
            ScriptStep::tool(
                "edit",
                json!({"file_path": format!("{rw_s}/conflict.md"), "old_string": "base", "new_string": "local"}),
            ),
            // 4: writes into the read-only store are refused by the file tools.
            ScriptStep::tool(
                "write",
                json!({"file_path": format!("{ro_s}/handbook.md"), "content": "vandalised"}),
            ),
            // 5: the test edits the remote copy while this runs; the sync after the
            // call (interval 10 s, the mount counts as a sync) pushes and pulls.
            ScriptStep::tool(
                "bash",
                json!({"command": format!("touch '{}'; sleep 11", ready.display()), "timeout_ms": 30000}),
            ),
            // 6: the remote version of the conflicting file won.
            ScriptStep::tool(
                "read",
                json!({"file_path": format!("{rw_s}/conflict.md")}),
            ),
            // 7: created just before the idle exit: only the final sync pushes it.
            ScriptStep::tool(
                "write",
                json!({"file_path": format!("{rw_s}/final.md"), "content": "last words"}),
            ),
        ])
        .with_skill("skill_pdf", "latest")
        .with_skill("skill_lint", "skillver_9")
        .with_skill("skill_evil", "latest")
        .with_memory_store(&rw, "read_write", Some(&rw_s), "User Preferences")
        .with_memory_store(&ro, "read_only", None, "Team Docs"),
    );
    claim(&fake).await;
    let mut run = start(
        &fake,
        &created,
        prepared,
        &[("MEMORY_SYNC_INTERVAL_SECONDS", "10")],
        true,
    );
    assert_eq!(run.mount("prefs"), rw_root);

    // While step 5 sleeps: inspect the skills on disk, then change the remote copy.
    let t = Instant::now();
    while !ready.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "step 5 never ran; log:\n{}",
            run.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pdf = run.workdir.join("skills/pdf");
    assert_eq!(mode(&pdf.join("scripts/run.sh")), 0o755);
    assert_eq!(mode(&pdf.join("SKILL.md")), 0o644);
    assert_eq!(mode(&pdf), 0o700);
    let lint = run.workdir.join("skills/lint");
    assert_eq!(mode(&lint.join("bin/lint")), 0o755, "0775 → 0755");
    assert!(
        std::fs::symlink_metadata(lint.join("passwd")).is_err(),
        "symlink member skipped"
    );
    assert!(!run.workdir.join("skills/evil").exists());
    assert!(!run.dir.path().join("escape.txt").exists());
    assert!(!run.workdir.join("escape.txt").exists());
    fake.put_memory(&rw, "/conflict.md", "remote");

    let code = run.wait(Duration::from_secs(60)).await;
    let log = run.log();
    assert_eq!(code, 0, "{log}");
    assert!(fake.script_finished(&created.session_id), "{log}");

    let t = texts(&fake, &created.session_id);
    assert_eq!(t[0], "lint\npdf\nSKILL.md\nbin\nskill-ran\n---", "{log}");
    assert_eq!(t[1], "v1 notes\nnested\nread me", "{log}");
    assert_eq!(
        t[5],
        format!("write: {ro_s}/handbook.md is inside read-only directory {ro_s}")
    );
    assert_eq!(t[7], "remote", "remote change wins; {log}");

    // Pushed: the edit with the baseline precondition, the create, the final write.
    assert_eq!(
        fake.memory_content(&rw, "/notes.md").as_deref(),
        Some("v2 notes")
    );
    assert_eq!(
        fake.memory_content(&rw, "/new.md").as_deref(),
        Some("created here")
    );
    assert_eq!(
        fake.memory_content(&rw, "/final.md").as_deref(),
        Some("last words"),
        "{log}"
    );
    assert_eq!(
        fake.memory_content(&rw, "/conflict.md").as_deref(),
        Some("remote")
    );
    assert_eq!(
        fake.memory_content(&ro, "/handbook.md").as_deref(),
        Some("read me")
    );
    let reqs = memory_requests(&fake);
    let notes_id = fake.memory_id(&rw, "/notes.md").unwrap();
    let update = reqs
        .iter()
        .find(|r| r.method == "POST" && r.path.ends_with(&format!("/memories/{notes_id}")))
        .expect("update of notes.md");
    let body: Value = serde_json::from_slice(&update.body).unwrap();
    assert_eq!(
        body["precondition"],
        json!({"type": "content_sha256", "content_sha256": notes_sha_v1})
    );
    // Nothing was ever written to the read-only store, and every memory call carried
    // the sessions token and the memory beta.
    assert!(
        !reqs
            .iter()
            .any(|r| r.method != "GET" && r.path.contains(&ro)),
        "read-only store pushed"
    );
    for r in &reqs {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {}", created.sessions_token).as_str())
        );
        assert_eq!(r.header("anthropic-beta"), Some("agent-memory-2026-07-22"));
    }
    // `latest` was resolved and the download made by the concrete id.
    let skill_paths: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/v1/skills/"))
        .map(|r| r.path.clone())
        .collect();
    assert!(skill_paths.contains(&"/v1/skills/skill_pdf/versions/latest".into()));
    assert!(skill_paths.contains(&"/v1/skills/skill_pdf/versions/skillver_2/content".into()));
    assert!(!skill_paths.iter().any(|p| p.contains("skillver_1")));
    assert!(!skill_paths.iter().any(|p| p.ends_with("latest/content")));

    // Logs: the conflict, the rejected skill; no secrets.
    assert!(log.contains("remote version wins"), "{log}");
    assert!(log.contains("skill_evil"), "{log}");
    assert!(!log.contains(&created.sessions_token));
    assert!(!log.contains(&created.secret));

    // Teardown removed the skills and the store roots, and force-stopped the item.
    assert!(!run.workdir.join("skills").exists(), "skills removed");
    assert!(!rw_root.exists(), "rw store root removed");
    assert!(!ro_root.exists(), "ro store root removed");
    assert_eq!(fake.work_state(&created.work_id), "stopped");
}

#[tokio::test]
async fn sigterm_flushes_local_memory_edits() {
    let fake = fake().await;
    let store = fake.create_memory_store("Scratch");
    fake.put_memory(&store, "/keep.md", "old");
    let prepared = prepare();
    let root = prepared.0.path().join("mnt").join("scratch");
    let ready = prepared.0.path().join("ready.flag");
    let root_s = root.display().to_string();
    let created = fake.create_session(
        SessionScript::new(vec![
            ScriptStep::tool(
                "write",
                json!({"file_path": format!("{root_s}/keep.md"), "content": "edited before SIGTERM"}),
            ),
            ScriptStep::tool(
                "bash",
                json!({"command": format!("echo fresh > '{root_s}/fresh.md'; touch '{}'; sleep 60", ready.display()), "timeout_ms": 120000}),
            ),
        ])
        .with_memory_store(&store, "read_write", Some(&root_s), "Scratch"),
    );
    claim(&fake).await;
    let mut run = start(&fake, &created, prepared, &[], true);
    let t = Instant::now();
    while !ready.exists() {
        assert!(t.elapsed() < Duration::from_secs(30), "{}", run.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unsafe { libc::kill(run.child.id().unwrap() as i32, libc::SIGTERM) };
    let code = run.wait(Duration::from_secs(45)).await;
    let log = run.log();
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        fake.memory_content(&store, "/keep.md").as_deref(),
        Some("edited before SIGTERM"),
        "{log}"
    );
    assert_eq!(
        fake.memory_content(&store, "/fresh.md").as_deref(),
        Some("fresh\n"),
        "{log}"
    );
    assert!(!root.exists());
    assert_eq!(fake.work_state(&created.work_id), "stopped");
}

#[tokio::test]
async fn memory_without_a_sessions_token_fails_the_item_cleanly() {
    let fake = fake().await;
    let store = fake.create_memory_store("Prefs");
    let created = fake.create_session(
        SessionScript::new(vec![ScriptStep::tool(
            "bash",
            json!({"command": "echo never"}),
        )])
        .with_memory_store(&store, "read_write", None, "Prefs"),
    );
    claim(&fake).await;
    let env_key = fake.environment_key();
    let mut run = start(
        &fake,
        &created,
        prepare(),
        &[("ANTHROPIC_ENVIRONMENT_KEY", &env_key)],
        false,
    );
    let code = run.wait(Duration::from_secs(30)).await;
    let log = run.log();
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("no sessions token"), "{log}");
    assert!(!log.contains(&env_key));
    assert!(fake.results(&created.session_id).is_empty(), "no tool ran");
    assert!(memory_requests(&fake).is_empty(), "no memory call made");
    assert!(!run.workdir.join("memory").exists());
    assert_eq!(
        fake.work_state(&created.work_id),
        "stopped",
        "force-stopped"
    );
}

#[tokio::test]
async fn nine_memory_stores_fail_the_item_and_leave_nothing() {
    let fake = fake().await;
    let mut script = SessionScript::new(vec![ScriptStep::tool(
        "bash",
        json!({"command": "echo never"}),
    )]);
    for i in 0..9 {
        let s = fake.create_memory_store(&format!("Store {i}"));
        script = script.with_memory_store(&s, "read_write", None, &format!("Store {i}"));
    }
    let created = fake.create_session(script);
    claim(&fake).await;
    let mut run = start(&fake, &created, prepare(), &[], true);
    let code = run.wait(Duration::from_secs(30)).await;
    let log = run.log();
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("at most 8"), "{log}");
    assert!(fake.results(&created.session_id).is_empty());
    assert!(!run.workdir.join("memory").exists());
    assert_eq!(fake.work_state(&created.work_id), "stopped");
}

#[tokio::test]
async fn refused_skill_credential_warns_and_the_session_runs() {
    let fake = fake().await;
    fake.add_skill_version("skill_pdf", "skillver_1", "pdf", skill_zip("pdf"));
    fake.set_skills_refuse_sessions_token(true);
    let script = || {
        SessionScript::new(vec![ScriptStep::tool(
            "bash",
            json!({"command": "ls skills 2>/dev/null || echo no-skills"}),
        )])
        .with_skill("skill_pdf", "latest")
    };

    // Default: the environment key stays out of the sandbox; warn and continue.
    let created = fake.create_session(script());
    claim(&fake).await;
    let env_key = fake.environment_key();
    let mut run = start(
        &fake,
        &created,
        prepare(),
        &[("ANTHROPIC_ENVIRONMENT_KEY", &env_key)],
        true,
    );
    let code = run.wait(Duration::from_secs(30)).await;
    let log = run.log();
    assert_eq!(code, 0, "{log}");
    assert_eq!(texts(&fake, &created.session_id), vec!["no-skills"]);
    let warning = log
        .lines()
        .find(|l| l.contains("skill_pdf") && l.contains("WARN"))
        .unwrap_or_else(|| panic!("one warning naming the skill: {log}"));
    assert!(
        warning.contains("ALLOW_ENVIRONMENT_KEY_IN_SANDBOX"),
        "{warning}"
    );
    assert!(!log.contains(&env_key));

    // Allowed by the operator: retried with the environment key.
    let created = fake.create_session(script());
    claim(&fake).await;
    let mut run = start(
        &fake,
        &created,
        prepare(),
        &[
            ("ANTHROPIC_ENVIRONMENT_KEY", &env_key),
            ("ALLOW_ENVIRONMENT_KEY_IN_SANDBOX", "true"),
        ],
        true,
    );
    let code = run.wait(Duration::from_secs(30)).await;
    let log = run.log();
    assert_eq!(code, 0, "{log}");
    assert_eq!(texts(&fake, &created.session_id), vec!["pdf"], "{log}");
    assert!(!log.contains(&env_key));
}
