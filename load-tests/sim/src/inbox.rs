//! Messages that reached a phone from linked devices, as the network keeps them and as
//! `GET /sim/phones/{phone}/inbox` shows them.

use serde::{Deserialize, Serialize};

use super::clock;

/// What a stored text starts with when it is not a plain text (see
/// [`InboxEntry::stored_text`]).
const ENVELOPE: char = '\u{2}';

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
    /// The media file it carries (`text` is then its caption).
    pub(crate) media: Option<InboxMedia>,
}

/// A media file in a phone's inbox, as the control API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxMedia {
    /// image, video, audio, voice, document or sticker.
    #[serde(rename = "type")]
    pub kind: String,
    pub mime: String,
    pub size: u64,
    /// The SHA-256 of the bytes the phone got, 64 lowercase hex digits.
    pub sha256: String,
    /// The message's text, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Where its bytes are (`GET /sim/media/{handle}`).
    pub handle: String,
}

impl From<&wafleet_protocol::sim::MediaInfo> for InboxMedia {
    fn from(media: &wafleet_protocol::sim::MediaInfo) -> InboxMedia {
        InboxMedia {
            kind: media.r#type.clone(),
            mime: media.mime.clone(),
            size: media.size,
            sha256: media.sha256.clone(),
            caption: None,
            filename: media.filename.clone(),
            handle: media.handle.clone(),
        }
    }
}

impl From<&InboxMedia> for wafleet_protocol::sim::MediaInfo {
    fn from(media: &InboxMedia) -> wafleet_protocol::sim::MediaInfo {
        wafleet_protocol::sim::MediaInfo {
            r#type: media.kind.clone(),
            mime: media.mime.clone(),
            handle: media.handle.clone(),
            size: media.size,
            sha256: media.sha256.clone(),
            filename: media.filename.clone(),
        }
    }
}

/// How the state file keeps a message's text and media in its text column: the text as
/// it is, or, for a message with media (or a text that starts like an envelope),
/// `\u{2}` and JSON of both.
pub(crate) fn stored_text(text: &str, media: Option<&InboxMedia>) -> String {
    if media.is_none() && !text.starts_with(ENVELOPE) {
        return text.to_owned();
    }
    let envelope = Envelope {
        text: text.to_owned(),
        media: media.cloned(),
    };
    format!(
        "{ENVELOPE}{}",
        serde_json::to_string(&envelope).unwrap_or_default()
    )
}

/// The text and media [`stored_text`] made `stored` of.
pub(crate) fn open_stored_text(stored: String) -> (String, Option<InboxMedia>) {
    match stored
        .strip_prefix(ENVELOPE)
        .and_then(|json| serde_json::from_str::<Envelope>(json).ok())
    {
        Some(envelope) => (envelope.text, envelope.media),
        None => (stored, None),
    }
}

/// A message with media as the state file keeps it in its text column.
#[derive(Serialize, Deserialize)]
struct Envelope {
    text: String,
    media: Option<InboxMedia>,
}

impl InboxEntry {
    /// The text column of the state file ([`stored_text`]).
    pub(crate) fn stored_text(&self) -> String {
        stored_text(&self.text, self.media.as_ref())
    }

    /// Sets `text` and `media` from what [`InboxEntry::stored_text`] made.
    pub(crate) fn set_stored_text(&mut self, stored: String) {
        (self.text, self.media) = open_stored_text(stored);
    }

    /// How the control API shows it.
    pub(crate) fn view(&self) -> InboxMessage {
        InboxMessage {
            from_phone: self.from_phone.clone(),
            text: self.text.clone(),
            at: clock::rfc3339(self.at_ms),
            message_id: self.message_id.clone(),
            media: self.media.clone().map(|mut media| {
                media.caption = (!self.text.is_empty()).then(|| self.text.clone());
                media
            }),
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
    /// The media file it carries, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<InboxMedia>,
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
            media: None,
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

    #[test]
    fn media_and_texts_that_look_like_envelopes_survive_the_state_file() {
        let media = InboxMedia {
            kind: "image".into(),
            mime: "image/png".into(),
            size: 3,
            sha256: "ab".repeat(32),
            caption: None,
            filename: None,
            handle: "0".repeat(32),
        };
        for (text, media) in [
            ("look", Some(media)),
            ("plain", None),
            ("\u{2}{\"text\":\"x\"}", None),
        ] {
            let entry = InboxEntry {
                from_phone: "62811111111".into(),
                sender_link: "l".into(),
                message_id: "m1".into(),
                text: text.into(),
                at_ms: 1,
                read_at_ms: None,
                media,
            };
            let mut back = InboxEntry {
                text: String::new(),
                media: None,
                ..entry.clone()
            };
            back.set_stored_text(entry.stored_text());
            assert_eq!((back.text, back.media), (entry.text, entry.media));
        }
    }
}
