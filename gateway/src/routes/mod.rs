//! The HTTP routes, one file per resource.

pub mod compat;
pub mod devices;
pub mod events;
pub mod limits;
pub mod messages;
pub mod ops;
pub mod pairing;
pub mod qr;
