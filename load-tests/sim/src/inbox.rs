//! Messages that reached a phone from linked devices, as the network keeps them and as
//! `GET /sim/phones/{phone}/inbox` shows them.

use serde::Serialize;

use super::clock;

/// One message in a phone's inbox.
#[derive(Debug, Clone)]
pub(crate) struct InboxEntry {
    /// The number of the link that sent it.
    pub(crate) from_phone: String,
    /// The link that sent it, so that a read receipt can find its way back.
    pub(crate) sender_link: String,
    /// The sending device's own message id (the deduplication key with the link).
    pub(crate) message_id: String,
    pub(crate) text: String,
    /// Unix ms when it was delivered to the phone.
    pub(crate) at_ms: i64,
    /// Unix ms when the phone read it.
    pub(crate) read_at_ms: Option<i64>,
}

impl InboxEntry {
    /// How the control API shows it.
    pub(crate) fn view(&self) -> InboxMessage {
        InboxMessage {
            from_phone: self.from_phone.clone(),
            text: self.text.clone(),
            at: clock::rfc3339(self.at_ms),
            message_id: self.message_id.clone(),
            status: if self.read_at_ms.is_some() {
                MessageStatus::Read
            } else {
                MessageStatus::Delivered
            },
        }
    }
}

/// A message in a phone's inbox, as `GET /sim/phones/{phone}/inbox` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InboxMessage {
    /// The number of the linked device's account that sent it.
    pub from_phone: String,
    pub text: String,
    /// When it reached the phone, RFC 3339 with milliseconds.
    pub at: String,
    /// The id the sending device gave it.
    pub message_id: String,
    pub status: MessageStatus,
}

/// Whether the phone has read a message yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Delivered,
    Read,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_shows_status_and_rfc3339_time() {
        let mut entry = InboxEntry {
            from_phone: "62811111111".into(),
            sender_link: "l".into(),
            message_id: "m1".into(),
            text: "hi".into(),
            at_ms: 1_700_000_000_123,
            read_at_ms: None,
        };
        let json = serde_json::to_value(entry.view()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "from_phone": "62811111111", "text": "hi", "at": "2023-11-14T22:13:20.123Z",
                "message_id": "m1", "status": "delivered"
            })
        );
        entry.read_at_ms = Some(1);
        assert_eq!(entry.view().status, MessageStatus::Read);
    }
}
