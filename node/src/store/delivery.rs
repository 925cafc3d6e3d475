//! The webhook delivery log's rows: one event recorded for a device's webhook and where
//! its delivery stands (see the `Store` methods under "webhook deliveries").

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Recorded, not attempted yet (or queued again by a replay).
    Pending,
    /// Attempted and refused or unanswered; tried again at `next_attempt_ms`.
    Failed,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed; it no longer holds the device's later events back.
    Dead,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 4] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Failed,
        DeliveryStatus::Delivered,
        DeliveryStatus::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        DeliveryStatus::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// Whether a delivery in this status is still to be attempted.
    pub fn is_due(self) -> bool {
        matches!(self, DeliveryStatus::Pending | DeliveryStatus::Failed)
    }
}

/// An event to record for a device's webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// Stable across retries, restarts and failovers: what a receiver deduplicates on.
    pub event_id: String,
    pub device_id: String,
    pub tenant: String,
    /// The event's name (`message.inbound`, ...).
    pub event: String,
    /// The event's data, JSON (as on SSE).
    pub data: String,
    pub created_at_ms: i64,
}

/// A recorded event and its delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// The event's place among the device's events (increasing in the order recorded;
    /// gaps are normal).
    pub seq: i64,
    pub event_id: String,
    pub device_id: String,
    pub tenant: String,
    pub event: String,
    pub data: String,
    pub created_at_ms: i64,
    pub status: DeliveryStatus,
    /// Attempts made since it was recorded or last replayed.
    pub attempts: u32,
    /// When the next attempt is due (`failed`; `pending` is due at once).
    pub next_attempt_ms: Option<i64>,
    /// The HTTP status of the last attempt, if the receiver answered.
    pub last_status_code: Option<u16>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    pub delivered_at_ms: Option<i64>,
}

/// The outcome of one attempt at a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The delivery's `attempts` when the attempt began: the outcome is recorded only
    /// if it still is (a replay meanwhile starts the count again and wins).
    pub prior_attempts: u32,
    /// And its `next_attempt_ms` then. A replay always changes it, even that of a
    /// delivery still pending at 0 attempts, so an attempt in flight while the delivery
    /// is replayed records nothing and the replayed delivery is sent again.
    pub prior_next_attempt_ms: Option<i64>,
    pub at_ms: i64,
    pub outcome: AttemptOutcome,
    /// The receiver's HTTP status, if it answered.
    pub status_code: Option<u16>,
    /// Why it failed (`None` when delivered).
    pub error: Option<String>,
}

/// What an attempt makes of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    /// `failed`, tried again at this time.
    Retry {
        next_attempt_ms: i64,
    },
    Dead,
}

/// Which deliveries a replay queues again (`pending`, attempts from 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayWhich {
    /// One event, whatever its status.
    Event(String),
    /// Every `dead` delivery of the device.
    Dead,
}

/// The store's whole delivery backlog, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryBacklog {
    pub pending: u64,
    pub failed: u64,
    pub dead: u64,
    /// When the oldest delivery still to be attempted was recorded.
    pub oldest_due_created_ms: Option<i64>,
}
