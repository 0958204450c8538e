//! The scheduled sweep Lambda (EventBridge Scheduler, any JSON payload): the webhook's
//! drain without signature verification. See the `webhook` crate docs.

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use webhook::{Mode, Runtime};

#[tokio::main]
async fn main() -> Result<(), Error> {
    webhook::logging::init();
    let app = Arc::new(webhook::aws::build_app(Mode::Sweep, Runtime::default()).await);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let app = app.clone();
        async move { webhook::lambda::sweep(&app, event).await }
    }))
    .await
}
