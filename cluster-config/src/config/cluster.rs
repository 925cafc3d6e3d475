//! `[cluster]`: what every process of one cluster (nodes and gateways) must agree on.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::check::{self, Invalid};
use super::tls::TlsSettings;

/// The `[cluster]` section, shared by `wafleet node` and `wafleet gateway`. Copy it
/// unchanged into every process's file: processes that disagree on `cookie` cannot talk,
/// and processes that disagree on `shards` route devices to different nodes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// The shared secret (ractor_cluster's "magic cookie") a peer must present to join.
    /// Required, with no default: nodes with different cookies refuse each other, and a
    /// built-in cookie would let anyone who can reach the port join the cluster. At least
    /// 16 characters, no whitespace; generate one with `openssl rand -hex 32`.
    pub cookie: Cookie,
    /// The number of shards devices are hashed into (`hash(device_id) mod shards`).
    /// Fixed for the life of the cluster: changing it moves almost every device. Leases
    /// are per shard, so it also bounds the lease rows (1 to 65,536; default 1,024).
    #[serde(default = "default_shards")]
    pub shards: u32,
    /// How often a node tells the others it is alive (`heartbeat_interval_ms`, default
    /// 250). A TCP connection can stay open to a frozen process, so liveness comes from
    /// these beats, not from the connection.
    #[serde(
        rename = "heartbeat_interval_ms",
        default = "default_heartbeat_interval",
        deserialize_with = "check::millis"
    )]
    pub heartbeat_interval: Duration,
    /// A node not heard from for this long is dead (`failure_timeout_ms`, default 1,500).
    /// A dead node is noticed at most `failure_timeout + heartbeat_interval` after its
    /// last beat: 1.75 s with the defaults. Must span at least three heartbeats, so one
    /// late or lost beat never declares a live node dead.
    #[serde(
        rename = "failure_timeout_ms",
        default = "default_failure_timeout",
        deserialize_with = "check::millis"
    )]
    pub failure_timeout: Duration,
    /// `[cluster.tls]`: the certificates of mutual TLS between processes (off when
    /// absent, with a warning at start; see [`TlsSettings`]).
    #[serde(default)]
    pub tls: TlsSettings,
}

impl ClusterSettings {
    /// `shards` when the file does not say: also the shard count of processes that have
    /// no `[cluster]` section (`wafleet standalone`) and of stores opened without one.
    pub const DEFAULT_SHARDS: u32 = 1024;

    /// Settings with `cookie` and every other key at its default (for tests and tools;
    /// processes load theirs from a file).
    pub fn with_cookie(cookie: impl Into<String>) -> ClusterSettings {
        ClusterSettings {
            cookie: Cookie::new(cookie),
            shards: default_shards(),
            heartbeat_interval: default_heartbeat_interval(),
            failure_timeout: default_failure_timeout(),
            tls: TlsSettings::default(),
        }
    }

    /// The longest a dead node can go unnoticed: `failure_timeout + heartbeat_interval`.
    pub fn detection_bound(&self) -> Duration {
        self.failure_timeout + self.heartbeat_interval
    }

    pub(crate) fn check(&self) -> Result<(), Invalid> {
        self.cookie.check()?;
        self.tls.check()?;
        check::within("cluster.shards", self.shards, 1, 65_536)?;
        check::millis_in(
            "cluster.heartbeat_interval_ms",
            self.heartbeat_interval,
            10,
            10_000,
        )?;
        check::millis_in(
            "cluster.failure_timeout_ms",
            self.failure_timeout,
            100,
            60_000,
        )?;
        if self.failure_timeout < self.heartbeat_interval * 3 {
            return Err(Invalid::new(
                "cluster.failure_timeout_ms",
                format!(
                    "{} ms must be at least 3 × cluster.heartbeat_interval_ms ({} ms), \
                     or one late heartbeat declares a live node dead",
                    self.failure_timeout.as_millis(),
                    self.heartbeat_interval.as_millis()
                ),
            ));
        }
        Ok(())
    }
}

fn default_shards() -> u32 {
    ClusterSettings::DEFAULT_SHARDS
}

fn default_heartbeat_interval() -> Duration {
    Duration::from_millis(250)
}

fn default_failure_timeout() -> Duration {
    Duration::from_millis(1500)
}

/// The cluster's shared secret. Its `Debug` does not show it, so settings can be logged.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Cookie(String);

impl Cookie {
    /// The shortest cookie accepted.
    pub const MIN_LEN: usize = 16;

    /// Wraps `secret` (checked when a configuration is loaded, not here).
    pub fn new(secret: impl Into<String>) -> Cookie {
        Cookie(secret.into())
    }

    /// The secret itself, to hand to ractor_cluster. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn check(&self) -> Result<(), Invalid> {
        let key = "cluster.cookie";
        if self.0.chars().count() < Cookie::MIN_LEN {
            return Err(Invalid::new(
                key,
                format!(
                    "too short ({} characters): use at least {}, e.g. `openssl rand -hex 32`",
                    self.0.chars().count(),
                    Cookie::MIN_LEN
                ),
            ));
        }
        if self.0.len() > 1024 || self.0.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Invalid::new(
                key,
                "must be at most 1,024 characters with no whitespace or control characters",
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for Cookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cookie(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOKIE: &str = "0123456789abcdef0123";

    #[test]
    fn defaults_detect_a_dead_node_within_two_seconds() {
        let settings = ClusterSettings::with_cookie(COOKIE);
        assert_eq!(settings.check(), Ok(()));
        assert_eq!(settings.shards, 1024);
        assert!(settings.detection_bound() <= Duration::from_secs(2));
    }

    #[test]
    fn short_empty_or_spaced_cookies_are_refused() {
        for bad in [
            "",
            "secret",
            "0123456789abcde",
            "0123456789 abcdef0123",
            "0123456789abcdef\n",
        ] {
            let err = ClusterSettings::with_cookie(bad).check().unwrap_err();
            assert_eq!(err.key, "cluster.cookie", "{bad:?}");
        }
    }

    #[test]
    fn the_cookie_never_shows_in_debug_output() {
        let shown = format!("{:?}", ClusterSettings::with_cookie(COOKIE));
        assert!(!shown.contains(COOKIE), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn the_failure_timeout_spans_three_heartbeats() {
        let mut settings = ClusterSettings::with_cookie(COOKIE);
        settings.heartbeat_interval = Duration::from_millis(600);
        let err = settings.check().unwrap_err();
        assert_eq!(err.key, "cluster.failure_timeout_ms");
        settings.failure_timeout = Duration::from_millis(1800);
        assert_eq!(settings.check(), Ok(()));
    }

    #[test]
    fn zero_shards_are_refused() {
        let mut settings = ClusterSettings::with_cookie(COOKIE);
        settings.shards = 0;
        assert_eq!(settings.check().unwrap_err().key, "cluster.shards");
    }
}
