//! [`MediaStore`]: opaque bytes under a key, written once, streamed both ways.

use std::fmt;

use async_trait::async_trait;
use tokio::io::AsyncRead;

use super::{ByteStream, MediaError, MediaKey, reader_stream};

/// Where media bytes live: object key → opaque bytes. Implemented by
/// [`FolderMediaStore`](super::FolderMediaStore) (a folder of this machine) and
/// [`S3MediaStore`](super::S3MediaStore) (any S3-compatible object store, which every
/// node of a cluster reads). Both pass [`conformance`](super::conformance).
///
/// The contract:
/// - **Streamed.** A put reads its body chunk by chunk and a get returns a stream: no
///   call holds a whole object in memory.
/// - **Capped while streaming.** A put past its `limit` fails with
///   [`MediaError::TooLarge`] at the chunk that passes it, before the rest is read.
/// - **All or nothing.** Until a put returns `Ok`, its object is not visible: a put that
///   fails (cap, failed body, storage error) or is dropped leaves nothing under the key.
/// - **Immutable.** A key, once written, keeps its bytes until deleted: a put under an
///   existing key fails with [`MediaError::AlreadyExists`]. Keys are meant to be fresh
///   ([`MediaKey::random`]); see each backend for how strictly a race of two puts under
///   one new key is refused.
/// - **Opaque.** The bytes are stored as given: sealing them is a layer above.
#[async_trait]
pub trait MediaStore: Send + Sync + fmt::Debug {
    /// Stores `body` under `key`, at most `limit` bytes of it, and returns its size and
    /// SHA-256 (computed as the bytes passed).
    async fn put(
        &self,
        key: &MediaKey,
        body: ByteStream,
        limit: u64,
    ) -> Result<StoredMedia, MediaError>;

    /// The bytes under `key`, with their size up front; [`MediaError::NotFound`] if none.
    async fn get(&self, key: &MediaKey) -> Result<MediaBody, MediaError>;

    /// The size of what is under `key`, or `None` if nothing is.
    async fn head(&self, key: &MediaKey) -> Result<Option<u64>, MediaError>;

    /// Removes what is under `key`; nothing there is fine too.
    async fn delete(&self, key: &MediaKey) -> Result<(), MediaError>;
}

impl dyn MediaStore + '_ {
    /// [`MediaStore::put`] from a reader (a file, a decoder) rather than a stream.
    pub async fn put_reader<R>(
        &self,
        key: &MediaKey,
        reader: R,
        limit: u64,
    ) -> Result<StoredMedia, MediaError>
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        self.put(key, reader_stream(reader), limit).await
    }
}

/// What a put stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredMedia {
    /// Its size in bytes.
    pub size: u64,
    /// The SHA-256 of its bytes.
    pub sha256: [u8; 32],
}

impl StoredMedia {
    /// The SHA-256 as 64 lowercase hex digits (the API's `sha256`).
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// What a get returns: the size, known before the first byte, and the bytes.
pub struct MediaBody {
    /// The object's size in bytes (a response's `Content-Length`).
    pub size: u64,
    /// Its bytes, in order.
    pub stream: ByteStream,
}

impl fmt::Debug for MediaBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaBody")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}
