//! Configuration from environment variables (fixed names; Terraform sets them, and
//! `events/local.env.example` for local runs). Parsed and validated once per execution
//! environment; any problem is a [`ConfigError`] that names the variable and never
//! carries its value. Empty values count as absent.

use std::time::Duration;

pub use crate::error::ConfigError;
use crate::fargate::{CapacityProviderItem, FargateConfig, Placement};

/// `ECS_CLUSTER` (required): cluster name or ARN the runner tasks start in.
pub const ECS_CLUSTER: &str = "ECS_CLUSTER";
/// `RUNNER_TASK_DEFINITION` (required): task-definition family, `family:revision` or ARN.
pub const RUNNER_TASK_DEFINITION: &str = "RUNNER_TASK_DEFINITION";
/// `RUNNER_CONTAINER_NAME` (default `runner`): the container that gets the overrides.
pub const RUNNER_CONTAINER_NAME: &str = "RUNNER_CONTAINER_NAME";
/// `SUBNETS` (required): comma-separated subnet ids (1–16) for `awsvpc`.
pub const SUBNETS: &str = "SUBNETS";
/// `SECURITY_GROUPS` (required): comma-separated security-group ids (1–5).
pub const SECURITY_GROUPS: &str = "SECURITY_GROUPS";
/// `ASSIGN_PUBLIC_IP` (`true`/`false`, default `false`).
pub const ASSIGN_PUBLIC_IP: &str = "ASSIGN_PUBLIC_IP";
/// `CAPACITY_PROVIDER_STRATEGY` (optional): `NAME:WEIGHT[:BASE],...`, e.g.
/// `FARGATE_SPOT:1,FARGATE:0`; empty = `launchType FARGATE`.
pub const CAPACITY_PROVIDER_STRATEGY: &str = "CAPACITY_PROVIDER_STRATEGY";
/// `ANTHROPIC_BASE_URL` (optional): passed to the runner.
pub const BASE_URL: &str = "ANTHROPIC_BASE_URL";
/// `QUEUE_URL` (required): the queue the batches come from (`ChangeMessageVisibility`).
pub const QUEUE_URL: &str = "QUEUE_URL";
/// `STALE_CLAIM_AFTER_SECONDS` (default 600, 1..=86400).
pub const STALE_CLAIM_AFTER_SECONDS: &str = "STALE_CLAIM_AFTER_SECONDS";
/// `MAX_RECEIVE_COUNT` (default 10, 2..=1000): the receive-count guard.
pub const MAX_RECEIVE_COUNT: &str = "MAX_RECEIVE_COUNT";

/// Every environment variable the dispatcher reads (the AWS SDK's and the Lambda
/// runtime's own variables such as `AWS_REGION`, `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`
/// excepted). `functions/dispatcher/env-vars.txt` lists the same names, one per line;
/// a unit test keeps the two equal, and the Terraform tests compare against it.
pub const ENV_VARS: &[&str] = &[
    ECS_CLUSTER,
    RUNNER_TASK_DEFINITION,
    RUNNER_CONTAINER_NAME,
    SUBNETS,
    SECURITY_GROUPS,
    ASSIGN_PUBLIC_IP,
    CAPACITY_PROVIDER_STRATEGY,
    BASE_URL,
    QUEUE_URL,
    STALE_CLAIM_AFTER_SECONDS,
    MAX_RECEIVE_COUNT,
];

pub const DEFAULT_CONTAINER_NAME: &str = "runner";
pub const DEFAULT_STALE_CLAIM_AFTER: Duration = Duration::from_secs(600);
pub const DEFAULT_MAX_RECEIVE_COUNT: u32 = 10;

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub fargate: FargateConfig,
    pub base_url: Option<String>,
    pub queue_url: String,
    pub stale_claim_after: Duration,
    pub max_receive_count: u32,
}

fn invalid(variable: &'static str, reason: &'static str) -> ConfigError {
    ConfigError::Invalid { variable, reason }
}

fn list(
    variable: &'static str,
    value: &str,
    prefix: &str,
    max: usize,
    reason: &'static str,
) -> Result<Vec<String>, ConfigError> {
    let items: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if items.is_empty() || items.len() > max {
        return Err(invalid(variable, reason));
    }
    if items.iter().any(|s| {
        !s.starts_with(prefix)
            || s.len() <= prefix.len()
            || !s[prefix.len()..].chars().all(|c| c.is_ascii_alphanumeric())
    }) {
        return Err(invalid(variable, reason));
    }
    Ok(items)
}

fn plain_name(v: &str) -> bool {
    !v.is_empty()
        && !v
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ',')
}

/// Parse `NAME:WEIGHT[:BASE],...`.
pub fn parse_capacity_provider_strategy(v: &str) -> Result<Placement, &'static str> {
    const FORMAT: &str = "must be NAME:WEIGHT[:BASE] entries separated by commas (e.g. FARGATE_SPOT:1,FARGATE:0), \
         weight 0..=1000 with at least one above 0, base 0..=100000 on at most one entry, at most 20 entries";
    let mut items = Vec::new();
    for entry in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let parts: Vec<&str> = entry.split(':').map(str::trim).collect();
        let (name, weight, base) = match parts.as_slice() {
            [n, w] => (*n, *w, "0"),
            [n, w, b] => (*n, *w, *b),
            _ => return Err(FORMAT),
        };
        if name.is_empty()
            || name.len() > 255
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(FORMAT);
        }
        let weight: i32 = weight.parse().map_err(|_| FORMAT)?;
        let base: i32 = base.parse().map_err(|_| FORMAT)?;
        if !(0..=1000).contains(&weight) || !(0..=100_000).contains(&base) {
            return Err(FORMAT);
        }
        items.push(CapacityProviderItem {
            name: name.to_owned(),
            weight,
            base,
        });
    }
    if items.is_empty()
        || items.len() > 20
        || items.iter().all(|i| i.weight == 0)
        || items.iter().filter(|i| i.base > 0).count() > 1
    {
        return Err(FORMAT);
    }
    Ok(Placement::CapacityProviders(items))
}

fn parse_int(
    variable: &'static str,
    v: &str,
    min: u64,
    max: u64,
    reason: &'static str,
) -> Result<u64, ConfigError> {
    match v.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(invalid(variable, reason)),
    }
}

impl Config {
    /// Read the configuration from the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Read the configuration through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &'static str| -> Option<String> {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let cluster = get(ECS_CLUSTER).ok_or(ConfigError::Missing(ECS_CLUSTER))?;
        if !plain_name(&cluster) {
            return Err(invalid(ECS_CLUSTER, "must be a cluster name or ARN"));
        }
        let task_definition =
            get(RUNNER_TASK_DEFINITION).ok_or(ConfigError::Missing(RUNNER_TASK_DEFINITION))?;
        if !plain_name(&task_definition) {
            return Err(invalid(
                RUNNER_TASK_DEFINITION,
                "must be a task-definition family, family:revision or ARN",
            ));
        }
        let container_name =
            get(RUNNER_CONTAINER_NAME).unwrap_or_else(|| DEFAULT_CONTAINER_NAME.to_owned());
        if !plain_name(&container_name) || container_name.len() > 255 {
            return Err(invalid(
                RUNNER_CONTAINER_NAME,
                "must be the runner's container name in the task definition",
            ));
        }
        let subnets = list(
            SUBNETS,
            &get(SUBNETS).ok_or(ConfigError::Missing(SUBNETS))?,
            "subnet-",
            16,
            "must be 1 to 16 comma-separated subnet ids (subnet-…)",
        )?;
        let security_groups = list(
            SECURITY_GROUPS,
            &get(SECURITY_GROUPS).ok_or(ConfigError::Missing(SECURITY_GROUPS))?,
            "sg-",
            5,
            "must be 1 to 5 comma-separated security-group ids (sg-…)",
        )?;
        let assign_public_ip = match get(ASSIGN_PUBLIC_IP) {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(_) => return Err(invalid(ASSIGN_PUBLIC_IP, "must be `true` or `false`")),
        };
        let placement = match get(CAPACITY_PROVIDER_STRATEGY) {
            None => Placement::LaunchTypeFargate,
            Some(v) => parse_capacity_provider_strategy(&v)
                .map_err(|reason| invalid(CAPACITY_PROVIDER_STRATEGY, reason))?,
        };
        let base_url = get(BASE_URL);
        if let Some(u) = &base_url
            && (!(u.starts_with("https://") || u.starts_with("http://"))
                || u.chars().any(|c| c.is_whitespace()))
        {
            return Err(invalid(
                BASE_URL,
                "must start with https:// (or http:// for a local fake)",
            ));
        }
        let queue_url = get(QUEUE_URL).ok_or(ConfigError::Missing(QUEUE_URL))?;
        if !(queue_url.starts_with("https://") || queue_url.starts_with("http://")) {
            return Err(invalid(
                QUEUE_URL,
                "must be an SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>)",
            ));
        }
        let stale_claim_after = match get(STALE_CLAIM_AFTER_SECONDS) {
            None => DEFAULT_STALE_CLAIM_AFTER,
            Some(v) => Duration::from_secs(parse_int(
                STALE_CLAIM_AFTER_SECONDS,
                &v,
                1,
                86_400,
                "must be whole seconds in 1..=86400",
            )?),
        };
        let max_receive_count = match get(MAX_RECEIVE_COUNT) {
            None => DEFAULT_MAX_RECEIVE_COUNT,
            Some(v) => parse_int(
                MAX_RECEIVE_COUNT,
                &v,
                2,
                1000,
                "must be an integer in 2..=1000",
            )? as u32,
        };
        Ok(Config {
            fargate: FargateConfig {
                cluster,
                task_definition,
                container_name,
                subnets,
                security_groups,
                assign_public_ip,
                placement,
            },
            base_url,
            queue_url,
            stale_claim_after,
            max_receive_count,
        })
    }

    /// The batch handler's settings.
    pub fn settings(&self) -> crate::dispatch::Settings {
        crate::dispatch::Settings {
            base_url: self.base_url.clone(),
            stale_claim_after: self.stale_claim_after,
            max_receive_count: self.max_receive_count,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn base() -> HashMap<&'static str, String> {
        HashMap::from([
            (ECS_CLUSTER, "cma".to_string()),
            (RUNNER_TASK_DEFINITION, "cma-runner".to_string()),
            (SUBNETS, "subnet-0a1b2c, subnet-3d4e5f".to_string()),
            (SECURITY_GROUPS, "sg-123abc".to_string()),
            (
                QUEUE_URL,
                "https://sqs.us-east-1.amazonaws.com/1/cma-dispatch".to_string(),
            ),
        ])
    }

    fn parse(m: &HashMap<&'static str, String>) -> Result<Config, ConfigError> {
        Config::from_lookup(|k| m.get(k).cloned())
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
        let c = parse(&base()).unwrap();
        assert_eq!(c.fargate.container_name, "runner");
        assert_eq!(c.fargate.subnets, vec!["subnet-0a1b2c", "subnet-3d4e5f"]);
        assert_eq!(c.fargate.security_groups, vec!["sg-123abc"]);
        assert!(!c.fargate.assign_public_ip);
        assert_eq!(c.fargate.placement, Placement::LaunchTypeFargate);
        assert_eq!(c.base_url, None);
        assert_eq!(c.stale_claim_after, Duration::from_secs(600));
        assert_eq!(c.max_receive_count, 10);
    }

    #[test]
    fn everything_set() {
        let mut m = base();
        m.insert(RUNNER_CONTAINER_NAME, "agent".into());
        m.insert(ASSIGN_PUBLIC_IP, "TRUE".into());
        m.insert(
            CAPACITY_PROVIDER_STRATEGY,
            "FARGATE_SPOT:1, FARGATE:0:1".into(),
        );
        m.insert(BASE_URL, "https://api.anthropic.com".into());
        m.insert(STALE_CLAIM_AFTER_SECONDS, "900".into());
        m.insert(MAX_RECEIVE_COUNT, "25".into());
        let c = parse(&m).unwrap();
        assert_eq!(c.fargate.container_name, "agent");
        assert!(c.fargate.assign_public_ip);
        assert_eq!(
            c.fargate.placement,
            Placement::CapacityProviders(vec![
                CapacityProviderItem {
                    name: "FARGATE_SPOT".into(),
                    weight: 1,
                    base: 0
                },
                CapacityProviderItem {
                    name: "FARGATE".into(),
                    weight: 0,
                    base: 1
                },
            ])
        );
        assert_eq!(c.base_url.as_deref(), Some("https://api.anthropic.com"));
        assert_eq!(c.stale_claim_after, Duration::from_secs(900));
        assert_eq!(c.max_receive_count, 25);
        m.insert(CAPACITY_PROVIDER_STRATEGY, "  ".into());
        assert_eq!(
            parse(&m).unwrap().fargate.placement,
            Placement::LaunchTypeFargate
        );
    }

    /// Variable changes (`None` = unset) and the variable the error must name.
    type Case = (Vec<(&'static str, Option<&'static str>)>, &'static str);

    #[test]
    fn each_problem_names_its_variable_and_never_the_value() {
        let cases: Vec<Case> = vec![
            (vec![(ECS_CLUSTER, None)], ECS_CLUSTER),
            (vec![(ECS_CLUSTER, Some("my cluster"))], ECS_CLUSTER),
            (vec![(RUNNER_TASK_DEFINITION, None)], RUNNER_TASK_DEFINITION),
            (
                vec![(RUNNER_TASK_DEFINITION, Some("a b"))],
                RUNNER_TASK_DEFINITION,
            ),
            (
                vec![(RUNNER_CONTAINER_NAME, Some("run ner"))],
                RUNNER_CONTAINER_NAME,
            ),
            (vec![(SUBNETS, None)], SUBNETS),
            (vec![(SUBNETS, Some(" , "))], SUBNETS),
            (vec![(SUBNETS, Some("subnet-1,vpc-2"))], SUBNETS),
            (vec![(SUBNETS, Some("subnet-x_y"))], SUBNETS),
            (
                vec![(
                    SUBNETS,
                    Some(
                        "subnet-1,subnet-2,subnet-3,subnet-4,subnet-5,subnet-6,subnet-7,subnet-8,subnet-9,subnet-10,subnet-11,subnet-12,subnet-13,subnet-14,subnet-15,subnet-16,subnet-17",
                    ),
                )],
                SUBNETS,
            ),
            (vec![(SECURITY_GROUPS, None)], SECURITY_GROUPS),
            (vec![(SECURITY_GROUPS, Some("default"))], SECURITY_GROUPS),
            (vec![(ASSIGN_PUBLIC_IP, Some("yes"))], ASSIGN_PUBLIC_IP),
            (
                vec![(CAPACITY_PROVIDER_STRATEGY, Some("SPOTONLY"))],
                CAPACITY_PROVIDER_STRATEGY,
            ),
            (
                vec![(CAPACITY_PROVIDER_STRATEGY, Some("FARGATE:00"))],
                CAPACITY_PROVIDER_STRATEGY,
            ),
            (
                vec![(CAPACITY_PROVIDER_STRATEGY, Some("FARGATE:1001"))],
                CAPACITY_PROVIDER_STRATEGY,
            ),
            (
                vec![(
                    CAPACITY_PROVIDER_STRATEGY,
                    Some("FARGATE:1:1,FARGATE_SPOT:1:1"),
                )],
                CAPACITY_PROVIDER_STRATEGY,
            ),
            (
                vec![(CAPACITY_PROVIDER_STRATEGY, Some("FAR GATE:1"))],
                CAPACITY_PROVIDER_STRATEGY,
            ),
            (vec![(BASE_URL, Some("api.anthropic.com"))], BASE_URL),
            (vec![(QUEUE_URL, None)], QUEUE_URL),
            (vec![(QUEUE_URL, Some("cma-dispatch"))], QUEUE_URL),
            (
                vec![(STALE_CLAIM_AFTER_SECONDS, Some("0"))],
                STALE_CLAIM_AFTER_SECONDS,
            ),
            (
                vec![(STALE_CLAIM_AFTER_SECONDS, Some("ten"))],
                STALE_CLAIM_AFTER_SECONDS,
            ),
            (vec![(MAX_RECEIVE_COUNT, Some("1"))], MAX_RECEIVE_COUNT),
            (vec![(MAX_RECEIVE_COUNT, Some("-5"))], MAX_RECEIVE_COUNT),
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
            let e = parse(&m).expect_err(variable);
            assert_eq!(e.variable(), variable, "{changes:?}");
            let text = e.to_string();
            assert!(text.contains(variable), "{text}");
            for v in values.iter().filter(|v| v.trim().len() > 2) {
                assert!(!text.contains(v.as_str()), "value leaked: {text}");
            }
        }
    }
}
