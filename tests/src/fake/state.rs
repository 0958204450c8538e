//! Shared server state: work items, sessions, credentials, skills, memory
//! stores, faults, recording.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use tokio::sync::{Notify, watch};

use super::FakeConfig;
use super::faults::{FaultState, Faults};
use super::memory::MemoryStores;
use super::queue::WorkItem;
use super::recording::RecordedRequest;
use super::sessions::Session;
use super::skills::Skills;
use super::util::random_alnum;

/// What a sessions token is allowed to touch.
#[derive(Clone, Debug)]
pub(crate) struct TokenScope {
    pub(crate) work_id: String,
    pub(crate) session_id: Option<String>,
}

/// Everything mutable. Only ever locked briefly, never across an await.
pub(crate) struct State {
    pub(crate) environment_id: String,
    pub(crate) ttl_seconds: u64,
    pub(crate) base_url: String,
    /// Work items in creation order.
    pub(crate) work: Vec<WorkItem>,
    pub(crate) work_index: HashMap<String, usize>,
    pub(crate) tokens: HashMap<String, TokenScope>,
    pub(crate) sessions: HashMap<String, Session>,
    /// Worker id → last poll.
    pub(crate) workers: HashMap<String, Instant>,
    pub(crate) faults: FaultState,
    pub(crate) requests: Vec<RecordedRequest>,
    pub(crate) skills: Skills,
    pub(crate) memory: MemoryStores,
}

impl State {
    pub(crate) fn new(config: &FakeConfig, base_url: String) -> Self {
        State {
            environment_id: config.environment_id.clone(),
            ttl_seconds: config.lease_ttl_seconds,
            base_url,
            work: Vec::new(),
            work_index: HashMap::new(),
            tokens: HashMap::new(),
            sessions: HashMap::new(),
            workers: HashMap::new(),
            faults: FaultState::new(Faults::default()),
            requests: Vec::new(),
            skills: Skills::default(),
            memory: MemoryStores::default(),
        }
    }

    /// A fresh sessions token and the work secret that carries it
    /// (base64url without padding of `{"sessions_token","api_base_url"}`).
    pub(crate) fn new_secret(&self) -> (String, String) {
        let token = format!("sk-ant-req-{}", random_alnum(32));
        let payload = json!({ "sessions_token": token, "api_base_url": self.base_url });
        let secret = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).expect("json"));
        (secret, token)
    }
}

/// State shared by the handle, the HTTP handlers and background tasks.
pub(crate) struct Shared {
    pub(crate) config: FakeConfig,
    pub(crate) base_url: String,
    state: Mutex<State>,
    /// Woken whenever an item may have become offerable (enqueue, lapse, requeue).
    pub(crate) work_notify: Notify,
    /// Flips to `true` on shutdown; SSE tasks and long-polls watch it.
    pub(crate) shutdown: watch::Sender<bool>,
}

impl Shared {
    pub(crate) fn new(config: FakeConfig, base_url: String) -> Self {
        let state = State::new(&config, base_url.clone());
        Shared {
            config,
            base_url,
            state: Mutex::new(state),
            work_notify: Notify::new(),
            shutdown: watch::channel(false).0,
        }
    }

    /// Locks the state, recovering from poisoning (a panicking test helper
    /// must not take every later call down with it).
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lapses expired leases; wakes long-polls if anything was re-queued.
    pub(crate) fn expire_leases(&self) {
        let requeued = self.lock().expire(Instant::now());
        if requeued {
            self.work_notify.notify_waiters();
        }
    }
}
