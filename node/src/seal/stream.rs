//! Sealing a stream of bytes (media) chunk by chunk, so that neither sealing nor
//! opening ever holds more than a chunk of it.
//!
//! Every object gets its own random AES-256 key ([`ObjectKey`]), kept in the object's
//! record (itself sealed with the tenant's data key). The plaintext is cut into chunks
//! of [`CHUNK`] bytes; chunk `i` is sealed with AES-256-GCM under the object key with
//! the nonce `0 0 0 FINAL i(u64 big-endian)`, where `FINAL` is 1 for the last chunk and
//! 0 for the others, and no associated data. A key seals one object only, so counter
//! nonces never repeat; the flag makes a stream cut at a chunk boundary fail to open
//! (its new last chunk was not sealed as the last), and the counter makes chunks
//! swapped or dropped fail. An empty plaintext is one empty final chunk (its tag).
//!
//! The sealed object is the sealed chunks one after the other: `CHUNK + 16` bytes
//! each, the last one shorter or equal ([`sealed_len`]).

use std::io;

use aes_gcm::aead::{AeadInOut, KeyInit, Tag};
use aes_gcm::{Aes256Gcm, Key};
use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, StreamExt};

use crate::media::ByteStream;

/// Plaintext bytes per sealed chunk.
pub const CHUNK: usize = 64 * 1024;
/// What sealing adds to each chunk (the GCM tag).
const TAG: usize = 16;
/// A sealed chunk that is not the last.
const SEALED_CHUNK: usize = CHUNK + TAG;

/// One object's key. `Debug` never shows it.
#[derive(Clone)]
pub struct ObjectKey([u8; 32]);

impl std::fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ObjectKey(..)")
    }
}

impl ObjectKey {
    /// A fresh random key.
    ///
    /// # Panics
    /// If the operating system's random source fails.
    pub fn random() -> ObjectKey {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("os random source failed while making a media key");
        ObjectKey(key)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> ObjectKey {
        ObjectKey(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&Key::<Aes256Gcm>::from(self.0))
    }
}

/// The size of a sealed object whose plaintext is `plain` bytes.
pub fn sealed_len(plain: u64) -> u64 {
    let chunks = plain.div_ceil(CHUNK as u64).max(1);
    plain + chunks * TAG as u64
}

fn nonce(index: u64, last: bool) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[3] = u8::from(last);
    nonce[4..].copy_from_slice(&index.to_be_bytes());
    nonce
}

/// A failure to open a sealed object, as the stream's error.
fn unauthentic(index: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("sealed media chunk {index} failed authentication (corrupt, cut or forged)"),
    )
}

/// Where a sealing or opening stream is.
struct Cutter {
    input: ByteStream,
    /// Bytes read and not yet sealed (or opened).
    pending: BytesMut,
    /// The index of the next chunk.
    index: u64,
    /// The input ended.
    ended: bool,
    /// The final chunk went out: nothing more.
    done: bool,
}

impl Cutter {
    fn new(input: ByteStream) -> Cutter {
        Cutter {
            input,
            pending: BytesMut::new(),
            index: 0,
            ended: false,
            done: false,
        }
    }

    /// Reads until more than `size` bytes are pending or the input ends; then the next
    /// chunk: `size` bytes and not the last, or what is left and the last.
    async fn next_chunk(&mut self, size: usize) -> io::Result<Option<(BytesMut, bool)>> {
        if self.done {
            return Ok(None);
        }
        while !self.ended && self.pending.len() <= size {
            match self.input.next().await {
                Some(chunk) => self.pending.extend_from_slice(&chunk?),
                None => self.ended = true,
            }
        }
        if self.pending.len() > size {
            return Ok(Some((self.pending.split_to(size), false)));
        }
        self.done = true;
        Ok(Some((self.pending.split(), true)))
    }
}

/// `plain`, sealed under `key` (see the module docs), as a stream of sealed chunks.
pub fn seal_stream(key: &ObjectKey, plain: ByteStream) -> ByteStream {
    let cipher = key.cipher();
    stream::try_unfold(
        (Cutter::new(plain), cipher),
        |(mut cutter, cipher)| async move {
            let Some((mut chunk, last)) = cutter.next_chunk(CHUNK).await? else {
                return Ok(None);
            };
            let tag = cipher
                .encrypt_inout_detached(
                    &nonce(cutter.index, last).into(),
                    b"",
                    chunk.as_mut().into(),
                )
                .map_err(|_| io::Error::other("aes-gcm refused to seal a media chunk"))?;
            chunk.extend_from_slice(&tag);
            cutter.index += 1;
            Ok(Some((chunk.freeze(), (cutter, cipher))))
        },
    )
    .boxed()
}

/// `sealed`, opened with `key`, as a stream of plaintext chunks. A chunk that fails to
/// open ends the stream with an [`io::ErrorKind::InvalidData`] error.
pub fn open_stream(key: &ObjectKey, sealed: ByteStream) -> ByteStream {
    let cipher = key.cipher();
    stream::try_unfold(
        (Cutter::new(sealed), cipher),
        |(mut cutter, cipher)| async move {
            let Some((mut chunk, last)) = cutter.next_chunk(SEALED_CHUNK).await? else {
                return Ok(None);
            };
            let index = cutter.index;
            if chunk.len() < TAG {
                return Err(unauthentic(index));
            }
            let tag = chunk.split_off(chunk.len() - TAG);
            let tag = Tag::<Aes256Gcm>::try_from(&tag[..]).map_err(|_| unauthentic(index))?;
            cipher
                .decrypt_inout_detached(
                    &nonce(index, last).into(),
                    b"",
                    chunk.as_mut().into(),
                    &tag,
                )
                .map_err(|_| unauthentic(index))?;
            cutter.index += 1;
            Ok(Some((Bytes::from(chunk), (cutter, cipher))))
        },
    )
    .boxed()
}

#[cfg(test)]
mod tests {
    use futures_util::TryStreamExt;

    use super::*;

    /// `data` as a stream of pieces of `piece` bytes (how a body arrives).
    fn pieces(data: &[u8], piece: usize) -> ByteStream {
        let chunks: Vec<io::Result<Bytes>> = data
            .chunks(piece.max(1))
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        stream::iter(chunks).boxed()
    }

    async fn collect(stream: ByteStream) -> io::Result<Vec<u8>> {
        let chunks: Vec<Bytes> = stream.try_collect().await?;
        Ok(chunks.concat())
    }

    #[tokio::test]
    async fn what_is_sealed_opens_to_the_same_bytes_whatever_the_sizes() {
        let key = ObjectKey::random();
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            for piece in [1000, CHUNK, 200_000] {
                let sealed = collect(seal_stream(&key, pieces(&data, piece)))
                    .await
                    .unwrap();
                assert_eq!(sealed.len() as u64, sealed_len(len as u64), "len {len}");
                if len > 0 {
                    assert_ne!(&sealed[..len.min(64)], &data[..len.min(64)], "len {len}");
                }
                for read in [999, SEALED_CHUNK, 300_000] {
                    let opened = collect(open_stream(&key, pieces(&sealed, read)))
                        .await
                        .unwrap();
                    assert_eq!(opened, data, "len {len}, piece {piece}, read {read}");
                }
            }
        }
    }

    #[tokio::test]
    async fn a_cut_swapped_altered_or_foreign_object_does_not_open() {
        let key = ObjectKey::random();
        let data: Vec<u8> = (0..3 * CHUNK + 5).map(|i| i as u8).collect();
        let sealed = collect(seal_stream(&key, pieces(&data, CHUNK)))
            .await
            .unwrap();
        let fails = |bytes: Vec<u8>, key: ObjectKey| async move {
            let error = collect(open_stream(&key, pieces(&bytes, 4096)))
                .await
                .unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        };
        // Cut at a chunk boundary: the new last chunk was not sealed as the last.
        fails(sealed[..2 * SEALED_CHUNK].to_vec(), key.clone()).await;
        // Cut inside a chunk.
        fails(sealed[..sealed.len() - 1].to_vec(), key.clone()).await;
        // Two chunks swapped.
        let mut swapped = sealed[SEALED_CHUNK..2 * SEALED_CHUNK].to_vec();
        swapped.extend_from_slice(&sealed[..SEALED_CHUNK]);
        swapped.extend_from_slice(&sealed[2 * SEALED_CHUNK..]);
        fails(swapped, key.clone()).await;
        // One bit flipped.
        let mut flipped = sealed.clone();
        flipped[SEALED_CHUNK + 10] ^= 1;
        fails(flipped, key.clone()).await;
        // Another object's key.
        fails(sealed.clone(), ObjectKey::random()).await;
        // Nothing at all is not even an empty object.
        fails(Vec::new(), key).await;
    }
}
