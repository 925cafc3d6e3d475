//! How fast a device may send, and how far it is trusted.

pub mod actor;
pub mod policy;
