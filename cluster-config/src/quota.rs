//! The sending quota of a device, and the table that gives one per trust level.
//!
//! A [`Quota`] is the pace a WhatsApp number may keep without looking like a spammer:
//! how many sends per minute, hour and day, how long to wait between two sends (plus a
//! random jitter, so the pace does not look machine-made), and how many sends a device
//! may have outstanding at once. The node's rate limiter applies it; this module only
//! types, defaults and checks it, so that the gateway (`GET/PUT /v1/settings/trust-levels`)
//! and every node agree on what a valid table is.
//!
//! The serde names are those of the settings route:
//! `{"newcomer": {"per_minute", "per_hour", "per_day", "min_gap_ms", "jitter_ms",
//! "max_in_flight"}, "trusted": {..}, "verified": {..}}`. `max_in_flight` may be left out
//! (it defaults to [`DEFAULT_MAX_IN_FLIGHT`]); every other key is required and unknown keys
//! are errors, so a typo in a PUT never silently keeps an old value.

use serde::{Deserialize, Serialize};

/// Milliseconds in a minute, an hour and a day: the lengths of the three windows.
pub const MINUTE_MS: i64 = 60_000;
/// Milliseconds in an hour.
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
/// Milliseconds in a day.
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// The largest `per_day` accepted. The limiter keeps one timestamp per send of the last
/// day, so this also bounds its memory (80 KB per device at most); and no number that
/// sends more than this in a day keeps a "safe pace" anyway.
pub const MAX_PER_DAY: u32 = 10_000;
/// The longest `min_gap_ms` accepted: one hour.
pub const MAX_MIN_GAP_MS: u64 = 3_600_000;
/// The longest `jitter_ms` accepted: ten minutes.
pub const MAX_JITTER_MS: u64 = 600_000;
/// The largest `max_in_flight` accepted.
pub const MAX_MAX_IN_FLIGHT: u32 = 10_000;
/// `max_in_flight` when a table leaves it out. 50 lets a client queue a burst of 50 sends
/// (the issue's acceptance burst) on any level, while a client that piles up more than
/// that gets a 429 instead of a backlog that would keep draining long after a demotion.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 50;

/// The pace one device may keep. See the module doc for the wire form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Sends in any 60 s (sliding) window.
    pub per_minute: u32,
    /// Sends in any hour (sliding).
    pub per_hour: u32,
    /// Sends in any 24 h (sliding). A send beyond it is refused (429), not queued.
    pub per_day: u32,
    /// The least time between two sends of one device, in milliseconds.
    pub min_gap_ms: u64,
    /// Up to this many milliseconds, drawn at random per send, are added to `min_gap_ms`,
    /// so that sends do not come at a machine-regular beat.
    pub jitter_ms: u64,
    /// Sends accepted (sending now or queued for later) and not yet settled. Past it a
    /// send is refused (429): the cap on what one device may have outstanding.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u32,
}

fn default_max_in_flight() -> u32 {
    DEFAULT_MAX_IN_FLIGHT
}

/// A quota that cannot be used, and why. `key` is the field at fault, prefixed with the
/// level when the check ran on a [`QuotaTable`] (`newcomer.per_hour`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quota key `{key}`: {message}")]
pub struct QuotaError {
    /// The field at fault, such as `per_hour` or `trusted.min_gap_ms`.
    pub key: String,
    /// What is wrong and what would be accepted.
    pub message: String,
}

impl QuotaError {
    fn new(key: &str, message: impl Into<String>) -> QuotaError {
        QuotaError {
            key: key.to_owned(),
            message: message.into(),
        }
    }

    fn in_level(mut self, level: &str) -> QuotaError {
        self.key = format!("{level}.{}", self.key);
        self
    }
}

impl Quota {
    /// Checks that the quota can be kept as written: every count at least 1,
    /// `per_minute ≤ per_hour ≤ per_day ≤ MAX_PER_DAY`, gaps and jitter within their
    /// bounds, and no window that its shorter neighbour or the gap makes unreachable
    /// (`per_minute × min_gap_ms ≤ 60 s`, `per_hour ≤ 60 × per_minute`,
    /// `per_day ≤ 24 × per_hour`): a limit that can never be reached is a mistake worth
    /// telling the operator about, not a harmless setting.
    pub fn check(&self) -> Result<(), QuotaError> {
        for (key, value) in [
            ("per_minute", self.per_minute),
            ("per_hour", self.per_hour),
            ("per_day", self.per_day),
            ("max_in_flight", self.max_in_flight),
        ] {
            if value == 0 {
                return Err(QuotaError::new(key, "must be at least 1"));
            }
        }
        if self.per_day > MAX_PER_DAY {
            return Err(QuotaError::new(
                "per_day",
                format!(
                    "{} is more than the most allowed, {MAX_PER_DAY}",
                    self.per_day
                ),
            ));
        }
        if self.per_minute > self.per_hour {
            return Err(QuotaError::new(
                "per_minute",
                format!(
                    "{} is more than per_hour ({}): expected per_minute ≤ per_hour ≤ per_day",
                    self.per_minute, self.per_hour
                ),
            ));
        }
        if self.per_hour > self.per_day {
            return Err(QuotaError::new(
                "per_hour",
                format!(
                    "{} is more than per_day ({}): expected per_minute ≤ per_hour ≤ per_day",
                    self.per_hour, self.per_day
                ),
            ));
        }
        if self.min_gap_ms > MAX_MIN_GAP_MS {
            return Err(QuotaError::new(
                "min_gap_ms",
                format!(
                    "{} ms is out of range: expected 0 to {MAX_MIN_GAP_MS} ms",
                    self.min_gap_ms
                ),
            ));
        }
        if self.jitter_ms > MAX_JITTER_MS {
            return Err(QuotaError::new(
                "jitter_ms",
                format!(
                    "{} ms is out of range: expected 0 to {MAX_JITTER_MS} ms",
                    self.jitter_ms
                ),
            ));
        }
        if self.max_in_flight > MAX_MAX_IN_FLIGHT {
            return Err(QuotaError::new(
                "max_in_flight",
                format!(
                    "{} is more than the most allowed, {MAX_MAX_IN_FLIGHT}",
                    self.max_in_flight
                ),
            ));
        }
        let minute_span = u64::from(self.per_minute) * self.min_gap_ms;
        if minute_span > MINUTE_MS as u64 {
            let reachable = (MINUTE_MS as u64 / self.min_gap_ms.max(1)).max(1);
            return Err(QuotaError::new(
                "per_minute",
                format!(
                    "{} can never be reached with min_gap_ms {} (at most {reachable} sends fit \
                     in a minute): lower per_minute or min_gap_ms",
                    self.per_minute, self.min_gap_ms
                ),
            ));
        }
        if u64::from(self.per_hour) > 60 * u64::from(self.per_minute) {
            return Err(QuotaError::new(
                "per_hour",
                format!(
                    "{} can never be reached with per_minute {} (at most {} in an hour)",
                    self.per_hour,
                    self.per_minute,
                    60 * u64::from(self.per_minute)
                ),
            ));
        }
        if u64::from(self.per_day) > 24 * u64::from(self.per_hour) {
            return Err(QuotaError::new(
                "per_day",
                format!(
                    "{} can never be reached with per_hour {} (at most {} in a day)",
                    self.per_day,
                    self.per_hour,
                    24 * u64::from(self.per_hour)
                ),
            ));
        }
        Ok(())
    }

    /// The most a quota may allow, with no gap (see [`QuotaTable::UNTHROTTLED`]).
    pub const UNTHROTTLED: Quota = Quota {
        per_minute: MAX_PER_DAY,
        per_hour: MAX_PER_DAY,
        per_day: MAX_PER_DAY,
        min_gap_ms: 0,
        jitter_ms: 0,
        max_in_flight: MAX_MAX_IN_FLIGHT,
    };

    /// NEWCOMER: a number that has just been linked. The issue's figures: 20 an hour and
    /// 100 a day, at least 20 s apart (+ up to 10 s of jitter), and so at most 3 a minute,
    /// well under the "more than 5 a minute" that users of other gateways report bans at.
    /// Reports of bans at 20–30 a day on fresh numbers argue for an even lower `per_day`
    /// on numbers that are also new to WhatsApp; it is a setting, lower it there.
    pub const NEWCOMER: Quota = Quota {
        per_minute: 3,
        per_hour: 20,
        per_day: 100,
        min_gap_ms: 20_000,
        jitter_ms: 10_000,
        max_in_flight: DEFAULT_MAX_IN_FLIGHT,
    };

    /// TRUSTED: linked and active for more than 7 days. 5 a minute (the reported ban
    /// threshold is *more* than 5) at least 12 s apart (+ up to 6 s), 60 an hour and 400 a
    /// day: four times a newcomer's day, still a person's pace rather than a blast.
    pub const TRUSTED: Quota = Quota {
        per_minute: 5,
        per_hour: 60,
        per_day: 400,
        min_gap_ms: 12_000,
        jitter_ms: 6_000,
        max_in_flight: DEFAULT_MAX_IN_FLIGHT,
    };

    /// VERIFIED: old or business accounts, set by an admin, which WhatsApp tolerates more
    /// from. 10 a minute at least 6 s apart (+ up to 3 s), 200 an hour and 1,000 a day.
    /// Never two sends at once: the gap keeps even this level's sends sequential, clear of
    /// the "about 10 parallel sends" ban reports.
    pub const VERIFIED: Quota = Quota {
        per_minute: 10,
        per_hour: 200,
        per_day: 1_000,
        min_gap_ms: 6_000,
        jitter_ms: 3_000,
        max_in_flight: DEFAULT_MAX_IN_FLIGHT,
    };
}

/// The quota of each trust level: the value of `GET/PUT /v1/settings/trust-levels`.
/// Every level is required in a PUT, so a table is always complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaTable {
    /// New links ([`Quota::NEWCOMER`] by default).
    pub newcomer: Quota,
    /// Linked and active for more than 7 days ([`Quota::TRUSTED`] by default).
    pub trusted: Quota,
    /// Old or business accounts, set by an admin ([`Quota::VERIFIED`] by default).
    pub verified: Quota,
}

impl QuotaTable {
    /// The most every level allows, with no gap: for load tests and throughput demos
    /// on the simulator. Never for real numbers: this is the pace that gets them banned.
    pub const UNTHROTTLED: QuotaTable = QuotaTable {
        newcomer: Quota::UNTHROTTLED,
        trusted: Quota::UNTHROTTLED,
        verified: Quota::UNTHROTTLED,
    };
}

impl Default for QuotaTable {
    fn default() -> Self {
        QuotaTable {
            newcomer: Quota::NEWCOMER,
            trusted: Quota::TRUSTED,
            verified: Quota::VERIFIED,
        }
    }
}

impl QuotaTable {
    /// Checks each level (see [`Quota::check`]), naming the level in the error. Levels
    /// are not required to be ordered: an operator may well want a slower TRUSTED
    /// than VERIFIED, but nothing forces it.
    pub fn check(&self) -> Result<(), QuotaError> {
        self.newcomer.check().map_err(|e| e.in_level("newcomer"))?;
        self.trusted.check().map_err(|e| e.in_level("trusted"))?;
        self.verified.check().map_err(|e| e.in_level("verified"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unthrottled_table_is_valid() {
        assert_eq!(QuotaTable::UNTHROTTLED.check(), Ok(()));
    }

    #[test]
    fn defaults_are_valid_and_grow_with_trust() {
        let table = QuotaTable::default();
        assert_eq!(table.check(), Ok(()));
        let levels = [table.newcomer, table.trusted, table.verified];
        for pair in levels.windows(2) {
            let (lower, higher) = (pair[0], pair[1]);
            assert!(lower.per_minute < higher.per_minute);
            assert!(lower.per_hour < higher.per_hour);
            assert!(lower.per_day < higher.per_day);
            assert!(lower.min_gap_ms > higher.min_gap_ms);
        }
    }

    #[test]
    fn newcomer_keeps_the_issue_figures() {
        let q = Quota::NEWCOMER;
        assert_eq!((q.per_hour, q.per_day), (20, 100));
        assert!(q.min_gap_ms >= 20_000);
        assert!(u64::from(q.per_minute) * q.min_gap_ms <= MINUTE_MS as u64);
    }

    #[test]
    fn wire_form_uses_the_settings_route_names() {
        let json = serde_json::to_value(QuotaTable::default()).unwrap();
        let newcomer = &json["newcomer"];
        for key in [
            "per_minute",
            "per_hour",
            "per_day",
            "min_gap_ms",
            "jitter_ms",
            "max_in_flight",
        ] {
            assert!(newcomer.get(key).is_some(), "{key} missing in {newcomer}");
        }
        let back: QuotaTable = serde_json::from_value(json).unwrap();
        assert_eq!(back, QuotaTable::default());
    }

    #[test]
    fn max_in_flight_may_be_left_out_but_unknown_keys_are_refused() {
        let q: Quota = serde_json::from_str(
            r#"{"per_minute": 5, "per_hour": 20, "per_day": 100, "min_gap_ms": 2000, "jitter_ms": 0}"#,
        )
        .unwrap();
        assert_eq!(q.max_in_flight, DEFAULT_MAX_IN_FLIGHT);
        let typo = serde_json::from_str::<Quota>(
            r#"{"per_minute": 5, "per_hour": 20, "per_day": 100, "min_gap": 2000, "jitter_ms": 0}"#,
        );
        assert!(typo.is_err());
    }

    fn key_of(q: Quota) -> String {
        q.check().unwrap_err().key
    }

    #[test]
    fn bad_quotas_name_the_key_at_fault() {
        let ok = Quota {
            per_minute: 5,
            per_hour: 20,
            per_day: 100,
            min_gap_ms: 2_000,
            jitter_ms: 500,
            max_in_flight: 50,
        };
        assert_eq!(ok.check(), Ok(()));
        let cases = [
            (
                Quota {
                    per_minute: 0,
                    ..ok
                },
                "per_minute",
            ),
            (Quota { per_day: 0, ..ok }, "per_day"),
            (
                Quota {
                    max_in_flight: 0,
                    ..ok
                },
                "max_in_flight",
            ),
            (
                Quota {
                    per_minute: 30,
                    ..ok
                },
                "per_minute",
            ),
            (
                Quota {
                    per_hour: 200,
                    ..ok
                },
                "per_hour",
            ),
            (
                Quota {
                    per_day: MAX_PER_DAY + 1,
                    ..ok
                },
                "per_day",
            ),
            (
                Quota {
                    min_gap_ms: MAX_MIN_GAP_MS + 1,
                    ..ok
                },
                "min_gap_ms",
            ),
            (
                Quota {
                    jitter_ms: MAX_JITTER_MS + 1,
                    ..ok
                },
                "jitter_ms",
            ),
            (
                Quota {
                    min_gap_ms: 20_000,
                    ..ok
                },
                "per_minute",
            ),
            (
                Quota {
                    per_minute: 1,
                    per_hour: 100,
                    ..ok
                },
                "per_hour",
            ),
            (
                Quota {
                    per_hour: 4,
                    per_minute: 4,
                    ..ok
                },
                "per_day",
            ),
        ];
        for (quota, key) in cases {
            assert_eq!(key_of(quota), key, "{quota:?}");
        }
    }

    #[test]
    fn table_errors_name_the_level_and_read_well() {
        let table = QuotaTable {
            trusted: Quota {
                per_hour: 1,
                ..Quota::TRUSTED
            },
            ..QuotaTable::default()
        };
        let err = table.check().unwrap_err();
        assert_eq!(err.key, "trusted.per_minute");
        assert!(
            err.to_string().contains("per_minute ≤ per_hour ≤ per_day"),
            "{err}"
        );
        let gap = Quota {
            min_gap_ms: 30_000,
            ..Quota::NEWCOMER
        };
        assert!(
            gap.check()
                .unwrap_err()
                .message
                .contains("at most 2 sends fit")
        );
    }
}
