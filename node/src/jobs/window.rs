//! A job's sending window: the hours of the day, in a time zone, when its messages may
//! leave (`{"start": "08:00", "end": "21:00", "tz": "Asia/Jakarta"}`). Outside it, no
//! recipient is handed to a device; what a device already queued still goes at its pace.
//!
//! `start` is included and `end` excluded; an `end` before `start` spans midnight
//! (`22:00`–`06:00`). Times are the zone's wall clock, so a window follows daylight
//! saving time where the zone has it. The IANA database is compiled in (jiff's
//! `tzdb-bundle-always`), so a zone name means the same on every machine.

use jiff::Timestamp;
use jiff::civil::Time;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

/// A checked window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "WindowSpec", into = "WindowSpec")]
pub struct Window {
    start: Time,
    end: Time,
    tz_name: String,
    tz: TimeZone,
}

/// A window as given and as stored: `HH:MM` twice and an IANA zone name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    pub start: String,
    pub end: String,
    pub tz: String,
}

/// Why a window was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("window.{0} must be a time of day as HH:MM (00:00 to 23:59)")]
    Time(&'static str),
    #[error("window.tz {0:?} is not a time zone of the IANA database (e.g. Asia/Jakarta)")]
    Zone(String),
    #[error("window.start and window.end are the same time: the window would never open")]
    Empty,
}

fn time_of_day(text: &str, which: &'static str) -> Result<Time, WindowError> {
    let (h, m) = text.split_once(':').ok_or(WindowError::Time(which))?;
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(h) || !two_digits(m) {
        return Err(WindowError::Time(which));
    }
    let (h, m): (i8, i8) = (
        h.parse().map_err(|_| WindowError::Time(which))?,
        m.parse().map_err(|_| WindowError::Time(which))?,
    );
    Time::new(h, m, 0, 0).map_err(|_| WindowError::Time(which))
}

impl TryFrom<WindowSpec> for Window {
    type Error = WindowError;

    fn try_from(spec: WindowSpec) -> Result<Window, WindowError> {
        let start = time_of_day(&spec.start, "start")?;
        let end = time_of_day(&spec.end, "end")?;
        if start == end {
            return Err(WindowError::Empty);
        }
        let tz = TimeZone::get(&spec.tz).map_err(|_| WindowError::Zone(spec.tz.clone()))?;
        Ok(Window {
            start,
            end,
            tz_name: spec.tz,
            tz,
        })
    }
}

impl From<Window> for WindowSpec {
    fn from(w: Window) -> WindowSpec {
        let hm = |t: Time| format!("{:02}:{:02}", t.hour(), t.minute());
        WindowSpec {
            start: hm(w.start),
            end: hm(w.end),
            tz: w.tz_name,
        }
    }
}

impl Window {
    /// Whether the window is open at `now_ms` (Unix ms).
    pub fn is_open(&self, now_ms: i64) -> bool {
        let Ok(at) = Timestamp::from_millisecond(now_ms) else {
            return false;
        };
        let local = self.tz.to_datetime(at).time();
        if self.start < self.end {
            self.start <= local && local < self.end
        } else {
            local >= self.start || local < self.end
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(start: &str, end: &str, tz: &str) -> Result<Window, WindowError> {
        Window::try_from(WindowSpec {
            start: start.into(),
            end: end.into(),
            tz: tz.into(),
        })
    }

    /// Unix ms of a UTC wall-clock time on 2026-12-07.
    fn utc(h: i8, m: i8) -> i64 {
        TimeZone::UTC
            .to_timestamp(jiff::civil::date(2026, 12, 7).at(h, m, 0, 0))
            .unwrap()
            .as_millisecond()
    }

    #[test]
    fn a_window_is_open_by_the_wall_clock_of_its_zone() {
        // Jakarta is UTC+7: 08:00–21:00 there is 01:00–14:00 UTC.
        let jakarta = window("08:00", "21:00", "Asia/Jakarta").unwrap();
        assert!(!jakarta.is_open(utc(0, 59)));
        assert!(jakarta.is_open(utc(1, 0)), "start is included");
        assert!(jakarta.is_open(utc(13, 59)));
        assert!(!jakarta.is_open(utc(14, 0)), "end is excluded");
        // Across midnight, in UTC.
        let night = window("22:00", "06:00", "UTC").unwrap();
        assert!(night.is_open(utc(23, 0)) && night.is_open(utc(5, 59)));
        assert!(!night.is_open(utc(6, 0)) && !night.is_open(utc(12, 0)));
    }

    #[test]
    fn bad_windows_are_refused_and_good_ones_round_trip() {
        assert_eq!(
            window("8:00", "21:00", "UTC"),
            Err(WindowError::Time("start"))
        );
        assert_eq!(
            window("08:00", "24:00", "UTC"),
            Err(WindowError::Time("end"))
        );
        assert_eq!(window("08:00", "08:00", "UTC"), Err(WindowError::Empty));
        assert_eq!(
            window("08:00", "21:00", "Mars/Olympus"),
            Err(WindowError::Zone("Mars/Olympus".into()))
        );
        let json = r#"{"start":"08:00","end":"21:30","tz":"Asia/Jakarta"}"#;
        let parsed: Window = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&parsed).unwrap(), json);
    }
}
