//! `[webhooks]`: how a node sends webhook deliveries (the retry pacing is a shared
//! setting changed through the API, `PUT /v1/settings/webhooks`, not configuration).

use std::path::Path;

use serde::Deserialize;

use super::ConfigError;
use super::check::{self, Invalid};
use super::source::{Source, process_env};

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
/// `WAFLEET__WEBHOOKS__*`. Other sections' variables are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct StandaloneSettings {
    /// `[webhooks]`.
    #[serde(default)]
    pub webhooks: WebhooksSection,
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
        super::typed(source, |s: &StandaloneSettings| s.webhooks.check())
    }
}

#[cfg(test)]
mod tests {
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
}
