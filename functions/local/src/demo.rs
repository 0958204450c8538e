//! `cma-local demo`: the whole pipeline on this machine, no cloud.
//!
//! ```text
//! fake control plane (in-process, scripted session)        ← the agent's side
//!   │ signed session.status_run_started, real HTTP POST
//!   ▼
//! webhook handler (the Lambda's App, served on 127.0.0.1)  → poll + ack
//!   │ in-memory queue (one WorkMessage)
//!   ▼
//! local dispatcher → Docker launcher (host network) or process launcher
//!   ▼
//! runner: heartbeat, tool loop (bash, read, write, edit, glob, grep), force-stop
//! ```
//!
//! The session is followed through the fake's API as results arrive and printed as a
//! transcript (each call, its result, timings), then a summary. Success = every
//! scripted call answered (with the expected `is_error`), the script's `end_turn`
//! reached, and the work item stopped by the runner, within the timeout.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cma_shared::SecretString;
use cma_tests::fake::{FakeConfig, FakeControlPlane, RecordedRequest, ScriptStep, SessionScript};
use dispatcher::LaunchOutcome;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use webhook::config::Mode;

use crate::dispatch::{self, DispatchEvent};
use crate::launchers::{self, Chosen, LauncherSettings};
use crate::stack::{self, ChannelQueue, StackConfig, WebhookServer};
use crate::transcript::{fmt_duration, fmt_offset, input_summary, result_preview, result_text};

/// One scripted call and whether its result is expected to be an error.
pub struct DemoStep {
    pub step: ScriptStep,
    pub expect_error: bool,
}

fn ok(name: &str, input: Value) -> DemoStep {
    DemoStep {
        step: ScriptStep::tool(name, input),
        expect_error: false,
    }
}

const GREET_SH: &str = r#"#!/usr/bin/env bash
# greet NAME: print a greeting for NAME.
greet() {
  echo "Hello, $1"
}
"#;

const TEST_SH: &str = r#"#!/usr/bin/env bash
# A tiny test runner: source the code, compare outputs.
source "$(dirname "$0")/greet.sh"
fail=0
check() {
  if [ "$2" = "$3" ]; then echo "ok   $1"; else echo "FAIL $1: got '$2', want '$3'"; fail=1; fi
}
check "greets by name" "$(greet Ada)" "Hello, Ada!"
exit $fail
"#;

/// The demo session: an agent scaffolds a tiny shell project, runs its test (which
/// fails), explores the code, fixes it, adds a test case, runs the tests again, and
/// trips over a missing file (an `is_error` result). Every built-in tool is used.
pub fn demo_steps() -> Vec<DemoStep> {
    vec![
        ok(
            "write",
            json!({"file_path": "greeter/greet.sh", "content": GREET_SH}),
        ),
        ok(
            "write",
            json!({"file_path": "greeter/test.sh", "content": TEST_SH}),
        ),
        ok(
            "bash",
            json!({"command": "cd greeter && ls -l && bash test.sh; echo \"exit status: $?\""}),
        ),
        ok("grep", json!({"pattern": "Hello", "path": "greeter"})),
        ok("read", json!({"file_path": "greeter/greet.sh"})),
        ok(
            "edit",
            json!({
                "file_path": "greeter/greet.sh",
                "old_string": "echo \"Hello, $1\"",
                "new_string": "echo \"Hello, ${1:-world}!\"",
            }),
        ),
        ok(
            "edit",
            json!({
                "file_path": "greeter/test.sh",
                "old_string": "exit $fail",
                "new_string": "check \"defaults to world\" \"$(greet)\" \"Hello, world!\"\nexit $fail",
            }),
        ),
        // The shell is persistent: it is still in greeter/ from call #3.
        ok(
            "bash",
            json!({"command": "bash test.sh && echo \"all tests passed\""}),
        ),
        ok("glob", json!({"pattern": "**/*.sh"})),
        DemoStep {
            step: ScriptStep::tool("read", json!({"file_path": "greeter/CHANGELOG.md"})),
            expect_error: true,
        },
    ]
}

/// The demo's scripted session.
pub fn demo_script() -> SessionScript {
    SessionScript::new(demo_steps().into_iter().map(|s| s.step).collect())
}

/// Demo settings (the CLI's flags).
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub launcher: LauncherSettings,
    /// Overall bound, from the webhook delivery to the stopped item.
    pub timeout: Duration,
}

/// One answered call.
#[derive(Debug, Clone)]
pub struct CallRecord {
    pub index: usize,
    pub tool: String,
    pub summary: String,
    pub text: String,
    pub is_error: bool,
    pub expect_error: bool,
    /// When the control plane received the result, from the webhook delivery.
    pub at: Duration,
    /// Since the previous result (for the first call: since the runner's first
    /// heartbeat).
    pub took: Duration,
}

/// Stage times, each from the moment the webhook delivery was sent.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    pub webhook_response: Option<Duration>,
    pub claimed: Option<Duration>,
    pub enqueued: Option<Duration>,
    pub dispatched: Option<Duration>,
    pub launched: Option<Duration>,
    pub runner_started: Option<Duration>,
    pub first_result: Option<Duration>,
    pub last_result: Option<Duration>,
    pub end_turn: Option<Duration>,
    pub stopped: Option<Duration>,
}

/// What happened.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// `None` = success.
    pub failure: Option<String>,
    pub launcher: &'static str,
    pub calls: Vec<CallRecord>,
    pub timings: Timings,
}

impl DemoReport {
    pub fn success(&self) -> bool {
        self.failure.is_none()
    }
}

/// Writes transcript lines; a failed write (closed pipe) is ignored.
pub struct Out<'a> {
    w: &'a mut (dyn Write + Send),
}

impl Out<'_> {
    fn line(&mut self, s: impl AsRef<str>) {
        let _ = writeln!(self.w, "{}", s.as_ref());
        let _ = self.w.flush();
    }

    fn stage(&mut self, at: Duration, what: &str, text: impl AsRef<str>) {
        self.line(format!("[{}] {what:<8} {}", fmt_offset(at), text.as_ref()));
    }
}

const INDENT: &str = "                     ";

/// Run the demo, writing the transcript to `w`.
pub async fn run(opts: &DemoOptions, w: &mut (dyn Write + Send)) -> DemoReport {
    let mut out = Out { w };
    let mut report = DemoReport {
        failure: None,
        launcher: "none",
        calls: Vec::new(),
        timings: Timings::default(),
    };
    out.line("cma-local demo: the whole pipeline on this machine (fake control plane, no cloud)");
    out.line("");

    // The agent's side: a fake control plane with one scripted session queued.
    let fake = FakeControlPlane::start(FakeConfig::default()).await;
    let steps = demo_steps();
    let created = fake.create_session(demo_script());
    out.line(format!(
        "  control plane  {} (fake, in-process): session {} queued as {}, {} tool calls scripted",
        fake.base_url(),
        created.session_id,
        created.work_id,
        steps.len()
    ));

    // The launcher: Docker when an engine and the image are there (auto), else process.
    let chosen = match launchers::choose(&opts.launcher).await {
        Ok(c) => Arc::new(c),
        Err(e) => return setup_failed(&mut out, report, "launcher", e),
    };
    report.launcher = chosen.name;
    out.line(format!("  launcher       {}", chosen.description));
    if let Some(note) = &chosen.note {
        out.line(format!("                 ({note})"));
    }

    // The webhook handler, served on loopback with in-memory ports.
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
        Ok(app) => {
            match WebhookServer::start(Arc::new(app), SocketAddr::from(([127, 0, 0, 1], 0))).await {
                Ok(s) => s,
                Err(e) => {
                    let e = format!("cannot serve the webhook handler on 127.0.0.1: {e}");
                    return setup_failed(&mut out, report, "webhook", e);
                }
            }
        }
        Err(e) => {
            let e = format!("cannot build the webhook handler: {e}");
            return setup_failed(&mut out, report, "webhook", e);
        }
    };
    out.line(format!(
        "  webhook        {} (the webhook Lambda's handler, in-process; in-memory queue)",
        server.url()
    ));
    drop(queue);

    // The dispatcher: queue → launcher.
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let settings = dispatcher::dispatch::Settings {
        base_url: Some(fake.base_url()),
        ..Default::default()
    };
    let dispatcher = tokio::spawn(dispatch::run_loop(
        rx,
        chosen.launcher.clone(),
        settings,
        Some(ev_tx),
    ));
    out.line("");

    // The delivery.
    let http = reqwest::Client::new();
    let t0 = Instant::now();
    let since = |i: Instant| i.saturating_duration_since(t0);
    let posted = stack::post_signed_delivery(
        &http,
        &server.url(),
        &signing_key,
        cma_shared::types::RUN_STARTED,
        &created.session_id,
    )
    .await;
    let t_resp = since(Instant::now());
    report.timings.webhook_response = Some(t_resp);
    match posted {
        Ok((status, body)) => {
            out.stage(
                Duration::ZERO,
                "webhook",
                format!(
                    "POST {} session.status_run_started (signed) → {status} {} ({})",
                    server.url(),
                    body.trim(),
                    fmt_duration(t_resp)
                ),
            );
            if status != 200 {
                report.failure = Some(format!("the webhook handler answered {status}: {body}"));
            }
        }
        Err(e) => report.failure = Some(e),
    }
    if let Some(ack) = find_request(&fake, |r| {
        r.method == "POST" && r.path.ends_with(&format!("/work/{}/ack", created.work_id))
    }) {
        let at = since(ack.at);
        report.timings.claimed = Some(at);
        out.stage(
            at,
            "claim",
            format!("poll + ack of {} (status {})", created.work_id, ack.status),
        );
    }

    if report.failure.is_none() {
        follow(
            &mut out,
            &fake,
            &created,
            &steps,
            &chosen,
            &mut ev_rx,
            t0,
            opts.timeout,
            &mut report,
        )
        .await;
    }

    dispatcher.abort();
    server.shutdown().await;
    summary(&mut out, &report, &chosen, steps.len());
    let keep = report.failure.is_some();
    chosen
        .shutdown(
            std::slice::from_ref(&created.session_id),
            Duration::from_secs(10),
            keep,
        )
        .await;
    if keep && let Some(log) = chosen.log_path(&created.session_id) {
        out.line(format!("runner log kept: {}", log.display()));
    }
    fake.shutdown().await;
    report
}

fn setup_failed(out: &mut Out<'_>, mut report: DemoReport, what: &str, e: String) -> DemoReport {
    out.line(format!("  {what:<14} cannot start"));
    out.line("");
    out.line(format!("FAILED: {e}"));
    report.failure = Some(e);
    report
}

fn find_request(
    fake: &FakeControlPlane,
    pred: impl Fn(&RecordedRequest) -> bool,
) -> Option<RecordedRequest> {
    fake.requests().into_iter().find(|r| pred(r))
}

/// Follow the session until the item is stopped or the deadline passes.
#[allow(clippy::too_many_arguments)]
async fn follow(
    out: &mut Out<'_>,
    fake: &FakeControlPlane,
    created: &cma_tests::fake::CreatedSession,
    steps: &[DemoStep],
    chosen: &Chosen,
    ev_rx: &mut mpsc::UnboundedReceiver<DispatchEvent>,
    t0: Instant,
    timeout: Duration,
    report: &mut DemoReport,
) {
    let since = |i: Instant| i.saturating_duration_since(t0);
    let deadline = t0 + timeout;
    let sid = &created.session_id;
    let wid = &created.work_id;
    let heartbeat_path = format!("/work/{wid}/heartbeat");
    let stop_path = format!("/work/{wid}/stop");
    let events_path = format!("/v1/sessions/{sid}/events");
    let mut seen = 0usize;
    // call id → (index, tool, input summary)
    let mut calls: HashMap<String, (usize, String, String)> = HashMap::new();
    let mut prev_mark: Option<Duration> = None;
    let workdir_prefix = format!("{}/", chosen.workdir(sid));
    loop {
        while let Ok(ev) = ev_rx.try_recv() {
            match ev {
                DispatchEvent::Received {
                    work_id,
                    enqueued_at,
                    at,
                    ..
                } => {
                    report.timings.enqueued = Some(since(enqueued_at));
                    report.timings.dispatched = Some(since(at));
                    out.stage(
                        since(enqueued_at),
                        "queue",
                        format!("1 message ({work_id}) → local dispatcher"),
                    );
                }
                DispatchEvent::Launched { outcome, at, .. } => {
                    report.timings.launched = Some(since(at));
                    let what = match &outcome {
                        LaunchOutcome::Started { id } => {
                            format!("started {}", chosen.runner_label(id))
                        }
                        LaunchOutcome::AlreadyRunning { id } => {
                            format!("already running: {}", chosen.runner_label(id))
                        }
                    };
                    out.stage(
                        since(at),
                        "launch",
                        format!("{} launcher: {what}", chosen.name),
                    );
                }
                DispatchEvent::Failed { reason, at, .. } => {
                    out.stage(since(at), "launch", format!("FAILED: {reason}"));
                    report.failure = Some(format!("the runner could not be launched: {reason}"));
                    return;
                }
            }
        }

        if report.timings.runner_started.is_none()
            && let Some(hb) = find_request(fake, |r| {
                r.method == "POST" && r.path.ends_with(&heartbeat_path) && r.status == 200
            })
        {
            let at = since(hb.at);
            report.timings.runner_started = Some(at);
            prev_mark = Some(at);
            out.stage(
                at,
                "runner",
                format!(
                    "first heartbeat accepted: the runner holds the lease (workdir {})",
                    chosen.workdir(sid)
                ),
            );
        }

        let events = fake.events(sid);
        let mut new_result = false;
        for ev in events.iter().skip(seen) {
            match ev["type"].as_str().unwrap_or_default() {
                "agent.tool_use" => {
                    let id = ev["id"].as_str().unwrap_or_default().to_owned();
                    let tool = ev["name"].as_str().unwrap_or("?").to_owned();
                    let summary = input_summary(&tool, &ev["input"]);
                    calls.insert(id, (calls.len() + 1, tool, summary));
                }
                "user.tool_result" => new_result = true,
                _ => {}
            }
        }
        let new_events: Vec<Value> = events.iter().skip(seen).cloned().collect();
        seen = events.len();
        let requests = if new_result {
            fake.requests()
        } else {
            Vec::new()
        };
        for ev in &new_events {
            match ev["type"].as_str().unwrap_or_default() {
                "user.tool_result" => {
                    let call_id = ev["tool_use_id"].as_str().unwrap_or_default();
                    let Some((index, tool, summary)) = calls.get(call_id).cloned() else {
                        continue;
                    };
                    let at = requests
                        .iter()
                        .find(|r| {
                            r.method == "POST"
                                && r.path == events_path
                                && r.status == 200
                                && contains(&r.body, call_id)
                        })
                        .map_or_else(|| since(Instant::now()), |r| since(r.at));
                    let took = at.saturating_sub(prev_mark.unwrap_or(at));
                    prev_mark = Some(at);
                    let text = result_text(ev);
                    let is_error = ev["is_error"].as_bool().unwrap_or(false);
                    let expect_error = steps.get(index - 1).is_some_and(|s| s.expect_error);
                    if report.timings.first_result.is_none() {
                        report.timings.first_result = Some(at);
                    }
                    report.timings.last_result = Some(at);
                    out.stage(at, &format!("#{index} {tool}"), &summary);
                    let verdict = match (is_error, expect_error) {
                        (false, _) => "ok".to_owned(),
                        (true, true) => "is_error (as scripted)".to_owned(),
                        (true, false) => "is_error (UNEXPECTED)".to_owned(),
                    };
                    out.line(format!("{INDENT}{verdict}, {}", fmt_duration(took)));
                    // Paths relative to the workdir read better than /tmp/cma-local-…/sesn_…/.
                    let (lines, more) = result_preview(&text.replace(&workdir_prefix, ""));
                    for l in &lines {
                        out.line(format!("{INDENT}│ {l}"));
                    }
                    if more > 0 {
                        out.line(format!("{INDENT}│ … {more} more lines"));
                    }
                    report.calls.push(CallRecord {
                        index,
                        tool,
                        summary,
                        text,
                        is_error,
                        expect_error,
                        at,
                        took,
                    });
                }
                "session.status_idle" if ev["stop_reason"]["type"].as_str() == Some("end_turn") => {
                    let at = since(Instant::now());
                    report.timings.end_turn = Some(at);
                    out.stage(
                        at,
                        "agent",
                        "end_turn: the session is idle, the script is done",
                    );
                }
                _ => {}
            }
        }

        if fake.work_state(wid) == "stopped" {
            let at = find_request(fake, |r| r.method == "POST" && r.path.ends_with(&stop_path))
                .map_or_else(|| since(Instant::now()), |r| since(r.at));
            report.timings.stopped = Some(at);
            out.stage(
                at,
                "stopped",
                format!(
                    "the runner force-stopped {wid} and exited (after --max-idle {})",
                    humantime(chosen.max_idle)
                ),
            );
            break;
        }
        if Instant::now() >= deadline {
            report.failure = Some(timeout_reason(report, timeout, chosen));
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Verdict.
    let answered = report.calls.len();
    let unexpected: Vec<String> = report
        .calls
        .iter()
        .filter(|c| c.is_error != c.expect_error)
        .map(|c| {
            format!(
                "call #{} {} returned is_error={} (expected {})",
                c.index, c.tool, c.is_error, c.expect_error
            )
        })
        .collect();
    if answered != steps.len() || !fake.script_finished(sid) {
        report.failure = Some(format!(
            "the item stopped after {answered} of {} calls; the script did not finish",
            steps.len()
        ));
    } else if !unexpected.is_empty() {
        report.failure = Some(unexpected.join("; "));
    } else if fake.duplicate_results(sid) > 0 {
        report.failure = Some(format!(
            "{} duplicate results were posted",
            fake.duplicate_results(sid)
        ));
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    let n = needle.as_bytes();
    !n.is_empty() && hay.windows(n.len()).any(|w| w == n)
}

fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn timeout_reason(report: &DemoReport, timeout: Duration, chosen: &Chosen) -> String {
    let t = &report.timings;
    let stage = if t.dispatched.is_none() {
        "the webhook handler enqueued nothing".to_owned()
    } else if t.launched.is_none() {
        format!("the {} launcher did not return", chosen.name)
    } else if t.runner_started.is_none() {
        format!(
            "the runner never heartbeated (it did not start or cannot reach the fake control plane){}",
            chosen
                .log_hint
                .as_deref()
                .map(|h| format!("; {h}"))
                .unwrap_or_default()
        )
    } else if t.end_turn.is_none() {
        format!(
            "the session stalled after {} results{}",
            report.calls.len(),
            chosen
                .log_hint
                .as_deref()
                .map(|h| format!("; {h}"))
                .unwrap_or_default()
        )
    } else {
        "the runner did not stop the work item after the end_turn idle".to_owned()
    };
    format!("timed out after {}: {stage}", fmt_duration(timeout))
}

fn summary(out: &mut Out<'_>, report: &DemoReport, chosen: &Chosen, scripted: usize) {
    out.line("");
    out.line("Summary");
    let errors = report.calls.iter().filter(|c| c.is_error).count();
    out.line(format!(
        "  {} of {scripted} tool calls answered ({} ok, {errors} is_error), launcher: {}",
        report.calls.len(),
        report.calls.len() - errors,
        chosen.name
    ));
    let t = &report.timings;
    let row = |out: &mut Out<'_>, label: &str, d: Option<Duration>| {
        if let Some(d) = d {
            out.line(format!("  {label:<44} {}", fmt_duration(d)));
        }
    };
    let diff = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    row(out, "webhook → claimed (poll + ack)", t.claimed);
    row(out, "webhook → response (drain done)", t.webhook_response);
    row(
        out,
        &format!("claimed → runner launched ({})", chosen.name),
        diff(t.claimed, t.launched),
    );
    row(
        out,
        "launched → runner's first heartbeat",
        diff(t.launched, t.runner_started),
    );
    row(out, "webhook → first tool result", t.first_result);
    row(
        out,
        &format!("first → last result ({} calls)", report.calls.len()),
        diff(t.first_result, t.last_result),
    );
    row(
        out,
        &format!(
            "end_turn → item stopped (--max-idle {})",
            humantime(chosen.max_idle)
        ),
        diff(t.end_turn, t.stopped),
    );
    row(out, "webhook → item stopped (total)", t.stopped);
    out.line("");
    match &report.failure {
        None => out.line(
            "OK: every call answered, the script finished, the runner stopped the work item.",
        ),
        Some(f) => out.line(format!("FAILED: {f}")),
    }
}
