//! AWS adapters and building the Lambda's [`App`] from the environment.
//!
//! * [`SqsVisibility`] (`ChangeMessageVisibility` on `QUEUE_URL`).
//! * [`crate::fargate::AwsEcs`] (`ListTasks`, `DescribeTasks`, `RunTask`).
//!
//! SQS errors: throttling, timeouts, connection failures, 429 and 5xx are retryable;
//! the rest (access denied, missing queue, an expired receipt handle) permanent. Either
//! way a failed visibility change only means the queue's default timeout applies.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::error::PortError;
use crate::fargate::{AwsEcs, FargateLauncher};
use crate::lambda::App;
use crate::ports::Visibility;

/// The Lambda's AWS SDK configuration (region, credentials and endpoint from the
/// environment; `AWS_ENDPOINT_URL` points it at an emulator): tight timeouts and the
/// SDK's standard retries (3 attempts; `RunTask` retries reuse the client token).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(12))
                .build(),
        )
        .load()
        .await
}

/// SDK configuration for an emulator (moto): `endpoint_url`, region `us-east-1`,
/// static dummy credentials, SDK retries disabled (a moto 500 fails fast).
pub async fn emulator_sdk_config(endpoint_url: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing", "testing", None, None, "static",
        ))
        .endpoint_url(endpoint_url)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(10))
                .build(),
        )
        .load()
        .await
}

fn classify_sqs<E>(operation: &'static str, err: &SdkError<E>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let message = DisplayErrorContext(err).to_string();
    let retryable = match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or("");
            status >= 500 || status == 429 || code.contains("Throttl") || code == "RequestThrottled"
        }
        _ => false,
    };
    if retryable {
        PortError::Retryable { operation, message }
    } else {
        PortError::Permanent { operation, message }
    }
}

/// `ChangeMessageVisibility` on one queue.
#[derive(Debug, Clone)]
pub struct SqsVisibility {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsVisibility {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

#[async_trait]
impl Visibility for SqsVisibility {
    async fn change_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), PortError> {
        // SQS allows 0..=43200 s.
        let secs = timeout.as_secs().min(43_200) as i32;
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(secs)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify_sqs("SQS ChangeMessageVisibility", &e))
    }
}

/// The Fargate dispatcher for a validated configuration and SDK configuration.
pub fn dispatcher(config: &Config, sdk: &aws_config::SdkConfig) -> Dispatcher {
    let launcher = FargateLauncher::new(
        Arc::new(AwsEcs::new(aws_sdk_ecs::Client::new(sdk))),
        config.fargate.clone(),
    );
    let visibility = SqsVisibility::new(aws_sdk_sqs::Client::new(sdk), &config.queue_url);
    Dispatcher::new(Arc::new(launcher), Arc::new(visibility), config.settings())
}

/// Read the configuration from the environment and build the app. A configuration
/// error does not abort the process: the app then fails every invocation (the batch
/// returns to the queue untouched) with one log line naming the variable.
pub async fn build_app() -> App {
    match Config::from_env() {
        Ok(config) => {
            let sdk = sdk_config().await;
            App::new(dispatcher(&config, &sdk))
        }
        Err(e) => App::misconfigured(e),
    }
}
