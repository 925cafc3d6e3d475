//! A wafleet node: device actors, WhatsApp links, stores and the event bus.
//!
//! # Layout
//! - [`access`]: who is calling and what they may do: tenants, API keys, users, login
//!   tokens, the audit log's writer.
//! - [`api`]: the one device command ([`api::DeviceCommand`]), its [`api::Reply`], its
//!   errors ([`FleetError`]) and the types that cross crates, with their wire form.
//! - [`fleet`]: [`Fleet`], the devices of this node; [`Fleet::execute`] handles every
//!   command once.
//! - [`catalog`]: [`catalog::Catalog`], store-backed reads and owner-free writes that
//!   gateway and node both use.
//! - [`content`]: what a message says (its text, and a media file) as one stored text;
//!   [`quote`]: the one rule of a reply (which message a send may quote).
//! - [`outbox`], [`settings`]: the rules for accepting a message (now or scheduled)
//!   and for the shared settings (the trust-level table), each written once;
//!   `cancellation`: the rule for cancelling a message that has not left.
//! - [`contacts`]: the tenants' contact books ([`contacts::ContactBook`]) and their
//!   rules; [`phone`]: the one rule of a phone number; [`group`]: the one rule of a
//!   group id, and the bounds of subjects, participant lists and mentions.
//! - [`device`]: the device actor, one file per concern (status machine, connecting,
//!   outbox, inbound, its limiter child), [`device::supervisor`] (tree below), and the
//!   registry of the devices running on the node and their limiters.
//! - [`link`]: the [`link::LinkFactory`] abstraction and the simulated link.
//! - [`events`]: device events and the in-process bus behind SSE.
//! - [`store`]: the [`store::Store`] trait, its records, shard leases and fences, the
//!   embedded SQLite backend and the conformance suite.
//! - [`media`]: media bytes behind [`media::MediaStore`]: a folder of this machine or an
//!   S3-compatible object store, streamed both ways, capped while streaming.
//! - [`vault`], [`seal`]: sealed (AES-256-GCM) per-device credentials and link state.
//! - [`context`]: what all actors of a node share (store, vault, bus, links, quotas, the
//!   registry of running devices), and the node's timings.
//! - [`cluster`]: joining a cluster (ractor_cluster, cookie) and membership by heartbeats.
//! - [`process`]: a cluster node as a process (fleet, cluster, shard keeper, its HTTP
//!   routes, the SIGTERM handoff); `wafleet node` only opens what it runs with.
//! - [`open_files`]: the open-files limit raised at start, and running out of files said
//!   once ([`open_files::Listener`] is every server's accept loop).
//! - [`egress`]: where wafleet may send HTTP an operator names (a webhook's URL): the
//!   SSRF check, resolving once and checking every address.
//! - [`metrics`]: every metric the node records; `census`: what the gauges know of the
//!   devices hosted here (statuses, recoveries under way).
//! - [`limits`]: how fast a device may send: the pure, clock-free sending policy
//!   ([`limits::policy::SendPolicy`]); the per-device actor that applies it to every send
//!   ([`limits::actor::RateLimiter`]); trust levels and promotion ([`limits::trust`]);
//!   what the limits endpoint shows ([`limits::view`]).
//!
//! Calls go one way, from the fleet down: [`fleet`] uses [`device`] and [`limits`]; a
//! device actor uses [`limits`] (its limiter child); both kinds of actor use [`context`],
//! which calls into no actor. The one edge back is a type: the context holds the
//! registry of running actors (`device::registry::Running`), which names their message
//! types.
//!
//! # Supervision
//!
//! ```text
//! DeviceSupervisor                 spawns, stops, restarts with backoff, FAILED after N crashes
//! └── DeviceActor(device_id)       one per running device
//!     ├── LinkSession              the connection to WhatsApp (a task it owns)
//!     └── RateLimiter(device_id)   every send passes through it (linked child actor)
//! ```

pub mod access;
pub mod api;
pub mod backoff;
mod cancellation;
pub mod catalog;
mod census;
pub mod clock;
pub mod cluster;
pub mod contacts;
pub mod content;
pub mod context;
pub mod device;
pub mod egress;
pub mod events;
pub mod fleet;
pub mod group;
pub mod jobs;
pub mod limits;
pub mod link;
pub mod media;
pub mod metrics;
pub mod open_files;
pub mod outbox;
pub mod phone;
pub mod process;
pub mod quote;
pub mod seal;
pub mod settings;
pub mod store;
pub mod vault;
pub mod webhooks;

pub use api::{DeviceCommand, FleetError, NewDevice, Reply, SendText, Sent};
pub use context::NodeConfig;
pub use fleet::Fleet;
pub use outbox::accept_text;
