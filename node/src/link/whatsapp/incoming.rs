//! Media a phone sends over the real link: found in the message, downloaded (whatsapp-rust
//! fetches and decrypts it, streamed into a temporary file), stored in the media
//! library, and relayed like a text with its `media` (the caption as the text).
//!
//! A file that cannot be stored now (the network, storage) leaves the message
//! unrelayed, so WhatsApp delivers it again; one that never can be (past its type's
//! limit, not the bytes the message names) is relayed without its file, and logged.

use async_trait::async_trait;
use tracing::warn;
use whatsapp_rust::Client;
use whatsapp_rust::download::Downloadable;
use whatsapp_rust::waproto::whatsapp as wa;

use crate::content::MediaPart;
use crate::media::{MediaError, MediaLibrary, MediaOrigin, MediaType, NewMedia, reader_stream};

/// The media of an inbound message, and what it says of it.
pub(super) struct Incoming<'a> {
    /// What whatsapp-rust downloads.
    pub source: &'a (dyn Downloadable + 'a),
    pub media_type: MediaType,
    pub mime: String,
    /// The caption (empty without one).
    pub caption: String,
    pub filename: Option<String>,
    /// The file's SHA-256 as the message names it, 64 lowercase hex digits.
    pub sha256: Option<String>,
    pub size: Option<u64>,
}

/// The media `message` carries, if it is an image, video, audio or voice note, document
/// or sticker.
pub(super) fn media_of(message: &wa::Message) -> Option<Incoming<'_>> {
    let text = |t: &Option<String>| t.clone().unwrap_or_default();
    let mime = |m: &Option<String>, default: &str| m.clone().unwrap_or_else(|| default.to_owned());
    if let Some(m) = message.image_message.as_option() {
        return Some(Incoming {
            source: m,
            media_type: MediaType::Image,
            mime: mime(&m.mimetype, "image/jpeg"),
            caption: text(&m.caption),
            filename: None,
            sha256: m.file_sha256.as_deref().map(hex::encode),
            size: m.file_length,
        });
    }
    if let Some(m) = message.video_message.as_option() {
        return Some(Incoming {
            source: m,
            media_type: MediaType::Video,
            mime: mime(&m.mimetype, "video/mp4"),
            caption: text(&m.caption),
            filename: None,
            sha256: m.file_sha256.as_deref().map(hex::encode),
            size: m.file_length,
        });
    }
    if let Some(m) = message.audio_message.as_option() {
        return Some(Incoming {
            source: m,
            media_type: if m.ptt == Some(true) {
                MediaType::Voice
            } else {
                MediaType::Audio
            },
            mime: mime(&m.mimetype, "audio/ogg"),
            caption: String::new(),
            filename: None,
            sha256: m.file_sha256.as_deref().map(hex::encode),
            size: m.file_length,
        });
    }
    if let Some(m) = message.document_message.as_option() {
        return Some(Incoming {
            source: m,
            media_type: MediaType::Document,
            mime: mime(&m.mimetype, "application/octet-stream"),
            caption: text(&m.caption),
            filename: m.file_name.clone(),
            sha256: m.file_sha256.as_deref().map(hex::encode),
            size: m.file_length,
        });
    }
    if let Some(m) = message.sticker_message.as_option() {
        return Some(Incoming {
            source: m,
            media_type: MediaType::Sticker,
            mime: mime(&m.mimetype, "image/webp"),
            caption: String::new(),
            filename: None,
            sha256: m.file_sha256.as_deref().map(hex::encode),
            size: m.file_length,
        });
    }
    None
}

/// Downloads from WhatsApp's media servers. A seam, so that a test can stand in for them.
#[async_trait]
pub(super) trait Downloads: Send + Sync {
    /// Writes the decrypted file into `file` (from its start) and gives it back.
    async fn download_to(
        &self,
        source: &(dyn Downloadable + '_),
        file: std::fs::File,
    ) -> Result<std::fs::File, String>;
}

#[async_trait]
impl Downloads for Client {
    async fn download_to(
        &self,
        source: &(dyn Downloadable + '_),
        file: std::fs::File,
    ) -> Result<std::fs::File, String> {
        self.download_to_writer(source, file)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Where received files go: the device's tenant's library.
pub(super) struct Receiver<'a> {
    pub library: &'a MediaLibrary,
    pub tenant: &'a str,
    pub device_id: &'a str,
}

impl Receiver<'_> {
    /// Stores `incoming`'s file: its part of the message; `Ok(None)` when it never can
    /// be (relay the message without it); `Err` when not now (leave it for redelivery).
    pub(super) async fn receive(
        &self,
        downloads: &dyn Downloads,
        message_id: &str,
        incoming: &Incoming<'_>,
    ) -> Result<Option<MediaPart>, String> {
        let local = |e: std::io::Error| format!("a temporary file failed: {e}");
        let spool = tempfile::NamedTempFile::new().map_err(local)?;
        let file = downloads
            .download_to(incoming.source, spool.reopen().map_err(local)?)
            .await
            .map_err(|e| format!("download failed: {e}"))?;
        drop(file);
        let reader = tokio::fs::File::open(spool.path()).await.map_err(local)?;
        let new = NewMedia {
            tenant: self.tenant.to_owned(),
            mime: incoming.mime.clone(),
            media_type: Some(incoming.media_type),
            filename: incoming.filename.clone(),
            announced_size: incoming.size,
            origin: MediaOrigin::Received {
                device_id: self.device_id.to_owned(),
                message_id: message_id.to_owned(),
            },
        };
        let record = match self.library.put(new, reader_stream(reader)).await {
            Ok(record) => record,
            Err(error @ (MediaError::TooLarge { .. } | MediaError::Invalid(_))) => {
                warn!(device_id = self.device_id, message_id, %error, "inbound media refused; the message is relayed without it");
                return Ok(None);
            }
            Err(error) => return Err(error.to_string()),
        };
        if incoming
            .sha256
            .as_ref()
            .is_some_and(|sha| *sha != record.sha256)
        {
            let _ = self.library.delete(&record.id).await;
            warn!(
                device_id = self.device_id,
                message_id, "inbound media is not the file its message names; relayed without it"
            );
            return Ok(None);
        }
        Ok(Some(MediaPart::of(&record, incoming.media_type)))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;

    use sha2::{Digest, Sha256};
    use whatsapp_rust::waproto::buffa::MessageField;

    use super::*;

    fn document(data: &[u8]) -> wa::Message {
        wa::Message {
            document_message: MessageField::some(wa::message::DocumentMessage {
                mimetype: Some("application/pdf".into()),
                file_name: Some("invoice.pdf".into()),
                caption: Some("tagihan".into()),
                file_sha256: Some(Sha256::digest(data).to_vec()),
                file_length: Some(data.len() as u64),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn each_media_kind_is_found_with_what_its_message_says() {
        let message = document(b"abc");
        let found = media_of(&message).expect("a document");
        assert_eq!(found.media_type, MediaType::Document);
        assert_eq!(found.mime, "application/pdf");
        assert_eq!(found.caption, "tagihan");
        assert_eq!(found.filename.as_deref(), Some("invoice.pdf"));
        assert_eq!(found.size, Some(3));
        assert_eq!(
            found.sha256.as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        let voice = wa::Message {
            audio_message: MessageField::some(wa::message::AudioMessage {
                ptt: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let voice = media_of(&voice).unwrap();
        assert_eq!(
            (voice.media_type, voice.mime.as_str()),
            (MediaType::Voice, "audio/ogg")
        );
        let image = wa::Message {
            image_message: MessageField::some(wa::message::ImageMessage::default()),
            ..Default::default()
        };
        assert_eq!(media_of(&image).unwrap().mime, "image/jpeg");
        let text = wa::Message {
            conversation: Some("halo".into()),
            ..Default::default()
        };
        assert!(media_of(&text).is_none());
    }

    /// Media servers that hand out these bytes.
    struct Serves(Vec<u8>);

    #[async_trait]
    impl Downloads for Serves {
        async fn download_to(
            &self,
            _source: &(dyn Downloadable + '_),
            mut file: std::fs::File,
        ) -> Result<std::fs::File, String> {
            file.write_all(&self.0).map_err(|e| e.to_string())?;
            Ok(file)
        }
    }

    async fn library(dir: &std::path::Path) -> MediaLibrary {
        let store = Arc::new(crate::store::SqliteStore::open(&dir.join("w.db")).unwrap());
        let keys = Arc::new(crate::seal::data_keys::DataKeys::new(
            store,
            Arc::new(crate::seal::Sealer::new(crate::seal::MasterKey::new(
                1, [4; 32],
            ))),
        ));
        let folder = crate::media::FolderMediaStore::open(&dir.join("media"))
            .await
            .unwrap();
        MediaLibrary::new(Arc::new(folder), keys, Default::default())
    }

    #[tokio::test]
    async fn a_received_file_is_stored_for_the_device_s_tenant_or_relayed_without() {
        let dir = tempfile::tempdir().unwrap();
        let library = library(dir.path()).await;
        let receiver = Receiver {
            library: &library,
            tenant: "acme",
            device_id: "d1",
        };
        let data: Vec<u8> = (0..150_000u32).map(|i| (i % 241) as u8).collect();
        let message = document(&data);
        let incoming = media_of(&message).unwrap();
        let part = receiver
            .receive(&Serves(data.clone()), "3EB0AA", &incoming)
            .await
            .unwrap()
            .expect("stored");
        assert_eq!(part.media_type, MediaType::Document);
        assert_eq!(part.filename.as_deref(), Some("invoice.pdf"));
        let record = library.record(&part.id).await.unwrap();
        assert_eq!(record.tenant, "acme");
        assert_eq!(record.size, data.len() as u64);
        assert!(matches!(record.origin, MediaOrigin::Received { .. }));

        // Not the bytes the message names: relayed without a file, none kept.
        let wrong = receiver
            .receive(&Serves(b"something else".to_vec()), "3EB0BB", &incoming)
            .await
            .unwrap();
        assert_eq!(wrong, None);
    }
}
