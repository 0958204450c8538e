//! Benchmark (not a test) of the webhook Lambda: warm handler latency, bootstrap
//! start-to-ready time, and the release zip size.
//!
//! ```text
//! make bench-webhook                          # builds the zips, then runs this
//! cargo bench -p webhook --bench handler      # latency + bootstrap only
//! ```
//!
//! What is measured:
//!
//! * **Warm handler latency** against the fake control plane on loopback (in this
//!   process, its own tokio runtime on other threads), with in-memory SQS/KMS ports
//!   (the AWS calls are network round trips we do not control and are excluded):
//!   - `verify + empty drain`: a freshly signed `session.status_run_started`
//!     delivery through `lambda_http`'s event parser and the handler; the drain
//!     makes one poll, which finds nothing.
//!   - `bare poll`: the same empty poll made directly with the same client: the
//!     fake's own latency. The overhead figure is `p50(handler) - p50(bare poll)`.
//!   - `10-item drain`: ten sessions queued, one delivery claims all of them
//!     (10 × poll + ack + seal + enqueue, then the empty poll), against
//!     `bare 11 polls + 10 acks` made directly.
//! * **Bootstrap start-to-ready**: the `webhook` binary spawned with a complete
//!   configuration and `AWS_LAMBDA_RUNTIME_API` pointing at a loopback listener;
//!   the figure is spawn → its first `GET /2018-06-01/runtime/invocation/next`
//!   (config parsed, AWS SDK config loaded, clients built, runtime started).
//!   The binary is the bench profile's (`release`) unless `CMA_BENCH_WEBHOOK_BIN`
//!   names another (e.g. the `lambda` profile's `target/lambda/webhook/bootstrap`).
//! * **Zip size**: `target/lambda/{webhook,sweep}/bootstrap.zip` when present
//!   (`make bench-webhook` builds them with `--profile lambda`).
//!
//! `CMA_BENCH_ITERS` sets the number of timed iterations (default 2000 for the
//! empty drain, a tenth of that for the 10-item drain, 30 bootstraps).

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cma_shared::client::PollParams;
use cma_shared::retry::FixedJitter;
use cma_shared::types::RUN_STARTED;
use cma_shared::{ClientConfig, ControlPlane, SecretString, WebhookSecret};
use cma_tests::fake::{FakeConfig, FakeControlPlane, SessionScript};
use webhook::config::{self, Config, Mode};
use webhook::memory::{MemoryMetrics, MemoryQueue, MemorySealer, MemorySecret};
use webhook::{App, Ports, Runtime};

const SIGNING_KEY: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn iters() -> usize {
    std::env::var("CMA_BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000)
}

fn client(fake: &FakeControlPlane, bearer: &str) -> ControlPlane {
    let mut cfg = ClientConfig::with_base_url(Some(&fake.base_url()));
    cfg.request_timeout = Duration::from_secs(5);
    ControlPlane::new(cfg, SecretString::new(bearer)).expect("client")
}

fn app(fake: &FakeControlPlane) -> (Arc<App>, Arc<MemoryQueue>) {
    let mut vars: HashMap<&str, String> = HashMap::new();
    vars.insert(config::SIGNING_KEY, SIGNING_KEY.into());
    vars.insert(
        config::QUEUE_URL,
        "https://sqs.us-east-1.amazonaws.com/000000000000/cma-bench".into(),
    );
    vars.insert(config::KMS_KEY_ID, "alias/cma-bench".into());
    vars.insert(config::ENVIRONMENT_ID, fake.environment_id());
    vars.insert(config::BASE_URL, fake.base_url());
    vars.insert(config::ENVIRONMENT_KEY, fake.environment_key());
    vars.insert(config::MAX_DRAIN_ITEMS, "1000".into());
    let cfg = Config::from_lookup(Mode::Webhook, |k| vars.get(k).cloned()).expect("config");
    let queue = MemoryQueue::new();
    let ports = Ports {
        control_plane: Arc::new(client(fake, "")),
        queue: queue.clone(),
        sealer: MemorySealer::new(),
        gauge: None,
        signing_key: Some(MemorySecret::new(config::SIGNING_KEY, SIGNING_KEY)),
        environment_key: MemorySecret::new(config::ENVIRONMENT_KEY, &fake.environment_key()),
    };
    let rt = Runtime {
        clock: Arc::new(cma_shared::retry::TokioClock),
        jitter: Arc::new(FixedJitter(0.5)),
        metrics: MemoryMetrics::new(),
        worker_id: "webhook-bench-0123456789ab".into(),
    };
    (Arc::new(App::new(&cfg, ports, rt)), queue)
}

fn delivery(n: usize) -> lambda_http::Request {
    let event = webhook::local::signed_delivery_event(
        &WebhookSecret::new(SIGNING_KEY),
        RUN_STARTED,
        "sesn_bench",
        &format!("msg_bench_{n}"),
        webhook::local::unix_now(),
        false,
    )
    .expect("sign");
    lambda_http::request::from_str(&event.to_string()).expect("event parses")
}

struct Stats {
    p50: f64,
    p99: f64,
    min: f64,
}

fn stats(mut v: Vec<f64>) -> Stats {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    Stats {
        p50: at(0.5),
        p99: at(0.99),
        min: v[0],
    }
}

fn row(name: &str, s: &Stats, unit: &str) {
    println!(
        "{name:<44} p50 {:>9.3} {unit}   p99 {:>9.3} {unit}   min {:>9.3} {unit}",
        s.p50, s.p99, s.min
    );
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn warm(rt: &tokio::runtime::Runtime) {
    let fake = rt.block_on(FakeControlPlane::start(FakeConfig::default()));
    let (app, queue) = app(&fake);
    let bare = client(&fake, &fake.environment_key());
    let env = fake.environment_id();
    let n = iters();

    // Warm-up: connection pool, secret cache, allocator.
    rt.block_on(async {
        for i in 0..200 {
            let r = webhook::lambda::webhook(&app, delivery(i)).await;
            assert_eq!(r.status(), 200);
            bare.poll(&env, PollParams::default(), "bench")
                .await
                .unwrap();
        }
    });

    let mut handler = Vec::with_capacity(n);
    let mut poll = Vec::with_capacity(n);
    rt.block_on(async {
        for i in 0..n {
            // Interleaved so both see the same machine state.
            let req = delivery(1_000_000 + i);
            let t = Instant::now();
            let r = webhook::lambda::webhook(&app, req).await;
            handler.push(us(t.elapsed()));
            assert_eq!(r.status(), 200);
            let t = Instant::now();
            let item = bare
                .poll(&env, PollParams::default(), "bench")
                .await
                .unwrap();
            poll.push(us(t.elapsed()));
            assert!(item.is_none());
        }
    });
    assert!(queue.is_empty(), "nothing was queued");
    let h = stats(handler);
    let p = stats(poll);
    println!("warm handler, {n} iterations (µs):");
    row("verify + empty drain (handler)", &h, "µs");
    row("bare poll (fake's own latency)", &p, "µs");
    println!(
        "{:<44} p50 {:>9.3} µs   p99 {:>9.3} µs",
        "=> handler overhead over the fake",
        h.p50 - p.p50,
        h.p99 - p.p99
    );

    let m = (n / 10).max(20);
    let mut drain = Vec::with_capacity(m);
    let mut direct = Vec::with_capacity(m);
    rt.block_on(async {
        for i in 0..m {
            for _ in 0..10 {
                fake.create_session(SessionScript::new(vec![]));
            }
            let before = queue.len();
            let req = delivery(2_000_000 + i);
            let t = Instant::now();
            let r = webhook::lambda::webhook(&app, req).await;
            drain.push(us(t.elapsed()));
            assert_eq!(r.status(), 200);
            assert_eq!(queue.len(), before + 10, "all ten enqueued");

            for _ in 0..10 {
                fake.create_session(SessionScript::new(vec![]));
            }
            let t = Instant::now();
            for _ in 0..10 {
                let item = bare
                    .poll(&env, PollParams::default(), "bench")
                    .await
                    .unwrap()
                    .expect("an item");
                bare.ack(&env, &item.id).await.unwrap();
            }
            assert!(
                bare.poll(&env, PollParams::default(), "bench")
                    .await
                    .unwrap()
                    .is_none()
            );
            direct.push(us(t.elapsed()));
        }
    });
    let d = stats(drain);
    let b = stats(direct);
    println!("10-item drain, {m} iterations (µs):");
    row("verify + drain 10 items (handler)", &d, "µs");
    row("bare 11 polls + 10 acks", &b, "µs");
    println!(
        "{:<44} p50 {:>9.3} µs   ({:.1} µs per item)",
        "=> handler overhead over the fake",
        d.p50 - b.p50,
        (d.p50 - b.p50) / 10.0
    );
}

fn bootstrap(fake_url: &str) {
    let bin = std::env::var_os("CMA_BENCH_WEBHOOK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_webhook")));
    let n = (iters() / 60).clamp(10, 100);
    let size = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        let t = Instant::now();
        let mut child = Command::new(&bin)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "cma-webhook")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/cma-webhook")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "bench")
            .env("AWS_SECRET_ACCESS_KEY", "bench")
            .env(config::ENVIRONMENT_ID, "env_bench")
            .env(config::BASE_URL, fake_url)
            .env(config::SIGNING_KEY, SIGNING_KEY)
            .env(config::ENVIRONMENT_KEY, "sk-ant-bench")
            .env(
                config::QUEUE_URL,
                "https://sqs.us-east-1.amazonaws.com/000000000000/cma-bench",
            )
            .env(config::KMS_KEY_ID, "alias/cma-bench")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn webhook binary");
        let (stream, _) = listener.accept().expect("runtime connects");
        let mut line = String::new();
        BufReader::new(&stream)
            .read_line(&mut line)
            .expect("request line");
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(
            line.starts_with("GET /2018-06-01/runtime/invocation/next"),
            "unexpected first request: {line}"
        );
        let _ = child.kill();
        let _ = child.wait();
    }
    println!(
        "bootstrap start-to-ready, {n} spawns of {} ({:.1} MB):",
        bin.display(),
        size as f64 / 1e6
    );
    row(
        "spawn -> first GET /runtime/invocation/next",
        &stats(times),
        "ms",
    );
}

fn zips() {
    let root = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("lambda");
    for f in ["webhook", "sweep"] {
        let p = root.join(f).join("bootstrap.zip");
        match std::fs::metadata(&p) {
            Ok(m) => println!(
                "zip {f:<8} {:>6.2} MB ({} bytes)  {}",
                m.len() as f64 / 1e6,
                m.len(),
                p.display()
            ),
            Err(_) => println!(
                "zip {f:<8} not built (run `make bench-webhook`, or `cargo lambda build --profile lambda --output-format zip -p webhook --bin webhook --bin sweep`)"
            ),
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    warm(&rt);
    let fake = rt.block_on(FakeControlPlane::start(FakeConfig::default()));
    bootstrap(&fake.base_url());
    zips();
}
