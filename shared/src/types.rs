//! Serde types for the control-plane contract (spec §4, §5, §8, §10, §11).
//!
//! Forward compatibility rules, applied everywhere:
//! * unknown fields are ignored (and, where a caller may need them, kept in `extra`);
//! * unknown enum values parse into an `Unknown(String)`/`Other` variant instead of
//!   failing;
//! * a session event whose known `type` has malformed fields becomes
//!   [`EventKind::Malformed`]: one bad event never fails a whole stream or page.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::secret::WorkSecret;

// ---------------------------------------------------------------------------
// Work items (§4)
// ---------------------------------------------------------------------------

/// `state` of a work item (and of a heartbeat response).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum WorkState {
    #[default]
    Queued,
    Starting,
    Active,
    Stopping,
    Stopped,
    /// A value this build does not know.
    Unknown(String),
}

impl WorkState {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Queued => "queued",
            Self::Starting => "starting",
            Self::Active => "active",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Unknown(s) => s,
        }
    }

    /// `stopping` or `stopped`: the worker must tear down (spec §6).
    pub fn is_stopping_or_stopped(&self) -> bool {
        matches!(self, Self::Stopping | Self::Stopped)
    }
}

impl From<String> for WorkState {
    fn from(s: String) -> Self {
        match s.as_str() {
            "queued" => Self::Queued,
            "starting" => Self::Starting,
            "active" => Self::Active,
            "stopping" => Self::Stopping,
            "stopped" => Self::Stopped,
            _ => Self::Unknown(s),
        }
    }
}

impl<'de> Deserialize<'de> for WorkState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Option::<String>::deserialize(d)?
            .map(Self::from)
            .unwrap_or_default())
    }
}

impl Serialize for WorkState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// `data` of a work item: a session, a health check, or something newer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WorkData {
    /// `session`, `healthcheck` (may be absent for health checks), ...
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
}

impl WorkData {
    /// Only `type == "session"` items carry a session to serve (spec §4.1).
    pub fn session_id(&self) -> Option<&str> {
        match (self.kind.as_deref(), self.id.as_deref()) {
            (Some("session"), Some(id)) if !id.is_empty() => Some(id),
            _ => None,
        }
    }
}

/// A work item (`type: "work"`), spec §4.1.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkItem {
    pub id: String,
    #[serde(default)]
    pub environment_id: Option<String>,
    #[serde(default)]
    pub state: WorkState,
    #[serde(default)]
    pub data: WorkData,
    /// Populated only on the object returned by `poll`.
    #[serde(default, deserialize_with = "de_work_secret")]
    pub secret: Option<WorkSecret>,
    #[serde(default, deserialize_with = "de_null_default")]
    pub metadata: BTreeMap<String, Value>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub acknowledged_at: Option<String>,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub latest_heartbeat_at: Option<String>,
    #[serde(default)]
    pub stop_requested_at: Option<String>,
    #[serde(default)]
    pub stopped_at: Option<String>,
}

fn de_work_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<WorkSecret>, D::Error> {
    Ok(Option::<String>::deserialize(d)?
        .filter(|s| !s.is_empty())
        .map(WorkSecret::new))
}

fn de_null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Heartbeat response (`type: "work_heartbeat"`), spec §5.3.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Heartbeat {
    /// Echo this verbatim as the next `expected_last_heartbeat` (may be `""`).
    #[serde(default, deserialize_with = "de_null_default")]
    pub last_heartbeat: String,
    #[serde(default = "default_true")]
    pub lease_extended: bool,
    #[serde(default)]
    pub state: WorkState,
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

fn default_true() -> bool {
    true
}

/// `error.details.current_state` of a heartbeat 412 (spec §5.3).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HeartbeatCurrentState {
    #[serde(default)]
    pub state: WorkState,
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    #[serde(default)]
    pub last_heartbeat: Option<String>,
    #[serde(default)]
    pub lease_extended: bool,
}

/// The error envelope of spec §2.6.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorEnvelope {
    #[serde(default)]
    pub error: ErrorBody,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorBody {
    #[serde(rename = "type", default)]
    pub error_type: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub details: Option<ErrorDetails>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorDetails {
    #[serde(default)]
    pub error_code: Option<String>,
    #[serde(default)]
    pub current_state: Option<HeartbeatCurrentState>,
}

/// Queue statistics (`type: "work_queue_stats"`), spec §5.8.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct QueueStats {
    #[serde(default)]
    pub depth: u64,
    #[serde(default)]
    pub pending: u64,
    #[serde(default)]
    pub oldest_queued_at: Option<String>,
    #[serde(default)]
    pub workers_polling: Option<u64>,
}

/// One page of a list endpoint (spec §2.5).
#[derive(Debug, Clone, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct Page<T> {
    #[serde(default = "Vec::new", deserialize_with = "de_null_default")]
    pub data: Vec<T>,
    #[serde(default)]
    pub next_page: Option<String>,
}

impl<T> Page<T> {
    /// The cursor to fetch next, if any (null and empty both end the listing).
    pub fn next_cursor(&self) -> Option<&str> {
        self.next_page.as_deref().filter(|s| !s.is_empty())
    }
}

// ---------------------------------------------------------------------------
// Sessions (§10.1)
// ---------------------------------------------------------------------------

/// `status` of a session.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SessionStatus {
    Rescheduling,
    Running,
    #[default]
    Idle,
    Terminated,
    Unknown(String),
}

impl<'de> Deserialize<'de> for SessionStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Option::<String>::deserialize(d)?.unwrap_or_default();
        Ok(match s.as_str() {
            "rescheduling" => Self::Rescheduling,
            "running" => Self::Running,
            "idle" => Self::Idle,
            "terminated" => Self::Terminated,
            _ => Self::Unknown(s),
        })
    }
}

/// The fields of a session object the runner uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Session {
    pub id: String,
    #[serde(default)]
    pub environment_id: Option<String>,
    #[serde(default)]
    pub status: SessionStatus,
    #[serde(default, deserialize_with = "de_null_default")]
    pub agent: Agent,
    #[serde(default, deserialize_with = "de_null_default")]
    pub resources: Vec<Resource>,
    #[serde(default, deserialize_with = "de_null_default")]
    pub metadata: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Agent {
    #[serde(default, deserialize_with = "de_null_default")]
    pub skills: Vec<SkillRef>,
    /// Tool definitions, kept raw (`agent_toolset_20260401`, `custom`, MCP ...).
    #[serde(default, deserialize_with = "de_null_default")]
    pub tools: Vec<Value>,
}

impl Agent {
    /// Names of the `custom` tools declared on the agent.
    pub fn custom_tool_names(&self) -> Vec<&str> {
        self.tools
            .iter()
            .filter(|t| t.get("type").and_then(Value::as_str) == Some("custom"))
            .filter_map(|t| t.get("name").and_then(Value::as_str))
            .collect()
    }
}

/// `agent.skills[]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SkillRef {
    /// `anthropic` | `custom`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub skill_id: String,
    /// A version id or the alias `latest`.
    #[serde(default)]
    pub version: Option<String>,
}

/// `resources[]` entry. Only `memory_store` is materialised by the runner.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Resource {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub memory_store_id: Option<String>,
    /// `read_write` | `read_only`.
    #[serde(default)]
    pub access: Option<String>,
    #[serde(default)]
    pub mount_path: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Resource {
    pub fn is_memory_store(&self) -> bool {
        self.kind == "memory_store"
    }
    pub fn is_read_only(&self) -> bool {
        self.access.as_deref() == Some("read_only")
    }
}

// ---------------------------------------------------------------------------
// Session events (§11)
// ---------------------------------------------------------------------------

/// A tool call (`agent.tool_use` or `agent.custom_tool_use`). Its event id is the
/// tool-use id.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub input: Value,
    /// `allow` | `ask` | `deny` | something newer; `None` when absent.
    pub evaluated_permission: Option<String>,
    pub session_thread_id: Option<String>,
}

/// `stop_reason` of `session.status_idle`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopReason {
    /// `end_turn`, `requires_action`, `retries_exhausted`, `budget_reached`, `refusal`, ...
    pub kind: String,
    pub event_ids: Vec<String>,
}

/// What a session event means to the runner. Unknown types are [`EventKind::Other`].
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    AgentToolUse(ToolCall),
    AgentCustomToolUse(ToolCall),
    UserToolResult {
        tool_use_id: String,
    },
    UserCustomToolResult {
        custom_tool_use_id: String,
    },
    UserToolConfirmation {
        tool_use_id: String,
        /// `allow` | `deny` | something newer (anything but `allow` denies).
        result: String,
        deny_message: Option<String>,
    },
    StatusIdle {
        stop_reason: Option<StopReason>,
    },
    StatusRunning,
    StatusRescheduled,
    StatusTerminated,
    SessionDeleted,
    ThreadStatusTerminated {
        session_thread_id: String,
    },
    /// A known type with fields we could not interpret; logged, otherwise ignored
    /// (it still counts as activity for the idle clock).
    Malformed {
        reason: String,
    },
    /// Any other type (`agent.message`, `span.*`, `session.error`, thread events, ...).
    Other,
}

/// A session event as it arrives on the stream or in a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionEvent {
    pub id: Option<String>,
    /// The raw `type` string.
    pub event_type: String,
    pub processed_at: Option<String>,
    pub kind: EventKind,
    /// The whole JSON object, for logging and forward compatibility.
    pub raw: Value,
}

impl SessionEvent {
    /// Interpret one JSON event. Never fails: a non-object becomes a `Malformed` event
    /// of type `""`.
    pub fn from_value(raw: Value) -> Self {
        let str_field = |k: &str| raw.get(k).and_then(Value::as_str).map(str::to_owned);
        let event_type = str_field("type").unwrap_or_default();
        let id = str_field("id");
        let processed_at = str_field("processed_at");
        let kind = if raw.is_object() {
            Self::kind_of(&event_type, &raw, id.as_deref())
        } else {
            EventKind::Malformed {
                reason: "event is not a JSON object".into(),
            }
        };
        Self {
            id,
            event_type,
            processed_at,
            kind,
            raw,
        }
    }

    fn kind_of(event_type: &str, raw: &Value, id: Option<&str>) -> EventKind {
        let s = |k: &str| raw.get(k).and_then(Value::as_str).map(str::to_owned);
        let need = |k: &str| -> Result<String, EventKind> {
            s(k).filter(|v| !v.is_empty())
                .ok_or_else(|| EventKind::Malformed {
                    reason: format!("{event_type} without a string `{k}`"),
                })
        };
        let call = || -> Result<ToolCall, EventKind> {
            let id = id
                .filter(|v| !v.is_empty())
                .ok_or_else(|| EventKind::Malformed {
                    reason: format!("{event_type} without an `id`"),
                })?;
            Ok(ToolCall {
                id: id.to_owned(),
                name: need("name")?,
                input: raw.get("input").cloned().unwrap_or(Value::Null),
                evaluated_permission: s("evaluated_permission"),
                session_thread_id: s("session_thread_id"),
            })
        };
        let result = match event_type {
            "agent.tool_use" => call().map(EventKind::AgentToolUse),
            "agent.custom_tool_use" => call().map(EventKind::AgentCustomToolUse),
            "user.tool_result" => {
                need("tool_use_id").map(|tool_use_id| EventKind::UserToolResult { tool_use_id })
            }
            "user.custom_tool_result" => need("custom_tool_use_id")
                .map(|custom_tool_use_id| EventKind::UserCustomToolResult { custom_tool_use_id }),
            "user.tool_confirmation" => {
                need("tool_use_id").map(|tool_use_id| EventKind::UserToolConfirmation {
                    tool_use_id,
                    result: s("result").unwrap_or_default(),
                    deny_message: s("deny_message"),
                })
            }
            "session.status_idle" => Ok(EventKind::StatusIdle {
                stop_reason: raw.get("stop_reason").and_then(|sr| {
                    let kind = sr.get("type").and_then(Value::as_str)?.to_owned();
                    let event_ids = sr
                        .get("event_ids")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default();
                    Some(StopReason { kind, event_ids })
                }),
            }),
            "session.status_running" => Ok(EventKind::StatusRunning),
            "session.status_rescheduled" => Ok(EventKind::StatusRescheduled),
            "session.status_terminated" => Ok(EventKind::StatusTerminated),
            "session.deleted" => Ok(EventKind::SessionDeleted),
            "session.thread_status_terminated" => need("session_thread_id")
                .map(|session_thread_id| EventKind::ThreadStatusTerminated { session_thread_id }),
            _ => Ok(EventKind::Other),
        };
        result.unwrap_or_else(|malformed| malformed)
    }

    /// Spec §11.5: an idle whose stop reason is not `requires_action` ends the turn
    /// (unknown future reasons, and a missing reason, end it too).
    pub fn ends_turn(&self) -> bool {
        match &self.kind {
            EventKind::StatusIdle { stop_reason } => {
                stop_reason.as_ref().map(|r| r.kind.as_str()) != Some("requires_action")
            }
            _ => false,
        }
    }

    /// Spec §11.5: events that neither arm nor disarm the idle clock.
    pub fn is_idle_neutral(&self) -> bool {
        matches!(
            self.kind,
            EventKind::UserToolConfirmation { .. } | EventKind::ThreadStatusTerminated { .. }
        )
    }
}

impl<'de> Deserialize<'de> for SessionEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::from_value(Value::deserialize(d)?))
    }
}

/// Parse one event from JSON text. Lone UTF-16 surrogate escapes (which
/// `serde_json` rejects) are replaced by U+FFFD first (spec tools §2.1 [rec]).
pub fn parse_event_json(text: &str) -> Result<SessionEvent, serde_json::Error> {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => Ok(SessionEvent::from_value(v)),
        Err(e) => {
            let fixed = replace_lone_surrogates(text);
            if fixed == text {
                return Err(e);
            }
            serde_json::from_str::<Value>(&fixed).map(SessionEvent::from_value)
        }
    }
}

/// Replace `\uD800`–`\uDFFF` escapes that are not part of a valid surrogate pair
/// with `\uFFFD`, leaving everything else (including escaped backslashes) intact.
pub fn replace_lone_surrogates(text: &str) -> String {
    fn hex4(b: &[u8]) -> Option<u16> {
        if b.len() < 4 {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(&b[..4]).ok()?, 16).ok()
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut last = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            if bytes[i + 1] == b'u'
                && let Some(cu) = hex4(&bytes[i + 2..])
            {
                if (0xD800..0xDC00).contains(&cu) {
                    let pair = bytes.get(i + 6..i + 8) == Some(b"\\u")
                        && hex4(&bytes[i + 8..]).is_some_and(|lo| (0xDC00..0xE000).contains(&lo));
                    if pair {
                        i += 12;
                        continue;
                    }
                    out.push_str(&text[last..i]);
                    out.push_str("\\ufffd");
                    i += 6;
                    last = i;
                    continue;
                }
                if (0xDC00..0xE000).contains(&cu) {
                    out.push_str(&text[last..i]);
                    out.push_str("\\ufffd");
                    i += 6;
                    last = i;
                    continue;
                }
            }
            i += 2; // skip the escaped character (handles `\\`)
            continue;
        }
        i += 1;
    }
    out.push_str(&text[last..]);
    out
}

// ---------------------------------------------------------------------------
// Events the runner sends (§11.2)
// ---------------------------------------------------------------------------

/// Media source of an image/document block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaSource {
    #[serde(rename = "type")]
    pub kind: String,
    pub media_type: String,
    pub data: String,
}

impl MediaSource {
    pub fn base64(media_type: impl Into<String>, data: impl Into<String>) -> Self {
        Self {
            kind: "base64".into(),
            media_type: media_type.into(),
            data: data.into(),
        }
    }
}

/// A content block of a tool result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Text { text: String },
    Image { source: MediaSource },
    Document { source: MediaSource },
}

impl ContentBlock {
    pub fn text(t: impl Into<String>) -> Self {
        Self::Text { text: t.into() }
    }
}

/// The text sent for empty results (spec §11.2).
pub const NO_OUTPUT: &str = "(no output)";

/// Normalise result content per spec §11.2: empty list, or a single empty text
/// block, becomes `[(no output)]`.
pub fn normalize_content(content: Vec<ContentBlock>) -> Vec<ContentBlock> {
    let empty = content.is_empty()
        || content
            .iter()
            .all(|b| matches!(b, ContentBlock::Text { text } if text.is_empty()));
    if empty {
        vec![ContentBlock::text(NO_OUTPUT)]
    } else {
        content
    }
}

/// An event the runner posts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum OutgoingEvent {
    #[serde(rename = "user.tool_result")]
    ToolResult {
        tool_use_id: String,
        is_error: bool,
        content: Vec<ContentBlock>,
    },
    #[serde(rename = "user.custom_tool_result")]
    CustomToolResult {
        custom_tool_use_id: String,
        is_error: bool,
        content: Vec<ContentBlock>,
    },
}

impl OutgoingEvent {
    /// The result event matching the call's kind (spec §11.2: kinds must match).
    pub fn result_for(
        call_is_custom: bool,
        id: &str,
        is_error: bool,
        content: Vec<ContentBlock>,
    ) -> Self {
        let content = normalize_content(content);
        if call_is_custom {
            Self::CustomToolResult {
                custom_tool_use_id: id.to_owned(),
                is_error,
                content,
            }
        } else {
            Self::ToolResult {
                tool_use_id: id.to_owned(),
                is_error,
                content,
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Skills (§10.5) and memory stores (§10.6)
// ---------------------------------------------------------------------------

/// `GET /v1/skills/{id}/versions/{version}` response.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SkillVersion {
    /// The concrete version id to download by.
    pub id: String,
    #[serde(default)]
    pub skill_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
}

/// A memory (`type: "memory"`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Memory {
    pub id: String,
    #[serde(default)]
    pub memory_store_id: Option<String>,
    pub path: String,
    /// Present with `view=full`.
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub content_sha256: Option<String>,
    #[serde(default)]
    pub content_size_bytes: Option<u64>,
    #[serde(default)]
    pub memory_version_id: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
}

// ---------------------------------------------------------------------------
// Webhooks (§8.1)
// ---------------------------------------------------------------------------

/// The webhook delivery envelope.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WebhookEnvelope {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    pub data: WebhookData,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WebhookData {
    /// `session.status_run_started`, ... (unknown values must be ignored with 2xx).
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub organization_id: Option<String>,
    #[serde(default)]
    pub workspace_id: Option<String>,
    #[serde(default)]
    pub session_thread_id: Option<String>,
}

/// The webhook event type that triggers a drain (spec §8.3).
pub const RUN_STARTED: &str = "session.status_run_started";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn work_item_full_object() {
        let w: WorkItem = serde_json::from_value(json!({
            "type": "work", "id": "work_1", "environment_id": "env_1", "state": "queued",
            "data": {"type": "session", "id": "sesn_1"}, "secret": "eyJ",
            "metadata": {"k": "v"}, "created_at": "2026-05-01T12:00:00Z",
            "acknowledged_at": null, "started_at": null, "latest_heartbeat_at": null,
            "stop_requested_at": null, "stopped_at": null, "brand_new_field": [1, 2]
        }))
        .unwrap();
        assert_eq!(w.state, WorkState::Queued);
        assert_eq!(w.data.session_id(), Some("sesn_1"));
        assert_eq!(w.secret.as_ref().unwrap().expose(), "eyJ");
        assert!(
            !format!("{w:?}").contains("eyJ"),
            "secret must be redacted in Debug"
        );
    }

    #[test]
    fn work_states_and_unknowns() {
        for (s, want) in [
            ("starting", WorkState::Starting),
            ("active", WorkState::Active),
            ("stopping", WorkState::Stopping),
            ("stopped", WorkState::Stopped),
            ("paused", WorkState::Unknown("paused".into())),
        ] {
            let w: WorkItem = serde_json::from_value(json!({"id": "w", "state": s})).unwrap();
            assert_eq!(w.state, want);
        }
        let w: WorkItem = serde_json::from_value(
            json!({"id": "w", "data": {"id": "hc"}, "secret": null, "metadata": null}),
        )
        .unwrap();
        assert_eq!(
            w.data.session_id(),
            None,
            "healthcheck without type is not a session"
        );
        let w: WorkItem =
            serde_json::from_value(json!({"id": "w", "data": {"type": "healthcheck", "id": "hc"}}))
                .unwrap();
        assert_eq!(w.data.session_id(), None);
    }

    #[test]
    fn heartbeat_and_412_body() {
        let h: Heartbeat = serde_json::from_value(json!({
            "type": "work_heartbeat", "last_heartbeat": "2026-05-01T12:00:31.123456Z",
            "lease_extended": true, "state": "active", "ttl_seconds": 60
        }))
        .unwrap();
        assert_eq!(h.ttl_seconds, Some(60));
        let h: Heartbeat =
            serde_json::from_value(json!({"last_heartbeat": null, "state": "stopping"})).unwrap();
        assert_eq!(h.last_heartbeat, "");
        assert!(h.state.is_stopping_or_stopped());
        let e: ErrorEnvelope = serde_json::from_value(json!({"type": "error", "error": {"type": "x", "message": "m",
            "details": {"error_code": "heartbeat_precondition_failed",
                "current_state": {"state": "active", "ttl_seconds": 60, "last_heartbeat": null, "lease_extended": false}}}}))
        .unwrap();
        let d = e.error.details.unwrap();
        assert_eq!(
            d.error_code.as_deref(),
            Some("heartbeat_precondition_failed")
        );
        assert_eq!(d.current_state.unwrap().last_heartbeat, None);
    }

    #[test]
    fn stats_and_pages() {
        let s: QueueStats =
            serde_json::from_value(json!({"type": "work_queue_stats", "depth": 2, "pending": 1,
            "oldest_queued_at": null, "workers_polling": null}))
            .unwrap();
        assert_eq!((s.depth, s.pending, s.workers_polling), (2, 1, None));
        let p: Page<SessionEvent> =
            serde_json::from_value(json!({"data": [{"type": "x"}], "next_page": ""})).unwrap();
        assert_eq!(p.next_cursor(), None);
        let p: Page<SessionEvent> =
            serde_json::from_value(json!({"data": null, "next_page": "abc"})).unwrap();
        assert_eq!(p.next_cursor(), Some("abc"));
    }

    #[test]
    fn session_object() {
        let s: Session = serde_json::from_value(json!({
            "type": "session", "id": "sesn_1", "environment_id": "env_1", "status": "idle",
            "agent": {"skills": [{"type": "custom", "skill_id": "skill_1", "version": "latest"}],
                      "tools": [{"type": "agent_toolset_20260401", "configs": [], "default_config": {}},
                                {"type": "custom", "name": "lookup", "description": "d", "input_schema": {}}]},
            "resources": [{"type": "memory_store", "memory_store_id": "memstore_1", "access": "read_only",
                           "mount_path": "/mnt/memory/p", "name": "P"}, {"type": "file", "file_id": "f"}]
        }))
        .unwrap();
        assert_eq!(s.status, SessionStatus::Idle);
        assert_eq!(s.agent.custom_tool_names(), vec!["lookup"]);
        assert!(s.resources[0].is_memory_store() && s.resources[0].is_read_only());
        assert_eq!(s.resources[1].extra["file_id"], "f");
        let s: Session =
            serde_json::from_value(json!({"id": "s", "status": "archiving", "agent": null}))
                .unwrap();
        assert_eq!(s.status, SessionStatus::Unknown("archiving".into()));
    }

    #[test]
    fn every_consumed_event_kind() {
        let ev = |v: Value| SessionEvent::from_value(v).kind;
        assert!(
            matches!(ev(json!({"type": "agent.tool_use", "id": "t1", "name": "bash", "input": {"command": "ls"},
            "evaluated_permission": "ask", "session_thread_id": "sthr_1"})),
            EventKind::AgentToolUse(ToolCall { ref evaluated_permission, .. }) if evaluated_permission.as_deref() == Some("ask"))
        );
        assert!(matches!(
            ev(json!({"type": "agent.custom_tool_use", "id": "c1", "name": "lookup", "input": {}})),
            EventKind::AgentCustomToolUse(_)
        ));
        assert_eq!(
            ev(json!({"type": "user.tool_result", "tool_use_id": "t1"})),
            EventKind::UserToolResult {
                tool_use_id: "t1".into()
            }
        );
        assert_eq!(
            ev(json!({"type": "user.custom_tool_result", "custom_tool_use_id": "c1"})),
            EventKind::UserCustomToolResult {
                custom_tool_use_id: "c1".into()
            }
        );
        assert_eq!(
            ev(
                json!({"type": "user.tool_confirmation", "tool_use_id": "t1", "result": "deny", "deny_message": "no"})
            ),
            EventKind::UserToolConfirmation {
                tool_use_id: "t1".into(),
                result: "deny".into(),
                deny_message: Some("no".into())
            }
        );
        assert_eq!(
            ev(json!({"type": "session.status_running"})),
            EventKind::StatusRunning
        );
        assert_eq!(
            ev(json!({"type": "session.status_rescheduled"})),
            EventKind::StatusRescheduled
        );
        assert_eq!(
            ev(json!({"type": "session.status_terminated"})),
            EventKind::StatusTerminated
        );
        assert_eq!(
            ev(json!({"type": "session.deleted"})),
            EventKind::SessionDeleted
        );
        assert_eq!(
            ev(json!({"type": "session.thread_status_terminated", "session_thread_id": "sthr_1"})),
            EventKind::ThreadStatusTerminated {
                session_thread_id: "sthr_1".into()
            }
        );
        assert_eq!(
            ev(json!({"type": "session.thread_created", "session_thread_id": "sthr_2"})),
            EventKind::Other
        );
        assert_eq!(
            ev(json!({"type": "agent.message", "content": []})),
            EventKind::Other
        );
        assert_eq!(ev(json!({"type": "brand.new.event"})), EventKind::Other);
        assert!(matches!(
            ev(json!({"type": "agent.tool_use", "name": "bash"})),
            EventKind::Malformed { .. }
        ));
        assert!(matches!(
            ev(json!({"type": "agent.tool_use", "id": "x", "name": 5})),
            EventKind::Malformed { .. }
        ));
        assert!(matches!(ev(json!([1, 2])), EventKind::Malformed { .. }));
    }

    #[test]
    fn idle_and_turn_ending() {
        let e = |v: Value| SessionEvent::from_value(v);
        assert!(
            e(json!({"type": "session.status_idle", "stop_reason": {"type": "end_turn"}}))
                .ends_turn()
        );
        assert!(
            e(json!({"type": "session.status_idle", "stop_reason": {"type": "retries_exhausted"}}))
                .ends_turn()
        );
        assert!(
            e(json!({"type": "session.status_idle", "stop_reason": {"type": "something_new"}}))
                .ends_turn()
        );
        assert!(e(json!({"type": "session.status_idle"})).ends_turn());
        let ra = e(
            json!({"type": "session.status_idle", "stop_reason": {"type": "requires_action", "event_ids": ["a", "b"]}}),
        );
        assert!(!ra.ends_turn());
        assert!(
            matches!(ra.kind, EventKind::StatusIdle { stop_reason: Some(StopReason { ref event_ids, .. }) } if event_ids.len() == 2)
        );
        assert!(
            e(json!({"type": "user.tool_confirmation", "tool_use_id": "t", "result": "allow"}))
                .is_idle_neutral()
        );
        assert!(!e(json!({"type": "agent.message"})).is_idle_neutral());
    }

    #[test]
    fn lone_surrogates_are_replaced_not_fatal() {
        let text = r#"{"type":"agent.tool_use","id":"t","name":"write","input":{"content":"a\ud800b\\ud800\udc00c\ud83d\ude00\udc00"}}"#;
        let ev = parse_event_json(text).unwrap();
        let EventKind::AgentToolUse(call) = ev.kind else {
            panic!("{:?}", ev.kind)
        };
        assert_eq!(
            call.input["content"],
            "a\u{fffd}b\\ud800\u{fffd}c😀\u{fffd}"
        );
        assert!(parse_event_json("{not json").is_err());
    }

    #[test]
    fn outgoing_result_shapes() {
        let ev = OutgoingEvent::result_for(false, "t1", false, vec![ContentBlock::text("hi")]);
        assert_eq!(
            serde_json::to_value(&ev).unwrap(),
            json!({"type": "user.tool_result", "tool_use_id": "t1", "is_error": false, "content": [{"type": "text", "text": "hi"}]})
        );
        let ev = OutgoingEvent::result_for(true, "c1", true, vec![]);
        assert_eq!(
            serde_json::to_value(&ev).unwrap(),
            json!({"type": "user.custom_tool_result", "custom_tool_use_id": "c1", "is_error": true, "content": [{"type": "text", "text": "(no output)"}]})
        );
        let img = ContentBlock::Image {
            source: MediaSource::base64("image/png", "AAAA"),
        };
        assert_eq!(
            serde_json::to_value(&img).unwrap(),
            json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}})
        );
        assert_eq!(
            normalize_content(vec![ContentBlock::text("")]),
            vec![ContentBlock::text("(no output)")]
        );
    }

    #[test]
    fn webhook_envelope() {
        let body = r#"{"type":"event","id":"wevt_011CZkZaBF1tNoB5wlCeusgy","created_at":"2026-05-01T12:00:00Z","data":{"type":"session.status_run_started","id":"sesn_011CZkZaBF1tNoB5wlCeusgy","organization_id":"org_01","workspace_id":"wrkspc_01"}}"#;
        let e: WebhookEnvelope = serde_json::from_str(body).unwrap();
        assert_eq!(e.data.event_type, RUN_STARTED);
        let e: WebhookEnvelope =
            serde_json::from_str(r#"{"data":{"type":"vault.created","extra":1}}"#).unwrap();
        assert_eq!(e.data.event_type, "vault.created");
    }

    #[test]
    fn memory_and_skill_version() {
        let m: Memory = serde_json::from_value(json!({"type": "memory", "id": "mem_1", "memory_store_id": "ms", "path": "/a.md",
            "content": null, "content_sha256": "ab", "content_size_bytes": 3, "memory_version_id": "mv", "created_at": "t"})).unwrap();
        assert_eq!(m.content, None);
        let v: SkillVersion = serde_json::from_value(
            json!({"type": "skill_version", "id": "v1", "skill_id": "s", "name": "pdf"}),
        )
        .unwrap();
        assert_eq!(v.name.as_deref(), Some("pdf"));
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(Value::from),
                ".{0,20}".prop_map(Value::String),
                prop_oneof![
                    Just("agent.tool_use"),
                    Just("agent.custom_tool_use"),
                    Just("user.tool_result"),
                    Just("user.custom_tool_result"),
                    Just("user.tool_confirmation"),
                    Just("session.status_idle"),
                    Just("session.thread_status_terminated"),
                    Just("session.deleted"),
                    Just("requires_action"),
                ]
                .prop_map(|s| Value::String(s.into())),
            ];
            leaf.prop_recursive(4, 64, 8, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    proptest::collection::btree_map(
                        prop_oneof![
                            Just("type".to_owned()),
                            Just("id".to_owned()),
                            Just("name".to_owned()),
                            Just("input".to_owned()),
                            Just("tool_use_id".to_owned()),
                            Just("custom_tool_use_id".to_owned()),
                            Just("stop_reason".to_owned()),
                            Just("event_ids".to_owned()),
                            Just("session_thread_id".to_owned()),
                            Just("result".to_owned()),
                            ".{0,8}".prop_map(|s| s),
                        ],
                        inner,
                        0..8,
                    )
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            /// Any JSON value interprets without a panic, and as a page element too.
            #[test]
            fn any_json_event_parses(v in json_value()) {
                let ev = SessionEvent::from_value(v.clone());
                let _ = ev.ends_turn();
                let page = serde_json::json!({"data": [v], "next_page": null});
                let p: Page<SessionEvent> = serde_json::from_value(page).unwrap();
                prop_assert_eq!(p.data.len(), 1);
            }

            /// Arbitrary text never panics the lenient parser.
            #[test]
            fn any_text_parses_or_errors(s in ".{0,300}", esc in "(\\\\u[dD][89abAB][0-9a-fA-F]{2}){0,3}") {
                let _ = parse_event_json(&s);
                let text = format!("{{\"type\":\"x\",\"s\":\"{esc}\"}}");
                prop_assert!(parse_event_json(&text).is_ok(), "{}", text);
            }
        }
    }
}
