//! RFC 3339 timestamps → Unix milliseconds (the message's `acked_at`), without a
//! date-time crate.

/// Parse `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (also `t`/space as separator and
/// `z`). Fractions beyond milliseconds are truncated; a leap second (`:60`) counts as
/// `:59`. `None` for anything else, including out-of-range fields.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let year = num(0, 4)?;
    let month = num(5, 2)?;
    let day = num(8, 2)?;
    let hour = num(11, 2)?;
    let minute = num(14, 2)?;
    let second = num(17, 2)?;
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = &s[start..i.min(start + 3)];
        millis = digits.parse::<i64>().ok()? * 10i64.pow(3 - digits.len() as u32);
    }
    let offset_secs = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let h = num(i + 1, 2)?;
            let m = num(i + 4, 2)?;
            if h > 23 || m > 59 {
                return None;
            }
            let off = h * 3600 + m * 60;
            if *sign == b'+' { off } else { -off }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset_secs;
    Some(secs * 1000 + millis)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Howard Hinnant's `days_from_civil`: (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(
            parse_rfc3339_ms("2026-05-01T12:00:00.123Z"),
            Some(1_777_636_800_123)
        );
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2000-02-29T00:00:00.000Z"),
            Some(951_782_400_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-05-01T14:00:00.5+02:00"),
            Some(1_777_636_800_500)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-05-01t11:30:00.123456789-00:30"),
            Some(1_777_636_800_123)
        );
        assert_eq!(
            parse_rfc3339_ms("1969-12-31T23:59:59.999Z"),
            Some(-1),
            "before the epoch"
        );
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "yesterday",
            "2026-05-01",
            "2026-05-01T12:00:00",
            "2026-05-01T12:00:00.Z",
            "2026-13-01T12:00:00Z",
            "2026-02-30T12:00:00Z",
            "2025-02-29T12:00:00Z",
            "2026-05-01T24:00:00Z",
            "2026-05-01T12:00:00+0200",
            "2026-05-01T12:00:00Zjunk",
            "２０２６-05-01T12:00:00Z",
            "+2026-05-01T12:00:00Z",
        ] {
            assert_eq!(parse_rfc3339_ms(s), None, "{s:?}");
        }
    }

    #[test]
    fn agrees_with_the_webhook_format_round_trip() {
        // The webhook writes `acked_at` with `rfc3339_millis`; spot-check a range of days.
        for days in (-800_000i64..800_000).step_by(997) {
            let ms = days * 86_400_000 + 45_296_789; // 12:34:56.789
            let (y, m, d) = civil(days);
            let s = format!("{y:04}-{m:02}-{d:02}T12:34:56.789Z");
            if (0..=9999).contains(&y) {
                assert_eq!(parse_rfc3339_ms(&s), Some(ms), "{s}");
            }
        }
    }

    fn civil(z: i64) -> (i64, i64, i64) {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        (yoe + era * 400 + i64::from(m <= 2), m, d)
    }
}
