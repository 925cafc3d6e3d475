//! The simulated WhatsApp network (`wafleet sim`) and, later, the load and failover
//! scenario driver (`wafleet-load`).
//!
//! # Layout
//! - [`sim`]: a simulated WhatsApp network: phones, QR scans, pairing codes, delivery
//!   receipts, inbound messages, unlinks and bans, reachable by devices over a WebSocket
//!   (`GET /ws`) or in process ([`sim::Network::attach`]), and driven by tests through a
//!   control API under `/sim/`.

pub mod scenario;
pub mod sim;
