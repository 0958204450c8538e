//! One work item from claim to exit (spec control-plane §9.2).
//!
//! 1. Start the heartbeat loop before anything else; wait for the first beat to claim
//!    the lease (a second runner for the same item gets 412 here and leaves without
//!    touching the session).
//! 2. Retrieve the session; a terminated session needs no tools.
//! 3. A session with memory stores and no sessions token fails the item (the memory
//!    endpoints refuse the environment key; running without the mounts would silently
//!    lose memory — the reference fails the same way).
//! 4. Skills ([`crate::skills`]): each skill is downloaded into `{workdir}/skills/<name>/`;
//!    one that fails is logged and skipped, never failing the session. With
//!    `ALLOW_ENVIRONMENT_KEY_IN_SANDBOX=true` a refused item credential is retried
//!    with the environment key.
//! 5. Memory stores ([`crate::memory`]): mounted (downloaded) before the tool loop;
//!    any store that cannot be materialised fails the item. Their roots become
//!    allowed roots of the file tools (read-only stores: read-only roots). A sync runs
//!    after dispatched tool calls at most every `MemoryConfig::sync_interval`.
//! 6. Run the tool loop until idle, termination, or the lease ends.
//! 7. Teardown (always, bounded, the heartbeat still running): kill tool processes,
//!    delete the skill directories this run created, then memory: a final sync if the
//!    loop ended cleanly (≤ 30 s), always a push-only flush (≤ 30 s), then remove the
//!    store roots. On SIGTERM the loop did not end cleanly: kill + flush + stop, which
//!    fits in ~40 s (the task definition's `stopTimeout` must be larger; Terraform
//!    sets 120 s).
//! 8. Force-stop the item unless the lease was lost (409 = already stopped = fine).
//!
//! The body races the lease and the shutdown signal: when the lease ends or
//! SIGTERM/SIGINT arrives, the body future (and with it the running tool) is dropped
//! at once, so nothing more is posted.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cma_shared::ControlPlane;
use cma_shared::client::StopOutcome;
use cma_shared::types::SessionStatus;

use crate::lease::{EndReason, Lease};
use crate::memory::{MemoryApi, MemoryConfig, MemoryStores};
use crate::session::{LoopEnd, LoopHooks, ToolLoop};
use crate::skills::{Provisioned, SkillLimits, SkillSource};
use crate::tools::{ToolContext, ToolRegistry, builtin_registry};

/// Teardown bound for killing the tools. Without memory stores the whole SIGTERM path
/// takes well under 10 s (`docker stop`'s default); with them the flush adds up to 30 s
/// (the task definition's `stopTimeout` is 120 s).
pub const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on the final force-stop call.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(4);

/// What one run needs besides the client.
pub struct RunSpec {
    pub environment_id: String,
    pub work_id: String,
    pub session_id: String,
    pub max_idle: Option<Duration>,
    /// The tools' context; memory-store roots are added to its roots before the
    /// registry is built.
    pub tool_context: ToolContext,
    /// Whether the item credential is a sessions token (memory stores need one).
    pub has_sessions_token: bool,
    /// A client authenticated with the environment key, for skills only, when the
    /// operator allowed it (`ALLOW_ENVIRONMENT_KEY_IN_SANDBOX=true`).
    pub skills_fallback: Option<ControlPlane>,
    pub skill_limits: SkillLimits,
    pub memory: MemoryConfig,
}

/// Memory sync after dispatched tool calls (at most every `sync_interval`).
struct MemoryHooks(Arc<MemoryStores>);

#[async_trait]
impl LoopHooks for MemoryHooks {
    async fn after_call(&self) {
        if let Some(report) = self.0.maybe_sync().await {
            for (store, path) in report.conflicts() {
                tracing::warn!(memory_store_id = %store, path = %path, "memory changed remotely while edited here: the remote version wins");
            }
        }
    }
}

/// What the body set up and the teardown must undo (the body may be dropped at any
/// await point, so these live outside it).
#[derive(Default)]
struct Resources {
    registry: Option<ToolRegistry>,
    skills: Option<Provisioned>,
    memory: Option<Arc<MemoryStores>>,
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
    let resources: Mutex<Resources> = Mutex::default();
    let mut executions = 0u64;
    let mut loop_clean = false;

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
        let has_memory = session.resources.iter().any(|r| r.is_memory_store());
        if has_memory && !spec.has_sessions_token {
            return (
                None,
                BodyEnd::Failed(
                    "the session has memory stores but the work item carries no sessions token \
                     (the memory endpoints refuse the environment key); pass the item's work secret \
                     (ANTHROPIC_WORK_SECRET or ANTHROPIC_WORK_SECRET_CIPHERTEXT) to the runner"
                        .into(),
                ),
            );
        }

        if !session.agent.skills.is_empty() {
            let provisioned = crate::skills::provision(
                &client as &dyn SkillSource,
                spec.skills_fallback.as_ref().map(|c| c as &dyn SkillSource),
                &spec.tool_context.workdir,
                &session.agent.skills,
                &spec.skill_limits,
            )
            .await;
            tracing::info!(
                installed = provisioned.installed.len(),
                skipped = provisioned.skipped.len(),
                "skills provisioned"
            );
            resources.lock().expect("resources").skills = Some(provisioned);
        }

        let mut ctx = spec.tool_context.clone();
        let mut hooks: Option<Arc<dyn LoopHooks>> = None;
        if has_memory {
            let api: Arc<dyn MemoryApi> = Arc::new(client.clone());
            match MemoryStores::mount(api, &ctx.workdir, &session.resources, spec.memory.clone())
                .await
            {
                Ok(stores) => {
                    for (root, read_only) in stores.roots() {
                        ctx.roots.allow(&root);
                        if read_only {
                            ctx.roots.read_only(&root);
                        }
                    }
                    let stores = Arc::new(stores);
                    tracing::info!(stores = stores.roots().len(), "memory stores mounted");
                    resources.lock().expect("resources").memory = Some(stores.clone());
                    hooks = Some(Arc::new(MemoryHooks(stores)));
                }
                Err(e) => {
                    return (
                        None,
                        BodyEnd::Failed(format!("could not mount the memory stores: {e}")),
                    );
                }
            }
        }

        let registry = builtin_registry(Arc::new(ctx));
        resources.lock().expect("resources").registry = Some(registry.clone());
        let mut tool_loop = ToolLoop::new(
            client.clone(),
            spec.session_id.clone(),
            registry,
            lease.subscribe(),
            spec.max_idle,
        );
        if let Some(h) = hooks {
            tool_loop = tool_loop.with_hooks(h);
        }
        let end = tool_loop.run().await;
        executions = tool_loop.executions();
        match end {
            LoopEnd::Idle | LoopEnd::Terminated | LoopEnd::Deleted => {
                loop_clean = true;
                (None, BodyEnd::Done)
            }
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

    // Teardown, shielded from the cancellation above (the body is already dropped);
    // the heartbeat keeps running until the very end.
    let Resources {
        registry,
        skills,
        memory,
    } = std::mem::take(&mut *resources.lock().expect("resources"));
    if let Some(registry) = registry
        && tokio::time::timeout(TEARDOWN_TIMEOUT, registry.shutdown())
            .await
            .is_err()
    {
        tracing::warn!("tool teardown timed out");
    }
    if let Some(skills) = skills {
        let _ = tokio::task::spawn_blocking(move || skills.teardown()).await;
    }
    if let Some(stores) = memory {
        match Arc::try_unwrap(stores) {
            Ok(stores) => {
                let report = stores.teardown(loop_clean).await;
                tracing::info!(
                    final_sync = report.finish.is_some(),
                    finish_timed_out = report.finish_timed_out,
                    flush_timed_out = report.flush_timed_out,
                    "memory stores flushed and removed"
                );
                if report.finish_timed_out || report.flush_timed_out {
                    tracing::warn!(
                        "memory teardown hit its 30 s bound: some local edits may not have reached the server"
                    );
                }
            }
            Err(_) => tracing::error!(
                "memory stores still in use at teardown; not flushed (local edits since the last sync are lost)"
            ),
        }
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
