//! Benchmark (prints figures, asserts nothing): the dispatcher handling a batch of 10
//! SQS records, end to end through the real `aws-sdk-ecs` adapter against moto.
//!
//! ```text
//! CMA_MOTO_URL=http://127.0.0.1:5001 cargo bench -p dispatcher --bench batch
//! ```
//!
//! Scenarios (each `CMA_BENCH_ITERS` runs, default 30; p50/p99/mean/min/max of the
//! wall time of `Dispatcher::handle_batch`, plus p50/p99 of the per-record launch
//! latency the `LaunchLatencyMs` metric reports):
//!
//! * `10 new claims`: 10 fresh messages → 10 × (`ListTasks` + `RunTask`), at most 10
//!   at once — the normal path.
//! * `10 redeliveries`: the same 10 messages again → 10 × (`ListTasks` +
//!   `DescribeTasks`), no `RunTask`.
//! * `10 claims, in-memory launcher`: the dispatcher's own overhead (parsing, spans,
//!   JSON logs at `info` into a sink, the EMF line) without any AWS call.
//!
//! moto is a single Python process on loopback, so the AWS figures measure our
//! request path plus moto, not ECS (real `RunTask` calls take a few hundred ms). The
//! moto cluster grows by 10 tasks per run of the first scenario; every run uses a new
//! cluster-unique set of work ids. Without `CMA_MOTO_URL` only the in-memory scenario
//! runs (the program says so and exits 0).

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use cma_shared::message::{EncryptionContext, SealedSecret, WorkMessage};
use dispatcher::aws::{SqsVisibility, emulator_sdk_config};
use dispatcher::fargate::{AwsEcs, FargateConfig, FargateLauncher, Placement};
use dispatcher::memory::{MemoryLauncher, MemoryMetrics, MemoryVisibility};
use dispatcher::{Dispatcher, Launcher, Settings};

const BATCH: usize = 10;

fn iters() -> usize {
    std::env::var("CMA_BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(30)
}

fn now_rfc3339() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (days, sod) = (t.div_euclid(86_400), t.rem_euclid(86_400));
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

fn batch(run: usize, tag: &str) -> SqsEvent {
    let acked_at = now_rfc3339();
    let mut e = SqsEvent::default();
    e.records = (0..BATCH)
        .map(|i| {
            let work_id = format!("work_bench{tag}{run:05}x{i:02}");
            let body = WorkMessage::new(
                &EncryptionContext {
                    environment_id: "env_bench".into(),
                    work_id: work_id.clone(),
                    session_id: format!("sesn_bench{tag}{run:05}x{i:02}"),
                },
                acked_at.clone(),
                &SealedSecret::Ciphertext(
                    format!("kms-ciphertext-blob-{work_id}-{}", "x".repeat(180)).into_bytes(),
                ),
            )
            .to_body();
            let mut r = SqsMessage::default();
            r.message_id = Some(format!("m-{tag}-{run}-{i}"));
            r.receipt_handle = Some(format!("rh-{tag}-{run}-{i}"));
            r.body = Some(body);
            r.attributes
                .insert("ApproximateReceiveCount".into(), "1".into());
            r
        })
        .collect();
    e
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:8.2} ms", d.as_secs_f64() * 1000.0)
}

fn report(name: &str, mut samples: Vec<Duration>, launch_ms: Vec<u64>) {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len().max(1) as u32;
    println!(
        "{name:<34} n={:<4} p50 {} p99 {} mean {} min {} max {}",
        samples.len(),
        ms(pct(&samples, 0.5)),
        ms(pct(&samples, 0.99)),
        ms(mean),
        ms(samples[0]),
        ms(*samples.last().unwrap()),
    );
    if !launch_ms.is_empty() {
        let mut l: Vec<Duration> = launch_ms.into_iter().map(Duration::from_millis).collect();
        l.sort();
        println!(
            "{:<34} n={:<4} p50 {} p99 {}   (per record, LaunchLatencyMs)",
            "",
            l.len(),
            ms(pct(&l, 0.5)),
            ms(pct(&l, 0.99)),
        );
    }
}

async fn run_scenario(
    name: &str,
    d: &Dispatcher,
    metrics: &MemoryMetrics,
    events: &[SqsEvent],
    expect: &str,
) {
    // Warm-up (connections, first-call paths).
    let _ = d.handle_batch(&events[0], Duration::from_secs(25)).await;
    let before = metrics.values("LaunchLatencyMs").len();
    let mut samples = Vec::with_capacity(events.len() - 1);
    for e in &events[1..] {
        let t = Instant::now();
        let resp = d.handle_batch(e, Duration::from_secs(25)).await;
        samples.push(t.elapsed());
        if !resp.batch_item_failures.is_empty() {
            eprintln!("warning: {name}: item failures {resp:?}");
        }
    }
    let lat = metrics.values("LaunchLatencyMs")[before..].to_vec();
    let total = |k: &str| metrics.total(k);
    println!(
        "  ({expect}, totals incl. warm-up: launched {}, already running {}, retried {}, failed {})",
        total("Launched"),
        total("AlreadyRunning"),
        total("Retried"),
        total("Failed")
    );
    report(name, samples, lat);
}

/// The default VPC's first subnet and security group, via the EC2 Query API.
async fn network(url: &str) -> (String, String) {
    let http = reqwest::Client::new();
    let q = |params: &'static str| {
        let http = http.clone();
        let url = url.to_owned();
        async move {
            http.post(format!("{url}/"))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header("Authorization", "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0")
                .body(format!("{params}&Version=2016-11-15"))
                .send()
                .await
                .expect("EC2 query")
                .text()
                .await
                .expect("EC2 body")
        }
    };
    let first = |xml: String, tag: &str| {
        xml.split(&format!("<{tag}>"))
            .nth(1)
            .and_then(|s| s.split('<').next())
            .expect("value")
            .to_owned()
    };
    let subnet = first(
        q("Action=DescribeSubnets&Filter.1.Name=default-for-az&Filter.1.Value.1=true").await,
        "subnetId",
    );
    let sg = first(
        q("Action=DescribeSecurityGroups&Filter.1.Name=group-name&Filter.1.Value.1=default").await,
        "groupId",
    );
    (subnet, sg)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // The production JSON logging at `info`, written to a sink: its cost is part of
    // the dispatcher's overhead.
    let _ = tracing::subscriber::set_global_default(dispatcher::logging::json_subscriber(
        dispatcher::logging::filter("info"),
        std::io::sink,
    ));
    let n = iters();
    println!(
        "dispatcher batch benchmark: batches of {BATCH} records, {n} timed runs per scenario (+1 warm-up)\n"
    );

    // In-memory baseline.
    {
        let metrics = Arc::new(MemoryMetrics::default());
        let launcher: Arc<dyn Launcher> = Arc::new(MemoryLauncher::default());
        let d = Dispatcher::new(
            launcher,
            Arc::new(MemoryVisibility::default()),
            Settings::default(),
        )
        .with_metrics(metrics.clone());
        let events: Vec<SqsEvent> = (0..=n).map(|r| batch(r, "mem")).collect();
        run_scenario(
            "10 claims, in-memory launcher",
            &d,
            &metrics,
            &events,
            "memory",
        )
        .await;
    }

    let Some(url) = std::env::var("CMA_MOTO_URL")
        .ok()
        .map(|u| u.trim().trim_end_matches('/').to_owned())
        .filter(|u| !u.is_empty())
    else {
        println!(
            "\nCMA_MOTO_URL is not set: skipping the moto scenarios (start `moto_server -H 127.0.0.1 -p 5001` \
             and export CMA_MOTO_URL=http://127.0.0.1:5001 to run them)."
        );
        return;
    };

    let sdk = emulator_sdk_config(&url).await;
    let ecs = aws_sdk_ecs::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let cluster = format!("cma-bench-{suffix}");
    let family = format!("cma-bench-runner-{suffix}");
    ecs.create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .expect("CreateCluster");
    ecs.register_task_definition()
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
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("cma-bench-{suffix}"))
        .send()
        .await
        .expect("CreateQueue")
        .queue_url()
        .unwrap()
        .to_owned();
    let (subnet, sg) = network(&url).await;
    let cfg = FargateConfig {
        cluster: cluster.clone(),
        task_definition: family,
        container_name: "runner".into(),
        subnets: vec![subnet],
        security_groups: vec![sg],
        assign_public_ip: false,
        placement: Placement::LaunchTypeFargate,
    };
    let metrics = Arc::new(MemoryMetrics::default());
    let d = Dispatcher::new(
        Arc::new(FargateLauncher::new(
            Arc::new(AwsEcs::new(ecs.clone())),
            cfg,
        )),
        Arc::new(SqsVisibility::new(sqs, queue_url)),
        Settings::default(),
    )
    .with_metrics(metrics.clone());

    println!("\nagainst moto at {url} (cluster {cluster}):");
    let events: Vec<SqsEvent> = (0..=n).map(|r| batch(r, &suffix)).collect();
    run_scenario(
        "10 new claims (ListTasks+RunTask)",
        &d,
        &metrics,
        &events,
        "after new claims",
    )
    .await;
    let metrics2 = Arc::new(MemoryMetrics::default());
    let d2 = d.clone().with_metrics(metrics2.clone());
    run_scenario(
        "10 redeliveries (ListTasks+Describe)",
        &d2,
        &metrics2,
        &events,
        "redeliveries",
    )
    .await;
}
