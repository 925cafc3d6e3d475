//! [`NoMediaStore`]: the media store of a process configured without one.

use async_trait::async_trait;

use super::{ByteStream, MediaBody, MediaError, MediaKey, MediaStore, StoredMedia};

/// Stores nothing: every call fails with [`MediaError::Storage`] saying that no media
/// storage is configured. What a fleet started without `[media]` has (library users and
/// tests that send text only); `wafleet` itself always configures one.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMediaStore;

fn unconfigured() -> MediaError {
    MediaError::Storage("no media storage is configured on this process".into())
}

#[async_trait]
impl MediaStore for NoMediaStore {
    async fn put(&self, _: &MediaKey, _: ByteStream, _: u64) -> Result<StoredMedia, MediaError> {
        Err(unconfigured())
    }

    async fn get(&self, _: &MediaKey) -> Result<MediaBody, MediaError> {
        Err(unconfigured())
    }

    async fn head(&self, _: &MediaKey) -> Result<Option<u64>, MediaError> {
        Err(unconfigured())
    }

    async fn delete(&self, _: &MediaKey) -> Result<(), MediaError> {
        Err(unconfigured())
    }
}
