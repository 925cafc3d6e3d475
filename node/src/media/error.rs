//! [`MediaError`]: why a media store call failed.

use std::io;

use super::MediaKey;

/// Why a [`MediaStore`](super::MediaStore) call failed. Only `Storage` is the store's own
/// fault (retry later); the others are about the request.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Nothing is stored under the key.
    #[error("no media stored under {0}")]
    NotFound(MediaKey),
    /// Something is stored under the key already: objects are never replaced.
    #[error("media {0} already exists")]
    AlreadyExists(MediaKey),
    /// The upload went past its limit; nothing was stored.
    #[error("the upload is larger than its limit of {limit} bytes; nothing was stored")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The upload's own stream failed (the client went away); nothing was stored.
    #[error("the upload's body failed; nothing was stored: {0}")]
    Body(#[source] io::Error),
    /// The request is not acceptable (a malformed MIME type, a bad id).
    #[error("{0}")]
    Invalid(String),
    /// A media record that does not open (corrupt, or sealed with a key this store
    /// does not hold).
    #[error("media record unreadable: {0}")]
    Unreadable(String),
    /// A media URL could not be fetched: its target is not allowed (the SSRF rule of
    /// [`crate::egress`]), or it did not answer 2xx; nothing was stored.
    #[error("{0}")]
    Fetch(String),
    /// The folder or the object store failed; what was being written is not visible.
    #[error("media storage failed: {0}")]
    Storage(String),
}
