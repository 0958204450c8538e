//! Error types of the dispatcher Lambda. Each says whether retrying can help; none
//! ever carries a secret value (the launch errors of [`crate::launcher`] follow the
//! same rule).

use crate::launcher::LaunchError;
use crate::message::Malformed;

/// A configuration problem. Names the variable, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{variable} {reason}")]
    Invalid {
        variable: &'static str,
        reason: &'static str,
    },
}

impl ConfigError {
    /// The variable to fix.
    pub fn variable(&self) -> &'static str {
        match self {
            ConfigError::Missing(v) | ConfigError::Invalid { variable: v, .. } => v,
        }
    }
}

/// A failed call to an AWS port other than the launcher (SQS `ChangeMessageVisibility`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// Throttling, timeouts, 5xx, connection failures.
    #[error("{operation} failed (retryable): {message}")]
    Retryable {
        operation: &'static str,
        message: String,
    },
    /// Access denied, missing queue, invalid or expired receipt handle.
    #[error("{operation} failed: {message}")]
    Permanent {
        operation: &'static str,
        message: String,
    },
}

impl PortError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, PortError::Retryable { .. })
    }
}

/// Why one message was not turned into a runner.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    /// The body is not a schema-v1 work message. Never retryable.
    #[error("malformed message: {0}")]
    Malformed(#[from] Malformed),
    /// The launcher failed; [`LaunchError::is_retryable`] says whether to retry.
    #[error(transparent)]
    Launch(#[from] LaunchError),
}

impl DispatchError {
    /// Whether the same message may succeed later (throttling, capacity, 5xx, timeouts).
    pub fn is_retryable(&self) -> bool {
        match self {
            DispatchError::Malformed(_) => false,
            DispatchError::Launch(e) => e.is_retryable(),
        }
    }
}
