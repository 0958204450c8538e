//! The real `runner` binary with a KMS-encrypted work secret
//! (`ANTHROPIC_WORK_SECRET_CIPHERTEXT`), against moto's KMS and the fake control plane.
//!
//! Cases that need KMS read `CMA_MOTO_URL`; when it is unset they fail under `CI` and
//! skip otherwise. Each test creates its own KMS key. The cases that fail before any
//! AWS call (bad base64, both variables, no credentials) always run.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region, retry::RetryConfig};
use aws_sdk_kms::primitives::Blob;
use base64::Engine as _;
use cma_shared::{ClientConfig, ControlPlane, SecretString};
use cma_tests::fake::{CreatedSession, FakeConfig, FakeControlPlane, ScriptStep, SessionScript};
use serde_json::json;
use tokio::process::Command;

const RUNNER: &str = env!("CARGO_BIN_EXE_runner");
/// Nothing listens here: for cases that must fail before any AWS call.
const NO_AWS: &str = "http://127.0.0.1:9";

fn moto_url() -> Option<String> {
    match std::env::var("CMA_MOTO_URL") {
        Ok(u) if !u.trim().is_empty() => Some(u.trim().trim_end_matches('/').to_owned()),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CMA_MOTO_URL is not set (required when CI is set)")
        }
        _ => {
            eprintln!("skipping: CMA_MOTO_URL is not set (start moto_server and export it)");
            None
        }
    }
}

fn kms(url: &str) -> aws_sdk_kms::Client {
    let conf = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_kms::Client::from_conf(conf)
}

/// A fresh key (one per test, so tests can share one moto) and `plaintext` encrypted
/// under it with the given context, base64 (standard, padded) as the webhook sends it.
async fn encrypt(url: &str, plaintext: &str, context: &[(&str, &str)]) -> String {
    let client = kms(url);
    let key = client
        .create_key()
        .description(format!("runner envelope test {}", uuid::Uuid::new_v4()))
        .send()
        .await
        .expect("moto CreateKey")
        .key_metadata
        .expect("key metadata")
        .key_id;
    let blob = client
        .encrypt()
        .key_id(key)
        .plaintext(Blob::new(plaintext.as_bytes()))
        .set_encryption_context(Some(
            context
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ))
        .send()
        .await
        .expect("moto Encrypt")
        .ciphertext_blob
        .expect("ciphertext");
    base64::engine::general_purpose::STANDARD.encode(blob.as_ref())
}

/// The item's encryption context, in the webhook's key names.
fn context<'a>(created: &'a CreatedSession, env_id: &'a str) -> [(&'static str, &'a str); 3] {
    [
        ("environment_id", env_id),
        ("work_id", &created.work_id),
        ("session_id", &created.session_id),
    ]
}

/// Hand the queued item to "the webhook" (poll + ack) so the runner can claim it, then
/// forget those requests: afterwards the fake records only the runner's.
async fn claim(fake: &FakeControlPlane) {
    let c = ControlPlane::new(
        ClientConfig::with_base_url(Some(&fake.base_url())),
        SecretString::new(fake.environment_key()),
    )
    .unwrap();
    let item = c
        .poll(&fake.environment_id(), Default::default(), "test-webhook")
        .await
        .unwrap()
        .expect("queued item");
    c.ack(&fake.environment_id(), &item.id).await.unwrap();
    fake.clear_requests();
}

struct Outcome {
    code: i32,
    log: String,
}

/// Run the runner to completion with the item's ids, the fake's base URL, `extra` env
/// and AWS pointed at `aws_endpoint` (static dummy credentials unless `credentials` is
/// false).
async fn run_runner(
    fake: &FakeControlPlane,
    created: &CreatedSession,
    aws_endpoint: &str,
    credentials: bool,
    extra: &[(&str, &str)],
) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let workdir: PathBuf = dir.path().join("workspace");
    std::fs::create_dir_all(&workdir).unwrap();
    let log_path = dir.path().join("runner.log");
    let mut cmd = Command::new(RUNNER);
    cmd.env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        )
        .env("ANTHROPIC_WORK_ID", &created.work_id)
        .env("ANTHROPIC_ENVIRONMENT_ID", fake.environment_id())
        .env("ANTHROPIC_SESSION_ID", &created.session_id)
        .env("ANTHROPIC_BASE_URL", fake.base_url())
        .env("AWS_ENDPOINT_URL", aws_endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.path().join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.path().join("no-aws-credentials"),
        )
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("RUST_LOG", "info")
        .args(["--workdir", workdir.to_str().unwrap(), "--max-idle", "1s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .kill_on_drop(true);
    if credentials {
        cmd.env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing");
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let limit = Duration::from_secs(60);
    let code = match tokio::time::timeout(limit, child.wait()).await {
        Ok(Ok(status)) => status.code().unwrap_or(-1),
        _ => {
            let _ = child.start_kill();
            panic!(
                "runner did not exit within {limit:?}; log:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
    };
    Outcome {
        code,
        log: std::fs::read_to_string(&log_path).unwrap_or_default(),
    }
}

async fn fake() -> FakeControlPlane {
    FakeControlPlane::start(FakeConfig {
        lease_ttl_seconds: 60,
        ping_interval: Duration::from_millis(200),
        ..FakeConfig::default()
    })
    .await
}

fn one_call_session(fake: &FakeControlPlane) -> CreatedSession {
    fake.create_session(SessionScript::new(vec![ScriptStep::tool(
        "bash",
        json!({"command": "echo ${AWS_SECRET_ACCESS_KEY:-unset} ${ANTHROPIC_WORK_SECRET_CIPHERTEXT:-unset}"}),
    )]))
}

fn assert_nothing_sent(fake: &FakeControlPlane, created: &CreatedSession, log: &str) {
    let requests = fake.requests();
    assert!(
        requests.is_empty(),
        "the runner must not call the control plane: {:?}\n{log}",
        requests
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect::<Vec<_>>()
    );
    assert_eq!(fake.heartbeat_count(&created.work_id), 0);
    assert!(fake.stop_calls(&created.work_id).is_empty());
}

fn assert_no_secret_in(log: &str, created: &CreatedSession, ciphertext: &str) {
    assert!(!log.contains(&created.secret), "work secret leaked:\n{log}");
    assert!(
        !log.contains(&created.sessions_token),
        "sessions token leaked:\n{log}"
    );
    assert!(!log.contains(ciphertext), "ciphertext leaked:\n{log}");
}

#[tokio::test]
async fn decrypts_with_the_items_context_and_serves_the_session() {
    let Some(moto) = moto_url() else { return };
    let fake = fake().await;
    let created = one_call_session(&fake);
    let env_id = fake.environment_id();
    let ciphertext = encrypt(&moto, &created.secret, &context(&created, &env_id)).await;
    claim(&fake).await;

    let out = run_runner(
        &fake,
        &created,
        &moto,
        true,
        &[("ANTHROPIC_WORK_SECRET_CIPHERTEXT", &ciphertext)],
    )
    .await;
    let log = &out.log;
    assert_eq!(out.code, 0, "{log}");
    assert!(fake.script_finished(&created.session_id), "{log}");
    let results = fake.results(&created.session_id);
    assert_eq!(
        results[0]["content"][0]["text"].as_str(),
        Some("unset unset"),
        "tools must not see AWS or ANTHROPIC variables: {log}"
    );
    assert_eq!(fake.work_state(&created.work_id), "stopped");
    assert_eq!(
        fake.stop_calls(&created.work_id),
        vec![json!({"force": true})]
    );
    // The decrypted secret was used exactly as ANTHROPIC_WORK_SECRET: the sessions token.
    assert!(
        log.contains("using the work item's sessions token"),
        "{log}"
    );
    assert!(log.contains("decrypted the work secret"), "{log}");
    assert_no_secret_in(log, &created, &ciphertext);
}

#[tokio::test]
async fn ciphertext_for_another_item_exits_1_and_sends_nothing() {
    let Some(moto) = moto_url() else { return };
    let fake = fake().await;
    let created = one_call_session(&fake);
    let env_id = fake.environment_id();
    let mut ctx = context(&created, &env_id);
    ctx[1].1 = "work_someone_else";
    let ciphertext = encrypt(&moto, &created.secret, &ctx).await;
    claim(&fake).await;

    let out = run_runner(
        &fake,
        &created,
        &moto,
        true,
        &[("ANTHROPIC_WORK_SECRET_CIPHERTEXT", &ciphertext)],
    )
    .await;
    let log = &out.log;
    assert_eq!(out.code, 1, "{log}");
    assert!(log.contains("InvalidCiphertextException"), "{log}");
    assert!(
        log.contains("kms:Decrypt") && log.contains("another item"),
        "{log}"
    );
    assert!(
        log.contains("nothing was sent to the control plane"),
        "{log}"
    );
    assert_nothing_sent(&fake, &created, log);
    assert_no_secret_in(log, &created, &ciphertext);
}

#[tokio::test]
async fn garbage_base64_exits_1_and_sends_nothing() {
    let fake = fake().await;
    let created = one_call_session(&fake);
    claim(&fake).await;
    let garbage = "%%%this-is-not*base64%%%";
    let out = run_runner(
        &fake,
        &created,
        NO_AWS,
        true,
        &[("ANTHROPIC_WORK_SECRET_CIPHERTEXT", garbage)],
    )
    .await;
    let log = &out.log;
    assert_eq!(out.code, 1, "{log}");
    assert!(
        log.contains("ANTHROPIC_WORK_SECRET_CIPHERTEXT is not valid base64"),
        "{log}"
    );
    assert_nothing_sent(&fake, &created, log);
    assert_no_secret_in(log, &created, garbage);
}

#[tokio::test]
async fn no_aws_credentials_exits_1_and_sends_nothing() {
    let fake = fake().await;
    let created = one_call_session(&fake);
    claim(&fake).await;
    // Well-formed base64; KMS is never reached because there are no credentials.
    let ciphertext = base64::engine::general_purpose::STANDARD.encode(b"not a real blob");
    let out = run_runner(
        &fake,
        &created,
        NO_AWS,
        false,
        &[("ANTHROPIC_WORK_SECRET_CIPHERTEXT", &ciphertext)],
    )
    .await;
    let log = &out.log;
    assert_eq!(out.code, 1, "{log}");
    assert!(
        log.contains("cannot decrypt ANTHROPIC_WORK_SECRET_CIPHERTEXT with KMS")
            && log.contains("credentials"),
        "{log}"
    );
    assert_nothing_sent(&fake, &created, log);
    assert_no_secret_in(log, &created, &ciphertext);
}

#[tokio::test]
async fn both_secret_variables_exit_2_and_send_nothing() {
    let fake = fake().await;
    let created = one_call_session(&fake);
    claim(&fake).await;
    let out = run_runner(
        &fake,
        &created,
        NO_AWS,
        true,
        &[
            ("ANTHROPIC_WORK_SECRET", &created.secret),
            ("ANTHROPIC_WORK_SECRET_CIPHERTEXT", "AQIDBA=="),
        ],
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.log);
    assert!(
        out.log
            .contains("ANTHROPIC_WORK_SECRET and ANTHROPIC_WORK_SECRET_CIPHERTEXT are both set"),
        "{}",
        out.log
    );
    assert_nothing_sent(&fake, &created, &out.log);
}
