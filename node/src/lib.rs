//! A wafleet node: device actors, WhatsApp links, stores and the event bus.
//!
//! # Layout
//! - [`api`]: the one device command ([`api::DeviceCommand`]), its [`api::Reply`], its
//!   errors ([`FleetError`]) and the types that cross crates, with their wire form.
//! - [`fleet`]: [`Fleet`], the devices of this node; [`Fleet::execute`] handles every
//!   command once.
//! - [`catalog`]: [`catalog::Catalog`], store-backed reads and owner-free writes that
//!   gateway and node both use.
//! - [`outbox`], [`settings`]: the rules for accepting a message and for the shared
//!   settings (the trust-level table), each written once.
//! - [`device_supervisor`], [`device_actor`]: the actors (tree below).
//! - [`link`]: the [`link::LinkFactory`] abstraction and the simulated link.
//! - [`events`]: device events and the in-process bus behind SSE.
//! - [`store`]: the [`store::Store`] trait, its records, shard leases and fences, the
//!   embedded SQLite backend and the conformance suite.
//! - [`vault`], [`seal`]: sealed (AES-256-GCM) per-device credentials and link state.
//! - [`context`]: what all actors of a node share, and the node's timings.
//! - [`cluster`]: joining a cluster (ractor_cluster, cookie) and membership by heartbeats.
//! - [`process`]: a cluster node as a process (fleet, cluster, shard keeper, its HTTP
//!   routes, the SIGTERM handoff); `wafleet node` only opens what it runs with.
//! - [`metrics`]: every metric the node records; `census`: what the gauges know of the
//!   devices hosted here (statuses, recoveries under way).
//! - [`rate_limit`]: the sending policy of a device ([`rate_limit::Limiter`]), pure and
//!   clock-free; [`rate_limiter`]: the per-device actor that applies it to every send,
//!   and the trust-level lifecycle.
//!
//! # Supervision
//!
//! ```text
//! DeviceSupervisor                 spawns, stops, restarts with backoff, FAILED after N crashes
//! └── DeviceActor(device_id)       one per running device
//!     ├── LinkSession              the connection to WhatsApp (a task it owns)
//!     └── RateLimiter(device_id)   every send passes through it (linked child actor)
//! ```

pub mod api;
pub mod catalog;
mod census;
pub mod clock;
pub mod cluster;
pub mod context;
pub mod device_actor;
pub mod device_supervisor;
pub mod events;
pub mod fleet;
pub mod link;
pub mod metrics;
pub mod outbox;
pub mod process;
pub mod rate_limit;
pub mod rate_limiter;
pub mod seal;
pub mod settings;
pub mod store;
pub mod vault;

pub use api::{DeviceCommand, FleetError, NewDevice, Reply, SendText, Sent};
pub use context::NodeConfig;
pub use fleet::Fleet;
pub use outbox::accept_text;
