//! `tracing` JSON logs for Lambda: one JSON object per line on stdout (what Lambda's
//! JSON log format expects), level from `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`
//! directives, else `info`. The runtime's per-invocation span adds `requestId`.
//!
//! No secret value ever reaches a log line: every credential is a
//! `cma_shared::secret` type whose `Debug` is redacted and which has no `Display`,
//! and the code never logs request bodies, headers other than `webhook-id`, message
//! bodies or ciphertexts. The AWS SDK's own targets are capped at `debug`
//! ([`cma_shared::logging::cap_sdk_trace`]): at `trace` its orchestrator logs request
//! bodies, and a KMS `Encrypt` request carries the plaintext work secret. A test
//! captures every line at TRACE level and checks.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The production filter: `AWS_LAMBDA_LOG_LEVEL` (Lambda's advanced logging controls:
/// `TRACE`…`ERROR`, `FATAL` = `error`), else `RUST_LOG` directives, else `info`.
pub fn filter_from_env() -> EnvFilter {
    let lambda_level = std::env::var("AWS_LAMBDA_LOG_LEVEL").ok();
    if let Some(level) = lambda_level.as_deref().and_then(lambda_level_directive) {
        return filter(level);
    }
    match std::env::var("RUST_LOG") {
        Ok(d) if !d.trim().is_empty() => filter(&d),
        _ => filter("info"),
    }
}

/// `directives` with the AWS SDK's targets capped at `debug` when they ask for `trace`.
pub fn filter(directives: &str) -> EnvFilter {
    EnvFilter::new(cma_shared::logging::cap_sdk_trace(directives))
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
    fn sdk_never_traces() {
        let f = filter("trace").to_string();
        assert!(f.contains("aws_sdk_kms=debug"), "{f}");
        assert!(f.contains("aws_smithy_runtime=debug"), "{f}");
    }

    #[test]
    fn lambda_levels() {
        assert_eq!(lambda_level_directive("FATAL"), Some("error"));
        assert_eq!(lambda_level_directive("debug"), Some("debug"));
        assert_eq!(lambda_level_directive("verbose"), None);
    }
}
