//! `cma-local`: see the library docs and `cma-local help`.

use std::process::ExitCode;

use local::cli::{self, Command};
use local::serve::Credentials;

fn init_logging(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cmd = match cli::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cma-local: {e}\n(run `cma-local help` for the options)");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cma-local: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cmd {
        Command::Help => {
            print!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Command::Demo(opts) => {
            // The transcript is the output; logs only for real problems. The
            // plaintext-secret warning of the local sealer is expected here.
            init_logging("warn,webhook=error");
            let report = rt.block_on(local::demo::run(&opts, &mut std::io::stdout()));
            if report.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Bench(opts) => {
            init_logging("warn,webhook=error");
            let results = rt.block_on(local::bench::run(&opts, &mut std::io::stdout()));
            if results.iter().any(|r| !r.samples.is_empty()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Serve(opts) => {
            init_logging("info");
            let creds = match Credentials::from_lookup(opts.mode, |k| std::env::var(k).ok()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("cma-local serve: {e}");
                    return ExitCode::from(2);
                }
            };
            let result = rt.block_on(async {
                let (tx, rx) = tokio::sync::watch::channel(0u32);
                tokio::spawn(async move {
                    let mut term =
                        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                            .ok();
                    loop {
                        tokio::select! {
                            r = tokio::signal::ctrl_c() => if r.is_err() { return },
                            _ = async {
                                match term.as_mut() {
                                    Some(t) => { t.recv().await; }
                                    None => std::future::pending::<()>().await,
                                }
                            } => {}
                        }
                        tx.send_modify(|n| *n += 1);
                        tracing::info!("stop requested");
                    }
                });
                local::serve::serve(&opts, &creds, rx).await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("cma-local serve: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
