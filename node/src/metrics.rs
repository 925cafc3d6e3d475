//! Every metric the node records, each described once.

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

use crate::store::DeviceStatus;

pub const DEVICES: &str = "wafleet_node_devices";
pub const MESSAGES: &str = "wafleet_messages_total";
pub const DEVICE_CRASHES: &str = "wafleet_node_device_crashes_total";
pub const EVENTS_DROPPED: &str = "wafleet_events_dropped_total";
pub const DEVICES_FENCED: &str = "wafleet_node_devices_fenced_total";
pub const RATE_LIMIT_DECISIONS: &str = "wafleet_rate_limit_decisions_total";
pub const RATE_LIMIT_QUEUE: &str = "wafleet_rate_limit_queue_depth";
pub const RATE_LIMIT_BANS: &str = "wafleet_rate_limit_bans_total";
pub const RATE_LIMIT_PROMOTIONS: &str = "wafleet_rate_limit_promotions_total";

/// Decisions counted in [`RATE_LIMIT_DECISIONS`].
const RATE_LIMIT_OUTCOMES: [&str; 3] = ["allowed", "delayed", "refused"];

/// Outcomes counted in [`MESSAGES`].
const MESSAGE_OUTCOMES: [&str; 7] = [
    "accepted",
    "duplicate",
    "sent",
    "delivered",
    "read",
    "failed",
    "inbound",
];

/// Registers the descriptions with the installed recorder, and every series at zero so
/// dashboards and alerts see them before the first event.
pub fn describe() {
    describe_gauge!(DEVICES, Unit::Count, "devices by status");
    describe_counter!(
        MESSAGES,
        Unit::Count,
        "messages by outcome: accepted, duplicate, sent, delivered, read, failed, inbound"
    );
    describe_counter!(
        DEVICE_CRASHES,
        Unit::Count,
        "device actors that crashed and were restarted or given up"
    );
    describe_counter!(
        EVENTS_DROPPED,
        Unit::Count,
        "device events dropped because the event bus (Redis) was unreachable for too long"
    );
    describe_counter!(
        DEVICES_FENCED,
        Unit::Count,
        "device runs stopped because a write was fenced off (another node owns the shard)"
    );
    describe_counter!(
        RATE_LIMIT_DECISIONS,
        Unit::Count,
        "rate-limit decisions by trust level: allowed (sent now), delayed (queued with not_before), refused (429)"
    );
    describe_gauge!(
        RATE_LIMIT_QUEUE,
        Unit::Count,
        "sends accepted by the rate limiters of this node and not sent yet"
    );
    describe_counter!(
        RATE_LIMIT_BANS,
        Unit::Count,
        "ban signals from WhatsApp: the device was demoted to newcomer and paused"
    );
    describe_counter!(
        RATE_LIMIT_PROMOTIONS,
        Unit::Count,
        "devices promoted to trusted after a week linked and active"
    );
    for level in crate::store::TrustLevel::ALL {
        for decision in RATE_LIMIT_OUTCOMES {
            counter!(RATE_LIMIT_DECISIONS, "level" => level.as_str(), "decision" => decision)
                .increment(0);
        }
    }
    gauge!(RATE_LIMIT_QUEUE).set(0.0);
    counter!(RATE_LIMIT_BANS).increment(0);
    counter!(RATE_LIMIT_PROMOTIONS).increment(0);
    for outcome in MESSAGE_OUTCOMES {
        counter!(MESSAGES, "outcome" => outcome).increment(0);
    }
    counter!(DEVICE_CRASHES).increment(0);
    counter!(DEVICES_FENCED).increment(0);
    counter!(EVENTS_DROPPED).increment(0);
    set_device_counts(&[]);
}

pub(crate) fn message_outcome(outcome: &'static str) {
    counter!(MESSAGES, "outcome" => outcome).increment(1);
}

pub(crate) fn rate_limit_decision(level: crate::store::TrustLevel, decision: &'static str) {
    counter!(RATE_LIMIT_DECISIONS, "level" => level.as_str(), "decision" => decision).increment(1);
}

pub(crate) fn rate_limit_queue_depth(change: f64) {
    gauge!(RATE_LIMIT_QUEUE).increment(change);
}

pub(crate) fn rate_limit_ban() {
    counter!(RATE_LIMIT_BANS).increment(1);
}

pub(crate) fn rate_limit_promotion() {
    counter!(RATE_LIMIT_PROMOTIONS).increment(1);
}

pub(crate) fn event_dropped() {
    counter!(EVENTS_DROPPED).increment(1);
}

pub(crate) fn device_crashed() {
    counter!(DEVICE_CRASHES).increment(1);
}

pub(crate) fn device_fenced() {
    counter!(DEVICES_FENCED).increment(1);
}

/// Sets the devices-by-status gauge from a full count (statuses absent count 0).
pub(crate) fn set_device_counts(counts: &[(DeviceStatus, u64)]) {
    for status in DeviceStatus::ALL {
        let n = counts
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n);
        gauge!(DEVICES, "status" => status.as_str()).set(n as f64);
    }
}
