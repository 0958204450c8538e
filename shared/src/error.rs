//! Typed control-plane errors (spec §2.6, §13.1).
//!
//! Callers branch on [`ErrorKind`] and on [`ApiError::error_code`], never on the
//! message. Every error carries the HTTP status, the `error.type`, the
//! `error.details.error_code` and the `request-id` response header when the server sent
//! them, so an operator can quote the request id to Anthropic support.

use std::fmt;
use std::time::Duration;

use crate::types::HeartbeatCurrentState;

/// How a caller should react to an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Network failure, timeout, HTTP 5xx, 408, 409 or 429: retrying may help.
    Transient,
    /// Every other 4xx, or a response we cannot interpret: retrying will not help.
    Permanent,
    /// Heartbeat answered 412: the lease belongs to someone else or the item was
    /// re-queued. The caller must stop serving the item and must not `stop` it.
    LeaseLost,
}

/// An error from one control-plane call.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub kind: ErrorKind,
    /// `GET /v1/...` style description of the call (ids only, never credentials).
    pub operation: String,
    /// HTTP status, absent for transport failures.
    pub status: Option<u16>,
    /// `error.type` of the envelope (`invalid_request_error`, `api_error`, ...).
    pub error_type: Option<String>,
    /// `error.details.error_code`.
    pub error_code: Option<String>,
    pub message: String,
    /// The `request-id` response header.
    pub request_id: Option<String>,
    /// Server-suggested delay (`retry-after-ms` / `retry-after`).
    pub retry_after: Option<Duration>,
    /// For a heartbeat 412: `error.details.current_state`.
    pub current_state: Option<HeartbeatCurrentState>,
}

impl ApiError {
    pub fn transport(operation: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Transient,
            operation: operation.into(),
            status: None,
            error_type: None,
            error_code: None,
            message: message.into(),
            request_id: None,
            retry_after: None,
            current_state: None,
        }
    }

    pub fn protocol(operation: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Permanent,
            ..Self::transport(operation, message)
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Transient
    }

    pub fn is_lease_lost(&self) -> bool {
        self.kind == ErrorKind::LeaseLost
    }

    /// True for 401/403: the credential is wrong or lacks access. Nothing but a
    /// configuration change fixes it.
    pub fn is_auth(&self) -> bool {
        matches!(self.status, Some(401 | 403))
    }

    /// A short hint an operator can act on, by status.
    pub fn hint(&self) -> &'static str {
        match self.status {
            Some(401) => {
                "the credential was rejected: check that the environment key belongs to this environment and base URL"
            }
            Some(403) => "the credential may not call this endpoint",
            Some(404) => {
                "the environment, work item or session does not exist (or the id is wrong)"
            }
            Some(412) => "another worker holds this work item's lease, or it was re-queued",
            Some(429) => "rate limited: back off",
            Some(s) if s >= 500 => "control-plane failure: retry later",
            None => "network failure: check connectivity to the base URL",
            _ => "",
        }
    }
}

/// Classify an HTTP status per spec §13.1 (before any `x-should-retry` override).
pub fn classify_status(status: u16) -> ErrorKind {
    match status {
        408 | 409 | 429 => ErrorKind::Transient,
        s if s >= 500 => ErrorKind::Transient,
        _ => ErrorKind::Permanent,
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.operation)?;
        match self.status {
            Some(s) => write!(f, "HTTP {s}")?,
            None => f.write_str("transport error")?,
        }
        if let Some(t) = &self.error_type {
            write!(f, " {t}")?;
        }
        if let Some(c) = &self.error_code {
            write!(f, " (error_code {c})")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if let Some(r) = &self.request_id {
            write!(f, " [request-id {r}]")?;
        }
        let hint = self.hint();
        if !hint.is_empty() {
            write!(f, " — {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_matches_spec_13_1() {
        for s in [408, 409, 429, 500, 502, 503, 529] {
            assert_eq!(classify_status(s), ErrorKind::Transient, "{s}");
        }
        for s in [400, 401, 403, 404, 412, 413, 422] {
            assert_eq!(classify_status(s), ErrorKind::Permanent, "{s}");
        }
    }

    #[test]
    fn display_carries_status_code_and_request_id() {
        let e = ApiError {
            kind: ErrorKind::Permanent,
            operation: "POST /v1/environments/env_1/work/w/ack".into(),
            status: Some(401),
            error_type: Some("authentication_error".into()),
            error_code: Some("invalid_key".into()),
            message: "bad key".into(),
            request_id: Some("req_1".into()),
            retry_after: None,
            current_state: None,
        };
        let s = e.to_string();
        assert!(s.contains("HTTP 401"), "{s}");
        assert!(s.contains("authentication_error"), "{s}");
        assert!(s.contains("invalid_key"), "{s}");
        assert!(s.contains("req_1"), "{s}");
        assert!(s.contains("environment key"), "{s}");
    }
}
