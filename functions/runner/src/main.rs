//! `runner`: serve one Claude Managed Agents work item in this sandbox.
//!
//! Thin wiring: read inputs (exit 2 on bad input, before any network call), become
//! non-dumpable, set up logging, decrypt a KMS-encrypted work secret if one was given
//! (exit 1 on failure, before any control-plane call), scrub secrets from the process
//! environment, set up signals, then hand over to [`runner::run::run`].

use std::process::ExitCode;

use cma_shared::{ClientConfig, ControlPlane};
use runner::config::{self, Command, Config, Credential, CredentialSource, SecretSource};
use runner::envelope::{self, KmsDecryptor};
use runner::run::{RunSpec, run};
use runner::skills::SkillLimits;
use runner::tools::ToolContext;
use tracing::Instrument;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = match config::parse(args, |k| std::env::var(k).ok()) {
        Ok(Command::Run(cfg)) => cfg,
        Ok(Command::Help) => {
            print!("{}", config::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("runner: {e}");
            return ExitCode::from(2);
        }
    };
    let non_dumpable = runner::hygiene::make_non_dumpable();
    runner::logging::init(cfg.log_format);
    if !non_dumpable {
        tracing::warn!("could not mark the runner non-dumpable (prctl refused)");
    }
    let credential = match &cfg.secret {
        SecretSource::Plain(credential) => credential.clone(),
        SecretSource::Ciphertext {
            ciphertext,
            environment_key,
        } => match open_envelope(&cfg, ciphertext, environment_key.as_ref()) {
            Ok(credential) => credential,
            Err(code) => return ExitCode::from(code),
        },
    };
    // SAFETY: single-threaded: no runtime has started, or the decryption runtime has
    // been dropped and its threads joined (checked in `open_envelope`).
    unsafe { runner::hygiene::scrub_own_environment() };

    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runner: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = rt.block_on(async move {
        let span = tracing::info_span!("runner", session_id = %cfg.session_id, work_id = %cfg.work_id);
        async move {
            match &credential.source {
                CredentialSource::SessionsToken => tracing::info!("using the work item's sessions token"),
                CredentialSource::EnvironmentKey { secret_was_unusable: true } => tracing::warn!(
                    "the work secret did not decode to a sessions token; falling back to the environment key"
                ),
                CredentialSource::EnvironmentKey { .. } => {
                    tracing::warn!("no work secret given; using the environment key (it can claim any session's work)")
                }
            }
            if let Err(e) = std::fs::create_dir_all(&cfg.workdir) {
                tracing::error!(workdir = %cfg.workdir.display(), error = %e, "cannot create the workdir");
                return 1;
            }
            let client = match ControlPlane::new(
                ClientConfig::with_base_url(cfg.base_url.as_deref()),
                credential.bearer.clone(),
            ) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "cannot build the HTTP client");
                    return 1;
                }
            };
            let skills_fallback = match &cfg.skills_fallback_key {
                Some(key) if credential.source == CredentialSource::SessionsToken => {
                    match ControlPlane::new(
                        ClientConfig::with_base_url(cfg.base_url.as_deref()),
                        cma_shared::SecretString::new(key.expose()),
                    ) {
                        Ok(c) => Some(c),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot build the HTTP client");
                            return 1;
                        }
                    }
                }
                _ => None,
            };
            let spec = RunSpec {
                environment_id: cfg.environment_id.clone(),
                work_id: cfg.work_id.clone(),
                session_id: cfg.session_id.clone(),
                max_idle: cfg.max_idle,
                tool_context: ToolContext::new(&cfg.workdir),
                has_sessions_token: credential.has_sessions_token,
                skills_fallback,
                skill_limits: SkillLimits::default(),
                memory: cfg.memory.clone(),
            };
            run(client, spec, shutdown_signal()).await.exit_code()
        }
        .instrument(span)
        .await
    });
    ExitCode::from(code as u8)
}

/// Decrypt `ANTHROPIC_WORK_SECRET_CIPHERTEXT` with KMS and derive the credential from it
/// exactly as from `ANTHROPIC_WORK_SECRET`. Nothing has been sent to the control plane
/// yet; on failure, one error line and the exit code (1, or 2 if the plaintext is not a
/// usable secret and no environment key is given).
///
/// This runs on its own current-thread runtime BEFORE the environment scrub, because
/// the scrub also removes the AWS credential variables (`AWS_CONTAINER_CREDENTIALS_*`
/// for the Fargate task role, `AWS_ACCESS_KEY_ID`/…) that the SDK's default chain reads
/// from the process environment. Dropping the runtime joins its blocking-pool threads;
/// we then check that the process is single-threaded again before the scrub.
fn open_envelope(
    cfg: &Config,
    ciphertext: &cma_shared::SecretString,
    environment_key: Option<&cma_shared::EnvironmentKey>,
) -> Result<Credential, u8> {
    let _span = tracing::info_span!("runner", session_id = %cfg.session_id, work_id = %cfg.work_id)
        .entered();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            tracing::error!(error = %e, "cannot start the async runtime for KMS decryption");
            1
        })?;
    let plaintext = rt.block_on(envelope::open_work_secret(
        &KmsDecryptor::new(),
        ciphertext,
        &cfg.environment_id,
        &cfg.work_id,
        &cfg.session_id,
        envelope::DECRYPT_TIMEOUT,
    ));
    drop(rt);
    match std::fs::read_dir("/proc/self/task").map(Iterator::count) {
        Ok(1) => {}
        Ok(n) => {
            tracing::error!(
                threads = n,
                "threads remain after KMS decryption; refusing to scrub the environment unsafely; nothing was sent to the control plane"
            );
            return Err(1);
        }
        Err(e) => tracing::warn!(error = %e, "cannot count threads (/proc/self/task)"),
    }
    let plaintext = plaintext.map_err(|e| {
        tracing::error!("{e}; nothing was sent to the control plane");
        1
    })?;
    tracing::info!("decrypted the work secret from ANTHROPIC_WORK_SECRET_CIPHERTEXT with KMS");
    config::decrypted_credential(&plaintext, environment_key).map_err(|e| {
        tracing::error!("{e}; nothing was sent to the control plane");
        2
    })
}

/// SIGTERM (Fargate stop, `docker stop`) or SIGINT.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
