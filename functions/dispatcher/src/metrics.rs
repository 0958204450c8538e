//! One CloudWatch embedded-metric-format line per invocation (formatted by
//! [`cma_shared::emf`]): namespace `CmaSelfHosted`, dimension `Function = dispatcher`.
//! Every count is emitted on every invocation (zeros included, so alarms never sit in
//! INSUFFICIENT_DATA); `LaunchLatencyMs` carries one value per launch call and is left
//! out when there was none.
//!
//! | metric | meaning |
//! |---|---|
//! | `Messages` | SQS records in the batch |
//! | `Launched` | runners started (`RunTask` started a task) |
//! | `AlreadyRunning` | redeliveries whose runner was already running; nothing started |
//! | `Retried` | retryable launch failures (throttling, capacity, 5xx, timeouts): item failure with a longer visibility timeout |
//! | `Failed` | permanent launch failures (invalid parameters, access denied, missing task definition, plaintext secret): item failure, error log |
//! | `Stale` | messages whose claim was older than `STALE_CLAIM_AFTER_SECONDS`: deleted, warning |
//! | `Malformed` | bodies that are not schema-v1 work messages: item failure (DLQ), error log |
//! | `Dropped` | failing messages deleted by the receive-count guard (`MAX_RECEIVE_COUNT`) |
//! | `VisibilityErrors` | `ChangeMessageVisibility` calls that failed (the queue's default timeout applies) |
//! | `LaunchLatencyMs` | wall time of each launch call (`ListTasks` + `RunTask`), Milliseconds |

use cma_shared::emf::{self, Metric};

use crate::ports::MetricsSink;

/// The `Function` dimension.
pub const FUNCTION: &str = "dispatcher";

/// Counters of one invocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub messages: u64,
    pub launched: u64,
    pub already_running: u64,
    pub retried: u64,
    pub failed: u64,
    pub stale: u64,
    pub malformed: u64,
    pub dropped: u64,
    pub visibility_errors: u64,
    pub launch_latency_ms: Vec<u64>,
}

impl Counters {
    /// The EMF JSON line. At most 100 latency values go on one line (an EMF limit; a
    /// batch holds at most 10 messages).
    pub fn to_emf(&self, timestamp_ms: u64) -> String {
        let latencies = &self.launch_latency_ms[..self.launch_latency_ms.len().min(100)];
        let metrics = [
            Metric::count("Messages", self.messages),
            Metric::count("Launched", self.launched),
            Metric::count("AlreadyRunning", self.already_running),
            Metric::count("Retried", self.retried),
            Metric::count("Failed", self.failed),
            Metric::count("Stale", self.stale),
            Metric::count("Malformed", self.malformed),
            Metric::count("Dropped", self.dropped),
            Metric::count("VisibilityErrors", self.visibility_errors),
            Metric::millis_many("LaunchLatencyMs", latencies),
        ];
        emf::line(
            emf::NAMESPACE,
            &[("Function", FUNCTION)],
            &metrics,
            timestamp_ms,
        )
    }
}

/// Writes EMF lines to stdout (CloudWatch Logs extracts the metrics).
#[derive(Debug, Default, Clone, Copy)]
pub struct StdoutMetrics;

impl MetricsSink for StdoutMetrics {
    fn emit(&self, line: &str) {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_line_has_every_count_and_the_latencies() {
        let c = Counters {
            messages: 3,
            launched: 2,
            stale: 1,
            launch_latency_ms: vec![120, 80],
            ..Counters::default()
        };
        let v: serde_json::Value = serde_json::from_str(&c.to_emf(1_700_000_000_000)).unwrap();
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "CmaSelfHosted"
        );
        assert_eq!(v["Function"], "dispatcher");
        assert_eq!(v["Launched"], 2);
        assert_eq!(v["Retried"], 0);
        assert_eq!(v["LaunchLatencyMs"], serde_json::json!([120, 80]));
        let defs = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap();
        assert_eq!(defs.len(), 10);
        let empty = Counters::default().to_emf(1);
        let v: serde_json::Value = serde_json::from_str(&empty).unwrap();
        assert!(v.get("LaunchLatencyMs").is_none());
        assert_eq!(v["Messages"], 0);
    }
}
