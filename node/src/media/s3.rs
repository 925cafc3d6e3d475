//! [`S3MediaStore`]: media in an S3-compatible object store, which every node of a
//! cluster reads.
//!
//! The client is `object_store`'s S3 implementation (Apache Arrow): request signing,
//! retries with backoff, multipart uploads, on the reqwest, hyper and rustls the node
//! already has. An object smaller than one part is sent in one `PutObject`, only once
//! its body has ended; a larger one is a multipart upload of 5 MiB parts, at most two in
//! flight, completed only after the body ended within its limit and aborted otherwise.
//! Either way nothing is visible under the key before the put returns `Ok`.
//!
//! Immutability: a put first checks that the key is free (`HeadObject`). Two puts racing
//! on one new key could both pass that check, and the later would win; keys are fresh
//! random ids ([`MediaKey::random`]), so that race needs a caller reusing a key.
//!
//! A process that dies mid-upload leaves the parts it sent, invisible but billed: give
//! the bucket a lifecycle rule that aborts incomplete multipart uploads after a day.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStoreExt, PutPayload, WriteMultipart};
use tracing::warn;
use wafleet_cluster_config::MediaS3Settings;

use super::intake::Intake;
use super::{ByteStream, MediaBody, MediaError, MediaKey, MediaStore, StoredMedia};

/// The size of each part of a multipart upload: S3's smallest (every part but the last
/// must be at least 5 MiB), which keeps an upload's memory low.
const PART_SIZE: usize = 5 * 1024 * 1024;

/// Parts of one upload sent at once: with the part being filled, an upload holds at
/// most three parts (15 MiB) in memory.
const PARTS_IN_FLIGHT: usize = 2;

/// Media in an S3-compatible object store.
#[derive(Debug)]
pub struct S3MediaStore {
    client: AmazonS3,
    /// What every object's key starts with (`media/`).
    prefix: String,
}

impl S3MediaStore {
    /// A client for the bucket `settings` name. Credentials not in `settings` come from
    /// `AWS_*` variables, then the instance's role. No request is made yet: a wrong
    /// endpoint or key shows on the first call.
    pub fn new(settings: &MediaS3Settings) -> Result<S3MediaStore, MediaError> {
        let options = ClientOptions::new()
            // No limit on a whole request: a large download to a slow client may take
            // minutes. Stalls are caught by the connect and read timeouts instead.
            .with_timeout_disabled()
            .with_connect_timeout(Duration::from_secs(5))
            .with_read_timeout(Duration::from_secs(30));
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_virtual_hosted_style_request(!settings.path_style)
            .with_client_options(options);
        if let Some(endpoint) = &settings.endpoint {
            let endpoint = client_endpoint(endpoint, &settings.bucket, settings.path_style)?;
            builder = builder
                .with_allow_http(endpoint.starts_with("http://"))
                .with_endpoint(endpoint);
        }
        if let (Some(id), Some(secret)) = (&settings.access_key_id, &settings.secret_access_key) {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        let client = builder
            .build()
            .map_err(|e| MediaError::Storage(format!("configuring the S3 client: {e}")))?;
        Ok(S3MediaStore {
            client,
            prefix: settings.prefix.clone(),
        })
    }

    fn path_of(&self, key: &MediaKey) -> Path {
        Path::from(format!("{}{key}", self.prefix))
    }

    /// Sends what `intake` still yields as parts of `upload`, after `first`.
    async fn send_parts(
        upload: &mut WriteMultipart,
        first: Vec<Bytes>,
        intake: &mut Intake,
    ) -> Result<(), MediaError> {
        for chunk in first {
            upload.put(chunk);
        }
        loop {
            upload
                .wait_for_capacity(PARTS_IN_FLIGHT)
                .await
                .map_err(storage)?;
            match intake.next().await? {
                Some(chunk) => upload.put(chunk),
                None => return Ok(()),
            }
        }
    }
}

#[async_trait]
impl MediaStore for S3MediaStore {
    async fn put(
        &self,
        key: &MediaKey,
        body: ByteStream,
        limit: u64,
    ) -> Result<StoredMedia, MediaError> {
        if self.head(key).await?.is_some() {
            return Err(MediaError::AlreadyExists(key.clone()));
        }
        let path = self.path_of(key);
        let mut intake = Intake::new(body, limit);

        // Up to one part: a single PutObject once the body has ended.
        let mut first = Vec::new();
        let mut buffered = 0;
        while buffered < PART_SIZE {
            match intake.next().await? {
                Some(chunk) => {
                    buffered += chunk.len();
                    first.push(chunk);
                }
                None => {
                    self.client
                        .put(&path, PutPayload::from_iter(first))
                        .await
                        .map_err(storage)?;
                    return Ok(intake.finish());
                }
            }
        }

        // More: a multipart upload, aborted unless the whole body made it.
        let upload = self.client.put_multipart(&path).await.map_err(storage)?;
        let mut upload = PendingUpload::new(WriteMultipart::new_with_chunk_size(upload, PART_SIZE));
        let sent = Self::send_parts(upload.writer(), first, &mut intake).await;
        let writer = upload.into_inner();
        match sent {
            // `finish` aborts the upload itself when completing fails.
            Ok(()) => {
                writer.finish().await.map_err(storage)?;
                Ok(intake.finish())
            }
            Err(e) => {
                if let Err(abort) = writer.abort().await {
                    warn!(key = %key, error = %abort, "could not abort a failed media upload");
                }
                Err(e)
            }
        }
    }

    async fn get(&self, key: &MediaKey) -> Result<MediaBody, MediaError> {
        let result = self
            .client
            .get(&self.path_of(key))
            .await
            .map_err(|e| not_found_or_storage(e, key))?;
        Ok(MediaBody {
            size: result.meta.size,
            stream: result.into_stream().map_err(std::io::Error::other).boxed(),
        })
    }

    async fn head(&self, key: &MediaKey) -> Result<Option<u64>, MediaError> {
        match self.client.head(&self.path_of(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage(e)),
        }
    }

    async fn delete(&self, key: &MediaKey) -> Result<(), MediaError> {
        match self.client.delete(&self.path_of(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(storage(e)),
        }
    }
}

/// A multipart upload under way: aborted (in a task of its own) if the put is dropped
/// before it completed or aborted it, so a cancelled request leaves no parts behind.
struct PendingUpload(Option<WriteMultipart>);

impl PendingUpload {
    fn new(writer: WriteMultipart) -> PendingUpload {
        PendingUpload(Some(writer))
    }

    fn writer(&mut self) -> &mut WriteMultipart {
        self.0.as_mut().expect("only into_inner takes the writer")
    }

    /// The writer, to finish or abort: the put is past the point where dropping it
    /// needs this guard.
    fn into_inner(mut self) -> WriteMultipart {
        self.0.take().expect("only into_inner takes the writer")
    }
}

impl Drop for PendingUpload {
    fn drop(&mut self) {
        let Some(writer) = self.0.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = writer.abort().await {
                    warn!(error = %e, "could not abort a cancelled media upload");
                }
            });
        }
    }
}

/// The endpoint the client is given for the server at `endpoint`: the server itself for
/// path-style requests, and the bucket's own host (`bucket.host`) for virtual-hosted
/// ones, which is what `object_store` expects of an endpoint then.
fn client_endpoint(endpoint: &str, bucket: &str, path_style: bool) -> Result<String, MediaError> {
    if path_style {
        return Ok(endpoint.to_owned());
    }
    let invalid =
        |why: String| MediaError::Storage(format!("media.s3.endpoint `{endpoint}`: {why}"));
    let mut url = url::Url::parse(endpoint).map_err(|e| invalid(e.to_string()))?;
    let host = url
        .host_str()
        .ok_or_else(|| invalid("no host".into()))?
        .to_owned();
    url.set_host(Some(&format!("{bucket}.{host}")))
        .map_err(|e| invalid(e.to_string()))?;
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

fn storage(e: object_store::Error) -> MediaError {
    MediaError::Storage(e.to_string())
}

fn not_found_or_storage(e: object_store::Error, key: &MediaKey) -> MediaError {
    match e {
        object_store::Error::NotFound { .. } => MediaError::NotFound(key.clone()),
        e => storage(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_virtual_hosted_endpoint_puts_the_bucket_in_the_host() {
        assert_eq!(
            client_endpoint("http://127.0.0.1:9000", "media", true).unwrap(),
            "http://127.0.0.1:9000"
        );
        assert_eq!(
            client_endpoint("https://s3.example.net", "media", false).unwrap(),
            "https://media.s3.example.net"
        );
        assert_eq!(
            client_endpoint("https://minio.internal:9000/", "wafleet-media", false).unwrap(),
            "https://wafleet-media.minio.internal:9000"
        );
    }
}
