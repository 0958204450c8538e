//! CloudWatch embedded metric format (EMF): one JSON object per line on stdout, from
//! which CloudWatch Logs extracts metrics. Shared by the webhook and dispatcher Lambdas
//! (namespace [`NAMESPACE`], one dimension set per line).
//!
//! ```text
//! {"_aws":{"Timestamp":T,"CloudWatchMetrics":[{"Namespace":"CmaSelfHosted",
//!   "Dimensions":[["Function"]],"Metrics":[{"Name":"X","Unit":"Count"},…]}]},
//!  "Function":"dispatcher","X":3,"LatencyMs":[12,40]}
//! ```
//!
//! A metric with several values is written as an array (EMF allows up to 100 values
//! per metric and line); a metric with no value at all is left out of the line.

use std::fmt::Write as _;

/// The CloudWatch namespace of every metric this project emits.
pub const NAMESPACE: &str = "CmaSelfHosted";

/// EMF unit names used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// Value(s) of one metric on one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values<'a> {
    One(u64),
    /// Written as a JSON array; left out of the line when empty.
    Many(&'a [u64]),
}

/// One metric of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric<'a> {
    pub name: &'a str,
    pub unit: Unit,
    pub values: Values<'a>,
}

impl<'a> Metric<'a> {
    /// A `Count` metric with one value.
    pub fn count(name: &'a str, value: u64) -> Self {
        Metric {
            name,
            unit: Unit::Count,
            values: Values::One(value),
        }
    }

    /// A `Milliseconds` metric with one value.
    pub fn millis(name: &'a str, value: u64) -> Self {
        Metric {
            name,
            unit: Unit::Milliseconds,
            values: Values::One(value),
        }
    }

    /// A `Milliseconds` metric with any number of values (none: left out).
    pub fn millis_many(name: &'a str, values: &'a [u64]) -> Self {
        Metric {
            name,
            unit: Unit::Milliseconds,
            values: Values::Many(values),
        }
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serialises")
}

/// The EMF JSON line (no trailing newline). `dimensions` is one dimension set: its
/// names go to `Dimensions`, its values become top-level members.
pub fn line(
    namespace: &str,
    dimensions: &[(&str, &str)],
    metrics: &[Metric<'_>],
    timestamp_ms: u64,
) -> String {
    let present = || {
        metrics
            .iter()
            .filter(|m| !matches!(m.values, Values::Many(v) if v.is_empty()))
    };
    let dims = dimensions
        .iter()
        .map(|(k, _)| json_str(k))
        .collect::<Vec<_>>()
        .join(",");
    let defs = present()
        .map(|m| {
            format!(
                r#"{{"Name":{},"Unit":"{}"}}"#,
                json_str(m.name),
                m.unit.as_str()
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    let mut out = format!(
        r#"{{"_aws":{{"Timestamp":{timestamp_ms},"CloudWatchMetrics":[{{"Namespace":{},"Dimensions":[[{dims}]],"Metrics":[{defs}]}}]}}"#,
        json_str(namespace)
    );
    for (k, v) in dimensions {
        let _ = write!(out, ",{}:{}", json_str(k), json_str(v));
    }
    for m in present() {
        let _ = write!(out, ",{}:", json_str(m.name));
        match m.values {
            Values::One(v) => {
                let _ = write!(out, "{v}");
            }
            Values::Many(vs) => {
                let list = vs.iter().map(u64::to_string).collect::<Vec<_>>();
                let _ = write!(out, "[{}]", list.join(","));
            }
        }
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_line() {
        let l = line(
            NAMESPACE,
            &[("Function", "webhook")],
            &[Metric::count("A", 1), Metric::millis("DurMs", 42)],
            1_700_000_000_000,
        );
        assert_eq!(
            l,
            concat!(
                r#"{"_aws":{"Timestamp":1700000000000,"CloudWatchMetrics":[{"Namespace":"CmaSelfHosted","#,
                r#""Dimensions":[["Function"]],"Metrics":[{"Name":"A","Unit":"Count"},"#,
                r#"{"Name":"DurMs","Unit":"Milliseconds"}]}]},"Function":"webhook","A":1,"DurMs":42}"#
            )
        );
    }

    #[test]
    fn arrays_and_empty_metrics() {
        let l = line(
            NAMESPACE,
            &[("Function", "dispatcher")],
            &[
                Metric::count("Launched", 2),
                Metric::millis_many("LaunchLatencyMs", &[12, 40]),
                Metric::millis_many("Empty", &[]),
            ],
            1,
        );
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["LaunchLatencyMs"], serde_json::json!([12, 40]));
        assert!(v.get("Empty").is_none());
        let defs = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap();
        assert_eq!(defs.len(), 2);
        assert_eq!(v["Function"], "dispatcher");
    }
}
