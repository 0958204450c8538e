//! The webhook Lambda (Function URL / HTTP API v2 events). See the `webhook` crate docs.

use std::sync::Arc;

use lambda_http::{Error, Request, service_fn};
use webhook::{Mode, Runtime};

#[tokio::main]
async fn main() -> Result<(), Error> {
    webhook::logging::init();
    let app = Arc::new(webhook::aws::build_app(Mode::Webhook, Runtime::default()).await);
    lambda_http::run(service_fn(move |req: Request| {
        let app = app.clone();
        async move { Ok::<_, std::convert::Infallible>(webhook::lambda::webhook(&app, req).await) }
    }))
    .await
}
