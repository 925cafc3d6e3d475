//! The webhook settings rule: retry pacing, attempts and timeout, stored as one store
//! setting (JSON) that every node reads, like the trust-level table. A change made
//! through any gateway applies on every node within the settings refresh, or at once on
//! the nodes told to refresh.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backoff::fibonacci_delay;
use crate::settings::StoredSetting;

/// The store setting that holds [`WebhookSettings`] (JSON).
pub const WEBHOOK_SETTINGS: &str = "webhooks";

/// How deliveries are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// The first retry's delay; the n-th waits `base_delay_ms × fib(n)` (1, 1, 2, 3, 5 …).
    pub base_delay_ms: u64,
    /// No retry waits longer than this.
    pub max_delay_ms: u64,
    /// Attempts in all, after which a delivery is `dead`.
    pub max_attempts: u32,
    /// How long one attempt may take, connecting included.
    pub timeout_ms: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            base_delay_ms: 1_000,
            max_delay_ms: 3_600_000,
            max_attempts: 12,
            timeout_ms: 10_000,
        }
    }
}

/// The bounds every value must keep.
const MAX_ATTEMPTS: u32 = 100;
const MAX_DELAY_MS: u64 = 7 * 24 * 3_600_000;
const MAX_TIMEOUT_MS: u64 = 60_000;

impl WebhookSettings {
    /// Checks that the settings hold together; the message says what does not.
    pub fn check(&self) -> Result<(), String> {
        if self.base_delay_ms == 0 || self.base_delay_ms > MAX_DELAY_MS {
            return Err(format!("base_delay_ms must be 1 to {MAX_DELAY_MS}"));
        }
        if self.max_delay_ms < self.base_delay_ms || self.max_delay_ms > MAX_DELAY_MS {
            return Err(format!(
                "max_delay_ms must be at least base_delay_ms and at most {MAX_DELAY_MS}"
            ));
        }
        if self.max_attempts == 0 || self.max_attempts > MAX_ATTEMPTS {
            return Err(format!("max_attempts must be 1 to {MAX_ATTEMPTS}"));
        }
        if self.timeout_ms < 100 || self.timeout_ms > MAX_TIMEOUT_MS {
            return Err(format!("timeout_ms must be 100 to {MAX_TIMEOUT_MS}"));
        }
        Ok(())
    }

    /// The wait after the `failed`-th failed attempt (1 for the first): `base × fib(n)`,
    /// capped at `max_delay_ms`.
    pub fn retry_delay(&self, failed: u32) -> Duration {
        fibonacci_delay(self.base_delay_ms, failed, self.max_delay_ms)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

impl StoredSetting for WebhookSettings {
    const KEY: &'static str = WEBHOOK_SETTINGS;

    fn check(&self) -> Result<(), String> {
        WebhookSettings::check(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_follow_fibonacci_from_the_base_up_to_the_cap() {
        let settings = WebhookSettings {
            base_delay_ms: 100,
            max_delay_ms: 1_000,
            ..WebhookSettings::default()
        };
        let delays: Vec<u64> = (1..=9)
            .map(|n| settings.retry_delay(n).as_millis() as u64)
            .collect();
        assert_eq!(delays, [100, 100, 200, 300, 500, 800, 1000, 1000, 1000]);
        assert_eq!(
            settings.retry_delay(500).as_millis(),
            1000,
            "no overflow far out"
        );
    }

    #[test]
    fn settings_that_do_not_hold_together_are_refused() {
        let good = WebhookSettings::default();
        assert!(good.check().is_ok());
        for bad in [
            WebhookSettings {
                base_delay_ms: 0,
                ..good
            },
            WebhookSettings {
                max_delay_ms: 10,
                base_delay_ms: 20,
                ..good
            },
            WebhookSettings {
                max_attempts: 0,
                ..good
            },
            WebhookSettings {
                timeout_ms: 10,
                ..good
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
        assert_eq!(
            crate::settings::parse::<WebhookSettings>(r#"{"base_delay_ms": 5}"#),
            None,
            "every field is required"
        );
    }
}
