//! The send retry settings (`/v1/settings/retries`, seed 004's `SCHEDULER_BASE_DELAY_MS`
//! and `SCHEDULER_MAX_ATTEMPTS`): a send that fails is tried again after
//! `base × fib(n)` ([`crate::backoff`]), up to `max_attempts` attempts in all. One store
//! setting (JSON) for the cluster, like the webhook retry settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backoff::fibonacci_delay;
use crate::settings::StoredSetting;

/// The store setting that holds [`RetrySettings`].
pub const RETRY_SETTINGS: &str = "send_retries";

/// Longest base delay: a day.
const MAX_BASE_DELAY_MS: u64 = 24 * 3_600_000;
/// Most attempts.
const MAX_ATTEMPTS: u32 = 50;
/// No retry waits longer than this, however many attempts came before.
const MAX_DELAY: Duration = Duration::from_secs(24 * 3_600);

/// How failed sends are tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// The first retry's delay; the n-th waits `base_delay_ms × fib(n)` (1, 1, 2, 3, 5 …).
    pub base_delay_ms: u64,
    /// Attempts in all (1: never retried).
    pub max_attempts: u32,
}

impl Default for RetrySettings {
    /// Seed 004's example: one second, eight attempts.
    fn default() -> Self {
        RetrySettings {
            base_delay_ms: 1_000,
            max_attempts: 8,
        }
    }
}

impl RetrySettings {
    /// The wait after the `failed`-th failed attempt (1 for the first), at most a day;
    /// `None` once `failed` attempts are all there are.
    pub fn retry_after(&self, failed: u32) -> Option<Duration> {
        (failed < self.max_attempts)
            .then(|| fibonacci_delay(self.base_delay_ms, failed, MAX_DELAY.as_millis() as u64))
    }
}

impl StoredSetting for RetrySettings {
    const KEY: &'static str = RETRY_SETTINGS;

    fn check(&self) -> Result<(), String> {
        if self.base_delay_ms == 0 || self.base_delay_ms > MAX_BASE_DELAY_MS {
            return Err(format!("base_delay_ms must be 1 to {MAX_BASE_DELAY_MS}"));
        }
        if self.max_attempts == 0 || self.max_attempts > MAX_ATTEMPTS {
            return Err(format!("max_attempts must be 1 to {MAX_ATTEMPTS}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::parse;

    #[test]
    fn failed_sends_wait_the_base_times_fibonacci_until_the_attempts_run_out() {
        let settings = RetrySettings {
            base_delay_ms: 500,
            max_attempts: 5,
        };
        let waits: Vec<Option<u64>> = (1..=5)
            .map(|n| settings.retry_after(n).map(|d| d.as_millis() as u64))
            .collect();
        assert_eq!(
            waits,
            [Some(500), Some(500), Some(1_000), Some(1_500), None]
        );
        let once = RetrySettings {
            max_attempts: 1,
            ..settings
        };
        assert_eq!(once.retry_after(1), None);
    }

    #[test]
    fn settings_out_of_bounds_do_not_load() {
        assert!(RetrySettings::default().check().is_ok());
        for json in [
            r#"{"base_delay_ms": 0, "max_attempts": 3}"#,
            r#"{"base_delay_ms": 1000, "max_attempts": 0}"#,
            r#"{"base_delay_ms": 1000, "max_attempts": 51}"#,
            r#"{"base_delay_ms": 86400001, "max_attempts": 3}"#,
            r#"{"base_delay_ms": 1000}"#,
        ] {
            assert_eq!(parse::<RetrySettings>(json), None, "{json}");
        }
        assert_eq!(
            parse::<RetrySettings>(r#"{"base_delay_ms": 250, "max_attempts": 3}"#),
            Some(RetrySettings {
                base_delay_ms: 250,
                max_attempts: 3
            })
        );
    }
}
