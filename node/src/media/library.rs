//! [`MediaLibrary`]: media files as the API knows them — an id, a tenant, a type, a
//! MIME type, a size and a SHA-256 — stored sealed in a [`MediaStore`].
//!
//! A file `med_<32 hex>` is two objects of the media store:
//! - `med_…`: its bytes, sealed chunk by chunk under a key of its own
//!   ([`crate::seal::stream`]), so no call holds the whole file;
//! - `med_….meta`: its [`MediaRecord`] (with that key) as JSON, sealed with the
//!   tenant's data key. It is written after the bytes, so a file whose record exists
//!   has all its bytes; a put that fails leaves neither.
//!
//! Every process that reads the same media store (every node and gateway of a cluster
//! on S3) reads every file; the record says whose it is, and callers check that.

use std::io;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wafleet_cluster_config::MediaLimits;

use super::{ByteStream, MediaError, MediaKey, MediaStore, MediaType, UrlFetcher};
use crate::clock::now_ms;
use crate::content::MediaPart;
use crate::seal::data_keys::DataKeys;
use crate::seal::stream::{ObjectKey, open_stream, seal_stream, sealed_len};
use crate::seal::text::Place;
use crate::store::StoreError;

/// What every media id starts with.
const ID_PREFIX: &str = "med_";
/// What a record's object name adds to the id.
const RECORD_SUFFIX: &str = ".meta";
/// The largest record (a few hundred bytes in practice).
const RECORD_LIMIT: u64 = 64 * 1024;
/// The longest MIME type and file name kept.
const MIME_MAX: usize = 127;
const FILENAME_MAX: usize = 255;
/// What a file without a MIME type is.
pub const DEFAULT_MIME: &str = "application/octet-stream";

/// Where a file came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MediaOrigin {
    /// `POST /v1/media`, or fetched from a URL to be sent.
    Upload,
    /// Received by a device in an inbound message.
    Received {
        device_id: String,
        message_id: String,
    },
}

/// One stored file.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRecord {
    pub id: String,
    pub tenant: String,
    /// What it is (an upload's asked or guessed type; a received file's type).
    #[serde(rename = "type")]
    pub media_type: MediaType,
    pub mime: String,
    /// Its size in bytes (of the file, not of what is stored).
    pub size: u64,
    /// The SHA-256 of the file, 64 lowercase hex digits.
    pub sha256: String,
    pub filename: Option<String>,
    pub created_at_ms: i64,
    pub origin: MediaOrigin,
    /// The key its bytes are sealed with, base64 (the record itself is sealed).
    key: String,
}

impl std::fmt::Debug for MediaRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaRecord")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("media_type", &self.media_type)
            .field("mime", &self.mime)
            .field("size", &self.size)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// A file to store.
#[derive(Debug, Clone)]
pub struct NewMedia {
    pub tenant: String,
    /// Its MIME type (checked; [`DEFAULT_MIME`] when empty).
    pub mime: String,
    /// What it will be sent as, which sets its size limit; guessed from the MIME type
    /// when absent ([`MediaType::of_mime`]).
    pub media_type: Option<MediaType>,
    pub filename: Option<String>,
    /// The size announced before the bytes (`Content-Length`): past the limit, the file
    /// is refused before a byte is read.
    pub announced_size: Option<u64>,
    pub origin: MediaOrigin,
}

/// The tenants' media files, over one media store. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct MediaLibrary {
    store: Arc<dyn MediaStore>,
    keys: Arc<DataKeys>,
    limits: MediaLimits,
    /// Fetches the URLs of media to send.
    fetcher: UrlFetcher,
}

impl MediaLibrary {
    pub fn new(store: Arc<dyn MediaStore>, keys: Arc<DataKeys>, limits: MediaLimits) -> Self {
        MediaLibrary {
            store,
            keys,
            limits,
            fetcher: UrlFetcher::new(false),
        }
    }

    /// This library, fetching media URLs that point at private addresses too
    /// (`media.allow_private_urls`: tests, private networks).
    pub fn allowing_private_urls(mut self, allow: bool) -> Self {
        self.fetcher = UrlFetcher::new(allow);
        self
    }

    /// Stores what `url` answers as a new upload of `tenant` (see [`UrlFetcher`]).
    pub async fn fetch(
        &self,
        tenant: &str,
        url: &str,
        media_type: MediaType,
        filename: Option<String>,
    ) -> Result<MediaRecord, MediaError> {
        self.fetcher
            .fetch(self, tenant, url, media_type, filename)
            .await
    }

    /// The size limit of each type.
    pub fn limits(&self) -> &MediaLimits {
        &self.limits
    }

    /// Stores `body` as a new file: streamed, capped at its type's limit while it
    /// passes ([`MediaError::TooLarge`], nothing stored), hashed, sealed.
    pub async fn put(&self, new: NewMedia, body: ByteStream) -> Result<MediaRecord, MediaError> {
        let mime = check_mime(&new.mime)?;
        let filename = new.filename.map(|f| check_filename(&f)).transpose()?;
        let media_type = new.media_type.unwrap_or_else(|| MediaType::of_mime(&mime));
        let limit = media_type.limit(&self.limits);
        if new.announced_size.is_some_and(|size| size > limit) {
            return Err(MediaError::TooLarge { limit });
        }
        let id = format!("{ID_PREFIX}{}", MediaKey::random());
        let bytes_key = object_key(&id)?;
        let key = ObjectKey::random();
        let seen = Arc::new(Mutex::new((Sha256::new(), 0u64)));
        let hashed = {
            let seen = seen.clone();
            body.inspect_ok(move |chunk| {
                let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                seen.0.update(chunk);
                seen.1 += chunk.len() as u64;
            })
            .boxed()
        };
        self.store
            .put(&bytes_key, seal_stream(&key, hashed), sealed_len(limit))
            .await
            .map_err(|error| match error {
                MediaError::TooLarge { .. } => MediaError::TooLarge { limit },
                other => other,
            })?;
        let (sha256, size) = {
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            let digest = std::mem::take(&mut seen.0).finalize();
            (hex::encode(digest), seen.1)
        };
        let record = MediaRecord {
            id: id.clone(),
            tenant: new.tenant,
            media_type,
            mime,
            size,
            sha256,
            filename,
            created_at_ms: now_ms(),
            origin: new.origin,
            key: BASE64.encode(key.as_bytes()),
        };
        if let Err(error) = self.put_record(&record).await {
            let _ = self.store.delete(&bytes_key).await;
            return Err(error);
        }
        Ok(record)
    }

    async fn put_record(&self, record: &MediaRecord) -> Result<(), MediaError> {
        let json = serde_json::to_string(record)
            .map_err(|e| MediaError::Storage(format!("cannot encode a media record: {e}")))?;
        let sealed = self
            .keys
            .seal(&record.tenant, &Place::media(&record.id), &json)
            .await
            .map_err(store_error)?;
        let bytes = Bytes::from(sealed.into_string());
        let body = stream::once(async move { Ok::<_, io::Error>(bytes) }).boxed();
        self.store
            .put(&record_key(&record.id)?, body, RECORD_LIMIT)
            .await
            .map(|_| ())
    }

    /// The record of file `id`: [`MediaError::NotFound`] if there is none (or `id` is
    /// not a media id). Whose it is, the caller checks.
    pub async fn record(&self, id: &str) -> Result<MediaRecord, MediaError> {
        let body = self.store.get(&record_key(id)?).await?;
        let bytes: Vec<Bytes> = body
            .stream
            .try_collect()
            .await
            .map_err(|e| MediaError::Storage(format!("cannot read media record {id}: {e}")))?;
        let text = String::from_utf8(bytes.concat())
            .map_err(|_| MediaError::Unreadable(format!("media record {id} is not text")))?;
        let json = self
            .keys
            .open(&Place::media(id), &text)
            .await
            .map_err(|error| match error {
                StoreError::Corrupt(reason) => MediaError::Unreadable(reason),
                other => store_error(other),
            })?;
        let record: MediaRecord = serde_json::from_str(&json)
            .map_err(|e| MediaError::Unreadable(format!("media record {id}: {e}")))?;
        if record.id != id {
            return Err(MediaError::Unreadable(format!(
                "media record {id} names another file"
            )));
        }
        Ok(record)
    }

    /// The bytes of the file `record` describes, opened as they stream. A stored object
    /// that fails to open ends the stream with an error.
    pub async fn bytes(&self, record: &MediaRecord) -> Result<ByteStream, MediaError> {
        let raw = BASE64
            .decode(&record.key)
            .ok()
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .ok_or_else(|| {
                MediaError::Unreadable(format!("media record {}: bad key", record.id))
            })?;
        let body = self.store.get(&object_key(&record.id)?).await?;
        Ok(open_stream(&ObjectKey::from_bytes(raw), body.stream))
    }

    /// File `id` as a message of a device of `tenant` sends it as `media_type`: another
    /// tenant's file is [`MediaError::NotFound`] (as one that does not exist), and one
    /// past the type's size limit [`MediaError::TooLarge`].
    pub async fn for_send(
        &self,
        tenant: &str,
        id: &str,
        media_type: MediaType,
    ) -> Result<MediaPart, MediaError> {
        let record = self.record(id).await?;
        if record.tenant != tenant {
            return Err(MediaError::NotFound(record_key(id)?));
        }
        let limit = media_type.limit(&self.limits);
        if record.size > limit {
            return Err(MediaError::TooLarge { limit });
        }
        Ok(MediaPart::of(&record, media_type))
    }

    /// Removes file `id` (its record first, so it is gone at once); nothing there is
    /// fine too.
    pub async fn delete(&self, id: &str) -> Result<(), MediaError> {
        self.store.delete(&record_key(id)?).await?;
        self.store.delete(&object_key(id)?).await
    }
}

/// Whether `id` is a media id as this library makes them.
pub fn is_media_id(id: &str) -> bool {
    id.strip_prefix(ID_PREFIX)
        .is_some_and(|rest| rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn object_key(id: &str) -> Result<MediaKey, MediaError> {
    if !is_media_id(id) {
        return Err(MediaError::Invalid(format!("{id:?} is not a media id")));
    }
    MediaKey::parse(id).ok_or_else(|| MediaError::Invalid(format!("{id:?} is not a media id")))
}

fn record_key(id: &str) -> Result<MediaKey, MediaError> {
    object_key(id)?;
    MediaKey::parse(&format!("{id}{RECORD_SUFFIX}"))
        .ok_or_else(|| MediaError::Invalid(format!("{id:?} is not a media id")))
}

/// `type/subtype` of token characters (parameters such as `; charset=` dropped),
/// lowercased; [`DEFAULT_MIME`] when empty.
pub fn check_mime(mime: &str) -> Result<String, MediaError> {
    let essence = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence.is_empty() {
        return Ok(DEFAULT_MIME.to_owned());
    }
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match essence.split_once('/') {
        Some((kind, sub)) if essence.len() <= MIME_MAX && token(kind) && token(sub) => Ok(essence),
        _ => Err(MediaError::Invalid(format!(
            "{mime:?} is not a MIME type like image/jpeg"
        ))),
    }
}

fn check_filename(name: &str) -> Result<String, MediaError> {
    let ok = !name.is_empty()
        && name.chars().count() <= FILENAME_MAX
        && !name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\');
    if ok {
        Ok(name.to_owned())
    } else {
        Err(MediaError::Invalid(format!(
            "filename must be 1 to {FILENAME_MAX} characters without control characters or slashes"
        )))
    }
}

fn store_error(error: StoreError) -> MediaError {
    MediaError::Storage(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::FolderMediaStore;
    use crate::seal::{MasterKey, Sealer};
    use crate::store::SqliteStore;

    async fn library(dir: &std::path::Path) -> (MediaLibrary, Arc<FolderMediaStore>) {
        let store = Arc::new(SqliteStore::open(&dir.join("wafleet.db")).unwrap());
        let keys = Arc::new(DataKeys::new(
            store,
            Arc::new(Sealer::new(MasterKey::new(1, [7; 32]))),
        ));
        let media = Arc::new(FolderMediaStore::open(&dir.join("media")).await.unwrap());
        let limits = MediaLimits {
            image_bytes: 100_000,
            ..MediaLimits::default()
        };
        (MediaLibrary::new(media.clone(), keys, limits), media)
    }

    fn body(data: Vec<u8>) -> ByteStream {
        let chunks: Vec<io::Result<Bytes>> = data
            .chunks(10_000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        stream::iter(chunks).boxed()
    }

    /// The files under `dir`, at any depth.
    fn files_in(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| if p.is_dir() { files_in(&p) } else { 1 })
            .sum()
    }

    fn new(mime: &str) -> NewMedia {
        NewMedia {
            tenant: "acme".into(),
            mime: mime.into(),
            media_type: None,
            filename: Some("photo.png".into()),
            announced_size: None,
            origin: MediaOrigin::Upload,
        }
    }

    #[tokio::test]
    async fn a_file_is_stored_sealed_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (library, media) = library(dir.path()).await;
        let data: Vec<u8> = (0..90_000u32).map(|i| (i % 13) as u8).collect();
        let record = library
            .put(new("image/PNG; x=1"), body(data.clone()))
            .await
            .unwrap();
        assert!(is_media_id(&record.id), "{}", record.id);
        assert_eq!(
            (record.media_type, record.mime.as_str(), record.size),
            (MediaType::Image, "image/png", 90_000)
        );
        assert_eq!(record.sha256, hex::encode(Sha256::digest(&data)));
        let again = library.record(&record.id).await.unwrap();
        assert_eq!(again, record);
        let bytes: Vec<Bytes> = library
            .bytes(&again)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(bytes.concat(), data);
        // Neither object holds the file or its name in clear.
        for key in [
            object_key(&record.id).unwrap(),
            record_key(&record.id).unwrap(),
        ] {
            let stored: Vec<Bytes> = media
                .get(&key)
                .await
                .unwrap()
                .stream
                .try_collect()
                .await
                .unwrap();
            let stored = stored.concat();
            for at in [0, 30_000, 89_000] {
                let plain = &data[at..at + 64];
                assert!(
                    !stored.windows(64).any(|w| w == plain),
                    "bytes at {at} in clear"
                );
            }
            assert!(!stored.windows(9).any(|w| w == b"photo.png"));
        }
        library.delete(&record.id).await.unwrap();
        assert!(matches!(
            library.record(&record.id).await,
            Err(MediaError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn past_its_type_limit_a_file_is_refused_and_nothing_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let (library, _) = library(dir.path()).await;
        let announced = NewMedia {
            announced_size: Some(100_001),
            ..new("image/jpeg")
        };
        assert!(matches!(
            library.put(announced, body(vec![1])).await,
            Err(MediaError::TooLarge { limit: 100_000 })
        ));
        assert!(matches!(
            library.put(new("image/jpeg"), body(vec![1; 100_001])).await,
            Err(MediaError::TooLarge { limit: 100_000 })
        ));
        // The same bytes as a document are fine.
        let document = NewMedia {
            media_type: Some(MediaType::Document),
            ..new("image/jpeg")
        };
        library.put(document, body(vec![1; 100_001])).await.unwrap();
        assert_eq!(
            files_in(&dir.path().join("media")),
            2,
            "one file's two objects only"
        );
    }

    #[tokio::test]
    async fn bad_ids_mimes_and_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (library, _) = library(dir.path()).await;
        for id in [
            "",
            "med_",
            "med_../x",
            "xyz_0123456789abcdef0123456789abcdef",
        ] {
            assert!(matches!(
                library.record(id).await,
                Err(MediaError::Invalid(_))
            ));
        }
        assert!(matches!(
            library.record("med_0123456789abcdef0123456789abcdef").await,
            Err(MediaError::NotFound(_))
        ));
        assert_eq!(check_mime("").unwrap(), DEFAULT_MIME);
        for bad in ["image", "image/", "/png", "a b/c", "image/png/x"] {
            assert!(check_mime(bad).is_err(), "{bad}");
        }
        for bad in ["", "a/b", "a\nb"] {
            assert!(check_filename(bad).is_err(), "{bad:?}");
        }
    }
}
