//! `cma-local serve`: a real `self_hosted` environment served from a laptop or a VM.
//!
//! * `--mode poll` (always-on): long-poll `GET …/work/poll?block_ms=…` with the
//!   environment key, ack each item at once, launch its runner; at most
//!   `--max-concurrent` runners at a time (no poll while at the cap); poll errors back
//!   off per the shared retry policy (`min(60 s, 2^n) + U(0,1)` s, after the client's
//!   own request retries); a rejected key (401/403) stops the command.
//! * `--mode webhook`: the webhook Lambda's handler on `--listen` (verify the Standard
//!   Webhooks signature, drain with the cap, hand each item to the in-memory queue),
//!   the same drain without a signature every `--sweep-interval` (what the scheduled
//!   sweep Lambda does: it picks up missed deliveries and re-queued items), and the
//!   local dispatcher launching runners in-process.
//!
//! Credentials come from the environment only and are never logged: the runners get
//! each item's own work secret (its sessions token), never the environment key.
//!
//! Stopping: the first Ctrl-C (or SIGTERM) stops claiming work and waits for the
//! running runners (they exit after `--max-idle` of quiet); a second one sends them
//! SIGTERM (process launcher: they stop their work items and exit). Runner containers
//! are independent of this process and finish on their own.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cma_shared::client::PollParams;
use cma_shared::message::{EncryptionContext, SealedSecret, WorkMessage};
use cma_shared::retry::{Jitter, RandJitter, poll_backoff};
use cma_shared::secret::WorkSecret;
use cma_shared::types::WorkItem;
use cma_shared::{ApiError, ClientConfig, ControlPlane, SecretString};
use tokio::sync::watch;
use webhook::config::{self as wh, Mode};
use webhook::drain::Budget;

use crate::dispatch::{self, LAUNCH_RETRY_FOR};
use crate::launchers::{self, Chosen, LauncherSettings};
use crate::stack::{self, ChannelQueue, StackConfig, WebhookServer};

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeMode {
    Poll,
    Webhook,
}

/// `serve` settings (the CLI's flags).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub mode: ServeMode,
    pub launcher: LauncherSettings,
    /// Runners at most (running + being launched; webhook mode: + queued).
    pub max_concurrent: u64,
    /// Poll mode: `block_ms` of each poll (1–999).
    pub block_ms: u32,
    /// `reclaim_older_than_ms` of each poll.
    pub reclaim_older_than_ms: u64,
    /// Webhook mode: where to serve the handler.
    pub listen: SocketAddr,
    /// Webhook mode: period of the unsigned drain (`ZERO` disables it).
    pub sweep_interval: Duration,
}

impl ServeOptions {
    pub fn new(mode: ServeMode, launcher: LauncherSettings) -> Self {
        ServeOptions {
            mode,
            launcher,
            max_concurrent: 4,
            block_ms: 999,
            reclaim_older_than_ms: wh::DEFAULT_RECLAIM_OLDER_THAN_MS,
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            sweep_interval: Duration::from_secs(60),
        }
    }
}

/// Credentials and ids from the environment. `Debug` never prints a secret.
#[derive(Clone)]
pub struct Credentials {
    pub environment_id: String,
    pub environment_key: SecretString,
    pub base_url: Option<String>,
    /// Webhook mode only.
    pub signing_key: Option<SecretString>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("environment_id", &self.environment_id)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Read `ANTHROPIC_ENVIRONMENT_ID`, `ANTHROPIC_ENVIRONMENT_KEY`,
    /// `ANTHROPIC_BASE_URL` (optional) and, in webhook mode,
    /// `ANTHROPIC_WEBHOOK_SIGNING_KEY`. The error names every missing or invalid
    /// variable, never a value.
    pub fn from_lookup(
        mode: ServeMode,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Credentials, String> {
        let get = |k: &str| {
            lookup(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut missing = Vec::new();
        let mut invalid = Vec::new();
        let environment_id = get(wh::ENVIRONMENT_ID);
        if environment_id.is_none() {
            missing.push(format!(
                "{} (the self_hosted environment's id, env_…)",
                wh::ENVIRONMENT_ID
            ));
        }
        let environment_key = get(wh::ENVIRONMENT_KEY);
        match &environment_key {
            None => missing.push(format!(
                "{} (the environment key from the Claude Console)",
                wh::ENVIRONMENT_KEY
            )),
            Some(k) if k.chars().any(char::is_whitespace) => {
                invalid.push(format!("{} contains whitespace", wh::ENVIRONMENT_KEY))
            }
            Some(_) => {}
        }
        let signing_key = match mode {
            ServeMode::Poll => None,
            ServeMode::Webhook => {
                let k = get(wh::SIGNING_KEY);
                match &k {
                    None => missing.push(format!(
                        "{} (the webhook's signing secret, whsec_…)",
                        wh::SIGNING_KEY
                    )),
                    Some(v) if !v.starts_with("whsec_") => {
                        invalid.push(format!("{} must start with whsec_", wh::SIGNING_KEY))
                    }
                    Some(_) => {}
                }
                k
            }
        };
        let base_url = get(wh::BASE_URL);
        if let Some(u) = &base_url
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            invalid.push(format!("{} must start with https://", wh::BASE_URL));
        }
        if !missing.is_empty() || !invalid.is_empty() {
            let mut msg = String::new();
            if !missing.is_empty() {
                msg.push_str(&format!(
                    "missing environment variable(s): {}",
                    missing.join(", ")
                ));
            }
            if !invalid.is_empty() {
                if !msg.is_empty() {
                    msg.push_str("; ");
                }
                msg.push_str(&invalid.join("; "));
            }
            return Err(msg);
        }
        Ok(Credentials {
            environment_id: environment_id.unwrap_or_default(),
            environment_key: SecretString::new(environment_key.unwrap_or_default()),
            base_url,
            signing_key: signing_key.map(SecretString::new),
        })
    }
}

/// Serve until `stop` reaches 1 (stop claiming, wait for runners) or 2 (terminate
/// the runners too). `Err` = configuration or credential problem (exit non-zero).
pub async fn serve(
    opts: &ServeOptions,
    creds: &Credentials,
    stop: watch::Receiver<u32>,
) -> Result<(), String> {
    let chosen = Arc::new(launchers::choose(&opts.launcher).await?);
    tracing::info!(launcher = chosen.name, "{}", chosen.description);
    if let Some(note) = &chosen.note {
        tracing::info!("{note}");
    }
    let result = match opts.mode {
        ServeMode::Poll => poll_loop(opts, creds, &chosen, stop.clone()).await,
        ServeMode::Webhook => webhook_mode(opts, creds, &chosen, stop.clone()).await,
    };
    drain_runners(&chosen, stop).await;
    result
}

/// After the stop: wait for the process launcher's runners (a second stop signal
/// terminates them); Docker runners run on by themselves.
async fn drain_runners(chosen: &Chosen, mut stop: watch::Receiver<u32>) {
    let Some(p) = chosen.process() else {
        if let Ok(n) = chosen.running().await
            && n > 0
        {
            tracing::info!(
                running = n,
                "runner containers keep running and exit on their own"
            );
        }
        return;
    };
    let n = p.running().len();
    if n > 0 {
        tracing::info!(
            running = n,
            "waiting for the runners to finish (Ctrl-C again stops them)"
        );
        tokio::select! {
            _ = p.wait_all() => {}
            _ = stop_at(&mut stop, 2) => {
                let n = p.terminate_all();
                tracing::info!(signalled = n, "SIGTERM sent to the runners; waiting up to 60 s");
                let _ = tokio::time::timeout(Duration::from_secs(60), p.wait_all()).await;
            }
        }
    }
    chosen.shutdown(&[], Duration::from_secs(1), false).await;
}

/// Resolves once the stop counter reaches `level` (or its sender is gone).
async fn stop_at(stop: &mut watch::Receiver<u32>, level: u32) {
    // `wait_for`'s `Ref` is not `Send`: drop it inside this future.
    let _ = stop.wait_for(|v| *v >= level).await.map(|_| ());
}

/// Sleep `d`, or less if the stop signal comes first; true if stopped. A dropped
/// sender counts as a stop.
async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<u32>) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop_at(stop, 1) => true,
    };
    stopped || *stop.borrow() >= 1
}

fn client(creds: &Credentials) -> Result<ControlPlane, String> {
    ControlPlane::new(
        ClientConfig::with_base_url(creds.base_url.as_deref()),
        creds.environment_key.clone(),
    )
    .map_err(|e| format!("cannot build the control-plane client: {e}"))
}

fn rejected(e: &ApiError) -> String {
    format!(
        "the control plane rejected {} ({}): {} (check {} and {})",
        wh::ENVIRONMENT_KEY,
        e.status.unwrap_or_default(),
        e.hint(),
        wh::ENVIRONMENT_ID,
        wh::BASE_URL
    )
}

/// Poll mode's loop.
async fn poll_loop(
    opts: &ServeOptions,
    creds: &Credentials,
    chosen: &Arc<Chosen>,
    mut stop: watch::Receiver<u32>,
) -> Result<(), String> {
    let cp = client(creds)?;
    let env = creds.environment_id.as_str();
    let worker_id = cma_shared::worker_id::worker_id();
    let launching = Arc::new(AtomicU64::new(0));
    let mut errors: u32 = 0;
    let mut at_cap_logged = false;
    let settings = dispatcher::dispatch::Settings {
        base_url: creds.base_url.clone(),
        ..Default::default()
    };
    tracing::info!(
        environment_id = env,
        worker_id,
        max_concurrent = opts.max_concurrent,
        block_ms = opts.block_ms,
        "polling for work"
    );
    loop {
        if *stop.borrow() >= 1 {
            return Ok(());
        }
        let running = chosen.running().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot count running runners; assuming none");
            0
        }) + launching.load(Ordering::SeqCst);
        if running >= opts.max_concurrent {
            if !at_cap_logged {
                tracing::info!(
                    running,
                    max_concurrent = opts.max_concurrent,
                    "at capacity; not polling until a runner exits"
                );
                at_cap_logged = true;
            }
            if sleep_or_stop(Duration::from_millis(250), &mut stop).await {
                return Ok(());
            }
            continue;
        }
        at_cap_logged = false;
        let started = Instant::now();
        let params = PollParams {
            block_ms: Some(opts.block_ms.clamp(1, 999)),
            reclaim_older_than_ms: Some(opts.reclaim_older_than_ms),
        };
        let polled = tokio::select! {
            r = cp.poll(env, params, worker_id) => r,
            _ = stop_at(&mut stop, 1) => return Ok(()),
        };
        let item = match polled {
            Ok(Some(item)) => {
                errors = 0;
                item
            }
            Ok(None) => {
                errors = 0;
                // A server that ignores block_ms must not turn this into a busy loop.
                if started.elapsed() < Duration::from_millis(100)
                    && sleep_or_stop(Duration::from_millis(250), &mut stop).await
                {
                    return Ok(());
                }
                continue;
            }
            Err(e) if e.is_auth() => return Err(rejected(&e)),
            Err(e) if e.status == Some(404) => {
                tracing::warn!(error = %e, hint = e.hint(), "poll answered 404; polling again");
                if sleep_or_stop(Duration::from_secs(1), &mut stop).await {
                    return Ok(());
                }
                continue;
            }
            Err(e) => {
                errors += 1;
                let delay = poll_backoff(errors, Duration::from_secs(60), &RandJitter);
                tracing::warn!(error = %e, hint = e.hint(), consecutive_errors = errors, ?delay, "poll failed; backing off");
                if sleep_or_stop(delay, &mut stop).await {
                    return Ok(());
                }
                continue;
            }
        };
        handle_item(&cp, env, item, chosen, &settings, &launching).await?;
    }
}

/// Ack an item at once, then launch its runner on a task of its own (or force-stop
/// an item that is not a session).
async fn handle_item(
    cp: &ControlPlane,
    env: &str,
    item: WorkItem,
    chosen: &Arc<Chosen>,
    settings: &dispatcher::dispatch::Settings,
    launching: &Arc<AtomicU64>,
) -> Result<(), String> {
    let work_id = item.id.clone();
    match cp.ack(env, &work_id).await {
        Ok(_) => {}
        Err(e) if e.status == Some(409) => {
            tracing::info!(work_id, "ack answered 409: another worker claimed the item");
            return Ok(());
        }
        Err(e) if e.is_auth() => return Err(rejected(&e)),
        Err(e) => {
            tracing::warn!(work_id, error = %e, "ack failed; the item is re-offered later");
            return Ok(());
        }
    }
    let acked_at = rfc3339_now();
    let (Some(session_id), Some(secret)) = (item.data.session_id(), item.secret.as_ref()) else {
        tracing::info!(
            work_id,
            kind = item.data.kind.as_deref().unwrap_or("(none)"),
            "not a session item (or no secret): force-stopping it"
        );
        if let Err(e) = cp.stop(env, &work_id, true).await {
            tracing::warn!(work_id, error = %e, "force-stop failed");
        }
        return Ok(());
    };
    let ctx = EncryptionContext {
        environment_id: env.to_owned(),
        work_id: work_id.clone(),
        session_id: session_id.to_owned(),
    };
    let msg = WorkMessage::new(
        &ctx,
        acked_at,
        &SealedSecret::Plaintext(WorkSecret::new(secret.expose())),
    );
    let parsed = match dispatcher::message::parse_body(&msg.to_body()) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(work_id, error = %e, "claimed item cannot be dispatched");
            return Ok(());
        }
    };
    tracing::info!(work_id, session_id, "work item claimed");
    launching.fetch_add(1, Ordering::SeqCst);
    let chosen = chosen.clone();
    let launching = launching.clone();
    let settings = settings.clone();
    tokio::spawn(async move {
        let r = dispatch::dispatch_with_retries(
            chosen.launcher.as_ref(),
            &parsed,
            &settings,
            LAUNCH_RETRY_FOR,
        )
        .await;
        launching.fetch_sub(1, Ordering::SeqCst);
        let work_id = &parsed.message.work_id;
        match r {
            Ok(dispatcher::dispatch::Dispatched::Launched { outcome, latency }) => {
                tracing::info!(%work_id, ?outcome, latency_ms = latency.as_millis() as u64, launcher = chosen.name, "runner launched")
            }
            Ok(dispatcher::dispatch::Dispatched::Stale { age }) => {
                tracing::warn!(%work_id, age_secs = age.as_secs(), "claim went stale before launch")
            }
            Err(e) => {
                tracing::error!(%work_id, error = %e, "cannot start the runner; the item is re-offered once its lease lapses")
            }
        }
    });
    Ok(())
}

fn rfc3339_now() -> String {
    webhook::util::rfc3339_millis(std::time::SystemTime::now())
}

/// Webhook mode: handler + sweep + dispatcher.
async fn webhook_mode(
    opts: &ServeOptions,
    creds: &Credentials,
    chosen: &Arc<Chosen>,
    mut stop: watch::Receiver<u32>,
) -> Result<(), String> {
    let mut extra = HashMap::new();
    extra.insert(
        wh::RECLAIM_OLDER_THAN_MS,
        opts.reclaim_older_than_ms.to_string(),
    );
    let cfg = StackConfig {
        environment_id: creds.environment_id.clone(),
        base_url: creds.base_url.clone(),
        environment_key: creds.environment_key.clone(),
        signing_key: creds
            .signing_key
            .clone()
            .ok_or_else(|| format!("missing environment variable {}", wh::SIGNING_KEY))?,
        max_concurrent: Some(opts.max_concurrent),
        extra,
    };
    let (queue, rx) = ChannelQueue::new();
    let app = Arc::new(stack::build_app(
        &cfg,
        Mode::Webhook,
        &queue,
        chosen.clone(),
    )?);
    let sweep = Arc::new(stack::build_app(&cfg, Mode::Sweep, &queue, chosen.clone())?);
    let server = WebhookServer::start(app, opts.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", opts.listen))?;
    tracing::info!(url = %server.url(), environment_id = %creds.environment_id, max_concurrent = opts.max_concurrent, "serving the webhook handler");
    let settings = dispatcher::dispatch::Settings {
        base_url: creds.base_url.clone(),
        ..Default::default()
    };
    let dispatcher = tokio::spawn(dispatch::run_loop(
        rx,
        chosen.launcher.clone(),
        settings,
        None,
    ));
    let mut result = Ok(());
    if opts.sweep_interval.is_zero() {
        stop_at(&mut stop, 1).await;
    } else {
        loop {
            // The first sweep runs at once: it claims what queued up while we were away.
            let budget = Budget::from_remaining(sweep.clock().now(), Budget::DEFAULT_REMAINING);
            match sweep.handle_sweep(budget).await {
                Ok(summary) => tracing::debug!(%summary, "sweep"),
                Err(f) => {
                    tracing::warn!(code = f.code(), "sweep failed (see the line above)");
                    if matches!(f, webhook::Failure::EnvironmentKeyRejected(_)) {
                        result = Err(format!(
                            "the control plane rejected {} (check it and {})",
                            wh::ENVIRONMENT_KEY,
                            wh::ENVIRONMENT_ID
                        ));
                        break;
                    }
                }
            }
            let jitter = Duration::from_millis((RandJitter.sample() * 1000.0) as u64);
            if sleep_or_stop(opts.sweep_interval + jitter, &mut stop).await {
                break;
            }
        }
    }
    server.shutdown().await;
    // Messages already queued still get their runner (the items are claimed): close
    // the queue (every sender: ours and the apps') and let the dispatcher finish.
    drop(sweep);
    drop(queue);
    let _ = tokio::time::timeout(
        Duration::from_secs(LAUNCH_RETRY_FOR.as_secs() + 5),
        dispatcher,
    )
    .await;
    result
}
