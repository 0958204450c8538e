//! Prints a freshly signed webhook delivery as a Function URL (HTTP API v2) event, for
//! `cargo lambda invoke webhook --data-file FILE`. Static fixtures go stale in the
//! ±300 s window; this does not.
//!
//! ```text
//! ANTHROPIC_WEBHOOK_SIGNING_KEY=whsec_… sign-delivery --session-id sesn_… \
//!     [--type session.status_run_started] [--webhook-id msg_…] [--timestamp UNIX_SECS] \
//!     [--base64] [--out FILE]
//! ```

use std::process::ExitCode;

use cma_shared::WebhookSecret;

const USAGE: &str = "usage: ANTHROPIC_WEBHOOK_SIGNING_KEY=whsec_... sign-delivery --session-id ID \
[--type TYPE] [--webhook-id ID] [--timestamp UNIX_SECS] [--base64] [--out FILE]";

struct Args {
    session_id: String,
    event_type: String,
    webhook_id: Option<String>,
    timestamp: Option<i64>,
    base64: bool,
    out: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut session_id = None;
    let mut a = Args {
        session_id: String::new(),
        event_type: cma_shared::types::RUN_STARTED.to_owned(),
        webhook_id: None,
        timestamp: None,
        base64: false,
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--session-id" => session_id = Some(value("--session-id")?),
            "--type" => a.event_type = value("--type")?,
            "--webhook-id" => a.webhook_id = Some(value("--webhook-id")?),
            "--timestamp" => {
                a.timestamp = Some(
                    value("--timestamp")?
                        .parse()
                        .map_err(|_| "--timestamp: expected Unix seconds".to_owned())?,
                )
            }
            "--base64" => a.base64 = true,
            "--out" => a.out = Some(value("--out")?),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    a.session_id = session_id.ok_or_else(|| format!("--session-id is required\n{USAGE}"))?;
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sign-delivery: {e}");
            return ExitCode::from(2);
        }
    };
    let key = match std::env::var("ANTHROPIC_WEBHOOK_SIGNING_KEY") {
        Ok(k) if !k.trim().is_empty() => WebhookSecret::new(k),
        _ => {
            eprintln!("sign-delivery: ANTHROPIC_WEBHOOK_SIGNING_KEY is not set\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let webhook_id = args
        .webhook_id
        .unwrap_or_else(|| format!("msg_{}", uuid::Uuid::new_v4().simple()));
    let ts = args.timestamp.unwrap_or_else(webhook::local::unix_now);
    let event = match webhook::local::signed_delivery_event(
        &key,
        &args.event_type,
        &args.session_id,
        &webhook_id,
        ts,
        args.base64,
    ) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("sign-delivery: ANTHROPIC_WEBHOOK_SIGNING_KEY: {e}");
            return ExitCode::from(2);
        }
    };
    let text = serde_json::to_string_pretty(&event).expect("JSON value serialises") + "\n";
    match args.out {
        Some(path) => {
            if let Err(e) = std::fs::write(&path, text) {
                eprintln!("sign-delivery: cannot write {path}: {e}");
                return ExitCode::from(1);
            }
            eprintln!("sign-delivery: wrote {path} (valid for 300 s from timestamp {ts})");
        }
        None => print!("{text}"),
    }
    ExitCode::SUCCESS
}
