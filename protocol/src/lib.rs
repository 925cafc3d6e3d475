//! prost messages that cross a process boundary.
//!
//! # Layout
//! - [`sim`]: the frames between a device's simulated link and `wafleet sim`
//!   (see `proto/sim.proto` for the handshake).
//!
//! The gateway-node commands and the device events that travel between processes come
//! with the cluster.

/// Frames of the simulated WhatsApp network (`proto/sim.proto`).
#[allow(missing_docs, unreachable_pub, clippy::all, missing_debug_implementations)]
pub mod sim {
    include!(concat!(env!("OUT_DIR"), "/wafleet.sim.rs"));
}

pub use prost::Message;
