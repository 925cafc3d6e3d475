//! Media on the real link: a file of the media library encrypted with WhatsApp's media
//! encryption (AES-256-CBC and HMAC under a fresh media key, `wacore::upload`) and
//! uploaded to WhatsApp's media servers, then sent as the message its type asks for
//! (image, video, audio or voice note, document, sticker).
//!
//! Nothing holds the whole file: the library's bytes are spooled to a temporary file,
//! encrypted file to file, and the ciphertext uploaded from its file
//! (`Client::upload_stream`); both files are removed when the send is done.

use std::io;

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use whatsapp_rust::Client;
use whatsapp_rust::download::MediaType as WaMediaType;
use whatsapp_rust::upload::UploadResponse;
use whatsapp_rust::waproto::buffa::MessageField;
use whatsapp_rust::waproto::whatsapp as wa;

use crate::content::MediaPart;
use crate::link::SendFailure;
use crate::media::{MediaError, MediaLibrary, MediaType};

/// What WhatsApp calls a media type (which also picks the keys' derivation).
pub(super) fn wa_type(media_type: MediaType) -> WaMediaType {
    match media_type {
        MediaType::Image => WaMediaType::Image,
        MediaType::Video => WaMediaType::Video,
        MediaType::Audio | MediaType::Voice => WaMediaType::Audio,
        MediaType::Document => WaMediaType::Document,
        MediaType::Sticker => WaMediaType::Sticker,
    }
}

/// An upload's answer: where the encrypted file is and how to open it. Ours, so that
/// the message built from it can be tested (whatsapp-rust's is not constructible).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Uploaded {
    pub url: String,
    pub direct_path: String,
    pub media_key: [u8; 32],
    pub file_sha256: [u8; 32],
    pub file_enc_sha256: [u8; 32],
    pub file_length: u64,
    pub media_key_timestamp: i64,
    pub streaming_sidecar: Option<Vec<u8>>,
}

impl From<UploadResponse> for Uploaded {
    fn from(r: UploadResponse) -> Uploaded {
        Uploaded {
            url: r.url,
            direct_path: r.direct_path,
            media_key: r.media_key,
            file_sha256: r.file_sha256,
            file_enc_sha256: r.file_enc_sha256,
            file_length: r.file_length,
            media_key_timestamp: r.media_key_timestamp,
            streaming_sidecar: r.streaming_sidecar,
        }
    }
}

/// The WhatsApp message of `part`, uploaded as `uploaded`, with `caption` (where the
/// type has one: images, videos and documents).
pub(super) fn message(part: &MediaPart, caption: &str, uploaded: Uploaded) -> wa::Message {
    let caption = (!caption.is_empty()).then(|| caption.to_owned());
    let u = uploaded;
    let mime = Some(part.mime.clone());
    match part.media_type {
        MediaType::Image => wa::Message {
            image_message: MessageField::some(wa::message::ImageMessage {
                url: Some(u.url),
                direct_path: Some(u.direct_path),
                media_key: Some(u.media_key.to_vec()),
                file_sha256: Some(u.file_sha256.to_vec()),
                file_enc_sha256: Some(u.file_enc_sha256.to_vec()),
                file_length: Some(u.file_length),
                media_key_timestamp: Some(u.media_key_timestamp),
                mimetype: mime,
                caption,
                ..Default::default()
            }),
            ..Default::default()
        },
        MediaType::Video => wa::Message {
            video_message: MessageField::some(wa::message::VideoMessage {
                url: Some(u.url),
                direct_path: Some(u.direct_path),
                media_key: Some(u.media_key.to_vec()),
                file_sha256: Some(u.file_sha256.to_vec()),
                file_enc_sha256: Some(u.file_enc_sha256.to_vec()),
                file_length: Some(u.file_length),
                media_key_timestamp: Some(u.media_key_timestamp),
                streaming_sidecar: u.streaming_sidecar,
                mimetype: mime,
                caption,
                ..Default::default()
            }),
            ..Default::default()
        },
        MediaType::Audio | MediaType::Voice => wa::Message {
            audio_message: MessageField::some(wa::message::AudioMessage {
                url: Some(u.url),
                direct_path: Some(u.direct_path),
                media_key: Some(u.media_key.to_vec()),
                file_sha256: Some(u.file_sha256.to_vec()),
                file_enc_sha256: Some(u.file_enc_sha256.to_vec()),
                file_length: Some(u.file_length),
                media_key_timestamp: Some(u.media_key_timestamp),
                streaming_sidecar: u.streaming_sidecar,
                mimetype: mime,
                ptt: Some(part.media_type == MediaType::Voice),
                ..Default::default()
            }),
            ..Default::default()
        },
        MediaType::Document => wa::Message {
            document_message: MessageField::some(wa::message::DocumentMessage {
                url: Some(u.url),
                direct_path: Some(u.direct_path),
                media_key: Some(u.media_key.to_vec()),
                file_sha256: Some(u.file_sha256.to_vec()),
                file_enc_sha256: Some(u.file_enc_sha256.to_vec()),
                file_length: Some(u.file_length),
                media_key_timestamp: Some(u.media_key_timestamp),
                mimetype: mime,
                file_name: part.filename.clone(),
                title: part.filename.clone(),
                caption,
                ..Default::default()
            }),
            ..Default::default()
        },
        MediaType::Sticker => wa::Message {
            sticker_message: MessageField::some(wa::message::StickerMessage {
                url: Some(u.url),
                direct_path: Some(u.direct_path),
                media_key: Some(u.media_key.to_vec()),
                file_sha256: Some(u.file_sha256.to_vec()),
                file_enc_sha256: Some(u.file_enc_sha256.to_vec()),
                file_length: Some(u.file_length),
                media_key_timestamp: Some(u.media_key_timestamp),
                mimetype: mime,
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

/// Uploads to WhatsApp's media servers. A seam, so that a test can stand in for them.
#[async_trait]
pub(super) trait MediaServers: Send + Sync {
    async fn upload(
        &self,
        ciphertext: SpooledFile,
        info: whatsapp_rust::wacore::upload::EncryptedMediaInfo,
        media_type: WaMediaType,
    ) -> Result<Uploaded, String>;
}

#[async_trait]
impl MediaServers for Client {
    async fn upload(
        &self,
        ciphertext: SpooledFile,
        info: whatsapp_rust::wacore::upload::EncryptedMediaInfo,
        media_type: WaMediaType,
    ) -> Result<Uploaded, String> {
        self.upload_stream(ciphertext, info, media_type)
            .await
            .map(Uploaded::from)
            .map_err(|e| e.to_string())
    }
}

/// A temporary file (removed when dropped), readable from any offset: what an upload
/// streams from.
#[derive(Debug)]
pub(super) struct SpooledFile {
    file: tempfile::NamedTempFile,
    len: u64,
}

impl whatsapp_rust::wacore::upload::UploadSource for SpooledFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn reader_from(&self, offset: u64) -> io::Result<Box<dyn io::Read + Send>> {
        use std::io::Seek;
        let mut file = self.file.reopen()?;
        file.seek(io::SeekFrom::Start(offset))?;
        Ok(Box::new(file))
    }
}

/// Encrypts `part`'s file for WhatsApp and uploads it.
pub(super) async fn upload(
    servers: &dyn MediaServers,
    library: &MediaLibrary,
    part: &MediaPart,
) -> Result<Uploaded, SendFailure> {
    let gone = |error: MediaError| match error {
        MediaError::Storage(reason) => SendFailure::Transient(reason),
        other => SendFailure::Permanent(format!("the media file cannot be read: {other}")),
    };
    let local = |e: io::Error| SendFailure::Transient(format!("a temporary file failed: {e}"));
    let record = library.record(&part.id).await.map_err(gone)?;
    let mut bytes = library.bytes(&record).await.map_err(gone)?;

    // The plaintext, spooled to a file as it streams.
    let plain = tempfile::NamedTempFile::new().map_err(local)?;
    let mut writer = tokio::fs::File::from_std(plain.reopen().map_err(local)?);
    let mut len = 0u64;
    while let Some(chunk) = bytes.next().await {
        let chunk = chunk
            .map_err(|e| SendFailure::Permanent(format!("the media file does not open: {e}")))?;
        len += chunk.len() as u64;
        writer.write_all(&chunk).await.map_err(local)?;
    }
    writer.flush().await.map_err(local)?;
    drop(writer);
    if len != record.size {
        return Err(SendFailure::Permanent(
            "the media file's bytes do not match its record".into(),
        ));
    }

    // Encrypted file to file, off the async threads.
    let cipher = tempfile::NamedTempFile::new().map_err(local)?;
    let (plain_path, cipher_file) = (plain.path().to_owned(), cipher.reopen().map_err(local)?);
    let kind = wa_type(part.media_type);
    let info = tokio::task::spawn_blocking(move || {
        let reader = io::BufReader::new(std::fs::File::open(plain_path)?);
        let writer = io::BufWriter::new(cipher_file);
        whatsapp_rust::wacore::upload::encrypt_media_streaming(reader, writer, kind)
            .map_err(io::Error::other)
    })
    .await
    .map_err(|e| SendFailure::Transient(format!("encrypting the media file: {e}")))?
    .map_err(local)?;
    drop(plain);
    if hex::encode(info.file_sha256) != record.sha256 {
        return Err(SendFailure::Permanent(
            "the media file's bytes do not match its record".into(),
        ));
    }
    let cipher_len = std::fs::metadata(cipher.path()).map_err(local)?.len();
    let spooled = SpooledFile {
        file: cipher,
        len: cipher_len,
    };
    servers
        .upload(spooled, info, kind)
        .await
        .map_err(|e| SendFailure::Transient(format!("uploading to WhatsApp's media servers: {e}")))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn uploaded() -> Uploaded {
        Uploaded {
            url: "https://mmg.whatsapp.net/x".into(),
            direct_path: "/v/x".into(),
            media_key: [1; 32],
            file_sha256: [2; 32],
            file_enc_sha256: [3; 32],
            file_length: 42,
            media_key_timestamp: 1_700_000_000,
            streaming_sidecar: None,
        }
    }

    fn part(media_type: MediaType) -> MediaPart {
        MediaPart {
            id: "med_0123456789abcdef0123456789abcdef".into(),
            media_type,
            mime: "application/pdf".into(),
            size: 42,
            sha256: "02".repeat(32),
            filename: Some("nota.pdf".into()),
        }
    }

    #[test]
    fn each_type_is_sent_as_its_message_kind_with_the_upload_s_fields() {
        let image = message(&part(MediaType::Image), "lihat", uploaded());
        let image = image.image_message.as_option().expect("an image message");
        assert_eq!(image.caption.as_deref(), Some("lihat"));
        assert_eq!(image.media_key.as_deref(), Some(&[1u8; 32][..]));
        assert_eq!(image.file_sha256.as_deref(), Some(&[2u8; 32][..]));
        assert_eq!(image.file_length, Some(42));
        assert_eq!(image.direct_path.as_deref(), Some("/v/x"));

        let document = message(&part(MediaType::Document), "", uploaded());
        let document = document.document_message.as_option().expect("a document");
        assert_eq!(document.file_name.as_deref(), Some("nota.pdf"));
        assert_eq!(document.mimetype.as_deref(), Some("application/pdf"));
        assert_eq!(document.caption, None, "no empty caption");

        let voice = message(&part(MediaType::Voice), "", uploaded());
        assert_eq!(voice.audio_message.as_option().unwrap().ptt, Some(true));
        let audio = message(&part(MediaType::Audio), "", uploaded());
        assert_eq!(audio.audio_message.as_option().unwrap().ptt, Some(false));
        let sticker = message(&part(MediaType::Sticker), "", uploaded());
        assert!(sticker.sticker_message.as_option().is_some());
        let video = message(&part(MediaType::Video), "v", uploaded());
        assert!(video.video_message.as_option().is_some());
        assert_eq!(wa_type(MediaType::Voice), WaMediaType::Audio);
    }

    /// Media servers that keep what they are given.
    #[derive(Default)]
    struct Servers(Mutex<Option<(Vec<u8>, whatsapp_rust::wacore::upload::EncryptedMediaInfo)>>);

    #[async_trait]
    impl MediaServers for Servers {
        async fn upload(
            &self,
            ciphertext: SpooledFile,
            info: whatsapp_rust::wacore::upload::EncryptedMediaInfo,
            _media_type: WaMediaType,
        ) -> Result<Uploaded, String> {
            use whatsapp_rust::wacore::upload::UploadSource;
            let mut bytes = Vec::new();
            io::Read::read_to_end(&mut ciphertext.reader_from(0).unwrap(), &mut bytes).unwrap();
            let up = Uploaded {
                file_sha256: info.file_sha256,
                file_enc_sha256: info.file_enc_sha256,
                media_key: info.media_key,
                file_length: info.file_length,
                ..uploaded()
            };
            *self.0.lock().unwrap() = Some((bytes, info));
            Ok(up)
        }
    }

    #[tokio::test]
    async fn a_file_is_encrypted_as_whatsapp_does_and_opens_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::store::SqliteStore::open(&dir.path().join("w.db")).unwrap());
        let keys = Arc::new(crate::seal::data_keys::DataKeys::new(
            store,
            Arc::new(crate::seal::Sealer::new(crate::seal::MasterKey::new(
                1, [5; 32],
            ))),
        ));
        let folder = crate::media::FolderMediaStore::open(&dir.path().join("media"))
            .await
            .unwrap();
        let library = MediaLibrary::new(Arc::new(folder), keys, Default::default());
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let body = futures_util::stream::iter([Ok(bytes::Bytes::from(data.clone()))]).boxed();
        let record = library
            .put(
                crate::media::NewMedia {
                    tenant: "t".into(),
                    mime: "application/pdf".into(),
                    media_type: Some(MediaType::Document),
                    filename: None,
                    announced_size: None,
                    origin: crate::media::MediaOrigin::Upload,
                },
                body,
            )
            .await
            .unwrap();
        let part = MediaPart::of(&record, MediaType::Document);
        let servers = Servers::default();
        let up = upload(&servers, &library, &part).await.unwrap();
        assert_eq!(up.file_length, 200_000);
        let (ciphertext, info) = servers.0.lock().unwrap().take().unwrap();
        assert_ne!(&ciphertext[..64], &data[..64], "encrypted");
        // WhatsApp's own decryption (what a phone does) gives the file back.
        let plain = whatsapp_rust::wacore::download::DownloadUtils::decrypt_stream(
            &ciphertext[..],
            &info.media_key,
            WaMediaType::Document,
        )
        .unwrap();
        assert_eq!(plain, data);
    }
}
