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
