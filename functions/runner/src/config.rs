//! Runner inputs: environment variables exactly as the reference worker reads them
//! (spec control-plane §9.1) and the command-line flags of the `runner` binary.
//!
//! Bad or missing input is a [`ConfigError`]: one line naming the variable or flag,
//! exit code 2, and nothing is sent to the control plane.

use std::path::PathBuf;
use std::time::Duration;

use cma_shared::secret::{EnvironmentKey, SecretString, WorkSecret};

use crate::memory::{DeleteMode, MemoryConfig};

/// `runner --help`.
pub const USAGE: &str = "\
runner: serve one Claude Managed Agents work item (one session) in this sandbox

USAGE:
    runner [--workdir DIR] [--max-idle DURATION] [--log-format json|text]

OPTIONS:
    --workdir DIR          working directory of the tools (default /workspace)
    --max-idle DURATION    exit after this long idle at end_turn (default 60s; e.g. 3s, 500ms, 2m; 0 disables)
    --log-format FORMAT    json (default) or text
    -h, --help             print this help

ENVIRONMENT:
    ANTHROPIC_WORK_ID          work item id (required)
    ANTHROPIC_ENVIRONMENT_ID   environment id (required)
    ANTHROPIC_SESSION_ID       session id (required)
    ANTHROPIC_WORK_SECRET      the item's secret from poll (preferred credential)
    ANTHROPIC_WORK_SECRET_CIPHERTEXT
                               the same secret, KMS-encrypted by the webhook (base64); decrypted
                               with the task's AWS credentials before any call (not with the above)
    ANTHROPIC_ENVIRONMENT_KEY  environment key (fallback credential only)
    ANTHROPIC_BASE_URL         API base URL (default https://api.anthropic.com)
    ALLOW_ENVIRONMENT_KEY_IN_SANDBOX
                               true: if the skills endpoints refuse the sessions token, retry
                               with ANTHROPIC_ENVIRONMENT_KEY (default false: warn, skip the skill)
    MEMORY_SYNC_INTERVAL_SECONDS
                               memory-store sync after tool calls at most this often (default 15, min 5)
    MEMORY_DELETE_MODE         enabled (default) | log_only | disabled: remote deletes of
                               memories removed locally
";

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// The variable carrying the KMS-encrypted work secret (see [`crate::envelope`]).
pub const WORK_SECRET_CIPHERTEXT_VAR: &str = "ANTHROPIC_WORK_SECRET_CIPHERTEXT";

/// Every environment variable the runner reads: the ones in [`USAGE`] plus `RUST_LOG`
/// (the log filter, see `logging.rs`). The AWS SDK's own variables (`AWS_REGION`, the
/// container credentials endpoint, ...) are excepted. `functions/runner/env-vars.txt`
/// lists the same names, one per line (a unit test keeps the two equal), and the
/// Terraform tests check that the task definition sets no other name.
pub const ENV_VARS: &[&str] = &[
    "ANTHROPIC_WORK_ID",
    "ANTHROPIC_ENVIRONMENT_ID",
    "ANTHROPIC_SESSION_ID",
    "ANTHROPIC_WORK_SECRET",
    WORK_SECRET_CIPHERTEXT_VAR,
    "ANTHROPIC_ENVIRONMENT_KEY",
    "ANTHROPIC_BASE_URL",
    "ALLOW_ENVIRONMENT_KEY_IN_SANDBOX",
    "MEMORY_SYNC_INTERVAL_SECONDS",
    "MEMORY_DELETE_MODE",
    "RUST_LOG",
];

/// Which credential the item runs with (spec §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// The sessions token decoded from the work secret.
    SessionsToken,
    /// `ANTHROPIC_ENVIRONMENT_KEY` (no secret given, or it did not decode).
    EnvironmentKey { secret_was_unusable: bool },
}

/// The bearer for every per-item call, and where it came from.
#[derive(Debug, Clone)]
pub struct Credential {
    pub bearer: SecretString,
    pub source: CredentialSource,
    /// Whether a sessions token is available (memory stores need it).
    pub has_sessions_token: bool,
}

/// Where the work secret comes from.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// `ANTHROPIC_WORK_SECRET` (or none: environment key only), resolved at parse time.
    Plain(Credential),
    /// `ANTHROPIC_WORK_SECRET_CIPHERTEXT`: decrypt it ([`crate::envelope`]) before any
    /// control-plane call, then [`decrypted_credential`].
    Ciphertext {
        ciphertext: SecretString,
        environment_key: Option<EnvironmentKey>,
    },
}

/// Everything the runner needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub work_id: String,
    pub environment_id: String,
    pub session_id: String,
    pub base_url: Option<String>,
    /// The work secret (or its ciphertext) and the environment-key fallback.
    pub secret: SecretSource,
    pub workdir: PathBuf,
    /// `None` = idle exit disabled.
    pub max_idle: Option<Duration>,
    pub log_format: LogFormat,
    /// The environment key for skills downloads when the item credential is refused
    /// (`ALLOW_ENVIRONMENT_KEY_IN_SANDBOX=true` and the key is given).
    pub skills_fallback_key: Option<EnvironmentKey>,
    /// Memory-store sync settings.
    pub memory: MemoryConfig,
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    Help,
}

/// A bad input, naming the variable or flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// Parse a duration: `60s`, `3s`, `500ms`, `2m`, `1h`, `1.5s`, `0`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.trim().parse().ok()?;
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(v * mult))
}

/// Parse argv (without the program name) and the environment.
pub fn parse<I, S>(args: I, env: impl Fn(&str) -> Option<String>) -> Result<Command, ConfigError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut workdir = PathBuf::from("/workspace");
    let mut max_idle = Some(Duration::from_secs(60));
    let mut log_format = LogFormat::Json;
    let mut it = args.into_iter().map(Into::into);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, ConfigError> {
            match inline.clone().or_else(|| it.next()) {
                Some(v) if !v.is_empty() => Ok(v),
                _ => err(format!("{name}: missing value (see --help)")),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--workdir" => workdir = PathBuf::from(value("--workdir")?),
            "--max-idle" => {
                let v = value("--max-idle")?;
                let d = parse_duration(&v).ok_or_else(|| {
                    ConfigError(format!(
                        "--max-idle: invalid duration {v:?} (e.g. 60s, 3s, 500ms, 0)"
                    ))
                })?;
                max_idle = (!d.is_zero()).then_some(d);
            }
            "--log-format" => {
                log_format = match value("--log-format")?.as_str() {
                    "json" => LogFormat::Json,
                    "text" => LogFormat::Text,
                    other => {
                        return err(format!(
                            "--log-format: expected json or text, got {other:?}"
                        ));
                    }
                }
            }
            other => return err(format!("{other}: unknown argument (see --help)")),
        }
    }

    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let required = |name: &str| var(name).ok_or_else(|| ConfigError(format!("{name} is not set")));
    let work_id = required("ANTHROPIC_WORK_ID")?;
    let environment_id = required("ANTHROPIC_ENVIRONMENT_ID")?;
    let session_id = required("ANTHROPIC_SESSION_ID")?;
    let base_url = var("ANTHROPIC_BASE_URL");
    if let Some(u) = &base_url
        && !(u.starts_with("https://") || u.starts_with("http://"))
    {
        return err("ANTHROPIC_BASE_URL must start with https:// or http://");
    }
    let plain = var("ANTHROPIC_WORK_SECRET").map(WorkSecret::new);
    let ciphertext = var(WORK_SECRET_CIPHERTEXT_VAR).map(SecretString::new);
    let env_key = var("ANTHROPIC_ENVIRONMENT_KEY").map(EnvironmentKey::new);
    let allow_env_key = match var("ALLOW_ENVIRONMENT_KEY_IN_SANDBOX")
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return err("ALLOW_ENVIRONMENT_KEY_IN_SANDBOX must be true or false"),
    };
    let skills_fallback_key = if allow_env_key { env_key.clone() } else { None };
    let delete_mode = match var("MEMORY_DELETE_MODE") {
        None => DeleteMode::Enabled,
        Some(v) => v
            .parse()
            .map_err(|e| ConfigError(format!("MEMORY_DELETE_MODE: {e}")))?,
    };
    let memory = match var("MEMORY_SYNC_INTERVAL_SECONDS") {
        None => MemoryConfig::new(MemoryConfig::DEFAULT_SYNC_INTERVAL, delete_mode),
        Some(v) => MemoryConfig::from_secs(v.trim().parse().unwrap_or(f64::NAN), delete_mode),
    }
    .map_err(|e| ConfigError(format!("MEMORY_SYNC_INTERVAL_SECONDS: {e}")))?;
    let secret = match (plain, ciphertext) {
        (Some(_), Some(_)) => {
            return err(format!(
                "ANTHROPIC_WORK_SECRET and {WORK_SECRET_CIPHERTEXT_VAR} are both set: give only one"
            ));
        }
        (None, Some(ciphertext)) => SecretSource::Ciphertext {
            ciphertext,
            environment_key: env_key,
        },
        (plain, None) => SecretSource::Plain(resolve_credential(
            plain.as_ref(),
            env_key.as_ref(),
            "ANTHROPIC_WORK_SECRET",
        )?),
    };
    Ok(Command::Run(Box::new(Config {
        work_id,
        environment_id,
        session_id,
        base_url,
        secret,
        workdir,
        max_idle,
        log_format,
        skills_fallback_key,
        memory,
    })))
}

/// The credential for a work secret decrypted from [`WORK_SECRET_CIPHERTEXT_VAR`]:
/// exactly the rules of `ANTHROPIC_WORK_SECRET` (sessions token if it decodes, else the
/// environment key, else an error).
pub fn decrypted_credential(
    plaintext: &SecretString,
    environment_key: Option<&EnvironmentKey>,
) -> Result<Credential, ConfigError> {
    resolve_credential(
        Some(&WorkSecret::new(plaintext.expose())),
        environment_key,
        &format!("the work secret decrypted from {WORK_SECRET_CIPHERTEXT_VAR}"),
    )
}

/// Spec §3.3: the sessions token if the secret decodes to one, else the environment key.
/// `secret_name` names the secret's origin in errors.
fn resolve_credential(
    secret: Option<&WorkSecret>,
    environment_key: Option<&EnvironmentKey>,
    secret_name: &str,
) -> Result<Credential, ConfigError> {
    let token = secret.and_then(WorkSecret::sessions_token);
    match (&token, environment_key) {
        (Some(t), _) => Ok(Credential {
            bearer: SecretString::new(t.expose()),
            source: CredentialSource::SessionsToken,
            has_sessions_token: true,
        }),
        (None, Some(k)) => Ok(Credential {
            bearer: SecretString::new(k.expose()),
            source: CredentialSource::EnvironmentKey {
                secret_was_unusable: secret.is_some(),
            },
            has_sessions_token: false,
        }),
        (None, None) if secret.is_some() => err(format!(
            "{secret_name} does not decode to a sessions token and ANTHROPIC_ENVIRONMENT_KEY is not set"
        )),
        (None, None) => err(format!(
            "{secret_name} is not set (nor {WORK_SECRET_CIPHERTEXT_VAR}, and no ANTHROPIC_ENVIRONMENT_KEY fallback)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn envf(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    const SECRET: &str = "eyJzZXNzaW9uc190b2tlbiI6InNrLWFudC1yZXEtRVhBTVBMRXRva2VuXzAxMjMiLCJhcGlfYmFzZV91cmwiOiJodHRwczovL2FwaS5hbnRocm9waWMuY29tIn0";

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("ANTHROPIC_WORK_ID", "work_1"),
            ("ANTHROPIC_ENVIRONMENT_ID", "env_1"),
            ("ANTHROPIC_SESSION_ID", "sesn_1"),
        ]
    }

    #[test]
    fn env_vars_file_matches_the_const() {
        let file = include_str!("../env-vars.txt");
        let lines: Vec<&str> = file.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines, ENV_VARS,
            "env-vars.txt must list ENV_VARS, one per line, in order"
        );
        let mut sorted = ENV_VARS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ENV_VARS.len(), "no duplicates");
    }

    #[test]
    fn env_vars_cover_every_variable_in_usage() {
        // Names in USAGE's ENVIRONMENT section: lines whose first word is an
        // upper-case identifier.
        let section = USAGE
            .split("ENVIRONMENT:")
            .nth(1)
            .expect("ENVIRONMENT section");
        let documented: Vec<&str> = section
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| w.len() > 1 && w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
            .collect();
        assert!(documented.len() >= 10, "{documented:?}");
        for name in &documented {
            assert!(
                ENV_VARS.contains(name),
                "{name} is in USAGE but not in ENV_VARS"
            );
        }
        for name in ENV_VARS.iter().filter(|n| **n != "RUST_LOG") {
            assert!(
                documented.contains(name),
                "{name} is in ENV_VARS but not in USAGE"
            );
        }
    }

    #[test]
    fn skills_fallback_and_memory_settings() {
        let mut env = base();
        env.push(("ANTHROPIC_WORK_SECRET", SECRET));
        env.push(("ANTHROPIC_ENVIRONMENT_KEY", "sk-ant-env"));
        let c = run(&[], &env).unwrap();
        assert!(
            c.skills_fallback_key.is_none(),
            "default: the key stays out"
        );
        assert_eq!(c.memory, MemoryConfig::default());

        let mut on = env.clone();
        on.push(("ALLOW_ENVIRONMENT_KEY_IN_SANDBOX", "TRUE"));
        on.push(("MEMORY_SYNC_INTERVAL_SECONDS", "7.5"));
        on.push(("MEMORY_DELETE_MODE", "log_only"));
        let c = run(&[], &on).unwrap();
        assert_eq!(c.skills_fallback_key.unwrap().expose(), "sk-ant-env");
        assert_eq!(c.memory.sync_interval, Duration::from_millis(7500));
        assert_eq!(c.memory.delete_mode, DeleteMode::LogOnly);

        for (k, v) in [
            ("ALLOW_ENVIRONMENT_KEY_IN_SANDBOX", "yes"),
            ("MEMORY_SYNC_INTERVAL_SECONDS", "4"),
            ("MEMORY_SYNC_INTERVAL_SECONDS", "soon"),
            ("MEMORY_DELETE_MODE", "sometimes"),
        ] {
            let mut bad = env.clone();
            bad.push((k, v));
            let e = run(&[], &bad).unwrap_err();
            assert!(e.0.contains(k), "{e}");
            assert!(!e.0.contains("sk-ant"), "{e}");
        }
    }

    fn cred(c: &Config) -> &Credential {
        match &c.secret {
            SecretSource::Plain(cred) => cred,
            SecretSource::Ciphertext { .. } => panic!("expected a plain secret"),
        }
    }

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        match parse(args.iter().copied(), envf(env))? {
            Command::Run(c) => Ok(*c),
            Command::Help => panic!("help"),
        }
    }

    #[test]
    fn defaults_and_token_preferred() {
        let mut e = base();
        e.push(("ANTHROPIC_WORK_SECRET", SECRET));
        e.push(("ANTHROPIC_ENVIRONMENT_KEY", "sk-ant-env"));
        let c = run(&[], &e).unwrap();
        assert_eq!(cred(&c).bearer.expose(), "sk-ant-req-EXAMPLEtoken_0123");
        assert_eq!(cred(&c).source, CredentialSource::SessionsToken);
        assert_eq!(c.workdir, PathBuf::from("/workspace"));
        assert_eq!(c.max_idle, Some(Duration::from_secs(60)));
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(
            !format!("{c:?}").contains("sk-ant"),
            "config Debug must not leak"
        );
    }

    #[test]
    fn env_key_fallback_and_unusable_secret() {
        let mut e = base();
        e.push(("ANTHROPIC_ENVIRONMENT_KEY", "sk-ant-env"));
        let c = run(&[], &e).unwrap();
        assert_eq!(
            cred(&c).source,
            CredentialSource::EnvironmentKey {
                secret_was_unusable: false
            }
        );
        e.push(("ANTHROPIC_WORK_SECRET", "not base64!!"));
        let c = run(&[], &e).unwrap();
        assert_eq!(
            cred(&c).source,
            CredentialSource::EnvironmentKey {
                secret_was_unusable: true
            }
        );
        assert!(!cred(&c).has_sessions_token);
    }

    #[test]
    fn missing_inputs_name_the_variable() {
        let e = run(&[], &[]).unwrap_err();
        assert_eq!(e.0, "ANTHROPIC_WORK_ID is not set");
        let mut e = base();
        e.push(("ANTHROPIC_SESSION_ID", ""));
        e.retain(|(k, v)| k != &"ANTHROPIC_SESSION_ID" || v.is_empty());
        assert_eq!(
            run(&[], &e).unwrap_err().0,
            "ANTHROPIC_SESSION_ID is not set",
            "empty counts as absent"
        );
        let err = run(&[], &base()).unwrap_err();
        assert!(err.0.contains("ANTHROPIC_WORK_SECRET"), "{err}");
    }

    #[test]
    fn flags() {
        let mut e = base();
        e.push(("ANTHROPIC_ENVIRONMENT_KEY", "k"));
        let c = run(
            &[
                "--workdir",
                "/tmp/w",
                "--max-idle=3s",
                "--log-format",
                "text",
            ],
            &e,
        )
        .unwrap();
        assert_eq!(
            (c.workdir.to_str(), c.max_idle, c.log_format),
            (
                Some("/tmp/w"),
                Some(Duration::from_secs(3)),
                LogFormat::Text
            )
        );
        assert_eq!(run(&["--max-idle", "0"], &e).unwrap().max_idle, None);
        assert!(
            run(&["--max-idle", "soon"], &e)
                .unwrap_err()
                .0
                .starts_with("--max-idle")
        );
        assert!(
            run(&["--log-format", "xml"], &e)
                .unwrap_err()
                .0
                .starts_with("--log-format")
        );
        assert!(
            run(&["--workdir"], &e)
                .unwrap_err()
                .0
                .starts_with("--workdir")
        );
        assert!(run(&["--bogus"], &e).unwrap_err().0.starts_with("--bogus"));
        assert!(matches!(parse(["--help"], envf(&[])), Ok(Command::Help)));
    }

    #[test]
    fn ciphertext_source_rules() {
        let mut e = base();
        e.push(("ANTHROPIC_WORK_SECRET_CIPHERTEXT", "AQICAHh-ciphertext=="));
        let c = run(&[], &e).unwrap();
        match &c.secret {
            SecretSource::Ciphertext {
                ciphertext,
                environment_key,
            } => {
                assert_eq!(ciphertext.expose(), "AQICAHh-ciphertext==");
                assert!(environment_key.is_none());
            }
            other => panic!("expected the ciphertext source, got {other:?}"),
        }
        assert!(!format!("{c:?}").contains("AQICAHh"), "Debug must not leak");

        // The environment key rides along for the fallback after decryption.
        let mut with_key = e.clone();
        with_key.push(("ANTHROPIC_ENVIRONMENT_KEY", "sk-ant-env"));
        let c = run(&[], &with_key).unwrap();
        assert!(matches!(
            &c.secret,
            SecretSource::Ciphertext { environment_key: Some(k), .. } if k.expose() == "sk-ant-env"
        ));

        // Both given: a config error naming both, before anything else.
        e.push(("ANTHROPIC_WORK_SECRET", SECRET));
        let err = run(&[], &e).unwrap_err().0;
        assert_eq!(
            err,
            "ANTHROPIC_WORK_SECRET and ANTHROPIC_WORK_SECRET_CIPHERTEXT are both set: give only one"
        );

        // Empty counts as absent.
        let mut e = base();
        e.push(("ANTHROPIC_WORK_SECRET_CIPHERTEXT", "  "));
        e.push(("ANTHROPIC_WORK_SECRET", SECRET));
        let c = run(&[], &e).unwrap();
        assert_eq!(cred(&c).source, CredentialSource::SessionsToken);
    }

    #[test]
    fn decrypted_secret_follows_the_plain_rules() {
        let key = EnvironmentKey::new("sk-ant-env");
        let c = decrypted_credential(&SecretString::new(SECRET), Some(&key)).unwrap();
        assert_eq!(c.bearer.expose(), "sk-ant-req-EXAMPLEtoken_0123");
        assert_eq!(c.source, CredentialSource::SessionsToken);
        assert!(c.has_sessions_token);

        let c = decrypted_credential(&SecretString::new("garbage"), Some(&key)).unwrap();
        assert_eq!(c.bearer.expose(), "sk-ant-env");
        assert_eq!(
            c.source,
            CredentialSource::EnvironmentKey {
                secret_was_unusable: true
            }
        );
        assert!(!c.has_sessions_token);

        let err = decrypted_credential(&SecretString::new("garbage"), None).unwrap_err();
        assert!(
            err.0.contains("ANTHROPIC_WORK_SECRET_CIPHERTEXT")
                && err.0.contains("ANTHROPIC_ENVIRONMENT_KEY"),
            "{err}"
        );
        assert!(!err.0.contains("garbage"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("x"), None);
    }
}
