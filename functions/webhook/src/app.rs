//! Request handling for both functions: [`App::handle_webhook`] (Function URL / HTTP
//! API v2) and [`App::handle_sweep`] (EventBridge Scheduler).
//!
//! Webhook order of checks (each answers at once):
//!
//! 1. method is not `POST` → **405** (`Allow: POST`);
//! 2. body over 1 MiB → **413** (before anything else touches it);
//! 3. configuration invalid → **500**, one log line naming the variable;
//! 4. signing secret unavailable/invalid → **500**, one log line naming the variable;
//! 5. signature verification fails → **401** with a generic body; the reason is logged;
//! 6. body is not an envelope, or `data.type` is not `session.status_run_started` →
//!    **200** without touching the queue;
//! 7. `webhook-id` answered recently on this instance → **200** (optimisation only);
//! 8. environment key unavailable → **500**; then the drain: **200** unless our side is
//!    broken (SQS, KMS, capacity check, environment key rejected) → **500**. Control-plane
//!    trouble (5xx, timeouts) is logged, counted and left to the sweep: still **200**.
//!
//! Base64 bodies (`isBase64Encoded: true`) are decoded by `lambda_http` before step 2,
//! so the size limit and the signature apply to the raw bytes that were sent.

use std::sync::Arc;
use std::time::SystemTime;

use cma_shared::retry::{Clock, Jitter, RandJitter, TokioClock};
use cma_shared::types::{RUN_STARTED, WebhookEnvelope};
use cma_shared::webhook::WebhookVerifier;
use cma_shared::{EnvironmentKey, SecretString};
use http::{HeaderValue, Method, Response, StatusCode};
use serde_json::json;

use crate::config::{Config, ConfigError, Mode, SECRET_CACHE_TTL, validate_signing_key};
use crate::dedupe::RecentIds;
use crate::drain::{Budget, DrainEnd, DrainReport, DrainSettings, Drainer};
use crate::error::Failure;
use crate::metrics::{Counters, StdoutMetrics};
use crate::ports::{
    CapacityGauge, ControlPlaneFactory, MetricsSink, Queue, SecretSealer, SecretSource,
};
use crate::secrets::CachedSecret;

/// Largest accepted webhook body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The adapters an [`App`] runs with.
pub struct Ports {
    pub control_plane: Arc<dyn ControlPlaneFactory>,
    pub queue: Arc<dyn Queue>,
    pub sealer: Arc<dyn SecretSealer>,
    /// Required when the configuration has a capacity cap.
    pub gauge: Option<Arc<dyn CapacityGauge>>,
    /// Required in [`Mode::Webhook`].
    pub signing_key: Option<Arc<dyn SecretSource>>,
    pub environment_key: Arc<dyn SecretSource>,
}

/// Clock, jitter, metric sink and worker id.
#[derive(Clone)]
pub struct Runtime {
    pub clock: Arc<dyn Clock>,
    pub jitter: Arc<dyn Jitter>,
    pub metrics: Arc<dyn MetricsSink>,
    pub worker_id: String,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime {
            clock: Arc::new(TokioClock),
            jitter: Arc::new(RandJitter),
            metrics: Arc::new(StdoutMetrics),
            worker_id: cma_shared::worker_id::worker_id().to_owned(),
        }
    }
}

struct Ready {
    settings: DrainSettings,
    verifier: Option<CachedSecret<Arc<WebhookVerifier>>>,
    environment_key: CachedSecret<EnvironmentKey>,
    control_plane: Arc<dyn ControlPlaneFactory>,
    queue: Arc<dyn Queue>,
    sealer: Arc<dyn SecretSealer>,
    gauge: Option<Arc<dyn CapacityGauge>>,
}

/// One execution environment's handler state (config, cached secrets, clients).
pub struct App {
    mode: Mode,
    ready: Result<Ready, ConfigError>,
    rt: Runtime,
    recent: RecentIds,
}

fn parse_verifier(
    variable: &'static str,
    s: &SecretString,
) -> Result<Arc<WebhookVerifier>, ConfigError> {
    validate_signing_key(variable, s).map(Arc::new)
}

fn parse_environment_key(
    variable: &'static str,
    s: &SecretString,
) -> Result<EnvironmentKey, ConfigError> {
    let v = s.expose().trim();
    if v.is_empty() {
        return Err(ConfigError::Invalid {
            variable,
            reason: "is empty",
        });
    }
    if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::Invalid {
            variable,
            reason: "contains whitespace",
        });
    }
    Ok(EnvironmentKey::new(v))
}

/// Outcome of the shared drain step, for the response and the metric line.
enum Drained {
    Report(DrainReport),
    Failed(Failure),
}

impl App {
    /// A working app. `config.mode` decides whether the signing secret is needed.
    pub fn new(config: &Config, ports: Ports, rt: Runtime) -> App {
        let clock = rt.clock.clone();
        let ready = (|| {
            let verifier = match (config.mode, ports.signing_key) {
                (Mode::Webhook, Some(src)) => Some(CachedSecret::new(
                    src,
                    parse_verifier,
                    SECRET_CACHE_TTL,
                    clock.clone(),
                )),
                (Mode::Webhook, None) => {
                    return Err(ConfigError::MissingOneOf(
                        crate::config::SIGNING_KEY,
                        crate::config::SIGNING_KEY_SECRET_ARN,
                    ));
                }
                (Mode::Sweep, _) => None,
            };
            let max_concurrent_sessions =
                config.capacity.as_ref().map(|c| c.max_concurrent_sessions);
            if max_concurrent_sessions.is_some() && ports.gauge.is_none() {
                return Err(ConfigError::Missing(crate::config::ECS_CLUSTER));
            }
            Ok(Ready {
                settings: DrainSettings {
                    environment_id: config.environment_id.clone(),
                    reclaim_older_than_ms: config.reclaim_older_than_ms,
                    max_items: config.max_drain_items,
                    max_concurrent_sessions,
                    worker_id: rt.worker_id.clone(),
                },
                verifier,
                environment_key: CachedSecret::new(
                    ports.environment_key,
                    parse_environment_key,
                    SECRET_CACHE_TTL,
                    clock.clone(),
                ),
                control_plane: ports.control_plane,
                queue: ports.queue,
                sealer: ports.sealer,
                gauge: ports.gauge,
            })
        })();
        App {
            mode: config.mode,
            ready,
            rt,
            recent: RecentIds::default(),
        }
    }

    /// An app whose configuration is broken: every invocation fails closed (500 /
    /// failed invocation) with one log line naming the variable.
    pub fn misconfigured(mode: Mode, error: ConfigError, rt: Runtime) -> App {
        App {
            mode,
            ready: Err(error),
            rt,
            recent: RecentIds::default(),
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.rt.clock
    }

    /// Handle one Function URL request. `body` is the raw (already base64-decoded) body.
    pub async fn handle_webhook(
        &self,
        method: &Method,
        headers: &http::HeaderMap,
        body: &[u8],
        budget: Budget,
    ) -> Response<String> {
        let mut counters = Counters::default();
        let resp = self
            .webhook_inner(method, headers, body, budget, &mut counters)
            .await;
        if resp.status().is_server_error() {
            counters.failures += 1;
        }
        self.emit(&counters);
        resp
    }

    async fn webhook_inner(
        &self,
        method: &Method,
        headers: &http::HeaderMap,
        body: &[u8],
        budget: Budget,
        counters: &mut Counters,
    ) -> Response<String> {
        if method != Method::POST {
            let mut r = respond(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"error": "method not allowed"}),
            );
            r.headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static("POST"));
            return r;
        }
        if body.len() > MAX_BODY_BYTES {
            tracing::warn!(bytes = body.len(), "webhook body over 1 MiB; answering 413");
            return respond(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"error": "payload too large"}),
            );
        }
        let ready = match self.ready() {
            Ok(r) => r,
            Err(resp) => return resp,
        };
        let Some(verifier) = &ready.verifier else {
            // Unreachable: `App::new` requires a signing secret in webhook mode.
            return internal_error();
        };
        let verifier = match verifier.get().await {
            Ok(v) => v,
            Err(f) => return log_failure(&f),
        };
        // Unverified input until `verify` passes: logged truncated, never trusted.
        let webhook_id: String = headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .chars()
            .take(128)
            .collect();
        if let Err(reason) = verifier.verify(headers, body, self.rt.clock.unix_now()) {
            counters.deliveries_rejected += 1;
            tracing::warn!(reason = %reason, webhook_id, "webhook signature verification failed; answering 401");
            return respond(StatusCode::UNAUTHORIZED, json!({"error": "unauthorized"}));
        }

        let envelope: WebhookEnvelope = match serde_json::from_slice(body) {
            Ok(e) => e,
            Err(e) => {
                counters.deliveries_ignored += 1;
                tracing::warn!(webhook_id, error = %e, "verified delivery is not a webhook envelope; ignored");
                return respond(StatusCode::OK, json!({"result": "ignored"}));
            }
        };
        let event_type = envelope.data.event_type.as_str();
        if event_type != RUN_STARTED {
            counters.deliveries_ignored += 1;
            tracing::info!(
                webhook_id,
                event_type,
                "event type does not trigger a drain; ignored"
            );
            return respond(StatusCode::OK, json!({"result": "ignored"}));
        }
        if self.recent.contains(&webhook_id) {
            counters.duplicate_deliveries += 1;
            tracing::info!(
                webhook_id,
                "delivery already answered on this instance; skipped"
            );
            return respond(StatusCode::OK, json!({"result": "duplicate"}));
        }
        tracing::info!(
            webhook_id,
            event_id = envelope.id.as_deref().unwrap_or(""),
            session_id = envelope.data.id.as_deref().unwrap_or(""),
            "verified session.status_run_started delivery; draining"
        );
        match self.drain(ready, budget, counters).await {
            Drained::Failed(f) => log_failure(&f),
            Drained::Report(report) => {
                // Remember the id only when the queue was seen empty: a repeat of a
                // delivery whose drain stopped early (budget, cap, outage) drains again.
                if report.end == DrainEnd::Drained {
                    self.recent.insert(&webhook_id);
                }
                respond(StatusCode::OK, summary(&report))
            }
        }
    }

    /// Handle one scheduled sweep (the payload is ignored: IAM authenticated the
    /// invoke). `Err` = our side is broken; the invocation should fail.
    pub async fn handle_sweep(&self, budget: Budget) -> Result<serde_json::Value, Failure> {
        let mut counters = Counters::default();
        let out = match self.ready_sweep() {
            Err(e) => Err(Failure::Config(e)),
            Ok(ready) => match self.drain(ready, budget, &mut counters).await {
                Drained::Report(r) => Ok(summary(&r)),
                Drained::Failed(f) => Err(f),
            },
        };
        if let Err(f) = &out {
            counters.failures += 1;
            log_failure(f);
        }
        self.emit(&counters);
        out
    }

    fn ready_sweep(&self) -> Result<&Ready, ConfigError> {
        self.ready.as_ref().map_err(Clone::clone)
    }

    fn ready(&self) -> Result<&Ready, Response<String>> {
        self.ready
            .as_ref()
            .map_err(|e| log_failure(&Failure::Config(e.clone())))
    }

    async fn drain(&self, ready: &Ready, budget: Budget, counters: &mut Counters) -> Drained {
        let key = match ready.environment_key.get().await {
            Ok(k) => k,
            Err(f) => return Drained::Failed(f),
        };
        let cp = ready.control_plane.with_key(&key);
        drop(key);
        let drainer = Drainer {
            control_plane: cp.as_ref(),
            queue: ready.queue.as_ref(),
            sealer: ready.sealer.as_ref(),
            gauge: ready.gauge.as_deref(),
            clock: self.rt.clock.as_ref(),
            jitter: self.rt.jitter.as_ref(),
            settings: &ready.settings,
        };
        counters.drains += 1;
        let mut report = drainer.run(budget).await;
        counters.items_enqueued += report.enqueued.len() as u64;
        counters.items_force_stopped += report.force_stopped.len() as u64;
        counters.poll_not_found += u64::from(report.poll_not_found);
        counters.ack_conflicts += u64::from(report.ack_conflicts);
        counters.control_plane_errors += u64::from(report.control_plane_errors);
        counters.enqueue_retries += u64::from(report.enqueue_retries);
        counters.drain_duration_ms = report.duration.as_millis() as u64;
        if report.end == DrainEnd::AtCapacity {
            counters.at_capacity += 1;
        }
        match &report.failure {
            Some(Failure::Enqueue { .. }) => counters.enqueue_failures += 1,
            Some(Failure::Seal { .. }) => counters.seal_failures += 1,
            _ => {}
        }
        tracing::info!(
            function = self.mode.as_str(),
            end = report.end.as_str(),
            polls = report.polls,
            enqueued = report.enqueued.len(),
            force_stopped = report.force_stopped.len(),
            poll_not_found = report.poll_not_found,
            control_plane_errors = report.control_plane_errors,
            duration_ms = counters.drain_duration_ms,
            "drain finished"
        );
        match report.failure.take() {
            Some(f) => Drained::Failed(f),
            None => Drained::Report(report),
        }
    }

    fn emit(&self, counters: &Counters) {
        let ts = crate::util::unix_ms(SystemTime::now());
        self.rt
            .metrics
            .emit(&counters.to_emf(self.mode.as_str(), ts));
    }
}

fn summary(r: &DrainReport) -> serde_json::Value {
    json!({
        "result": r.end.as_str(),
        "polls": r.polls,
        "enqueued": r.enqueued.len(),
        "force_stopped": r.force_stopped.len(),
    })
}

fn respond(status: StatusCode, body: serde_json::Value) -> Response<String> {
    let mut r = Response::new(body.to_string());
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn internal_error() -> Response<String> {
    respond(
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({"error": "internal error"}),
    )
}

/// The one log line for a failure on our side, and the generic 500.
fn log_failure(f: &Failure) -> Response<String> {
    match f {
        Failure::Config(e) => {
            tracing::error!(variable = e.variable(), error = %e, "configuration error; failing closed");
        }
        Failure::Secret { variable, source } => {
            tracing::error!(variable, error = %source, retryable = source.is_retryable(), "cannot read a secret; failing closed");
        }
        other => {
            tracing::error!(code = other.code(), retryable = other.is_retryable(), error = %other, "our side is broken; failing the invocation");
        }
    }
    internal_error()
}
