//! Every metric the node records, each described once.

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

use crate::store::DeviceStatus;

pub const DEVICES: &str = "wafleet_node_devices";
pub const MESSAGES: &str = "wafleet_messages_total";
pub const DEVICE_CRASHES: &str = "wafleet_node_device_crashes_total";
pub const EVENTS_DROPPED: &str = "wafleet_events_dropped_total";
pub const DEVICES_FENCED: &str = "wafleet_node_devices_fenced_total";

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
