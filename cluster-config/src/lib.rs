//! The two things every wafleet cluster process must get the same way: its typed
//! configuration, and where each device lives.
//!
//! - [`shard_of`] and [`Placement`] map a device to its shard and a shard to the live
//!   node that should own it; the gateway and every node compute the same answer from
//!   the same member list (see [`placement`] for the algorithm and its measurements).
//!
//! # Layout
//!
//! - [`placement`]: [`shard_of`] (device → shard) and [`Placement`] (shard → node).
//! - `examples/placement.rs`: measures placement against its alternatives
//!   (`cargo run --release -p wafleet-cluster-config --example placement`).

#![warn(missing_docs)]

pub mod placement;

pub use placement::{Placement, PlacementError, shard_of};
