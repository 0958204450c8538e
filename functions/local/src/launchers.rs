//! Choosing and wiring the launcher: the dispatcher crate's `DockerLauncher` (one
//! container per session) or `ProcessLauncher` (the `runner` binary as a child
//! process), plus what the local stack needs around them: finding the runner binary,
//! checking the engine and the image, counting running runners, cleaning up.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dispatcher::Launcher;
use dispatcher::docker::{self, DockerConfig, DockerLauncher};
use dispatcher::process::{ProcessConfig, ProcessLauncher};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The runner image the Docker launcher uses unless told otherwise (what
/// `.ci/docker-image.sh` builds).
pub const DEFAULT_IMAGE: &str = "cma/runner:ci";

/// `--launcher`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Docker if an engine answers and the image exists, else the process launcher.
    Auto,
    Docker,
    Process,
}

impl Kind {
    pub fn parse(s: &str) -> Result<Kind, String> {
        match s {
            "auto" => Ok(Kind::Auto),
            "docker" => Ok(Kind::Docker),
            "process" => Ok(Kind::Process),
            other => Err(format!(
                "--launcher: expected auto, docker or process, got {other:?}"
            )),
        }
    }
}

/// How to build the launcher.
#[derive(Debug, Clone)]
pub struct LauncherSettings {
    pub kind: Kind,
    /// Docker: the runner image.
    pub image: String,
    /// Docker: `HostConfig.NetworkMode` (`host` lets the container reach a control
    /// plane on this machine's loopback; `bridge` is enough for the real API).
    pub docker_network: String,
    /// Process: the `runner` executable (`None`: [`find_runner`]).
    pub runner_bin: Option<PathBuf>,
    /// Process: parent of the per-session workdirs and logs (`None`: a fresh temporary
    /// directory, removed by [`Chosen::cleanup`] unless `keep_workdirs`).
    pub base_dir: Option<PathBuf>,
    pub keep_workdirs: bool,
    /// The runner's `--max-idle`.
    pub max_idle: Duration,
    /// The runner's `--log-format` (`text` or `json`).
    pub log_format: String,
}

impl LauncherSettings {
    /// The demo's defaults: auto, `cma/runner:ci` on the host network, a temporary
    /// base directory, `--max-idle 1s`, text logs.
    pub fn demo() -> Self {
        LauncherSettings {
            kind: Kind::Auto,
            image: DEFAULT_IMAGE.to_owned(),
            docker_network: "host".to_owned(),
            runner_bin: None,
            base_dir: None,
            keep_workdirs: false,
            max_idle: Duration::from_secs(1),
            log_format: "text".to_owned(),
        }
    }

    fn runner_args(&self) -> Vec<String> {
        vec![
            "--max-idle".to_owned(),
            format_duration_arg(self.max_idle),
            "--log-format".to_owned(),
            self.log_format.clone(),
        ]
    }
}

/// `1s`, `1500ms`, `0` (the runner's duration syntax).
pub fn format_duration_arg(d: Duration) -> String {
    if d.is_zero() {
        "0".to_owned()
    } else if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

enum Backend {
    Process {
        launcher: Arc<ProcessLauncher>,
        /// A temporary base directory to remove at cleanup.
        temp: Option<PathBuf>,
    },
    Docker {
        launcher: Arc<DockerLauncher>,
    },
}

/// The launcher in use and what to say about it.
pub struct Chosen {
    /// `docker` or `process`.
    pub name: &'static str,
    pub launcher: Arc<dyn Launcher>,
    /// One line: which launcher, with what.
    pub description: String,
    /// Why `auto` did not pick Docker, if it did not.
    pub note: Option<String>,
    /// Where to look when a runner misbehaves.
    pub log_hint: Option<String>,
    pub max_idle: Duration,
    backend: Backend,
}

#[async_trait::async_trait]
impl crate::stack::RunnerCount for Chosen {
    async fn running(&self) -> Result<u64, String> {
        Chosen::running(self).await
    }
}

impl Chosen {
    /// Runners currently running (process: children of this process; Docker: every
    /// live runner container on the engine, started by anyone).
    pub async fn running(&self) -> Result<u64, String> {
        match &self.backend {
            Backend::Process { launcher, .. } => Ok(launcher.running().len() as u64),
            Backend::Docker { launcher } => launcher
                .list(None)
                .await
                .map(|cs| {
                    cs.iter()
                        .filter(|c| {
                            matches!(
                                c.state.as_str(),
                                "created" | "running" | "restarting" | "paused"
                            )
                        })
                        .count() as u64
                })
                .map_err(|e| e.to_string()),
        }
    }

    /// The process launcher, when that is the one in use.
    pub fn process(&self) -> Option<&Arc<ProcessLauncher>> {
        match &self.backend {
            Backend::Process { launcher, .. } => Some(launcher),
            Backend::Docker { .. } => None,
        }
    }

    /// The runner's working directory for the session (as the tools report paths).
    pub fn workdir(&self, session_id: &str) -> String {
        match &self.backend {
            Backend::Process { launcher, .. } => launcher.workdir(session_id).display().to_string(),
            Backend::Docker { .. } => docker::CONTAINER_WORKDIR.to_owned(),
        }
    }

    /// What a launch outcome's id is: `runner pid N` or `container <short id>`.
    pub fn runner_label(&self, id: &str) -> String {
        match &self.backend {
            Backend::Process { .. } => format!("runner pid {id}"),
            Backend::Docker { .. } => format!("container {}", &id[..id.len().min(12)]),
        }
    }

    /// The session's runner log (process launcher).
    pub fn log_path(&self, session_id: &str) -> Option<PathBuf> {
        self.process().map(|p| p.log_path(session_id))
    }

    /// Stop what is still running (SIGTERM to runner processes, `docker stop` of the
    /// given sessions' containers), waiting up to `grace`; then remove the temporary
    /// base directory unless `keep_files` (e.g. to read a failed runner's log).
    pub async fn shutdown(&self, sessions: &[String], grace: Duration, keep_files: bool) {
        match &self.backend {
            Backend::Process { launcher, temp } => {
                if launcher.terminate_all() > 0 {
                    let _ = tokio::time::timeout(grace, launcher.wait_all()).await;
                }
                if let Some(dir) = temp
                    && !keep_files
                {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
            Backend::Docker { launcher } => {
                for s in sessions {
                    let _ = launcher.stop(s, grace).await;
                }
            }
        }
    }
}

/// The `runner` executable: `explicit`, else `CMA_RUNNER_BIN`, else `runner` next to
/// this executable (`target/<profile>/`), else next to its parent directory (tests and
/// benches run from `target/<profile>/deps/`).
pub fn find_runner(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(format!("--runner {}: no such file", p.display()))
        };
    }
    if let Some(p) = std::env::var_os("CMA_RUNNER_BIN").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("CMA_RUNNER_BIN={}: no such file", p.display()))
        };
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        let mut candidates = vec![dir.join("runner")];
        if dir.file_name().is_some_and(|n| n == "deps")
            && let Some(up) = dir.parent()
        {
            candidates.push(up.join("runner"));
        }
        if let Some(p) = candidates.into_iter().find(|p| p.is_file()) {
            return Ok(p);
        }
    }
    Err(
        "the runner binary was not found next to cma-local: build it with \
         `cargo build -p runner` (`make demo` does), or pass --runner PATH / set CMA_RUNNER_BIN"
            .to_owned(),
    )
}

/// Whether the engine at `socket` has `image` (`GET /images/{name}/json`).
pub async fn image_exists(socket: &Path, image: &str) -> Result<bool, String> {
    let call = async {
        let mut s = tokio::net::UnixStream::connect(socket).await?;
        // HTTP/1.0: the engine closes the connection after the response.
        let req = format!("GET /images/{image}/json HTTP/1.0\r\nHost: docker\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<Vec<u8>, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .map_err(|_| "the Docker engine did not answer within 5 s".to_owned())?
        .map_err(|e| format!("Docker engine at {}: {e}", socket.display()))?;
    let head = String::from_utf8_lossy(&buf[..buf.len().min(64)]).into_owned();
    match head.split_whitespace().nth(1) {
        Some("200") => Ok(true),
        Some("404") => Ok(false),
        other => Err(format!(
            "unexpected answer from the Docker engine to an image inspect: {}",
            other.unwrap_or("nothing")
        )),
    }
}

/// Why Docker cannot be used here, or `None` if it can.
async fn docker_problem(settings: &LauncherSettings) -> Result<PathBuf, String> {
    let socket = docker::socket_from_env().map_err(|e| e.to_string())?;
    if !docker::ping(&socket).await {
        return Err(format!("no Docker engine answers at {}", socket.display()));
    }
    match image_exists(&socket, &settings.image).await {
        Ok(true) => Ok(socket),
        Ok(false) => Err(format!(
            "the Docker engine has no image {} (build it with `bash .ci/docker-image.sh`)",
            settings.image
        )),
        Err(e) => Err(e),
    }
}

fn docker(settings: &LauncherSettings, socket: PathBuf) -> Chosen {
    let mut cfg = DockerConfig::new(settings.image.clone(), socket);
    cfg.network_mode = settings.docker_network.clone();
    cfg.extra_args = settings.runner_args();
    let launcher = Arc::new(DockerLauncher::new(cfg));
    Chosen {
        name: "docker",
        launcher: launcher.clone(),
        description: format!(
            "docker: one container per session from {} (network {}, runner --max-idle {})",
            settings.image,
            settings.docker_network,
            format_duration_arg(settings.max_idle)
        ),
        note: None,
        log_hint: Some(
            "follow a runner with `docker logs -f cma-runner-<session>` while it runs".into(),
        ),
        max_idle: settings.max_idle,
        backend: Backend::Docker { launcher },
    }
}

fn process(settings: &LauncherSettings, note: Option<String>) -> Result<Chosen, String> {
    let bin = find_runner(settings.runner_bin.as_deref())?;
    let (base, temp) = match &settings.base_dir {
        Some(d) => (d.clone(), None),
        None => {
            let d = std::env::temp_dir().join(format!(
                "cma-local-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ));
            (d.clone(), (!settings.keep_workdirs).then_some(d))
        }
    };
    let mut cfg = ProcessConfig::new(bin.clone(), base.clone());
    cfg.extra_args = settings.runner_args();
    let launcher = Arc::new(ProcessLauncher::new(cfg));
    Ok(Chosen {
        name: "process",
        launcher: launcher.clone(),
        description: format!(
            "process: {} --max-idle {} (workdirs and logs under {})",
            bin.display(),
            format_duration_arg(settings.max_idle),
            base.display()
        ),
        note,
        log_hint: Some(format!("runner logs: {}/<session>.log", base.display())),
        max_idle: settings.max_idle,
        backend: Backend::Process { launcher, temp },
    })
}

/// Build the launcher `settings` ask for; `auto` falls back to the process launcher
/// with a note saying why Docker was not used.
pub async fn choose(settings: &LauncherSettings) -> Result<Chosen, String> {
    match settings.kind {
        Kind::Docker => {
            let socket = docker_problem(settings)
                .await
                .map_err(|e| format!("--launcher docker: {e}"))?;
            Ok(docker(settings, socket))
        }
        Kind::Process => process(settings, None),
        Kind::Auto => match docker_problem(settings).await {
            Ok(socket) => Ok(docker(settings, socket)),
            Err(why) => process(settings, Some(format!("auto: not Docker because {why}")))
                .map_err(|e| format!("{e} (and Docker is not usable: {why})")),
        },
    }
}
