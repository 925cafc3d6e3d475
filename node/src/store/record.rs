//! The rows a [`super::Store`] keeps.

use serde::{Deserialize, Serialize};

/// A device id: `[a-zA-Z0-9_-]{1,64}` (checked by the gateway before it reaches a store).
pub type DeviceId = String;

/// Where a device is in its life (the seeds' status machine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeviceStatus {
    /// Not running.
    Stopped,
    /// Connecting to WhatsApp.
    Starting,
    /// Waiting for a QR scan or a pairing code.
    ScanQr,
    /// Linked and connected: can send.
    Ready,
    /// Linked but not connected; will reconnect.
    Disconnected,
    /// The phone unlinked the device; credentials are wiped.
    LoggedOut,
    /// Crashed too many times in a row; not retried until started again.
    Failed,
}

impl DeviceStatus {
    /// Every status, in a stable order (for metrics and counts).
    pub const ALL: [DeviceStatus; 7] = [
        DeviceStatus::Stopped,
        DeviceStatus::Starting,
        DeviceStatus::ScanQr,
        DeviceStatus::Ready,
        DeviceStatus::Disconnected,
        DeviceStatus::LoggedOut,
        DeviceStatus::Failed,
    ];

    /// The wire name, e.g. `SCAN_QR`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Stopped => "STOPPED",
            DeviceStatus::Starting => "STARTING",
            DeviceStatus::ScanQr => "SCAN_QR",
            DeviceStatus::Ready => "READY",
            DeviceStatus::Disconnected => "DISCONNECTED",
            DeviceStatus::LoggedOut => "LOGGED_OUT",
            DeviceStatus::Failed => "FAILED",
        }
    }

    /// Parses a wire name (case-insensitive).
    pub fn parse(s: &str) -> Option<DeviceStatus> {
        DeviceStatus::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s))
    }
}

impl std::fmt::Display for DeviceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A device's standing, which sets its sending quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrustLevel {
    /// A new link: low limits, long gaps.
    Newcomer,
    /// Linked and active for more than 7 days.
    Trusted,
    /// Old or business account, set by an admin.
    Verified,
}

impl TrustLevel {
    /// Every level, lowest first.
    pub const ALL: [TrustLevel; 3] = [
        TrustLevel::Newcomer,
        TrustLevel::Trusted,
        TrustLevel::Verified,
    ];

    /// The wire name, e.g. `newcomer`.
    pub fn as_str(self) -> &'static str {
        match self {
            TrustLevel::Newcomer => "newcomer",
            TrustLevel::Trusted => "trusted",
            TrustLevel::Verified => "verified",
        }
    }

    /// Parses a wire name (case-insensitive).
    pub fn parse(s: &str) -> Option<TrustLevel> {
        [
            TrustLevel::Newcomer,
            TrustLevel::Trusted,
            TrustLevel::Verified,
        ]
        .into_iter()
        .find(|level| level.as_str().eq_ignore_ascii_case(s))
    }
}

/// One device row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub id: DeviceId,
    pub name: String,
    /// The tenant that owns the device (`default` unless given at creation).
    pub tenant: String,
    pub status: DeviceStatus,
    /// Why the device is in its status, when that is worth saying (e.g. `qr_timeout`).
    pub status_reason: Option<String>,
    pub trust_level: TrustLevel,
    /// The number of the WhatsApp account it is linked to, once paired.
    pub phone: Option<String>,
    /// Where to POST this device's events (kept; delivery comes later).
    pub webhook: Option<String>,
    /// Whether the operator wants it running: devices with `true` are started again when
    /// their node starts.
    pub desired_running: bool,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub last_connected_at_ms: Option<i64>,
}

/// A partial update of a device: `Some` fields are written. For the optional columns,
/// `Some(None)` clears the value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DevicePatch {
    pub name: Option<String>,
    pub status: Option<DeviceStatus>,
    pub status_reason: Option<Option<String>>,
    pub trust_level: Option<TrustLevel>,
    pub phone: Option<Option<String>>,
    pub webhook: Option<Option<String>>,
    pub desired_running: Option<bool>,
    pub last_connected_at_ms: Option<Option<i64>>,
}

/// A page request for [`super::Store::list_devices`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceQuery {
    /// Only this tenant's devices, when given.
    pub tenant: Option<String>,
    pub status: Option<DeviceStatus>,
    pub desired_running: Option<bool>,
    /// Exclusive lower bound on the id (the previous page's `next_after`).
    pub after: Option<String>,
    pub limit: u32,
}

impl Default for DeviceQuery {
    fn default() -> Self {
        DeviceQuery {
            tenant: None,
            status: None,
            desired_running: None,
            after: None,
            limit: 100,
        }
    }
}

/// One page of devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePage {
    pub devices: Vec<DeviceRecord>,
    /// Pass as `after` to get the next page; `None` on the last page.
    pub next_after: Option<String>,
}

impl DevicePage {
    /// The first `limit` of `devices` (listed in id order): `next_after` is set when
    /// `devices` holds more, so a store lists one more than asked to know whether another
    /// page follows.
    pub fn cut(mut devices: Vec<DeviceRecord>, limit: usize) -> DevicePage {
        let next_after = if devices.len() > limit {
            devices.truncate(limit);
            devices.last().map(|d| d.id.clone())
        } else {
            None
        };
        DevicePage {
            devices,
            next_after,
        }
    }
}

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the device to a phone.
    Outbound,
    /// From a phone to the device.
    Inbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }

    pub fn parse(s: &str) -> Option<Direction> {
        match s {
            "outbound" => Some(Direction::Outbound),
            "inbound" => Some(Direction::Inbound),
            _ => None,
        }
    }
}

/// Where a message is on its way.
///
/// An outbound message starts `queued` (to be sent as soon as its rate-limit slot
/// comes) or `scheduled` (to be sent at its `send_at_ms`: it is not in the device's
/// queue and holds no slot until then, when its device's owner moves it to `queued`,
/// see [`super::Store::promote_message`]). Either may become `cancelled` before it is
/// handed to the link ([`super::Store::cancel_message`]); `cancelled` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Queued,
    Sent,
    Delivered,
    Read,
    Failed,
    /// Waiting for its `send_at_ms`; not queued yet.
    Scheduled,
    /// Cancelled before it left: never sent.
    Cancelled,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Queued => "queued",
            MessageStatus::Sent => "sent",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Read => "read",
            MessageStatus::Failed => "failed",
            MessageStatus::Scheduled => "scheduled",
            MessageStatus::Cancelled => "cancelled",
        }
    }

    /// Every status.
    pub const ALL: [MessageStatus; 7] = [
        MessageStatus::Queued,
        MessageStatus::Sent,
        MessageStatus::Delivered,
        MessageStatus::Read,
        MessageStatus::Failed,
        MessageStatus::Scheduled,
        MessageStatus::Cancelled,
    ];

    pub fn parse(s: &str) -> Option<MessageStatus> {
        MessageStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
    }

    /// Whether a message in `self` may move to `next` by a receipt (see
    /// [`super::Store::advance_message`]): only forward, by rank queued < sent < failed <
    /// delivered < read, so a late `sent` receipt never undoes `delivered` and a
    /// delivered message never becomes failed. `scheduled` and `cancelled` are never
    /// reached this way (they have their own writes), and nothing moves a `cancelled`
    /// message; a `scheduled` one ranks with `queued`.
    pub fn may_advance_to(self, next: MessageStatus) -> bool {
        fn rank(status: MessageStatus) -> Option<u8> {
            match status {
                MessageStatus::Queued | MessageStatus::Scheduled => Some(0),
                MessageStatus::Sent => Some(1),
                MessageStatus::Failed => Some(2),
                MessageStatus::Delivered => Some(3),
                MessageStatus::Read => Some(4),
                MessageStatus::Cancelled => None,
            }
        }
        if matches!(next, MessageStatus::Scheduled | MessageStatus::Queued) {
            return false;
        }
        matches!((rank(self), rank(next)), (Some(from), Some(to)) if to > from)
    }

    /// Whether a message in this status may still be cancelled, as far as the store
    /// knows: it has not left (`queued` or `scheduled`). Whether a `queued` one was
    /// handed to the link already only its device's owner knows.
    pub fn is_cancellable(self) -> bool {
        matches!(self, MessageStatus::Queued | MessageStatus::Scheduled)
    }
}

/// One message row, outbound or inbound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub id: String,
    pub device_id: DeviceId,
    pub direction: Direction,
    /// The other side: the recipient of an outbound message, the sender of an inbound one.
    pub peer_phone: String,
    pub text: String,
    pub status: MessageStatus,
    pub error: Option<String>,
    /// The client's `Idempotency-Key`, unique per device when set.
    pub idempotency_key: Option<String>,
    pub created_at_ms: i64,
    /// Not to be sent before this time (rate limits): the slot its device's rate
    /// limiter gave it.
    pub not_before_ms: Option<i64>,
    /// The time the client asked for it to be sent at (a scheduled message); `None`:
    /// as soon as accepted.
    pub send_at_ms: Option<i64>,
    /// When a scheduled message became `queued` (its place in the device's queue,
    /// see [`super::QueueKey`]); `None` for every other message, whose place is its
    /// `created_at_ms`.
    pub queued_at_ms: Option<i64>,
    pub sent_at_ms: Option<i64>,
    pub delivered_at_ms: Option<i64>,
    pub read_at_ms: Option<i64>,
    pub failed_at_ms: Option<i64>,
}
