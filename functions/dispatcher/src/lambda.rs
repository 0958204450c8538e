//! Glue between `lambda_runtime` and [`Dispatcher`]: the binary is one call.

use std::time::SystemTime;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;

use crate::dispatch::{Dispatcher, budget_from_deadline_ms};
use crate::error::ConfigError;

/// One execution environment's handler: a ready dispatcher, or the configuration
/// error every invocation reports.
pub struct App {
    ready: Result<Dispatcher, ConfigError>,
}

impl App {
    pub fn new(dispatcher: Dispatcher) -> Self {
        App {
            ready: Ok(dispatcher),
        }
    }

    /// Logs the problem once now (and again on every invocation).
    pub fn misconfigured(e: ConfigError) -> Self {
        tracing::error!(variable = e.variable(), error = %e, "configuration error; every invocation will fail until it is fixed");
        App { ready: Err(e) }
    }

    pub fn dispatcher(&self) -> Option<&Dispatcher> {
        self.ready.as_ref().ok()
    }

    /// Handle a batch with `budget` left in the invocation. A configuration error fails
    /// the invocation: Lambda then returns the whole batch to the queue, and nothing is
    /// dropped or launched with a broken configuration.
    pub async fn handle(
        &self,
        event: &SqsEvent,
        budget: std::time::Duration,
    ) -> Result<SqsBatchResponse, ConfigError> {
        match &self.ready {
            Ok(d) => Ok(d.handle_batch(event, budget).await),
            Err(e) => {
                tracing::error!(
                    variable = e.variable(),
                    error = %e,
                    records = event.records.len(),
                    "configuration error; failing the invocation (the batch returns to the queue)"
                );
                Err(e.clone())
            }
        }
    }
}

/// `lambda_runtime` handler body: `SqsEvent` → `SqsBatchResponse`
/// (`ReportBatchItemFailures` must be enabled on the event source mapping).
pub async fn handler(
    app: &App,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    let budget = budget_from_deadline_ms(event.context.deadline, SystemTime::now());
    app.handle(&event.payload, budget)
        .await
        .map_err(|e| format!("configuration error: {e}").into())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use aws_lambda_events::event::sqs::SqsEvent;
    use lambda_runtime::{Context, LambdaEvent};

    use super::*;
    use crate::dispatch::Settings;
    use crate::memory::{FixedClock, MemoryLauncher, MemoryMetrics, MemoryVisibility};

    /// 2026-05-01T12:01:00Z: one minute after the fixtures' fresh `acked_at`.
    const FIXTURE_NOW: i64 = 1_777_636_860;

    /// The fixtures in `events/` parse as Lambda would hand them over.
    fn fixture(name: &str) -> SqsEvent {
        let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[tokio::test]
    async fn handler_with_the_event_fixtures() {
        let launcher = Arc::new(MemoryLauncher::default());
        let metrics = Arc::new(MemoryMetrics::default());
        let app = App::new(
            Dispatcher::new(
                launcher.clone(),
                Arc::new(MemoryVisibility::default()),
                Settings::default(),
            )
            .with_metrics(metrics.clone())
            .with_clock(Arc::new(FixedClock::new(FIXTURE_NOW))),
        );
        let run = |name: &'static str| {
            let app = &app;
            async move {
                handler(app, LambdaEvent::new(fixture(name), Context::default()))
                    .await
                    .unwrap()
            }
        };
        let r = run("good.json").await;
        assert!(r.batch_item_failures.is_empty());
        assert_eq!(launcher.started(), 1);
        let r = run("malformed.json").await;
        assert_eq!(r.batch_item_failures.len(), 1);
        assert_eq!(r.batch_item_failures[0].item_identifier, "malformed-0001");
        let r = run("stale.json").await;
        assert!(r.batch_item_failures.is_empty());
        assert_eq!(metrics.total("Stale"), 1);
        let r = run("batch.json").await;
        let failed: Vec<_> = r
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(
            failed,
            vec!["batch-malformed-0004", "batch-unknown-version-0005"]
        );
        assert_eq!(launcher.started(), 3);
        assert_eq!(metrics.total("Stale"), 2);
        assert_eq!(metrics.total("Malformed"), 3);
    }

    #[tokio::test]
    async fn a_configuration_error_fails_the_invocation() {
        let app = App::misconfigured(ConfigError::Missing(crate::config::ECS_CLUSTER));
        assert!(app.dispatcher().is_none());
        let e = handler(
            &app,
            LambdaEvent::new(fixture("batch.json"), Context::default()),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("ECS_CLUSTER"), "{e}");
    }
}
