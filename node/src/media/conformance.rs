//! The conformance suite every [`MediaStore`] backend must pass.
//!
//! Each `check_*` function exercises one part of the contract and panics with a message
//! that says what broke. A backend's tests call [`run_all`] on a store of its own.
//! Checks only use fresh random keys, so they can share a store with each other and
//! with earlier runs. Sizes go past [`BIG`] so that a backend that switches strategy for
//! large objects (S3's multipart uploads, from 5 MiB) is exercised on both paths.

use std::io;

use bytes::Bytes;
use futures_util::TryStreamExt;
use futures_util::stream::{self, StreamExt};
use sha2::{Digest, Sha256};

use super::{ByteStream, MediaError, MediaKey, MediaStore};

/// A size above every backend's single-request threshold (two and a bit S3 parts).
pub const BIG: usize = 11 * 1024 * 1024 + 17;

/// The chunk size bodies are sent in: small, like a network's.
const CHUNK: usize = 8 * 1024;

/// How long a put of an endless body may take to fail on its cap: far more than
/// sending a few MiB to a local server needs.
const ENDLESS_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs every check, one after the other.
pub async fn run_all(store: &dyn MediaStore) {
    check_round_trip(store).await;
    check_put_reader(store).await;
    check_missing_key(store).await;
    check_delete(store).await;
    check_no_overwrite(store).await;
    check_cap(store).await;
    check_failed_body(store).await;
    check_dropped_put(store).await;
}

/// `len` bytes of deterministic noise (seeded by `len`), so every byte position matters.
pub fn noise(len: usize) -> Bytes {
    let mut rng = fastrand::Rng::with_seed(len as u64);
    let mut data = vec![0u8; len];
    rng.fill(&mut data);
    Bytes::from(data)
}

/// `data` as a stream of `chunk`-sized pieces (no copies).
pub fn chunked(data: Bytes, chunk: usize) -> ByteStream {
    let pieces: Vec<io::Result<Bytes>> = (0..data.len())
        .step_by(chunk.max(1))
        .map(|start| Ok(data.slice(start..(start + chunk).min(data.len()))))
        .collect();
    stream::iter(pieces).boxed()
}

/// `data`'s chunks, then an error: a client that went away mid-upload.
fn failing_after(data: Bytes) -> ByteStream {
    chunked(data, CHUNK)
        .chain(stream::once(async {
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "client went away",
            ))
        }))
        .boxed()
}

/// 64 KiB chunks without end.
fn endless() -> ByteStream {
    let chunk = noise(64 * 1024);
    stream::repeat_with(move || Ok(chunk.clone())).boxed()
}

async fn read_all(store: &dyn MediaStore, key: &MediaKey) -> (u64, Vec<u8>) {
    let body = store
        .get(key)
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e}"));
    let chunks: Vec<Bytes> = body
        .stream
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("reading {key}: {e}"));
    (body.size, chunks.concat())
}

async fn assert_absent(store: &dyn MediaStore, key: &MediaKey, after: &str) {
    assert_eq!(
        store.head(key).await.expect("head"),
        None,
        "{after}: nothing may be visible under the key"
    );
    assert!(
        matches!(store.get(key).await, Err(MediaError::NotFound(_))),
        "{after}: a get must say not found"
    );
}

/// Empty, one byte, some kilobytes in uneven chunks, and [`BIG`] in small chunks come
/// back whole, with the size and SHA-256 the put reported; head agrees.
pub async fn check_round_trip(store: &dyn MediaStore) {
    for (len, chunk) in [(0, CHUNK), (1, CHUNK), (100_003, 7_919), (BIG, CHUNK)] {
        let key = MediaKey::random();
        let data = noise(len);
        // A limit of exactly the size is enough.
        let stored = store
            .put(&key, chunked(data.clone(), chunk), len as u64)
            .await
            .unwrap_or_else(|e| panic!("put of {len} bytes: {e}"));
        assert_eq!(stored.size, len as u64, "size of {len} bytes");
        assert_eq!(
            stored.sha256,
            <[u8; 32]>::from(Sha256::digest(&data)),
            "sha256 of {len} bytes"
        );
        assert_eq!(store.head(&key).await.expect("head"), Some(len as u64));
        let (size, read) = read_all(store, &key).await;
        assert_eq!(size, len as u64, "size announced by get of {len} bytes");
        assert!(
            read == data,
            "the {len} bytes read back differ from those put"
        );
    }
}

/// A put from a reader stores what the reader yields.
pub async fn check_put_reader(store: &dyn MediaStore) {
    let key = MediaKey::random();
    let data = noise(300_001);
    let stored = store
        .put_reader(&key, io::Cursor::new(data.clone()), 1 << 20)
        .await
        .expect("put_reader");
    assert_eq!(stored.size, data.len() as u64);
    assert!(read_all(store, &key).await.1 == data, "bytes differ");
}

/// A key never written: not found, no size, and deleting it is fine.
pub async fn check_missing_key(store: &dyn MediaStore) {
    let key = MediaKey::random();
    assert_absent(store, &key, "a key never written").await;
    store.delete(&key).await.expect("deleting a missing key");
}

/// A deleted object is gone, and its key can be written again.
pub async fn check_delete(store: &dyn MediaStore) {
    let key = MediaKey::random();
    store
        .put(&key, chunked(noise(10), CHUNK), 100)
        .await
        .expect("put");
    store.delete(&key).await.expect("delete");
    assert_absent(store, &key, "delete").await;
    store.delete(&key).await.expect("deleting twice");
    let again = noise(20);
    store
        .put(&key, chunked(again.clone(), CHUNK), 100)
        .await
        .expect("put after delete");
    assert!(read_all(store, &key).await.1 == again);
}

/// A second put under a key fails and leaves the first object as it was.
pub async fn check_no_overwrite(store: &dyn MediaStore) {
    let key = MediaKey::random();
    let first = noise(1000);
    store
        .put(&key, chunked(first.clone(), CHUNK), 10_000)
        .await
        .expect("first put");
    let second = store.put(&key, chunked(noise(2000), CHUNK), 10_000).await;
    assert!(
        matches!(second, Err(MediaError::AlreadyExists(_))),
        "a second put must fail with AlreadyExists: {second:?}"
    );
    let (size, read) = read_all(store, &key).await;
    assert_eq!(size, 1000);
    assert!(read == first, "the first object must be unchanged");
}

/// One byte over the limit fails and stores nothing, small or [`BIG`]; an endless body
/// fails too (the cap is enforced while streaming, not after the end).
pub async fn check_cap(store: &dyn MediaStore) {
    for len in [1001, BIG] {
        let key = MediaKey::random();
        let limit = len as u64 - 1;
        let put = store.put(&key, chunked(noise(len), CHUNK), limit).await;
        assert!(
            matches!(put, Err(MediaError::TooLarge { limit: l }) if l == limit),
            "{len} bytes over a limit of {limit}: {put:?}"
        );
        assert_absent(store, &key, "a put over its limit").await;
    }
    for limit in [1 << 20, 6 << 20] {
        let key = MediaKey::random();
        // Bounded, so a backend that reads to the end before checking fails here
        // rather than hanging the suite.
        let put = tokio::time::timeout(ENDLESS_WITHIN, store.put(&key, endless(), limit))
            .await
            .unwrap_or_else(|_| {
                panic!("an endless body under a limit of {limit} did not fail in time")
            });
        assert!(
            matches!(put, Err(MediaError::TooLarge { .. })),
            "an endless body under a limit of {limit}: {put:?}"
        );
        assert_absent(store, &key, "an endless body").await;
    }
}

/// A body that fails mid-way (small, or after several MiB) fails the put and stores
/// nothing.
pub async fn check_failed_body(store: &dyn MediaStore) {
    for len in [5000, BIG] {
        let key = MediaKey::random();
        let put = store.put(&key, failing_after(noise(len)), u64::MAX).await;
        assert!(
            matches!(put, Err(MediaError::Body(_))),
            "a body failing after {len} bytes: {put:?}"
        );
        assert_absent(store, &key, "a failed body").await;
    }
}

/// A put dropped mid-way (the request was cancelled) stores nothing.
pub async fn check_dropped_put(store: &dyn MediaStore) {
    for len in [5000, BIG] {
        let key = MediaKey::random();
        let (sent, all_sent) = tokio::sync::oneshot::channel::<()>();
        // The body's bytes, then a signal, then nothing ever again.
        let body = chunked(noise(len), CHUNK)
            .chain(
                stream::once(async move {
                    let _ = sent.send(());
                    std::future::pending::<io::Result<Bytes>>().await
                })
                .boxed(),
            )
            .boxed();
        // The boxed future itself, so that dropping it below ends the put there.
        let mut put = store.put(&key, body, u64::MAX);
        tokio::select! {
            done = &mut put => panic!("a put whose body never ended returned: {done:?}"),
            _ = all_sent => {}
        }
        drop(put);
        assert_absent(store, &key, "a dropped put").await;
    }
}

/// The media library over `store`: a file larger than one S3 part put sealed, its
/// record read back, its bytes opened whole, the tenant and type limit rules of a
/// send, a file past its limit refused with nothing left, and a delete. What the API's
/// uploads, sends and downloads do, on every backend.
pub async fn check_library(store: std::sync::Arc<dyn MediaStore>) {
    use std::sync::Arc;

    use wafleet_cluster_config::MediaLimits;

    use crate::media::{MediaLibrary, MediaOrigin, MediaType, NewMedia};
    use crate::seal::data_keys::DataKeys;
    use crate::seal::{MasterKey, Sealer};

    let dir = tempfile::tempdir().expect("a temporary folder");
    let keys_store: Arc<dyn crate::store::Store> = Arc::new(
        crate::store::SqliteStore::open(&dir.path().join("keys.db")).expect("a key store"),
    );
    let keys = Arc::new(DataKeys::new(
        keys_store,
        Arc::new(Sealer::new(MasterKey::new(1, [11; 32]))),
    ));
    let limits = MediaLimits {
        image_bytes: 1 << 20,
        ..MediaLimits::default()
    };
    let library = MediaLibrary::new(store, keys, limits);
    let new = |media_type| NewMedia {
        tenant: "acme".into(),
        mime: "application/pdf".into(),
        media_type: Some(media_type),
        filename: Some("big.pdf".into()),
        announced_size: None,
        origin: MediaOrigin::Upload,
    };
    let data = noise(BIG);
    let record = library
        .put(new(MediaType::Document), chunked(data.clone(), CHUNK))
        .await
        .expect("the library stores a large file");
    assert_eq!(record.size, BIG as u64);
    assert_eq!(record.sha256, hex::encode(Sha256::digest(&data)));
    let again = library
        .record(&record.id)
        .await
        .expect("its record reads back");
    assert_eq!(again, record);
    let bytes: Vec<Bytes> = library
        .bytes(&again)
        .await
        .expect("its bytes open")
        .try_collect()
        .await
        .expect("its bytes stream");
    assert!(bytes.concat() == data, "the file opens to the bytes put");
    let part = library
        .for_send("acme", &record.id, MediaType::Document)
        .await
        .expect("the tenant sends it as a document");
    assert_eq!(
        (part.size, part.sha256.as_str()),
        (record.size, record.sha256.as_str())
    );
    assert!(matches!(
        library
            .for_send("globex", &record.id, MediaType::Document)
            .await,
        Err(MediaError::NotFound(_))
    ));
    assert!(matches!(
        library.for_send("acme", &record.id, MediaType::Image).await,
        Err(MediaError::TooLarge { limit }) if limit == 1 << 20
    ));
    assert!(matches!(
        library
            .put(new(MediaType::Image), chunked(noise((1 << 20) + 1), CHUNK))
            .await,
        Err(MediaError::TooLarge { .. })
    ));
    library.delete(&record.id).await.expect("delete");
    assert!(matches!(
        library.record(&record.id).await,
        Err(MediaError::NotFound(_))
    ));
}
