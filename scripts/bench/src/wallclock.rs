//! RFC 3339 UTC timestamps with milliseconds (`2026-11-24T14:00:01.000Z`), the
//! format of the tick's `time` field: formatting for the tokio peer, parsing for
//! loadgen's publish-to-receive latency. Hand-written civil-date arithmetic
//! (Howard Hinnant's algorithms), so no date crate is needed.

use std::time::{SystemTime, UNIX_EPOCH};

/// Formats `time` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, milliseconds truncated).
pub fn rfc3339_millis(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Parses `YYYY-MM-DDTHH:MM:SS.mmmZ` into nanoseconds since the Unix epoch.
/// Returns `None` for anything else (loadgen counts that as a protocol error).
pub fn parse_rfc3339_millis(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 24
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'.'
        || b[23] != b'Z'
    {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let s = &text[from..to];
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let days = days_from_civil(num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let secs = days * 86_400 + num(11, 13)? * 3600 + num(14, 16)? * 60 + num(17, 19)?;
    Some(secs * 1_000_000_000 + num(20, 23)? * 1_000_000)
}

/// Nanoseconds since the Unix epoch, now (CLOCK_REALTIME).
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn round_trip() {
        let t = UNIX_EPOCH + Duration::from_nanos(1_795_960_801_007_000_000);
        let text = rfc3339_millis(t);
        assert_eq!(text, "2026-11-29T14:00:01.007Z");
        assert_eq!(parse_rfc3339_millis(&text), Some(1_795_960_801_007_000_000));
    }

    #[test]
    fn leap_day_and_epoch() {
        assert_eq!(parse_rfc3339_millis("1970-01-01T00:00:00.000Z"), Some(0));
        let t = parse_rfc3339_millis("2024-02-29T23:59:59.999Z").unwrap();
        assert_eq!(
            rfc3339_millis(UNIX_EPOCH + Duration::from_nanos(t as u64)),
            "2024-02-29T23:59:59.999Z"
        );
        assert_eq!(parse_rfc3339_millis("2024-02-29T23:59:59Z"), None);
    }
}
