//! One trait, three implementations: how a claimed session gets its runner.
//!
//! * `fargate::FargateLauncher` — ECS `RunTask` (the dispatcher Lambda).
//! * `docker::DockerLauncher` — one container per session via the Docker Engine API
//!   on a unix socket (a host you control; the local stack).
//! * `process::ProcessLauncher` — spawns the `runner` binary with a per-session
//!   workdir (the local stack and tests).
//!
//! Every launcher is idempotent per work item: launching the same item twice while the
//! first runner lives must not start a second one (the runner's lease would make the
//! second exit at once, but it would still cost a task).

use async_trait::async_trait;
use cma_shared::SecretString;

/// How the runner gets the item's work secret.
#[derive(Clone)]
pub enum LaunchSecret {
    /// `ANTHROPIC_WORK_SECRET_CIPHERTEXT`: standard base64 of the KMS ciphertext blob
    /// (encryption context: environment id, work id, session id). The only form the
    /// Fargate launcher accepts.
    Ciphertext(String),
    /// `ANTHROPIC_WORK_SECRET`: the secret itself (local plaintext mode only).
    Plaintext(SecretString),
}

impl std::fmt::Debug for LaunchSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LaunchSecret::Ciphertext(c) => write!(f, "Ciphertext({} chars)", c.len()),
            LaunchSecret::Plaintext(_) => f.write_str("Plaintext([redacted])"),
        }
    }
}

/// One runner to start.
#[derive(Debug, Clone)]
pub struct LaunchRequest {
    pub work_id: String,
    pub environment_id: String,
    pub session_id: String,
    /// `ANTHROPIC_BASE_URL` for the runner, when set.
    pub base_url: Option<String>,
    pub secret: LaunchSecret,
}

impl LaunchRequest {
    /// The runner's environment variables (names from the runner's `--help`).
    /// Values include the secret: never log the result.
    pub fn runner_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("ANTHROPIC_WORK_ID", self.work_id.clone()),
            ("ANTHROPIC_ENVIRONMENT_ID", self.environment_id.clone()),
            ("ANTHROPIC_SESSION_ID", self.session_id.clone()),
        ];
        match &self.secret {
            LaunchSecret::Ciphertext(c) => {
                env.push(("ANTHROPIC_WORK_SECRET_CIPHERTEXT", c.clone()))
            }
            LaunchSecret::Plaintext(s) => {
                env.push(("ANTHROPIC_WORK_SECRET", s.expose().to_owned()))
            }
        }
        if let Some(u) = &self.base_url {
            env.push(("ANTHROPIC_BASE_URL", u.clone()));
        }
        env
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchOutcome {
    /// A new runner was started (`id`: task ARN, container id, pid).
    Started { id: String },
    /// A runner for this item already exists; nothing was started.
    AlreadyRunning { id: String },
}

/// Why a launch failed, and whether trying again later can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    /// Throttling, capacity (`RESOURCE:*`), transient network or 5xx: retry later.
    #[error("launch failed, will retry: {reason}")]
    Retryable { reason: String },
    /// Invalid parameters, access denied, missing task definition or image, a
    /// plaintext secret given to Fargate: retrying cannot help; fix the configuration.
    #[error("launch failed permanently: {reason}")]
    Permanent { reason: String },
}

impl LaunchError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, LaunchError::Retryable { .. })
    }
}

/// Starts runners.
#[async_trait]
pub trait Launcher: Send + Sync {
    /// Short name for logs and metrics (`fargate`, `docker`, `process`).
    fn name(&self) -> &'static str;
    /// Start the runner for `req`, or report the one already running for it.
    async fn launch(&self, req: &LaunchRequest) -> Result<LaunchOutcome, LaunchError>;
}
