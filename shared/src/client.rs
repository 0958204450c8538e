//! Control-plane HTTP client (spec §2, §5, §10).
//!
//! One [`ControlPlane`] value holds one bearer credential (the environment key for
//! the webhook drain, the item credential for the runner; see spec §3.3) and sends
//! exactly the headers of spec §2.2/§2.3:
//!
//! * `Authorization: Bearer …` (never `x-api-key`);
//! * `anthropic-version` (default [`ANTHROPIC_VERSION`], configurable);
//! * `anthropic-beta` per endpoint family: [`BETA_MANAGED_AGENTS`] for
//!   `/v1/environments/**` and `/v1/sessions/**`, [`BETA_MEMORY`] for
//!   `/v1/memory_stores/**`, **none** for `/v1/skills/**`;
//! * `Accept: application/json` (`application/binary` for skill archives);
//! * `Content-Type: application/json` on every POST, including empty-body POSTs
//!   (ack, heartbeat) which carry `Content-Length: 0`;
//! * `Anthropic-Worker-ID` on poll;
//! * our own `User-Agent` (we do not impersonate the SDKs).
//!
//! Query strings use the bracket forms of §2.4 (`types[]=…`, `created_at[gt]=…`) with
//! percent-encoded values; omitted parameters are not sent. Path ids are
//! percent-encoded as segments.
//!
//! Every call goes through one retry layer ([`RetryPolicy`], spec §13.3) driven by an
//! injectable [`Clock`] and [`Jitter`]. Per-endpoint exceptions: heartbeat is not
//! retried here (the lease loop owns its schedule, and each beat is bounded by the
//! heartbeat interval), heartbeat 412 is [`ErrorKind::LeaseLost`], and stop 409 is
//! success ([`StopOutcome::AlreadyStopped`]).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::{ApiError, ErrorKind, classify_status};
use crate::retry::{Clock, Jitter, RandJitter, RetryPolicy, TokioClock, parse_retry_after};
use crate::secret::{EnvironmentKey, SecretString, SessionsToken};
use crate::sse::SseParser;
use crate::types::{
    ErrorEnvelope, Heartbeat, Memory, OutgoingEvent, Page, QueueStats, Session, SessionEvent,
    SkillVersion, WorkItem, parse_event_json,
};

pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
pub const ANTHROPIC_VERSION: &str = "2026-10-21";
pub const BETA_MANAGED_AGENTS: &str = "managed-agents-2026-04-01";
pub const BETA_MEMORY: &str = "agent-memory-2026-07-22";
/// The `expected_last_heartbeat` of the first heartbeat (spec §5.3).
pub const NO_HEARTBEAT: &str = "NO_HEARTBEAT";
pub const USER_AGENT: &str = concat!("cma-selfhosted-aws/", env!("CARGO_PKG_VERSION"), " (rust)");

/// Unreserved characters (RFC 3986) stay; everything else is percent-encoded.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// Query keys keep their literal brackets (`types[]`, `created_at[gt]`).
const KEY: &AsciiSet = &VALUE.remove(b'[').remove(b']');

/// Client configuration.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL without a trailing slash (`ANTHROPIC_BASE_URL`).
    pub base_url: String,
    pub anthropic_version: String,
    pub user_agent: String,
    /// Whole-request timeout for non-streaming calls (SDK: 600 s).
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Max silence on the SSE stream before it is dropped and reconnected (SDK: 600 s).
    pub stream_read_timeout: Duration,
    pub retry: RetryPolicy,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.into(),
            anthropic_version: ANTHROPIC_VERSION.into(),
            user_agent: USER_AGENT.into(),
            request_timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(5),
            stream_read_timeout: Duration::from_secs(600),
            retry: RetryPolicy::default(),
        }
    }
}

impl ClientConfig {
    /// Default configuration with an optional base URL override (empty = default).
    pub fn with_base_url(base_url: Option<&str>) -> Self {
        let mut c = Self::default();
        if let Some(u) = base_url.map(str::trim).filter(|u| !u.is_empty()) {
            c.base_url = u.trim_end_matches('/').to_owned();
        }
        c
    }
}

/// Endpoint family; decides the `anthropic-beta` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    ManagedAgents,
    Memory,
    Skills,
}

impl Family {
    fn beta(self) -> Option<&'static str> {
        match self {
            Family::ManagedAgents => Some(BETA_MANAGED_AGENTS),
            Family::Memory => Some(BETA_MEMORY),
            Family::Skills => None,
        }
    }
}

/// Ordered query parameters, encoded per spec §2.4.
#[derive(Debug, Clone, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn push(&mut self, key: &str, value: impl ToString) -> &mut Self {
        self.0.push((key.to_owned(), value.to_string()));
        self
    }

    pub fn opt(&mut self, key: &str, value: Option<impl ToString>) -> &mut Self {
        if let Some(v) = value {
            self.push(key, v);
        }
        self
    }

    pub fn encode(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    utf8_percent_encode(k, KEY),
                    utf8_percent_encode(v, VALUE)
                )
            })
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// Percent-encode one path segment.
pub fn seg(id: &str) -> String {
    // `.`/`..` would be collapsed by URL normalisation; ids never look like that,
    // but an attacker-influenced id must not be able to walk the path.
    if id == "." || id == ".." {
        return id.replace('.', "%2E");
    }
    utf8_percent_encode(id, VALUE).to_string()
}

/// Parameters of `GET …/work/poll`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PollParams {
    /// 1–999; `None` = non-blocking. 0 is rejected by the server and never sent.
    pub block_ms: Option<u32>,
    pub reclaim_older_than_ms: Option<u64>,
}

/// Result of `POST …/stop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    Stopped,
    /// 409: the item was already stopped (success, spec §5.4).
    AlreadyStopped,
}

/// Result of `DELETE` on a memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    /// 404: already gone.
    NotFound,
}

/// `order` of an event listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

/// Parameters of `GET /v1/sessions/{id}/events` (spec §10.3).
#[derive(Debug, Clone, Default)]
pub struct ListEventsParams {
    pub limit: Option<u32>,
    pub order: Option<Order>,
    pub types: Vec<String>,
    pub created_at_gt: Option<String>,
    pub created_at_gte: Option<String>,
    pub created_at_lt: Option<String>,
    pub created_at_lte: Option<String>,
}

impl ListEventsParams {
    fn query(&self, page: Option<&str>) -> Query {
        let mut q = Query::default();
        q.opt("limit", self.limit);
        q.opt(
            "order",
            self.order.map(|o| match o {
                Order::Asc => "asc",
                Order::Desc => "desc",
            }),
        );
        for t in &self.types {
            q.push("types[]", t);
        }
        q.opt("created_at[gt]", self.created_at_gt.as_deref());
        q.opt("created_at[gte]", self.created_at_gte.as_deref());
        q.opt("created_at[lt]", self.created_at_lt.as_deref());
        q.opt("created_at[lte]", self.created_at_lte.as_deref());
        q.opt("page", page);
        q
    }
}

/// `view` of memory reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryView {
    Basic,
    Full,
}

impl MemoryView {
    fn as_str(self) -> &'static str {
        match self {
            MemoryView::Basic => "basic",
            MemoryView::Full => "full",
        }
    }
}

/// Parameters of `GET /v1/memory_stores/{id}/memories`.
#[derive(Debug, Clone, Default)]
pub struct ListMemoriesParams {
    pub view: Option<MemoryView>,
    pub limit: Option<u32>,
    pub path_prefix: Option<String>,
    pub depth: Option<u32>,
}

/// One request before it is sent.
struct Req {
    method: reqwest::Method,
    path: String,
    query: Query,
    family: Family,
    body: Option<Vec<u8>>,
    accept: &'static str,
    worker_id: Option<String>,
    timeout: Option<Duration>,
    /// `None`: the client's configured policy ([`ClientConfig::retry`]).
    retry: Option<RetryPolicy>,
    /// Statuses that end the call without an error and without a retry.
    terminal_ok: &'static [u16],
}

impl Req {
    fn new(method: reqwest::Method, family: Family, path: String) -> Self {
        Self {
            method,
            path,
            query: Query::default(),
            family,
            body: None,
            accept: "application/json",
            worker_id: None,
            timeout: None,
            retry: None,
            terminal_ok: &[],
        }
    }

    fn get(family: Family, path: String) -> Self {
        Self::new(reqwest::Method::GET, family, path)
    }

    fn post(family: Family, path: String, body: Option<&Value>) -> Self {
        let mut r = Self::new(reqwest::Method::POST, family, path);
        r.body = Some(body.map(|b| b.to_string().into_bytes()).unwrap_or_default());
        r
    }

    fn operation(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// The control-plane client. Cheap to clone.
#[derive(Clone)]
pub struct ControlPlane {
    http: reqwest::Client,
    cfg: Arc<ClientConfig>,
    bearer: SecretString,
    clock: Arc<dyn Clock>,
    jitter: Arc<dyn Jitter>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("base_url", &self.cfg.base_url)
            .field("bearer", &self.bearer)
            .finish()
    }
}

impl ControlPlane {
    /// Build a client around a bearer credential.
    pub fn new(cfg: ClientConfig, bearer: SecretString) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .read_timeout(cfg.stream_read_timeout)
            .user_agent(cfg.user_agent.clone())
            .build()
            .map_err(|e| ApiError::protocol("build HTTP client", e.to_string()))?;
        Ok(Self {
            http,
            cfg: Arc::new(cfg),
            bearer,
            clock: Arc::new(TokioClock),
            jitter: Arc::new(RandJitter),
        })
    }

    pub fn with_environment_key(cfg: ClientConfig, key: &EnvironmentKey) -> Result<Self, ApiError> {
        Self::new(cfg, SecretString::new(key.expose()))
    }

    pub fn with_sessions_token(cfg: ClientConfig, token: &SessionsToken) -> Result<Self, ApiError> {
        Self::new(cfg, SecretString::new(token.expose()))
    }

    /// The same client (connection pool, config) with another credential.
    pub fn with_bearer(&self, bearer: SecretString) -> Self {
        Self {
            bearer,
            ..self.clone()
        }
    }

    /// Replace the clock and jitter (tests).
    pub fn with_time(mut self, clock: Arc<dyn Clock>, jitter: Arc<dyn Jitter>) -> Self {
        self.clock = clock;
        self.jitter = jitter;
        self
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn jitter(&self) -> &Arc<dyn Jitter> {
        &self.jitter
    }

    // -------------------------------------------------------------------
    // Core
    // -------------------------------------------------------------------

    fn build(&self, req: &Req) -> reqwest::RequestBuilder {
        let mut url = format!("{}{}", self.cfg.base_url, req.path);
        let q = req.query.encode();
        if !q.is_empty() {
            url.push('?');
            url.push_str(&q);
        }
        let mut b = self
            .http
            .request(req.method.clone(), url)
            .header("authorization", format!("Bearer {}", self.bearer.expose()))
            .header("anthropic-version", &self.cfg.anthropic_version)
            .header("accept", req.accept);
        if let Some(beta) = req.family.beta() {
            b = b.header("anthropic-beta", beta);
        }
        if let Some(w) = &req.worker_id {
            b = b.header("Anthropic-Worker-ID", w);
        }
        if let Some(body) = &req.body {
            b = b
                .header("content-type", "application/json")
                // Explicit, so empty-body POSTs (ack, heartbeat) carry `Content-Length: 0`.
                .header("content-length", body.len())
                .body(body.clone());
        }
        if let Some(t) = req.timeout.or(Some(self.cfg.request_timeout)) {
            b = b.timeout(t);
        }
        b
    }

    /// Send with retries; returns the first 2xx (or `terminal_ok`) response.
    async fn execute(&self, req: &Req) -> Result<reqwest::Response, ApiError> {
        let policy = req.retry.unwrap_or(self.cfg.retry);
        let mut retry = 0u32;
        loop {
            let outcome = self.build(req).send().await;
            let err = match outcome {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if resp.status().is_success() || req.terminal_ok.contains(&status) {
                        return Ok(resp);
                    }
                    let should_retry = resp
                        .headers()
                        .get("x-should-retry")
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v.eq_ignore_ascii_case("true"));
                    let mut e = error_from_response(req.operation(), resp).await;
                    if let Some(sr) = should_retry
                        && e.kind != ErrorKind::LeaseLost
                    {
                        e.kind = if sr {
                            ErrorKind::Transient
                        } else {
                            ErrorKind::Permanent
                        };
                    }
                    e
                }
                Err(e) => transport_error(req.operation(), &e),
            };
            if !err.is_retryable() || retry >= policy.max_retries {
                return Err(err);
            }
            let delay = policy.delay(retry, err.retry_after, self.jitter.as_ref());
            tracing::debug!(operation = %err.operation, status = ?err.status, retry, ?delay, "retrying control-plane call");
            self.clock.sleep(delay).await;
            retry += 1;
        }
    }

    async fn json<T: DeserializeOwned>(&self, req: Req) -> Result<T, ApiError> {
        let op = req.operation();
        let resp = self.execute(&req).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport_error(op.clone(), &e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::protocol(op, format!("unexpected response body: {e}")))
    }

    fn env_path(env: &str, rest: &str) -> String {
        format!("/v1/environments/{}/work{rest}", seg(env))
    }

    // -------------------------------------------------------------------
    // Work endpoints (§5)
    // -------------------------------------------------------------------

    /// `GET /v1/environments/{env}/work/poll`. `200 null`, `204` and an empty body
    /// all mean "no work".
    pub async fn poll(
        &self,
        env: &str,
        params: PollParams,
        worker_id: &str,
    ) -> Result<Option<WorkItem>, ApiError> {
        let mut req = Req::get(Family::ManagedAgents, Self::env_path(env, "/poll"));
        req.query
            .opt(
                "block_ms",
                params.block_ms.filter(|b| *b > 0).map(|b| b.min(999)),
            )
            .opt(
                "reclaim_older_than_ms",
                params.reclaim_older_than_ms.map(|r| r.max(1)),
            );
        req.worker_id = Some(worker_id.to_owned());
        let op = req.operation();
        let resp = self.execute(&req).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport_error(op.clone(), &e))?;
        let text = std::str::from_utf8(&bytes).unwrap_or("").trim();
        if text.is_empty() || text == "null" {
            return Ok(None);
        }
        serde_json::from_str(text)
            .map(Some)
            .map_err(|e| ApiError::protocol(op, format!("unexpected poll response: {e}")))
    }

    /// `POST …/work/{id}/ack` (empty body).
    pub async fn ack(&self, env: &str, work_id: &str) -> Result<WorkItem, ApiError> {
        let path = Self::env_path(env, &format!("/{}/ack", seg(work_id)));
        self.json(Req::post(Family::ManagedAgents, path, None))
            .await
    }

    /// `POST …/work/{id}/heartbeat?expected_last_heartbeat=…` (empty body). Not
    /// retried here; `timeout` bounds the call (the current heartbeat interval).
    /// 412 → [`ErrorKind::LeaseLost`] with `current_state`.
    pub async fn heartbeat(
        &self,
        env: &str,
        work_id: &str,
        expected_last_heartbeat: &str,
        desired_ttl_seconds: Option<u64>,
        timeout: Duration,
    ) -> Result<Heartbeat, ApiError> {
        let path = Self::env_path(env, &format!("/{}/heartbeat", seg(work_id)));
        let mut req = Req::post(Family::ManagedAgents, path, None);
        req.query
            .push("expected_last_heartbeat", expected_last_heartbeat)
            .opt("desired_ttl_seconds", desired_ttl_seconds);
        req.timeout = Some(timeout);
        req.retry = Some(RetryPolicy::NONE);
        self.json(req).await
    }

    /// `POST …/work/{id}/stop` with `{"force": true}` or `{}`. 409 = already stopped
    /// = success. Transient failures get the core retries, nothing more (best effort).
    pub async fn stop(
        &self,
        env: &str,
        work_id: &str,
        force: bool,
    ) -> Result<StopOutcome, ApiError> {
        let path = Self::env_path(env, &format!("/{}/stop", seg(work_id)));
        let body = if force {
            json!({"force": true})
        } else {
            json!({})
        };
        let mut req = Req::post(Family::ManagedAgents, path, Some(&body));
        req.terminal_ok = &[409];
        let resp = self.execute(&req).await?;
        if resp.status().as_u16() == 409 {
            return Ok(StopOutcome::AlreadyStopped);
        }
        Ok(StopOutcome::Stopped)
    }

    /// `GET …/work` (one page).
    pub async fn list_work(
        &self,
        env: &str,
        limit: Option<u32>,
        page: Option<&str>,
    ) -> Result<Page<WorkItem>, ApiError> {
        let mut req = Req::get(Family::ManagedAgents, Self::env_path(env, ""));
        req.query.opt("limit", limit).opt("page", page);
        self.json(req).await
    }

    /// `GET …/work/{id}` (API key only; not used by the runner).
    pub async fn retrieve_work(&self, env: &str, work_id: &str) -> Result<WorkItem, ApiError> {
        self.json(Req::get(
            Family::ManagedAgents,
            Self::env_path(env, &format!("/{}", seg(work_id))),
        ))
        .await
    }

    /// `POST …/work/{id}` metadata merge patch (`null` deletes a key; API key only).
    pub async fn update_work_metadata(
        &self,
        env: &str,
        work_id: &str,
        metadata: &Value,
    ) -> Result<WorkItem, ApiError> {
        let body = json!({ "metadata": metadata });
        let path = Self::env_path(env, &format!("/{}", seg(work_id)));
        self.json(Req::post(Family::ManagedAgents, path, Some(&body)))
            .await
    }

    /// `GET …/work/stats`.
    pub async fn stats(&self, env: &str) -> Result<QueueStats, ApiError> {
        self.json(Req::get(
            Family::ManagedAgents,
            Self::env_path(env, "/stats"),
        ))
        .await
    }

    // -------------------------------------------------------------------
    // Sessions (§10.1–10.4)
    // -------------------------------------------------------------------

    /// `GET /v1/sessions/{id}`.
    pub async fn retrieve_session(&self, session_id: &str) -> Result<Session, ApiError> {
        self.json(Req::get(
            Family::ManagedAgents,
            format!("/v1/sessions/{}", seg(session_id)),
        ))
        .await
    }

    /// One page of `GET /v1/sessions/{id}/events`.
    pub async fn list_events(
        &self,
        session_id: &str,
        params: &ListEventsParams,
        page: Option<&str>,
    ) -> Result<Page<SessionEvent>, ApiError> {
        let mut req = Req::get(
            Family::ManagedAgents,
            format!("/v1/sessions/{}/events", seg(session_id)),
        );
        req.query = params.query(page);
        self.json(req).await
    }

    /// Every page of the event listing, in order (spec §2.5).
    pub async fn list_all_events(
        &self,
        session_id: &str,
        params: &ListEventsParams,
    ) -> Result<Vec<SessionEvent>, ApiError> {
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let p = self
                .list_events(session_id, params, page.as_deref())
                .await?;
            let next = p.next_cursor().map(str::to_owned);
            out.extend(p.data);
            match next {
                Some(n) if Some(&n) != page.as_ref() => page = Some(n),
                _ => return Ok(out),
            }
        }
    }

    /// Open `GET /v1/sessions/{id}/events/stream`. Only the connection is retried
    /// (core policy); once open, failures surface through [`EventStream::next`].
    pub async fn stream_events(&self, session_id: &str) -> Result<EventStream, ApiError> {
        let mut req = Req::get(
            Family::ManagedAgents,
            format!("/v1/sessions/{}/events/stream", seg(session_id)),
        );
        // The stream lives as long as the server keeps it; only the per-read
        // timeout (client-level) applies.
        req.timeout = Some(Duration::from_secs(365 * 24 * 3600));
        let op = req.operation();
        let resp = self.execute(&req).await?;
        Ok(EventStream {
            body: Box::pin(resp.bytes_stream()),
            parser: SseParser::new(),
            pending: VecDeque::new(),
            operation: op,
            done: false,
        })
    }

    /// `POST /v1/sessions/{id}/events` with `{"events": [...]}`. Any 2xx is success;
    /// the accepted events are returned when the server lists them.
    pub async fn send_events(
        &self,
        session_id: &str,
        events: &[OutgoingEvent],
    ) -> Result<Vec<SessionEvent>, ApiError> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            events: &'a [OutgoingEvent],
        }
        // Serialised straight from the structs so the field order is the natural one
        // (`type` first), not the sorted order of a `serde_json::Value` map.
        let body = serde_json::to_vec(&Body { events })
            .map_err(|e| ApiError::protocol("serialise events", e.to_string()))?;
        let mut req = Req::new(
            reqwest::Method::POST,
            Family::ManagedAgents,
            format!("/v1/sessions/{}/events", seg(session_id)),
        );
        req.body = Some(body);
        let op = req.operation();
        let resp = self.execute(&req).await?;
        let bytes = resp.bytes().await.map_err(|e| transport_error(op, &e))?;
        Ok(serde_json::from_slice::<Page<SessionEvent>>(&bytes)
            .map(|p| p.data)
            .unwrap_or_default())
    }

    // -------------------------------------------------------------------
    // Skills (§10.5): no anthropic-beta header
    // -------------------------------------------------------------------

    /// `GET /v1/skills/{id}/versions/{version}` (`version` may be `latest`).
    pub async fn retrieve_skill_version(
        &self,
        skill_id: &str,
        version: &str,
    ) -> Result<SkillVersion, ApiError> {
        self.json(Req::get(
            Family::Skills,
            format!("/v1/skills/{}/versions/{}", seg(skill_id), seg(version)),
        ))
        .await
    }

    /// `GET /v1/skills/{id}/versions/{version_id}/content` with
    /// `Accept: application/binary`. Returns the byte stream of the archive.
    pub async fn download_skill_version(
        &self,
        skill_id: &str,
        version_id: &str,
    ) -> Result<impl Stream<Item = Result<Bytes, ApiError>> + use<>, ApiError> {
        let mut req = Req::get(
            Family::Skills,
            format!(
                "/v1/skills/{}/versions/{}/content",
                seg(skill_id),
                seg(version_id)
            ),
        );
        req.accept = "application/binary";
        let op = req.operation();
        let resp = self.execute(&req).await?;
        Ok(resp
            .bytes_stream()
            .map(move |r| r.map_err(|e| transport_error(op.clone(), &e))))
    }

    // -------------------------------------------------------------------
    // Memory stores (§10.6): anthropic-beta agent-memory-2026-07-22
    // -------------------------------------------------------------------

    fn memory_path(store: &str, rest: &str) -> String {
        format!("/v1/memory_stores/{}/memories{rest}", seg(store))
    }

    /// One page of `GET /v1/memory_stores/{id}/memories`.
    pub async fn list_memories(
        &self,
        store: &str,
        params: &ListMemoriesParams,
        page: Option<&str>,
    ) -> Result<Page<Memory>, ApiError> {
        let mut req = Req::get(Family::Memory, Self::memory_path(store, ""));
        req.query
            .opt("view", params.view.map(MemoryView::as_str))
            .opt("limit", params.limit)
            .opt("path_prefix", params.path_prefix.as_deref())
            .opt("depth", params.depth)
            .opt("page", page);
        self.json(req).await
    }

    /// Every page of the memory listing.
    pub async fn list_all_memories(
        &self,
        store: &str,
        params: &ListMemoriesParams,
    ) -> Result<Vec<Memory>, ApiError> {
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let p = self.list_memories(store, params, page.as_deref()).await?;
            let next = p.next_cursor().map(str::to_owned);
            out.extend(p.data);
            match next {
                Some(n) if Some(&n) != page.as_ref() => page = Some(n),
                _ => return Ok(out),
            }
        }
    }

    /// `GET /v1/memory_stores/{id}/memories/{memory_id}?view=…`.
    pub async fn retrieve_memory(
        &self,
        store: &str,
        memory_id: &str,
        view: MemoryView,
    ) -> Result<Memory, ApiError> {
        let mut req = Req::get(
            Family::Memory,
            Self::memory_path(store, &format!("/{}", seg(memory_id))),
        );
        req.query.push("view", view.as_str());
        self.json(req).await
    }

    /// `POST /v1/memory_stores/{id}/memories` (create).
    pub async fn create_memory(
        &self,
        store: &str,
        path: &str,
        content: &str,
    ) -> Result<Memory, ApiError> {
        let body = json!({ "path": path, "content": content });
        self.json(Req::post(
            Family::Memory,
            Self::memory_path(store, ""),
            Some(&body),
        ))
        .await
    }

    /// `POST /v1/memory_stores/{id}/memories/{memory_id}` (update, optionally with a
    /// `content_sha256` precondition; 409 = changed remotely).
    pub async fn update_memory(
        &self,
        store: &str,
        memory_id: &str,
        content: &str,
        precondition_sha256: Option<&str>,
    ) -> Result<Memory, ApiError> {
        let mut body = json!({ "content": content });
        if let Some(sha) = precondition_sha256 {
            body["precondition"] = json!({"type": "content_sha256", "content_sha256": sha});
        }
        let mut req = Req::post(
            Family::Memory,
            Self::memory_path(store, &format!("/{}", seg(memory_id))),
            Some(&body),
        );
        // 409 means "changed remotely": the sync decides, not a retry loop.
        req.retry = Some(RetryPolicy::NONE);
        self.json(req).await
    }

    /// `DELETE /v1/memory_stores/{id}/memories/{memory_id}?expected_content_sha256=…`.
    pub async fn delete_memory(
        &self,
        store: &str,
        memory_id: &str,
        expected_sha256: Option<&str>,
    ) -> Result<DeleteOutcome, ApiError> {
        let mut req = Req::new(
            reqwest::Method::DELETE,
            Family::Memory,
            Self::memory_path(store, &format!("/{}", seg(memory_id))),
        );
        req.query.opt("expected_content_sha256", expected_sha256);
        req.terminal_ok = &[404];
        req.retry = Some(RetryPolicy::NONE);
        let resp = self.execute(&req).await?;
        Ok(if resp.status().as_u16() == 404 {
            DeleteOutcome::NotFound
        } else {
            DeleteOutcome::Deleted
        })
    }
}

/// A live session event stream.
pub struct EventStream {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    parser: SseParser,
    pending: VecDeque<Result<SessionEvent, ApiError>>,
    operation: String,
    done: bool,
}

impl EventStream {
    /// Next session event. `None` = the server closed the stream (reconnect);
    /// `Some(Err)` = a transport failure or an `event: error` frame (transient;
    /// reconnect). Pings, empty frames and frames without a JSON `type` are skipped.
    pub async fn next(&mut self) -> Option<Result<SessionEvent, ApiError>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.done {
                return None;
            }
            match self.body.next().await {
                None => {
                    self.done = true;
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(transport_error(self.operation.clone(), &e)));
                }
                Some(Ok(chunk)) => match self.parser.push(&chunk) {
                    Err(e) => {
                        self.done = true;
                        return Some(Err(ApiError::transport(
                            self.operation.clone(),
                            e.to_string(),
                        )));
                    }
                    Ok(frames) => {
                        for f in frames {
                            if let Some(item) = self.interpret(f) {
                                let is_err = item.is_err();
                                self.pending.push_back(item);
                                if is_err {
                                    // An error frame ends this connection.
                                    self.done = true;
                                    break;
                                }
                            }
                        }
                    }
                },
            }
        }
    }

    fn interpret(&self, frame: crate::sse::SseFrame) -> Option<Result<SessionEvent, ApiError>> {
        match frame.event.as_deref() {
            Some("ping") => None,
            Some("error") => {
                let env: ErrorEnvelope = serde_json::from_str(&frame.data).unwrap_or_default();
                let mut e = ApiError::transport(
                    self.operation.clone(),
                    env.error
                        .message
                        .unwrap_or_else(|| "error event on the session stream".into()),
                );
                e.error_type = env.error.error_type;
                e.error_code = env.error.details.and_then(|d| d.error_code);
                Some(Err(e))
            }
            _ if frame.data.trim().is_empty() => None,
            event_name => match parse_event_json(&frame.data) {
                Ok(ev) if ev.event_type.is_empty() => {
                    tracing::debug!(event = ?event_name, "skipping SSE frame without a JSON `type`");
                    None
                }
                Ok(ev) => Some(Ok(ev)),
                Err(e) => {
                    tracing::warn!(event = ?event_name, error = %e, "skipping SSE frame with invalid JSON");
                    None
                }
            },
        }
    }
}

fn transport_error(operation: String, e: &reqwest::Error) -> ApiError {
    // reqwest's Display for connection errors can include the URL (ids only, no
    // credentials: they are in headers). Walk the source chain for the cause.
    let mut msg = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else if e.is_body() || e.is_decode() {
        "response body interrupted".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    ApiError::transport(operation, msg)
}

async fn error_from_response(operation: String, resp: reqwest::Response) -> ApiError {
    let status = resp.status().as_u16();
    let request_id = resp
        .headers()
        .get("request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let retry_after = parse_retry_after(resp.headers());
    // Cap what we read from an error body.
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        body.extend_from_slice(&chunk);
        if body.len() > 64 * 1024 {
            break;
        }
    }
    let env: ErrorEnvelope = serde_json::from_slice(&body).unwrap_or_default();
    let details = env.error.details;
    let mut kind = classify_status(status);
    let current_state = details.as_ref().and_then(|d| d.current_state.clone());
    if status == 412 && operation.ends_with("/heartbeat") {
        kind = ErrorKind::LeaseLost;
    }
    ApiError {
        kind,
        operation,
        status: Some(status),
        error_type: env.error.error_type,
        error_code: details.and_then(|d| d.error_code),
        message: env.error.message.unwrap_or_default(),
        request_id,
        retry_after,
        current_state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_encoding_matches_spec_2_4() {
        let mut q = Query::default();
        q.push("types[]", "agent.tool_use")
            .push("types[]", "user.tool_result")
            .push("created_at[gt]", "2026-01-01T00:00:01.123456+00:00")
            .opt("limit", None::<u32>)
            .push("expected_last_heartbeat", "a b/c?d&e=f");
        assert_eq!(
            q.encode(),
            "types[]=agent.tool_use&types[]=user.tool_result&created_at[gt]=2026-01-01T00%3A00%3A01.123456%2B00%3A00&expected_last_heartbeat=a%20b%2Fc%3Fd%26e%3Df"
        );
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("sesn_011CZkZ"), "sesn_011CZkZ");
        assert_eq!(seg("a/b c"), "a%2Fb%20c");
        assert_eq!(seg(".."), "%2E%2E");
    }

    #[test]
    fn base_url_override() {
        assert_eq!(
            ClientConfig::with_base_url(Some("http://x:1/")).base_url,
            "http://x:1"
        );
        assert_eq!(
            ClientConfig::with_base_url(Some("  ")).base_url,
            DEFAULT_BASE_URL
        );
        assert_eq!(ClientConfig::with_base_url(None).base_url, DEFAULT_BASE_URL);
    }

    #[test]
    fn debug_hides_bearer() {
        let c =
            ControlPlane::new(ClientConfig::default(), SecretString::new("sk-ant-SECRET")).unwrap();
        assert!(!format!("{c:?}").contains("SECRET"));
    }
}
