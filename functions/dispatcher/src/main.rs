//! The dispatcher Lambda (SQS event source, `ReportBatchItemFailures`). See the
//! `dispatcher` crate docs.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    dispatcher::logging::init();
    let app = Arc::new(dispatcher::aws::build_app().await);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let app = app.clone();
        async move { dispatcher::lambda::handler(&app, event).await }
    }))
    .await
}
