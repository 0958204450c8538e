//! The API error envelope.

use axum::body::Body;
use axum::response::Response;
use serde_json::{Value, json};

/// An error answer: `{"type":"error","error":{"type","message","details"?}}`.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) status: u16,
    pub(crate) kind: &'static str,
    pub(crate) message: String,
    pub(crate) details: Option<Value>,
    pub(crate) retry_after_ms: Option<u64>,
}

/// The `error.type` conventionally used for an HTTP status.
pub(crate) fn error_type_for_status(status: u16) -> &'static str {
    match status {
        400 | 412 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        405 => "invalid_request_error",
        408 | 504 => "timeout_error",
        409 => "conflict_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

impl ApiError {
    pub(crate) fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            details: None,
            retry_after_ms: None,
        }
    }

    pub(crate) fn status(status: u16, message: impl Into<String>) -> Self {
        Self::new(status, error_type_for_status(status), message)
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "not_found_error", message)
    }

    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, "conflict_error", message)
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "permission_error", message)
    }

    pub(crate) fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(401, "authentication_error", message)
    }

    pub(crate) fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub(crate) fn body(&self) -> Value {
        let mut err = json!({ "type": self.kind, "message": self.message });
        if let Some(d) = &self.details {
            err["details"] = d.clone();
        }
        json!({ "type": "error", "error": err })
    }

    pub(crate) fn into_response(self) -> Response {
        let mut resp = json_response(self.status, &self.body());
        if let Some(ms) = self.retry_after_ms {
            resp.headers_mut().insert(
                "retry-after-ms",
                http::HeaderValue::from_str(&ms.to_string()).expect("digits"),
            );
        }
        resp
    }
}

/// A JSON response with the given status.
pub(crate) fn json_response(status: u16, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).expect("serialize json");
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(bytes))
        .expect("valid response")
}
