//! Every metric the node records, each described once.
//!
//! Names are `wafleet_<subsystem>_<thing>_<unit>`; [`ALL`] lists every one, so that the
//! dashboards and alert rules under `deploy/` can be checked against it. A process
//! exports the series of both crates (a node renders the gateway crate's recorder), so
//! dashboards tell nodes and gateways apart by their scrape job, not by metric name.

use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

use crate::store::{DeviceStatus, StoreError};

pub const DEVICES: &str = "wafleet_node_devices";
pub const HOSTED_DEVICES: &str = "wafleet_node_hosted_devices";
pub const LEASE_TAKEOVERS: &str = "wafleet_node_lease_takeovers_total";
pub const RECOVERIES_STARTED: &str = "wafleet_node_recoveries_started_total";
pub const RECOVERIES: &str = "wafleet_node_recoveries_total";
pub const RECOVERY_DURATION: &str = "wafleet_node_recovery_duration_seconds";
pub const RECOVERIES_PENDING: &str = "wafleet_node_recoveries_pending";
pub const RECOVERY_OLDEST_PENDING: &str = "wafleet_node_recovery_oldest_pending_seconds";
pub const STORE_DURATION: &str = "wafleet_store_request_duration_seconds";
pub const STORE_ERRORS: &str = "wafleet_store_errors_total";
pub const EVENTS_QUEUE: &str = "wafleet_events_write_queue_depth";
pub const EVENTS_WRITE_LAG: &str = "wafleet_events_write_lag_seconds";
pub const EVENTS_WRITE_ERRORS: &str = "wafleet_events_write_errors_total";
pub const EVENTS_READ_LAG: &str = "wafleet_events_read_lag_seconds";
pub const EVENTS_LAGGED: &str = "wafleet_events_subscribers_lagged_total";
pub const EVENTS_RESETS: &str = "wafleet_events_resets_total";
pub const MESSAGES: &str = "wafleet_messages_total";
pub const DEVICE_CRASHES: &str = "wafleet_node_device_crashes_total";
pub const EVENTS_DROPPED: &str = "wafleet_events_dropped_total";
pub const DEVICES_FENCED: &str = "wafleet_node_devices_fenced_total";
pub const RATE_LIMIT_DECISIONS: &str = "wafleet_rate_limit_decisions_total";
pub const RATE_LIMIT_QUEUE: &str = "wafleet_rate_limit_queue_depth";
pub const RATE_LIMIT_BANS: &str = "wafleet_rate_limit_bans_total";
pub const RATE_LIMIT_PROMOTIONS: &str = "wafleet_rate_limit_promotions_total";
pub const WEBHOOK_ATTEMPTS: &str = "wafleet_webhook_attempts_total";
pub const AUDIT_ENTRIES: &str = "wafleet_audit_entries_total";
pub const WEBHOOK_LATENCY: &str = "wafleet_webhook_delivery_latency_seconds";
pub const WEBHOOK_EVENTS_UNRECORDED: &str = "wafleet_webhook_events_unrecorded_total";
pub const WEBHOOK_BACKLOG: &str = "wafleet_webhook_backlog";
pub const WEBHOOK_OLDEST_DUE: &str = "wafleet_webhook_oldest_due_seconds";
pub const MEDIA_DELETES: &str = "wafleet_media_deletes_total";

/// Every metric name this crate registers (histograms without their `_bucket`, `_sum`
/// and `_count` suffixes).
pub const ALL: &[&str] = &[
    DEVICES,
    HOSTED_DEVICES,
    MESSAGES,
    DEVICE_CRASHES,
    EVENTS_DROPPED,
    DEVICES_FENCED,
    RATE_LIMIT_DECISIONS,
    RATE_LIMIT_QUEUE,
    RATE_LIMIT_BANS,
    RATE_LIMIT_PROMOTIONS,
    LEASE_TAKEOVERS,
    RECOVERIES_STARTED,
    RECOVERIES,
    RECOVERY_DURATION,
    RECOVERIES_PENDING,
    RECOVERY_OLDEST_PENDING,
    STORE_DURATION,
    STORE_ERRORS,
    EVENTS_QUEUE,
    EVENTS_WRITE_LAG,
    EVENTS_WRITE_ERRORS,
    EVENTS_READ_LAG,
    EVENTS_LAGGED,
    EVENTS_RESETS,
    WEBHOOK_ATTEMPTS,
    WEBHOOK_LATENCY,
    WEBHOOK_EVENTS_UNRECORDED,
    AUDIT_ENTRIES,
    WEBHOOK_BACKLOG,
    WEBHOOK_OLDEST_DUE,
    MEDIA_DELETES,
];

/// The histograms of [`ALL`] with the buckets they are exported with (Prometheus
/// histograms, so that dashboards can take quantiles across nodes).
pub const HISTOGRAM_BUCKETS: &[(&str, &[f64])] = &[
    (
        STORE_DURATION,
        &[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ],
    ),
    (
        RECOVERY_DURATION,
        &[
            0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0, 120.0,
        ],
    ),
    (
        EVENTS_WRITE_LAG,
        &[
            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ],
    ),
    (
        WEBHOOK_LATENCY,
        &[
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 600.0, 3600.0,
        ],
    ),
    (
        EVENTS_READ_LAG,
        &[
            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ],
    ),
];

/// How a recovery ended, counted in [`RECOVERIES`]: the status the device reached, or
/// `abandoned` when its run ended first (handed off again, lease lost, start failed).
pub const RECOVERY_OUTCOMES: [&str; 6] = [
    "ready",
    "scan_qr",
    "logged_out",
    "failed",
    "stopped",
    "abandoned",
];

/// Store error kinds counted in [`STORE_ERRORS`]: `unavailable` and `corrupt` are
/// failures of the store; `conflict`, `not_found` and `fenced` are answers the caller
/// asked for (a duplicate id, a stale owner) and are counted to see their rate;
/// `misconfigured` only comes from opening a store (so it is never counted in practice).
pub const STORE_ERROR_KINDS: [&str; 6] = [
    "unavailable",
    "corrupt",
    "conflict",
    "not_found",
    "fenced",
    "misconfigured",
];

/// Outcomes of a webhook attempt counted in [`WEBHOOK_ATTEMPTS`]: `delivered` (2xx),
/// `retry` (failed, tried again later), `dead` (failed, no attempts left).
pub const WEBHOOK_OUTCOMES: [&str; 3] = ["delivered", "retry", "dead"];

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
    describe_gauge!(
        DEVICES,
        Unit::Count,
        "devices by status in the whole cluster, from the shared store (every node reports the same counts: take one, do not sum)"
    );
    describe_gauge!(
        HOSTED_DEVICES,
        Unit::Count,
        "devices whose actor runs on this node, by node and last recorded status"
    );
    describe_counter!(
        LEASE_TAKEOVERS,
        Unit::Count,
        "shard leases this node was granted that their previous holder had not released (it died or stalled, and the lease expired)"
    );
    describe_counter!(
        RECOVERIES_STARTED,
        Unit::Count,
        "devices started on this node from a shard taken over after a node loss"
    );
    describe_counter!(
        RECOVERIES,
        Unit::Count,
        "recoveries finished, by outcome: ready, scan_qr, logged_out, failed, stopped (the status reached) or abandoned (the run ended first)"
    );
    describe_histogram!(
        RECOVERY_DURATION,
        Unit::Seconds,
        "from the moment this node saw a lost node's shard placed on it to the device READY here (add the detection time, cluster.failure_timeout_ms, for the outage a client sees)"
    );
    describe_gauge!(
        RECOVERIES_PENDING,
        Unit::Count,
        "recoveries started on this node that have not reached READY yet"
    );
    describe_gauge!(
        RECOVERY_OLDEST_PENDING,
        Unit::Seconds,
        "age of the oldest recovery not READY yet on this node (0 when none)"
    );
    describe_histogram!(
        STORE_DURATION,
        Unit::Seconds,
        "store calls by operation (method of the Store trait), failed or not"
    );
    describe_counter!(
        STORE_ERRORS,
        Unit::Count,
        "store calls that returned an error, by operation and kind: unavailable, corrupt (failures), conflict, not_found, fenced (answers)"
    );
    describe_gauge!(
        EVENTS_QUEUE,
        Unit::Count,
        "device events waiting in this process for the writer to append them to Redis"
    );
    describe_histogram!(
        EVENTS_WRITE_LAG,
        Unit::Seconds,
        "age of the oldest event of each batch when it is appended to Redis (queueing and retries included)"
    );
    describe_counter!(
        EVENTS_WRITE_ERRORS,
        Unit::Count,
        "batches of events Redis refused or did not answer (they are retried)"
    );
    describe_histogram!(
        EVENTS_READ_LAG,
        Unit::Seconds,
        "age of events when this process reads them from the Redis stream it follows for SSE (across processes: includes clock skew)"
    );
    describe_counter!(
        EVENTS_LAGGED,
        Unit::Count,
        "live event streams (SSE) that fell more than 4,096 events behind and caught up from the bus's buffer: slow clients"
    );
    describe_counter!(
        EVENTS_RESETS,
        Unit::Count,
        "resets handed to event streams: events a stream resumed or fell behind past, which the bus no longer held"
    );
    describe_counter!(
        MESSAGES,
        Unit::Count,
        "messages by outcome: accepted, scheduled, duplicate, sent, delivered, read, failed, cancelled, inbound"
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
    counter!(EVENTS_LAGGED).increment(0);
    counter!(EVENTS_RESETS).increment(0);
    counter!(LEASE_TAKEOVERS).increment(0);
    counter!(RECOVERIES_STARTED).increment(0);
    for outcome in RECOVERY_OUTCOMES {
        counter!(RECOVERIES, "outcome" => outcome).increment(0);
    }
    gauge!(RECOVERIES_PENDING).set(0.0);
    gauge!(RECOVERY_OLDEST_PENDING).set(0.0);
    gauge!(EVENTS_QUEUE).set(0.0);
    counter!(EVENTS_WRITE_ERRORS).increment(0);
    for operation in crate::store::metered::OPERATIONS {
        counter!(STORE_ERRORS, "operation" => *operation, "kind" => "unavailable").increment(0);
    }
    describe_counter!(
        WEBHOOK_ATTEMPTS,
        Unit::Count,
        "webhook delivery attempts made by this node, by outcome (delivered, retry, dead)"
    );
    describe_histogram!(
        WEBHOOK_LATENCY,
        Unit::Seconds,
        "from an event being recorded to its webhook answering 2xx (retries included)"
    );
    describe_counter!(
        WEBHOOK_EVENTS_UNRECORDED,
        Unit::Count,
        "events a webhook wanted that could not be recorded in the delivery log (store unavailable): they are not delivered"
    );
    describe_gauge!(
        WEBHOOK_BACKLOG,
        Unit::Count,
        "webhook deliveries in the whole cluster by status (pending, failed, dead), from the shared store (take one node's, do not sum)"
    );
    describe_gauge!(
        WEBHOOK_OLDEST_DUE,
        Unit::Seconds,
        "age of the oldest webhook delivery still to be made in the whole cluster (0 when none)"
    );
    for outcome in WEBHOOK_OUTCOMES {
        counter!(WEBHOOK_ATTEMPTS, "outcome" => outcome).increment(0);
    }
    counter!(WEBHOOK_EVENTS_UNRECORDED).increment(0);
    describe_counter!(
        AUDIT_ENTRIES,
        Unit::Count,
        "audit log entries of this process by outcome: written, or dropped (the store refused them for too long)"
    );
    for outcome in ["written", "dropped"] {
        counter!(AUDIT_ENTRIES, "outcome" => outcome).increment(0);
    }
    describe_counter!(
        MEDIA_DELETES,
        Unit::Count,
        "files a device received, deleted with the device by this node, by outcome: deleted, or failed (left in the media store, logged)"
    );
    for outcome in ["deleted", "failed"] {
        counter!(MEDIA_DELETES, "outcome" => outcome).increment(0);
    }
    set_webhook_backlog(&crate::store::DeliveryBacklog::default(), 0);
    set_device_counts(&[]);
}

/// Received files deleted with their device (`deleted`), or left (`failed`).
pub(crate) fn media_deletes(outcome: &'static str, n: u64) {
    counter!(MEDIA_DELETES, "outcome" => outcome).increment(n);
}

pub(crate) fn webhook_attempt(outcome: &'static str) {
    counter!(WEBHOOK_ATTEMPTS, "outcome" => outcome).increment(1);
}

pub(crate) fn webhook_delivered(latency: Duration) {
    histogram!(WEBHOOK_LATENCY).record(latency.as_secs_f64());
}

pub(crate) fn audit_entries(outcome: &'static str, n: usize) {
    counter!(AUDIT_ENTRIES, "outcome" => outcome).increment(n as u64);
}

pub(crate) fn webhook_event_unrecorded() {
    counter!(WEBHOOK_EVENTS_UNRECORDED).increment(1);
}

/// The cluster's delivery backlog as of `now_ms`.
pub(crate) fn set_webhook_backlog(backlog: &crate::store::DeliveryBacklog, now_ms: i64) {
    gauge!(WEBHOOK_BACKLOG, "status" => "pending").set(backlog.pending as f64);
    gauge!(WEBHOOK_BACKLOG, "status" => "failed").set(backlog.failed as f64);
    gauge!(WEBHOOK_BACKLOG, "status" => "dead").set(backlog.dead as f64);
    let oldest = backlog
        .oldest_due_created_ms
        .map_or(0.0, |at| (now_ms - at).max(0) as f64 / 1000.0);
    gauge!(WEBHOOK_OLDEST_DUE).set(oldest);
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

/// Sets the devices-hosted-here gauge from a full count (statuses absent count 0).
pub(crate) fn set_hosted_counts(node: &str, counts: &[(DeviceStatus, u64)]) {
    for status in DeviceStatus::ALL {
        let n = counts
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n);
        gauge!(HOSTED_DEVICES, "node" => node.to_owned(), "status" => status.as_str())
            .set(n as f64);
    }
}

pub(crate) fn lease_takeovers(shards: usize) {
    counter!(LEASE_TAKEOVERS).increment(shards as u64);
}

pub(crate) fn recovery_started() {
    counter!(RECOVERIES_STARTED).increment(1);
}

/// A recovery ended; `took` is set when it ended READY.
pub(crate) fn recovery_finished(outcome: &'static str, took: Option<Duration>) {
    counter!(RECOVERIES, "outcome" => outcome).increment(1);
    if let Some(took) = took {
        histogram!(RECOVERY_DURATION).record(took.as_secs_f64());
    }
}

pub(crate) fn recoveries_pending(pending: usize, oldest: Duration) {
    gauge!(RECOVERIES_PENDING).set(pending as f64);
    gauge!(RECOVERY_OLDEST_PENDING).set(oldest.as_secs_f64());
}

/// One store call: its duration, and its error kind if it failed.
pub(crate) fn store_call(operation: &'static str, took: Duration, error: Option<&StoreError>) {
    histogram!(STORE_DURATION, "operation" => operation).record(took.as_secs_f64());
    if let Some(error) = error {
        let kind = match error {
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Corrupt(_) => "corrupt",
            StoreError::Conflict { .. } => "conflict",
            StoreError::NotFound { .. } => "not_found",
            StoreError::Fenced { .. } => "fenced",
            StoreError::Misconfigured(_) => "misconfigured",
        };
        counter!(STORE_ERRORS, "operation" => operation, "kind" => kind).increment(1);
    }
}

pub(crate) fn events_queue_depth(depth: usize) {
    gauge!(EVENTS_QUEUE).set(depth as f64);
}

pub(crate) fn events_written(oldest_age: Duration) {
    histogram!(EVENTS_WRITE_LAG).record(oldest_age.as_secs_f64());
}

pub(crate) fn events_write_error() {
    counter!(EVENTS_WRITE_ERRORS).increment(1);
}

pub(crate) fn events_read(age: Duration) {
    histogram!(EVENTS_READ_LAG).record(age.as_secs_f64());
}

pub(crate) fn event_subscriber_lagged() {
    counter!(EVENTS_LAGGED).increment(1);
}

pub(crate) fn event_reset_handed() {
    counter!(EVENTS_RESETS).increment(1);
}

/// Runs `work` on this thread with a Prometheus recorder of its own; returns what the
/// recorder renders (tests of what a piece of code counts).
#[cfg(test)]
pub(crate) fn recorded(work: impl AsyncFnOnce()) -> String {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    ::metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(work());
    });
    handle.render()
}
