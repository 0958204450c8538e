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

pub use cma_shared::logging::{
    SDK_TARGETS, filter, filter_from_env, json_subscriber, lambda_level_directive,
};

/// Install the production subscriber (stdout). Idempotent.
pub fn init() {
    cma_shared::logging::init_lambda_json();
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
