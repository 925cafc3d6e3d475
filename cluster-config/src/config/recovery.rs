//! `[recovery]`: how fast a node starts devices it takes over, so failover is no storm.

use std::time::Duration;

use serde::Deserialize;

use super::check::{self, Invalid};

/// The `[recovery]` section (nodes only). When a node takes over the shards of a dead
/// one, or restarts, it starts thousands of devices from stored credentials; these
/// settings pace those starts so they never become a reconnect storm against WhatsApp.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverySettings {
    /// At most this many devices connect (dial + handshake) at once (default 128,
    /// 1 to 10,000).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Each device waits a random delay up to this before it dials (`jitter_ms`, default
    /// 200, at most 60,000), which spreads a burst of starts over time.
    #[serde(
        rename = "jitter_ms",
        default = "default_jitter",
        deserialize_with = "check::millis"
    )]
    pub jitter: Duration,
    /// Every this often a node starts the devices of its shards that should run and do
    /// not (a start that failed, a shard that could not be read) and stops those of
    /// shards it no longer holds (`reconcile_ms`, default 5,000, 100 to 600,000).
    #[serde(
        rename = "reconcile_ms",
        default = "default_reconcile",
        deserialize_with = "check::millis"
    )]
    pub reconcile: Duration,
}

impl Default for RecoverySettings {
    fn default() -> Self {
        RecoverySettings {
            concurrency: default_concurrency(),
            jitter: default_jitter(),
            reconcile: default_reconcile(),
        }
    }
}

impl RecoverySettings {
    pub(crate) fn check(&self) -> Result<(), Invalid> {
        check::within("recovery.concurrency", self.concurrency, 1, 10_000)?;
        check::millis_in("recovery.jitter_ms", self.jitter, 0, 60_000)?;
        check::millis_in("recovery.reconcile_ms", self.reconcile, 100, 600_000)
    }
}

fn default_concurrency() -> usize {
    128
}

fn default_jitter() -> Duration {
    Duration::from_millis(200)
}

fn default_reconcile() -> Duration {
    Duration::from_secs(5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_zero_concurrency_is_not() {
        assert_eq!(RecoverySettings::default().check(), Ok(()));
        let recovery = RecoverySettings {
            concurrency: 0,
            ..RecoverySettings::default()
        };
        assert_eq!(recovery.check().unwrap_err().key, "recovery.concurrency");
    }
}
