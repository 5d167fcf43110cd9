//! UTC timestamps without a date crate: the shapes SigV4 signs with (`amz_date`, a POST
//! policy's expiration), RFC 3339 for manifests, and the ISO 8601 that S3 listings and
//! `--newer-than` use. Every stage may use it (signing, selection, the manifest, `serve`).
//!
//! The civil-date conversions are Howard Hinnant's `days_from_civil` / `civil_from_days`
//! (proleptic Gregorian calendar, exact for every date we can meet).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A UTC instant broken into fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

/// Whole seconds since the epoch; instants before 1970 are clamped to it (they never occur in
/// signing, and clamping keeps every formatter total).
fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn civil_from_unix(secs: u64) -> Civil {
    let days = (secs / 86_400) as i64;
    let rem = (secs % 86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    Civil {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: rem / 60 % 60,
        second: rem % 60,
    }
}

fn unix_from_civil(c: Civil) -> Option<SystemTime> {
    if !(1..=12).contains(&c.month) || c.day == 0 || c.hour > 23 || c.minute > 59 || c.second > 59 {
        return None;
    }
    let days = days_from_civil(c.year, c.month, c.day);
    // Reject 31 April and friends: a valid date survives the round trip.
    if civil_from_days(days) != (c.year, c.month, c.day) || days < 0 {
        return None;
    }
    let secs = days as u64 * 86_400 + u64::from(c.hour * 3600 + c.minute * 60 + c.second);
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The SigV4 timestamp `YYYYMMDDTHHMMSSZ` (UTC) of `t`, e.g. `20130524T000000Z`.
pub fn amz_date(t: SystemTime) -> String {
    let c = civil_from_unix(unix_secs(t));
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// RFC 3339 UTC with nanoseconds, `2026-11-25T23:18:16.123456789Z` (instants before 1970 are
/// clamped to the epoch). Exact, unlike a float, so a manifest's times compare equal to `stat`'s.
pub fn rfc3339_nanos(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let c = civil_from_unix(since.as_secs());
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        c.year,
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
        since.subsec_nanos()
    )
}

/// The POST policy `expiration` form, ISO 8601 with milliseconds as in AWS's example:
/// `2015-12-30T12:00:00.000Z`.
pub(crate) fn policy_expiration(t: SystemTime) -> String {
    let c = civil_from_unix(unix_secs(t));
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// Parses `YYYYMMDDTHHMMSSZ`.
pub(crate) fn parse_amz_date(s: &str) -> Option<SystemTime> {
    // Byte positions below are only char boundaries in ASCII (a client sends this string).
    if !s.is_ascii() {
        return None;
    }
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    unix_from_civil(Civil {
        year: digits(&s[0..4])?.into(),
        month: digits(&s[4..6])?,
        day: digits(&s[6..8])?,
        hour: digits(&s[9..11])?,
        minute: digits(&s[11..13])?,
        second: digits(&s[13..15])?,
    })
}

/// Parses an ISO 8601 UTC time as S3 writes it (policy `expiration`, listing `LastModified`): `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (boto3 writes no fraction,
/// AWS's example writes `.000`). A fraction is dropped: expiry is judged to the second.
pub fn parse_iso8601(s: &str) -> Option<SystemTime> {
    // Byte positions below are only char boundaries in ASCII (a client sends this string).
    if !s.is_ascii() {
        return None;
    }
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    // Nothing, or a dot and at least one digit.
    let fraction = &s[19..s.len() - 1];
    if let Some(digits) = fraction.strip_prefix('.') {
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
    } else if !fraction.is_empty() {
        return None;
    }
    unix_from_civil(Civil {
        year: digits(&s[0..4])?.into(),
        month: digits(&s[5..7])?,
        day: digits(&s[8..10])?,
        hour: digits(&s[11..13])?,
        minute: digits(&s[14..16])?,
        second: digits(&s[17..19])?,
    })
}

/// Only ASCII digits (`str::parse` would also take a sign).
fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_ascii_dates_are_refused_not_a_panic() {
        // Shaped to pass the separator checks with a multi-byte character across a slice
        // boundary: before the ASCII check these panicked, and a client chooses them.
        assert_eq!(parse_amz_date("201é123T120000Z"), None);
        assert_eq!(parse_iso8601("2015-12-30T12:00:0éZ"), None);
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(amz_date(at(0)), "19700101T000000Z");
        // The date of AWS's S3 SigV4 examples.
        assert_eq!(amz_date(at(1_369_353_600)), "20130524T000000Z");
        assert_eq!(amz_date(at(951_782_400)), "20000229T000000Z");
        assert_eq!(amz_date(at(4_107_542_399)), "21000228T235959Z");
        assert_eq!(
            policy_expiration(at(1_451_476_800)),
            "2015-12-30T12:00:00.000Z"
        );
    }

    #[test]
    fn parses_what_it_formats_over_a_long_span() {
        let mut secs = 0;
        while secs < 5_000_000_000 {
            let t = at(secs);
            assert_eq!(parse_amz_date(&amz_date(t)), Some(t), "{secs}");
            assert_eq!(parse_iso8601(&policy_expiration(t)), Some(t));
            secs += 86_400 * 7 + 3_601;
        }
    }

    #[test]
    fn parses_both_expiration_forms() {
        let t = Some(at(1_451_476_800));
        assert_eq!(parse_iso8601("2015-12-30T12:00:00.000Z"), t);
        assert_eq!(parse_iso8601("2015-12-30T12:00:00Z"), t);
        assert_eq!(parse_iso8601("2015-12-30T12:00:00.5Z"), t);
    }

    #[test]
    fn refuses_impossible_or_sloppy_dates() {
        for bad in [
            "20130231T000000Z",
            "20130524T240000Z",
            "20130524 000000Z",
            "2013052T0000000Z",
            "+0130524T000000Z",
            "20130524T000000",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
        for bad in [
            "2015-02-29T12:00:00Z",
            "2015-12-30 12:00:00Z",
            "2015-12-30T12:00:00.Z",
            "2015-12-30T12:00:00+01:00",
            "2015-12-30T12:00:00",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }
}
