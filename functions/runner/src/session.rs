//! The session tool loop (spec control-plane §11).
//!
//! Open the SSE stream first, then list the whole history (paginated) and reconcile,
//! then follow the stream; dedupe by event id; answer only calls whose name this
//! runner owns (others stay pending for their owner); the result type matches the
//! call type; `evaluated_permission: ask` waits for a `user.tool_confirmation`;
//! calls run one at a time in arrival order under the registry's 150 s deadline;
//! results are posted with retries inside the lease-TTL window; the stream reconnects
//! with a 0.5 s → 10 s backoff; an `end_turn` idle followed by `max_idle` of quiet
//! ends the loop.
//!
//! Deliberate improvements over the reference (each covered by tests):
//! 1. **At-most-once execution.** Every computed result is cached by tool-use id. A
//!    call whose result post failed is re-posted from the cache after the next
//!    reconnect, never re-run (reference bug anthropic-sdk-python#1749).
//! 2. **A failed history list forces a reconnect.** The reference logs the failure
//!    and keeps waiting on the open stream, which can stall for minutes with calls
//!    unanswered; here the stream is dropped and the reconnect path lists again.
//! 3. **Lease loss stops everything at once.** The loop runs inside the runner's
//!    select on the lease; when the lease ends, this future and the running tool's
//!    task are dropped (the bash tool kills its process group on drop), so nothing
//!    more is posted to a session this runner no longer holds.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use cma_shared::ControlPlane;
use cma_shared::client::{EventStream, ListEventsParams, Order};
use cma_shared::error::{ApiError, ErrorKind};
use cma_shared::retry::{SseBackoff, result_post_delay};
use cma_shared::types::{EventKind, OutgoingEvent, SessionEvent, ToolCall};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::lease::LeaseStatus;
use crate::tools::ToolRegistry;

/// Result-post window when no heartbeat has reported a TTL yet (spec §11.7).
pub const DEFAULT_POST_WINDOW: Duration = Duration::from_secs(300);

/// Why the loop returned.
#[derive(Debug)]
pub enum LoopEnd {
    /// `max_idle` of quiet after an `end_turn` idle.
    Idle,
    /// `session.status_terminated` seen.
    Terminated,
    /// `session.deleted` seen.
    Deleted,
    /// A non-retryable error on the stream or the history list (401, 403, 404, ...).
    Fatal(Box<ApiError>),
}

/// Observer for tool activity (memory sync hooks, metrics, tests).
#[async_trait::async_trait]
pub trait LoopHooks: Send + Sync {
    /// Awaited after each routed call was dispatched (executed, denied or unowned),
    /// before the next call starts (tools spec §10.7: the memory sync runs here).
    async fn after_call(&self) {}
}

struct NoHooks;
impl LoopHooks for NoHooks {}

/// A task that is aborted when its handle is dropped.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

#[derive(Debug, Clone)]
struct Job {
    call: ToolCall,
    custom: bool,
    gated: bool,
}

#[derive(Debug)]
enum PostOutcome {
    Posted,
    /// Gave up (window exhausted or non-retryable); stays unanswered, result cached.
    Failed,
    /// A re-post was refused with a 4xx: the earlier attempt most likely landed.
    ProbablyAnswered,
    /// Not posted because the call's thread terminated while it ran.
    Dropped,
}

struct JobDone {
    id: String,
    result: Option<OutgoingEvent>,
    outcome: PostOutcome,
}

/// The tool loop of one session.
pub struct ToolLoop {
    client: ControlPlane,
    session_id: String,
    registry: ToolRegistry,
    custom_tools: HashSet<String>,
    lease: watch::Receiver<LeaseStatus>,
    max_idle: Option<Duration>,
    hooks: Arc<dyn LoopHooks>,
    /// A call was dispatched since the hooks last ran.
    hook_due: bool,

    seen: HashSet<String>,
    answered: HashSet<String>,
    verdicts: HashMap<String, String>,
    terminated_threads: HashSet<String>,
    held: Vec<(ToolCall, bool)>,
    queue: VecDeque<Job>,
    in_flight: HashSet<String>,
    cache: HashMap<String, OutgoingEvent>,
    unowned_logged: HashSet<String>,
    running: Option<AbortOnDrop<JobDone>>,
    running_gated: bool,
    idle_armed_at: Option<Instant>,
    arm_deferred: bool,
    /// Shared with running jobs: ids answered while they ran.
    threads_dead: Arc<std::sync::Mutex<HashSet<String>>>,
    executions: u64,
}

impl ToolLoop {
    pub fn new(
        client: ControlPlane,
        session_id: impl Into<String>,
        registry: ToolRegistry,
        lease: watch::Receiver<LeaseStatus>,
        max_idle: Option<Duration>,
    ) -> Self {
        Self {
            client,
            session_id: session_id.into(),
            registry,
            custom_tools: HashSet::new(),
            lease,
            max_idle,
            hooks: Arc::new(NoHooks),
            hook_due: false,
            seen: HashSet::new(),
            answered: HashSet::new(),
            verdicts: HashMap::new(),
            terminated_threads: HashSet::new(),
            held: Vec::new(),
            queue: VecDeque::new(),
            in_flight: HashSet::new(),
            cache: HashMap::new(),
            unowned_logged: HashSet::new(),
            running: None,
            running_gated: false,
            idle_armed_at: None,
            arm_deferred: false,
            threads_dead: Arc::default(),
            executions: 0,
        }
    }

    pub fn with_hooks(mut self, hooks: Arc<dyn LoopHooks>) -> Self {
        self.hooks = hooks;
        self
    }

    /// Number of tool executions started (not re-posts).
    pub fn executions(&self) -> u64 {
        self.executions
    }

    /// Run until idle exit, termination or a fatal error.
    pub async fn run(&mut self) -> LoopEnd {
        let mut backoff = SseBackoff::default();
        let mut stream: Option<EventStream> = None;
        let mut reconnect_at = Some(Instant::now());
        loop {
            if std::mem::take(&mut self.hook_due) {
                self.hooks.after_call().await;
            }
            self.start_next_job();
            let idle_deadline = match (self.idle_armed_at, self.max_idle) {
                (Some(t), Some(max)) => Some(t + max),
                _ => None,
            };
            tokio::select! {
                done = async { self.running.as_mut().expect("guarded").await }, if self.running.is_some() => {
                    self.running = None;
                    match done {
                        Ok(done) => self.job_finished(done),
                        Err(e) => tracing::error!(error = %e, "tool job panicked"),
                    }
                }
                ev = async { stream.as_mut().expect("guarded").next().await }, if stream.is_some() => {
                    match ev {
                        Some(Ok(ev)) => {
                            backoff.reset();
                            if let Some(end) = self.on_event(ev) {
                                return end;
                            }
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "session stream failed; reconnecting");
                            stream = None;
                            reconnect_at = Some(Instant::now() + backoff.next_delay());
                        }
                        None => {
                            tracing::info!("session stream closed by the server; reconnecting");
                            stream = None;
                            reconnect_at = Some(Instant::now() + backoff.next_delay());
                        }
                    }
                }
                _ = sleep_until_opt(reconnect_at), if stream.is_none() => {
                    reconnect_at = None;
                    match self.connect().await {
                        Ok(Some(s)) => stream = Some(s),
                        Ok(None) => return LoopEnd::Terminated,
                        Err(e) if e.kind == ErrorKind::Permanent => {
                            tracing::error!(error = %e, "session stream or history refused; ending the tool loop");
                            return LoopEnd::Fatal(Box::new(e));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "connect/reconcile failed; reconnecting");
                            reconnect_at = Some(Instant::now() + backoff.next_delay());
                        }
                    }
                }
                _ = sleep_until_opt(idle_deadline), if idle_deadline.is_some() => {
                    tracing::info!(max_idle_s = self.max_idle.map(|d| d.as_secs_f64()), "session idle at end_turn; ending the tool loop");
                    return LoopEnd::Idle;
                }
            }
        }
    }

    /// Open the stream first, then reconcile against the full history. `Ok(None)`
    /// when the history shows the session terminated or deleted.
    async fn connect(&mut self) -> Result<Option<EventStream>, ApiError> {
        let stream = self.client.stream_events(&self.session_id).await?;
        let params = ListEventsParams {
            limit: Some(1000),
            order: Some(Order::Asc),
            ..ListEventsParams::default()
        };
        // Improvement 2: a failed list drops the fresh stream and reconnects.
        let history = self
            .client
            .list_all_events(&self.session_id, &params)
            .await?;
        if self.reconcile(history) {
            return Ok(None);
        }
        Ok(Some(stream))
    }

    /// Spec §11.6 reconcile. Returns true when the history ends the session.
    fn reconcile(&mut self, history: Vec<SessionEvent>) -> bool {
        let mut calls = Vec::new();
        let mut last_ends_turn = false;
        for ev in &history {
            match &ev.kind {
                EventKind::AgentToolUse(c) => calls.push((c.clone(), false)),
                EventKind::AgentCustomToolUse(c) => calls.push((c.clone(), true)),
                EventKind::UserToolResult { tool_use_id } => {
                    self.answered.insert(tool_use_id.clone());
                }
                EventKind::UserCustomToolResult { custom_tool_use_id } => {
                    self.answered.insert(custom_tool_use_id.clone());
                }
                EventKind::ThreadStatusTerminated { session_thread_id } => {
                    self.terminated_threads.insert(session_thread_id.clone());
                }
                EventKind::StatusTerminated | EventKind::SessionDeleted => return true,
                _ => {}
            }
            if !ev.is_idle_neutral() {
                last_ends_turn = ev.ends_turn();
            }
        }
        for ev in &history {
            if let EventKind::UserToolConfirmation {
                tool_use_id,
                result,
                ..
            } = &ev.kind
                && !self.answered.contains(tool_use_id)
            {
                self.verdicts.insert(tool_use_id.clone(), result.clone());
            }
        }
        self.idle_armed_at = None;
        self.arm_deferred = false;
        for (call, custom) in calls {
            self.seen.insert(call.id.clone());
            if !self.answered.contains(&call.id) {
                self.route(call, custom);
            }
        }
        self.apply_verdicts();
        self.held.retain(|(c, _)| !self.answered.contains(&c.id));
        if last_ends_turn && self.queue.is_empty() && self.running.is_none() {
            self.request_arm();
        }
        tracing::debug!(
            events = history.len(),
            queued = self.queue.len(),
            held = self.held.len(),
            "reconciled"
        );
        false
    }

    /// Handle one live event. `Some` ends the loop.
    fn on_event(&mut self, ev: SessionEvent) -> Option<LoopEnd> {
        if !ev.is_idle_neutral() {
            if ev.ends_turn() {
                self.request_arm();
            } else {
                self.idle_armed_at = None;
                self.arm_deferred = false;
            }
        }
        match ev.kind {
            EventKind::AgentToolUse(c) if self.seen.insert(c.id.clone()) => self.route(c, false),
            EventKind::AgentCustomToolUse(c) if self.seen.insert(c.id.clone()) => {
                self.route(c, true)
            }
            EventKind::UserToolResult { tool_use_id: id }
            | EventKind::UserCustomToolResult {
                custom_tool_use_id: id,
            } => {
                let before = self.held.len();
                self.held.retain(|(c, _)| c.id != id);
                if self.held.len() != before {
                    self.in_flight.remove(&id);
                }
                self.answered.insert(id);
                self.maybe_arm_after_gates();
            }
            EventKind::UserToolConfirmation {
                tool_use_id,
                result,
                ..
            } if !self.answered.contains(&tool_use_id) => {
                self.verdicts.insert(tool_use_id, result);
                self.apply_verdicts();
                self.maybe_arm_after_gates();
            }
            EventKind::ThreadStatusTerminated { session_thread_id } => {
                let (dropped, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
                    .into_iter()
                    .partition(|(c, _)| {
                        c.session_thread_id.as_deref() == Some(session_thread_id.as_str())
                    });
                self.held = kept;
                for (c, _) in dropped {
                    self.in_flight.remove(&c.id);
                }
                self.threads_dead
                    .lock()
                    .expect("lock")
                    .insert(session_thread_id.clone());
                self.terminated_threads.insert(session_thread_id);
                self.maybe_arm_after_gates();
            }
            EventKind::StatusTerminated => return Some(LoopEnd::Terminated),
            EventKind::SessionDeleted => return Some(LoopEnd::Deleted),
            EventKind::Malformed { ref reason } => {
                tracing::warn!(event_type = %ev.event_type, reason = %reason, "ignoring malformed session event");
            }
            _ => {}
        }
        None
    }

    fn thread_terminated(&self, call: &ToolCall) -> bool {
        call.session_thread_id
            .as_ref()
            .is_some_and(|t| self.terminated_threads.contains(t))
    }

    /// Spec §11.3/§11.4 routing.
    fn route(&mut self, call: ToolCall, custom: bool) {
        if self.answered.contains(&call.id)
            || self.in_flight.contains(&call.id)
            || self.thread_terminated(&call)
        {
            return;
        }
        let owned = if custom {
            self.custom_tools.contains(&call.name)
        } else {
            self.registry.owns(&call.name)
        };
        if !owned {
            if self.unowned_logged.insert(call.id.clone()) {
                tracing::info!(tool = %call.name, tool_use_id = %call.id, custom, "tool not owned by this runner; left pending for its owner");
                self.hook_due = true;
            }
            return;
        }
        match call.evaluated_permission.as_deref() {
            Some("deny") => {
                tracing::info!(tool = %call.name, tool_use_id = %call.id, "call denied by policy; not executed");
                self.answered.insert(call.id);
                self.hook_due = true;
            }
            None | Some("allow") => self.enqueue(call, custom, false),
            _ => match self.verdicts.get(&call.id).map(String::as_str) {
                Some("allow") => self.enqueue(call, custom, true),
                Some(_) => {
                    tracing::info!(tool = %call.name, tool_use_id = %call.id, "confirmation denied; not executed");
                    self.answered.insert(call.id);
                    self.hook_due = true;
                }
                None => {
                    tracing::info!(tool = %call.name, tool_use_id = %call.id, "waiting for user confirmation");
                    self.in_flight.insert(call.id.clone());
                    self.held.push((call, custom));
                }
            },
        }
    }

    fn enqueue(&mut self, call: ToolCall, custom: bool, gated: bool) {
        self.in_flight.insert(call.id.clone());
        self.queue.push_back(Job {
            call,
            custom,
            gated,
        });
    }

    /// Release held calls whose verdict arrived.
    fn apply_verdicts(&mut self) {
        let held = std::mem::take(&mut self.held);
        for (call, custom) in held {
            match self.verdicts.get(&call.id).map(String::as_str) {
                None => self.held.push((call, custom)),
                Some("allow") => {
                    self.queue.push_back(Job {
                        call,
                        custom,
                        gated: true,
                    });
                }
                Some(_) => {
                    tracing::info!(tool = %call.name, tool_use_id = %call.id, "confirmation denied; not executed");
                    self.in_flight.remove(&call.id);
                    self.answered.insert(call.id);
                    self.hook_due = true;
                }
            }
        }
    }

    fn gates_open(&self) -> bool {
        !self.held.is_empty() || self.running_gated || self.queue.iter().any(|j| j.gated)
    }

    fn request_arm(&mut self) {
        if self.gates_open() {
            self.arm_deferred = true;
        } else {
            self.idle_armed_at = Some(Instant::now());
        }
    }

    fn maybe_arm_after_gates(&mut self) {
        if self.arm_deferred && !self.gates_open() {
            self.arm_deferred = false;
            self.idle_armed_at = Some(Instant::now());
        }
    }

    fn start_next_job(&mut self) {
        while self.running.is_none() {
            let Some(job) = self.queue.pop_front() else {
                return;
            };
            let id = job.call.id.clone();
            if self.answered.contains(&id) || self.thread_terminated(&job.call) {
                self.in_flight.remove(&id);
                continue;
            }
            let cached = self.cache.get(&id).cloned();
            if cached.is_none() {
                self.executions += 1;
            }
            self.running_gated = job.gated;
            let task = JobTask {
                client: self.client.clone(),
                session_id: self.session_id.clone(),
                registry: self.registry.clone(),
                lease: self.lease.clone(),
                threads_dead: self.threads_dead.clone(),
            };
            let span = tracing::info_span!("tool_call", tool = %job.call.name, tool_use_id = %id);
            self.running = Some(AbortOnDrop(tokio::spawn(
                task.run(job, cached).instrument(span),
            )));
        }
    }

    fn job_finished(&mut self, done: JobDone) {
        self.in_flight.remove(&done.id);
        self.running_gated = false;
        if let Some(result) = done.result {
            self.cache.insert(done.id.clone(), result);
        }
        match done.outcome {
            PostOutcome::Posted | PostOutcome::ProbablyAnswered | PostOutcome::Dropped => {
                self.answered.insert(done.id.clone());
            }
            PostOutcome::Failed => {
                // Stays unanswered; the next reconcile re-posts the cached result.
            }
        }
        self.hook_due = true;
        self.maybe_arm_after_gates();
    }
}

struct JobTask {
    client: ControlPlane,
    session_id: String,
    registry: ToolRegistry,
    lease: watch::Receiver<LeaseStatus>,
    threads_dead: Arc<std::sync::Mutex<HashSet<String>>>,
}

impl JobTask {
    async fn run(self, job: Job, cached: Option<OutgoingEvent>) -> JobDone {
        let id = job.call.id.clone();
        let (result, reposting) = match cached {
            Some(r) => {
                tracing::info!("re-posting the cached result (not re-running the tool)");
                (r, true)
            }
            None => {
                let started = std::time::Instant::now();
                let out = self
                    .registry
                    .call(&job.call.name, &job.call.input)
                    .await
                    .unwrap_or_else(|| crate::tools::ToolOutput::err("tool not available"));
                tracing::info!(
                    duration_ms = started.elapsed().as_millis() as u64,
                    is_error = out.is_error,
                    "tool call finished"
                );
                (
                    OutgoingEvent::result_for(job.custom, &id, out.is_error, out.content),
                    false,
                )
            }
        };
        let thread_dead = job
            .call
            .session_thread_id
            .as_ref()
            .is_some_and(|t| self.threads_dead.lock().expect("lock").contains(t));
        if thread_dead {
            tracing::info!("thread terminated while the tool ran; result not posted");
            return JobDone {
                id,
                result: Some(result),
                outcome: PostOutcome::Dropped,
            };
        }
        let outcome = self.post(&result, reposting).await;
        JobDone {
            id,
            result: Some(result),
            outcome,
        }
    }

    /// Post with retries inside the lease-TTL window (spec §11.7).
    async fn post(&self, result: &OutgoingEvent, reposting: bool) -> PostOutcome {
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self
                .client
                .send_events(&self.session_id, std::slice::from_ref(result))
                .await
            {
                Ok(_) => return PostOutcome::Posted,
                Err(e) if e.kind != ErrorKind::Transient => {
                    if reposting || attempt > 1 {
                        tracing::info!(error = %e, "re-post refused; treating the call as already answered");
                        return PostOutcome::ProbablyAnswered;
                    }
                    tracing::error!(error = %e, "result post rejected; the call stays unanswered");
                    return PostOutcome::Failed;
                }
                Err(e) => {
                    let window = self.lease.borrow().ttl.unwrap_or(DEFAULT_POST_WINDOW);
                    let elapsed = started.elapsed();
                    if elapsed >= window {
                        tracing::warn!(error = %e, attempts = attempt, "result post failed for a whole lease TTL; will re-post after reconnect");
                        return PostOutcome::Failed;
                    }
                    let delay =
                        result_post_delay(attempt, window - elapsed, self.client.jitter().as_ref());
                    tracing::warn!(error = %e, attempt, delay_ms = delay.as_millis() as u64, "result post failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
