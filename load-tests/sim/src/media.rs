//! [`MediaShelf`]: the simulated network's media servers. A device uploads a file's
//! bytes (`POST /sim/media`) and names the handle it gets in its `SendMessage`; a phone's
//! media is put here and the device downloads it (`GET /sim/media/{handle}`), as
//! WhatsApp's clients do with its media servers (without WhatsApp's media encryption:
//! the simulator is the recipient and shows the files' SHA-256).
//!
//! Files live in a folder: beside the state file (`sim.db` → `sim.db.media/`) when the
//! network keeps state, else in a temporary folder removed with the network. Each is
//! `<handle>` (the bytes) and `<handle>.json` (its [`Blob`]), written to a temporary
//! name first and renamed, so a handle either has all its bytes or does not exist.

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// A stored file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    /// Where it is: what a frame names and `GET /sim/media/{handle}` takes.
    pub handle: String,
    pub mime: String,
    pub size: u64,
    /// 64 lowercase hex digits.
    pub sha256: String,
}

/// The media folder of one network.
#[derive(Debug)]
pub(crate) struct MediaShelf {
    dir: PathBuf,
    /// Held for its `Drop` (the folder of a network that keeps no state).
    _temporary: Option<tempfile::TempDir>,
}

impl MediaShelf {
    /// The shelf of a network whose state file is `state_file` (`None`: a temporary
    /// folder).
    pub(crate) fn open(state_file: Option<&Path>) -> io::Result<MediaShelf> {
        match state_file {
            Some(file) => {
                let mut name = file.as_os_str().to_owned();
                name.push(".media");
                let dir = PathBuf::from(name);
                std::fs::create_dir_all(&dir)?;
                Ok(MediaShelf {
                    dir,
                    _temporary: None,
                })
            }
            None => {
                let temporary = tempfile::Builder::new()
                    .prefix("wafleet-sim-media")
                    .tempdir()?;
                Ok(MediaShelf {
                    dir: temporary.path().to_owned(),
                    _temporary: Some(temporary),
                })
            }
        }
    }

    /// Stores `body` under a new handle.
    pub(crate) async fn put(
        &self,
        mime: &str,
        mut body: impl Stream<Item = io::Result<Bytes>> + Unpin,
    ) -> io::Result<Blob> {
        let handle = random_handle()?;
        let part = self.dir.join(format!("{handle}.part"));
        let result = async {
            let mut file = tokio::fs::File::create(&part).await?;
            let (mut sha256, mut size) = (Sha256::new(), 0u64);
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                sha256.update(&chunk);
                size += chunk.len() as u64;
                file.write_all(&chunk).await?;
            }
            file.sync_all().await?;
            let blob = Blob {
                handle: handle.clone(),
                mime: mime.to_owned(),
                size,
                sha256: sha256
                    .finalize()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect(),
            };
            let json = serde_json::to_vec(&blob).map_err(io::Error::other)?;
            tokio::fs::write(self.dir.join(format!("{handle}.json")), json).await?;
            tokio::fs::rename(&part, self.dir.join(&handle)).await?;
            Ok(blob)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&part).await;
        }
        result
    }

    /// What `handle` holds, if it is a stored file.
    pub(crate) async fn blob(&self, handle: &str) -> Option<Blob> {
        if !is_handle(handle) || !tokio::fs::try_exists(self.dir.join(handle)).await.ok()? {
            return None;
        }
        let json = tokio::fs::read(self.dir.join(format!("{handle}.json")))
            .await
            .ok()?;
        serde_json::from_slice(&json).ok()
    }

    /// The file `handle` holds, opened for reading.
    pub(crate) async fn open_file(&self, handle: &str) -> Option<(Blob, tokio::fs::File)> {
        let blob = self.blob(handle).await?;
        let file = tokio::fs::File::open(self.dir.join(handle)).await.ok()?;
        Some((blob, file))
    }
}

/// 32 lowercase hex digits.
fn random_handle() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn is_handle(handle: &str) -> bool {
    handle.len() == 32
        && handle
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use futures_util::stream;

    use super::*;

    #[tokio::test]
    async fn a_file_put_is_found_whole_by_its_handle() {
        let shelf = MediaShelf::open(None).unwrap();
        let chunks = vec![Ok(Bytes::from_static(b"ab")), Ok(Bytes::from_static(b"c"))];
        let blob = shelf.put("image/png", stream::iter(chunks)).await.unwrap();
        assert_eq!(blob.size, 3);
        assert_eq!(
            blob.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(shelf.blob(&blob.handle).await, Some(blob.clone()));
        let (_, mut file) = shelf.open_file(&blob.handle).await.unwrap();
        let mut bytes = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut file, &mut bytes)
            .await
            .unwrap();
        assert_eq!(bytes, b"abc");
        for bad in ["", "../x", &"0".repeat(32)] {
            assert_eq!(shelf.blob(bad).await, None, "{bad}");
        }
    }

    #[tokio::test]
    async fn a_failed_upload_leaves_no_handle() {
        let shelf = MediaShelf::open(None).unwrap();
        let chunks = vec![
            Ok(Bytes::from_static(b"ab")),
            Err(io::Error::other("client went away")),
        ];
        assert!(shelf.put("image/png", stream::iter(chunks)).await.is_err());
        let left = std::fs::read_dir(&shelf.dir).unwrap().count();
        assert_eq!(left, 0);
    }
}
