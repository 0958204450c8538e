//! [`DockerLauncher`]: one runner container per session through the Docker Engine API
//! on a unix socket (a host you control, and the local stack).
//!
//! # What a launch does
//!
//! 1. `GET /containers/cma-runner-<session>/json`. A container in state `running`,
//!    `created`, `restarting` or `paused` means the session already has a runner:
//!    [`LaunchOutcome::AlreadyRunning`], nothing else happens. An `exited`/`dead`
//!    leftover (not yet auto-removed) is force-removed and a fresh one is started.
//! 2. With [`DockerConfig::workspace_volume`]: `POST /volumes/create` of the named
//!    volume `cma-workspace-<session>` (idempotent; labelled `cma.session_id`,
//!    `cma.environment_id`, `cma.launcher=docker`).
//! 3. `POST /containers/create?name=cma-runner-<session>` from the runner image with the
//!    labels `cma.session_id`, `cma.work_id`, `cma.environment_id`, `cma.launcher=docker`,
//!    `HostConfig.Init` (docker-init reaps the agent's orphans and forwards SIGTERM),
//!    `AutoRemove` (the engine deletes the container when it exits), CPU (`NanoCpus`),
//!    memory (`Memory` = `MemorySwap`: no swap) and pids limits, all capabilities dropped,
//!    `no-new-privileges`, the configured network mode, the runner's environment
//!    ([`LaunchRequest::runner_env`] then [`DockerConfig::extra_env`], which replaces a
//!    variable of the same name, e.g. an `ANTHROPIC_BASE_URL` rewritten for containers)
//!    and `Cmd = --workdir /workspace <extra_args>`. A 409 Conflict (another dispatcher
//!    created the name first) goes back to step 1, which then reports `AlreadyRunning`.
//! 4. `POST /containers/<id>/start`. If the start fails, the created container is removed
//!    again, so that a stuck `created` container cannot pass for a live runner later.
//!
//! # Errors
//!
//! Missing socket or permission denied: [`LaunchError::Permanent`] with the fix ("is
//! Docker running? is the user in the docker group?"); image missing (404 on create):
//! permanent, naming the image and how to build it; other 4xx: permanent with the
//! engine's message; 5xx, 429, refused connections and timeouts
//! ([`DockerConfig::api_timeout`] per call): [`LaunchError::Retryable`]. Secret values
//! never reach a log line: the launcher logs variable names only, and engine messages
//! are scrubbed of every environment value before they become error text.
//!
//! # Lifecycle of what it creates
//!
//! * Containers remove themselves when the runner exits (`AutoRemove`), and their
//!   `docker logs` go with them: follow a live one with
//!   `docker logs -f cma-runner-<session>`, or configure a daemon log driver that
//!   keeps logs (journald, fluentd, awslogs). [`DockerLauncher::stop`] stops one early
//!   (SIGTERM: the runner flushes memory and force-stops its work item).
//! * Workspace volumes are **never removed by the launcher**: a session that goes idle
//!   (runner exits after `--max-idle`) and later gets a new work item must find its
//!   files again. Whoever knows the session is over (terminated or deleted) removes the
//!   volume: [`DockerLauncher::remove_workspace_volume`], or by hand with
//!   `docker volume ls -f label=cma.launcher=docker` / `docker volume rm`. (The reference
//!   Docker variant never cleaned its `cma-ws-<session>` volumes up; the label makes them
//!   findable.)
//!
//! # Why hyper and not bollard
//!
//! The launcher needs ten endpoints (`_ping`; container create, inspect, start, remove,
//! list, wait, stop; volume create, remove) with small JSON bodies. `bollard` would bring its
//! generated model crate (`bollard-stubs`, tens of thousands of lines) plus serde_with,
//! chrono/time, url and its own connector stack: a sizeable extra cold build on the
//! 2-core CI machine (not measured) for a small part of its API. hyper 1, hyper-util (`TokioIo`) and
//! http-body-util are already compiled for reqwest (the same versions from the lock file),
//! so this client adds no new crate: one HTTP/1.1 connection per call over
//! [`tokio::net::UnixStream`] (`hyper::client::conn::http1::handshake`), driven inline
//! (no spawned task; dropping the call closes the socket), which on a local socket costs
//! microseconds, so no pool. Paths are unversioned: the engine serves its own current
//! API version, which keeps the launcher working from Docker 20.10 (API 1.41, tested
//! here) to newer engines that refuse old pinned versions (Docker 29 raised its minimum
//! API version). Every field used exists since API 1.25.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::UnixStream;

use crate::launcher::{LaunchError, LaunchOutcome, LaunchRequest, Launcher};

/// The engine's socket when `DOCKER_HOST` is unset.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// Container names: this prefix + [`name_component`] of the session id.
pub const CONTAINER_PREFIX: &str = "cma-runner-";
/// Workspace volume names: this prefix + [`name_component`] of the session id.
pub const VOLUME_PREFIX: &str = "cma-workspace-";
/// Label keys set on every container (and, where they apply, volume).
pub const LABEL_SESSION_ID: &str = "cma.session_id";
pub const LABEL_WORK_ID: &str = "cma.work_id";
pub const LABEL_ENVIRONMENT_ID: &str = "cma.environment_id";
pub const LABEL_LAUNCHER: &str = "cma.launcher";
/// Where the runner works inside the container (the image's `WORKDIR`, owned by its user).
pub const CONTAINER_WORKDIR: &str = "/workspace";

/// Largest engine response read (inspect output is a few KiB).
const MAX_RESPONSE: usize = 4 << 20;
/// Engine messages are kept to this many characters in errors.
const MAX_MESSAGE: usize = 500;
/// How long a leftover container may take to disappear before a launch gives up.
const REMOVAL_WAIT: Duration = Duration::from_secs(10);

/// How the Docker launcher creates containers. [`DockerConfig::new`] has the defaults.
#[derive(Clone)]
pub struct DockerConfig {
    /// The engine's unix socket ([`DEFAULT_SOCKET`], or `DOCKER_HOST=unix://…` through
    /// [`DockerConfig::from_env`]).
    pub socket: PathBuf,
    /// The runner image, e.g. `cma/runner:ci` (built by `.ci/docker-image.sh`).
    pub image: String,
    /// `HostConfig.NetworkMode`: `bridge` (default), `host`, or a network name.
    pub network_mode: String,
    /// CPU limit in units of 1e-9 CPUs (`1_000_000_000` = one CPU, the default).
    pub nano_cpus: i64,
    /// Memory limit in bytes, swap included (default 2 GiB).
    pub memory_bytes: i64,
    /// `HostConfig.PidsLimit` (default 1024; `None`: the engine's default).
    pub pids_limit: Option<i64>,
    /// Mount the per-session named volume `cma-workspace-<session>` at `/workspace`
    /// (created on demand; see the module docs for who removes it). Default off: the
    /// workspace lives and dies with the container.
    pub workspace_volume: bool,
    /// Added to the runner's environment; replaces a variable of the same name from
    /// [`LaunchRequest::runner_env`] (e.g. `ANTHROPIC_BASE_URL` rewritten to
    /// `http://host.docker.internal:PORT` for a bridge network).
    pub extra_env: Vec<(String, String)>,
    /// Appended to the runner's arguments after `--workdir /workspace`
    /// (e.g. `--max-idle 5s`, `--log-format text`).
    pub extra_args: Vec<String>,
    /// `HostConfig.ExtraHosts`, e.g. `host.docker.internal:host-gateway`.
    pub extra_hosts: Vec<String>,
    /// Limit for each engine call of a launch (default 30 s); exceeding it is retryable.
    pub api_timeout: Duration,
}

impl DockerConfig {
    /// The defaults: `bridge` network, 1 CPU, 2 GiB, 1024 pids, no volume, 30 s calls.
    pub fn new(image: impl Into<String>, socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            image: image.into(),
            network_mode: "bridge".to_owned(),
            nano_cpus: 1_000_000_000,
            memory_bytes: 2 << 30,
            pids_limit: Some(1024),
            workspace_volume: false,
            extra_env: Vec::new(),
            extra_args: Vec::new(),
            extra_hosts: Vec::new(),
            api_timeout: Duration::from_secs(30),
        }
    }

    /// [`DockerConfig::new`] with the socket from `DOCKER_HOST` ([`socket_from_env`]).
    pub fn from_env(image: impl Into<String>) -> Result<Self, LaunchError> {
        Ok(Self::new(image, socket_from_env()?))
    }
}

impl fmt::Debug for DockerConfig {
    /// Extra environment values may be credentials: names only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerConfig")
            .field("socket", &self.socket)
            .field("image", &self.image)
            .field("network_mode", &self.network_mode)
            .field("nano_cpus", &self.nano_cpus)
            .field("memory_bytes", &self.memory_bytes)
            .field("pids_limit", &self.pids_limit)
            .field("workspace_volume", &self.workspace_volume)
            .field(
                "extra_env",
                &self.extra_env.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("extra_args", &self.extra_args)
            .field("extra_hosts", &self.extra_hosts)
            .field("api_timeout", &self.api_timeout)
            .finish()
    }
}

/// The engine socket named by `DOCKER_HOST` (unset or empty: [`DEFAULT_SOCKET`]).
pub fn socket_from_env() -> Result<PathBuf, LaunchError> {
    socket_from_docker_host(std::env::var("DOCKER_HOST").ok().as_deref())
}

/// The socket path for a `DOCKER_HOST` value: `unix:///path` → `/path`; unset or empty →
/// [`DEFAULT_SOCKET`]; any other scheme (`tcp://`, `ssh://`) is a permanent error.
pub fn socket_from_docker_host(value: Option<&str>) -> Result<PathBuf, LaunchError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(PathBuf::from(DEFAULT_SOCKET)),
        Some(v) => match v.strip_prefix("unix://") {
            Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
            _ => Err(LaunchError::Permanent {
                reason: format!(
                    "DOCKER_HOST={v}: the Docker launcher talks to a local engine over a unix \
                     socket only (e.g. DOCKER_HOST=unix:///var/run/docker.sock)"
                ),
            }),
        },
    }
}

/// An id made safe for container, volume and file names: kept as is when it is 1–64 of
/// `[A-Za-z0-9_.-]` (and not `.`/`..`); otherwise the allowed characters (others become
/// `_`, at most 40) plus `-` and a 64-bit FNV-1a hash of the original, so that two
/// different ids never share a name. Prefixed with [`CONTAINER_PREFIX`] it matches
/// Docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn name_component(id: &str) -> String {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if !id.is_empty() && id.len() <= 64 && id != "." && id != ".." && id.chars().all(allowed) {
        return id.to_owned();
    }
    let kept: String = id
        .chars()
        .take(40)
        .map(|c| if allowed(c) { c } else { '_' })
        .collect();
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{kept}-{hash:016x}")
}

/// `cma-runner-<session>`.
pub fn container_name(session_id: &str) -> String {
    format!("{CONTAINER_PREFIX}{}", name_component(session_id))
}

/// `cma-workspace-<session>`.
pub fn volume_name(session_id: &str) -> String {
    format!("{VOLUME_PREFIX}{}", name_component(session_id))
}

/// True if a Docker engine answers `GET /_ping` on `socket` within 2 s.
pub async fn ping(socket: &Path) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_secs(2),
            call(socket, Method::GET, "/_ping", None)
        )
        .await,
        Ok(Ok(r)) if r.status == StatusCode::OK
    )
}

/// A runner container as listed by [`DockerLauncher::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerContainer {
    pub id: String,
    /// Without the engine's leading `/`.
    pub name: String,
    /// `created`, `running`, `exited`, `removing`, …
    pub state: String,
    pub session_id: Option<String>,
    pub work_id: Option<String>,
}

/// Starts one runner container per session (see the module docs).
#[derive(Debug, Clone)]
pub struct DockerLauncher {
    config: DockerConfig,
}

impl DockerLauncher {
    pub fn new(config: DockerConfig) -> Self {
        Self { config }
    }

    pub fn config(&self) -> &DockerConfig {
        &self.config
    }

    /// The runner's environment: [`LaunchRequest::runner_env`], then the configured
    /// extra variables (replacing same-named ones in place). Values may be secrets.
    fn env(&self, req: &LaunchRequest) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = req
            .runner_env()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        for (k, v) in &self.config.extra_env {
            match env.iter_mut().find(|(name, _)| name == k) {
                Some(slot) => slot.1 = v.clone(),
                None => env.push((k.clone(), v.clone())),
            }
        }
        env
    }

    /// The `POST /containers/create` body for `req` (contains the secret: never log it).
    pub fn create_body(&self, req: &LaunchRequest) -> Value {
        let c = &self.config;
        let env: Vec<String> = self
            .env(req)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut cmd = vec!["--workdir".to_owned(), CONTAINER_WORKDIR.to_owned()];
        cmd.extend(c.extra_args.iter().cloned());
        let mut host = json!({
            "Init": true,
            "AutoRemove": true,
            "NetworkMode": c.network_mode,
            "NanoCpus": c.nano_cpus,
            "Memory": c.memory_bytes,
            "MemorySwap": c.memory_bytes,
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges:true"],
        });
        if let Some(p) = c.pids_limit {
            host["PidsLimit"] = json!(p);
        }
        if c.workspace_volume {
            host["Mounts"] = json!([{
                "Type": "volume",
                "Source": volume_name(&req.session_id),
                "Target": CONTAINER_WORKDIR,
            }]);
        }
        if !c.extra_hosts.is_empty() {
            host["ExtraHosts"] = json!(c.extra_hosts);
        }
        json!({
            "Image": c.image,
            "Cmd": cmd,
            "Env": env,
            "Labels": {
                LABEL_SESSION_ID: req.session_id,
                LABEL_WORK_ID: req.work_id,
                LABEL_ENVIRONMENT_ID: req.environment_id,
                LABEL_LAUNCHER: "docker",
            },
            "HostConfig": host,
        })
    }

    /// One engine call bounded by [`DockerConfig::api_timeout`].
    async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<EngineResponse, LaunchError> {
        self.api_with_timeout(method, path, body, self.config.api_timeout)
            .await
    }

    async fn api_with_timeout(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        limit: Duration,
    ) -> Result<EngineResponse, LaunchError> {
        let socket = &self.config.socket;
        match tokio::time::timeout(limit, call(socket, method.clone(), path, body)).await {
            Err(_) => Err(LaunchError::Retryable {
                reason: format!(
                    "Docker engine at {}: {method} {} timed out after {limit:?}",
                    socket.display(),
                    strip_query(path)
                ),
            }),
            Ok(Err(e)) => Err(e.into_launch_error(socket)),
            Ok(Ok(r)) => Ok(r),
        }
    }

    /// The container named `name`, or `None` if there is none.
    async fn inspect(&self, name: &str) -> Result<Option<Inspected>, LaunchError> {
        let r = self
            .api(Method::GET, &format!("/containers/{name}/json"), None)
            .await?;
        match r.status {
            StatusCode::OK => r.json("inspect container").map(Some),
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(status_error(
                &format!("inspect container {name}"),
                s,
                &r.message(),
            )),
        }
    }

    /// Force-removes a container; one already gone or being removed is fine.
    async fn remove_container(&self, id: &str) -> Result<(), LaunchError> {
        let r = self
            .api(
                Method::DELETE,
                &format!("/containers/{id}?force=true"),
                None,
            )
            .await?;
        match r.status {
            s if s.is_success() => Ok(()),
            // 409: "removal of container … is already in progress" (AutoRemove).
            StatusCode::NOT_FOUND | StatusCode::CONFLICT => Ok(()),
            s => Err(status_error(
                &format!("remove container {id}"),
                s,
                &r.message(),
            )),
        }
    }

    /// Waits until no container is named `name` (a removal in progress finishes).
    async fn wait_gone(&self, name: &str) -> Result<(), LaunchError> {
        let deadline = tokio::time::Instant::now() + REMOVAL_WAIT;
        loop {
            match self.inspect(name).await? {
                None => return Ok(()),
                Some(c) if is_live(&c.state.status) => return Ok(()),
                Some(_) if tokio::time::Instant::now() >= deadline => {
                    return Err(LaunchError::Retryable {
                        reason: format!(
                            "the previous container {name} is still being removed after \
                             {REMOVAL_WAIT:?}"
                        ),
                    });
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn create_volume(&self, req: &LaunchRequest) -> Result<(), LaunchError> {
        let name = volume_name(&req.session_id);
        let body = json!({
            "Name": name,
            "Labels": {
                LABEL_SESSION_ID: req.session_id,
                LABEL_ENVIRONMENT_ID: req.environment_id,
                LABEL_LAUNCHER: "docker",
            },
        });
        let r = self
            .api(Method::POST, "/volumes/create", Some(&body))
            .await?;
        if r.status.is_success() {
            Ok(())
        } else {
            Err(status_error(
                &format!("create volume {name}"),
                r.status,
                &r.message(),
            ))
        }
    }

    /// `POST /containers/create`: the new id, or `None` on 409 (the name is taken).
    async fn create(
        &self,
        name: &str,
        body: &Value,
        env: &[(String, String)],
    ) -> Result<Option<String>, LaunchError> {
        let r = self
            .api(
                Method::POST,
                &format!("/containers/create?name={name}"),
                Some(body),
            )
            .await?;
        let message = || scrub(&r.message(), env);
        match r.status {
            StatusCode::CREATED | StatusCode::OK => {
                let created: Created = r.json("create container")?;
                for w in created.warnings.iter().flatten() {
                    tracing::warn!(container = %name, warning = %scrub(w, env), "Docker create warning");
                }
                Ok(Some(created.id))
            }
            StatusCode::CONFLICT => Ok(None),
            StatusCode::NOT_FOUND => {
                let msg = message();
                let reason = if msg.to_ascii_lowercase().contains("image") {
                    format!(
                        "runner image {} not found on the Docker host ({msg}): build it with \
                         `bash .ci/docker-image.sh` or `docker pull {}`",
                        self.config.image, self.config.image
                    )
                } else {
                    format!("Docker create container {name}: 404 Not Found: {msg}")
                };
                Err(LaunchError::Permanent { reason })
            }
            s => Err(status_error(
                &format!("create container {name} from {}", self.config.image),
                s,
                &message(),
            )),
        }
    }

    async fn start(&self, id: &str, name: &str) -> Result<(), LaunchError> {
        let r = self
            .api(Method::POST, &format!("/containers/{id}/start"), None)
            .await?;
        match r.status {
            // 304: already started.
            s if s.is_success() || s == StatusCode::NOT_MODIFIED => Ok(()),
            s => Err(status_error(
                &format!("start container {name}"),
                s,
                &r.message(),
            )),
        }
    }

    /// Runner containers started by this launcher (label `cma.launcher=docker`), in any
    /// state, optionally only the session's.
    pub async fn list(
        &self,
        session_id: Option<&str>,
    ) -> Result<Vec<RunnerContainer>, LaunchError> {
        let mut labels = vec![format!("{LABEL_LAUNCHER}=docker")];
        if let Some(s) = session_id {
            labels.push(format!("{LABEL_SESSION_ID}={s}"));
        }
        let filters = json!({ "label": labels }).to_string();
        let path = format!(
            "/containers/json?all=true&filters={}",
            utf8_percent_encode(&filters, NON_ALPHANUMERIC)
        );
        let r = self.api(Method::GET, &path, None).await?;
        if !r.status.is_success() {
            return Err(status_error("list containers", r.status, &r.message()));
        }
        let listed: Vec<Listed> = r.json("list containers")?;
        Ok(listed
            .into_iter()
            .map(|c| {
                let labels = c.labels.unwrap_or_default();
                RunnerContainer {
                    name: c
                        .names
                        .unwrap_or_default()
                        .first()
                        .map(|n| n.trim_start_matches('/').to_owned())
                        .unwrap_or_default(),
                    session_id: labels.get(LABEL_SESSION_ID).cloned(),
                    work_id: labels.get(LABEL_WORK_ID).cloned(),
                    id: c.id,
                    state: c.state.unwrap_or_default(),
                }
            })
            .collect())
    }

    /// Waits until the container (id or name) has exited **and been removed**, and
    /// returns the runner's exit code. No time limit: bound it with
    /// `tokio::time::timeout`. Call it while the container exists (a removed container
    /// is a 404, a permanent error).
    pub async fn wait(&self, container: &str) -> Result<i64, LaunchError> {
        let path = format!("/containers/{container}/wait?condition=removed");
        let r = call(&self.config.socket, Method::POST, &path, None)
            .await
            .map_err(|e| e.into_launch_error(&self.config.socket))?;
        if !r.status.is_success() {
            return Err(status_error(
                &format!("wait for container {container}"),
                r.status,
                &r.message(),
            ));
        }
        let waited: Waited = r.json("wait for container")?;
        if let Some(msg) = waited
            .error
            .and_then(|e| e.message)
            .filter(|m| !m.is_empty())
        {
            tracing::warn!(container, error = %msg, "Docker wait reported an error");
        }
        Ok(waited.status_code)
    }

    /// Stops the session's runner container (SIGTERM through docker-init, SIGKILL after
    /// `grace`); `AutoRemove` then deletes it. False if there was none running.
    pub async fn stop(&self, session_id: &str, grace: Duration) -> Result<bool, LaunchError> {
        let name = container_name(session_id);
        let path = format!("/containers/{name}/stop?t={}", grace.as_secs().max(1));
        let limit = self.config.api_timeout + grace;
        let r = self
            .api_with_timeout(Method::POST, &path, None, limit)
            .await?;
        match r.status {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_MODIFIED | StatusCode::NOT_FOUND => Ok(false),
            s => Err(status_error(
                &format!("stop container {name}"),
                s,
                &r.message(),
            )),
        }
    }

    /// Removes the session's workspace volume (when the session is over). False if there
    /// was none; in use by a container: retryable.
    pub async fn remove_workspace_volume(&self, session_id: &str) -> Result<bool, LaunchError> {
        let name = volume_name(session_id);
        let r = self
            .api(Method::DELETE, &format!("/volumes/{name}"), None)
            .await?;
        match r.status {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            StatusCode::CONFLICT => Err(LaunchError::Retryable {
                reason: format!("volume {name} is still in use: {}", r.message()),
            }),
            s => Err(status_error(
                &format!("remove volume {name}"),
                s,
                &r.message(),
            )),
        }
    }
}

#[async_trait]
impl Launcher for DockerLauncher {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn launch(&self, req: &LaunchRequest) -> Result<LaunchOutcome, LaunchError> {
        let name = container_name(&req.session_id);
        let env = self.env(req);
        let body = self.create_body(req);
        // A create that loses a race (409) re-inspects: a live winner is the answer, a
        // dying leftover is removed and the create is tried again.
        for _ in 0..3 {
            if let Some(existing) = self.inspect(&name).await? {
                let status = existing.state.status.as_str();
                if is_live(status) {
                    tracing::info!(
                        container = %name,
                        id = %existing.id,
                        status,
                        session_id = %req.session_id,
                        work_id = %req.work_id,
                        "runner container already exists for the session; nothing started"
                    );
                    return Ok(LaunchOutcome::AlreadyRunning { id: existing.id });
                }
                tracing::info!(
                    container = %name,
                    id = %existing.id,
                    status,
                    "removing the session's finished runner container"
                );
                self.remove_container(&existing.id).await?;
                // If another dispatcher creates the name meanwhile, the create below gets
                // 409 and the next round reports its container.
                self.wait_gone(&name).await?;
            }
            if self.config.workspace_volume {
                self.create_volume(req).await?;
            }
            let Some(id) = self.create(&name, &body, &env).await? else {
                tracing::info!(container = %name, "container name taken meanwhile (409); re-inspecting");
                continue;
            };
            if let Err(e) = self.start(&id, &name).await {
                // A `created` container would pass for a live runner: take it away.
                if let Err(rm) = self.remove_container(&id).await {
                    tracing::warn!(container = %name, id = %id, error = %rm, "could not remove the container that failed to start");
                }
                return Err(e);
            }
            let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
            tracing::info!(
                container = %name,
                id = %id,
                image = %self.config.image,
                network = %self.config.network_mode,
                session_id = %req.session_id,
                work_id = %req.work_id,
                env = ?names,
                "runner container started"
            );
            return Ok(LaunchOutcome::Started { id });
        }
        Err(LaunchError::Retryable {
            reason: format!("container name {name} kept conflicting; try again"),
        })
    }
}

/// States in which a container counts as the session's runner.
fn is_live(status: &str) -> bool {
    matches!(status, "running" | "created" | "restarting" | "paused")
}

/// The error for a non-success status: 5xx, 429 and 408 retryable, the rest permanent.
fn status_error(op: &str, status: StatusCode, message: &str) -> LaunchError {
    let reason = format!("Docker {op}: {status}: {message}");
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        LaunchError::Retryable { reason }
    } else {
        LaunchError::Permanent { reason }
    }
}

/// `message` with every environment value of 4+ characters replaced by `[redacted]`.
fn scrub(message: &str, env: &[(String, String)]) -> String {
    let mut out = message.to_owned();
    for (_, v) in env {
        if v.len() >= 4 {
            out = out.replace(v.as_str(), "[redacted]");
        }
    }
    out
}

fn strip_query(path: &str) -> &str {
    path.split_once('?').map_or(path, |(p, _)| p)
}

#[derive(Debug, Deserialize)]
struct Inspected {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "State")]
    state: InspectedState,
}

#[derive(Debug, Deserialize)]
struct InspectedState {
    #[serde(rename = "Status", default)]
    status: String,
}

#[derive(Debug, Deserialize)]
struct Created {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Warnings", default)]
    warnings: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct Listed {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Names", default)]
    names: Option<Vec<String>>,
    #[serde(rename = "State", default)]
    state: Option<String>,
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
struct Waited {
    #[serde(rename = "StatusCode")]
    status_code: i64,
    #[serde(rename = "Error", default)]
    error: Option<WaitError>,
}

#[derive(Debug, Deserialize)]
struct WaitError {
    #[serde(rename = "Message", default)]
    message: Option<String>,
}

/// A complete engine response.
#[derive(Debug)]
struct EngineResponse {
    status: StatusCode,
    body: Bytes,
}

impl EngineResponse {
    /// The engine's `{"message": …}`, or the body as text, shortened.
    fn message(&self) -> String {
        let text = serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).trim().to_owned());
        if text.chars().count() > MAX_MESSAGE {
            let short: String = text.chars().take(MAX_MESSAGE).collect();
            format!("{short}…")
        } else {
            text
        }
    }

    fn json<T: serde::de::DeserializeOwned>(&self, op: &str) -> Result<T, LaunchError> {
        serde_json::from_slice(&self.body).map_err(|e| LaunchError::Retryable {
            reason: format!("Docker {op}: unexpected response ({e})"),
        })
    }
}

/// Why an engine call failed before a response arrived.
#[derive(Debug)]
enum CallError {
    Connect(std::io::Error),
    Http(String),
}

impl CallError {
    fn into_launch_error(self, socket: &Path) -> LaunchError {
        match self {
            CallError::Connect(e) => connect_error(socket, &e),
            CallError::Http(e) => LaunchError::Retryable {
                reason: format!("Docker engine at {}: {e}", socket.display()),
            },
        }
    }
}

/// Connecting to the socket failed: missing or forbidden socket is a setup problem.
fn connect_error(socket: &Path, e: &std::io::Error) -> LaunchError {
    use std::io::ErrorKind;
    let s = socket.display();
    match e.kind() {
        ErrorKind::NotFound => LaunchError::Permanent {
            reason: format!(
                "Docker socket {s} does not exist: is Docker running? (another engine socket: \
                 DOCKER_HOST=unix:///path/to/docker.sock)"
            ),
        },
        ErrorKind::PermissionDenied => LaunchError::Permanent {
            reason: format!(
                "permission denied on the Docker socket {s}: is the user in the docker group? \
                 (`sudo usermod -aG docker $USER`, then log in again)"
            ),
        },
        ErrorKind::ConnectionRefused => LaunchError::Retryable {
            reason: format!("Docker socket {s} refused the connection: is Docker running?"),
        },
        _ => LaunchError::Retryable {
            reason: format!("cannot connect to the Docker socket {s}: {e}"),
        },
    }
}

/// One HTTP/1.1 exchange on a fresh connection to `socket`.
async fn call(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<EngineResponse, CallError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(CallError::Connect)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| CallError::Http(e.to_string()))?;
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        // Go's HTTP server rejects HTTP/1.1 requests without a Host.
        .header(header::HOST, "docker");
    let payload = match body {
        Some(v) => {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
            Bytes::from(v.to_string())
        }
        None => Bytes::new(),
    };
    let request = builder
        .body(Full::new(payload))
        .map_err(|e| CallError::Http(e.to_string()))?;
    let exchange = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| CallError::Http(e.to_string()))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| CallError::Http(format!("reading the response: {e}")))?
            .to_bytes();
        Ok(EngineResponse { status, body })
    };
    // Drive the connection inline: no spawned task outlives the call.
    let mut exchange = std::pin::pin!(exchange);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = &mut exchange => r,
        c = &mut conn => match c {
            // Closed cleanly after the whole response was handed over.
            Ok(()) => exchange.await,
            Err(e) => Err(CallError::Http(e.to_string())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launcher::LaunchSecret;
    use axum::extract::{Request as AxumRequest, State};
    use axum::response::{IntoResponse, Response};
    use cma_shared::SecretString;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    const SECRET: &str = "secret-value-SHOULD-NOT-LEAK";

    fn req(session: &str) -> LaunchRequest {
        LaunchRequest {
            work_id: "work_1".into(),
            environment_id: "env_1".into(),
            session_id: session.into(),
            base_url: Some("http://127.0.0.1:9999".into()),
            secret: LaunchSecret::Plaintext(SecretString::new(SECRET)),
        }
    }

    #[test]
    fn names_are_docker_safe_and_injective() {
        assert_eq!(container_name("sesn_01ABC"), "cma-runner-sesn_01ABC");
        assert_eq!(volume_name("sesn_01ABC"), "cma-workspace-sesn_01ABC");
        let a = name_component("sesn/x y");
        let b = name_component("sesn_x_y");
        assert_ne!(a, b, "a sanitised id must not collide with a clean one");
        assert!(a.starts_with("sesn_x_y-"), "{a}");
        for id in [
            "",
            ".",
            "..",
            "../etc",
            "ä",
            &"x".repeat(200),
            "-lead",
            "a:b",
        ] {
            let n = container_name(id);
            let mut chars = n.chars();
            assert!(chars.next().unwrap().is_ascii_alphanumeric(), "{n}");
            assert!(
                chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)),
                "{n}"
            );
            let c = name_component(id);
            assert!(
                !c.is_empty() && c != "." && c != ".." && !c.contains('/'),
                "{c}"
            );
            assert!(c.len() <= 64, "{c}");
        }
        assert_eq!(name_component("-lead"), "-lead");
    }

    #[test]
    fn docker_host_parsing() {
        assert_eq!(
            socket_from_docker_host(None).unwrap(),
            PathBuf::from(DEFAULT_SOCKET)
        );
        assert_eq!(
            socket_from_docker_host(Some("  ")).unwrap(),
            PathBuf::from(DEFAULT_SOCKET)
        );
        assert_eq!(
            socket_from_docker_host(Some("unix:///run/user/1000/docker.sock")).unwrap(),
            PathBuf::from("/run/user/1000/docker.sock")
        );
        let e = socket_from_docker_host(Some("tcp://10.0.0.1:2375")).unwrap_err();
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("unix socket"), "{e}");
    }

    #[test]
    fn create_body_shape() {
        let mut cfg = DockerConfig::new("cma/runner:ci", "/nonexistent.sock");
        cfg.network_mode = "host".into();
        cfg.workspace_volume = true;
        cfg.extra_args = vec!["--max-idle".into(), "5s".into()];
        cfg.extra_env = vec![
            (
                "ANTHROPIC_BASE_URL".into(),
                "http://host.docker.internal:9999".into(),
            ),
            ("RUST_LOG".into(), "info".into()),
        ];
        cfg.extra_hosts = vec!["host.docker.internal:host-gateway".into()];
        let body = DockerLauncher::new(cfg).create_body(&req("sesn_1"));
        assert_eq!(
            body,
            json!({
                "Image": "cma/runner:ci",
                "Cmd": ["--workdir", "/workspace", "--max-idle", "5s"],
                "Env": [
                    "ANTHROPIC_WORK_ID=work_1",
                    "ANTHROPIC_ENVIRONMENT_ID=env_1",
                    "ANTHROPIC_SESSION_ID=sesn_1",
                    format!("ANTHROPIC_WORK_SECRET={SECRET}"),
                    "ANTHROPIC_BASE_URL=http://host.docker.internal:9999",
                    "RUST_LOG=info",
                ],
                "Labels": {
                    "cma.session_id": "sesn_1",
                    "cma.work_id": "work_1",
                    "cma.environment_id": "env_1",
                    "cma.launcher": "docker",
                },
                "HostConfig": {
                    "Init": true,
                    "AutoRemove": true,
                    "NetworkMode": "host",
                    "NanoCpus": 1_000_000_000_i64,
                    "Memory": 2_147_483_648_i64,
                    "MemorySwap": 2_147_483_648_i64,
                    "PidsLimit": 1024,
                    "CapDrop": ["ALL"],
                    "SecurityOpt": ["no-new-privileges:true"],
                    "Mounts": [{"Type": "volume", "Source": "cma-workspace-sesn_1", "Target": "/workspace"}],
                    "ExtraHosts": ["host.docker.internal:host-gateway"],
                },
            })
        );
        // Defaults: bridge, no volume, no extra hosts.
        let body =
            DockerLauncher::new(DockerConfig::new("img", "/x.sock")).create_body(&req("sesn_1"));
        assert_eq!(body["HostConfig"]["NetworkMode"], "bridge");
        assert!(body["HostConfig"].get("Mounts").is_none());
        assert!(body["HostConfig"].get("ExtraHosts").is_none());
        assert_eq!(body["Cmd"], json!(["--workdir", "/workspace"]));
    }

    #[test]
    fn config_debug_hides_env_values() {
        let mut cfg = DockerConfig::new("img", "/x.sock");
        cfg.extra_env = vec![("AWS_SECRET_ACCESS_KEY".into(), SECRET.into())];
        let dbg = format!("{cfg:?}");
        assert!(
            dbg.contains("AWS_SECRET_ACCESS_KEY") && !dbg.contains(SECRET),
            "{dbg}"
        );
    }

    #[test]
    fn classification() {
        let s =
            |code: u16| status_error("op", StatusCode::from_u16(code).unwrap(), "m").is_retryable();
        assert!(s(500) && s(502) && s(503) && s(429) && s(408));
        assert!(!s(400) && !s(401) && !s(403) && !s(404) && !s(422));
        let sock = Path::new("/run/docker.sock");
        let io = |k| std::io::Error::from(k);
        let e = connect_error(sock, &io(std::io::ErrorKind::NotFound));
        assert!(
            !e.is_retryable() && e.to_string().contains("is Docker running?"),
            "{e}"
        );
        let e = connect_error(sock, &io(std::io::ErrorKind::PermissionDenied));
        assert!(
            !e.is_retryable() && e.to_string().contains("docker group"),
            "{e}"
        );
        let e = connect_error(sock, &io(std::io::ErrorKind::ConnectionRefused));
        assert!(
            e.is_retryable() && e.to_string().contains("is Docker running?"),
            "{e}"
        );
        assert_eq!(
            scrub(
                &format!("bad env ANTHROPIC_WORK_SECRET={SECRET}"),
                &[("K".into(), SECRET.into())]
            ),
            "bad env ANTHROPIC_WORK_SECRET=[redacted]"
        );
    }

    // ------------------------------------------------------------------ fake engine

    #[derive(Default)]
    struct Engine {
        /// name → (id, status)
        containers: HashMap<String, (String, String)>,
        /// "METHOD path?query" of every request, in order.
        calls: Vec<String>,
        create_bodies: Vec<Value>,
        volumes: Vec<String>,
        /// Forced responses: (status, message).
        inspect_fail: Option<(u16, String)>,
        create_fail: Option<(u16, String)>,
        start_fail: Option<(u16, String)>,
        /// On create: a competitor creates the name first (status), and we get 409.
        create_race: Option<String>,
        /// Every request waits this long first.
        delay: Option<Duration>,
        next_id: u32,
    }

    type Shared = Arc<Mutex<Engine>>;

    fn err(code: u16, msg: &str) -> Response {
        (
            StatusCode::from_u16(code).unwrap(),
            axum::Json(json!({ "message": msg })),
        )
            .into_response()
    }

    async fn handle(State(e): State<Shared>, request: AxumRequest) -> Response {
        let method = request.method().clone();
        let uri = request.uri().clone();
        let body = axum::body::to_bytes(request.into_body(), 1 << 20)
            .await
            .unwrap();
        let delay = e.lock().unwrap().delay;
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let path = uri.path().to_owned();
        let query = uri.query().unwrap_or("").to_owned();
        let mut e = e.lock().unwrap();
        e.calls.push(format!(
            "{method} {path}{}{query}",
            if query.is_empty() { "" } else { "?" }
        ));
        let seg: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let find = |e: &Engine, key: &str| {
            e.containers
                .iter()
                .find(|(n, (id, _))| *n == key || id == key)
                .map(|(n, (id, st))| (n.clone(), id.clone(), st.clone()))
        };
        match (method.as_str(), seg.as_slice()) {
            ("GET", ["_ping"]) => "OK".into_response(),
            ("GET", ["containers", "json"]) => {
                let list: Vec<Value> = e
                    .containers
                    .iter()
                    .map(|(n, (id, st))| json!({"Id": id, "Names": [format!("/{n}")], "State": st, "Labels": {"cma.launcher": "docker"}}))
                    .collect();
                axum::Json(list).into_response()
            }
            ("GET", ["containers", name, "json"]) => {
                if let Some((code, msg)) = e.inspect_fail.clone() {
                    return err(code, &msg);
                }
                match find(&e, name) {
                    Some((n, id, st)) => axum::Json(
                        json!({"Id": id, "Name": format!("/{n}"), "State": {"Status": st}}),
                    )
                    .into_response(),
                    None => err(404, &format!("No such container: {name}")),
                }
            }
            ("POST", ["containers", "create"]) => {
                let name = query.strip_prefix("name=").unwrap_or_default().to_owned();
                e.create_bodies.push(serde_json::from_slice(&body).unwrap());
                if let Some((code, msg)) = e.create_fail.clone() {
                    return err(code, &msg);
                }
                if let Some(st) = e.create_race.take() {
                    e.containers.insert(name.clone(), ("winner".into(), st));
                }
                if e.containers.contains_key(&name) {
                    return err(
                        409,
                        &format!("Conflict. The container name \"/{name}\" is already in use"),
                    );
                }
                e.next_id += 1;
                let id = format!("id{}", e.next_id);
                e.containers.insert(name, (id.clone(), "created".into()));
                (
                    StatusCode::CREATED,
                    axum::Json(json!({"Id": id, "Warnings": []})),
                )
                    .into_response()
            }
            ("POST", ["containers", key, "start"]) => {
                if let Some((code, msg)) = e.start_fail.clone() {
                    return err(code, &msg);
                }
                match find(&e, key) {
                    Some((n, id, _)) => {
                        e.containers.insert(n, (id, "running".into()));
                        StatusCode::NO_CONTENT.into_response()
                    }
                    None => err(404, "no such container"),
                }
            }
            ("DELETE", ["containers", key]) => match find(&e, key) {
                Some((n, _, _)) => {
                    e.containers.remove(&n);
                    StatusCode::NO_CONTENT.into_response()
                }
                None => err(404, "no such container"),
            },
            ("POST", ["volumes", "create"]) => {
                let v: Value = serde_json::from_slice(&body).unwrap();
                e.volumes.push(v["Name"].as_str().unwrap().to_owned());
                (StatusCode::CREATED, axum::Json(v)).into_response()
            }
            _ => err(404, "page not found"),
        }
    }

    struct Fake {
        _dir: tempfile::TempDir,
        socket: PathBuf,
        engine: Shared,
    }

    impl Fake {
        async fn start() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let socket = dir.path().join("docker.sock");
            let listener = tokio::net::UnixListener::bind(&socket).unwrap();
            let engine: Shared = Arc::default();
            let app = axum::Router::new()
                .fallback(handle)
                .with_state(engine.clone());
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            Fake {
                _dir: dir,
                socket,
                engine,
            }
        }

        fn launcher(&self) -> DockerLauncher {
            let mut cfg = DockerConfig::new("cma/runner:ci", &self.socket);
            cfg.api_timeout = Duration::from_millis(500);
            DockerLauncher::new(cfg)
        }

        fn calls(&self) -> Vec<String> {
            self.engine.lock().unwrap().calls.clone()
        }

        fn with<R>(&self, f: impl FnOnce(&mut Engine) -> R) -> R {
            f(&mut self.engine.lock().unwrap())
        }
    }

    #[tokio::test]
    async fn starts_then_reports_already_running() {
        let fake = Fake::start().await;
        let l = fake.launcher();
        assert!(ping(&fake.socket).await);
        fake.with(|e| e.calls.clear());
        let out = l.launch(&req("sesn_1")).await.unwrap();
        assert_eq!(out, LaunchOutcome::Started { id: "id1".into() });
        assert_eq!(
            fake.calls(),
            vec![
                "GET /containers/cma-runner-sesn_1/json",
                "POST /containers/create?name=cma-runner-sesn_1",
                "POST /containers/id1/start",
            ]
        );
        let body = fake.with(|e| e.create_bodies[0].clone());
        assert_eq!(body["Labels"]["cma.session_id"], "sesn_1");
        assert_eq!(body["HostConfig"]["AutoRemove"], true);

        // Duplicate while running (and while merely created): a no-op.
        for status in ["running", "created", "restarting", "paused"] {
            fake.with(|e| {
                e.containers.get_mut("cma-runner-sesn_1").unwrap().1 = status.into();
                e.calls.clear();
            });
            let out = l.launch(&req("sesn_1")).await.unwrap();
            assert_eq!(
                out,
                LaunchOutcome::AlreadyRunning { id: "id1".into() },
                "{status}"
            );
            assert_eq!(fake.calls(), vec!["GET /containers/cma-runner-sesn_1/json"]);
        }
        let listed = l.list(Some("sesn_1")).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "cma-runner-sesn_1");
    }

    #[tokio::test]
    async fn exited_leftover_is_replaced() {
        let fake = Fake::start().await;
        fake.with(|e| {
            e.containers
                .insert("cma-runner-sesn_1".into(), ("old".into(), "exited".into()));
        });
        let mut cfg = fake.launcher().config().clone();
        cfg.workspace_volume = true;
        let out = DockerLauncher::new(cfg)
            .launch(&req("sesn_1"))
            .await
            .unwrap();
        assert_eq!(out, LaunchOutcome::Started { id: "id1".into() });
        assert_eq!(
            fake.calls(),
            vec![
                "GET /containers/cma-runner-sesn_1/json",
                "DELETE /containers/old?force=true",
                "GET /containers/cma-runner-sesn_1/json",
                "POST /volumes/create",
                "POST /containers/create?name=cma-runner-sesn_1",
                "POST /containers/id1/start",
            ]
        );
        assert_eq!(
            fake.with(|e| e.volumes.clone()),
            vec!["cma-workspace-sesn_1"]
        );
    }

    #[tokio::test]
    async fn create_race_409_becomes_already_running() {
        let fake = Fake::start().await;
        fake.with(|e| e.create_race = Some("running".into()));
        let out = fake.launcher().launch(&req("sesn_1")).await.unwrap();
        assert_eq!(
            out,
            LaunchOutcome::AlreadyRunning {
                id: "winner".into()
            }
        );
        assert_eq!(
            fake.calls(),
            vec![
                "GET /containers/cma-runner-sesn_1/json",
                "POST /containers/create?name=cma-runner-sesn_1",
                "GET /containers/cma-runner-sesn_1/json",
            ]
        );
    }

    #[tokio::test]
    async fn missing_image_is_permanent_and_names_it() {
        let fake = Fake::start().await;
        fake.with(|e| e.create_fail = Some((404, "No such image: cma/runner:ci".into())));
        let e = fake.launcher().launch(&req("sesn_1")).await.unwrap_err();
        assert!(!e.is_retryable(), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("cma/runner:ci") && msg.contains(".ci/docker-image.sh"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn engine_errors_are_classified_and_scrubbed() {
        let fake = Fake::start().await;
        fake.with(|e| {
            e.create_fail = Some((
                500,
                format!("driver failed with env ANTHROPIC_WORK_SECRET={SECRET}"),
            ))
        });
        let e = fake.launcher().launch(&req("sesn_1")).await.unwrap_err();
        assert!(e.is_retryable(), "{e}");
        assert!(!e.to_string().contains(SECRET), "{e}");

        fake.with(|e| e.create_fail = Some((400, "invalid NanoCpus".into())));
        let e = fake.launcher().launch(&req("sesn_1")).await.unwrap_err();
        assert!(
            !e.is_retryable() && e.to_string().contains("invalid NanoCpus"),
            "{e}"
        );

        fake.with(|e| {
            e.create_fail = None;
            e.inspect_fail = Some((503, "busy".into()));
        });
        let e = fake.launcher().launch(&req("sesn_1")).await.unwrap_err();
        assert!(e.is_retryable(), "{e}");
    }

    #[tokio::test]
    async fn failed_start_removes_the_created_container() {
        let fake = Fake::start().await;
        fake.with(|e| e.start_fail = Some((500, "OCI runtime create failed".into())));
        let e = fake.launcher().launch(&req("sesn_1")).await.unwrap_err();
        assert!(
            e.is_retryable() && e.to_string().contains("OCI runtime"),
            "{e}"
        );
        assert_eq!(
            fake.calls().last().map(String::as_str),
            Some("DELETE /containers/id1?force=true")
        );
        assert!(
            fake.with(|e| e.containers.is_empty()),
            "nothing left to pass for a runner"
        );
    }

    #[tokio::test]
    async fn timeouts_are_retryable_and_missing_socket_is_permanent() {
        let fake = Fake::start().await;
        fake.with(|e| e.delay = Some(Duration::from_secs(2)));
        let mut cfg = fake.launcher().config().clone();
        cfg.api_timeout = Duration::from_millis(100);
        let e = DockerLauncher::new(cfg)
            .launch(&req("sesn_1"))
            .await
            .unwrap_err();
        assert!(
            e.is_retryable() && e.to_string().contains("timed out"),
            "{e}"
        );

        let gone = fake.socket.with_file_name("missing.sock");
        assert!(!ping(&gone).await);
        let l = DockerLauncher::new(DockerConfig::new("img", &gone));
        let e = l.launch(&req("sesn_1")).await.unwrap_err();
        assert!(!e.is_retryable(), "{e}");
        assert!(e.to_string().contains("is Docker running?"), "{e}");
    }
}
