//! [`Intake`]: what a put reads, chunk by chunk: counted, hashed and capped on the way.

use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::{ByteStream, MediaError, StoredMedia};

/// The body of one put. Every backend reads its chunks through [`Intake::next`], so the
/// size, the SHA-256 and the cap are computed once, the same way, while the bytes pass:
/// nothing holds the whole upload. A chunk that would take the upload past its limit is
/// refused before the backend sees it.
pub(crate) struct Intake {
    body: ByteStream,
    limit: u64,
    size: u64,
    sha256: Sha256,
}

impl Intake {
    pub(crate) fn new(body: ByteStream, limit: u64) -> Intake {
        Intake {
            body,
            limit,
            size: 0,
            sha256: Sha256::new(),
        }
    }

    /// The next chunk to store; `None` at the end of the body. Fails with
    /// [`MediaError::TooLarge`] on the chunk that would pass the limit, and with
    /// [`MediaError::Body`] when the body itself fails.
    pub(crate) async fn next(&mut self) -> Result<Option<Bytes>, MediaError> {
        let Some(chunk) = self.body.next().await else {
            return Ok(None);
        };
        let chunk = chunk.map_err(MediaError::Body)?;
        let size = self.size + chunk.len() as u64;
        if size > self.limit {
            return Err(MediaError::TooLarge { limit: self.limit });
        }
        self.size = size;
        self.sha256.update(&chunk);
        Ok(Some(chunk))
    }

    /// The size and SHA-256 of everything [`Intake::next`] returned.
    pub(crate) fn finish(self) -> StoredMedia {
        StoredMedia {
            size: self.size,
            sha256: self.sha256.finalize().into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use futures_util::stream;

    use super::*;

    fn body(chunks: Vec<io::Result<Bytes>>) -> ByteStream {
        stream::iter(chunks).boxed()
    }

    async fn drain(intake: &mut Intake) -> Result<usize, MediaError> {
        let mut chunks = 0;
        while intake.next().await?.is_some() {
            chunks += 1;
        }
        Ok(chunks)
    }

    #[tokio::test]
    async fn counts_and_hashes_what_passes() {
        let chunks = vec![Ok(Bytes::from_static(b"ab")), Ok(Bytes::from_static(b"c"))];
        let mut intake = Intake::new(body(chunks), 3);
        assert_eq!(drain(&mut intake).await.unwrap(), 2);
        let stored = intake.finish();
        assert_eq!(stored.size, 3);
        assert_eq!(
            stored.sha256_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[tokio::test]
    async fn the_chunk_that_passes_the_limit_is_refused_before_it_is_returned() {
        let chunks = vec![Ok(Bytes::from_static(b"ab")), Ok(Bytes::from_static(b"cd"))];
        let mut intake = Intake::new(body(chunks), 3);
        assert_eq!(intake.next().await.unwrap().as_deref(), Some(&b"ab"[..]));
        assert!(matches!(
            intake.next().await,
            Err(MediaError::TooLarge { limit: 3 })
        ));
    }

    #[tokio::test]
    async fn a_failing_body_is_a_body_error() {
        let chunks = vec![
            Ok(Bytes::from_static(b"ab")),
            Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone")),
        ];
        let mut intake = Intake::new(body(chunks), 100);
        assert!(matches!(drain(&mut intake).await, Err(MediaError::Body(_))));
    }
}
