//! `tracing` setup: JSON lines (default) or text on stderr, `RUST_LOG` filter
//! (default `info`). Secrets never reach a log line: every credential type in
//! `cma_shared::secret` prints as `[redacted]`, and the AWS SDK's targets are capped at
//! `debug` ([`cma_shared::logging::cap_sdk_trace`]): at `trace` its orchestrator logs
//! response bodies, and the KMS `Decrypt` response carries the plaintext work secret.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init(format: LogFormat) {
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|d| !d.trim().is_empty())
        .unwrap_or_else(|| "info".to_owned());
    let filter = EnvFilter::new(cma_shared::logging::cap_sdk_trace(&directives));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}
