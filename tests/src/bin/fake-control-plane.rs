//! Standalone fake control plane for local demos.
//!
//! ```text
//! fake-control-plane [--port N] [--ttl SECONDS] [--demo] [--lax-headers]
//! ```
//! Prints one JSON line (base_url, environment_id, environment_key and, with
//! `--demo`, the demo session's work_id/session_id/secret) and serves until Ctrl-C.

use std::process::ExitCode;

use cma_tests::fake::{FakeConfig, FakeControlPlane, ScriptStep, SessionScript};
use serde_json::json;

const USAGE: &str = "usage: fake-control-plane [--port N] [--ttl SECONDS] [--demo] [--lax-headers]";

struct Args {
    port: u16,
    ttl: Option<u64>,
    demo: bool,
    lax: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        port: 0,
        ttl: None,
        demo: false,
        lax: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--port" => {
                args.port = value("--port")?
                    .parse()
                    .map_err(|_| "--port: expected 0-65535".to_string())?
            }
            "--ttl" => {
                let ttl: u64 = value("--ttl")?
                    .parse()
                    .map_err(|_| "--ttl: expected seconds".to_string())?;
                if ttl == 0 {
                    return Err("--ttl must be positive".into());
                }
                args.ttl = Some(ttl);
            }
            "--demo" => args.demo = true,
            "--lax-headers" => args.lax = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(args)
}

fn demo_script() -> SessionScript {
    SessionScript::new(vec![
        ScriptStep::tool(
            "bash",
            json!({ "command": "echo hello from the fake && uname -s" }),
        ),
        ScriptStep::tool(
            "write",
            json!({ "file_path": "demo/notes.txt", "content": "alpha\nbeta\ngamma\n" }),
        ),
        ScriptStep::tool("read", json!({ "file_path": "demo/notes.txt" })),
        ScriptStep::tool(
            "edit",
            json!({ "file_path": "demo/notes.txt", "old_string": "beta", "new_string": "BETA" }),
        ),
        ScriptStep::tool("glob", json!({ "pattern": "**/*.txt" })),
        ScriptStep::tool("grep", json!({ "pattern": "BETA", "path": "demo" })),
    ])
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "cma_tests=debug".into()),
        )
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut config = FakeConfig::default();
    if let Some(ttl) = args.ttl {
        config.lease_ttl_seconds = ttl;
    }
    config.strict_headers = !args.lax;
    let fake = match FakeControlPlane::try_start(config, args.port).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cannot bind 127.0.0.1:{}: {e}", args.port);
            return ExitCode::FAILURE;
        }
    };
    let mut line = json!({
        "base_url": fake.base_url(),
        "environment_id": fake.environment_id(),
        "environment_key": fake.environment_key(),
    });
    if args.demo {
        let s = fake.create_session(demo_script());
        line["work_id"] = json!(s.work_id);
        line["session_id"] = json!(s.session_id);
        line["secret"] = json!(s.secret);
        line["sessions_token"] = json!(s.sessions_token);
    }
    println!("{line}");
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("cannot wait for Ctrl-C: {e}");
    }
    fake.shutdown().await;
    ExitCode::SUCCESS
}
