//! Sessions, their event history and scripted tool calls (spec §10, §11).
//!
//! Every change to a history goes through [`Session::append`], which assigns
//! `id`/`processed_at`, updates the bookkeeping (status, open calls, threads)
//! and broadcasts to open streams under the state lock, so streams and lists
//! always agree.
//!
//! Open question §17 item 9 (duplicate result for an already answered call):
//! the fake answers `400 invalid_request_error` with
//! `details.error_code = "tool_use_already_answered"` and counts it in
//! `duplicate_results()`.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::errors::ApiError;
use super::util::{new_id, rfc3339_micros_z, rfc3339_secs, unique_micros};

/// Which event a scripted call is emitted as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// `agent.tool_use`, answered with `user.tool_result`.
    Builtin,
    /// `agent.custom_tool_use`, answered with `user.custom_tool_result`.
    Custom,
}

/// One scripted tool call.
#[derive(Clone, Debug)]
pub struct ScriptStep {
    /// Tool name (`bash`, `read`, … or a custom tool name).
    pub name: String,
    /// Tool input object.
    pub input: Value,
    /// Builtin or custom call.
    pub kind: CallKind,
    /// `evaluated_permission`: `None`, `"allow"`, `"ask"` or `"deny"`.
    pub permission: Option<String>,
    /// `session_thread_id` of the call, if any.
    pub thread_id: Option<String>,
}

impl ScriptStep {
    /// A built-in toolset call (`agent.tool_use`).
    pub fn tool(name: impl Into<String>, input: Value) -> Self {
        ScriptStep {
            name: name.into(),
            input,
            kind: CallKind::Builtin,
            permission: None,
            thread_id: None,
        }
    }

    /// A custom tool call (`agent.custom_tool_use`).
    pub fn custom(name: impl Into<String>, input: Value) -> Self {
        ScriptStep {
            kind: CallKind::Custom,
            ..Self::tool(name, input)
        }
    }

    /// Sets `evaluated_permission` (`allow`, `ask`, `deny`).
    pub fn with_permission(mut self, p: &str) -> Self {
        self.permission = Some(p.to_string());
        self
    }

    /// Sets `session_thread_id`.
    pub fn with_thread(mut self, thread_id: &str) -> Self {
        self.thread_id = Some(thread_id.to_string());
        self
    }
}

/// What a scripted session looks like.
#[derive(Clone, Debug, Default)]
pub struct SessionScript {
    /// Calls emitted one after the other; each waits for its answer.
    pub steps: Vec<ScriptStep>,
    /// `session.agent`; `Value::Null` means the default agent
    /// (`{"skills":[],"tools":[{"type":"agent_toolset_20260401",…}]}`).
    pub agent: Value,
    /// `session.resources`.
    pub resources: Vec<Value>,
    /// Initial `status`; default `"running"`.
    pub initial_status: Option<String>,
}

impl SessionScript {
    /// A script with these steps and defaults for everything else.
    pub fn new(steps: Vec<ScriptStep>) -> Self {
        SessionScript {
            steps,
            ..Default::default()
        }
    }

    /// Appends `{"type":"custom","skill_id","version"}` to `agent.skills`
    /// (starting from [`default_agent`] if `agent` is still `Null`).
    pub fn with_skill(self, skill_id: &str, version: &str) -> Self {
        self.with_skill_ref("custom", skill_id, version)
    }

    /// Appends `{"type":kind,"skill_id","version"}` to `agent.skills`
    /// (`kind` = `custom` | `anthropic`).
    pub fn with_skill_ref(mut self, kind: &str, skill_id: &str, version: &str) -> Self {
        if self.agent.is_null() {
            self.agent = default_agent();
        }
        if !self.agent["skills"].is_array() {
            self.agent["skills"] = json!([]);
        }
        if let Some(skills) = self.agent["skills"].as_array_mut() {
            skills.push(json!({ "type": kind, "skill_id": skill_id, "version": version }));
        }
        self
    }

    /// Appends a `memory_store` resource:
    /// `{"type":"memory_store","memory_store_id","access","mount_path"?,"name"}`
    /// (`mount_path` is omitted when `None`; `access` = `read_write` | `read_only`).
    pub fn with_memory_store(
        mut self,
        memory_store_id: &str,
        access: &str,
        mount_path: Option<&str>,
        name: &str,
    ) -> Self {
        let mut r = json!({
            "type": "memory_store",
            "memory_store_id": memory_store_id,
            "access": access,
            "name": name,
        });
        if let Some(m) = mount_path {
            r["mount_path"] = Value::String(m.to_string());
        }
        self.resources.push(r);
        self
    }

    /// Appends an arbitrary `resources[]` entry (e.g. `file`, `github_repository`).
    pub fn with_resource(mut self, resource: Value) -> Self {
        self.resources.push(resource);
        self
    }
}

/// The default `session.agent` object.
pub fn default_agent() -> Value {
    json!({
        "skills": [],
        "tools": [ { "type": "agent_toolset_20260401", "configs": [], "default_config": {} } ]
    })
}

pub(crate) struct CallInfo {
    pub(crate) kind: CallKind,
    pub(crate) answered: bool,
}

pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) environment_id: String,
    pub(crate) status: String,
    pub(crate) agent: Value,
    pub(crate) resources: Vec<Value>,
    pub(crate) created_at: SystemTime,
    pub(crate) updated_at: SystemTime,
    pub(crate) history: Vec<Value>,
    pub(crate) tx: broadcast::Sender<Value>,
    pub(crate) deleted: bool,
    steps: Vec<ScriptStep>,
    next_step: usize,
    /// The scripted call currently waiting for its answer.
    current: Option<String>,
    pub(crate) finished: bool,
    pub(crate) calls: HashMap<String, CallInfo>,
    pub(crate) results: Vec<Value>,
    pub(crate) duplicates: usize,
    terminated_threads: HashSet<String>,
}

/// Filters and paging for the event list.
pub(crate) struct ListQuery {
    pub(crate) limit: usize,
    pub(crate) desc: bool,
    /// Position in the full history: next index (asc) or exclusive end (desc).
    pub(crate) cursor: Option<usize>,
    pub(crate) types: Vec<String>,
    /// `(op, value)` with op ∈ gt|gte|lt|lte, compared with `processed_at`.
    pub(crate) created: Vec<(String, String)>,
}

impl Session {
    pub(crate) fn new(id: String, environment_id: String, script: SessionScript) -> Self {
        let now = SystemTime::now();
        Session {
            id,
            environment_id,
            status: script.initial_status.unwrap_or_else(|| "running".into()),
            agent: if script.agent.is_null() {
                default_agent()
            } else {
                script.agent
            },
            resources: script.resources,
            created_at: now,
            updated_at: now,
            history: Vec::new(),
            tx: broadcast::channel(4096).0,
            deleted: false,
            steps: script.steps,
            next_step: 0,
            current: None,
            finished: false,
            calls: HashMap::new(),
            results: Vec::new(),
            duplicates: 0,
            terminated_threads: HashSet::new(),
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "type": "session",
            "id": self.id,
            "environment_id": self.environment_id,
            "status": self.status,
            "agent": self.agent,
            "resources": self.resources,
            "metadata": {},
            "title": null,
            "created_at": rfc3339_secs(self.created_at),
            "updated_at": rfc3339_secs(self.updated_at),
        })
    }

    /// Appends an event (assigning `id`/`processed_at` when absent), updates
    /// bookkeeping and broadcasts it. Returns the stored event.
    pub(crate) fn append(&mut self, mut event: Value) -> Value {
        if !event.is_object() {
            event = json!({ "type": "unknown", "value": event });
        }
        if event.get("id").and_then(Value::as_str).is_none() {
            event["id"] = Value::String(new_id("sevt"));
        }
        if event.get("processed_at").and_then(Value::as_str).is_none() {
            event["processed_at"] = Value::String(rfc3339_micros_z(unique_micros()));
        }
        let ty = event["type"].as_str().unwrap_or_default().to_string();
        let str_field = |k: &str| event.get(k).and_then(Value::as_str).map(str::to_string);
        match ty.as_str() {
            "agent.tool_use" | "agent.custom_tool_use" => {
                let id = str_field("id").expect("id set above");
                let kind = if ty == "agent.tool_use" {
                    CallKind::Builtin
                } else {
                    CallKind::Custom
                };
                self.calls.entry(id).or_insert(CallInfo {
                    kind,
                    answered: false,
                });
            }
            "user.tool_result" | "user.custom_tool_result" => {
                let key = if ty == "user.tool_result" {
                    "tool_use_id"
                } else {
                    "custom_tool_use_id"
                };
                if let Some(call) = str_field(key).and_then(|id| self.calls.get_mut(&id)) {
                    call.answered = true;
                }
            }
            "session.status_running" => self.status = "running".into(),
            "session.status_idle" => self.status = "idle".into(),
            "session.status_rescheduled" => self.status = "rescheduling".into(),
            "session.status_terminated" => self.status = "terminated".into(),
            "session.deleted" => self.deleted = true,
            "session.thread_status_terminated" => {
                if let Some(t) = str_field("session_thread_id") {
                    self.terminated_threads.insert(t);
                }
            }
            _ => {}
        }
        self.updated_at = SystemTime::now();
        self.history.push(event.clone());
        // No receivers is fine.
        let _ = self.tx.send(event.clone());
        event
    }

    fn append_type(&mut self, ty: &str) -> Value {
        self.append(json!({ "type": ty }))
    }

    /// Initial history: the user message, running, then the first call.
    pub(crate) fn start(&mut self) {
        self.append(json!({
            "type": "user.message",
            "content": [ { "type": "text", "text": "demo" } ]
        }));
        self.append_type("session.status_running");
        self.emit_next_step();
    }

    /// Emits the next scripted call (skipping terminated threads and
    /// resolving `deny` steps server-side), or ends the turn.
    fn emit_next_step(&mut self) {
        loop {
            let Some(step) = self.steps.get(self.next_step).cloned() else {
                if !self.finished {
                    self.append(json!({
                        "type": "agent.message",
                        "content": [ { "type": "text", "text": "Done." } ]
                    }));
                    self.append(json!({
                        "type": "session.status_idle",
                        "stop_reason": { "type": "end_turn" }
                    }));
                    self.finished = true;
                }
                return;
            };
            if step
                .thread_id
                .as_ref()
                .is_some_and(|t| self.terminated_threads.contains(t))
            {
                self.next_step += 1;
                continue;
            }
            let call_id = new_id("sevt");
            let mut ev = json!({
                "type": match step.kind {
                    CallKind::Builtin => "agent.tool_use",
                    CallKind::Custom => "agent.custom_tool_use",
                },
                "id": call_id,
                "name": step.name,
                "input": step.input,
            });
            if let Some(p) = &step.permission {
                ev["evaluated_permission"] = Value::String(p.clone());
            }
            if let Some(t) = &step.thread_id {
                ev["session_thread_id"] = Value::String(t.clone());
            }
            self.append(ev);
            match step.permission.as_deref() {
                Some("deny") => {
                    // Resolved server-side: the call never runs.
                    if let Some(c) = self.calls.get_mut(&call_id) {
                        c.answered = true;
                    }
                    self.next_step += 1;
                    self.append_type("session.status_running");
                    continue;
                }
                Some("ask") => {
                    self.append(json!({
                        "type": "session.status_idle",
                        "stop_reason": { "type": "requires_action", "event_ids": [call_id] }
                    }));
                }
                _ => {}
            }
            self.current = Some(call_id);
            return;
        }
    }

    /// A call got resolved (result or denial): advance if it was the scripted one.
    fn resolved(&mut self, call_id: &str) {
        if self.current.as_deref() == Some(call_id) {
            self.current = None;
            self.next_step += 1;
            self.append_type("session.status_running");
            self.emit_next_step();
        }
    }

    /// A thread ended: its pending scripted call is dropped and later steps
    /// of that thread are skipped.
    pub(crate) fn terminate_thread(&mut self, thread_id: &str) {
        self.append(json!({
            "type": "session.thread_status_terminated",
            "session_thread_id": thread_id
        }));
        let current_in_thread = self.current.as_ref().is_some_and(|c| {
            self.history.iter().any(|e| {
                e["id"].as_str() == Some(c.as_str())
                    && e["session_thread_id"].as_str() == Some(thread_id)
            })
        });
        if current_in_thread {
            let c = self.current.clone().expect("checked");
            self.resolved(&c);
        }
    }

    /// Validates one client event; `batch` holds calls answered earlier in the same request.
    fn validate(&mut self, ev: &Value, batch: &HashSet<String>) -> Result<(), ApiError> {
        let Some(obj) = ev.as_object() else {
            return Err(ApiError::invalid("each event must be an object"));
        };
        let ty = obj.get("type").and_then(Value::as_str).unwrap_or_default();
        match ty {
            "user.tool_result" | "user.custom_tool_result" => {
                let (key, expected) = if ty == "user.tool_result" {
                    ("tool_use_id", CallKind::Builtin)
                } else {
                    ("custom_tool_use_id", CallKind::Custom)
                };
                let id = obj
                    .get(key)
                    .and_then(Value::as_str)
                    .ok_or_else(|| ApiError::invalid(format!("{ty}: `{key}` is required")))?;
                if let Some(c) = obj.get("content")
                    && !c.is_array()
                {
                    return Err(ApiError::invalid(format!(
                        "{ty}: `content` must be an array"
                    )));
                }
                if let Some(e) = obj.get("is_error")
                    && !e.is_boolean()
                {
                    return Err(ApiError::invalid(format!(
                        "{ty}: `is_error` must be a boolean"
                    )));
                }
                let call = self.calls.get(id).ok_or_else(|| {
                    ApiError::invalid(format!("{ty}: no tool use with id {id} in this session"))
                })?;
                if call.kind != expected {
                    return Err(ApiError::invalid(format!(
                        "{ty}: kind mismatch: {id} is {} call",
                        match call.kind {
                            CallKind::Builtin => "an agent.tool_use",
                            CallKind::Custom => "an agent.custom_tool_use",
                        }
                    )));
                }
                if call.answered || batch.contains(id) {
                    self.duplicates += 1;
                    return Err(ApiError::invalid(format!(
                        "tool use {id} has already been answered"
                    ))
                    .with_details(json!({ "error_code": "tool_use_already_answered" })));
                }
                Ok(())
            }
            "user.tool_confirmation" => {
                let id = obj
                    .get("tool_use_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        ApiError::invalid("user.tool_confirmation: `tool_use_id` is required")
                    })?;
                if !self.calls.contains_key(id) {
                    return Err(ApiError::invalid(format!(
                        "user.tool_confirmation: no tool use with id {id} in this session"
                    )));
                }
                match obj.get("result").and_then(Value::as_str) {
                    Some("allow" | "deny") => Ok(()),
                    _ => Err(ApiError::invalid(
                        "user.tool_confirmation: `result` must be \"allow\" or \"deny\"",
                    )),
                }
            }
            t if t.starts_with("user.") => Ok(()),
            t => Err(ApiError::invalid(format!(
                "event type {t:?} cannot be sent by clients"
            ))),
        }
    }

    /// `POST /v1/sessions/{sid}/events`: all-or-nothing.
    pub(crate) fn send_events(&mut self, events: &[Value]) -> Result<Vec<Value>, ApiError> {
        if self.status == "terminated" {
            return Err(ApiError::invalid("session is terminated"));
        }
        let mut batch = HashSet::new();
        for ev in events {
            self.validate(ev, &batch)?;
            for key in ["tool_use_id", "custom_tool_use_id"] {
                if ev["type"]
                    .as_str()
                    .is_some_and(|t| t.ends_with("tool_result"))
                    && let Some(id) = ev.get(key).and_then(Value::as_str)
                {
                    batch.insert(id.to_string());
                }
            }
        }
        let mut stored = Vec::with_capacity(events.len());
        for ev in events {
            let mut ev = ev.clone();
            // Server-assigned fields.
            if let Some(o) = ev.as_object_mut() {
                o.remove("id");
                o.remove("processed_at");
            }
            stored.push(self.apply_user_event(ev));
        }
        Ok(stored)
    }

    /// Applies a validated user event; returns the stored copy.
    pub(crate) fn apply_user_event(&mut self, ev: Value) -> Value {
        let stored = self.append(ev);
        match stored["type"].as_str().unwrap_or_default() {
            "user.tool_result" | "user.custom_tool_result" => {
                self.results.push(stored.clone());
                let id = stored["tool_use_id"]
                    .as_str()
                    .or(stored["custom_tool_use_id"].as_str())
                    .unwrap_or_default()
                    .to_string();
                self.resolved(&id);
            }
            "user.tool_confirmation" => {
                let id = stored["tool_use_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let open = self.calls.get(&id).is_some_and(|c| !c.answered);
                if open {
                    if stored["result"].as_str() == Some("allow") {
                        if self.status != "running" {
                            self.append_type("session.status_running");
                        }
                    } else {
                        if let Some(c) = self.calls.get_mut(&id) {
                            c.answered = true;
                        }
                        self.resolved(&id);
                    }
                }
            }
            _ => {}
        }
        stored
    }

    /// Validates and applies one event on behalf of a test helper.
    pub(crate) fn helper_send(&mut self, ev: Value) -> Result<Value, ApiError> {
        self.send_events(std::slice::from_ref(&ev))
            .map(|mut v| v.remove(0))
    }

    pub(crate) fn list(&self, q: &ListQuery) -> (Vec<Value>, Option<usize>) {
        let matches = |e: &Value| -> bool {
            let ty = e["type"].as_str().unwrap_or_default();
            if !q.types.is_empty() && !q.types.iter().any(|t| t == ty) {
                return false;
            }
            let at = e["processed_at"].as_str().unwrap_or_default();
            q.created.iter().all(|(op, v)| match op.as_str() {
                "gt" => at > v.as_str(),
                "gte" => at >= v.as_str(),
                "lt" => at < v.as_str(),
                "lte" => at <= v.as_str(),
                _ => true,
            })
        };
        let n = self.history.len();
        let mut out = Vec::new();
        if q.desc {
            let end = q.cursor.unwrap_or(n).min(n);
            for i in (0..end).rev() {
                if matches(&self.history[i]) {
                    if out.len() == q.limit {
                        return (out, Some(i + 1));
                    }
                    out.push(self.history[i].clone());
                }
            }
        } else {
            let start = q.cursor.unwrap_or(0);
            for i in start..n {
                if matches(&self.history[i]) {
                    if out.len() == q.limit {
                        return (out, Some(i));
                    }
                    out.push(self.history[i].clone());
                }
            }
        }
        (out, None)
    }
}
