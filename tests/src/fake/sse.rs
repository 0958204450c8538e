//! `GET /v1/sessions/{sid}/events/stream` — server-sent events.
//!
//! The handler subscribes to the session's broadcast *before* answering, so
//! exactly the events appended after the connection opened are delivered. A
//! spawned task writes frames into an mpsc channel that backs the response
//! body, which gives full control over chunking (see `Faults::split_frames`).

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};

/// Stream behaviour captured when the connection opens.
#[derive(Clone, Debug)]
pub(crate) struct StreamOptions {
    pub(crate) ping_interval: Duration,
    pub(crate) drop_after: Option<usize>,
    pub(crate) error_after: Option<usize>,
    pub(crate) split_frames: bool,
}

type Chunk = Result<Bytes, Infallible>;

fn frame(event: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// Writes one frame, optionally in three chunks (the last one being the
/// final `\n`, so the blank line that ends the frame straddles two reads).
async fn write(out: &mpsc::Sender<Chunk>, bytes: Bytes, split: bool) -> bool {
    if !split || bytes.len() < 4 {
        return out.send(Ok(bytes)).await.is_ok();
    }
    let a = bytes.len() / 3;
    let b = bytes.len() - 1;
    for (i, part) in [bytes.slice(..a), bytes.slice(a..b), bytes.slice(b..)]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        if out.send(Ok(part)).await.is_err() {
            return false;
        }
    }
    true
}

fn is_terminal(ev: &Value) -> bool {
    matches!(
        ev["type"].as_str(),
        Some("session.deleted" | "session.status_terminated")
    )
}

async fn run(
    mut rx: broadcast::Receiver<Value>,
    out: mpsc::Sender<Chunk>,
    opts: StreamOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    let error_frame = || {
        frame(
            "error",
            &json!({
                "type": "error",
                "error": { "type": "overloaded_error", "message": "injected stream error" }
            }),
        )
    };
    let mut delivered = 0usize;
    if opts.drop_after == Some(0) {
        return;
    }
    if opts.error_after == Some(0) {
        write(&out, error_frame(), opts.split_frames).await;
        return;
    }
    let start = tokio::time::Instant::now() + opts.ping_interval;
    let mut ping = tokio::time::interval_at(start, opts.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(ev) => {
                    let name = ev["type"].as_str().unwrap_or("message").to_string();
                    if !write(&out, frame(&name, &ev), opts.split_frames).await {
                        return;
                    }
                    delivered += 1;
                    if is_terminal(&ev) || opts.drop_after == Some(delivered) {
                        return;
                    }
                    if opts.error_after == Some(delivered) {
                        write(&out, error_frame(), opts.split_frames).await;
                        return;
                    }
                }
                // Lagged (client too slow) or session gone: close; the client
                // reconnects and reconciles through the list endpoint.
                Err(_) => return,
            },
            _ = ping.tick() => {
                if !write(&out, frame("ping", &json!({})), opts.split_frames).await {
                    return;
                }
            }
            _ = out.closed() => return,
            _ = shutdown.changed() => return,
        }
    }
}

/// Builds the streaming response and spawns its writer task.
pub(crate) fn stream_response(
    rx: broadcast::Receiver<Value>,
    opts: StreamOptions,
    shutdown: watch::Receiver<bool>,
) -> Response {
    let (tx, mut body_rx) = mpsc::channel::<Chunk>(16);
    tokio::spawn(run(rx, tx, opts, shutdown));
    let stream = futures_util::stream::poll_fn(move |cx| body_rx.poll_recv(cx));
    Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, "text/event-stream")
        .header(http::header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .expect("valid response")
}
