//! One work item from claim to exit (spec control-plane §9.2).
//!
//! 1. Start the heartbeat loop before anything else; wait for the first beat to claim
//!    the lease (a second runner for the same item gets 412 here and leaves without
//!    touching the session).
//! 2. Retrieve the session; a terminated session needs no tools.
//! 3. Run the tool loop until idle, termination, or the lease ends.
//! 4. Teardown (always, bounded): kill tool processes.
//! 5. Force-stop the item unless the lease was lost (409 = already stopped = fine).
//!
//! The body races the lease and the shutdown signal: when the lease ends or
//! SIGTERM/SIGINT arrives, the body future (and with it the running tool) is dropped
//! at once, so nothing more is posted.

use std::future::Future;
use std::time::Duration;

use cma_shared::ControlPlane;
use cma_shared::client::StopOutcome;
use cma_shared::types::SessionStatus;

use crate::lease::{EndReason, Lease};
use crate::session::{LoopEnd, ToolLoop};
use crate::tools::ToolRegistry;

/// Teardown bound (kill tools); the whole SIGTERM path must fit in 10 s.
pub const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on the final force-stop call.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(4);

/// What one run needs besides the client.
pub struct RunSpec {
    pub environment_id: String,
    pub work_id: String,
    pub session_id: String,
    pub max_idle: Option<Duration>,
    pub registry: ToolRegistry,
}

/// How the run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub reason: EndReason,
    /// Whether the force-stop call succeeded (or found the item already stopped).
    pub stopped: bool,
    /// A failure an operator should look at (non-zero exit).
    pub failure: Option<String>,
    /// Tool executions (not counting re-posts of cached results).
    pub executions: u64,
}

impl RunOutcome {
    pub fn exit_code(&self) -> i32 {
        if self.failure.is_some() { 1 } else { 0 }
    }
}

enum BodyEnd {
    Done,
    Failed(String),
}

/// Serve one work item. `shutdown` resolves on SIGTERM/SIGINT.
pub async fn run(
    client: ControlPlane,
    spec: RunSpec,
    shutdown: impl Future<Output = ()>,
) -> RunOutcome {
    let lease = Lease::start(
        client.clone(),
        spec.environment_id.clone(),
        spec.work_id.clone(),
    );
    let registry = spec.registry.clone();
    let mut executions = 0u64;

    let body = async {
        if let Err(reason) = lease.claimed().await {
            return (Some(reason), BodyEnd::Done);
        }
        let session = match client.retrieve_session(&spec.session_id).await {
            Ok(s) => s,
            Err(e) => {
                return (
                    None,
                    BodyEnd::Failed(format!("could not retrieve the session: {e}")),
                );
            }
        };
        if session.status == SessionStatus::Terminated {
            tracing::info!("session is terminated; nothing to serve");
            return (None, BodyEnd::Done);
        }
        if session.resources.iter().any(|r| r.is_memory_store()) {
            // Memory sync is not in this build: running without the mounts would
            // silently lose memory (the reference fails the item the same way).
            return (
                None,
                BodyEnd::Failed(
                    "the session has memory stores, but this runner build cannot mount them".into(),
                ),
            );
        }
        let mut tool_loop = ToolLoop::new(
            client.clone(),
            spec.session_id.clone(),
            registry.clone(),
            lease.subscribe(),
            spec.max_idle,
        );
        let end = tool_loop.run().await;
        executions = tool_loop.executions();
        match end {
            LoopEnd::Idle | LoopEnd::Terminated | LoopEnd::Deleted => (None, BodyEnd::Done),
            LoopEnd::Fatal(e) => (
                None,
                BodyEnd::Failed(format!("session stream refused: {e}")),
            ),
        }
    };

    let (reason, failure) = tokio::select! {
        (lease_reason, end) = body => {
            let failure = match end {
                BodyEnd::Done => None,
                BodyEnd::Failed(msg) => Some(msg),
            };
            (lease_reason.unwrap_or(EndReason::RunnerDone), failure)
        }
        r = lease.ended() => (r, None),
        _ = shutdown => {
            tracing::info!("shutdown signal received; tearing down");
            (EndReason::Signal, None)
        }
    };
    let mut failure = failure;
    if reason == EndReason::HeartbeatRejected {
        failure.get_or_insert_with(|| "heartbeat rejected by the control plane".into());
    }

    // Teardown, shielded from the cancellation above (the body is already dropped).
    if tokio::time::timeout(TEARDOWN_TIMEOUT, registry.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("tool teardown timed out");
    }

    let mut stopped = false;
    if reason.is_lost() {
        tracing::info!(
            reason = reason.as_str(),
            "lease lost: exiting without stopping the item"
        );
    } else {
        match tokio::time::timeout(
            STOP_TIMEOUT,
            client.stop(&spec.environment_id, &spec.work_id, true),
        )
        .await
        {
            Ok(Ok(outcome)) => {
                stopped = true;
                tracing::info!(
                    already_stopped = outcome == StopOutcome::AlreadyStopped,
                    "work item force-stopped"
                );
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "force-stop failed");
                failure.get_or_insert_with(|| format!("force-stop failed: {e}"));
            }
            Err(_) => {
                tracing::error!("force-stop timed out");
                failure.get_or_insert_with(|| "force-stop timed out".into());
            }
        }
    }
    lease.shutdown().await;
    tracing::info!(
        reason = reason.as_str(),
        stopped,
        failure = failure.as_deref(),
        "runner finished"
    );
    RunOutcome {
        reason,
        stopped,
        failure,
        executions,
    }
}
