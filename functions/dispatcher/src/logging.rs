//! `tracing` JSON logs for Lambda, as the webhook's: one JSON object per line on
//! stdout, level from `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG` directives, else `info`.
//! Each event carries the current span's fields (`message_id`, `receive_count`,
//! `work_id`, `session_id`, `environment_id` of the SQS record being handled); the
//! runtime's per-invocation span adds `requestId`.
//!
//! No secret value reaches a log line: message bodies, the work secret (plaintext or
//! ciphertext) and the runner's environment values are never logged; launch errors
//! have the ciphertext scrubbed; [`crate::message::Malformed`] names fields, never
//! values. The AWS SDK's own targets are capped at `debug` ([`SDK_TARGETS`]): at `trace`
//! its orchestrator logs request bodies. A test captures every line at TRACE level
//! against moto and checks.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

pub use cma_shared::logging::SDK_TARGETS;

/// `directives` (e.g. `info`, `trace`, `dispatcher=debug`) through
/// [`cma_shared::logging::cap_sdk_trace`]: at `trace` the [`SDK_TARGETS`] stay at `debug`.
pub fn filter(directives: &str) -> EnvFilter {
    EnvFilter::new(cma_shared::logging::cap_sdk_trace(directives))
}

/// The production filter: `AWS_LAMBDA_LOG_LEVEL` (`TRACE`…`ERROR`, `FATAL` = `error`),
/// else `RUST_LOG` directives, else `info`; through [`filter`].
pub fn filter_from_env() -> EnvFilter {
    let lambda_level = std::env::var("AWS_LAMBDA_LOG_LEVEL").ok();
    if let Some(level) = lambda_level.as_deref().and_then(lambda_level_directive) {
        return filter(level);
    }
    match std::env::var("RUST_LOG") {
        Ok(d) if !d.trim().is_empty() => filter(d.trim()),
        _ => filter("info"),
    }
}

/// Map a Lambda log level to a `tracing` level directive (`None` if unknown).
pub fn lambda_level_directive(level: &str) -> Option<&'static str> {
    Some(match level.trim().to_ascii_uppercase().as_str() {
        "TRACE" => "trace",
        "DEBUG" => "debug",
        "INFO" => "info",
        "WARN" => "warn",
        "ERROR" | "FATAL" => "error",
        _ => return None,
    })
}

/// A JSON subscriber writing to `writer` (tests pass a buffer).
pub fn json_subscriber<W>(filter: EnvFilter, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_ansi(false)
        .with_env_filter(filter)
        .with_writer(writer)
        .finish()
}

/// Install the production subscriber (stdout). Idempotent.
pub fn init() {
    let _ = tracing::subscriber::set_global_default(json_subscriber(
        filter_from_env(),
        std::io::stdout,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_targets_never_log_at_trace() {
        use tracing::Level;
        for d in [
            "trace",
            "trace,aws_smithy_runtime=trace",
            "aws_smithy_runtime=trace,info",
        ] {
            let sub = json_subscriber(filter(d), std::io::sink);
            tracing::subscriber::with_default(sub, || {
                assert!(
                    !tracing::enabled!(target: "aws_smithy_runtime::client::orchestrator", Level::TRACE),
                    "{d}"
                );
                assert!(
                    tracing::enabled!(target: "aws_smithy_runtime", Level::DEBUG),
                    "{d}"
                );
            });
        }
        let sub = json_subscriber(filter("trace"), std::io::sink);
        tracing::subscriber::with_default(sub, || {
            assert!(tracing::enabled!(target: "dispatcher::dispatch", Level::TRACE));
        });
        let sub = json_subscriber(filter("info"), std::io::sink);
        tracing::subscriber::with_default(sub, || {
            assert!(
                !tracing::enabled!(target: "aws_smithy_runtime", Level::DEBUG),
                "info stays info"
            );
        });
    }

    #[test]
    fn lambda_levels() {
        assert_eq!(lambda_level_directive("FATAL"), Some("error"));
        assert_eq!(lambda_level_directive("debug"), Some("debug"));
        assert_eq!(lambda_level_directive("verbose"), None);
    }
}
