//! The load and failover scenario driver (`wafleet-load`), and the process helpers the
//! workspace's tests share with it.
//!
//! # Layout
//! - [`scenario`]: the scenarios (`idle`, `failover`, `rolling`, `routing`, `throughput`),
//!   what they share (progress, sampling, plots) and the
//!   `wafleet standalone`, `wafleet sim`, `wafleet node` and `redis-server` child
//!   processes they run against.
//!
//! The simulated WhatsApp network itself is the `wafleet-sim` crate (`load-tests/sim/`);
//! the scenarios reach it only over HTTP, through the processes they start.

pub mod scenario;
