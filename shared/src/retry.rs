//! Retry and backoff policy (spec §13), with an injectable clock and jitter source.
//!
//! There is exactly one request-level retry layer ([`RetryPolicy`], used by every
//! control-plane call, spec §13.3) plus the loop-level schedules of §13.2 as pure
//! functions ([`poll_backoff`], [`SseBackoff`], [`result_post_delay`]) that the webhook
//! drain and the runner compose on top. Every delay is computed from a [`Jitter`]
//! sample and slept through a [`Clock`], so tests can run the whole policy in virtual
//! time and assert on the exact schedule.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Source of time. The real one is [`TokioClock`].
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Instant;
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>>;
    /// Wall-clock Unix seconds (webhook timestamp checks).
    fn unix_now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}

/// `tokio::time` based clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A clock for tests: sleeping returns at once and is recorded; `now` advances by
/// the slept amount.
#[derive(Debug, Clone)]
pub struct RecordingClock {
    inner: Arc<Mutex<(Instant, Vec<Duration>)>>,
}

impl Default for RecordingClock {
    fn default() -> Self {
        Self {
            inner: Arc::new(Mutex::new((Instant::now(), Vec::new()))),
        }
    }
}

impl RecordingClock {
    pub fn sleeps(&self) -> Vec<Duration> {
        self.inner.lock().expect("clock lock").1.clone()
    }
}

impl Clock for RecordingClock {
    fn now(&self) -> Instant {
        self.inner.lock().expect("clock lock").0
    }
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let mut g = self.inner.lock().expect("clock lock");
        g.0 += d;
        g.1.push(d);
        Box::pin(std::future::ready(()))
    }
}

/// Uniform samples in `[0, 1)`.
pub trait Jitter: Send + Sync + 'static {
    fn sample(&self) -> f64;
}

/// Thread-local RNG jitter.
#[derive(Debug, Default, Clone, Copy)]
pub struct RandJitter;

impl Jitter for RandJitter {
    fn sample(&self) -> f64 {
        rand::random::<f64>()
    }
}

/// Always the same sample (tests).
#[derive(Debug, Clone, Copy)]
pub struct FixedJitter(pub f64);

impl Jitter for FixedJitter {
    fn sample(&self) -> f64 {
        self.0.clamp(0.0, 1.0)
    }
}

/// Request-level retries (spec §13.3): up to `max_retries` extra attempts on
/// transient failures; delay from `retry-after-ms` / `retry-after` when the server
/// sends one (0 < d ≤ 60 s), else `min(base·2^k, cap) × (1 − 0.25·U)`.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    pub const NONE: RetryPolicy = RetryPolicy {
        max_retries: 0,
        base: Duration::from_millis(500),
        cap: Duration::from_secs(8),
    };

    /// Delay before retry number `retry` (0-based).
    pub fn delay(
        &self,
        retry: u32,
        server_hint: Option<Duration>,
        jitter: &dyn Jitter,
    ) -> Duration {
        if let Some(hint) = server_hint
            && hint > Duration::ZERO
            && hint <= Duration::from_secs(60)
        {
            return hint;
        }
        let exp = self
            .base
            .saturating_mul(1u32.checked_shl(retry.min(16)).unwrap_or(u32::MAX));
        let d = exp.min(self.cap);
        d.mul_f64(1.0 - 0.25 * jitter.sample())
    }
}

/// Parse `retry-after-ms` (milliseconds) or `retry-after` (seconds, or an HTTP date).
pub fn parse_retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let v = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some(Duration::from_secs_f64(secs));
        }
        return None;
    }
    let when = httpdate::parse_http_date(v).ok()?;
    when.duration_since(std::time::SystemTime::now()).ok()
}

/// Poll-error backoff of the drain loop (Python poller, spec §7.2 / §13.2):
/// `min(cap, 2^n) + U(0,1)` seconds, `n ≥ 1`.
pub fn poll_backoff(n: u32, cap: Duration, jitter: &dyn Jitter) -> Duration {
    let exp = 2f64.powi(n.clamp(1, 30) as i32);
    Duration::from_secs_f64(exp.min(cap.as_secs_f64()) + jitter.sample())
}

/// Result-post retry delay for attempt `n` (1-based), Python flavour (spec §11.7):
/// `d = min(30, 2^(n-1))`, wait `U(d/2, d)`, capped at `remaining`.
pub fn result_post_delay(n: u32, remaining: Duration, jitter: &dyn Jitter) -> Duration {
    let d = 2f64.powi(n.saturating_sub(1).min(30) as i32).min(30.0);
    let wait = d / 2.0 + (d / 2.0) * jitter.sample();
    Duration::from_secs_f64(wait).min(remaining)
}

/// SSE reconnect backoff: 0.5 s doubling to 10 s, reset on every received event
/// (spec §11.6).
#[derive(Debug, Clone)]
pub struct SseBackoff {
    next: Duration,
}

impl Default for SseBackoff {
    fn default() -> Self {
        Self {
            next: Self::INITIAL,
        }
    }
}

impl SseBackoff {
    pub const INITIAL: Duration = Duration::from_millis(500);
    pub const MAX: Duration = Duration::from_secs(10);

    /// The delay to sleep now; doubles the next one.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        d
    }

    pub fn reset(&mut self) {
        self.next = Self::INITIAL;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_delays_follow_spec_13_3() {
        let p = RetryPolicy::default();
        // U = 0 → no reduction; U → 1 → 25 % shorter.
        assert_eq!(
            p.delay(0, None, &FixedJitter(0.0)),
            Duration::from_millis(500)
        );
        assert_eq!(
            p.delay(1, None, &FixedJitter(0.0)),
            Duration::from_millis(1000)
        );
        assert_eq!(p.delay(5, None, &FixedJitter(0.0)), Duration::from_secs(8));
        assert_eq!(
            p.delay(0, None, &FixedJitter(1.0)),
            Duration::from_millis(375)
        );
        assert_eq!(p.delay(40, None, &FixedJitter(0.0)), Duration::from_secs(8));
    }

    #[test]
    fn server_hint_wins_when_sane() {
        let p = RetryPolicy::default();
        let j = FixedJitter(0.5);
        assert_eq!(
            p.delay(0, Some(Duration::from_millis(1234)), &j),
            Duration::from_millis(1234)
        );
        // Out of range hints fall back to the computed delay.
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(3600)), &FixedJitter(0.0)),
            Duration::from_millis(500)
        );
        assert_eq!(
            p.delay(0, Some(Duration::ZERO), &FixedJitter(0.0)),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn retry_after_headers() {
        let mut h = http::HeaderMap::new();
        h.insert("retry-after-ms", "250".parse().unwrap());
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(parse_retry_after(&h), Some(Duration::from_millis(250)));
        h.remove("retry-after-ms");
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(7)));
        let future = std::time::SystemTime::now() + Duration::from_secs(30);
        h.insert(
            "retry-after",
            httpdate::fmt_http_date(future).parse().unwrap(),
        );
        let d = parse_retry_after(&h).unwrap();
        assert!(
            d <= Duration::from_secs(30) && d >= Duration::from_secs(28),
            "{d:?}"
        );
        h.insert("retry-after", "garbage".parse().unwrap());
        assert_eq!(parse_retry_after(&h), None);
    }

    #[test]
    fn poll_backoff_schedule() {
        let j = FixedJitter(0.0);
        let cap = Duration::from_secs(60);
        let got: Vec<u64> = (1..=7)
            .map(|n| poll_backoff(n, cap, &j).as_secs())
            .collect();
        assert_eq!(got, vec![2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(
            poll_backoff(1, cap, &FixedJitter(0.5)),
            Duration::from_millis(2500)
        );
    }

    #[test]
    fn result_post_schedule() {
        let big = Duration::from_secs(1000);
        assert_eq!(
            result_post_delay(1, big, &FixedJitter(0.0)),
            Duration::from_millis(500)
        );
        assert_eq!(
            result_post_delay(1, big, &FixedJitter(1.0)),
            Duration::from_secs(1)
        );
        assert_eq!(
            result_post_delay(3, big, &FixedJitter(1.0)),
            Duration::from_secs(4)
        );
        assert_eq!(
            result_post_delay(9, big, &FixedJitter(1.0)),
            Duration::from_secs(30)
        );
        assert_eq!(
            result_post_delay(9, Duration::from_secs(2), &FixedJitter(1.0)),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn sse_backoff_doubles_to_ten_and_resets() {
        let mut b = SseBackoff::default();
        let got: Vec<u128> = (0..7).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, vec![500, 1000, 2000, 4000, 8000, 10000, 10000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(500));
    }

    #[test]
    fn recording_clock_records() {
        let c = RecordingClock::default();
        let t0 = c.now();
        futures_util::FutureExt::now_or_never(c.sleep(Duration::from_secs(3))).unwrap();
        assert_eq!(c.now() - t0, Duration::from_secs(3));
        assert_eq!(c.sleeps(), vec![Duration::from_secs(3)]);
    }
}
