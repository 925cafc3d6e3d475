//! prost messages that cross a process boundary.
//!
//! # Layout
//! - [`sim`]: the frames between a device's simulated link and `wafleet sim`
//!   (see `proto/sim.proto` for the handshake).
//! - [`cluster`]: what nodes and gateways tell each other (`proto/cluster.proto`).
//! - [`node_api`]: device commands from a gateway to the owning node, and the replies
//!   (`proto/node_api.proto`).

/// Messages between cluster processes (`proto/cluster.proto`).
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    missing_debug_implementations
)]
pub mod cluster {
    include!(concat!(env!("OUT_DIR"), "/wafleet.cluster.rs"));
}

/// Device commands from a gateway to a node, and replies (`proto/node_api.proto`).
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    missing_debug_implementations
)]
pub mod node_api {
    include!(concat!(env!("OUT_DIR"), "/wafleet.node_api.rs"));
}

/// Frames of the simulated WhatsApp network (`proto/sim.proto`).
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    missing_debug_implementations
)]
pub mod sim {
    include!(concat!(env!("OUT_DIR"), "/wafleet.sim.rs"));
}

pub use prost::Message;

/// The proof a returning device gives the simulator (see `proto/sim.proto`):
/// `SHA-256("wafleet-sim-proof-v1" || shared_secret || nonce)`, where `shared_secret` is
/// the X25519 agreement between the device's identity key and the simulator's ephemeral
/// key for the connection. Both sides compute it with this one function.
pub fn sim_proof_mac(shared_secret: &[u8; 32], nonce: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(b"wafleet-sim-proof-v1");
    hasher.update(shared_secret);
    hasher.update(nonce);
    hasher.finalize().into()
}
