//! `[lease]`: how long a node's hold on a shard lasts and how often it renews it.

use std::time::Duration;

use serde::Deserialize;

use super::check::{self, Invalid};

/// The `[lease]` section (nodes only). A node serves a shard only while it holds the
/// shard's lease in the store; it renews by its own monotonic clock and stops serving
/// the moment a renewal has not succeeded within `ttl`. When a node dies, the others can
/// take its shards once its leases expire, so `ttl` bounds failover time from below.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseSettings {
    /// How long a lease lasts after its last renewal (`ttl_ms`, default 3,000). With
    /// the default the devices of a dead node can move about 3 s after its death, well
    /// inside the 5 s failover goal.
    #[serde(
        rename = "ttl_ms",
        default = "default_ttl",
        deserialize_with = "check::millis"
    )]
    pub ttl: Duration,
    /// How often a node renews its leases (`renew_interval_ms`, default 1,000). Must be
    /// less than half of `ttl`, so that a lease survives one failed renewal (a slow store
    /// round trip, a pause) and is renewed again before it expires.
    #[serde(
        rename = "renew_interval_ms",
        default = "default_renew_interval",
        deserialize_with = "check::millis"
    )]
    pub renew_interval: Duration,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings {
            ttl: default_ttl(),
            renew_interval: default_renew_interval(),
        }
    }
}

impl LeaseSettings {
    pub(crate) fn check(&self) -> Result<(), Invalid> {
        check::millis_in("lease.ttl_ms", self.ttl, 500, 600_000)?;
        check::millis_in("lease.renew_interval_ms", self.renew_interval, 50, 300_000)?;
        if self.renew_interval * 2 >= self.ttl {
            return Err(Invalid::new(
                "lease.renew_interval_ms",
                format!(
                    "{} ms must be less than half of lease.ttl_ms ({} ms), so a lease \
                     survives one failed renewal",
                    self.renew_interval.as_millis(),
                    self.ttl.as_millis()
                ),
            ));
        }
        Ok(())
    }
}

fn default_ttl() -> Duration {
    Duration::from_millis(3000)
}

fn default_renew_interval() -> Duration {
    Duration::from_millis(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_renew_well_before_expiry() {
        let lease = LeaseSettings::default();
        assert_eq!(lease.check(), Ok(()));
        assert!(lease.renew_interval * 2 < lease.ttl);
    }

    #[test]
    fn a_renewal_every_half_ttl_or_slower_is_refused() {
        let lease = LeaseSettings {
            ttl: Duration::from_millis(2000),
            renew_interval: Duration::from_millis(1000),
        };
        assert_eq!(lease.check().unwrap_err().key, "lease.renew_interval_ms");
    }

    #[test]
    fn out_of_range_durations_are_refused() {
        let lease = LeaseSettings {
            ttl: Duration::from_millis(100),
            renew_interval: Duration::from_millis(20),
        };
        assert_eq!(lease.check().unwrap_err().key, "lease.ttl_ms");
    }
}
