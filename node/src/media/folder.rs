//! [`FolderMediaStore`]: media as files in a folder of this machine.
//!
//! # Layout
//!
//! ```text
//! <folder>/                 0700, like the rest of the data folder
//! ├── 3f/<key>              0600: each object, in one of 256 subfolders named by the
//! │                         first byte of SHA-256(key), so no folder grows huge
//! └── tmp/<key>.<uuid>.part uploads being written; swept when older than a day
//! ```
//!
//! A put writes its temporary file, syncs it, then hard-links it to its final name and
//! removes the temporary name: the link is atomic and fails if the name exists, so an
//! object appears whole or not at all and is never replaced. A put that fails or is
//! dropped removes its temporary file. Several processes may share the folder (the nodes
//! of one machine), like they share the SQLite file.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::fs::File;
use tokio::io::{AsyncWriteExt, BufWriter};
use tracing::{info, warn};
use uuid::Uuid;

use super::intake::Intake;
use super::{ByteStream, MediaBody, MediaError, MediaKey, MediaStore, StoredMedia, reader_stream};

/// The subfolder of uploads being written.
const TEMP_DIR: &str = "tmp";

/// A temporary file this old is a leftover of a process that died mid-upload (a live
/// upload of the largest document over a slow link takes far less).
const STALE_TEMP: Duration = Duration::from_secs(24 * 60 * 60);

/// Bytes gathered before each write, so small network chunks become few blocking writes.
const WRITE_BUFFER: usize = 256 * 1024;

/// Media in a folder of this machine: a standalone process's data folder, or a folder
/// the nodes of one machine share.
#[derive(Debug, Clone)]
pub struct FolderMediaStore {
    /// The folder: the shards and the temporary folder are inside it.
    root: PathBuf,
}

impl FolderMediaStore {
    /// Opens (creating, readable by this user only) the store in `root`, and removes the
    /// temporary files that uploads of dead processes left.
    pub async fn open(root: impl Into<PathBuf>) -> Result<FolderMediaStore, MediaError> {
        let store = FolderMediaStore { root: root.into() };
        let temp_dir = store.temp_dir();
        create_private_dir(&temp_dir).await?;
        let removed = tokio::task::spawn_blocking(move || sweep_stale(&temp_dir, STALE_TEMP))
            .await
            .map_err(|e| MediaError::Storage(format!("sweeping temporary files: {e}")))?;
        if removed > 0 {
            info!(removed, folder = %store.root.display(), "removed stale partial media uploads");
        }
        Ok(store)
    }

    /// The folder this store keeps its files in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn temp_dir(&self) -> PathBuf {
        self.root.join(TEMP_DIR)
    }

    /// Where `key` lives: `<root>/<first byte of SHA-256(key) in hex>/<key>`.
    fn path_of(&self, key: &MediaKey) -> PathBuf {
        let shard = Sha256::digest(key.as_str().as_bytes())[0];
        self.root.join(format!("{shard:02x}")).join(key.as_str())
    }
}

#[async_trait]
impl MediaStore for FolderMediaStore {
    async fn put(
        &self,
        key: &MediaKey,
        body: ByteStream,
        limit: u64,
    ) -> Result<StoredMedia, MediaError> {
        let path = self.path_of(key);
        if tokio::fs::try_exists(&path)
            .await
            .map_err(storage("checking", &path))?
        {
            return Err(MediaError::AlreadyExists(key.clone()));
        }
        let temp = TempFile::new(
            self.temp_dir()
                .join(format!("{key}.{}.part", Uuid::new_v4().simple())),
        );
        let file = create_private_file(&temp.path).await?;
        let mut out = BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut intake = Intake::new(body, limit);
        while let Some(chunk) = intake.next().await? {
            out.write_all(&chunk)
                .await
                .map_err(storage("writing", &temp.path))?;
        }
        out.flush().await.map_err(storage("writing", &temp.path))?;
        let file = out.into_inner();
        file.sync_all()
            .await
            .map_err(storage("syncing", &temp.path))?;
        drop(file);

        let shard = path.parent().unwrap_or(&self.root);
        create_private_dir(shard).await?;
        match tokio::fs::hard_link(&temp.path, &path).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(MediaError::AlreadyExists(key.clone()));
            }
            Err(e) => return Err(storage("linking", &path)(e)),
        }
        temp.remove().await;
        sync_dir(shard.to_owned()).await?;
        Ok(intake.finish())
    }

    async fn get(&self, key: &MediaKey) -> Result<MediaBody, MediaError> {
        let path = self.path_of(key);
        let file = match File::open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(MediaError::NotFound(key.clone()));
            }
            Err(e) => return Err(storage("opening", &path)(e)),
        };
        let size = file
            .metadata()
            .await
            .map_err(storage("reading", &path))?
            .len();
        Ok(MediaBody {
            size,
            stream: reader_stream(file),
        })
    }

    async fn head(&self, key: &MediaKey) -> Result<Option<u64>, MediaError> {
        let path = self.path_of(key);
        match tokio::fs::metadata(&path).await {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(storage("reading", &path)(e)),
        }
    }

    async fn delete(&self, key: &MediaKey) -> Result<(), MediaError> {
        let path = self.path_of(key);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(storage("removing", &path)(e)),
        }
    }
}

/// An upload's temporary file: removed when the put fails or is dropped. Dropping it
/// removes the file with a blocking call, one unlink, only on those paths.
struct TempFile {
    path: PathBuf,
    /// Cleared once the put removed the file itself.
    armed: bool,
}

impl TempFile {
    fn new(path: PathBuf) -> TempFile {
        TempFile { path, armed: true }
    }

    /// Removes the file now that its bytes are linked under their key.
    async fn remove(mut self) {
        self.armed = false;
        if let Err(e) = tokio::fs::remove_file(&self.path).await {
            warn!(path = %self.path.display(), error = %e, "could not remove a media upload's temporary file");
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed
            && let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            warn!(path = %self.path.display(), error = %e, "could not remove a failed media upload's temporary file");
        }
    }
}

/// Turns an I/O failure on `path` into a storage error that names both.
fn storage(doing: &'static str, path: &Path) -> impl FnOnce(io::Error) -> MediaError {
    let path = path.display().to_string();
    move |e| MediaError::Storage(format!("{doing} {path}: {e}"))
}

async fn create_private_dir(dir: &Path) -> Result<(), MediaError> {
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(0o700);
    builder.create(dir).await.map_err(storage("creating", dir))
}

async fn create_private_file(path: &Path) -> Result<File, MediaError> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path).await.map_err(storage("creating", path))
}

/// Makes a new name in `dir` durable.
async fn sync_dir(dir: PathBuf) -> Result<(), MediaError> {
    let synced = tokio::task::spawn_blocking(move || {
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(storage("syncing", &dir))
    })
    .await;
    synced.map_err(|e| MediaError::Storage(format!("syncing a folder: {e}")))?
}

/// Removes the files in `dir` last modified more than `age` ago; returns how many.
fn sweep_stale(dir: &Path, age: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let now = SystemTime::now();
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| now.duration_since(modified).is_ok_and(|d| d > age))
        })
        .filter(|entry| std::fs::remove_file(entry.path()).is_ok())
        .count()
}

#[cfg(test)]
mod tests {
    use super::super::conformance;
    use super::*;

    #[tokio::test]
    async fn opening_sweeps_temporary_files_older_than_a_day_and_keeps_fresh_ones() {
        let dir = tempfile::tempdir().unwrap();
        let temp = dir.path().join(TEMP_DIR);
        std::fs::create_dir_all(&temp).unwrap();
        let old = temp.join("dead.part");
        std::fs::write(&old, b"x").unwrap();
        let two_days_ago = SystemTime::now() - 2 * STALE_TEMP;
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(two_days_ago)
            .unwrap();
        let live = temp.join("live.part");
        std::fs::write(&live, b"x").unwrap();
        FolderMediaStore::open(dir.path()).await.unwrap();
        assert!(!old.exists(), "a day-old upload is a leftover");
        assert!(live.exists(), "an upload under way is kept");
    }

    #[tokio::test]
    async fn of_two_puts_racing_on_one_key_exactly_one_wins_and_its_bytes_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store = FolderMediaStore::open(dir.path()).await.unwrap();
        for _ in 0..20 {
            let key = MediaKey::random();
            let (a, b) = (conformance::noise(3000), conformance::noise(4000));
            let (ra, rb) = tokio::join!(
                store.put(&key, conformance::chunked(a.clone(), 100), u64::MAX),
                store.put(&key, conformance::chunked(b.clone(), 100), u64::MAX),
            );
            let winner = match (ra, rb) {
                (Ok(_), Err(MediaError::AlreadyExists(_))) => a,
                (Err(MediaError::AlreadyExists(_)), Ok(_)) => b,
                other => panic!("exactly one put must win: {other:?}"),
            };
            let stored = std::fs::read(store.path_of(&key)).unwrap();
            assert!(stored == winner, "the winner's bytes, whole");
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn folders_and_files_are_private() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("media");
        let store = FolderMediaStore::open(&root).await.unwrap();
        let key = MediaKey::random();
        let body = futures_util::StreamExt::boxed(futures_util::stream::iter([Ok(
            bytes::Bytes::from_static(b"secret"),
        )]));
        store.put(&key, body, 100).await.unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let file = store.path_of(&key);
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(file.parent().unwrap()), 0o700);
        assert_eq!(mode(&file), 0o600);
        assert_eq!(std::fs::read_dir(root.join(TEMP_DIR)).unwrap().count(), 0);
    }
}
