//! The drain (spec §7.2), shared by the webhook and the sweep.
//!
//! ```text
//! loop:
//!   stop if MAX_DRAIN_ITEMS items were handled, or the soft deadline passed
//!   capacity check (only with MAX_CONCURRENT_SESSIONS): in-flight >= cap → stop
//!   poll (no block_ms, reclaim_older_than_ms = RECLAIM_OLDER_THAN_MS)
//!     null → drained, stop
//!     404  → skip (the server consumed that item), continue
//!     401/403 → our environment key is wrong: fail (5xx)
//!     5xx / timeout / other 4xx → count, log, stop (the sweep retries later)
//!   ack at once
//!     409 → somebody else claimed it, continue
//!     401/403 → fail (5xx)
//!     5xx / timeout → count, stop (the item is re-offered after reclaim_older_than_ms)
//!     other 4xx → force-stop it (errors ignored), continue
//!   not a session (healthcheck, …), or no usable secret → force-stop, continue
//!   seal the secret (KMS, encryption context {environment_id, work_id, session_id})
//!   send one SQS message; retry with backoff until the hard deadline
//!   never stop a handed-off item
//! ```
//!
//! Every item handled counts toward `MAX_DRAIN_ITEMS`: claimed, skipped on 404, or
//! force-stopped. Time: each control-plane and AWS call is cut off at the hard
//! deadline; no new item is polled after the soft deadline (see [`Budget`]).
//!
//! An item whose secret cannot be sealed or sent after its ack is **not** stopped: it
//! stays `starting` until its lease lapses, goes back to the queue (spec §17.2) and a
//! later drain claims it again. The drain stops at once (SQS or KMS is broken, more
//! claims would only strand more items) and the invocation fails (5xx).

use std::future::Future;
use std::time::{Duration, Instant};

use cma_shared::ApiError;
use cma_shared::retry::{Clock, Jitter};
use cma_shared::types::WorkItem;

use crate::error::{Failure, PortError};
use crate::message::{EncryptionContext, OutgoingMessage, WorkMessage};
use crate::ports::{CapacityGauge, ControlPlaneApi, Queue, SecretSealer};

/// Time budget of one drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// After this no new item is polled.
    pub soft: Instant,
    /// Every call is cut off here; SQS retries stop here.
    pub hard: Instant,
}

impl Budget {
    /// Reserved before the Lambda deadline for the response and the metric line
    /// (at most a tenth of the remaining time).
    pub const HARD_MARGIN: Duration = Duration::from_millis(500);
    /// Reserved before the Lambda deadline when deciding whether to poll once more
    /// (enough for poll + ack + KMS + SQS of one item; at most a third of the
    /// remaining time, so a short Lambda timeout still drains).
    pub const SOFT_MARGIN: Duration = Duration::from_millis(2500);
    /// Used when no Lambda deadline is known (tests, local runs).
    pub const DEFAULT_REMAINING: Duration = Duration::from_secs(25);

    /// A budget for `remaining` time from `now`.
    pub fn from_remaining(now: Instant, remaining: Duration) -> Budget {
        let soft_margin = Self::SOFT_MARGIN.min(remaining / 3);
        let hard_margin = Self::HARD_MARGIN.min(remaining / 10);
        Budget {
            soft: now + remaining.saturating_sub(soft_margin),
            hard: now + remaining.saturating_sub(hard_margin),
        }
    }

    /// From a Lambda context deadline (milliseconds since the Unix epoch). 0 or an
    /// implausible value (before 2001: `cargo lambda watch` sends its timeout as a
    /// duration there) means unknown: [`Self::DEFAULT_REMAINING`].
    pub fn from_deadline_ms(clock: &dyn Clock, deadline_ms: u64) -> Budget {
        const PLAUSIBLE_EPOCH_MS: u64 = 1_000_000_000_000;
        let now_ms = crate::util::unix_ms(std::time::SystemTime::now());
        let remaining = if deadline_ms < PLAUSIBLE_EPOCH_MS {
            Self::DEFAULT_REMAINING
        } else {
            Duration::from_millis(deadline_ms.saturating_sub(now_ms))
        };
        tracing::debug!(
            deadline_ms,
            remaining_ms = remaining.as_millis() as u64,
            "time budget"
        );
        Self::from_remaining(clock.now(), remaining)
    }
}

/// Non-secret settings of the drain.
#[derive(Debug, Clone)]
pub struct DrainSettings {
    pub environment_id: String,
    pub reclaim_older_than_ms: u64,
    pub max_items: u32,
    pub max_concurrent_sessions: Option<u64>,
    /// `Anthropic-Worker-ID` (stable per execution environment).
    pub worker_id: String,
}

/// Why the drain stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainEnd {
    /// A poll answered "no work".
    Drained,
    /// `MAX_DRAIN_ITEMS` items handled.
    MaxItems,
    /// The soft deadline passed.
    TimeBudget,
    /// `MAX_CONCURRENT_SESSIONS` reached; the rest stays queued at Anthropic.
    AtCapacity,
    /// Control-plane 5xx / timeout / network failure: left to the sweep.
    ControlPlaneUnavailable,
    /// Control-plane refused in an unexpected way (a 4xx other than 401/403/404/409).
    ControlPlaneRejected,
    /// Our side is broken; see [`DrainReport::failure`].
    Failed,
}

impl DrainEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            DrainEnd::Drained => "drained",
            DrainEnd::MaxItems => "max_items",
            DrainEnd::TimeBudget => "time_budget",
            DrainEnd::AtCapacity => "at_capacity",
            DrainEnd::ControlPlaneUnavailable => "control_plane_unavailable",
            DrainEnd::ControlPlaneRejected => "control_plane_rejected",
            DrainEnd::Failed => "failed",
        }
    }
}

/// What one drain did.
#[derive(Debug)]
pub struct DrainReport {
    pub end: DrainEnd,
    pub polls: u32,
    /// Work ids sent to SQS, in order.
    pub enqueued: Vec<String>,
    /// Work ids force-stopped (not sessions, or no usable secret, or ack refused).
    pub force_stopped: Vec<String>,
    pub poll_not_found: u32,
    pub ack_conflicts: u32,
    pub control_plane_errors: u32,
    pub enqueue_retries: u32,
    pub failure: Option<Failure>,
    pub duration: Duration,
}

impl DrainReport {
    fn new() -> Self {
        DrainReport {
            end: DrainEnd::Drained,
            polls: 0,
            enqueued: Vec::new(),
            force_stopped: Vec::new(),
            poll_not_found: 0,
            ack_conflicts: 0,
            control_plane_errors: 0,
            enqueue_retries: 0,
            failure: None,
            duration: Duration::ZERO,
        }
    }
}

/// Everything one drain needs.
pub struct Drainer<'a> {
    pub control_plane: &'a dyn ControlPlaneApi,
    pub queue: &'a dyn Queue,
    pub sealer: &'a dyn SecretSealer,
    /// Consulted only when `settings.max_concurrent_sessions` is set.
    pub gauge: Option<&'a dyn CapacityGauge>,
    pub clock: &'a dyn Clock,
    pub jitter: &'a dyn Jitter,
    pub settings: &'a DrainSettings,
}

/// First delay between `SendMessage` / `Encrypt` attempts; doubles up to the cap.
const PORT_RETRY_BASE: Duration = Duration::from_millis(100);
const PORT_RETRY_CAP: Duration = Duration::from_secs(2);

impl Drainer<'_> {
    /// Run the drain until one of the [`DrainEnd`] conditions.
    pub async fn run(&self, budget: Budget) -> DrainReport {
        let started = self.clock.now();
        let mut report = DrainReport::new();
        let end = self.run_inner(budget, &mut report).await;
        report.end = end;
        report.duration = self.clock.now().saturating_duration_since(started);
        report
    }

    async fn run_inner(&self, budget: Budget, r: &mut DrainReport) -> DrainEnd {
        let env = self.settings.environment_id.as_str();
        let mut handled: u32 = 0;
        let mut baseline: Option<u64> = None;
        loop {
            if handled >= self.settings.max_items {
                return DrainEnd::MaxItems;
            }
            if self.clock.now() >= budget.soft {
                return DrainEnd::TimeBudget;
            }

            // Never claim what cannot start.
            if let (Some(cap), Some(gauge)) = (self.settings.max_concurrent_sessions, self.gauge) {
                let n = match self
                    .bounded(budget, "capacity check", gauge.in_flight())
                    .await
                {
                    Ok(Ok(n)) => n,
                    Ok(Err(e)) => return self.fail(r, Failure::Capacity(e)),
                    Err(op) => {
                        return self
                            .fail(r, Failure::Capacity(PortError::retryable(op, "timed out")));
                    }
                };
                // SQS attribute counts lag: never trust a reading below what we know
                // we added ourselves since the first reading.
                let base = *baseline.get_or_insert(n);
                let effective = n.max(base + r.enqueued.len() as u64);
                if effective >= cap {
                    tracing::info!(
                        in_flight = effective,
                        max_concurrent_sessions = cap,
                        "at capacity; leaving the remaining work queued at Anthropic"
                    );
                    return DrainEnd::AtCapacity;
                }
            }

            r.polls += 1;
            let polled = self
                .cp(
                    budget,
                    "GET work/poll",
                    self.control_plane.poll(
                        env,
                        self.settings.reclaim_older_than_ms,
                        &self.settings.worker_id,
                    ),
                )
                .await;
            let item = match polled {
                Ok(None) => return DrainEnd::Drained,
                Ok(Some(item)) => item,
                Err(e) if e.status == Some(404) => {
                    r.poll_not_found += 1;
                    handled += 1;
                    tracing::warn!(error = %e, "poll answered 404; skipping and polling again");
                    continue;
                }
                Err(e) if e.is_auth() => {
                    return self.fail(r, Failure::EnvironmentKeyRejected(e));
                }
                Err(e) => return self.control_plane_trouble(r, "poll", &e),
            };
            handled += 1;

            let work_id = item.id.clone();
            match self
                .cp(
                    budget,
                    "POST work/ack",
                    self.control_plane.ack(env, &work_id),
                )
                .await
            {
                Ok(()) => {}
                Err(e) if e.status == Some(409) => {
                    r.ack_conflicts += 1;
                    tracing::info!(work_id, error = %e, "ack answered 409; another worker claimed the item");
                    continue;
                }
                Err(e) if e.is_auth() => {
                    return self.fail(r, Failure::EnvironmentKeyRejected(e));
                }
                Err(e) if e.is_retryable() => {
                    return self.control_plane_trouble(r, "ack", &e);
                }
                Err(e) => {
                    r.control_plane_errors += 1;
                    tracing::warn!(work_id, error = %e, "ack refused; force-stopping the item");
                    self.force_stop(budget, r, &work_id).await;
                    continue;
                }
            }
            let acked_at = crate::util::rfc3339_millis(std::time::SystemTime::now());

            let Some((session_id, secret)) = self.handoff(&item) else {
                self.force_stop(budget, r, &work_id).await;
                continue;
            };
            let ctx = EncryptionContext {
                environment_id: env.to_owned(),
                work_id: work_id.clone(),
                session_id: session_id.to_owned(),
            };

            let sealed = match self
                .with_retries(budget, "KMS Encrypt", || self.sealer.seal(secret, &ctx))
                .await
            {
                Ok((sealed, _)) => sealed,
                Err((source, _)) => {
                    return self.fail(r, Failure::Seal { work_id, source });
                }
            };
            let msg = WorkMessage::new(&ctx, acked_at, &sealed);
            let out = OutgoingMessage {
                body: msg.to_body(),
                deduplication_id: work_id.clone(),
                group_id: ctx.session_id.clone(),
            };
            match self
                .with_retries(budget, "SQS SendMessage", || self.queue.send(&out))
                .await
            {
                Ok(((), attempts)) => {
                    r.enqueue_retries += attempts - 1;
                    tracing::info!(work_id, session_id, "work item claimed and enqueued");
                    r.enqueued.push(work_id);
                }
                Err((source, attempts)) => {
                    r.enqueue_retries += attempts.saturating_sub(1);
                    return self.fail(
                        r,
                        Failure::Enqueue {
                            work_id,
                            attempts,
                            source,
                        },
                    );
                }
            }
        }
    }

    /// The session id and secret of an item we can hand to a runner, or `None` (after
    /// logging why) for an item that must be force-stopped.
    fn handoff<'i>(
        &self,
        item: &'i WorkItem,
    ) -> Option<(&'i str, &'i cma_shared::secret::WorkSecret)> {
        let Some(session_id) = item.data.session_id() else {
            tracing::info!(
                work_id = item.id,
                data_type = item.data.kind.as_deref().unwrap_or(""),
                "not a session item; force-stopping it"
            );
            return None;
        };
        // The runner never gets the environment key, so an item without a usable
        // sessions token could not authenticate anywhere (spec §3.3).
        match &item.secret {
            Some(secret) if secret.sessions_token().is_some() => Some((session_id, secret)),
            Some(_) => {
                tracing::error!(
                    work_id = item.id,
                    session_id,
                    "work secret carries no sessions token; force-stopping the item"
                );
                None
            }
            None => {
                tracing::error!(
                    work_id = item.id,
                    session_id,
                    "work item has no secret; force-stopping the item"
                );
                None
            }
        }
    }

    async fn force_stop(&self, budget: Budget, r: &mut DrainReport, work_id: &str) {
        let env = self.settings.environment_id.as_str();
        match self
            .cp(
                budget,
                "POST work/stop",
                self.control_plane.force_stop(env, work_id),
            )
            .await
        {
            Ok(outcome) => tracing::info!(work_id, ?outcome, "work item force-stopped"),
            Err(e) => tracing::warn!(work_id, error = %e, "force-stop failed (ignored)"),
        }
        r.force_stopped.push(work_id.to_owned());
    }

    fn control_plane_trouble(&self, r: &mut DrainReport, call: &str, e: &ApiError) -> DrainEnd {
        r.control_plane_errors += 1;
        if e.is_retryable() {
            tracing::warn!(call, error = %e, "control plane unavailable; leaving the rest to the sweep");
            DrainEnd::ControlPlaneUnavailable
        } else {
            tracing::error!(call, error = %e, "control plane refused the drain");
            DrainEnd::ControlPlaneRejected
        }
    }

    fn fail(&self, r: &mut DrainReport, f: Failure) -> DrainEnd {
        r.failure = Some(f);
        DrainEnd::Failed
    }

    /// A control-plane call cut off at the hard deadline (a cut-off is a transport
    /// error, i.e. transient).
    async fn cp<T>(
        &self,
        budget: Budget,
        op: &'static str,
        fut: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        match self.bounded(budget, op, fut).await {
            Ok(r) => r,
            Err(op) => Err(ApiError::transport(op, "cut off at the Lambda time budget")),
        }
    }

    /// `fut` bounded by the hard deadline; `Err(op)` on cut-off.
    async fn bounded<T>(
        &self,
        budget: Budget,
        op: &'static str,
        fut: impl Future<Output = T>,
    ) -> Result<T, &'static str> {
        let remaining = budget.hard.saturating_duration_since(self.clock.now());
        tokio::time::timeout(remaining, fut).await.map_err(|_| op)
    }

    /// Retry a port call on retryable errors with exponential backoff (100 ms doubling
    /// to 2 s, ×U(0.5, 1)) while the hard deadline allows. Returns the attempts made.
    async fn with_retries<T, F, Fut>(
        &self,
        budget: Budget,
        op: &'static str,
        mut call: F,
    ) -> Result<(T, u32), (PortError, u32)>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, PortError>>,
    {
        let mut attempts = 0u32;
        let mut delay = PORT_RETRY_BASE;
        loop {
            attempts += 1;
            let err = match self.bounded(budget, op, call()).await {
                Ok(Ok(v)) => return Ok((v, attempts)),
                Ok(Err(e)) if !e.is_retryable() => return Err((e, attempts)),
                Ok(Err(e)) => e,
                Err(op) => PortError::retryable(op, "cut off at the Lambda time budget"),
            };
            let wait = delay.mul_f64(0.5 + 0.5 * self.jitter.sample());
            if self.clock.now() + wait >= budget.hard {
                return Err((err, attempts));
            }
            tracing::warn!(operation = op, attempt = attempts, error = %err, ?wait, "retrying");
            self.clock.sleep(wait).await;
            delay = (delay * 2).min(PORT_RETRY_CAP);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margins_scale_down_for_short_timeouts() {
        let now = Instant::now();
        let b = Budget::from_remaining(now, Duration::from_secs(30));
        assert_eq!(b.soft - now, Duration::from_millis(27_500));
        assert_eq!(b.hard - now, Duration::from_millis(29_500));
        let b = Budget::from_remaining(now, Duration::from_secs(3));
        assert_eq!(b.soft - now, Duration::from_secs(2));
        assert_eq!(b.hard - now, Duration::from_millis(2_700));
        let b = Budget::from_remaining(now, Duration::ZERO);
        assert_eq!((b.soft, b.hard), (now, now));
    }

    #[test]
    fn implausible_deadlines_mean_unknown() {
        let clock = cma_shared::retry::RecordingClock::default();
        let now = clock.now();
        for d in [0, 600_000] {
            let b = Budget::from_deadline_ms(&clock, d);
            assert_eq!(b.hard - now, Duration::from_millis(24_500), "{d}");
        }
        let in_5s = crate::util::unix_ms(std::time::SystemTime::now()) + 5_000;
        let b = Budget::from_deadline_ms(&clock, in_5s);
        assert!(b.hard - now <= Duration::from_millis(4_500));
        assert!(b.hard - now > Duration::from_millis(3_000));
        let past = Budget::from_deadline_ms(&clock, 1_700_000_000_000);
        assert_eq!((past.soft, past.hard), (now, now));
    }
}
