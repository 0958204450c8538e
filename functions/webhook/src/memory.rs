//! In-memory adapters of the ports, for tests, benchmarks and quick local runs.
//! Each can be told to fail so error paths can be exercised.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use async_trait::async_trait;
use cma_shared::SecretString;
use cma_shared::secret::WorkSecret;

use crate::error::PortError;
use crate::message::{EncryptionContext, OutgoingMessage, SealedSecret, WorkMessage};
use crate::ports::{CapacityGauge, MetricsSink, Queue, SecretSealer, SecretSource};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Failure script shared by the doubles: the next `n` calls fail with `error`, or
/// every call does.
#[derive(Debug, Default)]
struct FailScript {
    next: VecDeque<PortError>,
    always: Option<PortError>,
}

impl FailScript {
    fn take(&mut self) -> Option<PortError> {
        self.next.pop_front().or_else(|| self.always.clone())
    }
}

/// A queue that keeps every message.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    messages: Mutex<Vec<OutgoingMessage>>,
    fail: Mutex<FailScript>,
    attempts: AtomicU32,
}

impl MemoryQueue {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The next `n` sends fail with `error`.
    pub fn fail_next(&self, n: usize, error: PortError) {
        let mut f = lock(&self.fail);
        f.next.extend(std::iter::repeat_n(error, n));
    }

    /// Every send fails with `error` (`None` heals it).
    pub fn fail_always(&self, error: Option<PortError>) {
        lock(&self.fail).always = error;
    }

    pub fn messages(&self) -> Vec<OutgoingMessage> {
        lock(&self.messages).clone()
    }

    /// Parsed bodies.
    pub fn work_messages(&self) -> Vec<WorkMessage> {
        self.messages()
            .iter()
            .map(|m| serde_json::from_str(&m.body).expect("message body is a WorkMessage"))
            .collect()
    }

    pub fn len(&self) -> usize {
        lock(&self.messages).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Send attempts, failed ones included.
    pub fn attempts(&self) -> u32 {
        self.attempts.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn send(&self, message: &OutgoingMessage) -> Result<(), PortError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if let Some(e) = lock(&self.fail).take() {
            return Err(e);
        }
        lock(&self.messages).push(message.clone());
        Ok(())
    }
}

/// A stand-in for KMS: the "ciphertext" is an opaque random token; the secret and
/// its encryption context stay in memory and [`MemorySealer::open`] releases the
/// secret only for the same context.
#[derive(Debug, Default)]
pub struct MemorySealer {
    sealed: Mutex<HashMap<Vec<u8>, (EncryptionContext, String)>>,
    fail: Mutex<FailScript>,
}

impl MemorySealer {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn fail_next(&self, n: usize, error: PortError) {
        lock(&self.fail).next.extend(std::iter::repeat_n(error, n));
    }

    pub fn fail_always(&self, error: Option<PortError>) {
        lock(&self.fail).always = error;
    }

    /// "Decrypt" a base64 ciphertext from a message; `None` for a wrong context.
    pub fn open(&self, ciphertext_b64: &str, context: &EncryptionContext) -> Option<String> {
        use base64::Engine as _;
        let blob = base64::engine::general_purpose::STANDARD
            .decode(ciphertext_b64)
            .ok()?;
        let g = lock(&self.sealed);
        let (ctx, secret) = g.get(&blob)?;
        (ctx == context).then(|| secret.clone())
    }
}

#[async_trait]
impl SecretSealer for MemorySealer {
    async fn seal(
        &self,
        secret: &WorkSecret,
        context: &EncryptionContext,
    ) -> Result<SealedSecret, PortError> {
        if let Some(e) = lock(&self.fail).take() {
            return Err(e);
        }
        let blob = uuid::Uuid::new_v4().as_bytes().to_vec();
        lock(&self.sealed).insert(blob.clone(), (context.clone(), secret.expose().to_owned()));
        Ok(SealedSecret::Ciphertext(blob))
    }
}

/// In-flight sessions = messages in a [`MemoryQueue`] (if given) + a settable number
/// of "running tasks".
#[derive(Debug, Default)]
pub struct MemoryGauge {
    queue: Option<Arc<MemoryQueue>>,
    running: AtomicU64,
    calls: AtomicU32,
    fail: Mutex<FailScript>,
}

impl MemoryGauge {
    pub fn new(queue: Option<Arc<MemoryQueue>>, running: u64) -> Arc<Self> {
        Arc::new(MemoryGauge {
            queue,
            running: AtomicU64::new(running),
            ..Self::default()
        })
    }

    pub fn set_running(&self, n: u64) {
        self.running.store(n, Ordering::SeqCst);
    }

    pub fn fail_always(&self, error: Option<PortError>) {
        lock(&self.fail).always = error;
    }

    /// How often the gauge was read.
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl CapacityGauge for MemoryGauge {
    async fn in_flight(&self) -> Result<u64, PortError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(e) = lock(&self.fail).take() {
            return Err(e);
        }
        let queued = self.queue.as_ref().map_or(0, |q| q.len() as u64);
        Ok(queued + self.running.load(Ordering::SeqCst))
    }
}

/// A secret source with a settable value (or failure) that counts its fetches.
#[derive(Debug)]
pub struct MemorySecret {
    variable: &'static str,
    value: Mutex<Result<SecretString, PortError>>,
    fetches: AtomicU32,
}

impl MemorySecret {
    pub fn new(variable: &'static str, value: &str) -> Arc<Self> {
        Arc::new(MemorySecret {
            variable,
            value: Mutex::new(Ok(SecretString::new(value))),
            fetches: AtomicU32::new(0),
        })
    }

    pub fn set(&self, value: Result<&str, PortError>) {
        *lock(&self.value) = value.map(SecretString::new);
    }

    pub fn fetches(&self) -> u32 {
        self.fetches.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl SecretSource for MemorySecret {
    fn variable(&self) -> &'static str {
        self.variable
    }

    async fn fetch(&self) -> Result<SecretString, PortError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        lock(&self.value).clone()
    }
}

/// Collects metric lines.
#[derive(Debug, Default)]
pub struct MemoryMetrics {
    lines: Mutex<Vec<String>>,
}

impl MemoryMetrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn lines(&self) -> Vec<String> {
        lock(&self.lines).clone()
    }

    /// The last line, parsed.
    pub fn last(&self) -> Option<serde_json::Value> {
        lock(&self.lines)
            .last()
            .and_then(|l| serde_json::from_str(l).ok())
    }

    /// Sum of a metric over every line.
    pub fn total(&self, name: &str) -> u64 {
        lock(&self.lines)
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v.get(name).and_then(|x| x.as_u64()))
            .sum()
    }
}

impl MetricsSink for MemoryMetrics {
    fn emit(&self, line: &str) {
        lock(&self.lines).push(line.to_owned());
    }
}
