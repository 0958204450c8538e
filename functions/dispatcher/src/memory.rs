//! In-memory doubles of the ports (tests, benchmarks, local tools).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cma_shared::retry::Clock;

use crate::error::PortError;
use crate::launcher::{LaunchError, LaunchOutcome, LaunchRequest, Launcher};
use crate::ports::{MetricsSink, Visibility};

/// A launcher that records every request and "starts" one runner per work id; a
/// second launch for the same work id answers `AlreadyRunning`. Failures and delays
/// can be scripted per work id.
#[derive(Default)]
pub struct MemoryLauncher {
    requests: Mutex<Vec<LaunchRequest>>,
    running: Mutex<HashMap<String, String>>,
    failures: Mutex<HashMap<String, LaunchError>>,
    delays: Mutex<HashMap<String, Duration>>,
}

impl MemoryLauncher {
    /// Every launch of `work_id` fails with `e`.
    pub fn fail_work(&self, work_id: &str, e: LaunchError) {
        self.failures.lock().unwrap().insert(work_id.to_owned(), e);
    }

    /// Every launch of `work_id` sleeps `d` first.
    pub fn delay_work(&self, work_id: &str, d: Duration) {
        self.delays.lock().unwrap().insert(work_id.to_owned(), d);
    }

    /// Requests seen, in order (failed ones included).
    pub fn requests(&self) -> Vec<LaunchRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// Runners started.
    pub fn started(&self) -> usize {
        self.running.lock().unwrap().len()
    }
}

#[async_trait]
impl Launcher for MemoryLauncher {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn launch(&self, req: &LaunchRequest) -> Result<LaunchOutcome, LaunchError> {
        self.requests.lock().unwrap().push(req.clone());
        let delay = self.delays.lock().unwrap().get(&req.work_id).copied();
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        if let Some(e) = self.failures.lock().unwrap().get(&req.work_id) {
            return Err(e.clone());
        }
        let mut running = self.running.lock().unwrap();
        if let Some(id) = running.get(&req.work_id) {
            return Ok(LaunchOutcome::AlreadyRunning { id: id.clone() });
        }
        let id = format!("memory-runner-{}", running.len() + 1);
        running.insert(req.work_id.clone(), id.clone());
        Ok(LaunchOutcome::Started { id })
    }
}

/// Records `ChangeMessageVisibility` calls; can be told to fail.
#[derive(Default)]
pub struct MemoryVisibility {
    calls: Mutex<Vec<(String, Duration)>>,
    fail: Mutex<bool>,
}

impl MemoryVisibility {
    pub fn calls(&self) -> Vec<(String, Duration)> {
        self.calls.lock().unwrap().clone()
    }

    pub fn fail(&self, on: bool) {
        *self.fail.lock().unwrap() = on;
    }
}

#[async_trait]
impl Visibility for MemoryVisibility {
    async fn change_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), PortError> {
        self.calls
            .lock()
            .unwrap()
            .push((receipt_handle.to_owned(), timeout));
        if *self.fail.lock().unwrap() {
            return Err(PortError::Retryable {
                operation: "SQS ChangeMessageVisibility",
                message: "injected failure".into(),
            });
        }
        Ok(())
    }
}

/// A visibility port that does nothing (local runs without SQS).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoVisibility;

#[async_trait]
impl Visibility for NoVisibility {
    async fn change_visibility(&self, _: &str, _: Duration) -> Result<(), PortError> {
        Ok(())
    }
}

/// Collects EMF lines.
#[derive(Default)]
pub struct MemoryMetrics {
    lines: Mutex<Vec<String>>,
}

impl MemoryMetrics {
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Sum of a count metric over every line.
    pub fn total(&self, name: &str) -> u64 {
        self.lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v.get(name).and_then(serde_json::Value::as_u64))
            .sum()
    }

    /// Every value of an array metric (e.g. `LaunchLatencyMs`) over every line.
    pub fn values(&self, name: &str) -> Vec<u64> {
        self.lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v.get(name).and_then(|a| a.as_array().cloned()))
            .flatten()
            .filter_map(|x| x.as_u64())
            .collect()
    }
}

impl MetricsSink for MemoryMetrics {
    fn emit(&self, line: &str) {
        self.lines.lock().unwrap().push(line.to_owned());
    }
}

/// A clock with a fixed wall time (`unix_now`) and real monotonic time.
#[derive(Debug, Clone)]
pub struct FixedClock {
    unix: i64,
}

impl FixedClock {
    pub fn new(unix_now: i64) -> Self {
        Self { unix: unix_now }
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(tokio::time::sleep(d))
    }
    fn unix_now(&self) -> i64 {
        self.unix
    }
}
