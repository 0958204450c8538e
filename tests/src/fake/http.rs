//! HTTP layer: routing, header/credential checks, fault injection, recording.
//!
//! Everything goes through one fallback handler with hand-written routing so
//! the raw (still percent-encoded) path and query can be recorded and every
//! response gets a `request-id`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State as AxumState};
use axum::response::Response;
use http::{HeaderMap, Method};
use serde_json::{Value, json};

use super::errors::{ApiError, json_response};
use super::faults::{Endpoint, Injected};
use super::memory::{ListParams, View};
use super::queue::{decode_cursor, encode_cursor};
use super::recording::RecordedRequest;
use super::sessions::ListQuery;
use super::sse::{StreamOptions, stream_response};
use super::state::{Shared, TokenScope};
use super::util::{parse_query, percent_decode, random_alnum};

/// The beta every `/v1/environments/**` and `/v1/sessions/**` call must carry.
pub const MANAGED_AGENTS_BETA: &str = "managed-agents-2026-04-01";
/// The only beta accepted on `/v1/memory_stores/**`.
pub const MEMORY_BETA: &str = "agent-memory-2026-07-22";

const MAX_BODY: usize = 32 * 1024 * 1024;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Family {
    Environments,
    Sessions,
    Skills,
    Memory,
    Other,
}

#[derive(Debug)]
enum Route {
    Poll,
    Stats,
    WorkList,
    WorkRetrieve(String),
    WorkUpdate(String),
    Ack(String),
    Heartbeat(String),
    Stop(String),
    SessionRetrieve(String),
    EventsList(String),
    EventsStream(String),
    EventsSend(String),
    /// `(skill_id, version)`; `version` may be `latest`.
    SkillRetrieve(String, String),
    /// `(skill_id, version_id)`.
    SkillContent(String, String),
    MemoryList(String),
    MemoryCreate(String),
    /// `(store, memory_id)`.
    MemoryRetrieve(String, String),
    MemoryUpdate(String, String),
    MemoryDelete(String, String),
    NotFound,
    MethodNotAllowed,
}

struct Matched {
    route: Route,
    family: Family,
    env: Option<String>,
}

impl Matched {
    fn endpoint(&self) -> Option<Endpoint> {
        Some(match self.route {
            Route::Poll => Endpoint::Poll,
            Route::Stats => Endpoint::Stats,
            Route::WorkList => Endpoint::WorkList,
            Route::WorkRetrieve(_) => Endpoint::WorkRetrieve,
            Route::Ack(_) => Endpoint::Ack,
            Route::Heartbeat(_) => Endpoint::Heartbeat,
            Route::Stop(_) => Endpoint::Stop,
            Route::SessionRetrieve(_) => Endpoint::SessionRetrieve,
            Route::EventsList(_) => Endpoint::EventsList,
            Route::EventsStream(_) => Endpoint::EventsStream,
            Route::EventsSend(_) => Endpoint::EventsSend,
            Route::SkillRetrieve(..) => Endpoint::SkillRetrieve,
            Route::SkillContent(..) => Endpoint::SkillContent,
            Route::MemoryList(_) => Endpoint::MemoryList,
            Route::MemoryCreate(_) => Endpoint::MemoryCreate,
            Route::MemoryRetrieve(..) => Endpoint::MemoryRetrieve,
            Route::MemoryUpdate(..) => Endpoint::MemoryUpdate,
            Route::MemoryDelete(..) => Endpoint::MemoryDelete,
            _ => return None,
        })
    }

    fn work_id(&self) -> Option<&str> {
        match &self.route {
            Route::WorkRetrieve(id)
            | Route::WorkUpdate(id)
            | Route::Ack(id)
            | Route::Heartbeat(id)
            | Route::Stop(id) => Some(id),
            _ => None,
        }
    }
}

fn parse_route(method: &Method, path: &str) -> Matched {
    let segs: Vec<String> = path
        .split('/')
        .skip(1)
        .map(|s| percent_decode(s, false))
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let get = method == Method::GET;
    let post = method == Method::POST;
    let delete = method == Method::DELETE;
    let pick = |ok: bool, r: Route| if ok { r } else { Route::MethodNotAllowed };
    let s = |x: &str| x.to_string();
    match segs.as_slice() {
        ["v1", "environments", env, rest @ ..] => {
            let route = match rest {
                ["work"] => pick(get, Route::WorkList),
                ["work", "poll"] => pick(get, Route::Poll),
                ["work", "stats"] => pick(get, Route::Stats),
                ["work", id] if get => Route::WorkRetrieve(s(id)),
                ["work", id] => pick(post, Route::WorkUpdate(s(id))),
                ["work", id, "ack"] => pick(post, Route::Ack(s(id))),
                ["work", id, "heartbeat"] => pick(post, Route::Heartbeat(s(id))),
                ["work", id, "stop"] => pick(post, Route::Stop(s(id))),
                _ => Route::NotFound,
            };
            Matched {
                route,
                family: Family::Environments,
                env: Some(s(env)),
            }
        }
        ["v1", "sessions", sid, rest @ ..] => {
            let route = match rest {
                [] => pick(get, Route::SessionRetrieve(s(sid))),
                ["events"] if get => Route::EventsList(s(sid)),
                ["events"] => pick(post, Route::EventsSend(s(sid))),
                ["events", "stream"] => pick(get, Route::EventsStream(s(sid))),
                _ => Route::NotFound,
            };
            Matched {
                route,
                family: Family::Sessions,
                env: None,
            }
        }
        ["v1", "skills", skill, "versions", v, rest @ ..] => {
            let route = match rest {
                [] => pick(get, Route::SkillRetrieve(s(skill), s(v))),
                ["content"] => pick(get, Route::SkillContent(s(skill), s(v))),
                _ => Route::NotFound,
            };
            Matched {
                route,
                family: Family::Skills,
                env: None,
            }
        }
        ["v1", "skills", ..] => Matched {
            route: Route::NotFound,
            family: Family::Skills,
            env: None,
        },
        ["v1", "memory_stores", store, "memories", rest @ ..] => {
            let route = match rest {
                [] if get => Route::MemoryList(s(store)),
                [] => pick(post, Route::MemoryCreate(s(store))),
                [id] if get => Route::MemoryRetrieve(s(store), s(id)),
                [id] if delete => Route::MemoryDelete(s(store), s(id)),
                [id] => pick(post, Route::MemoryUpdate(s(store), s(id))),
                _ => Route::NotFound,
            };
            Matched {
                route,
                family: Family::Memory,
                env: None,
            }
        }
        ["v1", "memory_stores", ..] => Matched {
            route: Route::NotFound,
            family: Family::Memory,
            env: None,
        },
        _ => Matched {
            route: Route::NotFound,
            family: Family::Other,
            env: None,
        },
    }
}

struct Ctx {
    method: Method,
    headers: HeaderMap,
    query: Vec<(String, String)>,
    body: bytes::Bytes,
}

impl Ctx {
    fn header(&self, name: &str) -> Option<String> {
        let vals: Vec<String> = self
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        (!vals.is_empty()).then(|| vals.join(","))
    }

    fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn int_param(&self, key: &str) -> Result<Option<u64>, ApiError> {
        self.param(key)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    ApiError::invalid(format!("{key}: expected an integer, got {v:?}"))
                })
            })
            .transpose()
    }

    fn json_body(&self) -> Result<Value, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(json!({}));
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| ApiError::invalid(format!("request body is not valid JSON: {e}")))
    }
}

async fn handle(AxumState(shared): AxumState<Arc<Shared>>, req: Request) -> Response {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().unwrap_or("").to_string();
    let ctx = Ctx {
        method: parts.method.clone(),
        headers: parts.headers.clone(),
        query: parse_query(&raw_query),
        body: body.clone(),
    };
    shared.expire_leases();
    let matched = parse_route(&parts.method, &path);

    let (injected, latency) = {
        let mut st = shared.lock();
        let latency = st.faults.faults.latency;
        let retry_after = st.faults.faults.retry_after_ms;
        let injected = matched
            .endpoint()
            .and_then(|e| st.faults.decide(e).map(|i| (e, i)))
            .map(|(endpoint, Injected::Status(status))| {
                let mut err = match (endpoint, status) {
                    (Endpoint::Heartbeat, 412) => {
                        st.precondition_failed(matched.work_id().unwrap_or_default())
                    }
                    (Endpoint::Poll, 404) => {
                        st.consume_next(Instant::now());
                        ApiError::not_found("EnvironmentInstance not found for session")
                    }
                    (_, 500) => ApiError::new(500, "api_error", "injected fault"),
                    (_, s) => ApiError::status(s, format!("injected fault ({s})")),
                };
                if status >= 500 || status == 429 {
                    err.retry_after_ms = retry_after;
                }
                err.into_response()
            });
        (injected, latency)
    };

    let mut resp = match injected {
        Some(r) => r,
        None => {
            let resp = dispatch(&shared, &matched, &ctx)
                .await
                .unwrap_or_else(ApiError::into_response);
            // `Faults::lose_response`: the request took effect, the answer is lost.
            let lost = matched
                .endpoint()
                .is_some_and(|e| shared.lock().faults.take_lost_response(e));
            if lost {
                ApiError::new(
                    500,
                    "api_error",
                    "injected fault (processed, response lost)",
                )
                .into_response()
            } else {
                resp
            }
        }
    };
    if let Some(l) = latency {
        tokio::time::sleep(l).await;
    }
    let request_id = format!("req_{}", random_alnum(24));
    resp.headers_mut().insert(
        "request-id",
        http::HeaderValue::from_str(&request_id).expect("ascii"),
    );
    let status = resp.status().as_u16();
    tracing::debug!(method = %parts.method, %path, status, "fake control plane request");
    let record = RecordedRequest {
        method: parts.method.as_str().to_string(),
        path,
        query: raw_query,
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
        status,
        at,
    };
    shared.lock().requests.push(record);
    resp
}

fn check_headers(strict: bool, family: Family, ctx: &Ctx) -> Result<(), ApiError> {
    if !strict {
        return Ok(());
    }
    if ctx
        .header("anthropic-version")
        .is_none_or(|v| v.trim().is_empty())
    {
        return Err(ApiError::invalid(
            "missing required anthropic-version header",
        ));
    }
    let betas: Option<Vec<String>> = ctx.header("anthropic-beta").map(|v| {
        v.split(',')
            .map(|b| b.trim().to_string())
            .filter(|b| !b.is_empty())
            .collect()
    });
    let has = |want: &str| betas.as_ref().is_some_and(|b| b.iter().any(|x| x == want));
    match family {
        Family::Environments | Family::Sessions if !has(MANAGED_AGENTS_BETA) => {
            return Err(ApiError::invalid(format!(
                "anthropic-beta header must include {MANAGED_AGENTS_BETA} (got {:?})",
                ctx.header("anthropic-beta")
            )));
        }
        Family::Skills if betas.is_some() => {
            return Err(ApiError::invalid(
                "anthropic-beta header must not be sent on /v1/skills endpoints",
            ));
        }
        Family::Memory
            if betas
                .as_ref()
                .is_none_or(|b| b != &[MEMORY_BETA.to_string()]) =>
        {
            return Err(ApiError::invalid(format!(
                "anthropic-beta header must be exactly {MEMORY_BETA} on /v1/memory_stores endpoints"
            )));
        }
        _ => {}
    }
    if ctx.method == Method::POST {
        let ok = ctx.header("content-type").is_some_and(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
        if !ok {
            return Err(ApiError::invalid(
                "Content-Type header must be application/json on POST requests",
            ));
        }
    }
    Ok(())
}

enum Cred {
    EnvKey,
    Item(TokenScope),
}

fn authenticate(shared: &Shared, ctx: &Ctx) -> Result<Cred, ApiError> {
    let header = ctx.header("authorization").ok_or_else(|| {
        ApiError::unauthenticated("missing Authorization header (expected `Bearer <token>`)")
    })?;
    let token = header
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::unauthenticated("malformed Authorization header (expected `Bearer <token>`)")
        })?;
    if token == shared.config.environment_key {
        return Ok(Cred::EnvKey);
    }
    shared
        .lock()
        .tokens
        .get(token)
        .cloned()
        .map(Cred::Item)
        .ok_or_else(|| ApiError::unauthenticated("invalid bearer token"))
}

fn require_env_key(cred: &Cred) -> Result<(), ApiError> {
    match cred {
        Cred::EnvKey => Ok(()),
        Cred::Item(_) => Err(ApiError::forbidden(
            "this endpoint requires the environment key; a sessions token is not accepted",
        )),
    }
}

fn require_item(cred: &Cred, work_id: &str) -> Result<(), ApiError> {
    match cred {
        Cred::EnvKey => Ok(()),
        Cred::Item(s) if s.work_id == work_id => Ok(()),
        Cred::Item(_) => Err(ApiError::forbidden(
            "sessions token is not valid for this work item",
        )),
    }
}

fn require_session(cred: &Cred, sid: &str) -> Result<(), ApiError> {
    match cred {
        Cred::EnvKey => Ok(()),
        Cred::Item(s) if s.session_id.as_deref() == Some(sid) => Ok(()),
        Cred::Item(_) => Err(ApiError::forbidden(
            "sessions token is not valid for this session",
        )),
    }
}

/// Skills: the environment key and any sessions token, unless the
/// `skills_refuse_sessions_token` knob is set.
fn require_skills_cred(shared: &Shared, cred: &Cred) -> Result<(), ApiError> {
    match cred {
        Cred::Item(_) if shared.lock().skills.refuse_sessions_token => Err(ApiError::forbidden(
            "this credential may not access skills (sessions tokens refused by test knob)",
        )),
        _ => Ok(()),
    }
}

/// Memory stores: sessions tokens only (spec §3.4: environment key rejected).
fn require_memory_cred(cred: &Cred) -> Result<(), ApiError> {
    match cred {
        Cred::EnvKey => Err(ApiError::forbidden(
            "memory store endpoints do not accept the environment key; use the sessions token",
        )),
        Cred::Item(_) => Ok(()),
    }
}

/// Writes are refused when the token's session mounts the store read-only.
fn require_memory_writable(
    st: &super::state::State,
    cred: &Cred,
    store: &str,
) -> Result<(), ApiError> {
    let Cred::Item(scope) = cred else {
        return Ok(());
    };
    let read_only = scope
        .session_id
        .as_ref()
        .and_then(|sid| st.sessions.get(sid))
        .is_some_and(|s| {
            s.resources.iter().any(|r| {
                r["type"] == "memory_store"
                    && r["memory_store_id"] == store
                    && r["access"] == "read_only"
            })
        });
    if read_only {
        return Err(ApiError::forbidden(format!(
            "memory store {store} is mounted read_only for this session"
        )));
    }
    Ok(())
}

fn limit_param(ctx: &Ctx, default: u64) -> Result<usize, ApiError> {
    let limit = ctx.int_param("limit")?.unwrap_or(default);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit must be between 1 and 1000"));
    }
    Ok(limit as usize)
}

async fn dispatch(shared: &Arc<Shared>, m: &Matched, ctx: &Ctx) -> Result<Response, ApiError> {
    match m.route {
        Route::NotFound => return Err(ApiError::not_found("no such endpoint")),
        Route::MethodNotAllowed => {
            return Err(ApiError::new(
                405,
                "invalid_request_error",
                format!("method {} not allowed here", ctx.method),
            ));
        }
        _ => {}
    }
    check_headers(shared.config.strict_headers, m.family, ctx)?;
    let cred = authenticate(shared, ctx)?;
    if let Some(env) = &m.env
        && *env != shared.config.environment_id
    {
        return Err(ApiError::not_found(format!("environment {env} not found")));
    }
    let ok = |v: Value| Ok(json_response(200, &v));
    match &m.route {
        Route::Poll => {
            require_env_key(&cred)?;
            poll(shared, ctx).await
        }
        Route::Ack(id) => {
            require_env_key(&cred)?;
            ok(shared.lock().ack(id)?)
        }
        Route::Heartbeat(id) => {
            require_item(&cred, id)?;
            let expected = ctx.param("expected_last_heartbeat").ok_or_else(|| {
                ApiError::invalid("expected_last_heartbeat query parameter is required")
            })?;
            // Validated but ignored: the effective TTL is the configured one.
            if ctx.int_param("desired_ttl_seconds")? == Some(0) {
                return Err(ApiError::invalid("desired_ttl_seconds must be positive"));
            }
            ok(shared.lock().heartbeat(id, expected)?)
        }
        Route::Stop(id) => {
            require_item(&cred, id)?;
            let body = ctx.json_body()?;
            let force = match body.get("force") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(ApiError::invalid("force must be a boolean")),
            };
            if !body.is_object() {
                return Err(ApiError::invalid("request body must be a JSON object"));
            }
            ok(shared.lock().stop(id, force, body)?)
        }
        Route::WorkList => {
            require_env_key(&cred)?;
            let limit = limit_param(ctx, 20)?;
            let start = ctx
                .param("page")
                .filter(|p| !p.is_empty())
                .map(|p| decode_cursor("work", p))
                .transpose()?
                .unwrap_or(0);
            ok(shared.lock().list_work(limit, start))
        }
        Route::WorkRetrieve(id) => {
            // Deviation from §5.5 (API key only): the fake accepts the environment key.
            require_env_key(&cred)?;
            let st = shared.lock();
            let item = st
                .item(id)
                .ok_or_else(|| ApiError::not_found(format!("work item {id} not found")))?;
            ok(item.to_json(&st.environment_id, false))
        }
        Route::WorkUpdate(id) => {
            require_env_key(&cred)?;
            let body = ctx.json_body()?;
            let mut st = shared.lock();
            let env = st.environment_id.clone();
            let item = st
                .item_mut(id)
                .ok_or_else(|| ApiError::not_found(format!("work item {id} not found")))?;
            if let Some(meta) = body.get("metadata").and_then(Value::as_object) {
                for (k, v) in meta {
                    match v {
                        Value::Null => {
                            item.metadata.remove(k);
                        }
                        Value::String(_) => {
                            item.metadata.insert(k.clone(), v.clone());
                        }
                        _ => return Err(ApiError::invalid("metadata values must be strings")),
                    }
                }
            }
            ok(item.to_json(&env, false))
        }
        Route::Stats => {
            require_env_key(&cred)?;
            ok(shared.lock().stats(Instant::now()))
        }
        Route::SessionRetrieve(sid) => {
            require_session(&cred, sid)?;
            let st = shared.lock();
            ok(live_session(&st, sid)?.to_json())
        }
        Route::EventsList(sid) => {
            require_session(&cred, sid)?;
            let desc = match ctx.param("order").unwrap_or("asc") {
                "asc" => false,
                "desc" => true,
                o => {
                    return Err(ApiError::invalid(format!(
                        "order must be asc or desc, got {o:?}"
                    )));
                }
            };
            let dir = if desc { "desc" } else { "asc" };
            let q = ListQuery {
                limit: limit_param(ctx, 20)?,
                desc,
                cursor: ctx
                    .param("page")
                    .filter(|p| !p.is_empty())
                    .map(|p| decode_cursor(dir, p))
                    .transpose()?,
                types: ctx
                    .query
                    .iter()
                    .filter(|(k, _)| k == "types[]")
                    .map(|(_, v)| v.clone())
                    .collect(),
                created: ctx
                    .query
                    .iter()
                    .filter_map(|(k, v)| {
                        k.strip_prefix("created_at[")
                            .and_then(|r| r.strip_suffix(']'))
                            .map(|op| (op.to_string(), v.clone()))
                    })
                    .collect(),
            };
            let st = shared.lock();
            let (data, next) = live_session(&st, sid)?.list(&q);
            ok(json!({ "data": data, "next_page": next.map(|i| encode_cursor(dir, i)) }))
        }
        Route::EventsStream(sid) => {
            require_session(&cred, sid)?;
            let (rx, opts) = {
                let st = shared.lock();
                let sess = live_session(&st, sid)?;
                let f = &st.faults.faults;
                let opts = StreamOptions {
                    ping_interval: shared.config.ping_interval,
                    drop_after: f.stream_drop_after,
                    error_after: f.stream_error_after,
                    split_frames: f.split_frames,
                };
                (sess.tx.subscribe(), opts)
            };
            Ok(stream_response(rx, opts, shared.shutdown.subscribe()))
        }
        Route::EventsSend(sid) => {
            require_session(&cred, sid)?;
            let body = ctx.json_body()?;
            let events = body
                .get("events")
                .and_then(Value::as_array)
                .ok_or_else(|| ApiError::invalid("body must be {\"events\": [ … ]}"))?;
            if events.is_empty() {
                return Err(ApiError::invalid("events must not be empty"));
            }
            let mut st = shared.lock();
            live_session(&st, sid)?;
            let sess = st.sessions.get_mut(sid).expect("checked");
            let stored = sess.send_events(events)?;
            ok(json!({ "data": stored }))
        }
        Route::SkillRetrieve(skill, version) => {
            require_skills_cred(shared, &cred)?;
            ok(shared.lock().skills.retrieve(skill, version)?)
        }
        Route::SkillContent(skill, version_id) => {
            require_skills_cred(shared, &cred)?;
            shared.lock().skills.content(skill, version_id)
        }
        Route::MemoryList(store) => {
            require_memory_cred(&cred)?;
            let limit = ctx.int_param("limit")?.unwrap_or(20);
            if !(1..=100).contains(&limit) {
                return Err(ApiError::invalid("limit must be between 1 and 100"));
            }
            // Validated, otherwise ignored (see the memory module docs).
            ctx.int_param("depth")?;
            let params = ListParams {
                view: View::parse(ctx.param("view"), View::Basic)?,
                limit: limit as usize,
                page: ctx.param("page"),
                path_prefix: ctx.param("path_prefix"),
            };
            ok(shared.lock().memory.list(store, &params)?)
        }
        Route::MemoryRetrieve(store, id) => {
            require_memory_cred(&cred)?;
            let view = View::parse(ctx.param("view"), View::Full)?;
            ok(shared.lock().memory.retrieve(store, id, view)?)
        }
        Route::MemoryCreate(store) => {
            require_memory_cred(&cred)?;
            let body = ctx.json_body()?;
            let mut st = shared.lock();
            require_memory_writable(&st, &cred, store)?;
            ok(st.memory.create(store, &body)?)
        }
        Route::MemoryUpdate(store, id) => {
            require_memory_cred(&cred)?;
            let body = ctx.json_body()?;
            let mut st = shared.lock();
            require_memory_writable(&st, &cred, store)?;
            ok(st.memory.update(store, id, &body)?)
        }
        Route::MemoryDelete(store, id) => {
            require_memory_cred(&cred)?;
            let mut st = shared.lock();
            require_memory_writable(&st, &cred, store)?;
            let expected = ctx.param("expected_content_sha256");
            ok(st.memory.delete(store, id, expected)?)
        }
        Route::NotFound | Route::MethodNotAllowed => unreachable!("handled above"),
    }
}

fn live_session<'a>(
    st: &'a super::state::State,
    sid: &str,
) -> Result<&'a super::sessions::Session, ApiError> {
    st.sessions
        .get(sid)
        .filter(|s| !s.deleted)
        .ok_or_else(|| ApiError::not_found(format!("session {sid} not found")))
}

async fn poll(shared: &Arc<Shared>, ctx: &Ctx) -> Result<Response, ApiError> {
    let block_ms = ctx.int_param("block_ms")?;
    if let Some(b) = block_ms
        && !(1..=999).contains(&b)
    {
        return Err(ApiError::invalid("block_ms must be between 1 and 999"));
    }
    let reclaim = ctx.int_param("reclaim_older_than_ms")?.unwrap_or(5000);
    if reclaim < 1 {
        return Err(ApiError::invalid(
            "reclaim_older_than_ms must be at least 1",
        ));
    }
    let reclaim = Duration::from_millis(reclaim);
    let worker = ctx.header("anthropic-worker-id");
    shared.lock().note_worker(worker.as_deref(), Instant::now());
    let deadline = block_ms.map(|ms| Instant::now() + Duration::from_millis(ms));
    loop {
        let notified = shared.work_notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(item) = shared.lock().poll(reclaim, Instant::now()) {
            return Ok(json_response(200, &item));
        }
        let now = Instant::now();
        match deadline {
            Some(d) if now < d => {
                // Wake on enqueue; re-check periodically for reclaimable items.
                let slice = (d - now).min(Duration::from_millis(25));
                let _ = tokio::time::timeout(slice, notified).await;
                shared.expire_leases();
            }
            _ => return Ok(json_response(200, &Value::Null)),
        }
    }
}
