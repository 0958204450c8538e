//! A fake Claude Managed Agents control plane (environment work queue +
//! sessions + SSE), faithful to `/work/shared/spec/control-plane.md`.
//!
//! It is an independent second implementation of the spec (it does not use
//! `cma-shared`), used by the workspace's integration tests and by the
//! `fake-control-plane` binary.
//!
//! Module layout: `queue` (work items, lease), `sessions` (history, scripts,
//! result validation), `sse` (event stream), `skills` (skill versions and
//! archives), `memory` (memory stores), `faults`, `http` (routing, auth,
//! headers), `recording`, `state` (shared state), `util` (RFC 3339, ids,
//! percent-decoding).
//!
//! Choices for open questions are documented in the `queue`, `sessions`,
//! `skills` and `memory` modules. Deviations from the spec's credential matrix (§3.4): work
//! retrieve/update accept the environment key (the real API wants an API key);
//! sessions tokens stay valid after their item stopped.

mod errors;
mod faults;
mod http;
mod memory;
mod queue;
mod recording;
mod sessions;
mod skills;
mod sse;
mod state;
mod util;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use faults::{Endpoint, Faults};
pub use http::{MANAGED_AGENTS_BETA, MEMORY_BETA};
pub use memory::{MAX_MEMORY_BYTES, content_sha256};
pub use recording::RecordedRequest;
pub use sessions::{CallKind, ScriptStep, SessionScript, default_agent};

use faults::FaultState;
use queue::NO_HEARTBEAT;
use sessions::Session;
use state::Shared;
use util::new_id;

/// Configuration of a [`FakeControlPlane`].
#[derive(Clone, Debug)]
pub struct FakeConfig {
    /// Environment id in paths; default `env_fake01`.
    pub environment_id: String,
    /// The environment key (bearer); default `sk-ant-env-FAKEKEY0001`.
    pub environment_key: String,
    /// `ttl_seconds` reported by heartbeats and used for lease expiry; default 60.
    pub lease_ttl_seconds: u64,
    /// SSE ping cadence; default 15 s.
    pub ping_interval: Duration,
    /// Enforce `anthropic-version`, `anthropic-beta` and POST `Content-Type`; default true.
    pub strict_headers: bool,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            environment_id: "env_fake01".into(),
            environment_key: "sk-ant-env-FAKEKEY0001".into(),
            lease_ttl_seconds: 60,
            ping_interval: Duration::from_secs(15),
            strict_headers: true,
        }
    }
}

/// A queued work item created by a helper.
#[derive(Clone, Debug)]
pub struct CreatedSession {
    /// `sesn_…`
    pub session_id: String,
    /// `work_…` of the queued item.
    pub work_id: String,
    /// The item's `secret`, exactly as poll returns it.
    pub secret: String,
    /// The `sessions_token` encoded inside `secret`.
    pub sessions_token: String,
}

struct Inner {
    shared: Arc<Shared>,
    server: Mutex<Option<JoinHandle<()>>>,
    ticker: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Ends SSE streams and lets the server close connections gracefully.
        let _ = self.shared.shutdown.send(true);
        self.ticker.abort();
    }
}

/// Handle to a running fake. Cheap to clone; the server shuts down when the
/// last clone is dropped (or on [`FakeControlPlane::shutdown`]).
#[derive(Clone)]
pub struct FakeControlPlane {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FakeControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeControlPlane")
            .field("base_url", &self.inner.shared.base_url)
            .finish_non_exhaustive()
    }
}

impl FakeControlPlane {
    /// Starts the fake on `127.0.0.1:0`. Panics if it cannot bind.
    pub async fn start(config: FakeConfig) -> Self {
        Self::try_start(config, 0)
            .await
            .expect("bind fake control plane")
    }

    /// Starts the fake on `127.0.0.1:port` (`0` = any free port).
    pub async fn try_start(config: FakeConfig, port: u16) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config, format!("http://{addr}")));
        let router = http::router(shared.clone());
        let mut shutdown = shared.shutdown.subscribe();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = shutdown.wait_for(|v| *v).await;
                })
                .await;
        });
        let weak = Arc::downgrade(&shared);
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                match weak.upgrade() {
                    Some(s) => s.expire_leases(),
                    None => return,
                }
            }
        });
        Ok(FakeControlPlane {
            inner: Arc::new(Inner {
                shared,
                server: Mutex::new(Some(server)),
                ticker,
            }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        self.shared().base_url.clone()
    }

    /// The configured environment id.
    pub fn environment_id(&self) -> String {
        self.shared().config.environment_id.clone()
    }

    /// The configured environment key.
    pub fn environment_key(&self) -> String {
        self.shared().config.environment_key.clone()
    }

    /// The configuration the fake runs with.
    pub fn config(&self) -> FakeConfig {
        self.shared().config.clone()
    }

    // ------------------------------------------------------------------ queue

    fn created(&self, work_id: String) -> CreatedSession {
        let st = self.shared().lock();
        let item = st.item(&work_id).expect("just created");
        CreatedSession {
            session_id: item.data_id.clone(),
            work_id,
            secret: item.secret.clone(),
            sessions_token: item.token.clone(),
        }
    }

    /// Creates a scripted session (history: `user.message`, `status_running`,
    /// first call) and queues a work item for it.
    pub fn create_session(&self, script: SessionScript) -> CreatedSession {
        let work_id = {
            let mut st = self.shared().lock();
            let sid = new_id("sesn");
            let mut sess = Session::new(sid.clone(), st.environment_id.clone(), script);
            sess.start();
            st.sessions.insert(sid.clone(), sess);
            st.create_work("session", sid)
        };
        self.shared().work_notify.notify_waiters();
        self.created(work_id)
    }

    /// Queues a `healthcheck` item; returns its work id.
    pub fn enqueue_healthcheck(&self) -> String {
        let id = self
            .shared()
            .lock()
            .create_work("healthcheck", new_id("hc"));
        self.shared().work_notify.notify_waiters();
        id
    }

    /// Queues a new work item (own secret and token) for an existing session.
    pub fn enqueue_for_session(&self, session_id: &str) -> CreatedSession {
        let work_id = {
            let mut st = self.shared().lock();
            assert!(
                st.sessions.contains_key(session_id),
                "unknown session {session_id}"
            );
            st.create_work("session", session_id.to_string())
        };
        self.shared().work_notify.notify_waiters();
        self.created(work_id)
    }

    fn with_item<T>(&self, work_id: &str, f: impl FnOnce(&queue::WorkItem, &str) -> T) -> T {
        let out = {
            let st = self.shared().lock();
            st.item(work_id).map(|i| f(i, &st.environment_id))
        };
        out.unwrap_or_else(|| panic!("unknown work item {work_id}"))
    }

    /// The work object as GET would return it (`secret: null`).
    pub fn work_item(&self, work_id: &str) -> Value {
        self.with_item(work_id, |i, env| i.to_json(env, false))
    }

    /// `queued` | `starting` | `active` | `stopping` | `stopped`.
    pub fn work_state(&self, work_id: &str) -> String {
        self.with_item(work_id, |i, _| i.state.as_str().to_string())
    }

    /// Whether a poll handed the item out and nobody acked it yet.
    pub fn is_pending(&self, work_id: &str) -> bool {
        self.with_item(work_id, |i, _| i.pending_since.is_some())
    }

    /// The item's current heartbeat token (`NO_HEARTBEAT` if none).
    pub fn last_heartbeat(&self, work_id: &str) -> String {
        self.with_item(work_id, |i, _| {
            i.last_heartbeat
                .clone()
                .unwrap_or_else(|| NO_HEARTBEAT.into())
        })
    }

    /// Successful heartbeats of the current lease holder.
    pub fn heartbeat_count(&self, work_id: &str) -> u32 {
        self.with_item(work_id, |i, _| i.beats)
    }

    /// The item's secret (as poll returns it) and sessions token.
    pub fn credentials(&self, work_id: &str) -> (String, String) {
        self.with_item(work_id, |i, _| (i.secret.clone(), i.token.clone()))
    }

    /// All work ids in creation order.
    pub fn work_ids(&self) -> Vec<String> {
        self.shared()
            .lock()
            .work
            .iter()
            .map(|i| i.id.clone())
            .collect()
    }

    /// Acks the item as the webhook Lambda would (queued → starting); returns
    /// the object or the error body.
    pub fn ack(&self, work_id: &str) -> Result<Value, Value> {
        self.shared().lock().ack(work_id).map_err(|e| e.body())
    }

    /// The lease lapses now: back to `queued`, the old heartbeat token is invalid.
    pub fn force_requeue(&self, work_id: &str) {
        {
            let mut st = self.shared().lock();
            let item = st
                .item_mut(work_id)
                .unwrap_or_else(|| panic!("unknown work item {work_id}"));
            item.requeue();
        }
        self.shared().work_notify.notify_waiters();
    }

    /// Graceful stop request: state → `stopping` (reported by the next heartbeat).
    pub fn request_stop(&self, work_id: &str) {
        self.shared().lock().request_stop(work_id);
    }

    /// Bodies of the stop requests received for the item (`{}` for an empty body).
    pub fn stop_calls(&self, work_id: &str) -> Vec<Value> {
        self.with_item(work_id, |i, _| i.stop_calls.clone())
    }

    /// The `work_queue_stats` object.
    pub fn stats(&self) -> Value {
        self.shared().lock().stats(Instant::now())
    }

    // --------------------------------------------------------------- sessions

    fn with_session<T>(&self, sid: &str, f: impl FnOnce(&mut Session) -> T) -> T {
        let out = {
            let mut st = self.shared().lock();
            st.sessions.get_mut(sid).map(f)
        };
        out.unwrap_or_else(|| panic!("unknown session {sid}"))
    }

    /// The session object as GET would return it.
    pub fn session(&self, session_id: &str) -> Value {
        self.with_session(session_id, |s| s.to_json())
    }

    /// `running` | `idle` | `terminated` | …
    pub fn session_status(&self, session_id: &str) -> String {
        self.with_session(session_id, |s| s.status.clone())
    }

    /// Full history in order.
    pub fn events(&self, session_id: &str) -> Vec<Value> {
        self.with_session(session_id, |s| s.history.clone())
    }

    /// Appends an event (assigning `id`/`processed_at` if absent) and
    /// broadcasts it; returns the stored event. No validation, no script advance.
    pub fn push_event(&self, session_id: &str, event: Value) -> Value {
        self.with_session(session_id, |s| s.append(event))
    }

    fn helper_send(&self, session_id: &str, event: Value) {
        let res = self.with_session(session_id, |s| s.helper_send(event));
        if let Err(e) = res {
            panic!("fake rejected helper event: {}", e.body());
        }
    }

    /// Pushes `user.tool_confirmation` (`allow`/`deny`); a denial resolves the call.
    pub fn confirm(&self, session_id: &str, tool_use_id: &str, allow: bool) {
        self.helper_send(
            session_id,
            json!({
                "type": "user.tool_confirmation",
                "tool_use_id": tool_use_id,
                "result": if allow { "allow" } else { "deny" },
            }),
        );
    }

    /// The customer backend answers a custom tool call (advances the script).
    pub fn answer_custom(&self, session_id: &str, custom_tool_use_id: &str, text: &str) {
        self.helper_send(
            session_id,
            json!({
                "type": "user.custom_tool_result",
                "custom_tool_use_id": custom_tool_use_id,
                "is_error": false,
                "content": [ { "type": "text", "text": text } ],
            }),
        );
    }

    /// Status → terminated; pushes `session.status_terminated`.
    pub fn terminate_session(&self, session_id: &str) {
        self.with_session(session_id, |s| {
            s.append(json!({ "type": "session.status_terminated" }));
        });
    }

    /// Pushes `session.deleted`; afterwards the session answers 404.
    pub fn delete_session(&self, session_id: &str) {
        self.with_session(session_id, |s| {
            s.append(json!({ "type": "session.deleted" }));
        });
    }

    /// Pushes `session.thread_status_terminated`; a pending scripted call of
    /// that thread is dropped and later steps of the thread are skipped.
    pub fn terminate_thread(&self, session_id: &str, thread_id: &str) {
        self.with_session(session_id, |s| s.terminate_thread(thread_id));
    }

    /// Every accepted `user.tool_result` / `user.custom_tool_result`, in arrival order.
    pub fn results(&self, session_id: &str) -> Vec<Value> {
        self.with_session(session_id, |s| s.results.clone())
    }

    /// Results rejected because the call was already answered.
    pub fn duplicate_results(&self, session_id: &str) -> usize {
        self.with_session(session_id, |s| s.duplicates)
    }

    /// All steps answered and the `end_turn` idle emitted.
    pub fn script_finished(&self, session_id: &str) -> bool {
        self.with_session(session_id, |s| s.finished)
    }

    /// Ids of open (unanswered) calls, in emission order.
    pub fn open_calls(&self, session_id: &str) -> Vec<String> {
        self.with_session(session_id, |s| {
            s.history
                .iter()
                .filter_map(|e| {
                    let id = e["id"].as_str()?;
                    s.calls
                        .get(id)
                        .filter(|c| !c.answered)
                        .map(|_| id.to_string())
                })
                .collect()
        })
    }

    /// Number of SSE connections currently subscribed to the session.
    pub fn open_streams(&self, session_id: &str) -> usize {
        self.with_session(session_id, |s| s.tx.receiver_count())
    }

    /// Polls `pred` every 20 ms until it holds or `timeout` passes.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        pred: impl Fn(&FakeControlPlane) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // ----------------------------------------------------------------- skills

    /// Registers a version of a skill with its archive (served verbatim by
    /// `…/versions/{version_id}/content`). Each new version becomes `latest`;
    /// registering a known `version_id` again replaces it in place.
    pub fn add_skill_version(
        &self,
        skill_id: &str,
        version_id: &str,
        name: &str,
        archive: Vec<u8>,
    ) {
        self.shared()
            .lock()
            .skills
            .add(skill_id, version_id, name, archive);
    }

    /// Test knob: the skills endpoints answer `403 permission_error` to
    /// sessions tokens (the environment key keeps working).
    pub fn set_skills_refuse_sessions_token(&self, refuse: bool) {
        self.shared().lock().skills.refuse_sessions_token = refuse;
    }

    // ---------------------------------------------------------- memory stores

    /// Creates an empty memory store; returns its id (`memstore_…`).
    pub fn create_memory_store(&self, name: &str) -> String {
        self.shared().lock().memory.create_store(name)
    }

    /// The name a store was created with.
    pub fn memory_store_name(&self, store: &str) -> String {
        self.shared()
            .lock()
            .memory
            .store_or_panic(store)
            .name
            .clone()
    }

    /// Creates or overwrites the memory at `path` (a remote edit: new
    /// `memory_version_id`, same id when it existed; no precondition).
    /// Returns the memory id. Panics on an unknown store or invalid path.
    pub fn put_memory(&self, store: &str, path: &str, content: &str) -> String {
        self.shared().lock().memory.put(store, path, content)
    }

    /// Deletes the memory at `path` (a remote delete); returns whether it existed.
    pub fn delete_memory_remote(&self, store: &str, path: &str) -> bool {
        self.shared()
            .lock()
            .memory
            .store_mut_or_panic(store)
            .memories
            .remove(path)
            .is_some()
    }

    /// Snapshot `(path, content)` of every memory, sorted by path.
    pub fn memories(&self, store: &str) -> Vec<(String, String)> {
        self.shared()
            .lock()
            .memory
            .store_or_panic(store)
            .memories
            .values()
            .map(|m| (m.path.clone(), m.content.clone()))
            .collect()
    }

    /// Content of the memory at `path`, if any.
    pub fn memory_content(&self, store: &str, path: &str) -> Option<String> {
        self.shared()
            .lock()
            .memory
            .store_or_panic(store)
            .memories
            .get(path)
            .map(|m| m.content.clone())
    }

    /// The memory at `path` as `GET …/memories/{id}?view=full` returns it
    /// (`id`, `content_sha256`, `memory_version_id`, …).
    pub fn memory(&self, store: &str, path: &str) -> Option<Value> {
        self.shared().lock().memory.get_json(store, path)
    }

    /// Id of the memory at `path`, if any.
    pub fn memory_id(&self, store: &str, path: &str) -> Option<String> {
        self.shared()
            .lock()
            .memory
            .store_or_panic(store)
            .memories
            .get(path)
            .map(|m| m.id.clone())
    }

    // ----------------------------------------------------------------- faults

    /// Replaces the fault configuration (re-seeds the RNG, resets overrides).
    pub fn set_faults(&self, faults: Faults) {
        self.shared().lock().faults = FaultState::new(faults);
    }

    // -------------------------------------------------------------- recording

    /// Every request received so far (including injected failures).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared().lock().requests.clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.shared().lock().requests.clear();
    }

    /// Stops the server: ends streams, closes connections (aborting after 2 s).
    pub async fn shutdown(self) {
        let _ = self.shared().shutdown.send(true);
        let server = self
            .inner
            .server
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut h) = server
            && tokio::time::timeout(Duration::from_secs(2), &mut h)
                .await
                .is_err()
        {
            h.abort();
        }
    }
}
