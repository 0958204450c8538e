//! `cma-local bench`: the local stack's time from webhook delivery to first tool
//! result, per launcher (prints figures, asserts nothing).
//!
//! One fake control plane, one webhook handler and one dispatcher per launcher, kept
//! warm across runs. Each run queues a fresh session whose script is one `bash` call
//! (`echo ready`), POSTs a signed delivery and measures, from the moment the POST is
//! sent: the ack (claim), the launcher's answer, the runner's first heartbeat and the
//! first tool result as the control plane received it. The run ends when the runner
//! has stopped the item (runner `--max-idle 200ms`), so runs never overlap. The first
//! run of each launcher is reported apart (cold: page cache, first container).

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cma_shared::SecretString;
use cma_tests::fake::{FakeConfig, FakeControlPlane, ScriptStep, SessionScript};
use serde_json::json;
use tokio::sync::mpsc;
use webhook::config::Mode;

use crate::dispatch::{self, DispatchEvent};
use crate::launchers::{self, Kind, LauncherSettings};
use crate::stack::{self, ChannelQueue, StackConfig, WebhookServer};
use crate::transcript::fmt_duration;

/// Bench settings.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub runs: usize,
    /// Which launchers, in order (`Auto` is not meaningful here).
    pub kinds: Vec<Kind>,
    /// Image, runner binary, base dir; `kind` and `max_idle` are set per launcher.
    pub launcher: LauncherSettings,
    /// Bound of one run.
    pub run_timeout: Duration,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            runs: 10,
            kinds: vec![Kind::Process, Kind::Docker],
            launcher: LauncherSettings::demo(),
            run_timeout: Duration::from_secs(60),
        }
    }
}

/// One run's stage times from the POST.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub claimed: Duration,
    pub launched: Duration,
    pub first_heartbeat: Duration,
    pub first_result: Duration,
}

/// One launcher's figures.
#[derive(Debug, Clone)]
pub struct BenchResult {
    pub launcher: &'static str,
    pub cold: Option<Sample>,
    pub samples: Vec<Sample>,
    /// Why the launcher was skipped or stopped early.
    pub problem: Option<String>,
}

/// Nearest-rank percentile (`p` in 0..=100) of unsorted values.
pub fn percentile(values: &[Duration], p: f64) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort();
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    Some(v[rank.min(v.len()) - 1])
}

/// Run the benchmark, printing progress and a table to `w`.
pub async fn run(opts: &BenchOptions, w: &mut (dyn Write + Send)) -> Vec<BenchResult> {
    let mut results = Vec::new();
    for kind in &opts.kinds {
        let r = bench_one(opts, *kind, w).await;
        results.push(r);
    }
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "webhook delivery → first tool result (local stack, fake control plane on loopback)"
    );
    let _ = writeln!(
        w,
        "{:<9} {:>4}  {:>9} {:>9} {:>9}  {:>9} {:>9}  {:>9}",
        "launcher", "runs", "p50", "min", "max", "claim p50", "launch", "heartbeat"
    );
    for r in &results {
        if let Some(p) = &r.problem
            && r.samples.is_empty()
        {
            let _ = writeln!(w, "{:<9} skipped: {p}", r.launcher);
            continue;
        }
        let col = |f: fn(&Sample) -> Duration, p: f64| {
            let v: Vec<Duration> = r.samples.iter().map(f).collect();
            percentile(&v, p).map_or("-".to_owned(), fmt_duration)
        };
        let _ = writeln!(
            w,
            "{:<9} {:>4}  {:>9} {:>9} {:>9}  {:>9} {:>9}  {:>9}",
            r.launcher,
            r.samples.len(),
            col(|s| s.first_result, 50.0),
            col(|s| s.first_result, 0.0),
            col(|s| s.first_result, 100.0),
            col(|s| s.claimed, 50.0),
            col(|s| s.launched, 50.0),
            col(|s| s.first_heartbeat, 50.0),
        );
        if let Some(c) = &r.cold {
            let _ = writeln!(
                w,
                "{:<9} cold first run: first result {} (launch {}, heartbeat {})",
                "",
                fmt_duration(c.first_result),
                fmt_duration(c.launched),
                fmt_duration(c.first_heartbeat)
            );
        }
        if let Some(p) = &r.problem {
            let _ = writeln!(w, "{:<9} stopped early: {p}", "");
        }
    }
    let _ = writeln!(
        w,
        "(claim, launch, heartbeat: p50 of the time from the POST to the ack, to the launcher's answer, to the runner's first heartbeat)"
    );
    results
}

async fn bench_one(opts: &BenchOptions, kind: Kind, w: &mut (dyn Write + Send)) -> BenchResult {
    let name = match kind {
        Kind::Docker => "docker",
        _ => "process",
    };
    let mut result = BenchResult {
        launcher: name,
        cold: None,
        samples: Vec::new(),
        problem: None,
    };
    let mut settings = opts.launcher.clone();
    settings.kind = kind;
    settings.max_idle = Duration::from_millis(200);
    let chosen = match launchers::choose(&settings).await {
        Ok(c) => Arc::new(c),
        Err(e) => {
            let _ = writeln!(w, "{name}: skipped: {e}");
            result.problem = Some(e);
            return result;
        }
    };
    let _ = writeln!(w, "{}", chosen.description);

    let fake = FakeControlPlane::start(FakeConfig::default()).await;
    let (queue, rx) = ChannelQueue::new();
    let signing_key = stack::random_signing_key();
    let cfg = StackConfig {
        environment_id: fake.environment_id(),
        base_url: Some(fake.base_url()),
        environment_key: SecretString::new(fake.environment_key()),
        signing_key: signing_key.clone(),
        max_concurrent: None,
        extra: HashMap::new(),
    };
    let server = match stack::build_app(&cfg, Mode::Webhook, &queue, chosen.clone()) {
        Ok(app) => WebhookServer::start(Arc::new(app), SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let server = match server {
        Ok(s) => s,
        Err(e) => {
            result.problem = Some(e);
            return result;
        }
    };
    drop(queue);
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let dispatcher_task = tokio::spawn(dispatch::run_loop(
        rx,
        chosen.launcher.clone(),
        dispatcher::dispatch::Settings {
            base_url: Some(fake.base_url()),
            ..Default::default()
        },
        Some(ev_tx),
    ));
    let http = reqwest::Client::new();
    let mut sessions = Vec::new();
    for i in 0..=opts.runs {
        let created = fake.create_session(SessionScript::new(vec![ScriptStep::tool(
            "bash",
            json!({"command": "echo ready"}),
        )]));
        sessions.push(created.session_id.clone());
        match one_run(
            &fake,
            &http,
            &server,
            &signing_key,
            &created,
            &mut ev_rx,
            opts.run_timeout,
        )
        .await
        {
            Ok(s) => {
                let _ = writeln!(
                    w,
                    "  {name} run {i:>2}{}: first result {}",
                    if i == 0 { " (cold)" } else { "" },
                    fmt_duration(s.first_result)
                );
                if i == 0 {
                    result.cold = Some(s);
                } else {
                    result.samples.push(s);
                }
            }
            Err(e) => {
                let _ = writeln!(w, "  {name} run {i}: FAILED: {e}");
                result.problem = Some(e);
                break;
            }
        }
    }
    dispatcher_task.abort();
    server.shutdown().await;
    chosen
        .shutdown(&sessions, Duration::from_secs(10), result.problem.is_some())
        .await;
    fake.shutdown().await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn one_run(
    fake: &FakeControlPlane,
    http: &reqwest::Client,
    server: &WebhookServer,
    signing_key: &SecretString,
    created: &cma_tests::fake::CreatedSession,
    ev_rx: &mut mpsc::UnboundedReceiver<DispatchEvent>,
    timeout: Duration,
) -> Result<Sample, String> {
    let sid = &created.session_id;
    let wid = &created.work_id;
    let t0 = Instant::now();
    let deadline = t0 + timeout;
    let (status, body) = stack::post_signed_delivery(
        http,
        &server.url(),
        signing_key,
        cma_shared::types::RUN_STARTED,
        sid,
    )
    .await?;
    if status != 200 {
        return Err(format!("webhook answered {status}: {body}"));
    }
    let mut launched = None;
    loop {
        while let Ok(ev) = ev_rx.try_recv() {
            match ev {
                DispatchEvent::Launched { work_id, at, .. } if &work_id == wid => {
                    launched = Some(at.saturating_duration_since(t0));
                }
                DispatchEvent::Failed { reason, .. } => return Err(reason),
                _ => {}
            }
        }
        if !fake.results(sid).is_empty() && fake.work_state(wid) == "stopped" {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no result and stop within {}",
                fmt_duration(timeout)
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let requests = fake.requests();
    let since = |pred: &dyn Fn(&cma_tests::fake::RecordedRequest) -> bool| {
        requests
            .iter()
            .find(|r| pred(r))
            .map(|r| r.at.saturating_duration_since(t0))
    };
    let events_path = format!("/v1/sessions/{sid}/events");
    Ok(Sample {
        claimed: since(&|r| r.method == "POST" && r.path.ends_with(&format!("/work/{wid}/ack")))
            .unwrap_or_default(),
        launched: launched.unwrap_or_default(),
        first_heartbeat: since(&|r| {
            r.method == "POST"
                && r.path.ends_with(&format!("/work/{wid}/heartbeat"))
                && r.status == 200
        })
        .unwrap_or_default(),
        first_result: since(&|r| {
            r.method == "POST"
                && r.path == events_path
                && r.status == 200
                && String::from_utf8_lossy(&r.body).contains("user.tool_result")
        })
        .ok_or("the first result was not recorded")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<Duration> = [5, 1, 3, 2, 4]
            .iter()
            .map(|&ms| Duration::from_millis(ms))
            .collect();
        assert_eq!(percentile(&v, 50.0), Some(Duration::from_millis(3)));
        assert_eq!(percentile(&v, 0.0), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&v, 100.0), Some(Duration::from_millis(5)));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
