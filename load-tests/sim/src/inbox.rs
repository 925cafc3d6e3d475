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
    /// The group it was written in, if it was.
    pub(crate) group: Option<String>,
    /// The numbers it mentions.
    pub(crate) mentions: Vec<String>,
    /// The message it replies to, by its id on the network.
    pub(crate) reply_to: Option<String>,
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

/// What a message carries besides its text, kept with it in the state file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Extras {
    pub(crate) media: Option<InboxMedia>,
    /// The group it was written in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) group: Option<String>,
    /// The numbers it mentions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) mentions: Vec<String>,
    /// The message it replies to, by its id on the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reply_to: Option<String>,
}

/// How the state file keeps a message's text and extras in its text column: the text
/// as it is, or, for a message with media, a group, mentions or a quote (or a text that
/// starts like an envelope), `\u{2}` and JSON of them all.
pub(crate) fn stored_text(text: &str, extras: &Extras) -> String {
    if *extras == Extras::default() && !text.starts_with(ENVELOPE) {
        return text.to_owned();
    }
    let envelope = Envelope {
        text: text.to_owned(),
        extras: extras.clone(),
    };
    format!(
        "{ENVELOPE}{}",
        serde_json::to_string(&envelope).unwrap_or_default()
    )
}

/// The text and extras [`stored_text`] made `stored` of.
pub(crate) fn open_stored_text(stored: String) -> (String, Extras) {
    match stored
        .strip_prefix(ENVELOPE)
        .and_then(|json| serde_json::from_str::<Envelope>(json).ok())
    {
        Some(envelope) => (envelope.text, envelope.extras),
        None => (stored, Extras::default()),
    }
}

/// A message with extras as the state file keeps it in its text column (media-only
/// envelopes written before groups read the same).
#[derive(Serialize, Deserialize)]
struct Envelope {
    text: String,
    #[serde(flatten)]
    extras: Extras,
}

impl InboxEntry {
    /// The text column of the state file ([`stored_text`]).
    pub(crate) fn stored_text(&self) -> String {
        stored_text(&self.text, &self.extras())
    }

    fn extras(&self) -> Extras {
        Extras {
            media: self.media.clone(),
            group: self.group.clone(),
            mentions: self.mentions.clone(),
            reply_to: self.reply_to.clone(),
        }
    }

    /// Sets `text` and its extras from what [`InboxEntry::stored_text`] made.
    pub(crate) fn set_stored_text(&mut self, stored: String) {
        let (text, extras) = open_stored_text(stored);
        self.text = text;
        self.media = extras.media;
        self.group = extras.group;
        self.mentions = extras.mentions;
        self.reply_to = extras.reply_to;
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
            group: self.group.clone(),
            mentions: self.mentions.clone(),
            reply_to: self.reply_to.clone(),
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
    /// The group it was written in (`120363…@g.us`); absent for a message to the phone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The numbers it mentions; absent when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<String>,
    /// The message it replies to, as the phone knows it: the id of a message it received
    /// (an inbox entry's `message_id`) or sent (a sent entry's); absent when not a reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
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
            group: None,
            mentions: Vec::new(),
            reply_to: None,
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
        for (text, media, group, reply_to) in [
            ("look", Some(media), None, None),
            ("plain", None, None, None),
            ("\u{2}{\"text\":\"x\"}", None, None, None),
            (
                "in a group",
                None,
                Some("120363000000000001@g.us".to_owned()),
                None,
            ),
            ("a reply", None, None, Some("msg_quoted".to_owned())),
        ] {
            let entry = InboxEntry {
                from_phone: "62811111111".into(),
                sender_link: "l".into(),
                message_id: "m1".into(),
                text: text.into(),
                at_ms: 1,
                read_at_ms: None,
                media,
                mentions: if group.is_some() {
                    vec!["62822222222".into()]
                } else {
                    Vec::new()
                },
                group,
                reply_to,
            };
            let mut back = InboxEntry {
                text: String::new(),
                media: None,
                group: None,
                mentions: Vec::new(),
                reply_to: None,
                ..entry.clone()
            };
            back.set_stored_text(entry.stored_text());
            assert_eq!(
                (
                    back.text,
                    back.media,
                    back.group,
                    back.mentions,
                    back.reply_to
                ),
                (
                    entry.text,
                    entry.media,
                    entry.group,
                    entry.mentions,
                    entry.reply_to
                )
            );
        }
    }
}
