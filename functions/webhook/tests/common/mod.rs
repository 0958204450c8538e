//! Shared test harness: the fake control plane + in-memory ports + log capture.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cma_shared::retry::{Clock, FixedJitter, RecordingClock};
use cma_shared::{ClientConfig, ControlPlane, SecretString, WebhookSecret};
use cma_tests::fake::{FakeConfig, FakeControlPlane, SessionScript};
use http::StatusCode;
use serde_json::Value;
use webhook::config::{self, Config, Mode};
use webhook::memory::{MemoryGauge, MemoryMetrics, MemoryQueue, MemorySealer, MemorySecret};
use webhook::ports::ControlPlaneFactory;
use webhook::{App, Ports, Runtime};

/// Spec §8.5 V2 secret (key = bytes 0x00..0x1f).
pub const SIGNING_KEY: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// A control-plane client for the fake. Its core retries (spec §13.3: 2 retries,
/// 0.5 s then 1 s) sleep on a recording clock, so they cost no wall time in tests.
pub fn fake_client(fake: &FakeControlPlane) -> ControlPlane {
    let mut cfg = ClientConfig::with_base_url(Some(&fake.base_url()));
    cfg.request_timeout = Duration::from_secs(5);
    ControlPlane::new(cfg, SecretString::new(""))
        .expect("client")
        .with_time(
            Arc::new(RecordingClock::default()),
            Arc::new(FixedJitter(0.5)),
        )
}

pub struct Builder {
    pub mode: Mode,
    pub vars: HashMap<&'static str, String>,
    pub running: u64,
    pub clock: Arc<dyn Clock>,
    pub factory: Option<Arc<dyn ControlPlaneFactory>>,
    pub gauge_without_cap: bool,
    pub env_key: Option<String>,
}

pub struct Harness {
    pub fake: FakeControlPlane,
    pub app: Arc<App>,
    pub queue: Arc<MemoryQueue>,
    pub sealer: Arc<MemorySealer>,
    pub gauge: Arc<MemoryGauge>,
    pub metrics: Arc<MemoryMetrics>,
    pub signing_secret: Arc<MemorySecret>,
    pub env_secret: Arc<MemorySecret>,
}

impl Builder {
    pub fn new(mode: Mode) -> Self {
        let mut vars = HashMap::new();
        vars.insert(config::SIGNING_KEY, SIGNING_KEY.to_owned());
        vars.insert(
            config::QUEUE_URL,
            "https://sqs.us-east-1.amazonaws.com/000000000000/cma-test".to_owned(),
        );
        vars.insert(config::KMS_KEY_ID, "alias/cma-test".to_owned());
        Builder {
            mode,
            vars,
            running: 0,
            clock: Arc::new(RecordingClock::default()),
            factory: None,
            gauge_without_cap: false,
            env_key: None,
        }
    }

    pub fn var(mut self, k: &'static str, v: impl Into<String>) -> Self {
        self.vars.insert(k, v.into());
        self
    }

    /// `MAX_CONCURRENT_SESSIONS = cap`, with `running` tasks already running.
    pub fn cap(self, cap: u64, running: u64) -> Self {
        let mut s = self
            .var(config::MAX_CONCURRENT_SESSIONS, cap.to_string())
            .var(config::ECS_CLUSTER, "cma")
            .var(config::RUNNER_TASK_FAMILY, "cma-runner");
        s.running = running;
        s
    }

    pub fn clock(mut self, c: Arc<dyn Clock>) -> Self {
        self.clock = c;
        self
    }

    pub async fn start(self) -> Harness {
        let fake = FakeControlPlane::start(FakeConfig::default()).await;
        self.start_with(fake)
    }

    pub fn start_with(self, fake: FakeControlPlane) -> Harness {
        let mut vars = self.vars.clone();
        vars.insert(config::ENVIRONMENT_ID, fake.environment_id());
        vars.insert(config::BASE_URL, fake.base_url());
        let env_key = self
            .env_key
            .clone()
            .unwrap_or_else(|| fake.environment_key());
        vars.insert(config::ENVIRONMENT_KEY, env_key.clone());
        let cfg = Config::from_lookup(self.mode, |k| vars.get(k).cloned()).expect("test config");

        let queue = MemoryQueue::new();
        let sealer = MemorySealer::new();
        let gauge = MemoryGauge::new(Some(queue.clone()), self.running);
        let metrics = MemoryMetrics::new();
        let signing_secret = MemorySecret::new(
            config::SIGNING_KEY,
            vars.get(config::SIGNING_KEY)
                .map_or(SIGNING_KEY, String::as_str),
        );
        let env_secret = MemorySecret::new(config::ENVIRONMENT_KEY, &env_key);
        let ports = Ports {
            control_plane: self
                .factory
                .clone()
                .unwrap_or_else(|| Arc::new(fake_client(&fake))),
            queue: queue.clone(),
            sealer: match cfg.seal {
                config::SealMode::Plaintext => Arc::new(webhook::aws::PlaintextSealer::new()),
                config::SealMode::Kms { .. } => sealer.clone(),
            },
            gauge: (cfg.capacity.is_some() || self.gauge_without_cap)
                .then(|| gauge.clone() as Arc<dyn webhook::ports::CapacityGauge>),
            signing_key: (self.mode == Mode::Webhook)
                .then(|| signing_secret.clone() as Arc<dyn webhook::ports::SecretSource>),
            environment_key: env_secret.clone(),
        };
        let rt = Runtime {
            clock: self.clock.clone(),
            jitter: Arc::new(FixedJitter(0.5)),
            metrics: metrics.clone(),
            worker_id: "webhook-test-0123456789ab".into(),
        };
        Harness {
            fake,
            app: Arc::new(App::new(&cfg, ports, rt)),
            queue,
            sealer,
            gauge,
            metrics,
            signing_secret,
            env_secret,
        }
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Value,
}

/// Run a Function URL event (JSON) through `lambda_http`'s parser and the handler.
pub async fn invoke(app: &App, event: &Value) -> Reply {
    let req = lambda_http::request::from_str(&event.to_string()).expect("event parses");
    let resp = webhook::lambda::webhook(app, req).await;
    let (parts, body) = resp.into_parts();
    let body = serde_json::from_slice(body.as_ref()).unwrap_or(Value::Null);
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// A freshly signed delivery of `event_type`.
pub fn delivery(event_type: &str, webhook_id: &str) -> Value {
    webhook::local::signed_delivery_event(
        &WebhookSecret::new(SIGNING_KEY),
        event_type,
        "sesn_trigger",
        webhook_id,
        webhook::local::unix_now(),
        false,
    )
    .expect("sign")
}

pub fn run_started(webhook_id: &str) -> Value {
    delivery(cma_shared::types::RUN_STARTED, webhook_id)
}

impl Harness {
    /// Queue `n` session items; returns (work_id, secret, sessions_token) per item.
    pub fn queue_sessions(&self, n: usize) -> Vec<cma_tests::fake::CreatedSession> {
        (0..n)
            .map(|_| self.fake.create_session(SessionScript::new(vec![])))
            .collect()
    }

    pub async fn deliver(&self, webhook_id: &str) -> Reply {
        invoke(&self.app, &run_started(webhook_id)).await
    }

    pub fn polls(&self) -> usize {
        self.fake
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/work/poll"))
            .count()
    }

    pub fn enqueued_work_ids(&self) -> Vec<String> {
        self.queue
            .work_messages()
            .into_iter()
            .map(|m| m.work_id)
            .collect()
    }

    pub fn metric(&self, name: &str) -> u64 {
        self.metrics.total(name)
    }
}

/// A `Clock` with a fixed `unix_now` (for the §8.5 vectors) and real monotonic time.
pub struct FixedUnixClock(pub i64);

impl Clock for FixedUnixClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn sleep(
        &self,
        d: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(tokio::time::sleep(d))
    }
    fn unix_now(&self) -> i64 {
        self.0
    }
}

/// A log sink shared between a test subscriber and the test.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    pub fn lines(&self) -> Vec<String> {
        self.text().lines().map(str::to_owned).collect()
    }
}

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Capture every log line (TRACE, all targets) on this thread, in the production
/// JSON format, until the guard drops.
pub fn capture_logs() -> (LogBuffer, tracing::subscriber::DefaultGuard) {
    let buf = LogBuffer::default();
    let sub =
        webhook::logging::json_subscriber(tracing_subscriber::EnvFilter::new("trace"), buf.clone());
    let guard = tracing::subscriber::set_default(sub);
    (buf, guard)
}
