//! The local dispatcher: takes each message off the in-memory queue and starts its
//! runner with a [`Launcher`] (Docker or process), the way the dispatcher Lambda does
//! with SQS and Fargate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cma_shared::retry::{RandJitter, RetryPolicy, TokioClock};
use dispatcher::dispatch::{Dispatched, Settings, dispatch_parsed};
use dispatcher::message::{ParsedMessage, parse_body};
use dispatcher::{LaunchError, LaunchOutcome, Launcher};
use tokio::sync::mpsc;

use crate::stack::QueueReceiver;

/// What the dispatch loop did with one message (for the demo's transcript and timings).
#[derive(Debug, Clone)]
pub enum DispatchEvent {
    /// Taken off the queue.
    Received {
        work_id: String,
        session_id: String,
        enqueued_at: Instant,
        at: Instant,
    },
    /// The launcher answered.
    Launched {
        work_id: String,
        outcome: LaunchOutcome,
        at: Instant,
    },
    /// Unusable message, permanent launch error, or retries exhausted: the item stays
    /// acked without a runner until its lease lapses and the control plane re-offers it.
    Failed {
        work_id: Option<String>,
        reason: String,
        at: Instant,
    },
}

/// Retries of a launch that failed with [`LaunchError::Retryable`]: 0.5 s doubling,
/// capped at 8 s (the shared request policy's shape), for at most this long.
pub const LAUNCH_RETRY_FOR: Duration = Duration::from_secs(60);

/// The dispatcher crate's stale guard and launch for one parsed message, retrying
/// retryable launch failures with backoff for up to `retry_for`.
pub async fn dispatch_with_retries(
    launcher: &dyn Launcher,
    parsed: &ParsedMessage,
    settings: &Settings,
    retry_for: Duration,
) -> Result<Dispatched, LaunchError> {
    let policy = RetryPolicy::default();
    let deadline = Instant::now() + retry_for;
    let mut attempt = 0u32;
    loop {
        match dispatch_parsed(launcher, parsed, settings, &TokioClock).await {
            Ok(d) => return Ok(d),
            Err(e) if e.is_retryable() => {
                let delay = policy.delay(attempt, None, &RandJitter);
                if Instant::now() + delay > deadline {
                    return Err(e);
                }
                tracing::warn!(work_id = %parsed.message.work_id, launcher = launcher.name(), error = %e, ?delay, "launch failed; retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Take messages off `queue` until it closes; dispatch each on its own task (a slow
/// launch does not hold up the next message). Every step is reported on `events` when
/// given, and logged.
pub async fn run_loop(
    mut queue: QueueReceiver,
    launcher: Arc<dyn Launcher>,
    settings: Settings,
    events: Option<mpsc::UnboundedSender<DispatchEvent>>,
) {
    let report = Arc::new(move |e: DispatchEvent| {
        if let Some(tx) = &events {
            let _ = tx.send(e);
        }
    });
    let settings = Arc::new(settings);
    while let Some(q) = queue.recv().await {
        let at = Instant::now();
        let parsed = match parse_body(&q.body) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "unusable queue message; dropped");
                report(DispatchEvent::Failed {
                    work_id: None,
                    reason: format!("malformed message: {e}"),
                    at,
                });
                continue;
            }
        };
        let work_id = parsed.message.work_id.clone();
        report(DispatchEvent::Received {
            work_id: work_id.clone(),
            session_id: parsed.message.session_id.clone(),
            enqueued_at: q.at,
            at,
        });
        let launcher = launcher.clone();
        let report = report.clone();
        let settings = settings.clone();
        tokio::spawn(async move {
            let session_id = parsed.message.session_id.clone();
            let name = launcher.name();
            let r = dispatch_with_retries(launcher.as_ref(), &parsed, &settings, LAUNCH_RETRY_FOR)
                .await;
            let at = Instant::now();
            match r {
                Ok(Dispatched::Launched { outcome, .. }) => {
                    match &outcome {
                        LaunchOutcome::Started { id } => {
                            tracing::info!(%work_id, %session_id, launcher = name, runner = %id, "runner started")
                        }
                        LaunchOutcome::AlreadyRunning { id } => {
                            tracing::info!(%work_id, %session_id, launcher = name, runner = %id, "a runner is already running for this item")
                        }
                    }
                    report(DispatchEvent::Launched {
                        work_id,
                        outcome,
                        at,
                    });
                }
                Ok(Dispatched::Stale { age }) => {
                    tracing::warn!(%work_id, age_secs = age.as_secs(), "stale claim dropped; the control plane re-offers the item");
                    report(DispatchEvent::Failed {
                        work_id: Some(work_id),
                        reason: format!("stale claim ({} s old), nothing launched", age.as_secs()),
                        at,
                    });
                }
                Err(e) => {
                    tracing::error!(%work_id, launcher = name, error = %e, "cannot start the runner; the item is re-offered once its lease lapses");
                    report(DispatchEvent::Failed {
                        work_id: Some(work_id),
                        reason: e.to_string(),
                        at,
                    });
                }
            }
        });
    }
}
