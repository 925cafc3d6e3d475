//! The embedded store: one SQLite file (WAL) in the data folder.
//!
//! Several node processes on one machine may open the same file: WAL lets readers run
//! beside the single writer, every read-modify-write is one `BEGIN IMMEDIATE`
//! transaction (so two processes cannot interleave inside it), and a busy timeout makes
//! a writer wait for the other rather than fail.
//!
//! SQLite calls block, so the connection belongs to one thread of its own, which runs
//! the calls queued to it in batches, one transaction a batch (group commit, see
//! `worker`); statements are prepared once and cached.
//!
//! Leases follow the rules of [`super::lease`]: a call reads the shard's slot, applies the
//! rule and writes it back inside one `BEGIN IMMEDIATE` transaction, so two processes
//! racing for a shard are serialized and exactly one wins. A fenced write checks its
//! fence in the same transaction as the write.
//!
//! The schema is a list of steps ([`SCHEMA_VERSION`] of them); `PRAGMA user_version`
//! records how many a file has had, and opening a file applies the missing ones. A step
//! whose data SQL cannot compute has a Rust part run in the same transaction.
//!
//! Each device row keeps its shard (`shard_of(id, S)`, S the store's shard count,
//! recorded in the settings by the open that created or migrated the file), indexed with
//! `desired_running`, so that a node taking shards over reads only their devices.
//!
//! # Layout
//! - this file: opening the file (connection settings) and the [`Store`] methods, each a
//!   blocking call of one of the modules below, run on the connection's thread.
//! - `worker`: that thread, and group commit.
//! - `checkpoint`: the thread that copies the log into the database, off the writer's.
//! - `schema`: the schema steps and the migration run on open.
//! - `devices`, `link_state`, `messages`, `settings`, `leases`, `access` (the access
//!   directory and the audit log), `contacts` (the contact books): each table's SQL, row
//!   decoding, and the blocking half of its methods (`leases` also checks fences).
//! - `sql`: running cached statements, decoding columns, mapping SQLite's errors.

mod access;
mod checkpoint;
mod contacts;
mod deliveries;
mod devices;
mod jobs;
mod leases;
mod link_state;
mod messages;
mod schema;
mod settings;
mod sql;
#[cfg(test)]
mod tests;
mod worker;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::Connection;
use wafleet_cluster_config::{ClusterSettings, shard_of};

use self::checkpoint::{Checkpointer, WRITER_CHECKPOINT_PAGES};
pub use self::schema::{SCHEMA_VERSION, schema_at_version};
use self::sql::db_error;
use self::worker::Worker;
use super::{
    AccessKind, AccessQuery, AccessRecord, Acquired, Attempt, AuditEntry, AuditQuery, Chat,
    ChatQuery, ContactQuery, ContactRecord, ContactUpsert, DeliveryBacklog, DeliveryOf,
    DeliveryRecord, DeliveryStatus, DeviceId, DevicePage, DevicePatch, DeviceQuery, DeviceRecord,
    DeviceRule, DeviceStatus, Fence, GuardedInsert, InsertOutcome, JobQuery, JobRecord, JobStatus,
    Lease, MessageQuery, MessageRecord, MessageStatus, NewDelivery, QueueKey, RecipientQuery,
    RecipientRecord, RecipientStatus, ReplayWhich, RunStart, SealedBlob, Setting, Store,
    StoreError, TagCount, Upserted, device_not_found,
};

/// How long a call waits for another connection's write lock before it gives up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The most memory SQLite's page cache of the connection takes (KiB; SQLite's default
/// is 2,000): the devices and the queues of a busy node stay in memory instead of being
/// read from the file again (a page is cached only once it has been read).
const PAGE_CACHE_KIB: i64 = 32 * 1024;
/// Room for every distinct statement of this store (list queries have a few variants).
const STATEMENT_CACHE_CAPACITY: usize = 64;

/// The [`Store`] backed by one SQLite file.
pub struct SqliteStore {
    /// The database file, for logs and errors.
    path: PathBuf,
    /// The shard count devices are placed in (recorded in the file).
    shards: u32,
    /// The thread that owns the one connection; every call is queued to it.
    worker: Worker,
    /// The thread that copies the log back into the database (see `checkpoint`).
    _checkpointer: Checkpointer,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// [`SqliteStore::open_with_shards`] with the default shard count
    /// ([`ClusterSettings::DEFAULT_SHARDS`]): for processes without a `[cluster]` section
    /// (standalone) and tests.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with_shards(path, ClusterSettings::DEFAULT_SHARDS)
    }

    /// Opens (creating if needed) the database at `path` and its parent folder, and
    /// brings its schema to [`SCHEMA_VERSION`]; its devices are placed in `shards` shards
    /// (`cluster.shards`). Blocks: call it at start-up.
    ///
    /// A file whose schema is newer than this build is refused as `Corrupt`; a file whose
    /// devices were placed with another shard count as `Misconfigured`.
    ///
    /// # Panics
    ///
    /// If `shards` is 0 (the configuration refuses that value).
    pub fn open_with_shards(path: &Path, shards: u32) -> Result<SqliteStore, StoreError> {
        assert!(shards > 0, "a store needs at least one shard");
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let mut conn = Connection::open(path).map_err(db_error)?;
        configure(&mut conn)?;
        schema::migrate(&mut conn, path, shards)?;
        Ok(SqliteStore {
            path: path.to_owned(),
            shards,
            worker: Worker::start(conn)?,
            _checkpointer: Checkpointer::start(path, BUSY_TIMEOUT)?,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f`, which writes, on the connection's thread, in the next batch's
    /// transaction; its writes are kept only if it returns `Ok`.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.worker.write(f).await
    }

    /// Runs `f`, which only reads, on the connection's thread.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.worker.read(f).await
    }
}

fn configure(conn: &mut Connection) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT).map_err(db_error)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(db_error)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!(
            "sqlite refused WAL mode (journal_mode is {mode})"
        )));
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(db_error)?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(db_error)?;
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)
        .map_err(db_error)?;
    conn.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)
        .map_err(db_error)?;
    // Every write runs in a savepoint of the worker's batch, and a savepoint keeps the
    // pages it changes first in a statement journal: in memory, not a temporary file
    // written for every write (7 % of the store thread's time in a profile of making a
    // job of 100,000 recipients).
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(db_error)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    Ok(())
}

/// Each method takes owned copies of its arguments onto the blocking pool and runs the
/// blocking half of the call, in the module of its table.
#[async_trait]
impl Store for SqliteStore {
    async fn create_device(&self, device: &DeviceRecord) -> Result<(), StoreError> {
        let device = device.clone();
        let shard = shard_of(&device.id, self.shards);
        self.write(move |conn| devices::create(conn, &device, shard))
            .await
    }

    async fn get_device(&self, id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| devices::get(conn, &id)).await
    }

    async fn patch_device(
        &self,
        id: &str,
        patch: &DevicePatch,
        now_ms: i64,
        fence: Option<&Fence>,
    ) -> Result<DeviceRecord, StoreError> {
        let id = id.to_owned();
        let patch = patch.clone();
        let fence = fence.copied();
        self.write(move |conn| devices::patch(conn, &id, patch, now_ms, fence.as_ref()))
            .await
    }

    async fn patch_device_recording(
        &self,
        id: &str,
        patch: &DevicePatch,
        now_ms: i64,
        fence: Option<&Fence>,
        then: DeliveryOf,
    ) -> Result<DeviceRecord, StoreError> {
        let id = id.to_owned();
        let patch = patch.clone();
        let fence = fence.copied();
        self.write(move |conn| {
            let record = devices::patch(conn, &id, patch, now_ms, fence.as_ref())?;
            if let Some(delivery) = then(&record) {
                deliveries::append(conn, &delivery)?;
            }
            Ok(record)
        })
        .await
    }

    async fn begin_run(
        &self,
        id: &str,
        patch: &DevicePatch,
        now_ms: i64,
        fence: Option<&Fence>,
    ) -> Result<Option<RunStart>, StoreError> {
        let id = id.to_owned();
        let patch = patch.clone();
        let fence = fence.copied();
        self.write(move |conn| {
            let Some(before) = devices::get(conn, &id)? else {
                return Ok(None);
            };
            let record = devices::patch(conn, &id, patch, now_ms, fence.as_ref())?;
            let queued = messages::count_queued(conn, &id, 1)? > 0;
            Ok(Some(RunStart {
                previous: before.status,
                record,
                queued,
            }))
        })
        .await
    }

    async fn list_devices(&self, query: &DeviceQuery) -> Result<DevicePage, StoreError> {
        if query.limit == 0 {
            return Ok(DevicePage {
                devices: Vec::new(),
                next_after: None,
            });
        }
        let limit = query.limit as usize;
        let (sql, values) = devices::list_devices_statement(query);
        self.read(move |conn| devices::page(conn, &sql, values, limit))
            .await
    }

    async fn wanted_devices_in_shards(&self, shards: &[u32]) -> Result<Vec<DeviceId>, StoreError> {
        let shards = shards.iter().copied().collect();
        self.read(move |conn| devices::wanted_in_shards(conn, shards))
            .await
    }

    fn shards(&self) -> u32 {
        self.shards
    }

    async fn count_devices_by_status(&self) -> Result<Vec<(DeviceStatus, u64)>, StoreError> {
        self.read(|conn| devices::count_by_status(conn, None)).await
    }

    async fn count_tenant_devices_by_status(
        &self,
        tenant: &str,
    ) -> Result<Vec<(DeviceStatus, u64)>, StoreError> {
        let tenant = tenant.to_owned();
        self.read(move |conn| devices::count_by_status(conn, Some(&tenant)))
            .await
    }

    async fn delete_device(&self, id: &str, fence: Option<&Fence>) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let fence = fence.copied();
        self.write(move |conn| devices::delete(conn, &id, fence.as_ref()))
            .await
    }

    async fn put_link_state(
        &self,
        device_id: &str,
        namespace: &str,
        key: &str,
        value: &SealedBlob,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        let (device_id, namespace, key) =
            (device_id.to_owned(), namespace.to_owned(), key.to_owned());
        let value = value.clone();
        let fence = fence.copied();
        self.write(move |conn| {
            link_state::put(conn, &device_id, &namespace, &key, &value, fence.as_ref())
        })
        .await
    }

    async fn get_link_state(
        &self,
        device_id: &str,
        namespace: &str,
        key: &str,
    ) -> Result<Option<SealedBlob>, StoreError> {
        let (device_id, namespace, key) =
            (device_id.to_owned(), namespace.to_owned(), key.to_owned());
        self.read(move |conn| link_state::get(conn, &device_id, &namespace, &key))
            .await
    }

    async fn any_link_state(
        &self,
        device_id: &str,
        namespace: &str,
        keys: &[String],
    ) -> Result<bool, StoreError> {
        let (device_id, namespace, keys) =
            (device_id.to_owned(), namespace.to_owned(), keys.to_vec());
        self.read(move |conn| link_state::any(conn, &device_id, &namespace, &keys))
            .await
    }

    async fn get_link_state_many(
        &self,
        device_id: &str,
        namespace: &str,
        keys: &[String],
    ) -> Result<Vec<(String, SealedBlob)>, StoreError> {
        let (device_id, namespace, keys) =
            (device_id.to_owned(), namespace.to_owned(), keys.to_vec());
        self.read(move |conn| link_state::get_many(conn, &device_id, &namespace, &keys))
            .await
    }

    async fn put_link_state_many(
        &self,
        device_id: &str,
        namespace: &str,
        records: &[(String, SealedBlob)],
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        let (device_id, namespace, records) =
            (device_id.to_owned(), namespace.to_owned(), records.to_vec());
        let fence = fence.copied();
        self.write(move |conn| {
            link_state::put_many(conn, &device_id, &namespace, &records, fence.as_ref())
        })
        .await
    }

    async fn list_link_state(
        &self,
        device_id: &str,
        namespace: &str,
    ) -> Result<Vec<(String, SealedBlob)>, StoreError> {
        let (device_id, namespace) = (device_id.to_owned(), namespace.to_owned());
        self.read(move |conn| link_state::list(conn, &device_id, &namespace))
            .await
    }

    async fn delete_link_state(
        &self,
        device_id: &str,
        namespace: &str,
        key: &str,
        fence: Option<&Fence>,
    ) -> Result<bool, StoreError> {
        let (device_id, namespace, key) =
            (device_id.to_owned(), namespace.to_owned(), key.to_owned());
        let fence = fence.copied();
        self.write(move |conn| {
            link_state::delete(conn, &device_id, &namespace, &key, fence.as_ref())
        })
        .await
    }

    async fn clear_link_state(
        &self,
        device_id: &str,
        fence: Option<&Fence>,
    ) -> Result<u64, StoreError> {
        let device_id = device_id.to_owned();
        let fence = fence.copied();
        self.write(move |conn| link_state::clear(conn, &device_id, fence.as_ref()))
            .await
    }

    async fn insert_message(&self, message: &MessageRecord) -> Result<InsertOutcome, StoreError> {
        let message = message.clone();
        self.write(move |conn| messages::insert(conn, &message))
            .await
    }

    async fn insert_message_if(
        &self,
        message: &MessageRecord,
        rule: DeviceRule,
    ) -> Result<GuardedInsert, StoreError> {
        let message = message.clone();
        self.write(move |conn| {
            let device = devices::get(conn, &message.device_id)?
                .ok_or_else(|| device_not_found(&message.device_id))?;
            if !rule(&device) {
                return Ok(GuardedInsert::Refused(Box::new(device)));
            }
            messages::insert(conn, &message).map(GuardedInsert::Done)
        })
        .await
    }

    async fn get_message(
        &self,
        device_id: &str,
        message_id: &str,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let (device_id, message_id) = (device_id.to_owned(), message_id.to_owned());
        self.read(move |conn| messages::get(conn, &device_id, &message_id))
            .await
    }

    async fn advance_message(
        &self,
        device_id: &str,
        message_id: &str,
        status: MessageStatus,
        at_ms: i64,
        error: Option<&str>,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let (device_id, message_id) = (device_id.to_owned(), message_id.to_owned());
        let error = error.map(str::to_owned);
        self.write(move |conn| {
            let error = error.as_deref();
            messages::advance(conn, &device_id, &message_id, status, at_ms, error)
        })
        .await
    }

    async fn list_messages(
        &self,
        device_id: &str,
        query: &MessageQuery,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let (device_id, query) = (device_id.to_owned(), query.clone());
        self.read(move |conn| messages::list(conn, &device_id, &query))
            .await
    }

    async fn list_chats(
        &self,
        device_id: &str,
        query: &ChatQuery,
    ) -> Result<Vec<Chat>, StoreError> {
        let (device_id, query) = (device_id.to_owned(), query.clone());
        self.read(move |conn| messages::chats(conn, &device_id, &query))
            .await
    }

    async fn queued_messages(
        &self,
        device_id: &str,
        limit: u32,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let device_id = device_id.to_owned();
        self.read(move |conn| messages::queued(conn, &device_id, limit))
            .await
    }

    async fn queued_messages_after(
        &self,
        device_id: &str,
        after: Option<&QueueKey>,
        limit: u32,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let device_id = device_id.to_owned();
        let after = after.cloned();
        self.read(move |conn| match &after {
            Some(after) => messages::queued_after(conn, &device_id, after, limit),
            None => messages::queued(conn, &device_id, limit),
        })
        .await
    }

    async fn count_queued(&self, device_id: &str, limit: u32) -> Result<u32, StoreError> {
        let device_id = device_id.to_owned();
        self.read(move |conn| messages::count_queued(conn, &device_id, limit))
            .await
    }

    async fn devices_with_queued(
        &self,
        shards: &[u32],
        limit: u32,
    ) -> Result<Vec<DeviceId>, StoreError> {
        let shards = shards.to_vec();
        self.read(move |conn| messages::devices_with_queued(conn, &shards, limit))
            .await
    }

    async fn reschedule_message(
        &self,
        device_id: &str,
        message_id: &str,
        not_before_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        let (device_id, message_id) = (device_id.to_owned(), message_id.to_owned());
        self.write(move |conn| messages::reschedule(conn, &device_id, &message_id, not_before_ms))
            .await
    }

    async fn scheduled_messages(
        &self,
        device_id: &str,
        limit: u32,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let device_id = device_id.to_owned();
        self.read(move |conn| messages::scheduled(conn, &device_id, limit))
            .await
    }

    async fn promote_message(
        &self,
        device_id: &str,
        message_id: &str,
        queued_at_ms: i64,
        not_before_ms: i64,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let (device_id, message_id) = (device_id.to_owned(), message_id.to_owned());
        self.write(move |conn| {
            messages::promote(conn, &device_id, &message_id, queued_at_ms, not_before_ms)
        })
        .await
    }

    async fn cancel_message(
        &self,
        device_id: &str,
        message_id: &str,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let (device_id, message_id) = (device_id.to_owned(), message_id.to_owned());
        self.write(move |conn| messages::cancel(conn, &device_id, &message_id))
            .await
    }

    async fn outbound_slots(
        &self,
        device_id: &str,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<i64>, StoreError> {
        let device_id = device_id.to_owned();
        self.read(move |conn| messages::outbound_slots(conn, &device_id, since_ms, limit))
            .await
    }

    async fn append_delivery(&self, delivery: &NewDelivery) -> Result<(), StoreError> {
        let delivery = delivery.clone();
        self.write(move |conn| deliveries::append(conn, &delivery))
            .await
    }

    async fn due_deliveries(
        &self,
        device_id: &str,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let device_id = device_id.to_owned();
        self.read(move |conn| deliveries::due(conn, &device_id, limit))
            .await
    }

    async fn record_attempt(
        &self,
        device_id: &str,
        event_id: &str,
        attempt: &Attempt,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let (device_id, event_id) = (device_id.to_owned(), event_id.to_owned());
        let attempt = attempt.clone();
        self.write(move |conn| deliveries::record_attempt(conn, &device_id, &event_id, &attempt))
            .await
    }

    async fn list_deliveries(
        &self,
        device_id: &str,
        status: Option<DeliveryStatus>,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let device_id = device_id.to_owned();
        self.read(move |conn| deliveries::list(conn, &device_id, status, before_seq, limit))
            .await
    }

    async fn replay_deliveries(
        &self,
        device_id: &str,
        which: &ReplayWhich,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let device_id = device_id.to_owned();
        let which = which.clone();
        self.write(move |conn| deliveries::replay(conn, &device_id, &which, now_ms))
            .await
    }

    async fn devices_with_due_deliveries(
        &self,
        shards: &[u32],
        limit: u32,
    ) -> Result<Vec<DeviceId>, StoreError> {
        let shards = shards.to_vec();
        self.read(move |conn| deliveries::devices_with_due(conn, &shards, limit))
            .await
    }

    async fn delivery_backlog(&self) -> Result<DeliveryBacklog, StoreError> {
        self.read(deliveries::backlog).await
    }

    async fn prune_deliveries(&self, before_ms: i64, limit: u32) -> Result<u64, StoreError> {
        self.write(move |conn| deliveries::prune(conn, before_ms, limit))
            .await
    }

    async fn get_setting(&self, key: &str) -> Result<Option<Setting>, StoreError> {
        let key = key.to_owned();
        self.read(move |conn| settings::get(conn, &key)).await
    }

    async fn put_setting(&self, key: &str, value: &str, now_ms: i64) -> Result<(), StoreError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |conn| settings::put(conn, &key, &value, now_ms))
            .await
    }

    async fn create_access(&self, record: &AccessRecord) -> Result<(), StoreError> {
        let record = record.clone();
        self.write(move |conn| access::create(conn, &record)).await
    }

    async fn update_access(&self, record: &AccessRecord) -> Result<(), StoreError> {
        let record = record.clone();
        self.write(move |conn| access::update(conn, &record)).await
    }

    async fn get_access(
        &self,
        kind: AccessKind,
        id: &str,
    ) -> Result<Option<AccessRecord>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| access::get(conn, kind, &id)).await
    }

    async fn list_access(&self, query: &AccessQuery) -> Result<Vec<AccessRecord>, StoreError> {
        let query = query.clone();
        self.read(move |conn| access::list(conn, &query)).await
    }

    async fn delete_access(&self, kind: AccessKind, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.write(move |conn| access::delete(conn, kind, &id))
            .await
    }

    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        let entries = entries.to_vec();
        self.write(move |conn| access::append_audit(conn, &entries))
            .await
    }

    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let query = query.clone();
        self.read(move |conn| access::list_audit(conn, &query))
            .await
    }

    async fn upsert_contacts(
        &self,
        tenant: &str,
        contacts: &[ContactUpsert],
        now_ms: i64,
    ) -> Result<Vec<Upserted>, StoreError> {
        let (tenant, contacts) = (tenant.to_owned(), contacts.to_vec());
        self.write(move |conn| contacts::upsert(conn, &tenant, &contacts, now_ms))
            .await
    }

    async fn get_contact(
        &self,
        tenant: &str,
        phone: &str,
    ) -> Result<Option<ContactRecord>, StoreError> {
        let (tenant, phone) = (tenant.to_owned(), phone.to_owned());
        self.read(move |conn| contacts::get(conn, &tenant, &phone))
            .await
    }

    async fn list_contacts(&self, query: &ContactQuery) -> Result<Vec<ContactRecord>, StoreError> {
        let query = query.clone();
        self.read(move |conn| contacts::list(conn, &query)).await
    }

    async fn set_contact_tags(
        &self,
        tenant: &str,
        phone: &str,
        tags: &[String],
        now_ms: i64,
    ) -> Result<Option<ContactRecord>, StoreError> {
        let (tenant, phone, tags) = (tenant.to_owned(), phone.to_owned(), tags.to_vec());
        self.write(move |conn| contacts::set_tags(conn, &tenant, &phone, &tags, now_ms))
            .await
    }

    async fn delete_contact(&self, tenant: &str, phone: &str) -> Result<bool, StoreError> {
        let (tenant, phone) = (tenant.to_owned(), phone.to_owned());
        self.write(move |conn| contacts::delete(conn, &tenant, &phone))
            .await
    }

    async fn list_contact_tags(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TagCount>, StoreError> {
        let (tenant, after) = (tenant.to_owned(), after.map(str::to_owned));
        self.read(move |conn| contacts::tag_counts(conn, &tenant, after.as_deref(), limit))
            .await
    }

    async fn put_job_recipients(&self, recipients: &[RecipientRecord]) -> Result<(), StoreError> {
        let recipients = recipients.to_vec();
        self.write(move |conn| jobs::put_recipients(conn, &recipients))
            .await
    }

    async fn create_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        let job = job.clone();
        self.write(move |conn| jobs::create(conn, &job)).await
    }

    async fn get_job(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| jobs::get(conn, &id)).await
    }

    async fn list_jobs(&self, query: &JobQuery) -> Result<Vec<JobRecord>, StoreError> {
        let query = query.clone();
        self.read(move |conn| jobs::list(conn, &query)).await
    }

    async fn update_job(&self, job: &JobRecord, expected: JobStatus) -> Result<bool, StoreError> {
        let job = job.clone();
        self.write(move |conn| jobs::update(conn, &job, expected))
            .await
    }

    async fn delete_job(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.write(move |conn| jobs::delete(conn, &id)).await
    }

    async fn count_job_recipients(
        &self,
        job_id: &str,
    ) -> Result<Vec<(RecipientStatus, u64)>, StoreError> {
        let job_id = job_id.to_owned();
        self.read(move |conn| jobs::count(conn, &job_id)).await
    }

    async fn claim_job_recipient(
        &self,
        job_id: &str,
        device_id: &str,
        now_ms: i64,
    ) -> Result<Option<RecipientRecord>, StoreError> {
        let (job_id, device_id) = (job_id.to_owned(), device_id.to_owned());
        self.write(move |conn| jobs::claim(conn, &job_id, &device_id, now_ms))
            .await
    }

    async fn update_job_recipient(
        &self,
        recipient: &RecipientRecord,
        expected: RecipientStatus,
    ) -> Result<bool, StoreError> {
        let recipient = recipient.clone();
        self.write(move |conn| jobs::update_recipient(conn, &recipient, expected))
            .await
    }

    async fn list_job_recipients(
        &self,
        query: &RecipientQuery,
    ) -> Result<Vec<RecipientRecord>, StoreError> {
        let query = query.clone();
        self.read(move |conn| jobs::list_recipients(conn, &query))
            .await
    }

    async fn move_job_recipients(
        &self,
        job_id: &str,
        from: RecipientStatus,
        to: RecipientStatus,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let job_id = job_id.to_owned();
        self.write(move |conn| jobs::move_recipients(conn, &job_id, from, to, now_ms))
            .await
    }

    async fn acquire_leases(
        &self,
        holder: &str,
        shards: &[u32],
        now_ms: i64,
        ttl_ms: u64,
    ) -> Result<Vec<Acquired>, StoreError> {
        let (holder, shards) = (holder.to_owned(), shards.to_vec());
        self.write(move |conn| leases::acquire(conn, &holder, &shards, now_ms, ttl_ms))
            .await
    }

    async fn renew_leases(
        &self,
        holder: &str,
        leases: &[Fence],
        now_ms: i64,
        ttl_ms: u64,
    ) -> Result<Vec<bool>, StoreError> {
        let (holder, fences) = (holder.to_owned(), leases.to_vec());
        self.write(move |conn| leases::renew(conn, &holder, &fences, now_ms, ttl_ms))
            .await
    }

    async fn release_leases(
        &self,
        holder: &str,
        leases: &[Fence],
    ) -> Result<Vec<bool>, StoreError> {
        let (holder, fences) = (holder.to_owned(), leases.to_vec());
        self.write(move |conn| leases::release(conn, &holder, &fences))
            .await
    }

    async fn get_lease(&self, shard: u32) -> Result<Option<Lease>, StoreError> {
        self.read(move |conn| leases::get(conn, shard)).await
    }

    async fn list_leases(&self, holder: Option<&str>) -> Result<Vec<Lease>, StoreError> {
        let holder = holder.map(str::to_owned);
        self.read(move |conn| leases::list(conn, holder.as_deref()))
            .await
    }
}
