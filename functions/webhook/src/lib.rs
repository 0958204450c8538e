//! Webhook Lambda and scheduled sweep: verify a Claude Managed Agents webhook delivery,
//! drain the environment's work queue (poll + ack), and hand each claimed session to
//! the dispatcher through SQS with its work secret KMS-encrypted.
//!
//! Spec: `control-plane.md` §7 (drain), §8 (webhooks), §3 (credentials).
//!
//! # Two functions, one library
//!
//! * `webhook` (`src/bin/webhook.rs`, `lambda_http`): the Function URL handler.
//!   Verifies the Standard Webhooks signature, ignores every event type except
//!   `session.status_run_started`, then drains.
//! * `sweep` (`src/bin/sweep.rs`, `lambda_runtime`): invoked every minute by
//!   EventBridge Scheduler with any JSON payload; runs the same drain without a
//!   signature (IAM authenticates the invoke). It recovers missed webhooks and items
//!   re-queued after a lapsed lease.
//!
//! Two small functions rather than one that accepts both event shapes: the sweep
//! function has no Function URL, so an HTTP caller can never reach the unsigned code
//! path, and it never receives the signing secret (least privilege). Both binaries are
//! thin: all logic is in [`app::App`] and [`drain::Drainer`], so the code path is the
//! same. Build both with `cargo lambda build --profile lambda --output-format zip -p webhook
//! --bin webhook --bin sweep` (`sign-delivery` is a local tool, not a Lambda). Measured
//! zip sizes (x86_64, cargo-lambda 1.9.2, `make bench-webhook`): 3 673 584 / 3 461 374
//! bytes (3.5 / 3.3 MiB) with the workspace's `lambda` profile (`opt-level = "s"`,
//! `lto = "fat"`, `codegen-units = 1`); about 1.7× that with the plain release profile
//! (thin LTO, 4 codegen units, `opt-level = 3`). See `benches/handler.rs`. Four AWS SDK clients (SQS, KMS, Secrets Manager,
//! ECS) plus STS (from `aws-config`) are most of the binary.
//!
//! # Module layout
//!
//! * [`config`]: environment variables ([`config::ENV_VARS`]), validation.
//! * [`ports`]: the traits the drain talks through — [`ports::ControlPlaneApi`]
//!   (poll/ack/force-stop; implemented for `cma_shared::ControlPlane`),
//!   [`ports::Queue`], [`ports::SecretSealer`], [`ports::CapacityGauge`],
//!   [`ports::SecretSource`], [`ports::MetricsSink`].
//! * [`aws`]: SQS, KMS, Secrets Manager and SQS+ECS adapters; builds the app.
//! * [`memory`]: in-memory adapters (tests, benchmarks).
//! * [`drain`]: the drain algorithm (§7.2) with its time budget.
//! * [`app`]: request handling (status codes, logging, metrics) for both functions.
//! * [`message`]: the SQS message schema and the KMS encryption context.
//! * [`secrets`]: literal secrets and the TTL cache.
//! * [`metrics`]: the embedded-metric-format line.
//! * [`dedupe`]: the per-instance `webhook-id` memory (optimisation only).
//! * [`lambda`]: runtime glue; [`local`]: signed events for `cargo lambda invoke`;
//!   [`logging`]: JSON `tracing` setup.
//!
//! # Configuration
//!
//! | variable | meaning |
//! |---|---|
//! | `ANTHROPIC_ENVIRONMENT_ID` | required; the environment to drain |
//! | `ANTHROPIC_BASE_URL` | optional API base URL |
//! | `ANTHROPIC_WEBHOOK_SIGNING_KEY` / `WEBHOOK_SIGNING_KEY_SECRET_ARN` | webhook only, exactly one: `whsec_…` literally, or a Secrets Manager secret id/ARN whose `SecretString` is it |
//! | `ANTHROPIC_ENVIRONMENT_KEY` / `ENVIRONMENT_KEY_SECRET_ARN` | exactly one: the environment key, literally or in Secrets Manager |
//! | `QUEUE_URL` | required; the dispatcher's SQS queue (standard or `.fifo`) |
//! | `WORK_SECRET_KMS_KEY_ID` | KMS key id/ARN/alias for the work secret; required unless `ALLOW_PLAINTEXT_WORK_SECRET=true` |
//! | `ALLOW_PLAINTEXT_WORK_SECRET` | `true` allows plaintext secrets in messages **only** when no KMS key is set (local emulation; warns) |
//! | `MAX_CONCURRENT_SESSIONS` | optional cap on in-flight sessions; unset = no cap and no capacity call |
//! | `ECS_CLUSTER`, `RUNNER_TASK_FAMILY` | required with `MAX_CONCURRENT_SESSIONS`: where running runner tasks are counted |
//! | `RECLAIM_OLDER_THAN_MS` | default 15000, 1..=3600000 |
//! | `MAX_DRAIN_ITEMS` | default 25, 1..=1000 |
//!
//! Validated at start; a problem fails every invocation closed (500 / failed sweep)
//! with one log line naming the variable, never its value. Secrets are fetched on
//! first use and cached per execution environment for 5 minutes.
//!
//! # Capacity
//!
//! Before each poll, in-flight sessions = SQS `ApproximateNumberOfMessages` +
//! `ApproximateNumberOfMessagesNotVisible` on `QUEUE_URL` + ECS `ListTasks`
//! (`ECS_CLUSTER`, `family = RUNNER_TASK_FAMILY`, `desiredStatus = RUNNING`, all pages);
//! because SQS counts lag, the drain never trusts a reading lower than its first
//! reading plus what it enqueued itself. At the cap it stops and leaves the rest
//! queued at Anthropic. Concurrent drains may overshoot the cap by up to one item
//! each (the counts are not transactional).
//!
//! # SQS message and encryption context
//!
//! See [`message`]: body `{version: 1, work_id, environment_id, session_id,
//! acked_at, work_secret_ciphertext}` (or `work_secret` in plaintext mode), KMS
//! encryption context `{"environment_id", "work_id", "session_id"}`.
//!
//! # Status codes
//!
//! See [`app`]. In short: 405, 413, 401 (generic body) before anything is polled;
//! 200 once a verified delivery's drain was attempted, even when the control plane
//! failed (logged, counted, left to the sweep: an upstream outage must not get the
//! endpoint auto-disabled); 500 only when our side is broken (configuration, secrets,
//! the environment key rejected, SQS, KMS, the capacity check).

// `ApiError` (from cma-shared) is large; it only travels on error paths.
#![allow(clippy::result_large_err)]

pub mod app;
pub mod aws;
pub mod config;
pub mod dedupe;
pub mod drain;
pub mod error;
pub mod lambda;
pub mod local;
pub mod logging;
pub mod memory;
pub mod message;
pub mod metrics;
pub mod ports;
pub mod secrets;
pub mod util;

pub use app::{App, Ports, Runtime};
pub use config::{Config, ENV_VARS, Mode};
pub use drain::{Budget, DrainEnd, DrainReport, DrainSettings, Drainer};
pub use error::{ConfigError, Failure, PortError};
pub use message::{EncryptionContext, MESSAGE_VERSION, WorkMessage};
