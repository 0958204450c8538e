//! Stable worker id sent as `Anthropic-Worker-ID` on poll (spec §5.1).
//!
//! Format `<prefix>-<12 lowercase hex>`, like the Python SDK's `<hostname>-<12 hex>`.
//! The prefix is the Lambda function name when running in Lambda, else the host
//! name. The id is computed once per process (one Lambda execution environment =
//! one worker), so `stats.workers_polling` counts execution environments.

use std::sync::OnceLock;

/// The process-wide worker id.
pub fn worker_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| make_worker_id(&default_prefix()))
}

/// Build `<prefix>-<12 hex>` from a sanitised prefix (ASCII alphanumerics, `-`,
/// `_`, `.`; at most 48 chars; `worker` if nothing is left).
pub fn make_worker_id(prefix: &str) -> String {
    let mut clean: String = prefix
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(48)
        .collect();
    if clean.is_empty() {
        clean = "worker".into();
    }
    let hex = uuid::Uuid::new_v4().simple().to_string();
    format!("{clean}-{}", &hex[..12])
}

fn default_prefix() -> String {
    for var in ["AWS_LAMBDA_FUNCTION_NAME", "HOSTNAME"] {
        if let Ok(v) = std::env::var(var)
            && !v.trim().is_empty()
        {
            return v;
        }
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_and_stability() {
        let a = worker_id();
        assert_eq!(a, worker_id(), "stable within a process");
        let id = make_worker_id("my host!");
        let (prefix, hex) = id.rsplit_once('-').unwrap();
        assert_eq!(prefix, "myhost");
        assert_eq!(hex.len(), 12);
        assert!(
            hex.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert!(make_worker_id("").starts_with("worker-"));
        assert_ne!(make_worker_id("h"), make_worker_id("h"));
    }
}
