//! Small self-contained helpers: RFC 3339 formatting (no chrono/time crate),
//! random identifiers, percent-decoding and query-string parsing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use rand::distr::Alphanumeric;

/// Microseconds since the Unix epoch.
pub(crate) fn unix_micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_micros() as u64
}

static LAST_MICROS: AtomicU64 = AtomicU64::new(0);

/// Current time in microseconds since the epoch, strictly increasing across
/// calls (process-wide), so every generated timestamp is unique.
pub(crate) fn unique_micros() -> u64 {
    let now = unix_micros(SystemTime::now());
    let mut last = LAST_MICROS.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST_MICROS.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(actual) => last = actual,
        }
    }
}

/// Converts days since 1970-01-01 into a proleptic Gregorian (year, month, day)
/// (Howard Hinnant's `civil_from_days`).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn split_micros(micros: u64) -> (i64, u32, u32, u32, u32, u32, u32) {
    let secs = (micros / 1_000_000) as i64;
    let frac = (micros % 1_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let (y, m, d) = civil_from_days(days);
    (y, m, d, sod / 3600, (sod / 60) % 60, sod % 60, frac)
}

/// `2026-05-01T12:00:00Z` (whole seconds, `Z`).
pub(crate) fn rfc3339_secs(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, _) = split_micros(unix_micros(t));
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `2026-05-01T12:00:00.123456Z` (microseconds, `Z`).
pub(crate) fn rfc3339_micros_z(micros: u64) -> String {
    let (y, mo, d, h, mi, s, f) = split_micros(micros);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{f:06}Z")
}

/// `2026-05-01T12:00:31.123456+00:00` (microseconds, explicit offset) — the
/// heartbeat token format; the `+` and `:` exercise the client's URL encoding.
pub(crate) fn rfc3339_micros_offset(micros: u64) -> String {
    let (y, mo, d, h, mi, s, f) = split_micros(micros);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{f:06}+00:00")
}

/// Random base62 string of `len` characters.
pub(crate) fn random_alnum(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Identifier shaped like the real ones: `<prefix>_011C<20 base62>`.
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}_011C{}", random_alnum(20))
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `s`; when `plus_is_space` is set (query strings, form
/// semantics) a literal `+` becomes a space, exactly like a real server would
/// read it. Invalid escapes are kept verbatim.
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a raw query string into percent-decoded `(key, value)` pairs, in order.
pub(crate) fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (percent_decode(k, true), percent_decode(v, true)),
            None => (percent_decode(pair, true), String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        // 2026-05-01T12:00:00Z = 1777636800
        let t = UNIX_EPOCH + Duration::from_secs(1_777_636_800);
        assert_eq!(rfc3339_secs(t), "2026-05-01T12:00:00Z");
        assert_eq!(
            rfc3339_micros_offset(1_777_636_831_123_456),
            "2026-05-01T12:00:31.123456+00:00"
        );
        assert_eq!(rfc3339_micros_z(0), "1970-01-01T00:00:00.000000Z");
        // leap day
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339_secs(t), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn decodes_queries() {
        assert_eq!(
            parse_query("a=2026-01-01T00%3A00%3A01.1%2B00%3A00&types%5B%5D=x&b=1+2&c"),
            vec![
                ("a".into(), "2026-01-01T00:00:01.1+00:00".into()),
                ("types[]".into(), "x".into()),
                ("b".into(), "1 2".into()),
                ("c".into(), String::new()),
            ]
        );
        assert_eq!(percent_decode("%zz%4", false), "%zz%4");
    }
}
