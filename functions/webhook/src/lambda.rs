//! Glue between the Lambda runtime crates and [`App`]. The binaries are one call each.

use lambda_http::RequestExt as _;
use lambda_runtime::LambdaEvent;

use crate::app::App;
use crate::drain::Budget;

/// `lambda_http` handler body: Function URL / HTTP API v2 request → response.
/// `lambda_http` has already base64-decoded the body when `isBase64Encoded` was true.
pub async fn webhook(
    app: &App,
    req: lambda_http::Request,
) -> lambda_http::Response<lambda_http::Body> {
    let deadline_ms = req.lambda_context_ref().map_or(0, |c| c.deadline);
    let budget = Budget::from_deadline_ms(app.clock().as_ref(), deadline_ms);
    let (parts, body) = req.into_parts();
    app.handle_webhook(&parts.method, &parts.headers, body.as_ref(), budget)
        .await
        .map(lambda_http::Body::from)
}

/// `lambda_runtime` handler body for the scheduled sweep: any JSON payload.
pub async fn sweep(
    app: &App,
    event: LambdaEvent<serde_json::Value>,
) -> Result<serde_json::Value, lambda_runtime::Error> {
    let budget = Budget::from_deadline_ms(app.clock().as_ref(), event.context.deadline);
    app.handle_sweep(budget)
        .await
        .map_err(|f| format!("sweep failed ({}): see the log line above", f.code()).into())
}
