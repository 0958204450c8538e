//! AWS adapters of the ports, and building an [`App`] from the environment.
//!
//! * [`SqsQueue`]: `SendMessage` (FIFO queues get `MessageGroupId` = session id and
//!   `MessageDeduplicationId` = work id).
//! * [`KmsSealer`]: `Encrypt` with the item's encryption context; [`PlaintextSealer`]
//!   (no KMS; local emulation only, warns).
//! * [`SqsEcsGauge`]: in-flight sessions = SQS `ApproximateNumberOfMessages` +
//!   `ApproximateNumberOfMessagesNotVisible` on `QUEUE_URL` (claimed, not yet started
//!   or being started by the dispatcher) + ECS `ListTasks` (`cluster = ECS_CLUSTER`,
//!   `family = RUNNER_TASK_FAMILY`, `desiredStatus = RUNNING`, every page). A message
//!   being turned into a task may be counted twice for a moment, which errs on the
//!   side of not claiming.
//! * [`SecretsManagerSecret`]: `GetSecretValue` (`SecretString`, trimmed).
//!
//! Error classification: throttling, timeouts, connection failures, HTTP 429 and 5xx
//! are retryable; everything else (access denied, missing queue/key/secret, invalid
//! request) is permanent.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use cma_shared::{ClientConfig, ControlPlane, SecretString};

use crate::app::{App, Ports, Runtime};
use crate::config::{CapacityConfig, Config, Mode, SealMode, SecretSpec};
use crate::error::PortError;
use crate::message::{EncryptionContext, OutgoingMessage, SealedSecret};
use crate::ports::{CapacityGauge, Queue, SecretSealer, SecretSource};
use crate::secrets::EnvSecret;

/// Timeouts of control-plane calls made from the Lambda (each call is also cut off at
/// the invocation's time budget).
pub const CONTROL_PLANE_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
pub const CONTROL_PLANE_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Classify an SDK error.
pub fn classify<E>(operation: &'static str, err: &SdkError<E>) -> PortError
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
            status >= 500
                || status == 429
                || code.contains("Throttl")
                || matches!(
                    code,
                    "RequestLimitExceeded"
                        | "KMSInternalException"
                        | "DependencyTimeoutException"
                        | "InternalFailure"
                        | "InternalError"
                        | "InternalServiceError"
                        | "ServiceUnavailable"
                        | "ServerException"
                )
        }
        _ => false,
    };
    if retryable {
        PortError::retryable(operation, message)
    } else {
        PortError::permanent(operation, message)
    }
}

/// The default AWS SDK configuration for the Lambda (region, credentials and endpoint
/// from the environment; `AWS_ENDPOINT_URL` points it at an emulator), with tight
/// timeouts and the SDK's standard retries.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(3))
                .operation_timeout(Duration::from_secs(8))
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

/// `SendMessage` to one queue.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    fifo: bool,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        let queue_url = queue_url.into();
        let fifo = queue_url.ends_with(".fifo");
        Self {
            client,
            queue_url,
            fifo,
        }
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, message: &OutgoingMessage) -> Result<(), PortError> {
        let mut req = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(&message.body);
        if self.fifo {
            req = req
                .message_group_id(&message.group_id)
                .message_deduplication_id(&message.deduplication_id);
        }
        req.send()
            .await
            .map(|_| ())
            .map_err(|e| classify("SQS SendMessage", &e))
    }
}

/// KMS envelope for the work secret.
#[derive(Debug, Clone)]
pub struct KmsSealer {
    client: aws_sdk_kms::Client,
    key_id: String,
}

impl KmsSealer {
    pub fn new(client: aws_sdk_kms::Client, key_id: impl Into<String>) -> Self {
        Self {
            client,
            key_id: key_id.into(),
        }
    }
}

#[async_trait]
impl SecretSealer for KmsSealer {
    async fn seal(
        &self,
        secret: &cma_shared::secret::WorkSecret,
        context: &EncryptionContext,
    ) -> Result<SealedSecret, PortError> {
        let mut req = self.client.encrypt().key_id(&self.key_id).plaintext(
            aws_sdk_kms::primitives::Blob::new(secret.expose().as_bytes().to_vec()),
        );
        for (k, v) in context.pairs() {
            req = req.encryption_context(k, v);
        }
        let out = req.send().await.map_err(|e| classify("KMS Encrypt", &e))?;
        let blob = out
            .ciphertext_blob()
            .ok_or_else(|| PortError::permanent("KMS Encrypt", "response has no CiphertextBlob"))?;
        Ok(SealedSecret::Ciphertext(blob.as_ref().to_vec()))
    }
}

/// Decrypt a message's `work_secret_ciphertext` (base64) with its encryption context:
/// what the runner does before its first heartbeat. Used by tests and local checks.
pub async fn kms_decrypt(
    client: &aws_sdk_kms::Client,
    ciphertext_b64: &str,
    context: &EncryptionContext,
) -> Result<SecretString, PortError> {
    use base64::Engine as _;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(ciphertext_b64.trim())
        .map_err(|_| PortError::permanent("KMS Decrypt", "ciphertext is not base64"))?;
    let mut req = client
        .decrypt()
        .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(blob));
    for (k, v) in context.pairs() {
        req = req.encryption_context(k, v);
    }
    let out = req.send().await.map_err(|e| classify("KMS Decrypt", &e))?;
    let plain = out
        .plaintext()
        .ok_or_else(|| PortError::permanent("KMS Decrypt", "response has no Plaintext"))?;
    String::from_utf8(plain.as_ref().to_vec())
        .map(SecretString::new)
        .map_err(|_| PortError::permanent("KMS Decrypt", "plaintext is not UTF-8"))
}

/// Puts the secret into the message as is. Only when no KMS key is configured and
/// `ALLOW_PLAINTEXT_WORK_SECRET=true` (local emulation); warns when built.
#[derive(Debug)]
pub struct PlaintextSealer(());

impl PlaintextSealer {
    pub fn new() -> Self {
        tracing::warn!(
            "WORK_SECRET_KMS_KEY_ID is not set and ALLOW_PLAINTEXT_WORK_SECRET=true: work secrets \
             travel through SQS in plaintext (local emulation only; never in a deployment)"
        );
        PlaintextSealer(())
    }
}

impl Default for PlaintextSealer {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl SecretSealer for PlaintextSealer {
    async fn seal(
        &self,
        secret: &cma_shared::secret::WorkSecret,
        _context: &EncryptionContext,
    ) -> Result<SealedSecret, PortError> {
        Ok(SealedSecret::Plaintext(secret.clone()))
    }
}

/// Queue depth plus running runner tasks.
#[derive(Debug, Clone)]
pub struct SqsEcsGauge {
    sqs: aws_sdk_sqs::Client,
    ecs: aws_sdk_ecs::Client,
    queue_url: String,
    cluster: String,
    family: String,
}

impl SqsEcsGauge {
    pub fn new(
        sqs: aws_sdk_sqs::Client,
        ecs: aws_sdk_ecs::Client,
        queue_url: impl Into<String>,
        capacity: &CapacityConfig,
    ) -> Self {
        Self {
            sqs,
            ecs,
            queue_url: queue_url.into(),
            cluster: capacity.ecs_cluster.clone(),
            family: capacity.runner_task_family.clone(),
        }
    }

    async fn queued(&self) -> Result<u64, PortError> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| classify("SQS GetQueueAttributes", &e))?;
        let attrs = out.attributes();
        let get = |name: A| -> Result<u64, PortError> {
            attrs
                .and_then(|m| m.get(&name))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| {
                    PortError::permanent(
                        "SQS GetQueueAttributes",
                        format!("attribute {} missing or not a number", name.as_str()),
                    )
                })
        };
        Ok(get(A::ApproximateNumberOfMessages)? + get(A::ApproximateNumberOfMessagesNotVisible)?)
    }

    async fn running(&self) -> Result<u64, PortError> {
        let mut total = 0u64;
        let mut token: Option<String> = None;
        loop {
            let out = self
                .ecs
                .list_tasks()
                .cluster(&self.cluster)
                .family(&self.family)
                .desired_status(aws_sdk_ecs::types::DesiredStatus::Running)
                .max_results(100)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| classify("ECS ListTasks", &e))?;
            total += out.task_arns().len() as u64;
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => return Ok(total),
            }
        }
    }
}

#[async_trait]
impl CapacityGauge for SqsEcsGauge {
    async fn in_flight(&self) -> Result<u64, PortError> {
        let (q, r) = tokio::join!(self.queued(), self.running());
        Ok(q? + r?)
    }
}

/// A secret read from Secrets Manager (`SecretString`, surrounding whitespace trimmed).
#[derive(Debug, Clone)]
pub struct SecretsManagerSecret {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
    variable: &'static str,
}

impl SecretsManagerSecret {
    pub fn new(
        client: aws_sdk_secretsmanager::Client,
        secret_id: impl Into<String>,
        variable: &'static str,
    ) -> Self {
        Self {
            client,
            secret_id: secret_id.into(),
            variable,
        }
    }
}

#[async_trait]
impl SecretSource for SecretsManagerSecret {
    fn variable(&self) -> &'static str {
        self.variable
    }

    async fn fetch(&self) -> Result<SecretString, PortError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| classify("Secrets Manager GetSecretValue", &e))?;
        let value = out.secret_string().ok_or_else(|| {
            PortError::permanent(
                "Secrets Manager GetSecretValue",
                "the secret has no SecretString (binary secrets are not supported)",
            )
        })?;
        Ok(SecretString::new(value.trim()))
    }
}

fn secret_source(
    spec: &SecretSpec,
    sm: &dyn Fn() -> aws_sdk_secretsmanager::Client,
) -> Arc<dyn SecretSource> {
    match spec {
        SecretSpec::Literal { variable, value } => {
            Arc::new(EnvSecret::new(variable, value.clone()))
        }
        SecretSpec::SecretsManager {
            variable,
            secret_id,
        } => Arc::new(SecretsManagerSecret::new(sm(), secret_id, variable)),
    }
}

/// Build the AWS-backed ports for a validated configuration.
pub fn ports(config: &Config, sdk: &aws_config::SdkConfig) -> Result<Ports, cma_shared::ApiError> {
    let mut cp_cfg = ClientConfig::with_base_url(config.base_url.as_deref());
    cp_cfg.request_timeout = CONTROL_PLANE_REQUEST_TIMEOUT;
    cp_cfg.connect_timeout = CONTROL_PLANE_CONNECT_TIMEOUT;
    // The credential is set per drain (`ControlPlaneFactory::with_key`).
    let control_plane = ControlPlane::new(cp_cfg, SecretString::new(""))?;
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let sm_client = std::sync::OnceLock::new();
    let sm = || {
        sm_client
            .get_or_init(|| aws_sdk_secretsmanager::Client::new(sdk))
            .clone()
    };
    let sealer: Arc<dyn SecretSealer> = match &config.seal {
        SealMode::Kms { key_id } => Arc::new(KmsSealer::new(aws_sdk_kms::Client::new(sdk), key_id)),
        SealMode::Plaintext => Arc::new(PlaintextSealer::new()),
    };
    let gauge: Option<Arc<dyn CapacityGauge>> = config.capacity.as_ref().map(|c| {
        Arc::new(SqsEcsGauge::new(
            sqs.clone(),
            aws_sdk_ecs::Client::new(sdk),
            &config.queue_url,
            c,
        )) as Arc<dyn CapacityGauge>
    });
    Ok(Ports {
        control_plane: Arc::new(control_plane),
        queue: Arc::new(SqsQueue::new(sqs, &config.queue_url)),
        sealer,
        gauge,
        signing_key: config.signing_key.as_ref().map(|s| secret_source(s, &sm)),
        environment_key: secret_source(&config.environment_key, &sm),
    })
}

/// Read the configuration from the environment and build the app. A configuration
/// error does not abort the process: the app then fails every invocation closed
/// (500 / failed invocation) with one log line naming the variable.
pub async fn build_app(mode: Mode, rt: Runtime) -> App {
    let config = match Config::from_env(mode) {
        Ok(c) => c,
        Err(e) => return App::misconfigured(mode, e, rt),
    };
    let sdk = sdk_config().await;
    match ports(&config, &sdk) {
        Ok(p) => App::new(&config, p, rt),
        Err(_) => App::misconfigured(
            mode,
            crate::error::ConfigError::Invalid {
                variable: crate::config::BASE_URL,
                reason: "cannot be used to build the control-plane HTTP client",
            },
            rt,
        ),
    }
}
