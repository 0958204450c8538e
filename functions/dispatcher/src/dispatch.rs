//! One SQS message → one runner, and the batch around it.
//!
//! * [`dispatch_body`] is the core for one message body with any [`Launcher`]: parse
//!   ([`crate::message`]), stale-claim guard, launch. No SQS side effects, no metrics:
//!   what a local tool calls.
//! * [`Dispatcher`] adds the SQS semantics of the Lambda: one span per record, the
//!   item-failure decision, visibility backoff, the receive-count guard, metrics, and
//!   [`Dispatcher::handle_batch`] for a whole `SqsEvent` (`ReportBatchItemFailures`).
//!
//! # What happens to a record
//!
//! | situation | SQS outcome | log | metric |
//! |---|---|---|---|
//! | runner started | deleted (success) | info | `Launched`, `LaunchLatencyMs` |
//! | a runner for this claim is already running | deleted | info | `AlreadyRunning` |
//! | `acked_at` older than `STALE_CLAIM_AFTER_SECONDS` | deleted, nothing launched | warn | `Stale` |
//! | malformed (not JSON, unknown `version`, missing/invalid field) | item failure (DLQ after `maxReceiveCount`) | error | `Malformed` |
//! | retryable launch failure | item failure + `ChangeMessageVisibility` to [`retry_visibility_timeout`] | warn | `Retried` |
//! | permanent launch failure | item failure (DLQ after `maxReceiveCount`) | error | `Failed` |
//! | any failure on receive number ≥ `MAX_RECEIVE_COUNT` | deleted | error | `Dropped` |
//!
//! **Stale claims.** The webhook acked the item at `acked_at`; after
//! `STALE_CLAIM_AFTER_SECONDS` (default 600) the claim's lease has lapsed and the sweep
//! will re-claim the item and send a new message, so starting a runner for the old one
//! would only race the new one. Ages are whole seconds on the Lambda's clock; an
//! `acked_at` in the future counts as age 0.
//!
//! **Retry backoff.** `30 s × 2^(n−1)`, capped at 15 min, where `n` is the record's
//! `ApproximateReceiveCount` (30 s, 1 min, 2 min, 4 min, 8 min, 15 min, …). No jitter:
//! receive counts already differ between messages, and the cap plus the stale guard
//! bound the total (with the defaults a message that keeps failing is dropped as stale
//! on its sixth receive, about 15 min after the claim; the sweep then re-claims it).
//! If `ChangeMessageVisibility` fails the queue's own visibility timeout applies
//! (warning, `VisibilityErrors`).
//!
//! **Never looping forever.** Malformed messages and permanent failures are item
//! failures, so with a redrive policy they land in the DLQ for inspection. Without one
//! (or with a `maxReceiveCount` above it) the receive-count guard deletes any message
//! that fails on its `MAX_RECEIVE_COUNT`-th (default 10) or later receive, with an error
//! log naming the reason. Keep `MAX_RECEIVE_COUNT` above the redrive policy's
//! `maxReceiveCount` so the DLQ sees such messages first.
//!
//! **Concurrency and time.** Records of a batch are handled concurrently, at most
//! [`MAX_CONCURRENT_LAUNCHES`] at a time. Each launch is cut off at the invocation's
//! remaining time minus [`DEADLINE_MARGIN`] (a timeout is retryable), so a slow ECS
//! call turns into an item failure instead of a timed-out invocation that would return
//! the whole batch (already launched records included) to the queue.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use cma_shared::SecretString;
use cma_shared::message::WorkMessage;
use cma_shared::retry::{Clock, TokioClock};
use futures_util::StreamExt as _;
use tracing::Instrument as _;

use crate::error::DispatchError;
use crate::launcher::{LaunchError, LaunchOutcome, LaunchRequest, LaunchSecret, Launcher};
use crate::message::{Malformed, ParsedMessage, parse_body};
use crate::metrics::{Counters, StdoutMetrics};
use crate::ports::{MetricsSink, Visibility};

/// First retry delay (receive count 1).
pub const RETRY_VISIBILITY_BASE: Duration = Duration::from_secs(30);
/// Longest retry delay.
pub const RETRY_VISIBILITY_CAP: Duration = Duration::from_secs(15 * 60);
/// Records launched at the same time within one batch.
pub const MAX_CONCURRENT_LAUNCHES: usize = 10;
/// Time kept back from the invocation's deadline for visibility changes and the reply.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(2);
/// Budget used when the runtime gives no usable deadline (`cargo lambda watch`).
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(25);
/// SQS record attribute with the receive count.
pub const RECEIVE_COUNT_ATTRIBUTE: &str = "ApproximateReceiveCount";

/// Per-message settings (from [`crate::Config::settings`] in the Lambda).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `ANTHROPIC_BASE_URL` for the runner.
    pub base_url: Option<String>,
    /// Claims older than this are dropped.
    pub stale_claim_after: Duration,
    /// Receive-count guard (batch handling only).
    pub max_receive_count: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            base_url: None,
            stale_claim_after: crate::config::DEFAULT_STALE_CLAIM_AFTER,
            max_receive_count: crate::config::DEFAULT_MAX_RECEIVE_COUNT,
        }
    }
}

/// Visibility timeout after a retryable failure on receive number `receive_count`.
pub fn retry_visibility_timeout(receive_count: u32) -> Duration {
    let exp = receive_count.max(1) - 1;
    if exp >= 5 {
        return RETRY_VISIBILITY_CAP; // 30 s × 32 = 16 min > cap
    }
    (RETRY_VISIBILITY_BASE * (1u32 << exp)).min(RETRY_VISIBILITY_CAP)
}

/// Age of a claim in whole seconds (0 when `acked_at` is in the future).
pub fn claim_age(acked_at_ms: i64, now_unix_secs: i64) -> Duration {
    let acked_secs = acked_at_ms.div_euclid(1000);
    Duration::from_secs(now_unix_secs.saturating_sub(acked_secs).max(0) as u64)
}

/// The launch request for a message (the secret as the message carries it).
pub fn launch_request(m: &WorkMessage, base_url: Option<&str>) -> LaunchRequest {
    let secret = match (&m.work_secret_ciphertext, &m.work_secret) {
        (Some(c), _) => LaunchSecret::Ciphertext(c.clone()),
        (None, Some(p)) => LaunchSecret::Plaintext(SecretString::new(p.clone())),
        (None, None) => LaunchSecret::Ciphertext(String::new()),
    };
    LaunchRequest {
        work_id: m.work_id.clone(),
        environment_id: m.environment_id.clone(),
        session_id: m.session_id.clone(),
        base_url: base_url.map(str::to_owned),
        secret,
    }
}

/// A message that needed no retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dispatched {
    /// The launcher started a runner or found the one already running.
    Launched {
        outcome: LaunchOutcome,
        latency: Duration,
    },
    /// The claim was older than [`Settings::stale_claim_after`]; nothing launched.
    Stale { age: Duration },
}

/// Stale guard and launch for a parsed message.
pub async fn dispatch_parsed(
    launcher: &dyn Launcher,
    parsed: &ParsedMessage,
    settings: &Settings,
    clock: &dyn Clock,
) -> Result<Dispatched, LaunchError> {
    let age = claim_age(parsed.acked_at_ms, clock.unix_now());
    if age > settings.stale_claim_after {
        return Ok(Dispatched::Stale { age });
    }
    let req = launch_request(&parsed.message, settings.base_url.as_deref());
    let start = clock.now();
    let outcome = launcher.launch(&req).await?;
    Ok(Dispatched::Launched {
        outcome,
        latency: clock.now().saturating_duration_since(start),
    })
}

/// Parse one SQS body, drop it if stale, otherwise launch its runner with `launcher`.
/// The public entry point for a local tool (no SQS, no metrics).
pub async fn dispatch_body(
    launcher: &dyn Launcher,
    body: &str,
    settings: &Settings,
    clock: &dyn Clock,
) -> Result<Dispatched, DispatchError> {
    let parsed = parse_body(body)?;
    Ok(dispatch_parsed(launcher, &parsed, settings, clock).await?)
}

/// What happened to one SQS record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    Launched {
        id: String,
        latency_ms: u64,
    },
    AlreadyRunning {
        id: String,
        latency_ms: u64,
    },
    Stale {
        age_secs: u64,
    },
    /// Item failure.
    Malformed {
        reason: String,
    },
    /// Item failure; `visibility_changed` says whether the backoff was applied.
    Retry {
        reason: String,
        visibility_timeout: Duration,
        visibility_changed: bool,
    },
    /// Item failure.
    Failed {
        reason: String,
    },
    /// Deleted by the receive-count guard.
    Dropped {
        receive_count: u32,
        reason: String,
    },
}

impl RecordOutcome {
    /// Whether the record goes back to the queue (`batchItemFailures`).
    pub fn is_item_failure(&self) -> bool {
        matches!(
            self,
            RecordOutcome::Malformed { .. }
                | RecordOutcome::Retry { .. }
                | RecordOutcome::Failed { .. }
        )
    }
}

/// The batch handler: launcher, visibility port, clock, metrics and settings.
#[derive(Clone)]
pub struct Dispatcher {
    launcher: Arc<dyn Launcher>,
    visibility: Arc<dyn Visibility>,
    settings: Settings,
    clock: Arc<dyn Clock>,
    metrics: Arc<dyn MetricsSink>,
}

/// The receive count of a record (1 when absent or unparseable).
pub fn receive_count(record: &SqsMessage) -> u32 {
    record
        .attributes
        .get(RECEIVE_COUNT_ATTRIBUTE)
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(1)
        .max(1)
}

/// The per-launch time budget from the invocation deadline (Unix ms, as the Lambda
/// context carries it); [`DEFAULT_BUDGET`] when there is none or it is implausible.
pub fn budget_from_deadline_ms(deadline_ms: u64, now: SystemTime) -> Duration {
    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    match deadline_ms.checked_sub(now_ms) {
        Some(left) if left > 0 && left <= 15 * 60 * 1000 => Duration::from_millis(left),
        _ => DEFAULT_BUDGET,
    }
}

enum Failure {
    Malformed(Malformed),
    Launch(LaunchError),
}

impl Dispatcher {
    /// Real clock, metrics to stdout.
    pub fn new(
        launcher: Arc<dyn Launcher>,
        visibility: Arc<dyn Visibility>,
        settings: Settings,
    ) -> Self {
        Dispatcher {
            launcher,
            visibility,
            settings,
            clock: Arc::new(TokioClock),
            metrics: Arc::new(StdoutMetrics),
        }
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn with_metrics(mut self, metrics: Arc<dyn MetricsSink>) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn launcher(&self) -> &Arc<dyn Launcher> {
        &self.launcher
    }

    /// Handle one SQS event: every record concurrently (at most
    /// [`MAX_CONCURRENT_LAUNCHES`] at once), one EMF line, and the item failures.
    /// `budget` is the time left in the invocation.
    pub async fn handle_batch(&self, event: &SqsEvent, budget: Duration) -> SqsBatchResponse {
        let launch_budget = budget
            .saturating_sub(DEADLINE_MARGIN)
            .max(Duration::from_secs(1));
        let outcomes: Vec<(Option<String>, RecordOutcome)> =
            futures_util::stream::iter(event.records.iter().map(|r| async move {
                (
                    r.message_id.clone(),
                    self.handle_record(r, launch_budget).await,
                )
            }))
            .buffered(MAX_CONCURRENT_LAUNCHES)
            .collect()
            .await;

        let mut c = Counters {
            messages: outcomes.len() as u64,
            ..Counters::default()
        };
        let mut response = SqsBatchResponse::default();
        for (message_id, outcome) in &outcomes {
            match outcome {
                RecordOutcome::Launched { latency_ms, .. } => {
                    c.launched += 1;
                    c.launch_latency_ms.push(*latency_ms);
                }
                RecordOutcome::AlreadyRunning { latency_ms, .. } => {
                    c.already_running += 1;
                    c.launch_latency_ms.push(*latency_ms);
                }
                RecordOutcome::Stale { .. } => c.stale += 1,
                RecordOutcome::Malformed { .. } => c.malformed += 1,
                RecordOutcome::Retry {
                    visibility_changed, ..
                } => {
                    c.retried += 1;
                    if !visibility_changed {
                        c.visibility_errors += 1;
                    }
                }
                RecordOutcome::Failed { .. } => c.failed += 1,
                RecordOutcome::Dropped { .. } => c.dropped += 1,
            }
            if outcome.is_item_failure() {
                // Lambda always sends a messageId; an empty identifier would make it
                // retry the whole batch, which is still the safe direction.
                response.add_failure(message_id.clone().unwrap_or_default());
            }
        }
        tracing::info!(
            messages = c.messages,
            launched = c.launched,
            already_running = c.already_running,
            stale = c.stale,
            retried = c.retried,
            failed = c.failed,
            malformed = c.malformed,
            dropped = c.dropped,
            item_failures = response.batch_item_failures.len(),
            "batch handled"
        );
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.metrics.emit(&c.to_emf(ts));
        response
    }

    /// Handle one record inside its own span (`message_id`, `receive_count`, then
    /// `work_id`, `session_id`, `environment_id` once parsed). `launch_budget` cuts
    /// the launch off (retryable).
    pub async fn handle_record(
        &self,
        record: &SqsMessage,
        launch_budget: Duration,
    ) -> RecordOutcome {
        let receive_count = receive_count(record);
        let span = tracing::info_span!(
            "sqs_message",
            message_id = record.message_id.as_deref().unwrap_or(""),
            receive_count,
            work_id = tracing::field::Empty,
            session_id = tracing::field::Empty,
            environment_id = tracing::field::Empty,
        );
        self.record_inner(record, receive_count, launch_budget, span.clone())
            .instrument(span)
            .await
    }

    async fn record_inner(
        &self,
        record: &SqsMessage,
        receive_count: u32,
        launch_budget: Duration,
        span: tracing::Span,
    ) -> RecordOutcome {
        let parsed = match record
            .body
            .as_deref()
            .ok_or(Malformed::NoBody)
            .and_then(parse_body)
        {
            Ok(p) => p,
            Err(m) => {
                return self
                    .failure(record, receive_count, Failure::Malformed(m))
                    .await;
            }
        };
        let m = &parsed.message;
        span.record("work_id", m.work_id.as_str());
        span.record("session_id", m.session_id.as_str());
        span.record("environment_id", m.environment_id.as_str());

        let launched = tokio::time::timeout(
            launch_budget,
            dispatch_parsed(
                self.launcher.as_ref(),
                &parsed,
                &self.settings,
                self.clock.as_ref(),
            ),
        )
        .await
        .unwrap_or_else(|_| {
            Err(LaunchError::Retryable {
                reason: format!(
                    "{} launch timed out after {} ms (invocation deadline)",
                    self.launcher.name(),
                    launch_budget.as_millis()
                ),
            })
        });
        match launched {
            Ok(Dispatched::Stale { age }) => {
                tracing::warn!(
                    age_s = age.as_secs(),
                    stale_after_s = self.settings.stale_claim_after.as_secs(),
                    acked_at = m.acked_at.as_str(),
                    "claim is stale (its lease has lapsed; the sweep re-claims the item); message dropped without launching"
                );
                RecordOutcome::Stale {
                    age_secs: age.as_secs(),
                }
            }
            Ok(Dispatched::Launched { outcome, latency }) => {
                let latency_ms = latency.as_millis() as u64;
                match outcome {
                    LaunchOutcome::Started { id } => {
                        tracing::info!(
                            launcher = self.launcher.name(),
                            runner = id.as_str(),
                            latency_ms,
                            "runner started"
                        );
                        RecordOutcome::Launched { id, latency_ms }
                    }
                    LaunchOutcome::AlreadyRunning { id } => {
                        tracing::info!(
                            launcher = self.launcher.name(),
                            runner = id.as_str(),
                            latency_ms,
                            "runner already running for this claim; nothing started"
                        );
                        RecordOutcome::AlreadyRunning { id, latency_ms }
                    }
                }
            }
            Err(e) => {
                self.failure(record, receive_count, Failure::Launch(e))
                    .await
            }
        }
    }

    async fn failure(&self, record: &SqsMessage, receive_count: u32, f: Failure) -> RecordOutcome {
        let (kind, reason) = match &f {
            Failure::Malformed(m) => ("malformed", m.to_string()),
            Failure::Launch(LaunchError::Retryable { reason }) => ("retryable", reason.clone()),
            Failure::Launch(LaunchError::Permanent { reason }) => ("permanent", reason.clone()),
        };
        if receive_count >= self.settings.max_receive_count {
            tracing::error!(
                kind,
                reason = reason.as_str(),
                receive_count,
                max_receive_count = self.settings.max_receive_count,
                "message failed on too many receives; deleting it (the sweep re-claims the item if its lease lapses)"
            );
            return RecordOutcome::Dropped {
                receive_count,
                reason,
            };
        }
        match f {
            Failure::Malformed(_) => {
                tracing::error!(
                    reason = reason.as_str(),
                    "malformed message; returned to the queue (it reaches the DLQ after the queue's maxReceiveCount)"
                );
                RecordOutcome::Malformed { reason }
            }
            Failure::Launch(LaunchError::Permanent { .. }) => {
                tracing::error!(
                    launcher = self.launcher.name(),
                    reason = reason.as_str(),
                    "launch failed permanently (fix the configuration); returned to the queue for the DLQ"
                );
                RecordOutcome::Failed { reason }
            }
            Failure::Launch(LaunchError::Retryable { .. }) => {
                let timeout = retry_visibility_timeout(receive_count);
                let changed = match record.receipt_handle.as_deref() {
                    Some(h) if !h.is_empty() => {
                        match self.visibility.change_visibility(h, timeout).await {
                            Ok(()) => true,
                            Err(e) => {
                                tracing::warn!(error = %e, "ChangeMessageVisibility failed; the queue's visibility timeout applies");
                                false
                            }
                        }
                    }
                    _ => {
                        tracing::warn!(
                            "record has no receipt handle; the queue's visibility timeout applies"
                        );
                        false
                    }
                };
                tracing::warn!(
                    launcher = self.launcher.name(),
                    reason = reason.as_str(),
                    retry_in_s = timeout.as_secs(),
                    "launch failed, will retry"
                );
                RecordOutcome::Retry {
                    reason,
                    visibility_timeout: timeout,
                    visibility_changed: changed,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use cma_shared::message::{EncryptionContext, SealedSecret};

    use super::*;
    use crate::memory::{FixedClock, MemoryLauncher, MemoryMetrics, MemoryVisibility};

    const NOW: i64 = 1_777_636_800; // 2026-05-01T12:00:00Z

    fn body(work: &str, acked_at: &str) -> String {
        WorkMessage::new(
            &EncryptionContext {
                environment_id: "env_1".into(),
                work_id: work.into(),
                session_id: format!("sesn_{work}"),
            },
            acked_at.into(),
            &SealedSecret::Ciphertext(vec![7; 40]),
        )
        .to_body()
    }

    fn record(id: &str, body: &str, receives: u32) -> SqsMessage {
        let mut r = SqsMessage::default();
        r.message_id = Some(id.into());
        r.receipt_handle = Some(format!("rh-{id}"));
        r.body = Some(body.into());
        r.attributes = HashMap::from([(RECEIVE_COUNT_ATTRIBUTE.to_owned(), receives.to_string())]);
        r
    }

    struct H {
        d: Dispatcher,
        launcher: Arc<MemoryLauncher>,
        vis: Arc<MemoryVisibility>,
        metrics: Arc<MemoryMetrics>,
    }

    fn harness() -> H {
        let launcher = Arc::new(MemoryLauncher::default());
        let vis = Arc::new(MemoryVisibility::default());
        let metrics = Arc::new(MemoryMetrics::default());
        let d = Dispatcher::new(
            launcher.clone(),
            vis.clone(),
            Settings {
                base_url: Some("https://api.example.test".into()),
                ..Settings::default()
            },
        )
        .with_clock(Arc::new(FixedClock::new(NOW)))
        .with_metrics(metrics.clone());
        H {
            d,
            launcher,
            vis,
            metrics,
        }
    }

    #[test]
    fn backoff_schedule() {
        let secs: Vec<u64> = (0..=8)
            .map(|n| retry_visibility_timeout(n).as_secs())
            .collect();
        assert_eq!(secs, vec![30, 30, 60, 120, 240, 480, 900, 900, 900]);
        assert_eq!(retry_visibility_timeout(u32::MAX), RETRY_VISIBILITY_CAP);
    }

    #[test]
    fn claim_ages() {
        let acked = NOW * 1000;
        assert_eq!(claim_age(acked, NOW + 600), Duration::from_secs(600));
        assert_eq!(claim_age(acked + 999, NOW), Duration::ZERO);
        assert_eq!(claim_age(acked + 60_000, NOW), Duration::ZERO, "future");
        assert!(claim_age(i64::MIN, NOW).as_secs() > 0);
    }

    #[test]
    fn budgets() {
        let now = UNIX_EPOCH + Duration::from_secs(NOW as u64);
        let ms = NOW as u64 * 1000;
        assert_eq!(
            budget_from_deadline_ms(ms + 60_000, now),
            Duration::from_secs(60)
        );
        assert_eq!(budget_from_deadline_ms(0, now), DEFAULT_BUDGET);
        assert_eq!(budget_from_deadline_ms(ms - 1, now), DEFAULT_BUDGET);
        assert_eq!(budget_from_deadline_ms(ms + 3_600_000, now), DEFAULT_BUDGET);
    }

    #[tokio::test]
    async fn dispatch_body_core() {
        let l = MemoryLauncher::default();
        let clock = FixedClock::new(NOW);
        let s = Settings::default();
        let fresh = body("w1", "2026-05-01T11:55:00.000Z");
        let r = dispatch_body(&l, &fresh, &s, &clock).await.unwrap();
        assert!(matches!(
            r,
            Dispatched::Launched {
                outcome: LaunchOutcome::Started { .. },
                ..
            }
        ));
        let req = &l.requests()[0];
        assert_eq!(req.work_id, "w1");
        assert_eq!(req.session_id, "sesn_w1");
        assert!(matches!(req.secret, LaunchSecret::Ciphertext(_)));
        // Exactly at the limit is not stale; one second past it is.
        let at_limit = body("w2", "2026-05-01T11:50:00.000Z");
        assert!(matches!(
            dispatch_body(&l, &at_limit, &s, &clock).await.unwrap(),
            Dispatched::Launched { .. }
        ));
        let stale = body("w3", "2026-05-01T11:49:59.000Z");
        assert_eq!(
            dispatch_body(&l, &stale, &s, &clock).await.unwrap(),
            Dispatched::Stale {
                age: Duration::from_secs(601)
            }
        );
        assert_eq!(l.requests().len(), 2, "stale: nothing launched");
        let e = dispatch_body(&l, "{}", &s, &clock).await.unwrap_err();
        assert!(matches!(e, DispatchError::Malformed(_)) && !e.is_retryable());
    }

    #[tokio::test]
    async fn batch_outcomes_failures_and_metrics() {
        let h = harness();
        h.launcher.fail_work(
            "w_throttled",
            LaunchError::Retryable {
                reason: "ThrottlingException".into(),
            },
        );
        h.launcher.fail_work(
            "w_denied",
            LaunchError::Permanent {
                reason: "AccessDeniedException".into(),
            },
        );
        let fresh = "2026-05-01T11:59:00.000Z";
        let mut event = SqsEvent::default();
        event.records = vec![
            record("m_ok", &body("w_ok", fresh), 1),
            record("m_throttled", &body("w_throttled", fresh), 3),
            record("m_denied", &body("w_denied", fresh), 1),
            record("m_stale", &body("w_stale", "2026-05-01T11:00:00Z"), 1),
            record("m_bad", "{not json", 1),
            record(
                "m_v2",
                &body("w_v2", fresh).replace("\"version\":1", "\"version\":2"),
                1,
            ),
            record("m_dup", &body("w_ok", fresh), 2),
        ];
        let resp = h.d.handle_batch(&event, Duration::from_secs(30)).await;
        let failed: Vec<&str> = resp
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, vec!["m_throttled", "m_denied", "m_bad", "m_v2"]);
        assert_eq!(
            h.vis.calls(),
            vec![("rh-m_throttled".to_owned(), Duration::from_secs(120))]
        );
        assert_eq!(
            h.launcher.started(),
            1,
            "the duplicate found the running one"
        );
        let req = &h.launcher.requests()[0];
        assert_eq!(req.base_url.as_deref(), Some("https://api.example.test"));
        assert_eq!(h.metrics.total("Messages"), 7);
        assert_eq!(h.metrics.total("Launched"), 1);
        assert_eq!(h.metrics.total("AlreadyRunning"), 1);
        assert_eq!(h.metrics.total("Retried"), 1);
        assert_eq!(h.metrics.total("Failed"), 1);
        assert_eq!(h.metrics.total("Stale"), 1);
        assert_eq!(h.metrics.total("Malformed"), 2);
        assert_eq!(h.metrics.total("Dropped"), 0);
        assert_eq!(h.metrics.lines().len(), 1, "one EMF line per invocation");
    }

    #[tokio::test]
    async fn receive_count_guard_drops_any_failure() {
        let h = harness();
        h.launcher.fail_work(
            "w_throttled",
            LaunchError::Retryable {
                reason: "RESOURCE:ENI".into(),
            },
        );
        let fresh = "2026-05-01T11:59:00.000Z";
        let mut event = SqsEvent::default();
        event.records = vec![
            record("m_bad", "[]", 10),
            record("m_throttled", &body("w_throttled", fresh), 11),
            record("m_bad_early", "[]", 9),
        ];
        let resp = h.d.handle_batch(&event, Duration::from_secs(30)).await;
        assert_eq!(resp.batch_item_failures.len(), 1);
        assert_eq!(resp.batch_item_failures[0].item_identifier, "m_bad_early");
        assert!(h.vis.calls().is_empty(), "dropped: no visibility change");
        assert_eq!(h.metrics.total("Dropped"), 2);
    }

    #[tokio::test]
    async fn visibility_errors_and_timeouts_are_still_item_failures() {
        let h = harness();
        h.vis.fail(true);
        h.launcher.delay_work("w_slow", Duration::from_secs(5));
        let fresh = "2026-05-01T11:59:00.000Z";
        let mut r = record("m_slow", &body("w_slow", fresh), 1);
        let out = h.d.handle_record(&r, Duration::from_millis(50)).await;
        let RecordOutcome::Retry {
            reason,
            visibility_timeout,
            visibility_changed,
        } = out
        else {
            panic!("{out:?}")
        };
        assert!(reason.contains("timed out"), "{reason}");
        assert_eq!(visibility_timeout, Duration::from_secs(30));
        assert!(!visibility_changed);
        r.receipt_handle = None;
        r.message_id = None;
        let mut event = SqsEvent::default();
        event.records = vec![r];
        let resp = h.d.handle_batch(&event, Duration::from_millis(2050)).await;
        assert_eq!(resp.batch_item_failures[0].item_identifier, "");
        assert_eq!(h.metrics.total("VisibilityErrors"), 1);
    }

    #[tokio::test]
    async fn missing_body_and_receive_count_defaults() {
        let h = harness();
        let mut r = SqsMessage::default();
        r.message_id = Some("m".into());
        assert_eq!(receive_count(&r), 1);
        let out = h.d.handle_record(&r, Duration::from_secs(1)).await;
        assert_eq!(
            out,
            RecordOutcome::Malformed {
                reason: "malformed message: the SQS record has no body"
                    .trim_start_matches("malformed message: ")
                    .into()
            }
        );
        r.attributes
            .insert(RECEIVE_COUNT_ATTRIBUTE.into(), "garbage".into());
        assert_eq!(receive_count(&r), 1);
        r.attributes
            .insert(RECEIVE_COUNT_ATTRIBUTE.into(), "0".into());
        assert_eq!(receive_count(&r), 1);
    }
}
