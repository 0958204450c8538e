//! Local-run helpers: Function URL (HTTP API v2) events for `cargo lambda invoke`,
//! freshly signed so they pass the ±300 s window. Used by the `sign-delivery` tool and
//! by the tests (so the tests exercise the same event shape `lambda_http` parses).

use std::time::SystemTime;

use base64::Engine as _;
use cma_shared::WebhookSecret;
use cma_shared::webhook::{WebhookConfigError, WebhookVerifier};
use serde_json::{Value, json};

/// A webhook envelope body (spec §8.1) for `event_type` about `session_id`.
pub fn envelope_body(event_type: &str, session_id: &str, event_id: &str) -> String {
    json!({
        "type": "event",
        "id": event_id,
        "created_at": crate::util::rfc3339_millis(SystemTime::now()),
        "data": {
            "type": event_type,
            "id": session_id,
            "organization_id": "org_local",
            "workspace_id": "wrkspc_local",
        },
    })
    .to_string()
}

/// An HTTP API v2 / Function URL event with the given method, headers and body.
pub fn http_event(method: &str, headers: &[(&str, &str)], body: &[u8], base64: bool) -> Value {
    let mut h = serde_json::Map::new();
    h.insert("host".into(), "localhost".into());
    h.insert("content-type".into(), "application/json".into());
    h.insert("user-agent".into(), "sign-delivery".into());
    for (k, v) in headers {
        h.insert(k.to_ascii_lowercase(), Value::String((*v).to_owned()));
    }
    let now_ms = crate::util::unix_ms(SystemTime::now());
    let (body, is_b64) = if base64 {
        (base64::engine::general_purpose::STANDARD.encode(body), true)
    } else {
        (String::from_utf8_lossy(body).into_owned(), false)
    };
    let mut ev = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": h,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {
                "method": method,
                "path": "/",
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "sign-delivery",
            },
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": "$default",
            "stage": "$default",
            "time": crate::util::rfc3339_millis(SystemTime::now()),
            "timeEpoch": now_ms,
        },
        "isBase64Encoded": is_b64,
    });
    if !body.is_empty() {
        ev["body"] = Value::String(body);
    }
    ev
}

/// The three Standard Webhooks headers for `body`, signed now (or at `timestamp`).
pub fn sign_headers(
    secret: &WebhookSecret,
    webhook_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<[(&'static str, String); 3], WebhookConfigError> {
    let v = WebhookVerifier::new(secret)?;
    Ok([
        ("webhook-id", webhook_id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", v.sign(webhook_id, timestamp, body)),
    ])
}

/// A complete signed `POST` delivery event.
pub fn signed_delivery_event(
    secret: &WebhookSecret,
    event_type: &str,
    session_id: &str,
    webhook_id: &str,
    timestamp: i64,
    base64: bool,
) -> Result<Value, WebhookConfigError> {
    let event_id = format!("wevt_{}", uuid::Uuid::new_v4().simple());
    let body = envelope_body(event_type, session_id, &event_id);
    let headers = sign_headers(secret, webhook_id, timestamp, body.as_bytes())?;
    let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Ok(http_event("POST", &refs, body.as_bytes(), base64))
}

/// Current Unix seconds.
pub fn unix_now() -> i64 {
    (crate::util::unix_ms(SystemTime::now()) / 1000) as i64
}
