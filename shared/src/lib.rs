//! Contract shared by the webhook Lambda, the dispatcher Lambda and the runner.
//!
//! * [`types`]: serde types for every control-plane object (work items, heartbeats,
//!   sessions, session events, webhook envelopes). Unknown fields and unknown enum
//!   values always parse (forward compatibility).
//! * [`client`]: the control-plane HTTP client (spec `control-plane.md` §2, §5, §10).
//! * [`retry`]: the retry policy of spec §13 with an injectable clock and jitter.
//! * [`sse`]: an incremental Server-Sent-Events parser for the session event stream.
//! * [`webhook`]: Standard Webhooks signature verification (spec §8.4).
//! * [`secret`]: redacting secret wrappers and work-secret decoding (spec §3.2).
//! * [`emf`]: CloudWatch embedded-metric-format lines (webhook and dispatcher metrics).

// `ApiError` carries everything an operator needs (status, error type and code,
// request id, hint); it only travels on the error path, so its size is not a concern.
#![allow(clippy::result_large_err)]

pub mod client;
pub mod emf;
pub mod error;
pub mod logging;
pub mod message;
pub mod retry;
pub mod secret;
pub mod sse;
pub mod types;
pub mod webhook;
pub mod worker_id;

pub use client::{ClientConfig, ControlPlane};
pub use error::{ApiError, ErrorKind};
pub use secret::{EnvironmentKey, SecretString, SessionsToken, WebhookSecret};
