//! Media bytes — uploads, and media received from WhatsApp — behind one trait,
//! [`MediaStore`], with two backends: a folder of this machine ([`FolderMediaStore`],
//! standalone) and an S3-compatible object store ([`S3MediaStore`], clusters, where any
//! node reads what another stored). Both pass the same [`conformance`] suite.
//!
//! The store knows keys and opaque bytes only. [`MediaLibrary`] is the layer above it
//! that the API and the devices use: files with an id, an owner, a type, a MIME type,
//! a size and a SHA-256, sealed at rest.
//!
//! # Layout
//! - [`store`](MediaStore): the trait, what a put returns ([`StoredMedia`]) and what a
//!   get returns ([`MediaBody`]).
//! - `key`: [`MediaKey`], a name safe as a file name and an S3 key.
//! - `body`: [`ByteStream`], bytes in flight, and [`reader_stream`].
//! - `intake`: the size, SHA-256 and cap of a put, computed once for every backend.
//! - `folder`, `s3`: the two backends.
//! - `library`: [`MediaLibrary`], [`MediaRecord`]: files as the API knows them.
//! - `kind`: [`MediaType`], what a file is sent as, and its size limit.
//! - `none`: [`NoMediaStore`], for a process configured without media storage.
//! - `fetch`: [`UrlFetcher`], a file fetched from a URL under the SSRF rule.
//! - `received`: [`ReceivedFiles`], the files a device received, deleted with it.
//! - `error`: [`MediaError`].
//! - [`conformance`]: the suite every backend must pass.

mod body;
pub mod conformance;
mod error;
mod fetch;
mod folder;
mod intake;
mod key;
mod kind;
mod library;
mod none;
mod received;
mod s3;
mod store;

use std::sync::Arc;

use wafleet_cluster_config::{MediaBackend, MediaSettings};

pub use body::{ByteStream, reader_stream};
pub use error::MediaError;
pub use fetch::UrlFetcher;
pub use folder::FolderMediaStore;
pub use key::MediaKey;
pub use kind::MediaType;
pub use library::{
    DEFAULT_MIME, MediaLibrary, MediaOrigin, MediaRecord, NewMedia, check_mime, is_media_id,
};
pub use none::NoMediaStore;
pub use received::{Deleted, ReceivedFiles};
pub use s3::S3MediaStore;
pub use store::{MediaBody, MediaStore, StoredMedia};

/// The media store `settings` choose.
pub async fn open(settings: &MediaSettings) -> Result<Arc<dyn MediaStore>, MediaError> {
    Ok(match settings.backend {
        MediaBackend::Folder => Arc::new(FolderMediaStore::open(&settings.folder.path).await?),
        MediaBackend::S3 => Arc::new(S3MediaStore::new(&settings.s3)?),
    })
}
