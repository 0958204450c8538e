//! Log-filter hygiene shared by the Lambdas and the runner.
//!
//! At `trace` the AWS SDK's orchestrator logs whole HTTP requests and responses
//! ("transmitting request", response bodies). Those carry secrets: the webhook's KMS
//! `Encrypt` request holds the plaintext work secret, the runner's KMS `Decrypt`
//! response holds it too, a `RunTask` request holds the ciphertext, a Secrets Manager
//! response holds the environment key. [`cap_sdk_trace`] rewrites a filter so the SDK's
//! targets never log below `debug`, whatever the operator asked for.

/// `tracing` targets of the AWS SDK and its runtime.
pub const SDK_TARGETS: &[&str] = &[
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http_client",
    "aws_smithy_http",
    "aws_smithy_types",
    "aws_smithy_json",
    "aws_sdk_ecs",
    "aws_sdk_sqs",
    "aws_sdk_kms",
    "aws_sdk_secretsmanager",
    "aws_sdk_sts",
    "aws_sdk_sso",
    "aws_sdk_ssooidc",
    "aws_config",
    "aws_runtime",
    "aws_sigv4",
    "aws_credential_types",
];

/// `directives` (an `EnvFilter` string such as `info`, `trace`, `webhook=debug`); when
/// they mention `trace`, the [`SDK_TARGETS`] are capped at `debug` (appended last, so
/// they win over an explicit `aws_smithy_runtime=trace`).
pub fn cap_sdk_trace(directives: &str) -> String {
    let mut d = directives.trim().to_owned();
    if d.to_ascii_lowercase().contains("trace") {
        for t in SDK_TARGETS {
            d.push_str(&format!(",{t}=debug"));
        }
    }
    d
}

#[cfg(feature = "subscriber")]
pub use lambda_json::*;

/// JSON `tracing` logs for the Lambdas (feature `subscriber`): one JSON object per line
/// on stdout (what Lambda's JSON log format expects), level from `AWS_LAMBDA_LOG_LEVEL`,
/// else `RUST_LOG` directives, else `info`, always through [`cap_sdk_trace`]. Each event
/// carries the current span's fields; the runtime's per-invocation span adds `requestId`.
#[cfg(feature = "subscriber")]
mod lambda_json {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::fmt::MakeWriter;

    use super::cap_sdk_trace;

    /// `directives` with the AWS SDK's targets capped at `debug` when they ask for `trace`.
    pub fn filter(directives: &str) -> EnvFilter {
        EnvFilter::new(cap_sdk_trace(directives))
    }

    /// The production filter: `AWS_LAMBDA_LOG_LEVEL` (Lambda's advanced logging
    /// controls: `TRACE`…`ERROR`, `FATAL` = `error`), else `RUST_LOG`, else `info`.
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
    pub fn json_subscriber<W>(
        filter: EnvFilter,
        writer: W,
    ) -> impl tracing::Subscriber + Send + Sync
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
    pub fn init_lambda_json() {
        let _ = tracing::subscriber::set_global_default(json_subscriber(
            filter_from_env(),
            std::io::stdout,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_is_capped_for_the_sdk_only() {
        assert_eq!(cap_sdk_trace("info"), "info");
        assert_eq!(cap_sdk_trace(" webhook=debug "), "webhook=debug");
        let t = cap_sdk_trace("trace");
        assert!(t.starts_with("trace,"));
        assert!(t.ends_with("aws_credential_types=debug"));
        let t = cap_sdk_trace("info,aws_smithy_runtime=TRACE");
        assert!(t.contains(",aws_smithy_runtime=debug"), "{t}");
        assert!(t.contains(",aws_sdk_kms=debug"), "{t}");
    }
}
