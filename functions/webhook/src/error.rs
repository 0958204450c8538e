//! Error types. Each says whether retrying can help ([`PortError::is_retryable`],
//! [`Failure::is_retryable`]); none ever carries a secret value.

use cma_shared::ApiError;

/// A configuration problem. Names the variable, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("set one of {0} or {1}")]
    MissingOneOf(&'static str, &'static str),
    #[error("set only one of {0} or {1}, not both")]
    Conflict(&'static str, &'static str),
    #[error("{variable} {reason}")]
    Invalid {
        variable: &'static str,
        reason: &'static str,
    },
}

impl ConfigError {
    /// The (first) variable to fix.
    pub fn variable(&self) -> &'static str {
        match self {
            ConfigError::Missing(v)
            | ConfigError::MissingOneOf(v, _)
            | ConfigError::Conflict(v, _)
            | ConfigError::Invalid { variable: v, .. } => v,
        }
    }
}

/// A failed call to an AWS port (SQS, KMS, Secrets Manager, ECS) or its in-memory
/// double. `message` is built from the SDK error chain, which never contains the
/// plaintext we sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// Throttling, timeouts, 5xx, connection failures: a later attempt may succeed.
    #[error("{operation} failed (retryable): {message}")]
    Retryable {
        operation: &'static str,
        message: String,
    },
    /// Access denied, missing resource, invalid request: only a fix on our side helps.
    #[error("{operation} failed: {message}")]
    Permanent {
        operation: &'static str,
        message: String,
    },
}

impl PortError {
    pub fn retryable(operation: &'static str, message: impl Into<String>) -> Self {
        PortError::Retryable {
            operation,
            message: message.into(),
        }
    }

    pub fn permanent(operation: &'static str, message: impl Into<String>) -> Self {
        PortError::Permanent {
            operation,
            message: message.into(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, PortError::Retryable { .. })
    }

    pub fn operation(&self) -> &'static str {
        match self {
            PortError::Retryable { operation, .. } | PortError::Permanent { operation, .. } => {
                operation
            }
        }
    }
}

/// Our side is broken: the invocation answers 5xx (webhook) or fails (sweep).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("configuration error: {0}")]
    Config(#[from] ConfigError),
    /// Fetching a secret failed (Secrets Manager unreachable, access denied, ...).
    #[error("cannot read the secret named by {variable}: {source}")]
    Secret {
        variable: &'static str,
        #[source]
        source: PortError,
    },
    /// The control plane rejected the environment key (401/403): a configuration fix
    /// is needed, retrying will not help.
    #[error("the environment key was rejected: {0}")]
    EnvironmentKeyRejected(ApiError),
    /// The capacity check (SQS queue attributes, ECS ListTasks) failed; without it we
    /// must not claim work.
    #[error("capacity check failed: {0}")]
    Capacity(PortError),
    /// KMS `Encrypt` failed for an acked item.
    #[error("encrypting the work secret of {work_id} failed: {source}")]
    Seal {
        work_id: String,
        #[source]
        source: PortError,
    },
    /// SQS `SendMessage` failed for an acked item after every retry the time budget allowed.
    #[error("enqueueing {work_id} failed after {attempts} attempt(s): {source}")]
    Enqueue {
        work_id: String,
        attempts: u32,
        #[source]
        source: PortError,
    },
}

impl Failure {
    /// Whether a later invocation may succeed without an operator's fix (the webhook
    /// sender's retry or the next sweep).
    pub fn is_retryable(&self) -> bool {
        match self {
            Failure::Config(_) | Failure::EnvironmentKeyRejected(_) => false,
            Failure::Secret { source, .. }
            | Failure::Capacity(source)
            | Failure::Seal { source, .. }
            | Failure::Enqueue { source, .. } => source.is_retryable(),
        }
    }

    /// Short stable code for logs and the response body.
    pub fn code(&self) -> &'static str {
        match self {
            Failure::Config(_) => "config",
            Failure::Secret { .. } => "secret",
            Failure::EnvironmentKeyRejected(_) => "environment_key_rejected",
            Failure::Capacity(_) => "capacity_check",
            Failure::Seal { .. } => "kms",
            Failure::Enqueue { .. } => "sqs",
        }
    }
}
