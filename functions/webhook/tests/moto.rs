//! The AWS adapters end to end against moto (`CMA_MOTO_URL`): SQS, KMS, Secrets
//! Manager and ECS. Every test creates its own uniquely named resources, so the tests
//! can share one moto server and run in parallel; none resets moto.
//!
//! Without `CMA_MOTO_URL` the tests print a skip line and pass, unless `CI` is set, in
//! which case they fail.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use cma_tests::fake::FakeControlPlane;
use common::*;
use http::StatusCode;
use webhook::aws::{self, SqsEcsGauge, SqsQueue};
use webhook::config::{self, CapacityConfig, Mode};
use webhook::message::{OutgoingMessage, WorkMessage};
use webhook::ports::{CapacityGauge, Queue, SecretSource};
use webhook::{App, Config, EncryptionContext, Runtime};

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

struct Aws {
    sdk: aws_config::SdkConfig,
    sqs: aws_sdk_sqs::Client,
    kms: aws_sdk_kms::Client,
    sm: aws_sdk_secretsmanager::Client,
    ecs: aws_sdk_ecs::Client,
}

async fn aws(url: &str) -> Aws {
    let sdk = aws::emulator_sdk_config(url).await;
    Aws {
        sqs: aws_sdk_sqs::Client::new(&sdk),
        kms: aws_sdk_kms::Client::new(&sdk),
        sm: aws_sdk_secretsmanager::Client::new(&sdk),
        ecs: aws_sdk_ecs::Client::new(&sdk),
        sdk,
    }
}

impl Aws {
    async fn queue(&self, fifo: bool) -> String {
        let mut name = unique("cma-webhook-test");
        let mut req = self.sqs.create_queue();
        if fifo {
            name.push_str(".fifo");
            req = req.attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true");
        }
        req.queue_name(name)
            .send()
            .await
            .expect("CreateQueue")
            .queue_url()
            .expect("queue url")
            .to_owned()
    }

    async fn key(&self) -> String {
        let key = self
            .kms
            .create_key()
            .description("cma webhook test")
            .send()
            .await
            .expect("CreateKey");
        let id = key.key_metadata().unwrap().key_id().to_owned();
        let alias = format!("alias/{}", unique("cma-test"));
        self.kms
            .create_alias()
            .alias_name(&alias)
            .target_key_id(&id)
            .send()
            .await
            .expect("CreateAlias");
        alias
    }

    async fn secret(&self, value: &str) -> String {
        self.sm
            .create_secret()
            .name(unique("cma/webhook-test"))
            .secret_string(value)
            .send()
            .await
            .expect("CreateSecret")
            .arn()
            .expect("arn")
            .to_owned()
    }

    async fn receive_all(&self, queue_url: &str, n: usize) -> Vec<aws_sdk_sqs::types::Message> {
        let mut out = Vec::new();
        for _ in 0..20 {
            if out.len() >= n {
                break;
            }
            let r = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .send()
                .await
                .expect("ReceiveMessage");
            out.extend(r.messages().iter().cloned());
        }
        out
    }
}

#[tokio::test]
async fn items_become_kms_sealed_sqs_messages_with_secrets_from_secrets_manager() {
    let Some(url) = moto_url() else { return };
    let a = aws(&url).await;
    let fake = FakeControlPlane::start(Default::default()).await;
    let queue_url = a.queue(false).await;
    let key_alias = a.key().await;
    let signing_arn = a.secret(SIGNING_KEY).await;
    let env_key_arn = a.secret(&format!("{}\n", fake.environment_key())).await;

    let vars: HashMap<&str, String> = HashMap::from([
        (config::ENVIRONMENT_ID, fake.environment_id()),
        (config::BASE_URL, fake.base_url()),
        (config::SIGNING_KEY_SECRET_ARN, signing_arn),
        (config::ENVIRONMENT_KEY_SECRET_ARN, env_key_arn),
        (config::QUEUE_URL, queue_url.clone()),
        (config::KMS_KEY_ID, key_alias),
    ]);
    let cfg = Config::from_lookup(Mode::Webhook, |k| vars.get(k).cloned()).unwrap();
    let ports = aws::ports(&cfg, &a.sdk).unwrap();
    let metrics = webhook::memory::MemoryMetrics::new();
    let app = App::new(
        &cfg,
        ports,
        Runtime {
            metrics: metrics.clone(),
            ..Runtime::default()
        },
    );

    let created: Vec<_> = (0..5)
        .map(|_| fake.create_session(cma_tests::fake::SessionScript::new(vec![])))
        .collect();
    let r = invoke(&app, &run_started("msg_moto_e2e")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["enqueued"], 5);

    let msgs = a.receive_all(&queue_url, 5).await;
    assert_eq!(msgs.len(), 5);
    let parsed: Vec<WorkMessage> = msgs
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect();
    let by_work: HashMap<_, _> = created.iter().map(|c| (c.work_id.clone(), c)).collect();
    for (i, m) in parsed.iter().enumerate() {
        let c = by_work[&m.work_id];
        assert_eq!(m.session_id, c.session_id);
        assert_eq!(m.environment_id, fake.environment_id());
        assert!(m.work_secret.is_none());
        let body = msgs[i].body().unwrap();
        assert!(
            !body.contains(&fake.environment_key()),
            "no environment key"
        );
        assert!(!body.contains(&c.secret) && !body.contains(&c.sessions_token));

        let ct = m.work_secret_ciphertext.as_deref().unwrap();
        let ctx = m.encryption_context();
        let plain = aws::kms_decrypt(&a.kms, ct, &ctx)
            .await
            .expect("right context");
        assert_eq!(plain.expose(), c.secret);

        // Wrong contexts: another item's work id, another session, another environment,
        // a missing pair (checked through a raw Decrypt).
        let other = &parsed[(i + 1) % parsed.len()];
        for wrong in [
            EncryptionContext {
                work_id: other.work_id.clone(),
                ..ctx.clone()
            },
            EncryptionContext {
                session_id: other.session_id.clone(),
                ..ctx.clone()
            },
            EncryptionContext {
                environment_id: "env_other".into(),
                ..ctx.clone()
            },
        ] {
            let e = aws::kms_decrypt(&a.kms, ct, &wrong).await.unwrap_err();
            assert!(!e.is_retryable(), "{e}");
        }
        use base64::Engine as _;
        let blob = base64::engine::general_purpose::STANDARD
            .decode(ct)
            .unwrap();
        let no_ctx = a
            .kms
            .decrypt()
            .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(blob))
            .send()
            .await;
        assert!(no_ctx.is_err(), "no context must not decrypt");
    }
    assert_eq!(metrics.total("ItemsEnqueued"), 5);
}

#[tokio::test]
async fn secrets_manager_source_and_errors() {
    let Some(url) = moto_url() else { return };
    let a = aws(&url).await;
    let arn = a
        .secret("  whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n")
        .await;
    let src = aws::SecretsManagerSecret::new(a.sm.clone(), &arn, config::SIGNING_KEY_SECRET_ARN);
    assert_eq!(src.variable(), config::SIGNING_KEY_SECRET_ARN);
    assert_eq!(src.fetch().await.unwrap().expose(), SIGNING_KEY);
    let missing =
        aws::SecretsManagerSecret::new(a.sm.clone(), unique("does-not-exist"), "X_SECRET_ARN");
    let e = missing.fetch().await.unwrap_err();
    assert!(!e.is_retryable(), "ResourceNotFound is permanent: {e}");
}

#[tokio::test]
async fn bad_secret_in_secrets_manager_fails_closed() {
    let Some(url) = moto_url() else { return };
    let a = aws(&url).await;
    let fake = FakeControlPlane::start(Default::default()).await;
    fake.create_session(cma_tests::fake::SessionScript::new(vec![]));
    let vars: HashMap<&str, String> = HashMap::from([
        (config::ENVIRONMENT_ID, fake.environment_id()),
        (config::BASE_URL, fake.base_url()),
        (
            config::SIGNING_KEY_SECRET_ARN,
            a.secret("not-a-whsec-value").await,
        ),
        (
            config::ENVIRONMENT_KEY_SECRET_ARN,
            a.secret(&fake.environment_key()).await,
        ),
        (config::QUEUE_URL, a.queue(false).await),
        (config::KMS_KEY_ID, a.key().await),
    ]);
    let cfg = Config::from_lookup(Mode::Webhook, |k| vars.get(k).cloned()).unwrap();
    let app = App::new(
        &cfg,
        aws::ports(&cfg, &a.sdk).unwrap(),
        Runtime {
            metrics: webhook::memory::MemoryMetrics::new(),
            ..Runtime::default()
        },
    );
    let r = invoke(&app, &run_started("msg_moto_badsecret")).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(fake.requests().is_empty(), "nothing polled");
}

#[tokio::test]
async fn fifo_queue_gets_group_and_deduplication_ids() {
    let Some(url) = moto_url() else { return };
    let a = aws(&url).await;
    let queue_url = a.queue(true).await;
    let q = SqsQueue::new(a.sqs.clone(), &queue_url);
    let msg = OutgoingMessage {
        body: r#"{"version":1}"#.into(),
        deduplication_id: "work_fifo_1".into(),
        group_id: "sesn_fifo_1".into(),
    };
    q.send(&msg).await.unwrap();
    q.send(&msg).await.unwrap(); // deduplicated by work id
    let got = a.receive_all(&queue_url, 1).await;
    assert_eq!(got.len(), 1);
    let attrs = got[0].attributes().unwrap();
    use aws_sdk_sqs::types::MessageSystemAttributeName as N;
    assert_eq!(
        attrs.get(&N::MessageGroupId).map(String::as_str),
        Some("sesn_fifo_1")
    );
    assert_eq!(
        attrs.get(&N::MessageDeduplicationId).map(String::as_str),
        Some("work_fifo_1")
    );
}

#[tokio::test]
async fn sqs_send_to_a_missing_queue_is_permanent() {
    let Some(url) = moto_url() else { return };
    let a = aws(&url).await;
    let q = SqsQueue::new(
        a.sqs.clone(),
        format!("{url}/123456789012/{}", unique("missing")),
    );
    let e = q
        .send(&OutgoingMessage {
            body: "{}".into(),
            deduplication_id: "w".into(),
            group_id: "s".into(),
        })
        .await
        .unwrap_err();
    assert!(!e.is_retryable(), "{e}");
}

#[tokio::test]
async fn capacity_gauge_counts_queued_messages_and_running_runner_tasks() {
    let Some(url) = moto_url() else { return };
    let a = aws(&url).await;
    let queue_url = a.queue(false).await;
    let cluster = unique("cma-test-cluster");
    a.ecs
        .create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .expect("CreateCluster");
    let family = unique("cma-runner");
    let other_family = unique("cma-other");
    for f in [&family, &other_family] {
        a.ecs
            .register_task_definition()
            .family(f)
            // moto needs no network for a non-awsvpc task run with launch type FARGATE
            // (AWS itself would insist on awsvpc; only the task counts matter here).
            .network_mode(aws_sdk_ecs::types::NetworkMode::Bridge)
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
    }
    let run = |f: String, n: i32| {
        let ecs = a.ecs.clone();
        let cluster = cluster.clone();
        async move {
            ecs.run_task()
                .cluster(cluster)
                .task_definition(f)
                .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
                .count(n)
                .send()
                .await
                .expect("RunTask")
                .tasks()
                .iter()
                .filter_map(|t| t.task_arn().map(str::to_owned))
                .collect::<Vec<_>>()
        }
    };
    let ours = run(family.clone(), 3).await;
    run(other_family, 2).await;
    for i in 0..2 {
        a.sqs
            .send_message()
            .queue_url(&queue_url)
            .message_body(format!("m{i}"))
            .send()
            .await
            .unwrap();
    }
    let gauge = SqsEcsGauge::new(
        a.sqs.clone(),
        a.ecs.clone(),
        &queue_url,
        &CapacityConfig {
            max_concurrent_sessions: 10,
            ecs_cluster: cluster.clone(),
            runner_task_family: family.clone(),
        },
    );
    assert_eq!(gauge.in_flight().await.unwrap(), 2 + 3);
    // A message being processed (in flight, not visible) still counts.
    let got = a
        .sqs
        .receive_message()
        .queue_url(&queue_url)
        .visibility_timeout(60)
        .send()
        .await
        .unwrap();
    assert_eq!(got.messages().len(), 1);
    assert_eq!(gauge.in_flight().await.unwrap(), 5);
    // A stopped task does not.
    a.ecs
        .stop_task()
        .cluster(&cluster)
        .task(&ours[0])
        .send()
        .await
        .unwrap();
    assert_eq!(gauge.in_flight().await.unwrap(), 4);

    // The cap in a full app: MAX_CONCURRENT_SESSIONS = 5 with 4 in flight → one item.
    let fake = FakeControlPlane::start(Default::default()).await;
    let vars: HashMap<&str, String> = HashMap::from([
        (config::ENVIRONMENT_ID, fake.environment_id()),
        (config::BASE_URL, fake.base_url()),
        (config::SIGNING_KEY, SIGNING_KEY.to_owned()),
        (config::ENVIRONMENT_KEY, fake.environment_key()),
        (config::QUEUE_URL, queue_url.clone()),
        (config::KMS_KEY_ID, a.key().await),
        (config::MAX_CONCURRENT_SESSIONS, "5".to_owned()),
        (config::ECS_CLUSTER, cluster),
        (config::RUNNER_TASK_FAMILY, family),
    ]);
    let cfg = Config::from_lookup(Mode::Webhook, |k| vars.get(k).cloned()).unwrap();
    let app = Arc::new(App::new(
        &cfg,
        aws::ports(&cfg, &a.sdk).unwrap(),
        Runtime {
            metrics: webhook::memory::MemoryMetrics::new(),
            ..Runtime::default()
        },
    ));
    for _ in 0..3 {
        fake.create_session(cma_tests::fake::SessionScript::new(vec![]));
    }
    let r = invoke(&app, &run_started("msg_moto_cap")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["result"], "at_capacity", "{:?}", r.body);
    assert_eq!(r.body["enqueued"], 1);
}
