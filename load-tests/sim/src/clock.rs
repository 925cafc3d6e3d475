//! Wall-clock time for the `*_ms` fields of frames and the `at` fields of the control
//! API. Timers use `tokio::time` instead, so that tests can pause time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Unix milliseconds `after` from now.
pub(crate) fn ms_after(after: Duration) -> i64 {
    now_ms().saturating_add(i64::try_from(after.as_millis()).unwrap_or(i64::MAX))
}

/// The moment of a Unix-milliseconds timestamp.
pub(crate) fn system_time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// RFC 3339 with milliseconds, UTC: `2026-05-01T12:00:00.123Z`.
pub(crate) fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_millis(system_time(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_milliseconds() {
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn after_is_later() {
        assert!(ms_after(Duration::from_secs(1)) >= now_ms() + 999);
    }
}
