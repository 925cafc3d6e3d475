//! [`Content`]: what a message says — its text and, optionally, a media file (the
//! text is then its caption), the numbers it mentions, in a group who wrote it, and the
//! message it replies to ([`Quote`]) — and how it is kept in a message's one text field.
//!
//! A message's stored text (sealed at rest, so the store never sees any of this) is
//! the text as it is, or, for a message with media (or a text that itself starts with
//! the marker), `\u{2}` followed by the JSON of the content. Every text stored before
//! media existed reads as the plain text it is.

use serde::{Deserialize, Serialize};
use wafleet_protocol::node_api as pb;

use crate::media::{MediaRecord, MediaType};

/// Longest text (or caption) a message may carry, in characters: what WhatsApp takes.
pub const MAX_TEXT_CHARS: usize = 65_536;

/// What a stored text starts with when it holds more than a text.
const MARKER: char = '\u{2}';

/// A message's text and media.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    /// The text; with media, its caption (may be empty).
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaPart>,
    /// Numbers the text mentions (digits with the country code).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<String>,
    /// In a group (the message's peer is the group's id), the participant who wrote an
    /// inbound message; `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// The message it replies to (quotes), if it is a reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote: Option<Quote>,
}

/// The message a reply quotes, as the reply keeps it: enough for a link to name it on
/// the network and show it, without reading the quoted message again (its text is
/// sealed, and it may be deleted later).
///
/// Every link keeps a received message under the network's id for it, so an inbound
/// message's `id` is its network id too; an outbound message's network id is the
/// link's to derive from `id` (the simulator uses it as it is, WhatsApp a hash of it:
/// `link::whatsapp::send`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    /// The quoted message's id in the device's message log. For an inbound reply to a
    /// message the device does not have, the network's id of the quoted message.
    pub id: String,
    /// The quoted message was the device's own (outbound).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_me: bool,
    /// The chat the quoted message is in: its peer (a number or a group id); `None`
    /// when not known (an inbound reply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<String>,
    /// Who wrote the quoted message when a participant of a group wrote it (digits or
    /// E.164, as received); `None` for the device's own messages and 1:1 chats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// The quoted message's text (its caption for media), which networks show with the
    /// reply; empty when not known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
}

/// A media file a message carries: a file of the media library, as it was checked
/// for the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaPart {
    /// The file (`GET /v1/media/{id}`).
    pub id: String,
    /// What it is sent as.
    #[serde(rename = "type")]
    pub media_type: MediaType,
    pub mime: String,
    pub size: u64,
    /// 64 lowercase hex digits.
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

impl Content {
    /// A text alone.
    pub fn text(text: impl Into<String>) -> Content {
        Content {
            text: text.into(),
            media: None,
            mentions: Vec::new(),
            author: None,
            quote: None,
        }
    }

    /// The one string a message keeps (see the module docs).
    pub fn to_stored(&self) -> String {
        let plain = self.media.is_none()
            && self.mentions.is_empty()
            && self.author.is_none()
            && self.quote.is_none();
        if plain && !self.text.starts_with(MARKER) {
            return self.text.clone();
        }
        // Serializing plain strings and numbers cannot fail.
        format!(
            "{MARKER}{}",
            serde_json::to_string(self).unwrap_or_default()
        )
    }

    /// What [`Content::to_stored`] made `stored` of; any other string is a text.
    pub fn from_stored(stored: &str) -> Content {
        stored
            .strip_prefix(MARKER)
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_else(|| Content::text(stored))
    }
}

impl MediaPart {
    /// `record` sent as `media_type`.
    pub fn of(record: &MediaRecord, media_type: MediaType) -> MediaPart {
        MediaPart {
            id: record.id.clone(),
            media_type,
            mime: record.mime.clone(),
            size: record.size,
            sha256: record.sha256.clone(),
            filename: record.filename.clone(),
        }
    }
}

impl From<MediaPart> for pb::MessageMedia {
    fn from(part: MediaPart) -> pb::MessageMedia {
        pb::MessageMedia {
            id: part.id,
            r#type: part.media_type.as_str().to_owned(),
            mime: part.mime,
            size: part.size,
            sha256: part.sha256,
            filename: part.filename,
        }
    }
}

impl TryFrom<pb::MessageMedia> for MediaPart {
    type Error = String;

    fn try_from(media: pb::MessageMedia) -> Result<MediaPart, String> {
        let media_type = MediaType::parse(&media.r#type)
            .ok_or_else(|| format!("{:?} is not a media type", media.r#type))?;
        Ok(MediaPart {
            id: media.id,
            media_type,
            mime: media.mime,
            size: media.size,
            sha256: media.sha256,
            filename: media.filename,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo() -> MediaPart {
        MediaPart {
            id: "med_0123456789abcdef0123456789abcdef".into(),
            media_type: MediaType::Image,
            mime: "image/png".into(),
            size: 3,
            sha256: "ab".repeat(32),
            filename: None,
        }
    }

    #[test]
    fn texts_stay_as_they_are_and_everything_else_comes_back_whole() {
        assert_eq!(Content::text("halo").to_stored(), "halo");
        let cases = [
            Content::text("halo"),
            Content::text(""),
            Content::text("\u{2}{\"text\":\"a trick\"}"),
            Content {
                media: Some(photo()),
                ..Content::text("look")
            },
            Content {
                media: Some(MediaPart {
                    filename: Some("f.pdf".into()),
                    ..photo()
                }),
                ..Content::text("")
            },
            Content {
                mentions: vec!["6281111111111".into(), "6282222222222".into()],
                ..Content::text("halo @6281111111111")
            },
            Content {
                author: Some("6283333333333".into()),
                ..Content::text("in a group")
            },
            Content {
                quote: Some(Quote {
                    id: "msg_0123456789abcdef0123456789abcdef".into(),
                    from_me: true,
                    chat: Some("6281111111111".into()),
                    author: None,
                    text: "the order".into(),
                }),
                ..Content::text("yes, that one")
            },
            Content {
                quote: Some(Quote {
                    id: "3EB0AABBCCDDEEFF001122".into(),
                    ..Quote::default()
                }),
                ..Content::text("a reply to something unknown")
            },
        ];
        for content in cases {
            assert_eq!(Content::from_stored(&content.to_stored()), content);
        }
        // A stored string that merely starts with the marker is a text.
        assert_eq!(Content::from_stored("\u{2}oops").text, "\u{2}oops");
    }

    #[test]
    fn media_crosses_the_wire_and_back() {
        let wire = pb::MessageMedia::from(photo());
        assert_eq!(wire.r#type, "image");
        assert_eq!(MediaPart::try_from(wire).unwrap(), photo());
        let bad = pb::MessageMedia {
            r#type: "gif".into(),
            ..pb::MessageMedia::from(photo())
        };
        assert!(MediaPart::try_from(bad).is_err());
    }
}
