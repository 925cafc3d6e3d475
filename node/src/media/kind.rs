//! [`MediaType`]: what a media file is sent as (the API's `type`).

use serde::{Deserialize, Serialize};
use wafleet_cluster_config::{MediaKind, MediaLimits};

/// What a media file is sent as: WhatsApp shows each differently, and caps each at its
/// own size ([`MediaLimits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaType {
    Image,
    Video,
    Audio,
    /// A voice note (audio shown as recorded on the phone, usually `audio/ogg`).
    Voice,
    Document,
    Sticker,
}

impl MediaType {
    /// Every type, in the API's order.
    pub const ALL: [MediaType; 6] = [
        MediaType::Image,
        MediaType::Video,
        MediaType::Audio,
        MediaType::Voice,
        MediaType::Document,
        MediaType::Sticker,
    ];

    /// The API's name.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::Image => "image",
            MediaType::Video => "video",
            MediaType::Audio => "audio",
            MediaType::Voice => "voice",
            MediaType::Document => "document",
            MediaType::Sticker => "sticker",
        }
    }

    /// The type named `name`, if any.
    pub fn parse(name: &str) -> Option<MediaType> {
        MediaType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// What a file of this MIME type is sent as unless said otherwise: images, videos
    /// and audio as themselves, anything else as a document.
    pub fn of_mime(mime: &str) -> MediaType {
        match mime.split('/').next().unwrap_or("") {
            "image" => MediaType::Image,
            "video" => MediaType::Video,
            "audio" => MediaType::Audio,
            _ => MediaType::Document,
        }
    }

    /// The largest file of this type. A sticker may be animated, which this cannot
    /// tell from its bytes, so stickers get the animated limit.
    pub fn limit(self, limits: &MediaLimits) -> u64 {
        limits.of(match self {
            MediaType::Image => MediaKind::Image,
            MediaType::Video => MediaKind::Video,
            MediaType::Audio | MediaType::Voice => MediaKind::Audio,
            MediaType::Document => MediaKind::Document,
            MediaType::Sticker => MediaKind::AnimatedSticker,
        })
    }
}

impl std::fmt::Display for MediaType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_mimes_pick_a_type() {
        for t in MediaType::ALL {
            assert_eq!(MediaType::parse(t.as_str()), Some(t));
        }
        assert_eq!(MediaType::parse("gif"), None);
        assert_eq!(MediaType::of_mime("image/png"), MediaType::Image);
        assert_eq!(MediaType::of_mime("video/mp4"), MediaType::Video);
        assert_eq!(MediaType::of_mime("audio/ogg"), MediaType::Audio);
        assert_eq!(MediaType::of_mime("application/pdf"), MediaType::Document);
        assert_eq!(MediaType::of_mime(""), MediaType::Document);
    }

    #[test]
    fn each_type_has_its_limit() {
        let limits = MediaLimits::default();
        assert_eq!(MediaType::Image.limit(&limits), limits.image_bytes);
        assert_eq!(MediaType::Voice.limit(&limits), limits.audio_bytes);
        assert_eq!(MediaType::Document.limit(&limits), limits.document_bytes);
        assert_eq!(
            MediaType::Sticker.limit(&limits),
            limits.animated_sticker_bytes
        );
    }
}
