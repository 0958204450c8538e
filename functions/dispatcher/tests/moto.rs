//! The dispatcher end to end against moto (`CMA_MOTO_URL`): ECS `RunTask` /
//! `ListTasks` / `DescribeTasks` and SQS (`ChangeMessageVisibility`, receive counts,
//! DLQ redrive). Every test creates its own uniquely named cluster, task definition
//! and queues, so the tests share one moto server with other test binaries and run in
//! parallel; none resets moto.
//!
//! moto records the `RunTask` request as `DescribeTasks` shows it: container
//! overrides, `startedBy`, tags, the launch type or capacity provider, and the first
//! subnet (as the task's ENI attachment; the ENI's security groups are in EC2). It
//! ignores `clientToken` (two calls with one token start two tasks) and never returns
//! `failures[]`, so the token is checked as the launcher builds it and capacity and
//! throttling failures are injected through a wrapping [`EcsApi`].
//!
//! Without `CMA_MOTO_URL` the tests print a skip line and pass, unless `CI` is set, in
//! which case they fail.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use cma_shared::message::{EncryptionContext, SealedSecret, WorkMessage};
use dispatcher::aws::{SqsVisibility, emulator_sdk_config};
use dispatcher::fargate::{
    AwsEcs, CapacityProviderItem, EcsApi, FargateConfig, FargateLauncher, Placement, RunTaskInput,
    RunTaskResult, TaskFailure, claim_key, started_by,
};
use dispatcher::memory::MemoryMetrics;
use dispatcher::{Dispatcher, LaunchError, RecordOutcome, Settings};

const REGION: &str = "us-east-1";

fn moto_url() -> Option<String> {
    match std::env::var("CMA_MOTO_URL") {
        Ok(u) if !u.trim().is_empty() => Some(u.trim().trim_end_matches('/').to_owned()),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CMA_MOTO_URL is not set but CI is: start moto and export CMA_MOTO_URL")
        }
        _ => {
            eprintln!("SKIP: CMA_MOTO_URL is not set (start moto_server and export it to run)");
            None
        }
    }
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

fn now_rfc3339(offset_secs: i64) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + offset_secs;
    let days = t.div_euclid(86_400);
    let sod = t.rem_euclid(86_400);
    // civil_from_days
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// A schema-v1 body for a fresh claim with a fake (but unique) ciphertext.
fn work_body(work_id: &str, acked_offset_secs: i64) -> (String, String) {
    let ciphertext_bytes: Vec<u8> = uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .chain(b"-kms-ciphertext-blob-")
        .copied()
        .collect();
    let m = WorkMessage::new(
        &EncryptionContext {
            environment_id: "env_moto01".into(),
            work_id: work_id.into(),
            session_id: format!("sesn_{}", work_id.trim_start_matches("work_")),
        },
        now_rfc3339(acked_offset_secs),
        &SealedSecret::Ciphertext(ciphertext_bytes),
    );
    let ct = m.work_secret_ciphertext.clone().unwrap();
    (m.to_body(), ct)
}

struct Moto {
    url: String,
    sdk: aws_config::SdkConfig,
    sqs: aws_sdk_sqs::Client,
    ecs: aws_sdk_ecs::Client,
    http: reqwest::Client,
}

async fn moto(url: &str) -> Moto {
    let sdk = emulator_sdk_config(url).await;
    Moto {
        url: url.to_owned(),
        sqs: aws_sdk_sqs::Client::new(&sdk),
        ecs: aws_sdk_ecs::Client::new(&sdk),
        sdk,
        http: reqwest::Client::new(),
    }
}

/// Every `<tag>value</tag>` in an XML text.
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    xml.split(&open)
        .skip(1)
        .filter_map(|s| s.split(&close).next().map(str::to_owned))
        .collect()
}

impl Moto {
    /// An EC2 Query API call (no `aws-sdk-ec2` in the workspace; moto routes on the
    /// credential scope and does not check the signature).
    async fn ec2(&self, params: &str) -> String {
        self.http
            .post(format!("{}/", self.url))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header(
                "Authorization",
                format!("AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/ec2/aws4_request, SignedHeaders=host, Signature=0"),
            )
            .body(format!("{params}&Version=2016-11-15"))
            .send()
            .await
            .expect("EC2 query")
            .text()
            .await
            .expect("EC2 body")
    }

    /// The default VPC's subnets and its default security group.
    async fn network(&self) -> (Vec<String>, String) {
        let subnets = xml_values(
            &self
                .ec2("Action=DescribeSubnets&Filter.1.Name=default-for-az&Filter.1.Value.1=true")
                .await,
            "subnetId",
        );
        let sg = xml_values(
            &self
                .ec2("Action=DescribeSecurityGroups&Filter.1.Name=group-name&Filter.1.Value.1=default")
                .await,
            "groupId",
        );
        assert!(subnets.len() >= 2, "moto's default VPC has subnets");
        (subnets, sg.first().expect("default security group").clone())
    }

    /// A cluster and an awsvpc Fargate task definition with a `runner` container.
    async fn fargate(&self, placement: Placement) -> FargateConfig {
        let cluster = unique("cma-dispatch-test");
        self.ecs
            .create_cluster()
            .cluster_name(&cluster)
            .send()
            .await
            .expect("CreateCluster");
        let family = unique("cma-runner");
        self.ecs
            .register_task_definition()
            .family(&family)
            .network_mode(aws_sdk_ecs::types::NetworkMode::Awsvpc)
            .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Fargate)
            .cpu("256")
            .memory("512")
            .container_definitions(
                aws_sdk_ecs::types::ContainerDefinition::builder()
                    .name("runner")
                    .image("runner:latest")
                    .memory(512)
                    .build(),
            )
            .send()
            .await
            .expect("RegisterTaskDefinition");
        let (subnets, sg) = self.network().await;
        FargateConfig {
            cluster,
            task_definition: family,
            container_name: "runner".into(),
            subnets: subnets[..2].to_vec(),
            security_groups: vec![sg],
            assign_public_ip: true,
            placement,
        }
    }

    async fn queue(&self, attrs: &[(aws_sdk_sqs::types::QueueAttributeName, String)]) -> String {
        let mut req = self
            .sqs
            .create_queue()
            .queue_name(unique("cma-dispatch-test"));
        for (k, v) in attrs {
            req = req.attributes(k.clone(), v);
        }
        req.send()
            .await
            .expect("CreateQueue")
            .queue_url()
            .expect("url")
            .to_owned()
    }

    async fn queue_arn(&self, url: &str) -> String {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        self.sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes()
            .unwrap()[&A::QueueArn]
            .clone()
    }

    async fn send(&self, url: &str, body: &str) {
        self.sqs
            .send_message()
            .queue_url(url)
            .message_body(body)
            .send()
            .await
            .expect("SendMessage");
    }

    /// Receive up to `n` messages as Lambda's event records (with
    /// `ApproximateReceiveCount`), hiding them for `visibility` seconds.
    async fn receive(&self, url: &str, n: usize, visibility: i32) -> Vec<SqsMessage> {
        let mut out = Vec::new();
        for _ in 0..10 {
            if out.len() >= n {
                break;
            }
            let r = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .visibility_timeout(visibility)
                .wait_time_seconds(1)
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .send()
                .await
                .expect("ReceiveMessage");
            for m in r.messages() {
                let mut rec = SqsMessage::default();
                rec.message_id = m.message_id().map(str::to_owned);
                rec.receipt_handle = m.receipt_handle().map(str::to_owned);
                rec.body = m.body().map(str::to_owned);
                rec.attributes = m
                    .attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(rec);
            }
        }
        out
    }

    /// What Lambda does after the handler returns: delete every record that is not an
    /// item failure (the failures stay until their visibility timeout ends).
    async fn lambda_finish(
        &self,
        url: &str,
        records: &[SqsMessage],
        resp: &aws_lambda_events::event::sqs::SqsBatchResponse,
    ) {
        let failed = item_failures(resp);
        for r in records {
            if !failed.contains(r.message_id.as_ref().unwrap()) {
                self.sqs
                    .delete_message()
                    .queue_url(url)
                    .receipt_handle(r.receipt_handle.as_deref().unwrap())
                    .send()
                    .await
                    .expect("DeleteMessage");
            }
        }
    }

    async fn tasks_started_by(&self, cluster: &str, started_by: &str) -> Vec<String> {
        self.ecs
            .list_tasks()
            .cluster(cluster)
            .started_by(started_by)
            .send()
            .await
            .expect("ListTasks")
            .task_arns()
            .to_vec()
    }

    async fn all_tasks(&self, cluster: &str) -> Vec<String> {
        self.ecs
            .list_tasks()
            .cluster(cluster)
            .send()
            .await
            .expect("ListTasks")
            .task_arns()
            .to_vec()
    }

    async fn describe(&self, cluster: &str, arn: &str) -> aws_sdk_ecs::types::Task {
        self.ecs
            .describe_tasks()
            .cluster(cluster)
            .tasks(arn)
            .include(aws_sdk_ecs::types::TaskField::Tags)
            .send()
            .await
            .expect("DescribeTasks")
            .tasks()[0]
            .clone()
    }
}

fn event(records: Vec<SqsMessage>) -> SqsEvent {
    let mut e = SqsEvent::default();
    e.records = records;
    e
}

struct Built {
    dispatcher: Dispatcher,
    metrics: Arc<MemoryMetrics>,
}

fn build(
    m: &Moto,
    ecs: Arc<dyn EcsApi>,
    fargate: FargateConfig,
    queue_url: &str,
    settings: Settings,
) -> Built {
    let metrics = Arc::new(MemoryMetrics::default());
    let launcher = FargateLauncher::new(ecs, fargate);
    let dispatcher = Dispatcher::new(
        Arc::new(launcher),
        Arc::new(SqsVisibility::new(m.sqs.clone(), queue_url)),
        settings,
    )
    .with_metrics(metrics.clone());
    Built {
        dispatcher,
        metrics,
    }
}

fn real_ecs(m: &Moto) -> Arc<dyn EcsApi> {
    Arc::new(AwsEcs::new(aws_sdk_ecs::Client::new(&m.sdk)))
}

fn settings() -> Settings {
    Settings {
        base_url: Some("https://api.example.test".into()),
        ..Settings::default()
    }
}

fn item_failures(r: &aws_lambda_events::event::sqs::SqsBatchResponse) -> Vec<String> {
    r.batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

const BUDGET: Duration = Duration::from_secs(20);

#[tokio::test]
async fn run_task_request_shape_as_moto_records_it() {
    let Some(url) = moto_url() else { return };
    let m = moto(&url).await;
    let queue = m.queue(&[]).await;
    for placement in [
        Placement::LaunchTypeFargate,
        Placement::CapacityProviders(vec![
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
        ]),
    ] {
        let cfg = m.fargate(placement.clone()).await;
        let b = build(&m, real_ecs(&m), cfg.clone(), &queue, settings());
        let work_id = format!("work_{}", unique("shape").replace('-', ""));
        let (body, ct) = work_body(&work_id, -5);
        m.send(&queue, &body).await;
        let recs = m.receive(&queue, 1, 30).await;
        let resp = b.dispatcher.handle_batch(&event(recs), BUDGET).await;
        assert!(resp.batch_item_failures.is_empty(), "{resp:?}");
        assert_eq!(b.metrics.total("Launched"), 1);

        let expected_started_by = started_by(&work_id, &claim_key(&work_id, &ct));
        let arns = m.tasks_started_by(&cfg.cluster, &expected_started_by).await;
        assert_eq!(arns.len(), 1, "one task for {expected_started_by}");
        let t = m.describe(&cfg.cluster, &arns[0]).await;
        assert_eq!(t.started_by(), Some(expected_started_by.as_str()));
        assert!(
            t.task_definition_arn()
                .unwrap()
                .contains(&format!("task-definition/{}:", cfg.task_definition))
        );
        match &placement {
            Placement::LaunchTypeFargate => {
                assert_eq!(
                    t.launch_type(),
                    Some(&aws_sdk_ecs::types::LaunchType::Fargate)
                )
            }
            Placement::CapacityProviders(_) => {
                assert_eq!(t.capacity_provider_name(), Some("FARGATE_SPOT"))
            }
        }
        // Overrides: the runner container gets exactly these variables.
        let ov = &t.overrides().unwrap().container_overrides()[0];
        assert_eq!(ov.name(), Some("runner"));
        let env: Vec<(String, String)> = ov
            .environment()
            .iter()
            .map(|kv| {
                (
                    kv.name().unwrap().to_owned(),
                    kv.value().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            env,
            vec![
                ("ANTHROPIC_WORK_ID".to_owned(), work_id.clone()),
                (
                    "ANTHROPIC_ENVIRONMENT_ID".to_owned(),
                    "env_moto01".to_owned()
                ),
                (
                    "ANTHROPIC_SESSION_ID".to_owned(),
                    format!("sesn_{}", work_id.trim_start_matches("work_"))
                ),
                ("ANTHROPIC_WORK_SECRET_CIPHERTEXT".to_owned(), ct.clone()),
                (
                    "ANTHROPIC_BASE_URL".to_owned(),
                    "https://api.example.test".to_owned()
                ),
            ]
        );
        // Tags.
        let tags: HashMap<String, String> = t
            .tags()
            .iter()
            .map(|tag| {
                (
                    tag.key().unwrap().to_owned(),
                    tag.value().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(tags["cma:work-id"], work_id);
        assert_eq!(tags["cma:environment-id"], "env_moto01");
        assert!(tags["cma:session-id"].starts_with("sesn_"));
        // Network: the first subnet is the ENI's; the ENI carries our security group.
        let att = &t.attachments()[0];
        let detail = |name: &str| {
            att.details()
                .iter()
                .find(|d| d.name() == Some(name))
                .and_then(|d| d.value())
                .unwrap()
                .to_owned()
        };
        assert_eq!(detail("subnetId"), cfg.subnets[0]);
        let eni = m
            .ec2(&format!(
                "Action=DescribeNetworkInterfaces&NetworkInterfaceId.1={}",
                detail("networkInterfaceId")
            ))
            .await;
        assert!(
            xml_values(&eni, "groupId").contains(&cfg.security_groups[0]),
            "{eni}"
        );
        // clientToken: moto does not record it; this is what the launcher sent.
        let launcher = FargateLauncher::new(real_ecs(&m), cfg.clone());
        let input = launcher
            .run_task_input(&dispatcher::dispatch::launch_request(
                &dispatcher::message::parse_body(&body).unwrap().message,
                None,
            ))
            .unwrap();
        assert_eq!(input.client_token.len(), 64);
        assert_eq!(input.started_by, expected_started_by);
        assert!(input.assign_public_ip);
    }
}

#[tokio::test]
async fn a_redelivered_message_starts_one_task() {
    let Some(url) = moto_url() else { return };
    let m = moto(&url).await;
    let queue = m.queue(&[]).await;
    let cfg = m.fargate(Placement::LaunchTypeFargate).await;
    let work_id = format!("work_{}", unique("redeliver").replace('-', ""));
    let (body, ct) = work_body(&work_id, -1);
    m.send(&queue, &body).await;
    // Receive it twice, as after a Lambda timeout: visibility 1 s, then again.
    let first = m.receive(&queue, 1, 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = m.receive(&queue, 1, 30).await;
    assert_eq!(second[0].attributes["ApproximateReceiveCount"], "2");

    let a = build(&m, real_ecs(&m), cfg.clone(), &queue, settings());
    let b = build(&m, real_ecs(&m), cfg.clone(), &queue, settings()); // another instance
    let r1 = a.dispatcher.handle_record(&first[0], BUDGET).await;
    let r2 = b.dispatcher.handle_record(&second[0], BUDGET).await;
    let RecordOutcome::Launched { id, .. } = &r1 else {
        panic!("{r1:?}")
    };
    assert_eq!(
        r2,
        RecordOutcome::AlreadyRunning {
            id: id.clone(),
            latency_ms: match r2 {
                RecordOutcome::AlreadyRunning { latency_ms, .. } => latency_ms,
                _ => 0,
            }
        }
    );
    let sb = started_by(&work_id, &claim_key(&work_id, &ct));
    assert_eq!(m.tasks_started_by(&cfg.cluster, &sb).await.len(), 1);
    assert_eq!(m.all_tasks(&cfg.cluster).await.len(), 1);

    // A stopped runner does not block a later redelivery (the lease decides then).
    m.ecs
        .stop_task()
        .cluster(&cfg.cluster)
        .task(id)
        .send()
        .await
        .unwrap();
    let r3 = a.dispatcher.handle_record(&second[0], BUDGET).await;
    assert!(matches!(r3, RecordOutcome::Launched { .. }), "{r3:?}");
    assert_eq!(m.tasks_started_by(&cfg.cluster, &sb).await.len(), 2);

    // A re-claim of the same work item (new message, new ciphertext) is a new launch.
    let (reclaim, _) = work_body(&work_id, -1);
    let mut rec = first[0].clone();
    rec.body = Some(reclaim);
    let r4 = a.dispatcher.handle_record(&rec, BUDGET).await;
    assert!(matches!(r4, RecordOutcome::Launched { .. }), "{r4:?}");
}

/// Delegates to moto, but answers `RunTask` for chosen work ids with a scripted result.
struct InjectingEcs {
    inner: Arc<dyn EcsApi>,
    answers: HashMap<String, Result<RunTaskResult, LaunchError>>,
    run_calls: Mutex<usize>,
}

#[async_trait]
impl EcsApi for InjectingEcs {
    async fn live_tasks_started_by(
        &self,
        cluster: &str,
        started_by: &str,
    ) -> Result<Vec<String>, LaunchError> {
        self.inner.live_tasks_started_by(cluster, started_by).await
    }

    async fn run_task(&self, input: &RunTaskInput) -> Result<RunTaskResult, LaunchError> {
        *self.run_calls.lock().unwrap() += 1;
        let work_id = &input
            .environment
            .iter()
            .find(|(k, _)| k == "ANTHROPIC_WORK_ID")
            .unwrap()
            .1;
        match self.answers.get(work_id) {
            Some(a) => a.clone(),
            None => self.inner.run_task(input).await,
        }
    }
}

#[tokio::test]
async fn throttling_and_capacity_failures_are_retried_with_a_longer_visibility_timeout() {
    let Some(url) = moto_url() else { return };
    let m = moto(&url).await;
    let queue = m.queue(&[]).await;
    let cfg = m.fargate(Placement::LaunchTypeFargate).await;
    let capacity = format!("work_{}", unique("capacity").replace('-', ""));
    let throttled = format!("work_{}", unique("throttled").replace('-', ""));
    let fine = format!("work_{}", unique("fine").replace('-', ""));
    let ecs = Arc::new(InjectingEcs {
        inner: real_ecs(&m),
        answers: HashMap::from([
            (
                capacity.clone(),
                Ok(RunTaskResult::Ran {
                    task_arns: vec![],
                    failures: vec![TaskFailure {
                        arn: None,
                        reason: "Capacity is unavailable at this time. Please try again later or in a different availability zone".into(),
                        detail: None,
                    }],
                }),
            ),
            (
                throttled.clone(),
                Err(dispatcher::fargate::classify_service_error(
                    "ECS RunTask",
                    400,
                    "ThrottlingException",
                    "Rate exceeded",
                )),
            ),
        ]),
        run_calls: Mutex::new(0),
    });
    let b = build(&m, ecs.clone(), cfg.clone(), &queue, settings());
    for w in [&capacity, &throttled, &fine] {
        m.send(&queue, &work_body(w, -2).0).await;
    }
    // Received with a 2 s visibility timeout: without the dispatcher's change the
    // failed messages would be visible again after 2 s.
    let recs = m.receive(&queue, 3, 2).await;
    assert_eq!(recs.len(), 3);
    let id_of = |w: &str| {
        recs.iter()
            .find(|r| r.body.as_deref().unwrap().contains(w))
            .unwrap()
            .message_id
            .clone()
            .unwrap()
    };
    let resp = b
        .dispatcher
        .handle_batch(&event(recs.clone()), BUDGET)
        .await;
    let mut failed = item_failures(&resp);
    failed.sort();
    let mut want = vec![id_of(&capacity), id_of(&throttled)];
    want.sort();
    assert_eq!(failed, want);
    assert_eq!(b.metrics.total("Retried"), 2);
    assert_eq!(b.metrics.total("Launched"), 1);
    assert_eq!(b.metrics.total("VisibilityErrors"), 0);
    assert_eq!(*ecs.run_calls.lock().unwrap(), 3);
    m.lambda_finish(&queue, &recs, &resp).await;

    tokio::time::sleep(Duration::from_millis(3000)).await;
    let again = m.receive(&queue, 1, 30).await;
    assert!(
        again.is_empty(),
        "retried messages stay invisible for 30 s (receive 1), got {again:?}"
    );
}

/// Log lines captured in the production JSON format.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
    fn json_lines(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn capture_logs(level: &str) -> (LogBuffer, tracing::subscriber::DefaultGuard) {
    let buf = LogBuffer::default();
    let sub = dispatcher::logging::json_subscriber(dispatcher::logging::filter(level), buf.clone());
    (buf.clone(), tracing::subscriber::set_default(sub))
}

#[tokio::test]
async fn a_missing_task_definition_is_a_permanent_item_failure_with_an_error_log() {
    let Some(url) = moto_url() else { return };
    let (logs, _guard) = capture_logs("info");
    let m = moto(&url).await;
    let queue = m.queue(&[]).await;
    let mut cfg = m.fargate(Placement::LaunchTypeFargate).await;
    cfg.task_definition = unique("cma-runner-missing");
    let b = build(&m, real_ecs(&m), cfg.clone(), &queue, settings());
    let work_id = format!("work_{}", unique("missingtd").replace('-', ""));
    m.send(&queue, &work_body(&work_id, -1).0).await;
    let recs = m.receive(&queue, 1, 30).await;
    let resp = b
        .dispatcher
        .handle_batch(&event(recs.clone()), BUDGET)
        .await;
    assert_eq!(
        item_failures(&resp),
        vec![recs[0].message_id.clone().unwrap()]
    );
    assert_eq!(b.metrics.total("Failed"), 1);
    assert!(m.all_tasks(&cfg.cluster).await.is_empty());

    let lines = logs.json_lines();
    let err = lines
        .iter()
        .find(|l| l["level"] == "ERROR")
        .unwrap_or_else(|| panic!("an error line: {}", logs.text()));
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("launch failed permanently"),
        "{err}"
    );
    let reason = err["reason"].as_str().unwrap();
    assert!(reason.contains("ClientException"), "{reason}");
    assert!(
        reason.contains("Unable to describe task definition"),
        "{reason}"
    );
    assert_eq!(err["span"]["work_id"], work_id.as_str(), "{err}");
    assert_eq!(err["span"]["environment_id"], "env_moto01");
    assert!(
        err["span"]["session_id"]
            .as_str()
            .unwrap()
            .starts_with("sesn_")
    );
    assert_eq!(err["span"]["receive_count"], 1);
}

#[tokio::test]
async fn malformed_messages_reach_the_dlq_and_never_loop_and_stale_ones_are_dropped() {
    let Some(url) = moto_url() else { return };
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let m = moto(&url).await;
    let dlq = m.queue(&[]).await;
    let dlq_arn = m.queue_arn(&dlq).await;
    let queue = m
        .queue(&[(
            A::RedrivePolicy,
            format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"1"}}"#),
        )])
        .await;
    let cfg = m.fargate(Placement::LaunchTypeFargate).await;
    let b = build(&m, real_ecs(&m), cfg.clone(), &queue, settings());

    let stale_work = format!("work_{}", unique("stale").replace('-', ""));
    m.send(&queue, "{\"version\":1,\"work_id\":").await;
    m.send(&queue, &work_body(&stale_work, -601).0).await;
    let recs = m.receive(&queue, 2, 1).await;
    assert_eq!(recs.len(), 2);
    let malformed_id = recs
        .iter()
        .find(|r| r.body.as_deref().unwrap().ends_with(':'))
        .unwrap()
        .message_id
        .clone()
        .unwrap();
    let resp = b
        .dispatcher
        .handle_batch(&event(recs.clone()), BUDGET)
        .await;
    assert_eq!(item_failures(&resp), vec![malformed_id.clone()]);
    m.lambda_finish(&queue, &recs, &resp).await;
    assert_eq!(b.metrics.total("Malformed"), 1);
    assert_eq!(b.metrics.total("Stale"), 1);
    assert!(
        m.all_tasks(&cfg.cluster).await.is_empty(),
        "nothing launched"
    );

    // Lambda deletes the successes and leaves the failure; after maxReceiveCount (1)
    // SQS moves the malformed message to the DLQ instead of delivering it again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        m.receive(&queue, 1, 30).await.is_empty(),
        "not delivered again"
    );
    let from_dlq = m.receive(&dlq, 1, 30).await;
    let dlq_ids: Vec<_> = from_dlq
        .iter()
        .filter_map(|r| r.message_id.clone())
        .collect();
    assert!(dlq_ids.contains(&malformed_id), "{dlq_ids:?}");

    // Without a redrive policy the receive-count guard deletes it instead.
    let plain = m.queue(&[]).await;
    let guarded = build(
        &m,
        real_ecs(&m),
        cfg.clone(),
        &plain,
        Settings {
            max_receive_count: 2,
            ..settings()
        },
    );
    m.send(&plain, "[\"not a work message\"]").await;
    let r1 = m.receive(&plain, 1, 0).await;
    assert!(matches!(
        guarded.dispatcher.handle_record(&r1[0], BUDGET).await,
        RecordOutcome::Malformed { .. }
    ));
    let r2 = m.receive(&plain, 1, 30).await;
    assert_eq!(r2[0].attributes["ApproximateReceiveCount"], "2");
    let resp = guarded.dispatcher.handle_batch(&event(r2), BUDGET).await;
    assert!(resp.batch_item_failures.is_empty(), "dropped = success");
    assert_eq!(guarded.metrics.total("Dropped"), 1);
}

#[tokio::test]
async fn no_secret_value_appears_in_any_log_line() {
    let Some(url) = moto_url() else { return };
    let (logs, _guard) = capture_logs("trace");
    let m = moto(&url).await;
    let queue = m.queue(&[]).await;
    let cfg = m.fargate(Placement::LaunchTypeFargate).await;
    let mut secrets: Vec<String> = Vec::new();

    // Success, then a redelivery of it.
    let ok = format!("work_{}", unique("logs").replace('-', ""));
    let (body, ct) = work_body(&ok, -1);
    secrets.push(ct.clone());
    // A retryable failure whose reason echoes the ciphertext (scrubbed).
    let echo = format!("work_{}", unique("echo").replace('-', ""));
    let (echo_body, echo_ct) = work_body(&echo, -1);
    secrets.push(echo_ct.clone());
    // A plaintext secret (refused by the Fargate launcher).
    let plain_secret = "PLAINTEXT-WORK-SECRET-0123456789";
    secrets.push(plain_secret.into());
    let plain_body = serde_json::json!({
        "version": 1, "work_id": "work_plain", "environment_id": "env_moto01",
        "session_id": "sesn_plain", "acked_at": now_rfc3339(-1), "work_secret": plain_secret,
    })
    .to_string();
    // Malformed bodies that carry secret-looking values in odd places.
    let bad_version =
        serde_json::json!({"version": "SECRET-IN-VERSION-FIELD", "work_secret": plain_secret})
            .to_string();
    secrets.push("SECRET-IN-VERSION-FIELD".into());
    let truncated = format!("{{\"work_secret_ciphertext\":\"{ct}");

    let ecs = Arc::new(InjectingEcs {
        inner: real_ecs(&m),
        answers: HashMap::from([(
            echo.clone(),
            Err(LaunchError::Retryable {
                reason: format!("ServerException: could not process {echo_ct}"),
            }),
        )]),
        run_calls: Mutex::new(0),
    });
    let b = build(&m, ecs, cfg.clone(), &queue, settings());
    for body in [
        &body,
        &body,
        &echo_body,
        &plain_body,
        &bad_version,
        &truncated,
    ] {
        m.send(&queue, body).await;
    }
    let recs = m.receive(&queue, 6, 30).await;
    assert_eq!(recs.len(), 6);
    let resp = b.dispatcher.handle_batch(&event(recs), BUDGET).await;
    assert_eq!(resp.batch_item_failures.len(), 4, "{resp:?}");
    assert_eq!(
        b.metrics.total("Launched") + b.metrics.total("AlreadyRunning"),
        2
    );

    // A missing task definition (permanent, with the SDK's error text).
    let mut missing = cfg.clone();
    missing.task_definition = unique("cma-missing");
    let b2 = build(&m, real_ecs(&m), missing, &queue, settings());
    let (body2, ct2) = work_body(&ok, -1);
    secrets.push(ct2);
    m.send(&queue, &body2).await;
    let recs = m.receive(&queue, 1, 30).await;
    b2.dispatcher.handle_batch(&event(recs), BUDGET).await;

    let text = logs.text();
    assert!(text.contains("runner started"), "logs were captured");
    assert!(
        text.contains("[ciphertext]"),
        "the echoed ciphertext was scrubbed"
    );
    for s in &secrets {
        if let Some(line) = text.lines().find(|l| l.contains(s.as_str())) {
            panic!("secret value {s} in a log line: {line}");
        }
    }
    // Base64 of the ciphertext bytes in other encodings would not match; also check
    // that no log line carries a message body.
    assert!(!text.contains("work_secret_ciphertext\":\""));
}
