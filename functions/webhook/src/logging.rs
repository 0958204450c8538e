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

pub use cma_shared::logging::{filter, filter_from_env, json_subscriber, lambda_level_directive};

/// Install the production subscriber (stdout). Idempotent.
pub fn init() {
    cma_shared::logging::init_lambda_json();
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
