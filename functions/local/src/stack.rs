//! The webhook handler served locally: the Lambda's [`webhook::App`] behind a plain
//! HTTP server on a socket of ours, with in-memory ports (a channel as the queue, the
//! plaintext sealer, no AWS), plus the sweep of the same app on a timer.
//!
//! Nothing here re-implements the handler: verification, the event-type filter, the
//! drain (poll, ack, force-stop of non-session items, capacity check) are the Lambda's
//! code; only the adapters differ.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cma_shared::{ClientConfig, ControlPlane, SecretString};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use webhook::config::{self, Config, Mode};
use webhook::drain::Budget;
use webhook::error::PortError;
use webhook::message::OutgoingMessage;
use webhook::ports::{CapacityGauge, MetricsSink, Queue, SecretSource};
use webhook::secrets::EnvSecret;
use webhook::{App, Ports, Runtime};

/// `QUEUE_URL` the webhook configuration requires; nothing ever sends to it (the queue
/// is a channel). `.invalid` so that it can never resolve.
pub const LOCAL_QUEUE_URL: &str = "http://local-queue.invalid/cma-local";

/// One message taken from the in-memory queue, stamped when the drain sent it.
#[derive(Debug, Clone)]
pub struct Queued {
    pub body: String,
    pub at: Instant,
}

/// The in-memory queue between the webhook handler and the local dispatcher: an
/// unbounded channel. `depth` counts messages sent and not yet taken by the dispatcher
/// (the capacity gauge adds it to the running runners, as SQS counts do on AWS).
#[derive(Clone)]
pub struct ChannelQueue {
    tx: mpsc::UnboundedSender<Queued>,
    depth: Arc<AtomicU64>,
}

/// The receiving end of a [`ChannelQueue`].
pub struct QueueReceiver {
    rx: mpsc::UnboundedReceiver<Queued>,
    depth: Arc<AtomicU64>,
}

impl ChannelQueue {
    pub fn new() -> (ChannelQueue, QueueReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let depth = Arc::new(AtomicU64::new(0));
        (
            ChannelQueue {
                tx,
                depth: depth.clone(),
            },
            QueueReceiver { rx, depth },
        )
    }

    /// Messages sent and not yet received.
    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::SeqCst)
    }
}

impl QueueReceiver {
    /// The next message; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<Queued> {
        let m = self.rx.recv().await?;
        self.depth.fetch_sub(1, Ordering::SeqCst);
        Some(m)
    }
}

#[async_trait]
impl Queue for ChannelQueue {
    async fn send(&self, message: &OutgoingMessage) -> Result<(), PortError> {
        self.depth.fetch_add(1, Ordering::SeqCst);
        self.tx
            .send(Queued {
                body: message.body.clone(),
                at: Instant::now(),
            })
            .map_err(|_| {
                self.depth.fetch_sub(1, Ordering::SeqCst);
                PortError::permanent("local queue", "the local dispatcher loop has stopped")
            })
    }
}

/// Metric lines are dropped (the Lambda writes them to stdout for CloudWatch; here they
/// would only clutter the terminal).
pub struct NoMetrics;

impl MetricsSink for NoMetrics {
    fn emit(&self, _line: &str) {}
}

/// Counts the runners that are running (implemented by the chosen launcher).
#[async_trait]
pub trait RunnerCount: Send + Sync {
    async fn running(&self) -> Result<u64, String>;
}

/// In-flight sessions for the drain's capacity check: queued messages plus running
/// runners (on AWS: SQS counts plus ECS tasks).
pub struct LocalGauge {
    pub queue: ChannelQueue,
    pub runners: Arc<dyn RunnerCount>,
}

#[async_trait]
impl CapacityGauge for LocalGauge {
    async fn in_flight(&self) -> Result<u64, PortError> {
        let running = self
            .runners
            .running()
            .await
            .map_err(|e| PortError::retryable("count running runners", e))?;
        Ok(self.queue.depth() + running)
    }
}

/// What the local handler needs to know. Credentials are [`SecretString`]s (redacted
/// in `Debug`, never logged).
#[derive(Clone)]
pub struct StackConfig {
    pub environment_id: String,
    pub base_url: Option<String>,
    pub environment_key: SecretString,
    pub signing_key: SecretString,
    /// Cap on in-flight sessions (queued + running); `None` = no cap.
    pub max_concurrent: Option<u64>,
    /// `RECLAIM_OLDER_THAN_MS` / `MAX_DRAIN_ITEMS` overrides (strings, validated by the
    /// webhook's own configuration code).
    pub extra: HashMap<&'static str, String>,
}

impl std::fmt::Debug for StackConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackConfig")
            .field("environment_id", &self.environment_id)
            .field("base_url", &self.base_url)
            .field("max_concurrent", &self.max_concurrent)
            .finish_non_exhaustive()
    }
}

impl StackConfig {
    /// The webhook configuration for `mode`, built by the webhook's own validation
    /// (plaintext work secrets: there is no KMS on a laptop, and the secret never
    /// leaves this process except into the runner it belongs to).
    pub fn webhook_config(&self, mode: Mode) -> Result<Config, webhook::ConfigError> {
        let mut vars: HashMap<&'static str, String> = self.extra.clone();
        vars.insert(config::ENVIRONMENT_ID, self.environment_id.clone());
        if let Some(u) = &self.base_url {
            vars.insert(config::BASE_URL, u.clone());
        }
        vars.insert(config::SIGNING_KEY, self.signing_key.expose().to_owned());
        vars.insert(
            config::ENVIRONMENT_KEY,
            self.environment_key.expose().to_owned(),
        );
        vars.insert(config::QUEUE_URL, LOCAL_QUEUE_URL.to_owned());
        vars.insert(config::ALLOW_PLAINTEXT_WORK_SECRET, "true".to_owned());
        if let Some(cap) = self.max_concurrent {
            // The drain's cap needs these two names; locally the gauge counts this
            // process's runners instead of ECS tasks.
            vars.insert(config::MAX_CONCURRENT_SESSIONS, cap.to_string());
            vars.insert(config::ECS_CLUSTER, "local".to_owned());
            vars.insert(config::RUNNER_TASK_FAMILY, "local".to_owned());
        }
        Config::from_lookup(mode, |k| vars.get(k).cloned())
    }
}

/// Control-plane client timeouts of the local handler (those of the Lambda).
fn base_client(base_url: Option<&str>) -> Result<ControlPlane, cma_shared::ApiError> {
    let mut cfg = ClientConfig::with_base_url(base_url);
    cfg.request_timeout = webhook::aws::CONTROL_PLANE_REQUEST_TIMEOUT;
    cfg.connect_timeout = webhook::aws::CONTROL_PLANE_CONNECT_TIMEOUT;
    ControlPlane::new(cfg, SecretString::new(""))
}

/// Build the webhook (or sweep) app with local ports.
pub fn build_app(
    cfg: &StackConfig,
    mode: Mode,
    queue: &ChannelQueue,
    runners: Arc<dyn RunnerCount>,
) -> Result<App, String> {
    let config = cfg.webhook_config(mode).map_err(|e| e.to_string())?;
    let control_plane = base_client(config.base_url.as_deref())
        .map_err(|e| format!("cannot build the control-plane client: {e}"))?;
    let gauge: Option<Arc<dyn CapacityGauge>> = config.capacity.as_ref().map(|_| {
        Arc::new(LocalGauge {
            queue: queue.clone(),
            runners: runners.clone(),
        }) as Arc<dyn CapacityGauge>
    });
    let signing_key: Option<Arc<dyn SecretSource>> = (mode == Mode::Webhook).then(|| {
        Arc::new(EnvSecret::new(config::SIGNING_KEY, cfg.signing_key.clone()))
            as Arc<dyn SecretSource>
    });
    let ports = Ports {
        control_plane: Arc::new(control_plane),
        queue: Arc::new(queue.clone()),
        sealer: Arc::new(webhook::aws::PlaintextSealer::default()),
        gauge,
        signing_key,
        environment_key: Arc::new(EnvSecret::new(
            config::ENVIRONMENT_KEY,
            cfg.environment_key.clone(),
        )),
    };
    let rt = Runtime {
        metrics: Arc::new(NoMetrics),
        ..Runtime::default()
    };
    Ok(App::new(&config, ports, rt))
}

/// The webhook app served over HTTP/1.1 on a local socket (any path, like a Function
/// URL). Stops when dropped.
pub struct WebhookServer {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl WebhookServer {
    /// Bind `listen` and serve `app`.
    pub async fn start(app: Arc<App>, listen: SocketAddr) -> std::io::Result<WebhookServer> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let router = axum::Router::new()
            .fallback(handle)
            // The app answers 413 itself above 1 MiB; let such bodies reach it.
            .layer(axum::extract::DefaultBodyLimit::max(
                2 * webhook::app::MAX_BODY_BYTES,
            ))
            .with_state(app);
        let (shutdown, mut rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|v| *v).await;
                })
                .await;
        });
        Ok(WebhookServer {
            addr,
            shutdown,
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Stop accepting, finish in-flight requests (at most 5 s).
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(mut t) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut t)
                .await
                .is_err()
        {
            t.abort();
        }
    }
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

async fn handle(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    method: http::Method,
    headers: http::HeaderMap,
    body: axum::body::Bytes,
) -> http::Response<axum::body::Body> {
    let budget = Budget::from_remaining(app.clock().now(), Budget::DEFAULT_REMAINING);
    app.handle_webhook(&method, &headers, &body, budget)
        .await
        .map(axum::body::Body::from)
}

/// A fresh random `whsec_…` signing key (the demo signs its own delivery).
pub fn random_signing_key() -> SecretString {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    SecretString::new(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

/// POST a freshly signed `event_type` delivery about `session_id` to `url`; returns
/// the status and the body.
pub async fn post_signed_delivery(
    http: &reqwest::Client,
    url: &str,
    signing_key: &SecretString,
    event_type: &str,
    session_id: &str,
) -> Result<(u16, String), String> {
    let secret = cma_shared::WebhookSecret::new(signing_key.expose());
    let event_id = format!("wevt_{}", uuid::Uuid::new_v4().simple());
    let webhook_id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let body = webhook::local::envelope_body(event_type, session_id, &event_id);
    let headers = webhook::local::sign_headers(
        &secret,
        &webhook_id,
        webhook::local::unix_now(),
        body.as_bytes(),
    )
    .map_err(|e| format!("cannot sign the delivery: {e}"))?;
    let mut req = http
        .post(url)
        .header(http::header::CONTENT_TYPE, "application/json");
    for (k, v) in &headers {
        req = req.header(*k, v);
    }
    let resp = req
        .body(body)
        .send()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    Ok((status, text))
}
