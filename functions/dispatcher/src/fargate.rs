//! The Fargate launcher: one ECS task per claimed session, through a small [`EcsApi`]
//! port (the `aws-sdk-ecs` adapter is [`AwsEcs`]; tests use fakes).
//!
//! # The `RunTask` request
//!
//! * `cluster`, `taskDefinition` (family, `family:revision` or ARN), `count = 1`;
//! * `networkConfiguration.awsvpcConfiguration`: the configured subnets and security
//!   groups, `assignPublicIp` `ENABLED`/`DISABLED`;
//! * `launchType = FARGATE`, or a `capacityProviderStrategy` (e.g. `FARGATE_SPOT` weight
//!   1, `FARGATE` weight 0) — never both (ECS rejects that);
//! * `overrides.containerOverrides[name = RUNNER_CONTAINER_NAME].environment`:
//!   `ANTHROPIC_WORK_ID`, `ANTHROPIC_ENVIRONMENT_ID`, `ANTHROPIC_SESSION_ID`,
//!   `ANTHROPIC_WORK_SECRET_CIPHERTEXT` and, when configured, `ANTHROPIC_BASE_URL`
//!   ([`LaunchRequest::runner_env`]). A plaintext work secret is refused
//!   ([`LaunchError::Permanent`]): the task never sees a plaintext secret through
//!   ECS, whose task descriptions are readable by anyone with `ecs:DescribeTasks`.
//! * `startedBy` = [`started_by`], `clientToken` = [`client_token`], tags
//!   `cma:work-id`, `cma:session-id`, `cma:environment-id` ([`task_tags`]),
//!   `enableECSManagedTags`, `propagateTags = TASK_DEFINITION`. (Tagging on `RunTask`
//!   needs `ecs:TagResource` on the Lambda's role.)
//!
//! # Idempotency: two layers
//!
//! Both are keyed by the **claim**, not only the work id: `claim_key = SHA-256(work_id
//! ‖ 0x00 ‖ ciphertext)`. A redelivery of the same SQS message has the same ciphertext;
//! a re-claim of the same work item after a lapsed lease is a new message whose secret
//! was encrypted again (KMS ciphertexts differ every time), so it gets a new key. A key
//! from the work id alone would make ECS answer a re-claim within 24 h with the
//! earlier claim's (possibly long stopped) task, and the item would never run again.
//!
//! 1. **`clientToken`** (ECS-side, 24 h): `cma-` + 60 hex digits of the claim key
//!    (64 characters, all in ECS's 33–126 range). A retried `RunTask` with the same
//!    token and parameters returns the original task instead of starting another;
//!    this covers the SDK's own retries and a Lambda that died after `RunTask`
//!    succeeded. If the parameters differ (the configuration changed between two
//!    deliveries), ECS answers `ConflictException` with the existing task ARNs, which
//!    is reported as [`LaunchOutcome::AlreadyRunning`].
//! 2. **`ListTasks(startedBy)`** before `RunTask` (ours; works where the token is
//!    ignored, e.g. moto): a task started for this claim whose desired and last
//!    status are not `STOPPED` (`DescribeTasks`, only when `ListTasks` found one)
//!    means [`LaunchOutcome::AlreadyRunning`] and no `RunTask`. `startedBy` must be
//!    the only `ListTasks` filter besides the cluster, hence the `DescribeTasks`.
//!    ECS reads are eventually consistent, so this layer alone could miss a task
//!    started a moment ago; layer 1 covers that window.
//!
//! A runner that already finished does not block a redelivery (it is `STOPPED`); the
//! runner's lease on the item then makes the new task exit at once.
//!
//! # Error classification
//!
//! Retryable ([`LaunchError::Retryable`]): SDK timeouts, connection failures and
//! unparseable responses; HTTP 429 and 5xx; error codes `ThrottlingException`,
//! `ServerException`, `ServiceUnavailable`, `RequestLimitExceeded`,
//! `LimitExceededException`, anything with `Throttl` in it or "Rate exceeded" in its
//! message; `failures[]` reasons starting with `RESOURCE:` (CPU, MEMORY, ENI, ...),
//! mentioning capacity ("Capacity is unavailable at this time"), a concurrency limit
//! ("You've reached the limit on the number of ..."), throttling, timeouts, internal
//! errors, or `AGENT`. Everything else is permanent ([`LaunchError::Permanent`]):
//! `AccessDeniedException`, `ClientException` (e.g. a missing task definition),
//! `InvalidParameterException`, `ClusterNotFoundException`, `InvalidSubnetID.*`,
//! platform and feature errors, `BlockedException`, `failures[]` reasons such as
//! `MISSING` or `ATTRIBUTE`. A response with neither a task nor a failure is retryable.
//!
//! Error reasons never contain the ciphertext (it is replaced by `[ciphertext]` should
//! an SDK message ever echo it).

use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest as _, Sha256};

use crate::launcher::{LaunchError, LaunchOutcome, LaunchRequest, LaunchSecret, Launcher};

/// Tag keys put on every runner task.
pub const TAG_WORK_ID: &str = "cma:work-id";
pub const TAG_SESSION_ID: &str = "cma:session-id";
pub const TAG_ENVIRONMENT_ID: &str = "cma:environment-id";

/// ECS limits.
pub const MAX_STARTED_BY_LEN: usize = 128;
pub const MAX_CLIENT_TOKEN_LEN: usize = 64;
pub const MAX_TAG_KEY_LEN: usize = 128;
pub const MAX_TAG_VALUE_LEN: usize = 256;

/// One entry of a capacity-provider strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityProviderItem {
    pub name: String,
    pub weight: i32,
    pub base: i32,
}

/// Where the task runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// `launchType = FARGATE`.
    LaunchTypeFargate,
    /// `capacityProviderStrategy` (e.g. `FARGATE_SPOT:1,FARGATE:0`).
    CapacityProviders(Vec<CapacityProviderItem>),
}

/// Where and how runner tasks are started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FargateConfig {
    pub cluster: String,
    /// Family, `family:revision` or ARN.
    pub task_definition: String,
    /// The runner's container in the task definition (the override target).
    pub container_name: String,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: bool,
    pub placement: Placement,
}

/// Everything one `RunTask` call sends. `Debug` prints environment names only (a
/// value is the ciphertext).
#[derive(Clone, PartialEq, Eq)]
pub struct RunTaskInput {
    pub cluster: String,
    pub task_definition: String,
    pub client_token: String,
    pub started_by: String,
    pub container_name: String,
    pub environment: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: bool,
    pub placement: Placement,
}

impl std::fmt::Debug for RunTaskInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunTaskInput")
            .field("cluster", &self.cluster)
            .field("task_definition", &self.task_definition)
            .field("client_token", &self.client_token)
            .field("started_by", &self.started_by)
            .field("container_name", &self.container_name)
            .field(
                "environment",
                &self.environment.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("tags", &self.tags)
            .field("subnets", &self.subnets)
            .field("security_groups", &self.security_groups)
            .field("assign_public_ip", &self.assign_public_ip)
            .field("placement", &self.placement)
            .finish()
    }
}

/// One entry of `RunTask`'s `failures[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    pub arn: Option<String>,
    pub reason: String,
    pub detail: Option<String>,
}

/// What `RunTask` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunTaskResult {
    /// Task ARNs started (or returned for a repeated token) and placement failures.
    Ran {
        task_arns: Vec<String>,
        failures: Vec<TaskFailure>,
    },
    /// `ConflictException`: the token already started these tasks with other parameters.
    TokenAlreadyUsed { task_arns: Vec<String> },
}

/// The ECS calls the launcher makes.
#[async_trait]
pub trait EcsApi: Send + Sync {
    /// ARNs of the tasks in `cluster` started with `started_by` that are not stopped.
    async fn live_tasks_started_by(
        &self,
        cluster: &str,
        started_by: &str,
    ) -> Result<Vec<String>, LaunchError>;

    async fn run_task(&self, input: &RunTaskInput) -> Result<RunTaskResult, LaunchError>;
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update([0u8]);
        }
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 (hex) of the claim: work id and ciphertext (see the module docs).
pub fn claim_key(work_id: &str, ciphertext: &str) -> String {
    sha256_hex(&[work_id.as_bytes(), ciphertext.as_bytes()])
}

/// `clientToken`: `cma-` + 60 hex digits of the claim key (64 characters).
pub fn client_token(claim_key: &str) -> String {
    format!("cma-{}", &claim_key[..MAX_CLIENT_TOKEN_LEN - 4])
}

fn started_by_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// `startedBy`: `cma-<work_id>-<12 hex digits of the claim key>` when the work id is
/// made of letters, digits, `-` and `_` and the whole fits in 128 characters (every
/// real work id); otherwise `cmah-<40 hex digits>` (hash only; the tags still carry
/// the ids).
pub fn started_by(work_id: &str, claim_key: &str) -> String {
    let readable = format!("cma-{work_id}-{}", &claim_key[..12]);
    if readable.len() <= MAX_STARTED_BY_LEN && work_id.chars().all(started_by_char_ok) {
        readable
    } else {
        format!("cmah-{}", &claim_key[..40])
    }
}

/// An ECS tag value: characters outside letters, digits, spaces and `_ . : / = + - @`
/// become `_`; at most 256 characters.
pub fn tag_value(v: &str) -> String {
    v.chars()
        .map(|c| {
            if c.is_alphanumeric() || " _.:/=+-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(MAX_TAG_VALUE_LEN)
        .collect()
}

/// The three id tags.
pub fn task_tags(req: &LaunchRequest) -> Vec<(String, String)> {
    vec![
        (TAG_WORK_ID.to_owned(), tag_value(&req.work_id)),
        (TAG_SESSION_ID.to_owned(), tag_value(&req.session_id)),
        (
            TAG_ENVIRONMENT_ID.to_owned(),
            tag_value(&req.environment_id),
        ),
    ]
}

/// Whether a `failures[].reason` (plus detail) is worth retrying.
pub fn failure_is_retryable(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    reason.starts_with("RESOURCE:")
        || reason == "AGENT"
        || r.contains("capacity")
        || r.contains("throttl")
        || r.contains("rate exceeded")
        || r.contains("limit on the number")
        || r.contains("timeout")
        || r.contains("timed out")
        || r.contains("internal error")
        || r.contains("internalerror")
        || r.contains("service unavailable")
        || r.contains("serviceunavailable")
        || r.contains("try again")
}

/// Classify `failures[]` of a `RunTask` that started no task: retryable when any
/// failure is (a capacity shortage next to another reason is still worth a retry).
pub fn classify_failures(failures: &[TaskFailure]) -> LaunchError {
    if failures.is_empty() {
        return LaunchError::Retryable {
            reason: "RunTask returned neither a task nor a failure".into(),
        };
    }
    let text = failures
        .iter()
        .map(|f| match &f.detail {
            Some(d) if !d.is_empty() => format!("{} ({d})", f.reason),
            _ => f.reason.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ");
    let reason = format!("RunTask failures: {text}");
    if failures.iter().any(|f| {
        failure_is_retryable(&f.reason) || f.detail.as_deref().is_some_and(failure_is_retryable)
    }) {
        LaunchError::Retryable { reason }
    } else {
        LaunchError::Permanent { reason }
    }
}

/// Classify an ECS service error by HTTP status, error code and message.
pub fn classify_service_error(
    operation: &str,
    status: u16,
    code: &str,
    message: &str,
) -> LaunchError {
    let retryable = status >= 500
        || status == 429
        || code.contains("Throttl")
        || matches!(
            code,
            "ServerException"
                | "ServiceUnavailable"
                | "ServiceUnavailableException"
                | "RequestLimitExceeded"
                | "LimitExceededException"
                | "InternalFailure"
                | "InternalError"
                | "RequestTimeout"
                | "RequestTimeoutException"
        )
        || message.contains("Rate exceeded");
    let reason = if message.is_empty() {
        format!("{operation}: {code} (HTTP {status})")
    } else {
        format!("{operation}: {code} (HTTP {status}): {message}")
    };
    if retryable {
        LaunchError::Retryable { reason }
    } else {
        LaunchError::Permanent { reason }
    }
}

/// Replace every occurrence of `secret` in the error's reason.
fn scrub(e: LaunchError, secret: &str) -> LaunchError {
    if secret.is_empty() {
        return e;
    }
    match e {
        LaunchError::Retryable { reason } => LaunchError::Retryable {
            reason: reason.replace(secret, "[ciphertext]"),
        },
        LaunchError::Permanent { reason } => LaunchError::Permanent {
            reason: reason.replace(secret, "[ciphertext]"),
        },
    }
}

/// [`Launcher`] on ECS Fargate.
#[derive(Clone)]
pub struct FargateLauncher {
    ecs: Arc<dyn EcsApi>,
    config: FargateConfig,
}

impl std::fmt::Debug for FargateLauncher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FargateLauncher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl FargateLauncher {
    pub fn new(ecs: Arc<dyn EcsApi>, config: FargateConfig) -> Self {
        Self { ecs, config }
    }

    pub fn config(&self) -> &FargateConfig {
        &self.config
    }

    /// The `RunTask` input for `req` (refuses a plaintext secret).
    pub fn run_task_input(&self, req: &LaunchRequest) -> Result<RunTaskInput, LaunchError> {
        let LaunchSecret::Ciphertext(ciphertext) = &req.secret else {
            return Err(LaunchError::Permanent {
                reason: "the message carries a plaintext work_secret; the Fargate launcher \
                         only passes a KMS ciphertext (set WORK_SECRET_KMS_KEY_ID on the webhook)"
                    .into(),
            });
        };
        if ciphertext.trim().is_empty() {
            return Err(LaunchError::Permanent {
                reason: "the work secret ciphertext is empty".into(),
            });
        }
        let key = claim_key(&req.work_id, ciphertext);
        let c = &self.config;
        Ok(RunTaskInput {
            cluster: c.cluster.clone(),
            task_definition: c.task_definition.clone(),
            client_token: client_token(&key),
            started_by: started_by(&req.work_id, &key),
            container_name: c.container_name.clone(),
            environment: req
                .runner_env()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            tags: task_tags(req),
            subnets: c.subnets.clone(),
            security_groups: c.security_groups.clone(),
            assign_public_ip: c.assign_public_ip,
            placement: c.placement.clone(),
        })
    }
}

#[async_trait]
impl Launcher for FargateLauncher {
    fn name(&self) -> &'static str {
        "fargate"
    }

    async fn launch(&self, req: &LaunchRequest) -> Result<LaunchOutcome, LaunchError> {
        let input = self.run_task_input(req)?;
        let secret = match &req.secret {
            LaunchSecret::Ciphertext(c) => c.as_str(),
            LaunchSecret::Plaintext(_) => "",
        };
        let live = self
            .ecs
            .live_tasks_started_by(&input.cluster, &input.started_by)
            .await
            .map_err(|e| scrub(e, secret))?;
        if let Some(id) = live.into_iter().next() {
            return Ok(LaunchOutcome::AlreadyRunning { id });
        }
        match self
            .ecs
            .run_task(&input)
            .await
            .map_err(|e| scrub(e, secret))?
        {
            RunTaskResult::Ran {
                task_arns,
                failures,
            } => match task_arns.into_iter().next() {
                Some(id) => Ok(LaunchOutcome::Started { id }),
                None => Err(scrub(classify_failures(&failures), secret)),
            },
            RunTaskResult::TokenAlreadyUsed { task_arns } => match task_arns.into_iter().next() {
                Some(id) => Ok(LaunchOutcome::AlreadyRunning { id }),
                None => Err(LaunchError::Permanent {
                    reason: "RunTask: ConflictException (client token reused with other \
                             parameters) without a task ARN"
                        .into(),
                }),
            },
        }
    }
}

pub use aws::AwsEcs;

mod aws {
    use aws_sdk_ecs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
    use aws_sdk_ecs::operation::run_task::RunTaskError;
    use aws_sdk_ecs::types::{
        AssignPublicIp, AwsVpcConfiguration, CapacityProviderStrategyItem, ContainerOverride,
        KeyValuePair, LaunchType, NetworkConfiguration, PropagateTags, Tag, TaskOverride,
    };

    use super::*;

    /// Classify an SDK error (see the module docs).
    pub(super) fn classify_sdk<E>(operation: &str, err: &SdkError<E>) -> LaunchError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match err {
            SdkError::ServiceError(se) => classify_service_error(
                operation,
                se.raw().status().as_u16(),
                se.err().code().unwrap_or("Unknown"),
                se.err().message().unwrap_or(""),
            ),
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => LaunchError::Retryable {
                reason: format!("{operation}: {}", DisplayErrorContext(err)),
            },
            _ => LaunchError::Permanent {
                reason: format!("{operation}: {}", DisplayErrorContext(err)),
            },
        }
    }

    /// [`EcsApi`] on `aws-sdk-ecs`.
    #[derive(Debug, Clone)]
    pub struct AwsEcs {
        client: aws_sdk_ecs::Client,
    }

    impl AwsEcs {
        pub fn new(client: aws_sdk_ecs::Client) -> Self {
            Self { client }
        }
    }

    #[async_trait]
    impl EcsApi for AwsEcs {
        async fn live_tasks_started_by(
            &self,
            cluster: &str,
            started_by: &str,
        ) -> Result<Vec<String>, LaunchError> {
            let mut arns = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let out = self
                    .client
                    .list_tasks()
                    .cluster(cluster)
                    .started_by(started_by)
                    .set_next_token(token.take())
                    .send()
                    .await
                    .map_err(|e| classify_sdk("ECS ListTasks", &e))?;
                arns.extend(out.task_arns().iter().cloned());
                match out.next_token() {
                    Some(t) if !t.is_empty() && arns.len() < 100 => token = Some(t.to_owned()),
                    _ => break,
                }
            }
            if arns.is_empty() {
                return Ok(arns);
            }
            arns.truncate(100); // DescribeTasks takes at most 100; a claim has one task.
            let out = self
                .client
                .describe_tasks()
                .cluster(cluster)
                .set_tasks(Some(arns))
                .send()
                .await
                .map_err(|e| classify_sdk("ECS DescribeTasks", &e))?;
            Ok(out
                .tasks()
                .iter()
                .filter(|t| {
                    t.desired_status() != Some("STOPPED") && t.last_status() != Some("STOPPED")
                })
                .filter_map(|t| t.task_arn().map(str::to_owned))
                .collect())
        }

        async fn run_task(&self, i: &RunTaskInput) -> Result<RunTaskResult, LaunchError> {
            let vpc = AwsVpcConfiguration::builder()
                .set_subnets(Some(i.subnets.clone()))
                .set_security_groups(Some(i.security_groups.clone()))
                .assign_public_ip(if i.assign_public_ip {
                    AssignPublicIp::Enabled
                } else {
                    AssignPublicIp::Disabled
                })
                .build()
                .map_err(|e| LaunchError::Permanent {
                    reason: format!("ECS RunTask: invalid network configuration: {e}"),
                })?;
            let env = i
                .environment
                .iter()
                .map(|(k, v)| KeyValuePair::builder().name(k).value(v).build())
                .collect::<Vec<_>>();
            let overrides = TaskOverride::builder()
                .container_overrides(
                    ContainerOverride::builder()
                        .name(&i.container_name)
                        .set_environment(Some(env))
                        .build(),
                )
                .build();
            let tags = i
                .tags
                .iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect::<Vec<_>>();
            let mut req = self
                .client
                .run_task()
                .cluster(&i.cluster)
                .task_definition(&i.task_definition)
                .count(1)
                .client_token(&i.client_token)
                .started_by(&i.started_by)
                .network_configuration(
                    NetworkConfiguration::builder()
                        .awsvpc_configuration(vpc)
                        .build(),
                )
                .overrides(overrides)
                .set_tags(Some(tags))
                .enable_ecs_managed_tags(true)
                .propagate_tags(PropagateTags::TaskDefinition);
            req = match &i.placement {
                Placement::LaunchTypeFargate => req.launch_type(LaunchType::Fargate),
                Placement::CapacityProviders(items) => {
                    let mut strategy = Vec::with_capacity(items.len());
                    for it in items {
                        strategy.push(
                            CapacityProviderStrategyItem::builder()
                                .capacity_provider(&it.name)
                                .weight(it.weight)
                                .base(it.base)
                                .build()
                                .map_err(|e| LaunchError::Permanent {
                                    reason: format!(
                                        "ECS RunTask: invalid capacity provider strategy: {e}"
                                    ),
                                })?,
                        );
                    }
                    req.set_capacity_provider_strategy(Some(strategy))
                }
            };
            match req.send().await {
                Ok(out) => Ok(RunTaskResult::Ran {
                    task_arns: out
                        .tasks()
                        .iter()
                        .filter_map(|t| t.task_arn().map(str::to_owned))
                        .collect(),
                    failures: out
                        .failures()
                        .iter()
                        .map(|f| TaskFailure {
                            arn: f.arn().map(str::to_owned),
                            reason: f.reason().unwrap_or("unknown").to_owned(),
                            detail: f.detail().map(str::to_owned),
                        })
                        .collect(),
                }),
                Err(SdkError::ServiceError(se))
                    if matches!(se.err(), RunTaskError::ConflictException(_)) =>
                {
                    let RunTaskError::ConflictException(c) = se.err() else {
                        unreachable!("matched above")
                    };
                    Ok(RunTaskResult::TokenAlreadyUsed {
                        task_arns: c.resource_ids().to_vec(),
                    })
                }
                Err(e) => Err(classify_sdk("ECS RunTask", &e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use cma_shared::SecretString;

    use super::*;

    /// Records every call; answers from a script.
    #[derive(Default)]
    struct FakeEcs {
        live: Mutex<Vec<String>>,
        answers: Mutex<Vec<Result<RunTaskResult, LaunchError>>>,
        list_calls: Mutex<Vec<(String, String)>>,
        inputs: Mutex<Vec<RunTaskInput>>,
    }

    #[async_trait]
    impl EcsApi for FakeEcs {
        async fn live_tasks_started_by(
            &self,
            cluster: &str,
            started_by: &str,
        ) -> Result<Vec<String>, LaunchError> {
            self.list_calls
                .lock()
                .unwrap()
                .push((cluster.into(), started_by.into()));
            Ok(self.live.lock().unwrap().clone())
        }

        async fn run_task(&self, input: &RunTaskInput) -> Result<RunTaskResult, LaunchError> {
            self.inputs.lock().unwrap().push(input.clone());
            let mut a = self.answers.lock().unwrap();
            if a.is_empty() {
                let arn = format!(
                    "arn:aws:ecs:us-east-1:1:task/c/{}",
                    self.inputs.lock().unwrap().len()
                );
                self.live.lock().unwrap().push(arn.clone());
                Ok(RunTaskResult::Ran {
                    task_arns: vec![arn],
                    failures: vec![],
                })
            } else {
                a.remove(0)
            }
        }
    }

    fn config(placement: Placement) -> FargateConfig {
        FargateConfig {
            cluster: "cma".into(),
            task_definition: "cma-runner:3".into(),
            container_name: "runner".into(),
            subnets: vec!["subnet-a".into(), "subnet-b".into()],
            security_groups: vec!["sg-1".into()],
            assign_public_ip: false,
            placement,
        }
    }

    fn request(secret: LaunchSecret) -> LaunchRequest {
        LaunchRequest {
            work_id: "work_01ABC".into(),
            environment_id: "env_01XYZ".into(),
            session_id: "sesn_01DEF".into(),
            base_url: Some("https://api.example.test".into()),
            secret,
        }
    }

    const CT: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

    #[tokio::test]
    async fn request_shape() {
        let ecs = Arc::new(FakeEcs::default());
        let l = FargateLauncher::new(
            ecs.clone(),
            config(Placement::CapacityProviders(vec![
                CapacityProviderItem {
                    name: "FARGATE_SPOT".into(),
                    weight: 1,
                    base: 0,
                },
                CapacityProviderItem {
                    name: "FARGATE".into(),
                    weight: 0,
                    base: 0,
                },
            ])),
        );
        let out = l
            .launch(&request(LaunchSecret::Ciphertext(CT.into())))
            .await
            .unwrap();
        assert!(matches!(out, LaunchOutcome::Started { .. }));
        let inputs = ecs.inputs.lock().unwrap();
        let i = &inputs[0];
        assert_eq!(i.cluster, "cma");
        assert_eq!(i.task_definition, "cma-runner:3");
        assert_eq!(i.container_name, "runner");
        assert_eq!(
            i.environment,
            vec![
                ("ANTHROPIC_WORK_ID".to_owned(), "work_01ABC".to_owned()),
                (
                    "ANTHROPIC_ENVIRONMENT_ID".to_owned(),
                    "env_01XYZ".to_owned()
                ),
                ("ANTHROPIC_SESSION_ID".to_owned(), "sesn_01DEF".to_owned()),
                ("ANTHROPIC_WORK_SECRET_CIPHERTEXT".to_owned(), CT.to_owned()),
                (
                    "ANTHROPIC_BASE_URL".to_owned(),
                    "https://api.example.test".to_owned()
                ),
            ]
        );
        assert_eq!(
            i.tags,
            vec![
                (TAG_WORK_ID.to_owned(), "work_01ABC".to_owned()),
                (TAG_SESSION_ID.to_owned(), "sesn_01DEF".to_owned()),
                (TAG_ENVIRONMENT_ID.to_owned(), "env_01XYZ".to_owned()),
            ]
        );
        assert!(
            i.started_by.starts_with("cma-work_01ABC-"),
            "{}",
            i.started_by
        );
        assert_eq!(i.started_by.len(), "cma-work_01ABC-".len() + 12);
        assert_eq!(i.client_token.len(), 64);
        assert!(i.client_token.starts_with("cma-"));
        assert_eq!(i.subnets, vec!["subnet-a", "subnet-b"]);
        assert!(!i.assign_public_ip);
        assert_eq!(
            ecs.list_calls.lock().unwrap()[0],
            ("cma".to_owned(), i.started_by.clone())
        );
        let dbg = format!("{i:?}");
        assert!(
            !dbg.contains(CT),
            "Debug must not print the ciphertext: {dbg}"
        );
        assert!(dbg.contains("ANTHROPIC_WORK_SECRET_CIPHERTEXT"));
    }

    #[tokio::test]
    async fn no_base_url_means_no_variable() {
        let ecs = Arc::new(FakeEcs::default());
        let l = FargateLauncher::new(ecs.clone(), config(Placement::LaunchTypeFargate));
        let mut r = request(LaunchSecret::Ciphertext(CT.into()));
        r.base_url = None;
        l.launch(&r).await.unwrap();
        let names: Vec<_> = ecs.inputs.lock().unwrap()[0]
            .environment
            .iter()
            .map(|(k, _)| k.clone())
            .collect();
        assert!(!names.contains(&"ANTHROPIC_BASE_URL".to_owned()));
        assert_eq!(names.len(), 4);
    }

    #[tokio::test]
    async fn redelivery_finds_the_live_task_and_starts_nothing() {
        let ecs = Arc::new(FakeEcs::default());
        let l = FargateLauncher::new(ecs.clone(), config(Placement::LaunchTypeFargate));
        let r = request(LaunchSecret::Ciphertext(CT.into()));
        let first = l.launch(&r).await.unwrap();
        let LaunchOutcome::Started { id } = first else {
            panic!("{first:?}")
        };
        assert_eq!(
            l.launch(&r).await.unwrap(),
            LaunchOutcome::AlreadyRunning { id }
        );
        assert_eq!(ecs.inputs.lock().unwrap().len(), 1, "one RunTask");
        // The same inputs both times (same token, same startedBy).
        let calls = ecs.list_calls.lock().unwrap();
        assert_eq!(calls[0], calls[1]);
    }

    #[tokio::test]
    async fn a_reclaim_has_its_own_token_and_started_by() {
        let ecs = Arc::new(FakeEcs::default());
        let l = FargateLauncher::new(ecs.clone(), config(Placement::LaunchTypeFargate));
        let a = l
            .run_task_input(&request(LaunchSecret::Ciphertext(CT.into())))
            .unwrap();
        let b = l
            .run_task_input(&request(LaunchSecret::Ciphertext("other".into())))
            .unwrap();
        assert_ne!(a.client_token, b.client_token);
        assert_ne!(a.started_by, b.started_by);
        let again = l
            .run_task_input(&request(LaunchSecret::Ciphertext(CT.into())))
            .unwrap();
        assert_eq!(a, again, "deterministic");
    }

    #[tokio::test]
    async fn plaintext_secret_is_refused_permanently() {
        let ecs = Arc::new(FakeEcs::default());
        let l = FargateLauncher::new(ecs.clone(), config(Placement::LaunchTypeFargate));
        let e = l
            .launch(&request(LaunchSecret::Plaintext(SecretString::new(
                "s3cr3t",
            ))))
            .await
            .unwrap_err();
        assert!(!e.is_retryable());
        assert!(!e.to_string().contains("s3cr3t"));
        assert!(ecs.inputs.lock().unwrap().is_empty());
        assert!(ecs.list_calls.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn failures_and_conflicts() {
        let ecs = Arc::new(FakeEcs::default());
        let l = FargateLauncher::new(ecs.clone(), config(Placement::LaunchTypeFargate));
        let r = request(LaunchSecret::Ciphertext(CT.into()));
        let fail = |reason: &str| {
            Ok(RunTaskResult::Ran {
                task_arns: vec![],
                failures: vec![TaskFailure {
                    arn: None,
                    reason: reason.into(),
                    detail: None,
                }],
            })
        };
        *ecs.answers.lock().unwrap() = vec![
            fail("RESOURCE:ENI"),
            fail("MISSING"),
            Ok(RunTaskResult::TokenAlreadyUsed {
                task_arns: vec!["arn:t/1".into()],
            }),
            Err(LaunchError::Permanent {
                reason: format!("echo {CT}"),
            }),
        ];
        assert!(l.launch(&r).await.unwrap_err().is_retryable());
        assert!(!l.launch(&r).await.unwrap_err().is_retryable());
        assert_eq!(
            l.launch(&r).await.unwrap(),
            LaunchOutcome::AlreadyRunning {
                id: "arn:t/1".into()
            }
        );
        let scrubbed = l.launch(&r).await.unwrap_err();
        assert_eq!(
            scrubbed.to_string(),
            "launch failed permanently: echo [ciphertext]"
        );
    }

    #[test]
    fn failure_reasons() {
        for r in [
            "RESOURCE:CPU",
            "RESOURCE:MEMORY",
            "RESOURCE:ENI",
            "RESOURCE:PORTS",
            "Capacity is unavailable at this time. Please try again later or in a different availability zone",
            "ThrottlingException",
            "You've reached the limit on the number of tasks you can run concurrently",
            "AGENT",
            "Timeout waiting for network interface provisioning to complete.",
        ] {
            assert!(failure_is_retryable(r), "{r}");
        }
        for r in [
            "MISSING",
            "ATTRIBUTE",
            "INACTIVE",
            "Task definition does not support launch type FARGATE",
        ] {
            assert!(!failure_is_retryable(r), "{r}");
        }
        assert!(classify_failures(&[]).is_retryable());
        let mixed = classify_failures(&[
            TaskFailure {
                arn: None,
                reason: "MISSING".into(),
                detail: None,
            },
            TaskFailure {
                arn: None,
                reason: "RESOURCE:MEMORY".into(),
                detail: Some("x".into()),
            },
        ]);
        assert!(mixed.is_retryable());
        assert_eq!(
            mixed.to_string(),
            "launch failed, will retry: RunTask failures: MISSING; RESOURCE:MEMORY (x)"
        );
    }

    #[test]
    fn service_errors() {
        let c = |status, code: &str, msg: &str| {
            classify_service_error("ECS RunTask", status, code, msg)
        };
        assert!(c(400, "ThrottlingException", "Rate exceeded").is_retryable());
        assert!(c(400, "ClientException", "Rate exceeded").is_retryable());
        assert!(c(500, "ServerException", "").is_retryable());
        assert!(c(503, "Unknown", "").is_retryable());
        assert!(c(429, "TooManyRequests", "").is_retryable());
        assert!(c(400, "LimitExceededException", "").is_retryable());
        for code in [
            "AccessDeniedException",
            "ClientException",
            "InvalidParameterException",
            "ClusterNotFoundException",
            "InvalidSubnetID.NotFound",
            "PlatformUnknownException",
            "PlatformTaskDefinitionIncompatibilityException",
            "UnsupportedFeatureException",
            "BlockedException",
        ] {
            let e = c(400, code, "Unable to describe task definition.");
            assert!(!e.is_retryable(), "{code}");
            assert!(e.to_string().contains(code));
        }
    }

    #[test]
    fn ecs_limits() {
        let key = claim_key("w", "c");
        assert_eq!(key.len(), 64);
        assert_eq!(client_token(&key).len(), MAX_CLIENT_TOKEN_LEN);
        assert!(client_token(&key).bytes().all(|b| (33..=126).contains(&b)));
        // Odd characters or an over-long id: hash only.
        for id in ["work/with:odd chars", &"w".repeat(200), "wörk"] {
            let s = started_by(id, &key);
            assert!(s.starts_with("cmah-") && s.len() == 45, "{s}");
        }
        let longest_ok = "w".repeat(MAX_STARTED_BY_LEN - 4 - 13);
        let s = started_by(&longest_ok, &key);
        assert_eq!(s.len(), MAX_STARTED_BY_LEN);
        assert!(s.chars().all(started_by_char_ok));
        assert_eq!(tag_value("a b_c.d:e/f=g+h-i@j"), "a b_c.d:e/f=g+h-i@j");
        assert_eq!(tag_value("x#y\"z"), "x_y_z");
        assert_eq!(tag_value(&"v".repeat(300)).len(), MAX_TAG_VALUE_LEN);
        for (k, _) in task_tags(&request(LaunchSecret::Ciphertext(CT.into()))) {
            assert!(k.len() <= MAX_TAG_KEY_LEN && !k.starts_with("aws:"));
        }
    }
}
