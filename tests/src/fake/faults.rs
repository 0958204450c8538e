//! Fault injection configuration and its per-request evaluation.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Endpoint families that faults can target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `GET /v1/environments/{env}/work/poll`
    Poll,
    /// `POST /v1/environments/{env}/work/{id}/ack`
    Ack,
    /// `POST /v1/environments/{env}/work/{id}/heartbeat`
    Heartbeat,
    /// `POST /v1/environments/{env}/work/{id}/stop`
    Stop,
    /// `GET /v1/environments/{env}/work`
    WorkList,
    /// `GET /v1/environments/{env}/work/{id}`
    WorkRetrieve,
    /// `GET /v1/environments/{env}/work/stats`
    Stats,
    /// `GET /v1/sessions/{sid}`
    SessionRetrieve,
    /// `GET /v1/sessions/{sid}/events`
    EventsList,
    /// `GET /v1/sessions/{sid}/events/stream`
    EventsStream,
    /// `POST /v1/sessions/{sid}/events`
    EventsSend,
    /// `GET /v1/skills/{skill_id}/versions/{version}`
    SkillRetrieve,
    /// `GET /v1/skills/{skill_id}/versions/{version_id}/content`
    SkillContent,
    /// `GET /v1/memory_stores/{store}/memories`
    MemoryList,
    /// `GET /v1/memory_stores/{store}/memories/{id}`
    MemoryRetrieve,
    /// `POST /v1/memory_stores/{store}/memories`
    MemoryCreate,
    /// `POST /v1/memory_stores/{store}/memories/{id}`
    MemoryUpdate,
    /// `DELETE /v1/memory_stores/{store}/memories/{id}`
    MemoryDelete,
}

/// Faults to inject. `Faults::default()` injects nothing.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Seed of the RNG consulted for `error_rate` (re-seeded by every `set_faults`).
    pub seed: u64,
    /// Probability of answering 500 (`api_error` envelope) before doing anything.
    pub error_rate: Vec<(Endpoint, f64)>,
    /// Answer this status for the next N calls of the endpoint. Heartbeat 412
    /// uses the documented precondition body; poll 404 consumes (stops) the next
    /// offerable item ("EnvironmentInstance not found for session").
    pub status_override: Vec<(Endpoint, u16, u32)>,
    /// Added to every response (the request is processed first, then the answer is delayed).
    pub latency: Option<Duration>,
    /// Close each SSE connection after delivering N non-ping events.
    pub stream_drop_after: Option<usize>,
    /// Send an `event: error` frame after N events, then close.
    pub stream_error_after: Option<usize>,
    /// Write every SSE frame in 2-3 chunks with small sleeps in between.
    pub split_frames: bool,
    /// After K successful heartbeats for an item its state becomes `stopping`.
    pub stopping_after_heartbeats: Option<u32>,
    /// After K successful heartbeats, answer `lease_extended: false`.
    pub lease_extended_false_after: Option<u32>,
    /// Add a `retry-after-ms` header to injected 5xx/429 answers.
    pub retry_after_ms: Option<u64>,
    /// For the next N calls of the endpoint, process the request normally
    /// (its effect is kept) but answer `500 api_error` instead: a lost
    /// response. Not combined with `status_override`/`error_rate` on the same
    /// request (an injected failure is not processed at all).
    pub lose_response: Vec<(Endpoint, u32)>,
}

/// Mutable fault-evaluation state (lives inside the server state).
pub(crate) struct FaultState {
    pub(crate) faults: Faults,
    rng: StdRng,
    remaining: Vec<(Endpoint, u16, u32)>,
    lost: Vec<(Endpoint, u32)>,
}

/// What to do with a request before normal processing.
pub(crate) enum Injected {
    /// Answer this status (body chosen by the caller, by status and endpoint).
    Status(u16),
}

impl FaultState {
    pub(crate) fn new(faults: Faults) -> Self {
        FaultState {
            rng: StdRng::seed_from_u64(faults.seed),
            remaining: faults.status_override.clone(),
            lost: faults.lose_response.clone(),
            faults,
        }
    }

    /// Decides whether to inject a failure for one request to `endpoint`.
    /// Status overrides are consumed first; then the endpoint's error rate is
    /// drawn from the seeded RNG (only endpoints that have a rate consume RNG
    /// draws, which keeps a seeded run deterministic).
    pub(crate) fn decide(&mut self, endpoint: Endpoint) -> Option<Injected> {
        if let Some(entry) = self
            .remaining
            .iter_mut()
            .find(|(e, _, n)| *e == endpoint && *n > 0)
        {
            entry.2 -= 1;
            return Some(Injected::Status(entry.1));
        }
        let rate = self
            .faults
            .error_rate
            .iter()
            .find(|(e, _)| *e == endpoint)
            .map(|(_, r)| *r)?;
        let draw: f64 = self.rng.random::<f64>();
        (draw < rate).then_some(Injected::Status(500))
    }

    /// Whether the answer to this (already processed) request must be
    /// replaced by a 500; consumes one `lose_response` count.
    pub(crate) fn take_lost_response(&mut self, endpoint: Endpoint) -> bool {
        match self.lost.iter_mut().find(|(e, n)| *e == endpoint && *n > 0) {
            Some(entry) => {
                entry.1 -= 1;
                true
            }
            None => false,
        }
    }
}
