//! Work items, the queue and the lease (spec §4, §5, §6).
//!
//! Choices for the questions the spec leaves open (§17):
//! - **Ack of an item that is no longer queued** (starting/active/stopping/stopped)
//!   answers `409 conflict_error` (§17 item 3).
//! - **Acked but never heartbeated** items lapse like any other lease: `ttl_seconds`
//!   after the ack they go back to `queued` (§17 items 1 and 2).
//! - **Lapsed leases** go back to `queued` (offerable again, same secret, token reset
//!   to `NO_HEARTBEAT`), so any later heartbeat presenting the old token gets 412.
//! - **`stopping` items never lapse**; they wait for a force stop.
//! - **Heartbeat on a `queued` item** presenting `NO_HEARTBEAT` claims it (implicit
//!   ack, state → active) so tests may start a runner straight from
//!   `create_session` without draining; any other token gets 412.
//! - **Graceful stop** (`{}` / `force:false`) moves any non-stopped item to
//!   `stopping` and removes it from the queue; `force:true` → `stopped`;
//!   stopping an already stopped item → 409.
//! - **`desired_ttl_seconds`** is validated (positive integer) but ignored: the
//!   effective TTL is always `FakeConfig::lease_ttl_seconds`.
//! - **Poll 404 (injected)** consumes the next offerable item: it becomes `stopped`.

use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::errors::ApiError;
use super::state::{State, TokenScope};
use super::util::{new_id, rfc3339_micros_offset, rfc3339_secs, unique_micros};

/// The heartbeat token of an item that has never been heartbeated.
pub(crate) const NO_HEARTBEAT: &str = "NO_HEARTBEAT";

/// How long a worker id counts toward `workers_polling`.
const WORKER_WINDOW: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WorkState {
    Queued,
    Starting,
    Active,
    Stopping,
    Stopped,
}

impl WorkState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            WorkState::Queued => "queued",
            WorkState::Starting => "starting",
            WorkState::Active => "active",
            WorkState::Stopping => "stopping",
            WorkState::Stopped => "stopped",
        }
    }
}

pub(crate) struct WorkItem {
    pub(crate) id: String,
    pub(crate) data_type: &'static str,
    pub(crate) data_id: String,
    pub(crate) state: WorkState,
    pub(crate) secret: String,
    pub(crate) token: String,
    pub(crate) metadata: serde_json::Map<String, Value>,
    pub(crate) created_at: SystemTime,
    pub(crate) acknowledged_at: Option<SystemTime>,
    pub(crate) started_at: Option<SystemTime>,
    pub(crate) latest_heartbeat_at: Option<SystemTime>,
    pub(crate) stop_requested_at: Option<SystemTime>,
    pub(crate) stopped_at: Option<SystemTime>,
    /// Polled but not acked since.
    pub(crate) pending_since: Option<Instant>,
    /// Current heartbeat token; `None` = `NO_HEARTBEAT`.
    pub(crate) last_heartbeat: Option<String>,
    /// When the current lease lapses (set by ack and by extending heartbeats).
    pub(crate) lease_deadline: Option<Instant>,
    /// Successful heartbeats of the current lease holder.
    pub(crate) beats: u32,
    pub(crate) stop_calls: Vec<Value>,
}

fn ts(t: Option<SystemTime>) -> Value {
    t.map_or(Value::Null, |t| Value::String(rfc3339_secs(t)))
}

impl WorkItem {
    pub(crate) fn to_json(&self, environment_id: &str, with_secret: bool) -> Value {
        json!({
            "type": "work",
            "id": self.id,
            "environment_id": environment_id,
            "state": self.state.as_str(),
            "data": { "type": self.data_type, "id": self.data_id },
            "secret": if with_secret { Value::String(self.secret.clone()) } else { Value::Null },
            "metadata": self.metadata,
            "created_at": rfc3339_secs(self.created_at),
            "acknowledged_at": ts(self.acknowledged_at),
            "started_at": ts(self.started_at),
            "latest_heartbeat_at": ts(self.latest_heartbeat_at),
            "stop_requested_at": ts(self.stop_requested_at),
            "stopped_at": ts(self.stopped_at),
        })
    }

    fn is_offerable(&self, now: Instant, reclaim: Duration) -> bool {
        self.state == WorkState::Queued
            && self
                .pending_since
                .is_none_or(|p| now.duration_since(p) >= reclaim)
    }

    /// The lease lapsed (or a test forced it): back to the queue.
    pub(crate) fn requeue(&mut self) {
        self.state = WorkState::Queued;
        self.pending_since = None;
        self.acknowledged_at = None;
        self.started_at = None;
        self.latest_heartbeat_at = None;
        self.last_heartbeat = None;
        self.lease_deadline = None;
        self.beats = 0;
    }

    fn current_token(&self) -> &str {
        self.last_heartbeat.as_deref().unwrap_or(NO_HEARTBEAT)
    }

    fn remove_from_queue(&mut self) {
        self.pending_since = None;
    }
}

/// Opaque page cursor: base64url of `<prefix>:<index>`.
pub(crate) fn encode_cursor(prefix: &str, idx: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("{prefix}:{idx}"))
}

pub(crate) fn decode_cursor(prefix: &str, page: &str) -> Result<usize, ApiError> {
    URL_SAFE_NO_PAD
        .decode(page)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.strip_prefix(prefix)
                .and_then(|r| r.strip_prefix(':'))
                .and_then(|n| n.parse().ok())
        })
        .ok_or_else(|| ApiError::invalid("invalid page cursor"))
}

impl State {
    /// Creates a queued work item; returns its id.
    pub(crate) fn create_work(&mut self, data_type: &'static str, data_id: String) -> String {
        let id = new_id("work");
        let (secret, token) = self.new_secret();
        self.tokens.insert(
            token.clone(),
            TokenScope {
                work_id: id.clone(),
                session_id: (data_type == "session").then(|| data_id.clone()),
            },
        );
        let item = WorkItem {
            id: id.clone(),
            data_type,
            data_id,
            state: WorkState::Queued,
            secret,
            token,
            metadata: serde_json::Map::new(),
            created_at: SystemTime::now(),
            acknowledged_at: None,
            started_at: None,
            latest_heartbeat_at: None,
            stop_requested_at: None,
            stopped_at: None,
            pending_since: None,
            last_heartbeat: None,
            lease_deadline: None,
            beats: 0,
            stop_calls: Vec::new(),
        };
        self.work_index.insert(id.clone(), self.work.len());
        self.work.push(item);
        id
    }

    pub(crate) fn item(&self, id: &str) -> Option<&WorkItem> {
        self.work_index.get(id).map(|&i| &self.work[i])
    }

    pub(crate) fn item_mut(&mut self, id: &str) -> Option<&mut WorkItem> {
        self.work_index.get(id).map(|&i| &mut self.work[i])
    }

    fn item_or_404(&mut self, id: &str) -> Result<&mut WorkItem, ApiError> {
        self.item_mut(id)
            .ok_or_else(|| ApiError::not_found(format!("work item {id} not found")))
    }

    /// Lapses every lease whose deadline passed. Returns whether any item was re-queued.
    pub(crate) fn expire(&mut self, now: Instant) -> bool {
        let mut any = false;
        for item in &mut self.work {
            if matches!(item.state, WorkState::Starting | WorkState::Active)
                && item.lease_deadline.is_some_and(|d| now >= d)
            {
                item.requeue();
                any = true;
            }
        }
        any
    }

    pub(crate) fn note_worker(&mut self, worker_id: Option<&str>, now: Instant) {
        if let Some(w) = worker_id.filter(|w| !w.is_empty()) {
            self.workers.insert(w.to_string(), now);
        }
    }

    /// Hands out the oldest offerable item (it becomes pending), if any.
    pub(crate) fn poll(&mut self, reclaim: Duration, now: Instant) -> Option<Value> {
        let env = self.environment_id.clone();
        let item = self
            .work
            .iter_mut()
            .find(|i| i.is_offerable(now, reclaim))?;
        item.pending_since = Some(now);
        Some(item.to_json(&env, true))
    }

    /// Injected poll 404: the next offerable item is lost (stopped).
    pub(crate) fn consume_next(&mut self, now: Instant) {
        if let Some(item) = self
            .work
            .iter_mut()
            .find(|i| i.is_offerable(now, Duration::from_millis(5000)))
        {
            item.remove_from_queue();
            item.state = WorkState::Stopped;
            item.stopped_at = Some(SystemTime::now());
        }
    }

    pub(crate) fn ack(&mut self, id: &str) -> Result<Value, ApiError> {
        let ttl = Duration::from_secs(self.ttl_seconds);
        let env = self.environment_id.clone();
        let item = self.item_or_404(id)?;
        if item.state != WorkState::Queued {
            // §17 item 3 leaves ack-after-ack open; we answer 409.
            return Err(ApiError::conflict(format!(
                "work item {id} is already {}",
                item.state.as_str()
            )));
        }
        item.remove_from_queue();
        item.state = WorkState::Starting;
        item.acknowledged_at = Some(SystemTime::now());
        item.lease_deadline = Some(Instant::now() + ttl);
        Ok(item.to_json(&env, false))
    }

    /// The documented 412 body for an item.
    pub(crate) fn precondition_failed(&self, id: &str) -> ApiError {
        let (state, last) = match self.item(id) {
            Some(i) => (i.state.as_str(), i.last_heartbeat.clone()),
            None => ("queued", None),
        };
        ApiError::new(
            412,
            "invalid_request_error",
            "expected_last_heartbeat does not match the current heartbeat",
        )
        .with_details(json!({
            "error_code": "heartbeat_precondition_failed",
            "current_state": {
                "state": state,
                "ttl_seconds": self.ttl_seconds,
                "last_heartbeat": last,
                "lease_extended": false,
            }
        }))
    }

    pub(crate) fn heartbeat(&mut self, id: &str, expected: &str) -> Result<Value, ApiError> {
        let ttl_secs = self.ttl_seconds;
        let ttl = Duration::from_secs(ttl_secs);
        let stopping_after = self.faults.faults.stopping_after_heartbeats;
        let not_extended_after = self.faults.faults.lease_extended_false_after;
        let item = self.item_or_404(id)?;
        let mismatch = match item.state {
            WorkState::Stopping | WorkState::Stopped => false,
            WorkState::Queued => !(expected == NO_HEARTBEAT && item.last_heartbeat.is_none()),
            WorkState::Starting | WorkState::Active => expected != item.current_token(),
        };
        if mismatch {
            return Err(self.precondition_failed(id));
        }
        let item = self.item_mut(id).expect("exists");
        if item.state == WorkState::Stopped {
            return Ok(json!({
                "type": "work_heartbeat",
                "last_heartbeat": item.last_heartbeat.clone().unwrap_or_default(),
                "lease_extended": false,
                "state": "stopped",
                "ttl_seconds": ttl_secs,
            }));
        }
        let now = SystemTime::now();
        if item.state == WorkState::Queued {
            // Implicit claim (see module docs).
            item.remove_from_queue();
            item.acknowledged_at = Some(now);
            item.state = WorkState::Starting;
        }
        let beats_before = item.beats;
        item.beats += 1;
        if item.state == WorkState::Starting {
            item.state = WorkState::Active;
            item.started_at = Some(now);
        }
        if item.state == WorkState::Active && stopping_after.is_some_and(|k| beats_before >= k) {
            item.state = WorkState::Stopping;
            item.stop_requested_at = Some(now);
        }
        let extended = not_extended_after.is_none_or(|k| beats_before < k);
        let token = rfc3339_micros_offset(unique_micros());
        item.last_heartbeat = Some(token.clone());
        item.latest_heartbeat_at = Some(now);
        if extended {
            item.lease_deadline = Some(Instant::now() + ttl);
        }
        Ok(json!({
            "type": "work_heartbeat",
            "last_heartbeat": token,
            "lease_extended": extended,
            "state": item.state.as_str(),
            "ttl_seconds": ttl_secs,
        }))
    }

    pub(crate) fn stop(&mut self, id: &str, force: bool, body: Value) -> Result<Value, ApiError> {
        let env = self.environment_id.clone();
        let item = self.item_or_404(id)?;
        item.stop_calls.push(body);
        if item.state == WorkState::Stopped {
            return Err(ApiError::conflict(format!(
                "work item {id} is already stopped"
            )));
        }
        let now = SystemTime::now();
        item.remove_from_queue();
        if force {
            item.state = WorkState::Stopped;
            item.stopped_at = Some(now);
        } else {
            item.state = WorkState::Stopping;
            if item.stop_requested_at.is_none() {
                item.stop_requested_at = Some(now);
            }
        }
        Ok(item.to_json(&env, false))
    }

    /// Graceful stop requested out of band (test helper).
    pub(crate) fn request_stop(&mut self, id: &str) {
        if let Some(item) = self.item_mut(id)
            && item.state != WorkState::Stopped
        {
            item.remove_from_queue();
            item.state = WorkState::Stopping;
            item.stop_requested_at.get_or_insert_with(SystemTime::now);
        }
    }

    pub(crate) fn list_work(&self, limit: usize, start: usize) -> Value {
        let data: Vec<Value> = self
            .work
            .iter()
            .skip(start)
            .take(limit)
            .map(|i| i.to_json(&self.environment_id, false))
            .collect();
        let end = start + data.len();
        let next = (end < self.work.len()).then(|| encode_cursor("work", end));
        json!({ "data": data, "next_page": next })
    }

    pub(crate) fn stats(&self, now: Instant) -> Value {
        let queued = self.work.iter().filter(|i| i.state == WorkState::Queued);
        let depth = queued.clone().filter(|i| i.pending_since.is_none()).count();
        let pending = queued.clone().filter(|i| i.pending_since.is_some()).count();
        let oldest = queued.map(|i| i.created_at).min();
        let workers = self
            .workers
            .values()
            .filter(|t| now.duration_since(**t) <= WORKER_WINDOW)
            .count();
        json!({
            "type": "work_queue_stats",
            "depth": depth,
            "pending": pending,
            "oldest_queued_at": oldest.map(rfc3339_secs),
            "workers_polling": workers,
        })
    }
}
