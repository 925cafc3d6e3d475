//! The ScyllaDB store: a cluster's devices, sealed link state, messages, webhook delivery
//! log, leases, settings, access directory and audit log, and the tenants' contact
//! books, in one keyspace the node creates on start.
//!
//! # Layout
//! - [`schema`]: the keyspace, the tables (with why each partition key) and the version.
//! - [`statements`]: every CQL statement, with its bind markers named.
//! - [`rows`]: rows decoded into records (anything unexpected is `Corrupt`).
//! - [`errors`]: driver errors mapped to `Unavailable` (retry may help) or `Corrupt`.
//! - this file: the configuration, connecting (schema, statements, shard count), and the
//!   [`Store`] methods, each a call of one of the modules below.
//! - `session`: opening the session, creating the keyspace, preparing and running
//!   statements (reads, pages, LWTs, conditional batches, batches of plain writes).
//! - `fencing`: the two fence checks and the compare-and-set of a device partition.
//! - `devices`, `link_state`, `messages`, `deliveries`, `settings`, `leases`, `access`:
//!   the methods of each kind of record, with the helpers only they use (`access`, the
//!   directory and the audit log, documents its tables and their costs itself), and
//!   `contacts` (the contact books, likewise), `jobs` and `job_recipients` (campaigns:
//!   jobs and their listings, a job's recipients; each documents its tables and costs).
//! - `delivery_partition`: the delivery log's partition shape and what each write makes
//!   of it (pure; `deliveries` runs it).
//!
//! # Consistency
//!
//! Reads and plain writes run at LOCAL_QUORUM; every conditional write is a lightweight
//! transaction (LWT, Paxos) at LOCAL_SERIAL, and the reads that decide one run at
//! LOCAL_SERIAL too. Each request has a client timeout (`request_timeout_ms`); the
//! driver's default retry policy retries only idempotent statements (reads, plain
//! upserts) and never an LWT after a timeout or a lost connection, whose outcome is then
//! unknown: the call returns `Unavailable`, and every conditional write here answers a
//! retry truthfully (a retried create is `Conflict`, a retried keyed insert `Existing`).
//!
//! # Device partitions and fencing
//!
//! A device's row (static columns) and its link state (clustering rows) share one
//! partition of `devices`, because an LWT is atomic within one partition only. The
//! partition also keeps `version`, a counter every write bumps with a compare-and-set
//! (`IF version = ?`), and `fence_epoch`, the highest lease epoch a fenced write has
//! carried. Every write of a device partition reads it at LOCAL_SERIAL, decides, and
//! applies its change only if `version` is still what it read (otherwise it reads again,
//! a bounded number of times). That makes patches of different fields, and a clear of
//! all link state with its exact count, atomic.
//!
//! A lease lives in another partition (`leases`, by shard), and ScyllaDB has no
//! transaction across partitions, so a fenced write cannot check the lease atomically
//! with itself. What a fenced write under `(shard, E)` guarantees, precisely:
//! 1. A LOCAL_SERIAL (linearizable) read of the shard's lease, made just before the
//!    write, saw the shard held under epoch `E`; otherwise the write is refused
//!    `Fenced` with the epoch it saw, and nothing is written.
//! 2. Atomically with the write (the compare-and-set on `version`), no write under an
//!    epoch higher than `E` has reached this device's partition: `fence_epoch` only
//!    rises, and a write whose epoch is below it is refused `Fenced`. This is the
//!    storage-side fencing token: once the new owner of a shard has made one fenced write
//!    to a device (it records the device's status when it starts it), no write of an
//!    older epoch lands on that device again, however late it arrives.
//!
//! The window that remains: a write of the old owner whose lease read (1) happened
//! before the takeover, and which reaches the device before the new owner's first
//! fenced write to it, is applied. The SQLite store has no such window (the check and
//! the write are one transaction). The old owner stops serving when it cannot renew, and
//! the new owner only takes the shard after the lease expired, so that write was
//! already in flight when the lease ran out. What keeps it harmless for the device
//! partition: a new owner's first step with a device is a fenced write (its status,
//! `Starting`), before it reads anything it acts on (trust level, link state), so a late
//! write either lands before that write, and is read, or is refused. Messages live in
//! other partitions and are fenced by check 1 only: a late status write of the old owner
//! can still land on a message (at worst a `sent` recorded late; sends stay
//! at-least-once across a failover, as they are anyway).
//!
//! Leases themselves follow [`super::lease`]: read the slot at LOCAL_SERIAL, apply the
//! rule, write it back with `INSERT ... IF NOT EXISTS` or an `UPDATE ... IF` on the
//! whole slot as read; if another node changed it in between, read again. Bulk calls
//! run their shards concurrently, one LWT each.
//!
//! # Messages
//!
//! Messages are partitioned by device; a keyed insert claims the idempotency key and
//! inserts the message in one conditional batch of that partition (so exactly one of
//! many concurrent inserts wins). Status moves are compare-and-sets on the status read.
//! The queue (`outbox`), the scheduled messages (`schedule`) and the rate limiter's
//! slots (`outbound_slots`) are separate tables written beside the message: `outbox`
//! and `schedule` entries are written before the message (or its move into the queue)
//! and checked against it when read (a stale entry is skipped and removed), slots after
//! it (a crash in between forgets one slot). An `outbox` entry sits at the message's
//! place in the queue ([`crate::store::QueueKey`]: its creation, or for a scheduled
//! message the time it fell due).
//!
//! # Webhook deliveries
//!
//! A device's delivery log is one partition of `deliveries`, and every write of it is a
//! compare-and-set on the partition's static `version`, as with device partitions: read
//! at LOCAL_SERIAL, decide, write one conditional batch `IF version = ?` (null for a
//! partition never written), read again if another writer came between (at most
//! [`CAS_ATTEMPTS`] times). So each write sees and changes the partition whole:
//! - **Order.** An append takes `version + 1`, the version its batch writes, as the
//!   event's `seq`. Versions only rise and every write of the partition bumps one, so
//!   `seq`s increase per device in the order appends were applied, whatever the number
//!   of writers (gaps are the partition's other writes). The delivery row is written in
//!   the batch that allocates its `seq`: no reader sees a later `seq` before an earlier
//!   one exists.
//! - **Idempotence.** The batch also writes the event id's claim row ('e'); an append
//!   first looks for it (LOCAL_SERIAL, which also settles an append whose answer was
//!   lost), and two appends of one event cannot both apply on the same version.
//! - **Attempts.** `record_attempt` reads the delivery and applies only if it is still
//!   pending or failed with the attempts and `next_attempt_ms` the attempt began at
//!   (the same test the SQLite store writes as its `UPDATE ... WHERE`); the version
//!   condition makes that read still true when the batch applies, and the row it
//!   returns is the one written.
//! - **Due deliveries.** A due delivery also has a full copy ('q', same key) and an age
//!   marker ('o', keyed by `created_at_ms`), written and deleted in the batches that
//!   change its status, so `due_deliveries` is one read of the 'q' rows in `seq` order.
//!   It starts at the static `due_floor` (the lowest due `seq`), below which lie only the
//!   tombstones settled copies leave.
//! - **Tally.** Static `pending`, `failed`, `dead` and `oldest_due_ms` are kept exact by
//!   the same batches (a delivery that settles while it held `due_floor` or
//!   `oldest_due_ms` reads the next 'q' or 'o' row, two rows at most). So
//!   `devices_with_due_deliveries` reads the asked shards' `devices_by_shard` entries and
//!   one tally row per device (like `devices_with_queued`, never the log), and
//!   `delivery_backlog` reads one static row per partition (`SELECT DISTINCT`): its cost
//!   follows the number of devices with a log, not the number of deliveries.
//! - **Pruning.** A delivery recorded delivered has an entry in `delivered_by_day`
//!   (partition: the day of its `created_at_ms` and one of 16 buckets of the device),
//!   written before the batch that says delivered. Pruning lists those partitions, reads
//!   entries recorded before the time in day order, checks each against its delivery,
//!   deletes the delivered ones (with their claims, a conditional batch per device and 50
//!   deliveries) and drops entries that point at nothing prunable. A stale entry (an
//!   attempt that lost, a delivery replayed and then dead) costs a read; an entry lost
//!   to a race of pruning with a replay that is delivered again leaves that delivery
//!   unpruned until its device is deleted.
//!
//! Not fenced (as the `Store` docs say), and deleting a device deletes its partition with
//! a plain delete, with the caveats of "Deletes" below. Each append costs a device read,
//! two LOCAL_SERIAL reads and one LWT; an attempt two or three reads and one LWT. Writes
//! of one device's log are serialized by its partition (one worker per device writes
//! most of them); the event's data is written twice while it is due (the row and its
//! copy), so a batch carries it twice.
//!
//! # Devices by shard
//!
//! Recovery reads the devices of the shards a node takes over, and only those:
//! `devices_by_shard` has one partition per shard (`shard_of(device_id, S)`, S the
//! store's shard count) and one row per device, with `desired_running`. A device row and
//! its entry are in different partitions, so they cannot be written atomically; the
//! entry is written beside the row with plain writes and may lag, but only one way:
//! **an entry may say `true` while the row says `false` (or the device is gone), never
//! `false` while the row says `true`.** Readers take the entries that say `true` and
//! check each against its row, so a lag of that kind costs a read and never a device.
//! Writers keep to the rule thus:
//! - a write that makes `desired_running` true (create, patch) writes the entry `true`
//!   before the row and again after it, so a crash in between leaves an entry that says
//!   `true`;
//! - a write that makes it false writes the entry `false` after the row, then reads the
//!   row at LOCAL_SERIAL and writes `true` again if a concurrent write made it true
//!   meanwhile (that write's own entry may have landed first);
//! - deleting a device deletes its entry after the row, then, like `device_ids`, puts it
//!   back if a create of the same id ran meanwhile.
//!
//! Entries are last-write-wins, so the second rule assumes that the coordinators' clocks
//! order the two entry writes as they happened (the clock-skew caveat below). A create
//! or patch that fails (conflict, fenced, no such device) may leave an entry `true` for
//! a row that says false or does not exist: readers skip it.
//!
//! A keyspace created at schema version 1 gets its entries when the first node of this
//! build starts (a backfill from `device_ids`, before version 2 is recorded). Processes of
//! the earlier build do not write entries: during a rolling upgrade from version 1, a
//! device that one of them creates or starts after that backfill is not found by a
//! takeover until it is patched again by a process of this build. Upgrade every process
//! before relying on failover.
//!
//! The shard count is recorded in `settings` (`shards`) by the first process that
//! connects (`INSERT ... IF NOT EXISTS`); a process configured with another count is
//! refused at connect, since two processes that disagree on it would both own a device.
//!
//! # Deletes
//!
//! Deleting a device removes its partitions with plain deletes (messages, queue, slots,
//! delivery log). Two caveats follow, said here so no one is surprised: a message
//! inserted or an event appended while its device is being deleted may outlive it, and a
//! device re-created under the same id within the clock skew between coordinators may
//! lose its first messages or events to the old tombstone.
//!
//! # Tablets
//!
//! ScyllaDB releases up to 2025.3 (and 6.x) refuse LWT in keyspaces that use tablets,
//! and newer releases enable tablets by default. The keyspace is therefore created with
//! `AND tablets = {'enabled': false}` unless `[store.scylla] tablets = true` (for a
//! release that supports LWT on tablets, or one before 6.0 that does not know the option).
//! A keyspace created beforehand by an operator is used as it is: it must not use tablets

mod access;
mod contacts;
mod deliveries;
mod delivery_partition;
mod devices;
pub mod errors;
mod fencing;
mod job_recipients;
mod jobs;
mod leases;
mod link_state;
mod messages;
pub mod rows;
pub mod schema;
mod session;
mod settings;
pub mod statements;

#[cfg(test)]
mod access_wire_tests;
#[cfg(test)]
mod contacts_wire_tests;
#[cfg(test)]
mod delivery_wire_tests;
#[cfg(test)]
mod fake_node;
#[cfg(test)]
mod fake_tables;
#[cfg(test)]
mod jobs_wire_tests;
#[cfg(test)]
mod link_state_wire_tests;
#[cfg(test)]
mod proxy_tests;
#[cfg(test)]
mod schedule_wire_tests;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::join_all;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use self::schema::{DEVICES_BY_SHARD_VERSION, KeyspaceOptions, SCHEMA_VERSION};
use self::session::{create_schema, open_session, prepare, record_schema_version};
use self::statements as st;
use super::{
    AccessKind, AccessQuery, AccessRecord, Acquired, Attempt, AuditEntry, AuditQuery, ContactQuery,
    ContactRecord, ContactUpsert, DeliveryBacklog, DeliveryRecord, DeliveryStatus, DeviceId,
    DevicePage, DevicePatch, DeviceQuery, DeviceRecord, DeviceStatus, Fence, InsertOutcome,
    JobQuery, JobRecord, JobStatus, Lease, MessageQuery, MessageRecord, MessageStatus, NewDelivery,
    RecipientQuery, RecipientRecord, RecipientStatus, ReplayWhich, SHARDS_SETTING, SealedBlob,
    Setting, Store, StoreError, TagCount, Upserted, check_shards,
};
use crate::clock::now_ms;

/// How many times a compare-and-set is tried again after another writer changed the row
/// between the read and the write (each attempt is a read and an LWT).
const CAS_ATTEMPTS: usize = 64;
/// Device ids fetched per index read while filling a page of devices.
const LIST_CHUNK: i32 = 200;
/// Reads in flight at once when reading shards' entries and checking them against their
/// rows.
const SHARD_READS: usize = 32;

/// What [`ScyllaStore::connect`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScyllaConfig {
    /// Contact points, `host:port`.
    pub uris: Vec<String>,
    pub keyspace: KeyspaceOptions,
    /// Prefer this datacenter's nodes (optional).
    pub local_dc: Option<String>,
    /// Client timeout of one request, retries included.
    pub request_timeout: Duration,
    /// Timeout of a connection and its handshake; `connect` gives up after about twice it.
    pub connect_timeout: Duration,
    /// The cluster's shard count (`cluster.shards`): devices are indexed by
    /// `shard_of(id, shards)`. Recorded in the keyspace by the first process that
    /// connects; a keyspace recorded with another count is refused.
    pub shards: u32,
}

/// The [`Store`] on a ScyllaDB cluster.
pub struct ScyllaStore {
    session: Session,
    /// The keyspace every statement names.
    keyspace: String,
    /// Every statement of [`statements::ALL`], prepared once, by name.
    prepared: HashMap<&'static str, PreparedStatement>,
    /// The shard count devices are indexed by (recorded in the keyspace).
    shards: u32,
    /// The last audit hour this process marked in `audit_hours` (see `access`).
    audit_hour_marked: AtomicI64,
}

impl std::fmt::Debug for ScyllaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaStore")
            .field("keyspace", &self.keyspace)
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

/// The outcome of an LWT: whether it applied.
type Applied = bool;

impl ScyllaStore {
    /// Connects, creates or migrates the keyspace and its tables, prepares every
    /// statement, and records or checks the shard count. A keyspace whose schema is newer
    /// than this build is `Corrupt`; one recorded with another shard count is
    /// `Misconfigured`; no answer in time is `Unavailable`.
    ///
    /// # Panics
    ///
    /// If `config.shards` is 0 (the configuration refuses that value).
    pub async fn connect(config: &ScyllaConfig) -> Result<ScyllaStore, StoreError> {
        assert!(config.shards > 0, "a store needs at least one shard");
        let session = open_session(config).await?;
        let keyspace = config.keyspace.name.clone();
        let found = create_schema(&session, &config.keyspace).await?;
        let mut prepared = HashMap::new();
        for statement in st::ALL {
            prepared.insert(
                statement.name,
                prepare(&session, &keyspace, statement).await?,
            );
        }
        let store = ScyllaStore {
            session,
            keyspace,
            prepared,
            shards: config.shards,
            audit_hour_marked: AtomicI64::new(i64::MIN),
        };
        store.settle_shards(found).await?;
        if found < DEVICES_BY_SHARD_VERSION {
            store.backfill_devices_by_shard().await?;
        }
        if found < SCHEMA_VERSION {
            record_schema_version(&store.session, &store.keyspace).await?;
        }
        Ok(store)
    }

    /// Records the shard count in a keyspace that has none yet, or checks it against the
    /// one recorded. A keyspace at [`DEVICES_BY_SHARD_VERSION`] or later (`found`) has its
    /// entries placed by a recorded count, so it must have one.
    async fn settle_shards(&self, found: i32) -> Result<(), StoreError> {
        if found < DEVICES_BY_SHARD_VERSION {
            let s = &st::CLAIM_SETTING;
            let values = s.bind(vec![
                ("key", st::text(SHARDS_SETTING)),
                ("value", st::text(&self.shards.to_string())),
                ("updated_at_ms", st::big(now_ms())),
            ]);
            if self.lwt(s, values).await? {
                return Ok(());
            }
        }
        let s = &st::GET_SETTING_SERIAL;
        let row = self
            .first(s, s.bind(vec![("key", st::text(SHARDS_SETTING))]))
            .await?;
        let Some(row) = row else {
            return Err(StoreError::Corrupt(format!(
                "keyspace {} has schema version {found} but records no shard count \
                 (setting {SHARDS_SETTING:?})",
                self.keyspace
            )));
        };
        check_shards(&rows::text(&row, 0, "shard count")?, self.shards)
    }

    /// Schema step 2's data: an entry in `devices_by_shard` for every device in
    /// `device_ids`, by the rules of the module docs (so it may run beside writers, and
    /// again after a start that died half way).
    async fn backfill_devices_by_shard(&self) -> Result<(), StoreError> {
        let mut after = String::new();
        let mut indexed = 0usize;
        loop {
            let ids = self.device_ids_after(&after).await?;
            let Some(last) = ids.last() else { break };
            after = last.clone();
            let done = join_all(ids.iter().map(|id| async move {
                match self.device_state(id, false).await? {
                    Some(state) => {
                        self.set_shard_entry(id, state.device.desired_running)
                            .await?;
                        Ok(1)
                    }
                    // Indexed without a device: a create that did not finish, or a
                    // delete in progress.
                    None => Ok::<usize, StoreError>(0),
                }
            }))
            .await;
            for one in done {
                indexed += one?;
            }
            if ids.len() < LIST_CHUNK as usize {
                break;
            }
        }
        tracing::info!(keyspace = %self.keyspace, devices = indexed, "indexed devices by shard");
        Ok(())
    }

    /// The keyspace in use.
    pub fn keyspace(&self) -> &str {
        &self.keyspace
    }
}

fn contention(what: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "{what}: gave up after {CAS_ATTEMPTS} compare-and-set attempts under contention"
    ))
}

fn i64_of(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value} out of range")))
}

/// Each method is a call of the module of its kind of record.
#[async_trait]
impl Store for ScyllaStore {
    async fn create_device(&self, device: &DeviceRecord) -> Result<(), StoreError> {
        devices::create(self, device).await
    }

    async fn get_device(&self, id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        devices::get(self, id).await
    }

    async fn patch_device(
        &self,
        id: &str,
        patch: &DevicePatch,
        now_ms: i64,
        fence: Option<&Fence>,
    ) -> Result<DeviceRecord, StoreError> {
        devices::patch(self, id, patch, now_ms, fence).await
    }

    async fn list_devices(&self, query: &DeviceQuery) -> Result<DevicePage, StoreError> {
        devices::list(self, query).await
    }

    async fn wanted_devices_in_shards(&self, shards: &[u32]) -> Result<Vec<DeviceId>, StoreError> {
        devices::wanted_in_shards(self, shards).await
    }

    fn shards(&self) -> u32 {
        self.shards
    }

    async fn count_devices_by_status(&self) -> Result<Vec<(DeviceStatus, u64)>, StoreError> {
        devices::count_by_status(self).await
    }

    async fn delete_device(&self, id: &str, fence: Option<&Fence>) -> Result<bool, StoreError> {
        devices::delete(self, id, fence).await
    }

    async fn put_link_state(
        &self,
        device_id: &str,
        namespace: &str,
        key: &str,
        value: &SealedBlob,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        link_state::put(self, device_id, namespace, key, value, fence).await
    }

    async fn put_link_state_many(
        &self,
        device_id: &str,
        namespace: &str,
        records: &[(String, SealedBlob)],
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        link_state::put_many(self, device_id, namespace, records, fence).await
    }

    async fn get_link_state(
        &self,
        device_id: &str,
        namespace: &str,
        key: &str,
    ) -> Result<Option<SealedBlob>, StoreError> {
        link_state::get(self, device_id, namespace, key).await
    }

    async fn any_link_state(
        &self,
        device_id: &str,
        namespace: &str,
        keys: &[String],
    ) -> Result<bool, StoreError> {
        link_state::any(self, device_id, namespace, keys).await
    }

    async fn get_link_state_many(
        &self,
        device_id: &str,
        namespace: &str,
        keys: &[String],
    ) -> Result<Vec<(String, SealedBlob)>, StoreError> {
        link_state::get_many(self, device_id, namespace, keys).await
    }

    async fn list_link_state(
        &self,
        device_id: &str,
        namespace: &str,
    ) -> Result<Vec<(String, SealedBlob)>, StoreError> {
        link_state::list(self, device_id, namespace).await
    }

    async fn delete_link_state(
        &self,
        device_id: &str,
        namespace: &str,
        key: &str,
        fence: Option<&Fence>,
    ) -> Result<bool, StoreError> {
        link_state::delete(self, device_id, namespace, key, fence).await
    }

    async fn clear_link_state(
        &self,
        device_id: &str,
        fence: Option<&Fence>,
    ) -> Result<u64, StoreError> {
        link_state::clear(self, device_id, fence).await
    }

    async fn insert_message(&self, message: &MessageRecord) -> Result<InsertOutcome, StoreError> {
        messages::insert(self, message).await
    }

    async fn get_message(
        &self,
        device_id: &str,
        message_id: &str,
    ) -> Result<Option<MessageRecord>, StoreError> {
        messages::get(self, device_id, message_id).await
    }

    async fn advance_message(
        &self,
        device_id: &str,
        message_id: &str,
        status: MessageStatus,
        at_ms: i64,
        error: Option<&str>,
    ) -> Result<Option<MessageRecord>, StoreError> {
        messages::advance(self, device_id, message_id, status, at_ms, error).await
    }

    async fn queued_messages(
        &self,
        device_id: &str,
        limit: u32,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        messages::queued(self, device_id, limit).await
    }

    async fn list_messages(
        &self,
        device_id: &str,
        query: &MessageQuery,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        messages::list(self, device_id, query).await
    }

    async fn devices_with_queued(
        &self,
        shards: &[u32],
        limit: u32,
    ) -> Result<Vec<DeviceId>, StoreError> {
        messages::devices_with_queued(self, shards, limit).await
    }

    async fn reschedule_message(
        &self,
        device_id: &str,
        message_id: &str,
        not_before_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        messages::reschedule(self, device_id, message_id, not_before_ms).await
    }

    async fn scheduled_messages(
        &self,
        device_id: &str,
        limit: u32,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        messages::scheduled(self, device_id, limit).await
    }

    async fn promote_message(
        &self,
        device_id: &str,
        message_id: &str,
        queued_at_ms: i64,
        not_before_ms: i64,
    ) -> Result<Option<MessageRecord>, StoreError> {
        messages::promote(self, device_id, message_id, queued_at_ms, not_before_ms).await
    }

    async fn cancel_message(
        &self,
        device_id: &str,
        message_id: &str,
    ) -> Result<Option<MessageRecord>, StoreError> {
        messages::cancel(self, device_id, message_id).await
    }

    async fn outbound_slots(
        &self,
        device_id: &str,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<i64>, StoreError> {
        messages::outbound_slots(self, device_id, since_ms, limit).await
    }

    async fn append_delivery(&self, delivery: &NewDelivery) -> Result<(), StoreError> {
        deliveries::append(self, delivery).await
    }

    async fn due_deliveries(
        &self,
        device_id: &str,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        deliveries::due(self, device_id, limit).await
    }

    async fn record_attempt(
        &self,
        device_id: &str,
        event_id: &str,
        attempt: &Attempt,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        deliveries::record_attempt(self, device_id, event_id, attempt).await
    }

    async fn list_deliveries(
        &self,
        device_id: &str,
        status: Option<DeliveryStatus>,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        deliveries::list(self, device_id, status, before_seq, limit).await
    }

    async fn replay_deliveries(
        &self,
        device_id: &str,
        which: &ReplayWhich,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        deliveries::replay(self, device_id, which, now_ms).await
    }

    async fn devices_with_due_deliveries(
        &self,
        shards: &[u32],
        limit: u32,
    ) -> Result<Vec<DeviceId>, StoreError> {
        deliveries::devices_with_due(self, shards, limit).await
    }

    async fn delivery_backlog(&self) -> Result<DeliveryBacklog, StoreError> {
        deliveries::backlog(self).await
    }

    async fn prune_deliveries(&self, before_ms: i64, limit: u32) -> Result<u64, StoreError> {
        deliveries::prune(self, before_ms, limit).await
    }

    async fn get_setting(&self, key: &str) -> Result<Option<Setting>, StoreError> {
        settings::get(self, key).await
    }

    async fn put_setting(&self, key: &str, value: &str, now_ms: i64) -> Result<(), StoreError> {
        settings::put(self, key, value, now_ms).await
    }

    async fn create_access(&self, record: &AccessRecord) -> Result<(), StoreError> {
        access::create(self, record).await
    }

    async fn update_access(&self, record: &AccessRecord) -> Result<(), StoreError> {
        access::update(self, record).await
    }

    async fn get_access(
        &self,
        kind: AccessKind,
        id: &str,
    ) -> Result<Option<AccessRecord>, StoreError> {
        access::get(self, kind, id).await
    }

    async fn list_access(&self, query: &AccessQuery) -> Result<Vec<AccessRecord>, StoreError> {
        access::list(self, query).await
    }

    async fn delete_access(&self, kind: AccessKind, id: &str) -> Result<bool, StoreError> {
        access::delete(self, kind, id).await
    }

    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        access::append_audit(self, entries).await
    }

    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        access::list_audit(self, query).await
    }

    async fn upsert_contacts(
        &self,
        tenant: &str,
        contacts: &[ContactUpsert],
        now_ms: i64,
    ) -> Result<Vec<Upserted>, StoreError> {
        contacts::upsert(self, tenant, contacts, now_ms).await
    }

    async fn get_contact(
        &self,
        tenant: &str,
        phone: &str,
    ) -> Result<Option<ContactRecord>, StoreError> {
        contacts::get(self, tenant, phone).await
    }

    async fn list_contacts(&self, query: &ContactQuery) -> Result<Vec<ContactRecord>, StoreError> {
        contacts::list(self, query).await
    }

    async fn set_contact_tags(
        &self,
        tenant: &str,
        phone: &str,
        tags: &[String],
        now_ms: i64,
    ) -> Result<Option<ContactRecord>, StoreError> {
        contacts::set_tags(self, tenant, phone, tags, now_ms).await
    }

    async fn delete_contact(&self, tenant: &str, phone: &str) -> Result<bool, StoreError> {
        contacts::delete(self, tenant, phone).await
    }

    async fn list_contact_tags(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TagCount>, StoreError> {
        contacts::tag_counts(self, tenant, after, limit).await
    }

    async fn put_job_recipients(&self, recipients: &[RecipientRecord]) -> Result<(), StoreError> {
        job_recipients::put_recipients(self, recipients).await
    }

    async fn create_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        jobs::create(self, job).await
    }

    async fn get_job(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        jobs::get(self, id).await
    }

    async fn list_jobs(&self, query: &JobQuery) -> Result<Vec<JobRecord>, StoreError> {
        jobs::list(self, query).await
    }

    async fn update_job(&self, job: &JobRecord, expected: JobStatus) -> Result<bool, StoreError> {
        jobs::update(self, job, expected).await
    }

    async fn delete_job(&self, id: &str) -> Result<bool, StoreError> {
        jobs::delete(self, id).await
    }

    async fn count_job_recipients(
        &self,
        job_id: &str,
    ) -> Result<Vec<(RecipientStatus, u64)>, StoreError> {
        job_recipients::count(self, job_id).await
    }

    async fn claim_job_recipient(
        &self,
        job_id: &str,
        device_id: &str,
        now_ms: i64,
    ) -> Result<Option<RecipientRecord>, StoreError> {
        job_recipients::claim(self, job_id, device_id, now_ms).await
    }

    async fn update_job_recipient(
        &self,
        recipient: &RecipientRecord,
        expected: RecipientStatus,
    ) -> Result<bool, StoreError> {
        job_recipients::update_recipient(self, recipient, expected).await
    }

    async fn list_job_recipients(
        &self,
        query: &RecipientQuery,
    ) -> Result<Vec<RecipientRecord>, StoreError> {
        job_recipients::list_recipients(self, query).await
    }

    async fn move_job_recipients(
        &self,
        job_id: &str,
        from: RecipientStatus,
        to: RecipientStatus,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        job_recipients::move_recipients(self, job_id, from, to, now_ms).await
    }

    async fn acquire_leases(
        &self,
        holder: &str,
        shards: &[u32],
        now_ms: i64,
        ttl_ms: u64,
    ) -> Result<Vec<Acquired>, StoreError> {
        leases::acquire(self, holder, shards, now_ms, ttl_ms).await
    }

    async fn renew_leases(
        &self,
        holder: &str,
        leases: &[Fence],
        now_ms: i64,
        ttl_ms: u64,
    ) -> Result<Vec<bool>, StoreError> {
        leases::renew(self, holder, leases, now_ms, ttl_ms).await
    }

    async fn release_leases(
        &self,
        holder: &str,
        leases: &[Fence],
    ) -> Result<Vec<bool>, StoreError> {
        leases::release(self, holder, leases).await
    }

    async fn get_lease(&self, shard: u32) -> Result<Option<Lease>, StoreError> {
        leases::get(self, shard).await
    }

    async fn list_leases(&self, holder: Option<&str>) -> Result<Vec<Lease>, StoreError> {
        leases::list(self, holder).await
    }
}
