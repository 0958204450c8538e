//! `tracing` setup: JSON lines (default) or text on stderr, `RUST_LOG` filter
//! (default `info`). Secrets never reach a log line: every credential type in
//! `cma_shared::secret` prints as `[redacted]`.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
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
