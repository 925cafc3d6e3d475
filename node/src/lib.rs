//! A wafleet node: device actors, WhatsApp links, stores and the event bus.
//!
//! # Layout
//! - [`store`]: the [`store::Store`] trait, its records, the embedded SQLite backend and
//!   the conformance suite.
//! - [`seal`]: AES-256-GCM sealing of credentials and link state.

pub mod seal;
pub mod store;
