//! One CloudWatch embedded-metric-format (EMF) line per invocation.
//!
//! Namespace [`NAMESPACE`], one dimension `Function` (`webhook` or `sweep`). Every
//! metric in [`Counters`] is emitted on every invocation (zeros included, so alarms
//! never sit in INSUFFICIENT_DATA). Names (all `Count` except `DrainDurationMs`):
//!
//! | metric | meaning |
//! |---|---|
//! | `DeliveriesRejected` | signature verification failed (401) |
//! | `DeliveriesIgnored` | verified, but `data.type` is not a trigger (200, no drain) |
//! | `DuplicateDeliveries` | `webhook-id` seen recently on this instance (200, no drain) |
//! | `Drains` | drains attempted |
//! | `ItemsEnqueued` | items acked and sent to SQS |
//! | `ItemsForceStopped` | non-session (or secret-less) items acked and force-stopped |
//! | `PollNotFound` | polls answered 404 (skipped, drain continued) |
//! | `AckConflicts` | acks answered 409 (someone else claimed the item) |
//! | `ControlPlaneErrors` | control-plane failures (5xx, timeouts, unexpected 4xx); left to the sweep |
//! | `AtCapacity` | drains stopped because `MAX_CONCURRENT_SESSIONS` was reached |
//! | `EnqueueRetries` | extra `SendMessage` attempts |
//! | `EnqueueFailures` | acked items that could not be sent to SQS (page someone) |
//! | `SealFailures` | acked items whose secret KMS could not encrypt (page someone) |
//! | `Failures` | invocations answered 5xx / failed because our side is broken |
//! | `DrainDurationMs` | wall time of the drain (Milliseconds) |

use crate::ports::MetricsSink;

pub const NAMESPACE: &str = cma_shared::emf::NAMESPACE;

/// Counters of one invocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub deliveries_rejected: u64,
    pub deliveries_ignored: u64,
    pub duplicate_deliveries: u64,
    pub drains: u64,
    pub items_enqueued: u64,
    pub items_force_stopped: u64,
    pub poll_not_found: u64,
    pub ack_conflicts: u64,
    pub control_plane_errors: u64,
    pub at_capacity: u64,
    pub enqueue_retries: u64,
    pub enqueue_failures: u64,
    pub seal_failures: u64,
    pub failures: u64,
    pub drain_duration_ms: u64,
}

impl Counters {
    fn values(&self) -> [(&'static str, u64); 14] {
        [
            ("DeliveriesRejected", self.deliveries_rejected),
            ("DeliveriesIgnored", self.deliveries_ignored),
            ("DuplicateDeliveries", self.duplicate_deliveries),
            ("Drains", self.drains),
            ("ItemsEnqueued", self.items_enqueued),
            ("ItemsForceStopped", self.items_force_stopped),
            ("PollNotFound", self.poll_not_found),
            ("AckConflicts", self.ack_conflicts),
            ("ControlPlaneErrors", self.control_plane_errors),
            ("AtCapacity", self.at_capacity),
            ("EnqueueRetries", self.enqueue_retries),
            ("EnqueueFailures", self.enqueue_failures),
            ("SealFailures", self.seal_failures),
            ("Failures", self.failures),
        ]
    }

    /// The EMF JSON line (formatted by [`cma_shared::emf`]).
    pub fn to_emf(&self, function: &str, timestamp_ms: u64) -> String {
        use cma_shared::emf::{self, Metric};
        let mut metrics: Vec<Metric<'_>> = self
            .values()
            .into_iter()
            .map(|(name, v)| Metric::count(name, v))
            .collect();
        metrics.push(Metric::millis("DrainDurationMs", self.drain_duration_ms));
        emf::line(NAMESPACE, &[("Function", function)], &metrics, timestamp_ms)
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
    fn emf_line_is_valid_json_with_every_metric() {
        let c = Counters {
            items_enqueued: 3,
            control_plane_errors: 1,
            drain_duration_ms: 42,
            ..Counters::default()
        };
        let line = c.to_emf("webhook", 1_700_000_000_000);
        // Byte-for-byte what the webhook emitted before the formatter moved to cma-shared.
        assert!(line.starts_with(concat!(
            r#"{"_aws":{"Timestamp":1700000000000,"CloudWatchMetrics":[{"Namespace":"CmaSelfHosted","#,
            r#""Dimensions":[["Function"]],"Metrics":[{"Name":"DeliveriesRejected","Unit":"Count"},"#
        )));
        assert!(line.contains(
            r#"{"Name":"Failures","Unit":"Count"},{"Name":"DrainDurationMs","Unit":"Milliseconds"}]}]},"Function":"webhook","DeliveriesRejected":0,"#
        ));
        assert!(line.ends_with(r#","Failures":0,"DrainDurationMs":42}"#));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["Function"], "webhook");
        assert_eq!(v["ItemsEnqueued"], 3);
        assert_eq!(v["ControlPlaneErrors"], 1);
        assert_eq!(v["DrainDurationMs"], 42);
        let defs = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap();
        assert_eq!(defs.len(), 15);
        for d in defs {
            let name = d["Name"].as_str().unwrap();
            assert!(v.get(name).is_some(), "{name} has a value");
        }
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000u64);
    }
}
