//! Time arguments of the reports: "24h", "7d", "90m", "30s", "2w" (that long before now), an
//! RFC 3339 time ("2024-06-01T12:00:00Z", "2024-06-01T14:00:00+02:00", "2024-06-01"), or
//! seconds since the epoch. All results in microseconds since the epoch (UTC).

use crate::Error;

/// `since` as given on the command line ("24h", RFC 3339, epoch seconds) at time `now_us`.
pub fn parse_since(s: &str, now_us: i64) -> Result<i64, Error> {
    parse_time(s, now_us)
}

/// A relative ("24h": now minus 24 hours) or absolute time.
pub fn parse_time(s: &str, now_us: i64) -> Result<i64, Error> {
    let s = s.trim();
    let bad = || Error::Parse(format!("bad time {s:?}: use e.g. 24h, 7d, 30m, 2024-06-01T00:00:00Z or epoch seconds"));
    if s.eq_ignore_ascii_case("now") {
        return Ok(now_us);
    }
    if let Some(unit) = s.chars().last().filter(|c| c.is_ascii_alphabetic() && s.len() > 1) {
        let num = &s[..s.len() - 1];
        if num.bytes().all(|b| b.is_ascii_digit()) {
            let n: i64 = num.parse().map_err(|_| bad())?;
            let secs = match unit {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                'w' => 7 * 86_400,
                _ => return Err(bad()),
            };
            return Ok(now_us - n.checked_mul(secs * 1_000_000).ok_or_else(bad)?);
        }
    }
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok((secs * 1e6).round() as i64);
        }
    }
    parse_rfc3339(s).ok_or_else(bad)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
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
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

/// "YYYY-MM-DD", "YYYY-MM-DDTHH:MM[:SS[.frac]]" with "Z" or "±HH:MM" (none = UTC); a space may
/// stand for the T.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes().all(|c| c.is_ascii_digit()).then(|| t.parse().ok())?
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut us = days_from_civil(y, mo, d) * 86_400_000_000;
    if b.len() == 10 {
        return Some(us);
    }
    if !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') || b.len() < 16 || b[13] != b':' {
        return None;
    }
    let (h, mi) = (num(11..13)?, num(14..16)?);
    let mut i = 16;
    let mut sec = 0;
    if b.get(i) == Some(&b':') {
        sec = num(i + 1..i + 3)?;
        i += 3;
    }
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    us += (h * 3600 + mi * 60 + sec) * 1_000_000;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = &s[start..i];
        if frac.is_empty() {
            return None;
        }
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
        us += digits.parse::<i64>().ok()?;
    }
    match &s[i..] {
        "" | "Z" | "z" => Some(us),
        off if off.len() == 6 && (off.starts_with('+') || off.starts_with('-')) && &off[3..4] == ":" => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let off_us = (oh * 3600 + om * 60) * 1_000_000;
            Some(if off.starts_with('+') { us - off_us } else { us + off_us })
        }
        _ => None,
    }
}

/// "2024-06-01T12:00:00Z" (UTC, whole seconds).
pub fn format_rfc3339(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_absolute_and_round_trip() {
        let now = 1_718_000_000_000_000;
        assert_eq!(parse_since("24h", now).unwrap(), now - 86_400_000_000);
        assert_eq!(parse_since("7d", now).unwrap(), now - 7 * 86_400_000_000);
        assert_eq!(parse_since("30m", now).unwrap(), now - 1_800_000_000);
        assert_eq!(parse_since("now", now).unwrap(), now);
        assert_eq!(parse_since("1718000000", now).unwrap(), now);
        assert_eq!(parse_since("2024-06-10T06:13:20Z", now).unwrap(), now);
        assert_eq!(parse_since("2024-06-10T08:13:20+02:00", now).unwrap(), now);
        assert_eq!(parse_since("2024-06-10T06:13:20.5Z", now).unwrap(), now + 500_000);
        assert_eq!(parse_since("1970-01-01", now).unwrap(), 0);
        assert_eq!(format_rfc3339(now), "2024-06-10T06:13:20Z");
        assert_eq!(format_rfc3339(parse_rfc3339("2000-02-29T23:59:59Z").unwrap()), "2000-02-29T23:59:59Z");
        for bad in ["", "h", "24x", "2024-13-01", "yesterday", "2024-06-10T25:00:00Z", "-5"] {
            assert!(parse_since(bad, now).is_err(), "{bad:?}");
        }
    }
}
