//! Configuration from environment variables (fixed names; Terraform and local runs set
//! them). Parsed and validated once per execution environment; any problem is a
//! [`ConfigError`] that names the variable and never carries its value.
//!
//! Empty values count as absent (like the runner's inputs).

use std::time::Duration;

pub use crate::error::ConfigError;

/// `ANTHROPIC_ENVIRONMENT_ID` (required): the `self_hosted` environment to drain.
pub const ENVIRONMENT_ID: &str = "ANTHROPIC_ENVIRONMENT_ID";
/// `ANTHROPIC_BASE_URL` (optional): control-plane base URL override.
pub const BASE_URL: &str = "ANTHROPIC_BASE_URL";
/// The webhook signing secret (`whsec_…`) as a literal value (local runs).
pub const SIGNING_KEY: &str = "ANTHROPIC_WEBHOOK_SIGNING_KEY";
/// The webhook signing secret as a Secrets Manager secret id/ARN (deployments).
pub const SIGNING_KEY_SECRET_ARN: &str = "WEBHOOK_SIGNING_KEY_SECRET_ARN";
/// The environment key as a literal value (local runs).
pub const ENVIRONMENT_KEY: &str = "ANTHROPIC_ENVIRONMENT_KEY";
/// The environment key as a Secrets Manager secret id/ARN (deployments).
pub const ENVIRONMENT_KEY_SECRET_ARN: &str = "ENVIRONMENT_KEY_SECRET_ARN";
/// `QUEUE_URL` (required): the SQS queue the dispatcher consumes (standard or FIFO).
pub const QUEUE_URL: &str = "QUEUE_URL";
/// `WORK_SECRET_KMS_KEY_ID`: KMS key (id, ARN or alias) that encrypts each work secret.
pub const KMS_KEY_ID: &str = "WORK_SECRET_KMS_KEY_ID";
/// `MAX_CONCURRENT_SESSIONS` (optional): cap on in-flight sessions; unset = no cap.
pub const MAX_CONCURRENT_SESSIONS: &str = "MAX_CONCURRENT_SESSIONS";
/// `RECLAIM_OLDER_THAN_MS` (default 15000): `reclaim_older_than_ms` sent on every poll.
pub const RECLAIM_OLDER_THAN_MS: &str = "RECLAIM_OLDER_THAN_MS";
/// `MAX_DRAIN_ITEMS` (default 25): items handled per invocation at most.
pub const MAX_DRAIN_ITEMS: &str = "MAX_DRAIN_ITEMS";
/// `ALLOW_PLAINTEXT_WORK_SECRET` (`true`/`false`, default false): local emulation only.
pub const ALLOW_PLAINTEXT_WORK_SECRET: &str = "ALLOW_PLAINTEXT_WORK_SECRET";
/// `ECS_CLUSTER`: cluster whose running runner tasks count toward the cap.
pub const ECS_CLUSTER: &str = "ECS_CLUSTER";
/// `RUNNER_TASK_FAMILY`: task-definition family of the runner tasks.
pub const RUNNER_TASK_FAMILY: &str = "RUNNER_TASK_FAMILY";

/// Every environment variable the webhook and sweep functions read (the AWS SDK's and
/// the Lambda runtime's own variables such as `AWS_REGION`, `AWS_LAMBDA_LOG_LEVEL` or
/// `RUST_LOG` excepted). `functions/webhook/env-vars.txt` lists the same names, one per
/// line; a unit test keeps the two equal, and the Terraform tests compare against it.
pub const ENV_VARS: &[&str] = &[
    ENVIRONMENT_ID,
    BASE_URL,
    SIGNING_KEY,
    SIGNING_KEY_SECRET_ARN,
    ENVIRONMENT_KEY,
    ENVIRONMENT_KEY_SECRET_ARN,
    QUEUE_URL,
    KMS_KEY_ID,
    MAX_CONCURRENT_SESSIONS,
    RECLAIM_OLDER_THAN_MS,
    MAX_DRAIN_ITEMS,
    ALLOW_PLAINTEXT_WORK_SECRET,
    ECS_CLUSTER,
    RUNNER_TASK_FAMILY,
];

pub const DEFAULT_RECLAIM_OLDER_THAN_MS: u64 = 15_000;
pub const DEFAULT_MAX_DRAIN_ITEMS: u32 = 25;
/// How long a fetched secret is reused before it is fetched again.
pub const SECRET_CACHE_TTL: Duration = Duration::from_secs(300);

/// Which function is being configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The Function URL handler: needs the signing secret.
    Webhook,
    /// The scheduled sweep: never reads the signing secret (IAM authenticates it).
    Sweep,
}

impl Mode {
    /// `webhook` / `sweep` (metric dimension, log field).
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Webhook => "webhook",
            Mode::Sweep => "sweep",
        }
    }
}

/// Where a secret comes from. Holds the literal value only for [`SecretSpec::Literal`];
/// `Debug` never prints it.
#[derive(Clone)]
pub enum SecretSpec {
    /// Value given directly in the named variable.
    Literal {
        variable: &'static str,
        value: cma_shared::SecretString,
    },
    /// Secrets Manager secret id/ARN given in the named variable.
    SecretsManager {
        variable: &'static str,
        secret_id: String,
    },
}

impl std::fmt::Debug for SecretSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSpec::Literal { variable, .. } => write!(f, "Literal({variable}, [redacted])"),
            SecretSpec::SecretsManager {
                variable,
                secret_id,
            } => write!(f, "SecretsManager({variable}, {secret_id})"),
        }
    }
}

impl SecretSpec {
    pub fn variable(&self) -> &'static str {
        match self {
            SecretSpec::Literal { variable, .. } | SecretSpec::SecretsManager { variable, .. } => {
                variable
            }
        }
    }
}

/// How the work secret leaves the Lambda.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealMode {
    /// KMS `Encrypt` with this key id/ARN/alias.
    Kms { key_id: String },
    /// Plaintext in the message (no KMS key configured and
    /// `ALLOW_PLAINTEXT_WORK_SECRET=true`; local emulation only).
    Plaintext,
}

/// Capacity check settings (present only when `MAX_CONCURRENT_SESSIONS` is set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityConfig {
    pub max_concurrent_sessions: u64,
    pub ecs_cluster: String,
    pub runner_task_family: String,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub environment_id: String,
    pub base_url: Option<String>,
    /// `None` in [`Mode::Sweep`].
    pub signing_key: Option<SecretSpec>,
    pub environment_key: SecretSpec,
    pub queue_url: String,
    pub seal: SealMode,
    pub capacity: Option<CapacityConfig>,
    pub reclaim_older_than_ms: u64,
    pub max_drain_items: u32,
}

impl Config {
    /// Read the configuration from the process environment.
    pub fn from_env(mode: Mode) -> Result<Config, ConfigError> {
        Self::from_lookup(mode, |name| std::env::var(name).ok())
    }

    /// Read the configuration through `lookup` (tests pass a map).
    pub fn from_lookup(
        mode: Mode,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let get = |name: &'static str| -> Option<String> {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let environment_id = get(ENVIRONMENT_ID).ok_or(ConfigError::Missing(ENVIRONMENT_ID))?;
        if !is_plain_id(&environment_id) {
            return Err(ConfigError::Invalid {
                variable: ENVIRONMENT_ID,
                reason: "must be an environment id such as env_… (no whitespace or slashes)",
            });
        }

        let base_url = get(BASE_URL);
        if let Some(u) = &base_url
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            return Err(ConfigError::Invalid {
                variable: BASE_URL,
                reason: "must start with https:// (or http:// for a local fake)",
            });
        }

        let signing_key = match mode {
            Mode::Webhook => Some(secret_spec(&get, SIGNING_KEY, SIGNING_KEY_SECRET_ARN)?),
            Mode::Sweep => None,
        };
        if let Some(SecretSpec::Literal { variable, value }) = &signing_key {
            validate_signing_key(variable, value)?;
        }
        let environment_key = secret_spec(&get, ENVIRONMENT_KEY, ENVIRONMENT_KEY_SECRET_ARN)?;

        let queue_url = get(QUEUE_URL).ok_or(ConfigError::Missing(QUEUE_URL))?;
        if !(queue_url.starts_with("https://") || queue_url.starts_with("http://")) {
            return Err(ConfigError::Invalid {
                variable: QUEUE_URL,
                reason: "must be an SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>)",
            });
        }

        let allow_plaintext = match get(ALLOW_PLAINTEXT_WORK_SECRET) {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(_) => {
                return Err(ConfigError::Invalid {
                    variable: ALLOW_PLAINTEXT_WORK_SECRET,
                    reason: "must be `true` or `false`",
                });
            }
        };
        let seal = match get(KMS_KEY_ID) {
            Some(key_id) => SealMode::Kms { key_id },
            None if allow_plaintext => SealMode::Plaintext,
            None => return Err(ConfigError::Missing(KMS_KEY_ID)),
        };

        let capacity = match get(MAX_CONCURRENT_SESSIONS) {
            None => None,
            Some(v) => {
                let max = parse_int(MAX_CONCURRENT_SESSIONS, &v, 1, 1_000_000)?;
                Some(CapacityConfig {
                    max_concurrent_sessions: max,
                    ecs_cluster: get(ECS_CLUSTER).ok_or(ConfigError::Missing(ECS_CLUSTER))?,
                    runner_task_family: get(RUNNER_TASK_FAMILY)
                        .ok_or(ConfigError::Missing(RUNNER_TASK_FAMILY))?,
                })
            }
        };

        let reclaim_older_than_ms = match get(RECLAIM_OLDER_THAN_MS) {
            None => DEFAULT_RECLAIM_OLDER_THAN_MS,
            Some(v) => parse_int(RECLAIM_OLDER_THAN_MS, &v, 1, 3_600_000)?,
        };
        let max_drain_items = match get(MAX_DRAIN_ITEMS) {
            None => DEFAULT_MAX_DRAIN_ITEMS,
            Some(v) => parse_int(MAX_DRAIN_ITEMS, &v, 1, 1000)? as u32,
        };

        Ok(Config {
            mode,
            environment_id,
            base_url,
            signing_key,
            environment_key,
            queue_url,
            seal,
            capacity,
            reclaim_older_than_ms,
            max_drain_items,
        })
    }
}

/// Ids are opaque, but a value with whitespace or a slash is certainly a paste error.
fn is_plain_id(s: &str) -> bool {
    !s.chars()
        .any(|c| c.is_whitespace() || c == '/' || c.is_control())
}

fn parse_int(variable: &'static str, raw: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    match raw.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ConfigError::Invalid {
            variable,
            reason: "must be a positive integer in the documented range",
        }),
    }
}

/// Exactly one of the literal variable and the Secrets Manager variable.
fn secret_spec(
    get: &impl Fn(&'static str) -> Option<String>,
    literal: &'static str,
    arn: &'static str,
) -> Result<SecretSpec, ConfigError> {
    match (get(literal), get(arn)) {
        (Some(_), Some(_)) => Err(ConfigError::Conflict(literal, arn)),
        (Some(value), None) => Ok(SecretSpec::Literal {
            variable: literal,
            value: cma_shared::SecretString::new(value),
        }),
        (None, Some(secret_id)) => Ok(SecretSpec::SecretsManager {
            variable: arn,
            secret_id,
        }),
        (None, None) => Err(ConfigError::MissingOneOf(literal, arn)),
    }
}

/// The signing secret must be `whsec_` + base64 of a non-empty key.
pub fn validate_signing_key(
    variable: &'static str,
    value: &cma_shared::SecretString,
) -> Result<cma_shared::webhook::WebhookVerifier, ConfigError> {
    cma_shared::webhook::WebhookVerifier::new(&cma_shared::WebhookSecret::new(value.expose()))
        .map_err(|e| ConfigError::Invalid {
            variable,
            reason: match e {
                cma_shared::webhook::WebhookConfigError::MissingPrefix => {
                    "must start with `whsec_` (copy it from the Claude Console webhook settings)"
                }
                cma_shared::webhook::WebhookConfigError::InvalidBase64 => {
                    "is not valid base64 after the `whsec_` prefix"
                }
                cma_shared::webhook::WebhookConfigError::EmptyKey => "decodes to an empty key",
            },
        })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const KEY: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn base() -> HashMap<&'static str, String> {
        HashMap::from([
            (ENVIRONMENT_ID, "env_1".to_string()),
            (SIGNING_KEY, KEY.to_string()),
            (ENVIRONMENT_KEY, "sk-ant-env-x".to_string()),
            (
                QUEUE_URL,
                "https://sqs.us-east-1.amazonaws.com/1/q".to_string(),
            ),
            (KMS_KEY_ID, "alias/cma".to_string()),
        ])
    }

    fn parse(mode: Mode, m: &HashMap<&'static str, String>) -> Result<Config, ConfigError> {
        Config::from_lookup(mode, |k| m.get(k).cloned())
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
    fn defaults() {
        let c = parse(Mode::Webhook, &base()).unwrap();
        assert_eq!(c.reclaim_older_than_ms, 15_000);
        assert_eq!(c.max_drain_items, 25);
        assert_eq!(c.capacity, None);
        assert_eq!(
            c.seal,
            SealMode::Kms {
                key_id: "alias/cma".into()
            }
        );
        assert!(matches!(
            c.signing_key,
            Some(SecretSpec::Literal {
                variable: SIGNING_KEY,
                ..
            })
        ));
    }

    /// Variable changes (`None` = unset) and the variable the error must name.
    type Case = (Vec<(&'static str, Option<&'static str>)>, &'static str);

    #[test]
    fn each_problem_names_its_variable_and_never_the_value() {
        let cases: Vec<Case> = vec![
            (vec![(ENVIRONMENT_ID, None)], ENVIRONMENT_ID),
            (vec![(ENVIRONMENT_ID, Some("  "))], ENVIRONMENT_ID),
            (vec![(ENVIRONMENT_ID, Some("env 1"))], ENVIRONMENT_ID),
            (vec![(SIGNING_KEY, None)], SIGNING_KEY),
            (
                vec![(
                    SIGNING_KEY,
                    Some("whsk_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
                )],
                SIGNING_KEY,
            ),
            (vec![(SIGNING_KEY, Some("whsec_!!!!"))], SIGNING_KEY),
            (
                vec![(SIGNING_KEY_SECRET_ARN, Some("arn:aws:secretsmanager:x"))],
                SIGNING_KEY,
            ),
            (vec![(ENVIRONMENT_KEY, None)], ENVIRONMENT_KEY),
            (vec![(QUEUE_URL, None)], QUEUE_URL),
            (vec![(QUEUE_URL, Some("my-queue"))], QUEUE_URL),
            (vec![(KMS_KEY_ID, None)], KMS_KEY_ID),
            (
                vec![
                    (KMS_KEY_ID, None),
                    (ALLOW_PLAINTEXT_WORK_SECRET, Some("false")),
                ],
                KMS_KEY_ID,
            ),
            (
                vec![(ALLOW_PLAINTEXT_WORK_SECRET, Some("yes"))],
                ALLOW_PLAINTEXT_WORK_SECRET,
            ),
            (
                vec![(MAX_CONCURRENT_SESSIONS, Some("0"))],
                MAX_CONCURRENT_SESSIONS,
            ),
            (vec![(MAX_CONCURRENT_SESSIONS, Some("5"))], ECS_CLUSTER),
            (
                vec![
                    (MAX_CONCURRENT_SESSIONS, Some("5")),
                    (ECS_CLUSTER, Some("c")),
                ],
                RUNNER_TASK_FAMILY,
            ),
            (
                vec![(RECLAIM_OLDER_THAN_MS, Some("-1"))],
                RECLAIM_OLDER_THAN_MS,
            ),
            (vec![(MAX_DRAIN_ITEMS, Some("many"))], MAX_DRAIN_ITEMS),
            (vec![(BASE_URL, Some("api.anthropic.com"))], BASE_URL),
        ];
        for (changes, variable) in cases {
            let mut m = base();
            let mut values = Vec::new();
            for (k, v) in &changes {
                match v {
                    Some(v) => {
                        m.insert(k, v.to_string());
                        values.push(v.to_string());
                    }
                    None => {
                        m.remove(k);
                    }
                }
            }
            let e = parse(Mode::Webhook, &m).expect_err(variable);
            assert_eq!(e.variable(), variable, "{changes:?}");
            let text = e.to_string();
            assert!(text.contains(variable), "{text}");
            for v in values.iter().filter(|v| v.trim().len() > 2) {
                assert!(!text.contains(v.as_str()), "value leaked: {text}");
            }
        }
    }

    #[test]
    fn sweep_needs_no_signing_key_and_plaintext_needs_the_flag() {
        let mut m = base();
        m.remove(SIGNING_KEY);
        m.remove(KMS_KEY_ID);
        m.insert(ALLOW_PLAINTEXT_WORK_SECRET, "TRUE".into());
        let c = parse(Mode::Sweep, &m).unwrap();
        assert!(c.signing_key.is_none());
        assert_eq!(c.seal, SealMode::Plaintext);
        assert!(parse(Mode::Webhook, &m).is_err());
    }

    #[test]
    fn capacity_and_secrets_manager() {
        let mut m = base();
        m.remove(ENVIRONMENT_KEY);
        m.insert(ENVIRONMENT_KEY_SECRET_ARN, "arn:env".into());
        m.insert(MAX_CONCURRENT_SESSIONS, "10".into());
        m.insert(ECS_CLUSTER, "cma".into());
        m.insert(RUNNER_TASK_FAMILY, "cma-runner".into());
        m.insert(RECLAIM_OLDER_THAN_MS, "20000".into());
        m.insert(MAX_DRAIN_ITEMS, "5".into());
        let c = parse(Mode::Webhook, &m).unwrap();
        assert_eq!(
            c.capacity,
            Some(CapacityConfig {
                max_concurrent_sessions: 10,
                ecs_cluster: "cma".into(),
                runner_task_family: "cma-runner".into()
            })
        );
        assert!(matches!(
            c.environment_key,
            SecretSpec::SecretsManager { variable: ENVIRONMENT_KEY_SECRET_ARN, ref secret_id } if secret_id == "arn:env"
        ));
        assert_eq!((c.reclaim_older_than_ms, c.max_drain_items), (20_000, 5));
        assert!(!format!("{c:?}").contains(KEY));
    }
}
