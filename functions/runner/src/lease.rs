//! The work-item lease: the heartbeat loop of spec control-plane §6.
//!
//! The loop runs in its own tokio task (tool work runs in child processes or on the
//! blocking pool, so it cannot starve this task). It starts with
//! `expected_last_heartbeat=NO_HEARTBEAT` and then echoes each `last_heartbeat`
//! verbatim (a CAS chain: a second runner for the same item gets 412 on its first
//! beat). Interval `clamp(ttl/2, 1 s, 30 s)`, each beat bounded by the interval.
//!
//! Outcomes are published on a `watch` channel: the server TTL (the tool loop's
//! result-post window), whether the lease was claimed, and the [`EndReason`] once the
//! lease ends. "Lost" reasons mean the item belongs to the queue or another worker:
//! the runner must not stop it.

use std::time::Duration;

use cma_shared::ControlPlane;
use cma_shared::client::NO_HEARTBEAT;
use cma_shared::error::ErrorKind;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Default heartbeat interval before the server reports a TTL.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// TTL assumed before the first successful heartbeat.
pub const DEFAULT_TTL: Duration = Duration::from_secs(90);

/// Why the lease (and so the run) ended. First one wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The tool loop finished normally (idle, terminated session, ...).
    RunnerDone,
    /// The heartbeat said `stopping`/`stopped` or `lease_extended: false`.
    HeartbeatStop,
    /// Heartbeat 412: someone else holds the lease, or the item was re-queued.
    LeaseLost,
    /// Heartbeat answered a non-retryable 4xx other than 412.
    HeartbeatRejected,
    /// No successful heartbeat for a whole TTL.
    AssumedLost,
    /// SIGTERM/SIGINT.
    Signal,
}

impl EndReason {
    /// Lost leases are never stopped by this runner (spec §6).
    pub fn is_lost(self) -> bool {
        matches!(self, Self::LeaseLost | Self::AssumedLost)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RunnerDone => "runner_done",
            Self::HeartbeatStop => "heartbeat_stop",
            Self::LeaseLost => "lease_lost",
            Self::HeartbeatRejected => "heartbeat_rejected",
            Self::AssumedLost => "assumed_lost",
            Self::Signal => "signal",
        }
    }
}

/// What the lease loop publishes.
#[derive(Debug, Clone, Default)]
pub struct LeaseStatus {
    /// The server's `ttl_seconds`, once a heartbeat succeeded.
    pub ttl: Option<Duration>,
    /// True once the first heartbeat succeeded (the lease is ours).
    pub claimed: bool,
    /// Successful heartbeats so far.
    pub beats: u64,
    pub ended: Option<EndReason>,
}

/// Handle to the running heartbeat loop.
pub struct Lease {
    status: watch::Receiver<LeaseStatus>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// `clamp(ttl/2, 1 s, 30 s)`.
pub fn interval_for(ttl: Duration) -> Duration {
    (ttl / 2).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

impl Lease {
    /// Start heartbeating now (the first beat is sent immediately).
    pub fn start(client: ControlPlane, environment_id: String, work_id: String) -> Self {
        let (tx, rx) = watch::channel(LeaseStatus::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(heartbeat_loop(client, environment_id, work_id, tx, stop_rx));
        Self {
            status: rx,
            stop: stop_tx,
            task,
        }
    }

    /// A receiver for the published status (the tool loop reads the TTL from it).
    pub fn subscribe(&self) -> watch::Receiver<LeaseStatus> {
        self.status.clone()
    }

    pub fn current(&self) -> LeaseStatus {
        self.status.borrow().clone()
    }

    /// Wait until the first heartbeat succeeded (`Ok`) or the lease ended first (`Err`).
    pub async fn claimed(&self) -> Result<(), EndReason> {
        let mut rx = self.status.clone();
        let s = rx
            .wait_for(|s| s.claimed || s.ended.is_some())
            .await
            .map(|s| s.clone())
            .unwrap_or_else(|_| LeaseStatus {
                ended: Some(EndReason::AssumedLost),
                ..LeaseStatus::default()
            });
        match s.ended {
            Some(r) if !s.claimed => Err(r),
            _ => Ok(()),
        }
    }

    /// Wait until the lease ends.
    pub async fn ended(&self) -> EndReason {
        let mut rx = self.status.clone();
        match rx.wait_for(|s| s.ended.is_some()).await {
            Ok(s) => s.ended.unwrap_or(EndReason::AssumedLost),
            Err(_) => EndReason::AssumedLost,
        }
    }

    /// Stop heartbeating (after teardown and the final stop call).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn heartbeat_loop(
    client: ControlPlane,
    env: String,
    work: String,
    tx: watch::Sender<LeaseStatus>,
    mut stop: watch::Receiver<bool>,
) {
    let mut interval = DEFAULT_INTERVAL;
    let mut ttl = DEFAULT_TTL;
    let mut expected = NO_HEARTBEAT.to_owned();
    let mut last_ok = Instant::now();
    let end = |tx: &watch::Sender<LeaseStatus>, reason: EndReason| {
        tx.send_modify(|s| {
            s.ended.get_or_insert(reason);
        });
    };
    loop {
        if *stop.borrow() {
            return;
        }
        let started = Instant::now();
        let result = tokio::select! {
            r = client.heartbeat(&env, &work, &expected, None, interval) => r,
            _ = stop.changed() => return,
        };
        match result {
            Ok(hb) => {
                expected = hb.last_heartbeat.clone();
                last_ok = Instant::now();
                if let Some(secs) = hb.ttl_seconds.filter(|s| *s > 0) {
                    ttl = Duration::from_secs(secs);
                    interval = interval_for(ttl);
                }
                let first = !tx.borrow().claimed;
                tx.send_modify(|s| {
                    s.claimed = true;
                    s.beats += 1;
                    if hb.ttl_seconds.is_some_and(|t| t > 0) {
                        s.ttl = Some(ttl);
                    }
                });
                if first {
                    tracing::info!(
                        ttl_s = ttl.as_secs(),
                        interval_ms = interval.as_millis() as u64,
                        state = hb.state.as_str(),
                        "lease claimed"
                    );
                } else {
                    tracing::debug!(state = hb.state.as_str(), "heartbeat ok");
                }
                if hb.state.is_stopping_or_stopped() || !hb.lease_extended {
                    tracing::info!(
                        state = hb.state.as_str(),
                        lease_extended = hb.lease_extended,
                        "control plane asked this worker to stop"
                    );
                    end(&tx, EndReason::HeartbeatStop);
                    // Keep heartbeating during teardown (spec §6) unless stopped.
                }
            }
            Err(e) if e.kind == ErrorKind::LeaseLost => {
                tracing::warn!(error = %e, "lease lost (412): another worker holds this item or it was re-queued; exiting without stop");
                end(&tx, EndReason::LeaseLost);
                return;
            }
            Err(e) if e.kind == ErrorKind::Permanent => {
                tracing::error!(error = %e, "heartbeat rejected");
                end(&tx, EndReason::HeartbeatRejected);
                return;
            }
            Err(e) => {
                let silent_for = last_ok.elapsed();
                if silent_for > ttl {
                    tracing::warn!(error = %e, silent_s = silent_for.as_secs(), "no successful heartbeat for a whole TTL: lease assumed lost");
                    end(&tx, EndReason::AssumedLost);
                    return;
                }
                tracing::warn!(error = %e, "heartbeat failed; retrying");
            }
        }
        let wake = started + interval;
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_clamp() {
        assert_eq!(
            interval_for(Duration::from_secs(60)),
            Duration::from_secs(30)
        );
        assert_eq!(
            interval_for(Duration::from_secs(90)),
            Duration::from_secs(30)
        );
        assert_eq!(
            interval_for(Duration::from_secs(20)),
            Duration::from_secs(10)
        );
        assert_eq!(interval_for(Duration::from_secs(1)), Duration::from_secs(1));
    }

    #[test]
    fn lost_reasons() {
        assert!(EndReason::LeaseLost.is_lost());
        assert!(EndReason::AssumedLost.is_lost());
        for r in [
            EndReason::RunnerDone,
            EndReason::HeartbeatStop,
            EndReason::HeartbeatRejected,
            EndReason::Signal,
        ] {
            assert!(!r.is_lost());
        }
    }
}
