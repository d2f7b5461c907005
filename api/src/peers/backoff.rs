//! How long to leave a peer alone: exponential backoff while it is unreachable, and the
//! wait it asks for itself (`Retry-After` on a 429 or 503) when it is up but busy.

use axum::http::header::{HeaderMap, RETRY_AFTER};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest wait, whatever the count or the peer asks: a peer that names a day must not
/// silence itself for a day (its blocks still matter), and a fixed one comes back soon.
pub(super) const MAX_BACKOFF_SECS: u64 = 300;
/// Shortest wait after a back-off answer, even for `Retry-After: 0`: the run loop ticks
/// twice a second and would otherwise knock again at once.
const MIN_THROTTLE_SECS: u64 = 1;

/// 2^`n` seconds for the `n`-th failure in a row, capped at [`MAX_BACKOFF_SECS`].
pub(super) fn exponential(n: u32) -> Duration {
    let secs = 1u64.checked_shl(n.min(16)).unwrap_or(u64::MAX);
    Duration::from_secs(secs.min(MAX_BACKOFF_SECS))
}

/// After the `n`-th back-off answer in a row: what the peer asked for, else the
/// exponential backoff; within [`MIN_THROTTLE_SECS`]..=[`MAX_BACKOFF_SECS`].
pub(super) fn throttled(retry_after: Option<Duration>, n: u32) -> Duration {
    retry_after.unwrap_or_else(|| exponential(n)).clamp(
        Duration::from_secs(MIN_THROTTLE_SECS),
        Duration::from_secs(MAX_BACKOFF_SECS),
    )
}

/// The wait a `Retry-After` header asks for: delay-seconds, or an HTTP date (IMF-fixdate,
/// the form RFC 9110 says senders use) counted from `now`; None when absent or unreadable.
pub(super) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = UNIX_EPOCH + Duration::from_secs(parse_imf_fixdate(value)?);
    // A date already past means "now".
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// For the error text: ", retry after Ns" when the peer said.
pub(super) fn describe(retry_after: Option<Duration>) -> String {
    retry_after
        .map(|d| format!(", retry after {}s", d.as_secs()))
        .unwrap_or_default()
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` → Unix seconds.
fn parse_imf_fixdate(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_weekday, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m == month)? as u64 + 1;
    let (day, year): (u64, u64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<u64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, sec] = hms.as_slice() else {
        return None;
    };
    if !(1..=31).contains(&day) || year < 1970 || *h > 23 || *m > 59 || *sec > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + h * 3600 + m * 60 + sec)
}

/// Days since 1970-01-01 of a Gregorian date from 1970 on (Howard Hinnant's algorithm).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    // Years start in March, so the leap day is the last day of the "year".
    let y = if month <= 2 { year - 1 } else { year };
    let (era, yoe) = (y / 400, y % 400);
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37
        let secs = |v: &str| retry_after(&headers(v), now).map(|d| d.as_secs());
        assert_eq!(secs("120"), Some(120));
        assert_eq!(secs(" 3 "), Some(3));
        assert_eq!(secs("Sun, 06 Nov 1994 08:50:07 GMT"), Some(30));
        assert_eq!(
            secs("Sun, 06 Nov 1994 08:00:00 GMT"),
            Some(0),
            "past is now"
        );
        for bad in [
            "soon",
            "-5",
            "1.5",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "06 Nov 1994",
        ] {
            assert_eq!(secs(bad), None, "{bad}");
        }
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn imf_fixdate_matches_known_instants() {
        assert_eq!(parse_imf_fixdate("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_imf_fixdate("Tue, 29 Feb 2000 12:00:00 GMT"),
            Some(951_825_600)
        );
        assert_eq!(
            parse_imf_fixdate("Wed, 25 Nov 2026 00:00:00 GMT"),
            Some(1_795_564_800)
        );
        assert_eq!(parse_imf_fixdate("Wed, 25 Foo 2026 00:00:00 GMT"), None);
        assert_eq!(parse_imf_fixdate("Wed, 25 Nov 2026 24:00:00 GMT"), None);
    }

    #[test]
    fn throttle_wait_honours_the_peer_within_bounds() {
        let s = Duration::from_secs;
        assert_eq!(throttled(Some(s(7)), 1), s(7));
        assert_eq!(throttled(Some(s(0)), 1), s(MIN_THROTTLE_SECS));
        assert_eq!(throttled(Some(s(86_400)), 1), s(MAX_BACKOFF_SECS));
        assert_eq!(throttled(None, 1), s(2), "no header: exponential");
        assert_eq!(throttled(None, 30), s(MAX_BACKOFF_SECS));
        assert_eq!(exponential(3), s(8));
    }
}
