//! ractor_cluster turns on ractor's `cluster` feature, which drops the blanket
//! `ractor::Message` impl: every local-only message type says so here.

impl ractor::Message for crate::device::DeviceMsg {}
impl ractor::Message for crate::device::supervisor::SupervisorMsg {}
impl ractor::Message for crate::limits::actor::LimiterMsg {}
