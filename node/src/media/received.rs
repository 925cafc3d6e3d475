//! The files a device received go with the device: [`ReceivedFiles::of`] finds them
//! before its messages are deleted, [`ReceivedFiles::delete`] removes them after.
//!
//! # How they are found
//! By reading the device's inbound messages: each message's sealed content names the
//! file it carries ([`Content::media`]). That costs one walk of the device's inbound
//! log, a page of [`PAGE`] messages per store call, and one open of each text (AES-GCM
//! under the tenant's cached data key), once, when the device is deleted. The
//! alternatives cost on every received file instead, and in more places: naming
//! received files per device needs a listing that neither media backend has (and S3
//! lists slowly), and recording them per device needs a new table in both stores.
//!
//! # What is deleted
//! Only files whose record says they were received by this very device
//! ([`MediaOrigin::Received`]): a tenant's uploads (`POST /v1/media`, or fetched from
//! a URL to be sent) are the tenant's, not the device's, and stay until `DELETE
//! /v1/media/{id}`, whatever message names them.
//!
//! # Failures
//! Nothing here blocks the device's deletion: a file that cannot be read or deleted
//! (or a log that cannot be walked) is logged and counted
//! (`wafleet_media_deletes_total{outcome="failed"}`), and stays in the media store.
//! A file whose message was never stored (its download finished, then the process
//! died before the message was kept) is named by no message and is not found either.

use std::collections::BTreeSet;

use futures_util::stream::{self, StreamExt};
use tracing::warn;

use super::{MediaError, MediaLibrary, MediaOrigin};
use crate::content::Content;
use crate::metrics;
use crate::seal::data_keys::DataKeys;
use crate::seal::text::Place;
use crate::store::{Direction, MessageQuery, Store, StoreError, message_log::LogKey};

/// Inbound messages read per store call while looking for files.
const PAGE: u32 = 500;
/// Files deleted at once (each a record read and two object deletes).
const CONCURRENT_DELETES: usize = 8;

/// The files a device received, by media id, as its inbound messages name them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceivedFiles {
    device_id: String,
    ids: BTreeSet<String>,
}

/// What [`ReceivedFiles::delete`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deleted {
    /// Files removed.
    pub deleted: u64,
    /// Named files that were not the device's received files (uploads), or were gone.
    pub kept: u64,
    /// Files that could not be read or removed (logged, counted, left in place).
    pub failed: u64,
}

impl ReceivedFiles {
    /// The files `device_id`'s inbound messages name. A log that cannot be read (the
    /// store failed) is logged and counted as one failure, and what was found until
    /// then is returned; a text that does not open is skipped, logged and counted: the
    /// device's deletion goes on either way.
    pub async fn of(store: &dyn Store, keys: &DataKeys, device_id: &str) -> ReceivedFiles {
        let mut files = ReceivedFiles {
            device_id: device_id.to_owned(),
            ids: BTreeSet::new(),
        };
        if let Err(error) = files.collect(store, keys).await {
            warn!(device_id, %error, "cannot read the device's inbound messages; the files they name stay");
            metrics::media_deletes("failed", 1);
        }
        files
    }

    async fn collect(&mut self, store: &dyn Store, keys: &DataKeys) -> Result<(), StoreError> {
        let mut query = MessageQuery {
            direction: Some(Direction::Inbound),
            limit: PAGE,
            ..MessageQuery::default()
        };
        loop {
            let page = store.list_messages(&self.device_id, &query).await?;
            let full = page.len() as u32 == PAGE;
            query.before = page.last().map(LogKey::of);
            for message in page {
                let place = Place::message(&message.device_id, &message.id);
                match keys.open(&place, &message.text).await {
                    Ok(text) => {
                        if let Some(media) = Content::from_stored(&text).media {
                            self.ids.insert(media.id);
                        }
                    }
                    Err(error) => {
                        warn!(device_id = %self.device_id, message_id = %message.id, %error, "cannot open an inbound message; the file it names, if any, stays");
                        metrics::media_deletes("failed", 1);
                    }
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// How many files the messages name.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the messages name no file.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Deletes each named file that this device received (see the module docs),
    /// [`CONCURRENT_DELETES`] at a time; failures are logged and counted, never
    /// returned.
    pub async fn delete(self, library: &MediaLibrary) -> Deleted {
        let device_id = self.device_id.as_str();
        // The futures made first: a closure inside the stream would make this future
        // too general for `Send` across the cluster's command task.
        let deletes: Vec<_> = self
            .ids
            .iter()
            .map(|id| delete_one(library, device_id, id))
            .collect();
        let outcomes: Vec<Outcome> = stream::iter(deletes)
            .buffer_unordered(CONCURRENT_DELETES)
            .collect()
            .await;
        let mut done = Deleted::default();
        for outcome in outcomes {
            match outcome {
                Outcome::Deleted => done.deleted += 1,
                Outcome::Kept => done.kept += 1,
                Outcome::Failed => done.failed += 1,
            }
        }
        metrics::media_deletes("deleted", done.deleted);
        metrics::media_deletes("failed", done.failed);
        done
    }
}

/// What became of one named file.
enum Outcome {
    Deleted,
    Kept,
    Failed,
}

async fn delete_one(library: &MediaLibrary, device_id: &str, id: &str) -> Outcome {
    let record = match library.record(id).await {
        Ok(record) => record,
        Err(MediaError::NotFound(_)) => return Outcome::Kept,
        Err(error) => {
            warn!(device_id, media_id = id, %error, "cannot read a received file's record; it stays");
            return Outcome::Failed;
        }
    };
    let received_here = matches!(
        &record.origin,
        MediaOrigin::Received { device_id: by, .. } if by == device_id
    );
    if !received_here {
        return Outcome::Kept;
    }
    match library.delete(id).await {
        Ok(()) => Outcome::Deleted,
        Err(error) => {
            warn!(device_id, media_id = id, %error, "cannot delete a received file; it stays");
            Outcome::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use wafleet_cluster_config::MediaLimits;

    use super::*;
    use crate::content::MediaPart;
    use crate::media::{ByteStream, FolderMediaStore, MediaRecord, MediaType, NewMedia};
    use crate::seal::{MasterKey, Sealer};
    use crate::store::{
        DeviceRecord, DeviceStatus, MessageRecord, MessageStatus, SqliteStore, TrustLevel,
    };

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<dyn Store>,
        keys: Arc<DataKeys>,
        library: MediaLibrary,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("w.db")).unwrap());
        let keys = Arc::new(DataKeys::new(
            store.clone(),
            Arc::new(Sealer::new(MasterKey::new(1, [5; 32]))),
        ));
        let media = Arc::new(
            FolderMediaStore::open(&dir.path().join("media"))
                .await
                .unwrap(),
        );
        let library = MediaLibrary::new(media, keys.clone(), MediaLimits::default());
        for id in ["d1", "d2"] {
            store
                .create_device(&DeviceRecord {
                    id: id.into(),
                    name: id.into(),
                    tenant: "acme".into(),
                    status: DeviceStatus::Stopped,
                    status_reason: None,
                    trust_level: TrustLevel::Newcomer,
                    phone: None,
                    webhook: None,
                    desired_running: false,
                    created_at_ms: 0,
                    updated_at_ms: 0,
                    last_connected_at_ms: None,
                })
                .await
                .unwrap();
        }
        Fixture {
            _dir: dir,
            store,
            keys,
            library,
        }
    }

    fn body() -> ByteStream {
        stream::once(async { Ok(Bytes::from_static(b"%PDF-1.4")) }).boxed()
    }

    async fn file(f: &Fixture, origin: MediaOrigin) -> MediaRecord {
        let new = NewMedia {
            tenant: "acme".into(),
            mime: "application/pdf".into(),
            media_type: Some(MediaType::Document),
            filename: None,
            announced_size: None,
            origin,
        };
        f.library.put(new, body()).await.unwrap()
    }

    fn received_by(device_id: &str) -> MediaOrigin {
        MediaOrigin::Received {
            device_id: device_id.into(),
            message_id: "m".into(),
        }
    }

    /// Stores an inbound message of `d1` carrying `media`.
    async fn inbound(f: &Fixture, id: &str, media: Option<&MediaRecord>) {
        let content = Content {
            media: media.map(|m| MediaPart::of(m, MediaType::Document)),
            ..Content::text("lihat")
        };
        let sealed = f
            .keys
            .seal("acme", &Place::message("d1", id), &content.to_stored())
            .await
            .unwrap();
        let record = MessageRecord {
            id: id.into(),
            device_id: "d1".into(),
            direction: Direction::Inbound,
            peer_phone: "6281111111111".into(),
            text: sealed.into_string(),
            status: MessageStatus::Delivered,
            error: None,
            idempotency_key: None,
            created_at_ms: 1,
            not_before_ms: None,
            sent_at_ms: None,
            delivered_at_ms: Some(1),
            read_at_ms: None,
            failed_at_ms: None,
            send_at_ms: None,
            queued_at_ms: None,
        };
        f.store.insert_message(&record).await.unwrap();
    }

    #[tokio::test]
    async fn only_the_files_the_device_received_go_uploads_and_others_stay() {
        let f = fixture().await;
        let mine = file(&f, received_by("d1")).await;
        let upload = file(&f, MediaOrigin::Upload).await;
        let theirs = file(&f, received_by("d2")).await;
        inbound(&f, "in-1", Some(&mine)).await;
        inbound(&f, "in-2", None).await;
        inbound(&f, "in-3", Some(&upload)).await;
        inbound(&f, "in-4", Some(&theirs)).await;
        inbound(&f, "in-5", Some(&mine)).await;

        let found = ReceivedFiles::of(f.store.as_ref(), &f.keys, "d1").await;
        assert_eq!(found.len(), 3, "each file once: {found:?}");
        let done = found.delete(&f.library).await;
        assert_eq!(
            done,
            Deleted {
                deleted: 1,
                kept: 2,
                failed: 0
            }
        );
        assert!(matches!(
            f.library.record(&mine.id).await,
            Err(MediaError::NotFound(_))
        ));
        for stays in [&upload, &theirs] {
            assert!(f.library.record(&stays.id).await.is_ok(), "{stays:?}");
        }
        // A device without messages names nothing.
        assert!(
            ReceivedFiles::of(f.store.as_ref(), &f.keys, "d2")
                .await
                .is_empty()
        );
    }
}
