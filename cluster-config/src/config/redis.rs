//! `[redis]`: the event streams that carry device events from nodes to gateways.

use std::fmt;

use serde::Deserialize;

use super::check::{self, Invalid};

/// The `[redis]` section. Nodes append each device's events to a Redis stream; every
/// gateway replica reads them to serve SSE, so a client can reconnect to any replica
/// and resume with `Last-Event-ID`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// The server, as `redis://[user:password@]host:port[/db]` (or `rediss://` for TLS,
    /// `unix://` for a socket); default `redis://127.0.0.1:6379`. `Debug` hides the
    /// password.
    #[serde(default = "default_url")]
    pub url: String,
    /// The most events kept per device stream (`XADD MAXLEN ~`; default 1,000, 10 to
    /// 1,000,000). It bounds Redis memory and is how far back a reconnecting SSE client
    /// can resume.
    #[serde(default = "default_stream_max_len")]
    pub stream_max_len: u64,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            url: default_url(),
            stream_max_len: default_stream_max_len(),
        }
    }
}

impl RedisSettings {
    pub(crate) fn check(&self) -> Result<(), Invalid> {
        let schemes = ["redis://", "rediss://", "unix://", "redis+unix://"];
        let rest = schemes.iter().find_map(|s| self.url.strip_prefix(s));
        if rest.is_none_or(str::is_empty) {
            return Err(Invalid::new(
                "redis.url",
                format!(
                    "`{}` is not a Redis URL: expected redis://host:port (or rediss://, unix://)",
                    redacted(&self.url)
                ),
            ));
        }
        check::within("redis.stream_max_len", self.stream_max_len, 10, 1_000_000)
    }
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &redacted(&self.url))
            .field("stream_max_len", &self.stream_max_len)
            .finish()
    }
}

/// `url` with any password replaced by `***`.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{}", &rest[at + 1..])
        }
        None => url.to_owned(),
    }
}

fn default_url() -> String {
    "redis://127.0.0.1:6379".into()
}

fn default_stream_max_len() -> u64 {
    1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_debug_output() {
        let redis = RedisSettings {
            url: "redis://app:s3cret@redis:6379/0".into(),
            ..RedisSettings::default()
        };
        let shown = format!("{redis:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("redis://app:***@redis:6379/0"), "{shown}");
    }

    #[test]
    fn urls_need_a_redis_scheme() {
        assert_eq!(RedisSettings::default().check(), Ok(()));
        for bad in ["", "127.0.0.1:6379", "http://redis:6379", "redis://"] {
            let redis = RedisSettings {
                url: bad.into(),
                ..RedisSettings::default()
            };
            assert_eq!(redis.check().unwrap_err().key, "redis.url", "{bad}");
        }
    }
}
