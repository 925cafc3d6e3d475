//! Messages a phone sent to linked devices, as the network keeps them and as
//! `GET /sim/phones/{phone}/sent` shows them: `sent` once the network has them,
//! `delivered` once a device of the number acknowledged storing one (`InboundAck`),
//! `read` once a device sent a read receipt for it (`MarkRead`).

use serde::Serialize;

use super::clock;

/// One message in a phone's sent list.
#[derive(Debug, Clone)]
pub(crate) struct SentEntry {
    /// The number written to.
    pub(crate) to_phone: String,
    /// The network's id of the message (the `Inbound` frame's `message_id`).
    pub(crate) message_id: String,
    pub(crate) text: String,
    /// Unix ms when the phone sent it.
    pub(crate) at_ms: i64,
    /// Unix ms when a device first acknowledged storing it.
    pub(crate) delivered_at_ms: Option<i64>,
    /// Unix ms when a device first sent a read receipt for it.
    pub(crate) read_at_ms: Option<i64>,
}

impl SentEntry {
    /// How the control API shows it.
    pub(crate) fn view(&self) -> SentMessage {
        let status = match (self.delivered_at_ms, self.read_at_ms) {
            (_, Some(_)) => SentStatus::Read,
            (Some(_), None) => SentStatus::Delivered,
            (None, None) => SentStatus::Sent,
        };
        SentMessage {
            to_phone: self.to_phone.clone(),
            text: self.text.clone(),
            message_id: self.message_id.clone(),
            at: clock::rfc3339(self.at_ms),
            status,
        }
    }

    /// A device acknowledged it at `at_ms`; false if it was delivered already.
    pub(crate) fn deliver(&mut self, at_ms: i64) -> bool {
        let fresh = self.delivered_at_ms.is_none();
        self.delivered_at_ms.get_or_insert(at_ms);
        fresh
    }

    /// A device read it at `at_ms` (which delivers it too); false if it was read already.
    pub(crate) fn read(&mut self, at_ms: i64) -> bool {
        self.deliver(at_ms);
        let fresh = self.read_at_ms.is_none();
        self.read_at_ms.get_or_insert(at_ms);
        fresh
    }
}

/// A message a phone sent, as `GET /sim/phones/{phone}/sent` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SentMessage {
    /// The number it was written to.
    pub to_phone: String,
    pub text: String,
    /// The network's id of the message, which the device stores it under.
    pub message_id: String,
    /// When the phone sent it, RFC 3339 with milliseconds.
    pub at: String,
    pub status: SentStatus,
}

/// How far a phone's message got, as the phone sees it (its ticks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SentStatus {
    /// The network has it; no device has stored it yet.
    Sent,
    /// A device of the number stored it.
    Delivered,
    /// A device of the number sent a read receipt for it.
    Read,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_delivery_then_read() {
        let mut entry = SentEntry {
            to_phone: "62822222222".into(),
            message_id: "in-1".into(),
            text: "halo".into(),
            at_ms: 1_700_000_000_123,
            delivered_at_ms: None,
            read_at_ms: None,
        };
        let json = serde_json::to_value(entry.view()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "to_phone": "62822222222", "text": "halo", "message_id": "in-1",
                "at": "2023-11-14T22:13:20.123Z", "status": "sent"
            })
        );
        assert!(entry.deliver(5));
        assert!(!entry.deliver(6), "delivered once");
        assert_eq!(entry.delivered_at_ms, Some(5));
        assert_eq!(entry.view().status, SentStatus::Delivered);
        assert!(entry.read(7));
        assert!(!entry.read(8), "read once");
        assert_eq!(
            (entry.delivered_at_ms, entry.read_at_ms),
            (Some(5), Some(7))
        );
        assert_eq!(entry.view().status, SentStatus::Read);
    }

    #[test]
    fn a_read_without_an_ack_delivers_too() {
        let mut entry = SentEntry {
            to_phone: "62822222222".into(),
            message_id: "in-1".into(),
            text: "halo".into(),
            at_ms: 1,
            delivered_at_ms: None,
            read_at_ms: None,
        };
        assert!(entry.read(3));
        assert_eq!(entry.delivered_at_ms, Some(3));
    }
}
