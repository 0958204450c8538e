//! Dispatcher: turns each SQS work message into one runner (see [`launcher`]).
//!
//! # The dispatcher Lambda
//!
//! `src/main.rs` is the whole binary: JSON logging, [`aws::build_app`], then
//! `lambda_runtime::run` with [`lambda::handler`] (`SqsEvent` → `SqsBatchResponse`).
//! The event source mapping must enable `ReportBatchItemFailures`. Everything else is
//! library code behind small traits: [`Launcher`] (here [`fargate::FargateLauncher`]
//! on `aws-sdk-ecs`, through the [`fargate::EcsApi`] port), [`ports::Visibility`]
//! (SQS `ChangeMessageVisibility`), `cma_shared::retry::Clock` and
//! [`ports::MetricsSink`]. Build with `cargo lambda build --profile lambda
//! --output-format zip -p dispatcher --bin dispatcher` (measured: 3 142 810 bytes
//! zipped, x86_64, cargo-lambda 1.9.2). `benches/batch.rs` measures a 10-record batch
//! against moto (figures in the workspace README).
//!
//! ## Public entry points
//!
//! * [`dispatch_body`]`(launcher: &dyn Launcher, body: &str, settings: &Settings,
//!   clock: &dyn Clock) -> Result<Dispatched, DispatchError>`: one SQS body with any
//!   launcher: parse, stale guard, launch. No SQS calls, no metrics: for local tools.
//! * [`Dispatcher::handle_record`] / [`Dispatcher::handle_batch`]: the Lambda's
//!   semantics (spans, item failures, visibility backoff, receive-count guard, EMF).
//!
//! ## Decisions
//!
//! * **One Fargate task per message**, `RunTask` with the configured cluster, task
//!   definition, awsvpc subnets and security groups, public IP on/off, and
//!   `launchType FARGATE` or a capacity-provider strategy; the runner's container gets
//!   `ANTHROPIC_WORK_ID`, `ANTHROPIC_ENVIRONMENT_ID`, `ANTHROPIC_SESSION_ID`,
//!   `ANTHROPIC_WORK_SECRET_CIPHERTEXT` and (when set) `ANTHROPIC_BASE_URL`. The
//!   dispatcher never holds the environment key or a plaintext secret: it passes the
//!   KMS ciphertext through, and a message carrying a plaintext `work_secret` is a
//!   permanent error for the Fargate launcher. Details in [`fargate`].
//! * **Idempotency, two layers**, both keyed by the claim (work id + ciphertext, so a
//!   re-claim after a lapsed lease is a new launch while a redelivery is not): the
//!   ECS `clientToken` (64 characters, ECS keeps it 24 h) and a `ListTasks(startedBy)`
//!   check for a live task before `RunTask` (moto ignores the token). `startedBy` is
//!   `cma-<work_id>-<12 hex>` (≤ 128 of letters, digits, `-`, `_`; a hash-only form
//!   otherwise); tags `cma:work-id`, `cma:session-id`, `cma:environment-id` (values
//!   sanitised, ≤ 256). See [`fargate`] for why the token is not the work id alone.
//! * **Failures** (see [`dispatch`]): retryable launch failures (throttling,
//!   `RESOURCE:*`/capacity `failures[]`, 5xx, timeouts) are item failures with a
//!   visibility timeout of 30 s × 2^(receives − 1), capped at 15 min; permanent ones
//!   (invalid parameters, access denied, missing task definition) are error-logged
//!   item failures that reach the DLQ after the queue's `maxReceiveCount`; malformed
//!   bodies (bad JSON, unknown `version`, missing or invalid fields) likewise. A
//!   receive-count guard (`MAX_RECEIVE_COUNT`, default 10) deletes any message that
//!   fails on that receive or later, with an error log, so nothing loops forever
//!   without a redrive policy.
//! * **Stale claims**: `acked_at` older than `STALE_CLAIM_AFTER_SECONDS` (default 600)
//!   → deleted without launching, warning + `Stale` metric; the sweep re-claims the
//!   item once its lease lapses.
//! * **Observability**: one `sqs_message` span per record with `message_id`,
//!   `receive_count`, `work_id`, `session_id`, `environment_id`; JSON logs
//!   ([`logging`]); one EMF line per invocation in namespace `CmaSelfHosted`
//!   ([`metrics`], formatted by `cma_shared::emf`, shared with the webhook). No log
//!   line carries a message body, the ciphertext or a secret.
//! * **Configuration error**: every invocation fails (the batch returns to the queue
//!   untouched) with one log line naming the variable, never its value.
//! * **Concurrency**: up to 10 records of a batch at once; each launch is cut off
//!   before the invocation deadline (a timeout is retryable) so one slow call cannot
//!   time out the invocation and return already-launched records.
//!
//! ## Configuration ([`config::ENV_VARS`], `env-vars.txt`)
//!
//! | variable | meaning |
//! |---|---|
//! | `ECS_CLUSTER` | required; cluster name or ARN |
//! | `RUNNER_TASK_DEFINITION` | required; family, `family:revision` or ARN |
//! | `RUNNER_CONTAINER_NAME` | default `runner`; the container that gets the overrides |
//! | `SUBNETS` | required; comma-separated `subnet-…` ids (1–16) |
//! | `SECURITY_GROUPS` | required; comma-separated `sg-…` ids (1–5) |
//! | `ASSIGN_PUBLIC_IP` | `true`/`false`, default `false` (private subnets with NAT) |
//! | `CAPACITY_PROVIDER_STRATEGY` | `NAME:WEIGHT[:BASE],…` (e.g. `FARGATE_SPOT:1,FARGATE:0`); empty = `launchType FARGATE` |
//! | `ANTHROPIC_BASE_URL` | optional; passed to the runner |
//! | `QUEUE_URL` | required; the source queue (`ChangeMessageVisibility`) |
//! | `STALE_CLAIM_AFTER_SECONDS` | default 600, 1..=86400 |
//! | `MAX_RECEIVE_COUNT` | default 10, 2..=1000; keep it above the redrive `maxReceiveCount` |
//!
//! IAM for the Lambda role: `ecs:RunTask` (on the task definition), `ecs:ListTasks`,
//! `ecs:DescribeTasks`, `ecs:TagResource` (tags on `RunTask`), `iam:PassRole` for the
//! task and execution roles, `sqs:ReceiveMessage`/`DeleteMessage`/
//! `GetQueueAttributes`/`ChangeMessageVisibility` on the queue. No KMS permission:
//! only the runner's task role may decrypt.
//!
//! ## Module layout
//!
//! [`config`], [`message`] (schema-v1 parsing), [`dispatch`] (per message and batch),
//! [`fargate`] (launcher + ECS port + classification), [`aws`] (SQS adapter, SDK
//! configuration, building the app), [`lambda`] (runtime glue), [`metrics`],
//! [`logging`], [`memory`] (in-memory doubles), [`error`], [`ports`], [`time`].

pub mod aws;
pub mod config;
pub mod dispatch;
pub mod docker;
pub mod error;
pub mod fargate;
pub mod lambda;
pub mod launcher;
pub mod logging;
pub mod memory;
pub mod message;
pub mod metrics;
pub mod ports;
pub mod process;
pub mod time;

pub use config::{Config, ENV_VARS};
pub use dispatch::{Dispatched, Dispatcher, RecordOutcome, Settings, dispatch_body};
pub use error::{ConfigError, DispatchError, PortError};
pub use launcher::{LaunchError, LaunchOutcome, LaunchRequest, LaunchSecret, Launcher};
