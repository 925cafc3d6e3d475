//! `[webhooks]`: how a node sends webhook deliveries (the retry pacing is a shared
//! setting changed through the API, `PUT /v1/settings/webhooks`, not configuration).

use std::path::Path;

use serde::Deserialize;

use super::check::{self, Invalid};
use super::source::{Source, process_env};
use super::{ConfigError, HttpSection};

/// The `[webhooks]` section (nodes, and standalone through the environment).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksSection {
    /// Whether a webhook may point at loopback, private, link-local or metadata
    /// addresses (default false: such URLs are refused with 422, and a name that
    /// resolves to one is not connected to). Turn on only where receivers live on a
    /// private network you trust.
    #[serde(default)]
    pub allow_private_targets: bool,
    /// Deliveries in flight at once from one node (default 256, 1 to 10,000); one
    /// receiver gets at most 32 of them.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Delivered events are kept in the delivery log this many hours (default 168,
    /// 1 to 8,760), then pruned. Pending, failed and dead ones are kept until they
    /// settle or are replayed.
    #[serde(default = "default_retention_hours")]
    pub retention_hours: u64,
}

impl Default for WebhooksSection {
    fn default() -> Self {
        WebhooksSection {
            allow_private_targets: false,
            concurrency: default_concurrency(),
            retention_hours: default_retention_hours(),
        }
    }
}

impl WebhooksSection {
    pub(crate) fn check(&self) -> Result<(), Invalid> {
        check::within("webhooks.concurrency", self.concurrency, 1, 10_000)?;
        check::within("webhooks.retention_hours", self.retention_hours, 1, 8_760)
    }
}

fn default_concurrency() -> usize {
    256
}

fn default_retention_hours() -> u64 {
    168
}

/// What `wafleet standalone` reads from the environment (it has no config file):
/// `WAFLEET__WEBHOOKS__*`, `WAFLEET__HTTP__*` (`wafleet sim` reads that too) and
/// `WAFLEET__MEDIA__*` (where the folder backend's default path is the data folder's
/// `media/`). Other sections' variables are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct StandaloneSettings {
    /// `[webhooks]`.
    #[serde(default)]
    pub webhooks: WebhooksSection,
    /// `[http]`: the API listener's timeouts and connection cap.
    #[serde(default)]
    pub http: HttpSection,
    /// `[media]`: where media files are kept, and each type's size limit.
    #[serde(default)]
    pub media: super::MediaSettings,
}

impl StandaloneSettings {
    /// The process's `WAFLEET__*` variables.
    pub fn from_env() -> Result<StandaloneSettings, ConfigError> {
        StandaloneSettings::from_vars(process_env()?)
    }

    /// The given variables (tests).
    pub fn from_vars<I, K, V>(env: I) -> Result<StandaloneSettings, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let source = Source::parse(Path::new("(environment)"), "", env)?;
        super::typed(source, |s: &StandaloneSettings| {
            s.webhooks.check()?;
            s.http.check()?;
            s.media.check()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn standalone_reads_the_webhooks_section_from_the_environment() {
        let settings = StandaloneSettings::from_vars([
            ("WAFLEET__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true"),
            ("WAFLEET__CLUSTER__COOKIE", "ignored here"),
        ])
        .unwrap();
        assert!(settings.webhooks.allow_private_targets);
        assert_eq!(settings.webhooks.concurrency, 256);
        let none = StandaloneSettings::from_vars(Vec::<(String, String)>::new()).unwrap();
        assert!(!none.webhooks.allow_private_targets);
        let bad = StandaloneSettings::from_vars([("WAFLEET__WEBHOOKS__CONCURRENCY", "0")]);
        assert!(bad.is_err());
    }

    #[test]
    fn standalone_reads_the_http_section_from_the_environment() {
        let none = StandaloneSettings::from_vars(Vec::<(String, String)>::new()).unwrap();
        assert_eq!(none.http, HttpSection::default());
        assert_eq!(none.http.header_read_timeout, Duration::from_secs(10));
        assert_eq!(none.http.idle_timeout, Duration::from_secs(75));
        assert_eq!(none.http.request_timeout, Duration::from_secs(30));
        assert_eq!(none.http.max_connections, 16_384);
        let settings = StandaloneSettings::from_vars([
            ("WAFLEET__HTTP__HEADER_READ_TIMEOUT_MS", "2000"),
            ("WAFLEET__HTTP__IDLE_TIMEOUT_MS", "1500"),
            ("WAFLEET__HTTP__REQUEST_TIMEOUT_MS", "500"),
            ("WAFLEET__HTTP__MAX_CONNECTIONS", "3000"),
        ])
        .unwrap();
        assert_eq!(settings.http.header_read_timeout, Duration::from_secs(2));
        assert_eq!(settings.http.idle_timeout, Duration::from_millis(1500));
        assert_eq!(settings.http.request_timeout, Duration::from_millis(500));
        assert_eq!(settings.http.max_connections, 3000);
        for (var, value, key) in [
            (
                "WAFLEET__HTTP__HEADER_READ_TIMEOUT_MS",
                "50",
                "http.header_read_timeout_ms",
            ),
            (
                "WAFLEET__HTTP__IDLE_TIMEOUT_MS",
                "0",
                "http.idle_timeout_ms",
            ),
            (
                "WAFLEET__HTTP__REQUEST_TIMEOUT_MS",
                "3600001",
                "http.request_timeout_ms",
            ),
            (
                "WAFLEET__HTTP__MAX_CONNECTIONS",
                "0",
                "http.max_connections",
            ),
        ] {
            let err = StandaloneSettings::from_vars([(var, value)]).unwrap_err();
            assert!(
                matches!(&err, ConfigError::InvalidValue { key: k, .. } if k == key),
                "{var}={value}: {err:?}"
            );
        }
    }
}
