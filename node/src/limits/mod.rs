//! How fast a device may send, and how far it is trusted.
//!
//! - [`policy`]: the sending rules ([`policy::SendPolicy`]): sliding windows, the
//!   minimum gap, the in-flight cap. Pure and clock-free: no actor, no store, no time of
//!   its own.
//! - [`actor`]: the per-device actor ([`actor::RateLimiter`]) every send passes through.
//!   It owns one `SendPolicy`, applies it with the quota of the device's level, and
//!   records bans.
//! - [`trust`]: the device's standing ([`trust::TrustRecord`], sealed in its vault), the
//!   promotion from NEWCOMER to TRUSTED, and the level's byte cell shared with the device.
//! - [`view`]: what `GET /v1/devices/{id}/limits` shows ([`view::LimitsView`]), from a
//!   running limiter or, for a device that runs nowhere here, from the store.
//!
//! Dependencies go one way: `policy` and `trust` need neither of the others, `view` reads
//! both, and `actor` uses all three.

pub mod actor;
pub mod policy;
pub mod trust;
pub mod view;
