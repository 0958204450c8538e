//! `runner`: serve one Claude Managed Agents work item in this sandbox.
//!
//! Thin wiring: read inputs (exit 2 on bad input, before any network call), scrub
//! secrets from the process environment, become non-dumpable, set up logging and
//! signals, then hand over to [`runner::run::run`].

use std::process::ExitCode;
use std::sync::Arc;

use cma_shared::{ClientConfig, ControlPlane};
use runner::config::{self, Command, CredentialSource};
use runner::run::{RunSpec, run};
use runner::tools::{ToolContext, builtin_registry};
use tracing::Instrument;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = match config::parse(args, |k| std::env::var(k).ok()) {
        Ok(Command::Run(cfg)) => cfg,
        Ok(Command::Help) => {
            print!("{}", config::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("runner: {e}");
            return ExitCode::from(2);
        }
    };
    // SAFETY: still single-threaded; no runtime has started.
    unsafe { runner::hygiene::scrub_own_environment() };
    let non_dumpable = runner::hygiene::make_non_dumpable();
    runner::logging::init(cfg.log_format);
    if !non_dumpable {
        tracing::warn!("could not mark the runner non-dumpable (prctl refused)");
    }

    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runner: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = rt.block_on(async move {
        let span = tracing::info_span!("runner", session_id = %cfg.session_id, work_id = %cfg.work_id);
        async move {
            match &cfg.credential_source {
                CredentialSource::SessionsToken => tracing::info!("using the work item's sessions token"),
                CredentialSource::EnvironmentKey { secret_was_unusable: true } => tracing::warn!(
                    "ANTHROPIC_WORK_SECRET did not decode to a sessions token; falling back to the environment key"
                ),
                CredentialSource::EnvironmentKey { .. } => {
                    tracing::warn!("no work secret given; using the environment key (it can claim any session's work)")
                }
            }
            if let Err(e) = std::fs::create_dir_all(&cfg.workdir) {
                tracing::error!(workdir = %cfg.workdir.display(), error = %e, "cannot create the workdir");
                return 1;
            }
            let client = match ControlPlane::new(
                ClientConfig::with_base_url(cfg.base_url.as_deref()),
                cfg.credential.clone(),
            ) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "cannot build the HTTP client");
                    return 1;
                }
            };
            let ctx = Arc::new(ToolContext::new(&cfg.workdir));
            let spec = RunSpec {
                environment_id: cfg.environment_id.clone(),
                work_id: cfg.work_id.clone(),
                session_id: cfg.session_id.clone(),
                max_idle: cfg.max_idle,
                registry: builtin_registry(ctx),
            };
            run(client, spec, shutdown_signal()).await.exit_code()
        }
        .instrument(span)
        .await
    });
    ExitCode::from(code as u8)
}

/// SIGTERM (Fargate stop, `docker stop`) or SIGINT.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
