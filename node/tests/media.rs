//! The media stores against the conformance suite: the folder backend in a fresh
//! temporary folder, and the S3 backend against a real S3-compatible server, moto
//! (`moto_server`, PyPI `moto[s3]` with `flask` and `flask-cors`; `.ci/run` installs
//! it), started per test on a free loopback port. Without `moto_server` on the PATH the
//! S3 tests say so and pass, unless `WAFLEET_REQUIRE_TOOLS` is set (CI), when they fail.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use wafleet_cluster_config::MediaS3Settings;
use wafleet_load::scenario::process::free_port;
use wafleet_node::media::{
    FolderMediaStore, MediaError, MediaKey, MediaStore, S3MediaStore, conformance,
};

#[tokio::test]
async fn the_folder_backend_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = FolderMediaStore::open(dir.path().join("media"))
        .await
        .unwrap();
    conformance::run_all(&store).await;
    let leftovers = std::fs::read_dir(dir.path().join("media/tmp"))
        .unwrap()
        .count();
    assert_eq!(
        leftovers, 0,
        "failed and dropped puts leave no temporary file"
    );
}

#[tokio::test]
async fn the_media_library_works_on_the_folder_backend() {
    let dir = tempfile::tempdir().unwrap();
    let store = FolderMediaStore::open(dir.path().join("media"))
        .await
        .unwrap();
    conformance::check_library(std::sync::Arc::new(store)).await;
}

#[tokio::test]
async fn the_media_library_works_on_the_s3_backend_against_moto() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let store = S3MediaStore::new(&moto.settings("library/")).unwrap();
    conformance::check_library(std::sync::Arc::new(store)).await;
}

#[tokio::test]
async fn two_folder_stores_on_one_folder_see_each_other_s_media() {
    let dir = tempfile::tempdir().unwrap();
    let writer = FolderMediaStore::open(dir.path()).await.unwrap();
    let reader = FolderMediaStore::open(dir.path()).await.unwrap();
    shared_store_round_trip(&writer, &reader).await;
}

#[tokio::test]
async fn the_s3_backend_passes_the_conformance_suite_against_moto() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let store = S3MediaStore::new(&moto.settings("conformance/")).unwrap();
    conformance::run_all(&store).await;
    // Failed, over-limit and dropped puts aborted their multipart uploads (a dropped
    // put aborts from a task of its own, so this waits a little for it).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pending = moto.pending_uploads("conformance/").await;
        if pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} multipart uploads were left incomplete, not aborted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn what_one_node_stores_in_s3_another_reads() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let writer = S3MediaStore::new(&moto.settings("shared/")).unwrap();
    let reader = S3MediaStore::new(&moto.settings("shared/")).unwrap();
    shared_store_round_trip(&writer, &reader).await;
    // Another prefix is another namespace in the same bucket.
    let elsewhere = S3MediaStore::new(&moto.settings("other/")).unwrap();
    let key = MediaKey::random();
    writer
        .put(&key, conformance::chunked(conformance::noise(10), 4), 10)
        .await
        .unwrap();
    assert_eq!(elsewhere.head(&key).await.unwrap(), None);
}

#[tokio::test]
async fn a_missing_bucket_is_a_storage_error() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let mut settings = moto.settings("media/");
    settings.bucket = "no-such-bucket".into();
    let store = S3MediaStore::new(&settings).unwrap();
    let put = store
        .put(
            &MediaKey::random(),
            conformance::chunked(conformance::noise(10), 4),
            10,
        )
        .await;
    assert!(matches!(put, Err(MediaError::Storage(_))), "{put:?}");
}

/// `writer` stores, `reader` (another instance over the same storage) reads the same
/// bytes and deletes them, and `writer` then sees them gone.
async fn shared_store_round_trip(writer: &dyn MediaStore, reader: &dyn MediaStore) {
    let key = MediaKey::random();
    let data = conformance::noise(conformance::BIG);
    let stored = writer
        .put(
            &key,
            conformance::chunked(data.clone(), 16 * 1024),
            u64::MAX,
        )
        .await
        .unwrap();
    let body = reader.get(&key).await.unwrap();
    assert_eq!(body.size, stored.size);
    let read: Vec<bytes::Bytes> = futures_util::TryStreamExt::try_collect(body.stream)
        .await
        .unwrap();
    assert!(
        read.concat() == data,
        "the other instance reads the same bytes"
    );
    reader.delete(&key).await.unwrap();
    assert_eq!(writer.head(&key).await.unwrap(), None);
}

/// A throwaway moto S3 server on a free loopback port with one bucket, killed on drop.
struct Moto {
    _child: Child,
    endpoint: String,
    bucket: String,
}

impl Moto {
    /// Started and ready, or `None` (after saying the test was skipped) when
    /// `moto_server` is not installed and `WAFLEET_REQUIRE_TOOLS` is unset.
    async fn start() -> Option<Moto> {
        let Some(program) = on_path("moto_server") else {
            assert!(
                std::env::var_os("WAFLEET_REQUIRE_TOOLS").is_none(),
                "moto_server is required (WAFLEET_REQUIRE_TOOLS is set) but not on the PATH \
                 (pip install 'moto[s3]' flask flask-cors)"
            );
            eprintln!(
                "moto_server not on the PATH: SKIPPED the S3 media tests \
                 (pip install 'moto[s3]' flask flask-cors)"
            );
            return None;
        };
        let port = free_port().unwrap();
        let child = Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("starting moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        let bucket = "wafleet-media".to_owned();
        let http = reqwest::Client::new();
        // Ready when it answers; then the bucket (moto takes any credentials).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match http.put(format!("{endpoint}/{bucket}")).send().await {
                Ok(response) if response.status().is_success() => break,
                Ok(response) => panic!("moto refused to create the bucket: {}", response.status()),
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("moto_server not ready within 30 s: {e}"),
            }
        }
        Some(Moto {
            _child: child,
            endpoint,
            bucket,
        })
    }

    /// How many multipart uploads under `prefix` are neither completed nor aborted
    /// (`ListMultipartUploads`; moto takes unsigned requests).
    async fn pending_uploads(&self, prefix: &str) -> usize {
        let listing = reqwest::Client::new()
            .get(format!(
                "{}/{}?uploads&prefix={prefix}",
                self.endpoint, self.bucket
            ))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("listing multipart uploads")
            .text()
            .await
            .expect("reading the listing");
        assert!(
            listing.contains("ListMultipartUploadsResult"),
            "not a listing: {listing}"
        );
        listing.matches("<UploadId>").count()
    }

    fn settings(&self, prefix: &str) -> MediaS3Settings {
        MediaS3Settings {
            bucket: self.bucket.clone(),
            endpoint: Some(self.endpoint.clone()),
            region: "us-east-1".into(),
            path_style: true,
            prefix: prefix.into(),
            access_key_id: Some("test-key".into()),
            secret_access_key: Some("test-secret".into()),
        }
    }
}

/// Where `program` is on the PATH, if it is.
fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}
