//! The two things every wafleet cluster process must get the same way: its typed
//! configuration, and where each device lives (its node, and with a simulated network
//! of several processes, its simulator).
//!
//! - [`NodeSettings::load`] / [`GatewaySettings::load`] read `wafleet node --config FILE`
//!   and `wafleet gateway --config FILE`: a TOML file with `WAFLEET__SECTION__KEY`
//!   environment variables over it, checked key by key (see [`config`] for the format).
//! - [`shard_of`] and [`Placement`] map a device to its shard and a shard to the live
//!   node that should own it; the gateway and every node compute the same answer from
//!   the same member list (see [`placement`] for the algorithm and its measurements).
//!
//! # Layout
//!
//! - [`config`]: the settings of each process, one file per section under `config/`
//!   (`node`, `gateway`, `cluster`, `lease`, `store`, `redis`, `recovery`, `link`,
//!   `webhooks`, `http`, `media`), the layered
//!   file + environment source (`source`), shared checks (`check`) and [`ConfigError`].
//! - [`placement`]: [`shard_of`] (device → shard) and [`Placement`] (shard → node).
//! - [`sims`]: [`sim_of`], which of several simulator processes serves a device (the
//!   links and the load driver share it).
//! - [`quota`]: the sending [`Quota`] of a device and the [`QuotaTable`] per trust level,
//!   with their defaults and checks (the value of `/v1/settings/trust-levels`).
//! - `examples/placement.rs`: measures placement against its alternatives
//!   (`cargo run --release -p wafleet-cluster-config --example placement`).

#![warn(missing_docs)]

pub mod config;
pub mod placement;
pub mod quota;
pub mod sims;

pub use config::{
    ClusterSettings, ConfigError, Cookie, GatewaySection, GatewaySettings, HttpSection,
    LeaseSettings, LinkKind, LinkSettings, MasterKeySource, MediaBackend, MediaFolderSettings,
    MediaKind, MediaLimits, MediaS3Settings, MediaSettings, NoMasterKey, NodeSection, NodeSettings,
    Origin, RecoverySettings, RedisSettings, ScyllaSettings, SqliteSettings, StandaloneSettings,
    StoreKind, StoreSettings, TlsFiles, TlsSettings, WebhooksSection, WhatsAppVersion,
};
pub use placement::{Placement, PlacementError, shard_of};
pub use quota::{Quota, QuotaError, QuotaTable};
pub use sims::sim_of;
