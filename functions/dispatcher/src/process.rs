//! [`ProcessLauncher`]: the `runner` binary as a child process of this one (the local
//! stack and tests).
//!
//! Each launch runs `runner --workdir <base>/<session>/ <extra_args>` with:
//!
//! * a per-session working directory (mode 0700), kept across the session's work items
//!   like the Docker launcher's workspace volume, and never removed by the launcher:
//!   the local stack (or the user) deletes `<base>/` when the sessions are over;
//! * an environment cleared down to an allow-list ([`DEFAULT_PASS_ENV`]: `PATH`, `HOME`,
//!   locale, `TMPDIR`, `RUST_LOG`, CA bundle locations) plus
//!   [`LaunchRequest::runner_env`] plus [`ProcessConfig::extra_env`], so that credentials
//!   of the calling process (`ANTHROPIC_API_KEY`, `AWS_*`, …) do not reach the runner, and
//!   through it the agent's tools, unless configured on purpose;
//! * stdout and stderr appended to `<base>/<session>.log` (mode 0600; one header line per
//!   launch), or inherited ([`RunnerOutput::Inherit`]);
//! * its own process group, and no kill-on-drop: runners outlive the launch call (and a
//!   Ctrl-C aimed at the local stack's terminal); they end on their own (idle exit, lease
//!   loss) or through [`ProcessLauncher::terminate_all`].
//!
//! Children are tracked by work id: a launch for a work id whose runner still lives is
//! [`LaunchOutcome::AlreadyRunning`] (`id`: the pid). Every launch first reaps the children
//! that have exited (no zombies pile up), and their exit codes stay available to
//! [`ProcessLauncher::wait`] / [`ProcessLauncher::wait_all`]. Waiting polls `try_wait`
//! (every 50 ms) instead of parking a task per child, so the launcher works from any
//! runtime and keeps no background task.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::process::{Child, Command};

use crate::docker::name_component;
use crate::launcher::{LaunchError, LaunchOutcome, LaunchRequest, Launcher};

/// Variables passed from this process's environment to the runner (when set).
pub const DEFAULT_PASS_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "RUST_LOG",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// Poll interval of [`ProcessLauncher::wait`].
const WAIT_POLL: Duration = Duration::from_millis(50);

/// Where a runner's stdout and stderr go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunnerOutput {
    /// Appended to [`ProcessLauncher::log_path`] (default).
    #[default]
    LogFile,
    /// This process's stdout and stderr.
    Inherit,
}

/// How the process launcher starts runners. [`ProcessConfig::new`] has the defaults.
#[derive(Clone)]
pub struct ProcessConfig {
    /// The `runner` executable (e.g. `target/debug/runner`).
    pub runner_bin: PathBuf,
    /// Parent of the per-session workdirs and logs (created 0700 if missing).
    pub base_dir: PathBuf,
    /// Names passed through from this process's environment ([`DEFAULT_PASS_ENV`]).
    pub pass_env: Vec<String>,
    /// Added after [`LaunchRequest::runner_env`] (same name: this value wins), e.g.
    /// `RUST_LOG`, or AWS credentials for KMS in ciphertext mode.
    pub extra_env: Vec<(String, String)>,
    /// Appended after `--workdir DIR` (e.g. `--max-idle 5s`, `--log-format text`).
    pub extra_args: Vec<String>,
    pub output: RunnerOutput,
}

impl ProcessConfig {
    pub fn new(runner_bin: impl Into<PathBuf>, base_dir: impl Into<PathBuf>) -> Self {
        Self {
            runner_bin: runner_bin.into(),
            base_dir: base_dir.into(),
            pass_env: DEFAULT_PASS_ENV.iter().map(|s| (*s).to_owned()).collect(),
            extra_env: Vec::new(),
            extra_args: Vec::new(),
            output: RunnerOutput::LogFile,
        }
    }
}

impl fmt::Debug for ProcessConfig {
    /// Extra environment values may be credentials: names only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessConfig")
            .field("runner_bin", &self.runner_bin)
            .field("base_dir", &self.base_dir)
            .field("pass_env", &self.pass_env)
            .field(
                "extra_env",
                &self.extra_env.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("extra_args", &self.extra_args)
            .field("output", &self.output)
            .finish()
    }
}

/// One launched runner.
struct Tracked {
    session_id: String,
    pid: u32,
    /// `None` once reaped.
    child: Option<Child>,
    /// The exit code once reaped (128 + signal number when killed by a signal).
    exit: Option<i32>,
}

impl Tracked {
    /// Reaps the child if it has exited; true while it runs.
    fn poll(&mut self, work_id: &str) -> bool {
        let Some(child) = self.child.as_mut() else {
            return false;
        };
        match child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                let code = exit_code(status);
                tracing::info!(work_id, session_id = %self.session_id, pid = self.pid, code, "runner process exited");
                self.exit = Some(code);
                self.child = None;
                false
            }
            Err(e) => {
                tracing::warn!(work_id, pid = self.pid, error = %e, "cannot query the runner process; forgetting it");
                self.child = None;
                false
            }
        }
    }
}

/// The shell's convention: the exit code, or 128 + the signal that killed the process.
fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Starts runner processes (see the module docs).
pub struct ProcessLauncher {
    config: ProcessConfig,
    /// `config.base_dir`, absolute.
    base: PathBuf,
    children: Mutex<HashMap<String, Tracked>>,
}

impl fmt::Debug for ProcessLauncher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessLauncher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ProcessLauncher {
    pub fn new(config: ProcessConfig) -> Self {
        let base = std::path::absolute(&config.base_dir).unwrap_or(config.base_dir.clone());
        Self {
            config,
            base,
            children: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &ProcessConfig {
        &self.config
    }

    /// The session's working directory: `<base>/<session>/` (absolute).
    pub fn workdir(&self, session_id: &str) -> PathBuf {
        self.base.join(name_component(session_id))
    }

    /// The session's log file: `<base>/<session>.log` (with [`RunnerOutput::LogFile`]).
    pub fn log_path(&self, session_id: &str) -> PathBuf {
        self.base
            .join(format!("{}.log", name_component(session_id)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tracked>> {
        self.children.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pid of the work item's runner while it runs.
    pub fn pid(&self, work_id: &str) -> Option<u32> {
        let mut children = self.lock();
        let t = children.get_mut(work_id)?;
        t.poll(work_id).then_some(t.pid)
    }

    /// Work ids whose runners still run.
    pub fn running(&self) -> Vec<String> {
        let mut children = self.lock();
        let mut ids: Vec<String> = children
            .iter_mut()
            .filter_map(|(id, t)| t.poll(id).then(|| id.clone()))
            .collect();
        ids.sort();
        ids
    }

    /// Waits for the work item's runner to exit and returns its exit code (128 + signal
    /// when killed). `None` if this launcher never started that work id (or lost it).
    /// No time limit: bound it with `tokio::time::timeout`.
    pub async fn wait(&self, work_id: &str) -> Option<i32> {
        loop {
            {
                let mut children = self.lock();
                let t = children.get_mut(work_id)?;
                if !t.poll(work_id) {
                    return t.exit;
                }
            }
            tokio::time::sleep(WAIT_POLL).await;
        }
    }

    /// Waits for every runner this launcher started; `(work id, exit code)` sorted by
    /// work id, finished ones included.
    pub async fn wait_all(&self) -> Vec<(String, Option<i32>)> {
        let mut ids: Vec<String> = self.lock().keys().cloned().collect();
        ids.sort();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let code = self.wait(&id).await;
            out.push((id, code));
        }
        out
    }

    /// Sends SIGTERM to every live runner (they flush, force-stop their work item and
    /// exit); returns how many were signalled. Follow with [`ProcessLauncher::wait_all`].
    pub fn terminate_all(&self) -> usize {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let mut children = self.lock();
        let mut n = 0;
        for (id, t) in children.iter_mut() {
            // Still ours and unreaped: the pid cannot have been reused.
            if t.poll(id) {
                match i32::try_from(t.pid).map(|p| kill(Pid::from_raw(p), Signal::SIGTERM)) {
                    Ok(Ok(())) => n += 1,
                    Ok(Err(e)) => {
                        tracing::warn!(work_id = %id, pid = t.pid, error = %e, "SIGTERM failed")
                    }
                    Err(_) => {}
                }
            }
        }
        n
    }

    /// `<base>/` and `<base>/<session>/`, both 0700.
    fn prepare_workdir(&self, session_id: &str) -> Result<PathBuf, LaunchError> {
        let dir = self.workdir(session_id);
        let io_err = |what: &str, path: &Path, e: std::io::Error| {
            let reason = format!("cannot {what} {}: {e}", path.display());
            match e.kind() {
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                    LaunchError::Permanent { reason }
                }
                _ => LaunchError::Retryable { reason },
            }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| io_err("create the runner workdir", &dir, e))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io_err("set permissions on", &dir, e))?;
        Ok(dir)
    }

    /// Opens the session's log (append, 0600) and writes the launch header.
    fn open_log(&self, req: &LaunchRequest) -> Result<(Stdio, Stdio), LaunchError> {
        if self.config.output == RunnerOutput::Inherit {
            return Ok((Stdio::inherit(), Stdio::inherit()));
        }
        let path = self.log_path(&req.session_id);
        let fail = |e: std::io::Error| LaunchError::Permanent {
            reason: format!("cannot open the runner log {}: {e}", path.display()),
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(fail)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        writeln!(
            file,
            "--- cma process launcher: work {} session {} (unix time {now}) ---",
            req.work_id, req.session_id
        )
        .map_err(fail)?;
        let err = file.try_clone().map_err(fail)?;
        Ok((Stdio::from(file), Stdio::from(err)))
    }

    fn command(&self, req: &LaunchRequest, workdir: &Path) -> (Command, Vec<String>) {
        let c = &self.config;
        let mut cmd = Command::new(&c.runner_bin);
        cmd.arg("--workdir")
            .arg(workdir)
            .args(&c.extra_args)
            .current_dir(workdir)
            .env_clear()
            .stdin(Stdio::null())
            .kill_on_drop(false)
            .process_group(0);
        let mut names: Vec<String> = Vec::new();
        let mut set = |k: &str, v: &std::ffi::OsStr| {
            cmd.env(k, v);
            if !names.iter().any(|n| n == k) {
                names.push(k.to_owned());
            }
        };
        for name in &c.pass_env {
            if let Some(v) = std::env::var_os(name) {
                set(name, &v);
            }
        }
        for (k, v) in req.runner_env() {
            set(k, v.as_ref());
        }
        for (k, v) in &c.extra_env {
            set(k, v.as_ref());
        }
        (cmd, names)
    }
}

#[async_trait]
impl Launcher for ProcessLauncher {
    fn name(&self) -> &'static str {
        "process"
    }

    async fn launch(&self, req: &LaunchRequest) -> Result<LaunchOutcome, LaunchError> {
        let mut children = self.lock();
        // Reap whatever has exited; a live runner for this item means nothing to do.
        let mut live_for_item = None;
        for (id, t) in children.iter_mut() {
            if t.poll(id) && id == &req.work_id {
                live_for_item = Some(t.pid);
            }
        }
        if let Some(pid) = live_for_item {
            tracing::info!(work_id = %req.work_id, session_id = %req.session_id, pid, "runner process already running for the work item; nothing started");
            return Ok(LaunchOutcome::AlreadyRunning {
                id: pid.to_string(),
            });
        }

        let workdir = self.prepare_workdir(&req.session_id)?;
        let (stdout, stderr) = self.open_log(req)?;
        let (mut cmd, env_names) = self.command(req, &workdir);
        cmd.stdout(stdout).stderr(stderr);
        let bin = &self.config.runner_bin;
        let child = cmd.spawn().map_err(|e| {
            let b = bin.display();
            match e.kind() {
                std::io::ErrorKind::NotFound => LaunchError::Permanent {
                    reason: format!(
                        "runner binary {b} not found: build it (`cargo build -p runner`, or \
                         `--release`) and point the process launcher at it"
                    ),
                },
                std::io::ErrorKind::PermissionDenied => LaunchError::Permanent {
                    reason: format!("runner binary {b} is not executable (permission denied)"),
                },
                _ => LaunchError::Retryable {
                    reason: format!("could not spawn the runner binary {b}: {e}"),
                },
            }
        })?;
        let pid = child.id().unwrap_or_default();
        tracing::info!(
            work_id = %req.work_id,
            session_id = %req.session_id,
            pid,
            workdir = %workdir.display(),
            log = %self.log_path(&req.session_id).display(),
            env = ?env_names,
            "runner process started"
        );
        children.insert(
            req.work_id.clone(),
            Tracked {
                session_id: req.session_id.clone(),
                pid,
                child: Some(child),
                exit: None,
            },
        );
        Ok(LaunchOutcome::Started {
            id: pid.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launcher::LaunchSecret;
    use cma_shared::SecretString;

    const SECRET: &str = "secret-SHOULD-NOT-LEAK";

    fn req(work: &str, session: &str) -> LaunchRequest {
        LaunchRequest {
            work_id: work.into(),
            environment_id: "env_1".into(),
            session_id: session.into(),
            base_url: Some("http://127.0.0.1:1".into()),
            secret: LaunchSecret::Plaintext(SecretString::new(SECRET)),
        }
    }

    /// A stand-in runner: records its args, cwd and environment, then runs `body`.
    fn script(dir: &Path, body: &str) -> PathBuf {
        let path = dir.join("fake-runner.sh");
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$PWD/args\"\npwd > \"$PWD/cwd\"\nenv | sort > \"$PWD/env\"\necho to-stdout\necho to-stderr >&2\n{body}\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[tokio::test]
    async fn spawns_tracks_reaps_and_relaunches() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = script(tmp.path(), "sleep 0.5; exit 3");
        let mut cfg = ProcessConfig::new(&bin, tmp.path().join("base"));
        cfg.extra_args = vec!["--max-idle".into(), "1s".into()];
        cfg.extra_env = vec![
            ("ANTHROPIC_BASE_URL".into(), "http://override".into()),
            ("EXTRA".into(), "1".into()),
        ];
        let l = ProcessLauncher::new(cfg);
        let r = req("work_1", "sesn/1");

        let LaunchOutcome::Started { id } = l.launch(&r).await.unwrap() else {
            panic!("expected Started");
        };
        assert_eq!(l.pid("work_1").map(|p| p.to_string()), Some(id.clone()));
        assert_eq!(
            l.launch(&r).await.unwrap(),
            LaunchOutcome::AlreadyRunning { id: id.clone() }
        );
        assert_eq!(l.running(), vec!["work_1".to_owned()]);
        assert_eq!(l.wait("work_1").await, Some(3));
        assert_eq!(l.wait("work_other").await, None);

        let wd = l.workdir("sesn/1");
        assert!(wd.starts_with(tmp.path()) && wd.is_absolute(), "{wd:?}");
        let mode = std::fs::metadata(&wd).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let args = std::fs::read_to_string(wd.join("args")).unwrap();
        assert_eq!(
            args,
            format!("--workdir\n{}\n--max-idle\n1s\n", wd.display())
        );
        assert_eq!(
            std::fs::read_to_string(wd.join("cwd")).unwrap().trim(),
            wd.display().to_string()
        );
        let env = std::fs::read_to_string(wd.join("env")).unwrap();
        let names: Vec<&str> = env
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
            .collect();
        for n in [
            "ANTHROPIC_WORK_ID",
            "ANTHROPIC_SESSION_ID",
            "ANTHROPIC_WORK_SECRET",
            "EXTRA",
            "PATH",
        ] {
            assert!(names.contains(&n), "{n} missing: {names:?}");
        }
        assert!(
            env.contains("ANTHROPIC_BASE_URL=http://override\n"),
            "{env}"
        );
        assert!(env.contains(&format!("ANTHROPIC_WORK_SECRET={SECRET}\n")));
        for n in &names {
            assert!(
                n.starts_with("ANTHROPIC_")
                    || *n == "EXTRA"
                    || *n == "PWD"
                    || *n == "SHLVL"
                    || *n == "_"
                    || DEFAULT_PASS_ENV.contains(n),
                "unexpected variable {n} reached the runner"
            );
        }
        let log_path = l.log_path("sesn/1");
        let log = std::fs::read_to_string(&log_path).unwrap();
        assert!(
            log.contains("work work_1") && log.contains("to-stdout") && log.contains("to-stderr"),
            "{log}"
        );
        assert!(!log.contains(SECRET));
        let mode = std::fs::metadata(&log_path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        // Exited: a new launch starts a new process and the log is appended.
        let LaunchOutcome::Started { id: id2 } = l.launch(&r).await.unwrap() else {
            panic!("expected Started after exit");
        };
        assert_ne!(id2, id);
        l.launch(&req("work_2", "sesn_2")).await.unwrap();
        assert_eq!(
            l.wait_all().await,
            vec![
                ("work_1".to_owned(), Some(3)),
                ("work_2".to_owned(), Some(3))
            ]
        );
        let log = std::fs::read_to_string(&log_path).unwrap();
        assert_eq!(log.matches("--- cma process launcher").count(), 2, "{log}");
    }

    #[tokio::test]
    async fn terminate_all_signals_live_runners() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = script(tmp.path(), "exec sleep 30");
        let l = ProcessLauncher::new(ProcessConfig::new(&bin, tmp.path().join("base")));
        l.launch(&req("work_1", "sesn_1")).await.unwrap();
        l.launch(&req("work_2", "sesn_1")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(l.terminate_all(), 2);
        let done = tokio::time::timeout(Duration::from_secs(10), l.wait_all())
            .await
            .unwrap();
        assert_eq!(
            done,
            vec![
                ("work_1".to_owned(), Some(128 + 15)),
                ("work_2".to_owned(), Some(128 + 15))
            ]
        );
        assert!(l.running().is_empty());
    }

    #[tokio::test]
    async fn missing_binary_is_permanent() {
        let tmp = tempfile::tempdir().unwrap();
        let l = ProcessLauncher::new(ProcessConfig::new(
            tmp.path().join("no-such-runner"),
            tmp.path().join("base"),
        ));
        let e = l.launch(&req("work_1", "sesn_1")).await.unwrap_err();
        assert!(!e.is_retryable(), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("no-such-runner") && msg.contains("cargo build -p runner"),
            "{msg}"
        );
        assert_eq!(l.wait("work_1").await, None);

        let text = tmp.path().join("not-executable");
        std::fs::write(&text, "x").unwrap();
        let l = ProcessLauncher::new(ProcessConfig::new(&text, tmp.path().join("base")));
        let e = l.launch(&req("work_1", "sesn_1")).await.unwrap_err();
        assert!(
            !e.is_retryable() && e.to_string().contains("not executable"),
            "{e}"
        );
    }

    #[test]
    fn config_debug_hides_env_values() {
        let mut cfg = ProcessConfig::new("/bin/runner", "/tmp/x");
        cfg.extra_env = vec![("AWS_SECRET_ACCESS_KEY".into(), SECRET.into())];
        let dbg = format!("{:?}", ProcessLauncher::new(cfg));
        assert!(
            dbg.contains("AWS_SECRET_ACCESS_KEY") && !dbg.contains(SECRET),
            "{dbg}"
        );
    }
}
