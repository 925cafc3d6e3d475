//! Typed configuration of `wafleet node` and `wafleet gateway`: a TOML file, with
//! environment variables over it.
//!
//! # Format
//!
//! One TOML file per process (`deploy/node.example.toml` and
//! `deploy/gateway.example.toml` list every key with its default and why it exists).
//! Sections: `[node]` or `[gateway]`, then `[cluster]` (shared, identical in every
//! process of a cluster), `[lease]` and `[recovery]` (nodes only), `[media]` (nodes and
//! gateways: both store media), `[store]`, `[redis]`, `[http]` (every HTTP listener's
//! timeouts and connection cap).
//!
//! - **Durations** are whole milliseconds, in keys that end in `_ms`
//!   (`heartbeat_interval_ms = 250`): one unit everywhere, no parsing of units, and the
//!   same text works in a file and in an environment variable.
//! - **Unknown keys are errors**, so a typo (or a node-only key in a gateway's file)
//!   never goes unnoticed.
//! - **Required keys** have no default because no default is safe: `node.name` /
//!   `gateway.name`, `cluster.cookie` and `gateway.seeds`.
//!
//! # Environment
//!
//! `WAFLEET__SECTION__KEY` overrides `key` of `[section]` (nested tables add a level:
//! `WAFLEET__STORE__SCYLLA__URIS`), and wins over the file. The value takes the type the
//! key has: digits for numbers, `true`/`false`, comma-separated items for lists
//! (`WAFLEET__NODE__SEEDS=node-1:4697,node-2:4697`), and an empty value unsets an optional
//! key. Secrets such as the cookie are best given this way rather than in the file.
//! `WAFLEET__*` variables that name no key are errors too.
//!
//! # Errors
//!
//! [`ConfigError`] names the file, the key, and whether the value came from the file,
//! the environment (which variable) or a default.

mod check;
mod cluster;
mod error;
mod gateway;
mod http;
mod lease;
mod link;
mod media;
mod node;
mod recovery;
mod redis;
mod source;
mod store;
mod tls;
mod webhooks;

pub use cluster::{ClusterSettings, Cookie};
pub use error::{ConfigError, Origin};
pub use gateway::{GatewaySection, GatewaySettings};
pub use http::HttpSection;
pub use lease::LeaseSettings;
pub use link::{LinkKind, LinkSettings, WhatsAppVersion};
pub use media::{
    MediaBackend, MediaFolderSettings, MediaKind, MediaLimits, MediaS3Settings, MediaSettings,
};
pub use node::{NodeSection, NodeSettings};
pub use recovery::RecoverySettings;
pub use redis::RedisSettings;
pub use store::{
    MasterKeySource, NoMasterKey, ScyllaSettings, SqliteSettings, StoreKind, StoreSettings,
};
pub use tls::{TlsFiles, TlsSettings};
pub use webhooks::{StandaloneSettings, WebhooksSection};

use check::Invalid;
use serde::de::DeserializeOwned;
use source::Source;

/// Types `source` as `T` and runs `T`'s checks, turning any failure into a
/// [`ConfigError`] that names the key and where its value came from.
fn typed<T: DeserializeOwned>(
    source: Source,
    check: fn(&T) -> Result<(), Invalid>,
) -> Result<T, ConfigError> {
    let (settings, origins) = source.deserialize::<T>()?;
    check(&settings).map_err(|invalid| origins.invalid(invalid.key, invalid.message))?;
    Ok(settings)
}
