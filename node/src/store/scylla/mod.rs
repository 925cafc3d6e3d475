//! The ScyllaDB store: a cluster's devices, sealed link state, messages, leases and
//! settings, in one keyspace the node creates on start.
//!
//! # Layout
//! - [`schema`]: the keyspace, the tables (with why each partition key) and the version.
//! - [`statements`]: every CQL statement, with its bind markers named.
//! - [`rows`]: rows decoded into records (anything unexpected is `Corrupt`).
//! - [`errors`]: driver errors mapped to `Unavailable` (retry may help) or `Corrupt`.
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
//! The queue (`outbox`) and the rate limiter's slots (`outbound_slots`) are separate
//! tables written beside the message: `outbox` entries are written before the message
//! and checked against it when read (a stale entry is skipped and removed), slots after
//! it (a crash in between forgets one slot).
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
//! Deleting a device removes its partitions with plain deletes. Two caveats follow, said
//! here so no one is surprised: a message inserted while its device is being deleted may
//! outlive it, and a device re-created under the same id within the clock skew between
//! coordinators may lose its first messages to the old tombstone.
//!
//! # Tablets
//!
//! ScyllaDB releases up to 2025.3 (and 6.x) refuse LWT in keyspaces that use tablets,
//! and newer releases enable tablets by default. The keyspace is therefore created with
//! `AND tablets = {'enabled': false}` unless `[store.scylla] tablets = true` (for a
//! release that supports LWT on tablets, or one before 6.0 that does not know the option).
//! A keyspace created beforehand by an operator is used as it is: it must not use tablets
//! on a release without LWT support for them.

pub mod errors;
pub mod rows;
pub mod schema;
pub mod statements;

#[cfg(test)]
mod fake_node;
#[cfg(test)]
mod proxy_tests;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::join_all;
use futures_util::{StreamExt, stream};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::policies::retry::DefaultRetryPolicy;
use scylla::response::query_result::QueryResult;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::{CqlValue, Row};
use wafleet_cluster_config::shard_of;

use self::rows::DeviceState;
use self::schema::{DEVICES_BY_SHARD_VERSION, KeyspaceOptions, SCHEMA_VERSION};
use self::statements::{self as st, Bound, Kind, Statement};
use super::{
    Acquired, DeviceId, DevicePage, DevicePatch, DeviceQuery, DeviceRecord, DeviceStatus,
    Direction, Fence, InsertOutcome, Lease, LeaseSlot, MessageRecord, MessageStatus,
    SHARDS_SETTING, SealedBlob, Setting, Store, StoreError, check_shards,
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

    fn statement(&self, statement: &Statement) -> &PreparedStatement {
        // Every statement of `ALL` was prepared in `connect`; a test checks the
        // store only uses statements of `ALL`.
        &self.prepared[statement.name]
    }

    async fn execute(
        &self,
        statement: &Statement,
        values: Vec<Bound>,
    ) -> Result<QueryResult, StoreError> {
        self.session
            .execute_unpaged(self.statement(statement), values)
            .await
            .map_err(|e| errors::execution(statement.name, e))
    }

    /// Runs a statement that returns a page of rows (reads bounded by key or LIMIT).
    async fn rows(
        &self,
        statement: &Statement,
        values: Vec<Bound>,
    ) -> Result<Vec<Vec<Option<CqlValue>>>, StoreError> {
        let result = self.execute(statement, values).await?;
        result_rows(statement.name, result)
    }

    async fn first(
        &self,
        statement: &Statement,
        values: Vec<Bound>,
    ) -> Result<Option<Vec<Option<CqlValue>>>, StoreError> {
        Ok(self.rows(statement, values).await?.into_iter().next())
    }

    /// Every row of a statement, page by page, stopping early when `keep` says so.
    async fn each_row(
        &self,
        statement: &Statement,
        values: Vec<Bound>,
        mut keep: impl FnMut(Vec<Option<CqlValue>>) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let pager = self
            .session
            .execute_iter(self.statement(statement).clone(), values)
            .await
            .map_err(|e| errors::pager(statement.name, e))?;
        let mut stream = pager
            .rows_stream::<Row>()
            .map_err(|e| StoreError::Corrupt(format!("{}: {e}", statement.name)))?;
        while let Some(row) = stream.next().await {
            let row = row.map_err(|e| errors::next_row(statement.name, e))?;
            if !keep(row.columns)? {
                break;
            }
        }
        Ok(())
    }

    async fn lwt(&self, statement: &Statement, values: Vec<Bound>) -> Result<Applied, StoreError> {
        let result = self.execute(statement, values).await?;
        applied(statement.name, result)
    }

    /// A conditional batch (one partition) of `(statement, values)`.
    async fn lwt_batch(&self, parts: Vec<(&Statement, Vec<Bound>)>) -> Result<Applied, StoreError> {
        let mut batch = Batch::new(BatchType::Logged);
        batch.set_serial_consistency(Some(SerialConsistency::LocalSerial));
        batch.set_is_idempotent(false);
        let mut values = Vec::with_capacity(parts.len());
        let name = parts.first().map_or("batch", |(s, _)| s.name);
        for (statement, bound) in parts {
            batch.append_statement(self.statement(statement).clone());
            values.push(bound);
        }
        let result = self
            .session
            .batch(&batch, values)
            .await
            .map_err(|e| errors::execution(name, e))?;
        applied(name, result)
    }

    // ---- devices ----

    async fn device_state(
        &self,
        id: &str,
        serial: bool,
    ) -> Result<Option<DeviceState>, StoreError> {
        let statement = if serial {
            &st::SELECT_DEVICE_SERIAL
        } else {
            &st::SELECT_DEVICE
        };
        match self
            .first(statement, statement.bind(vec![("device_id", st::text(id))]))
            .await?
        {
            Some(row) => rows::device_state(&row),
            None => Ok(None),
        }
    }

    /// The next [`LIST_CHUNK`] ids of `device_ids` after `after`, in id order.
    async fn device_ids_after(&self, after: &str) -> Result<Vec<String>, StoreError> {
        let s = &st::LIST_DEVICE_IDS;
        self.rows(
            s,
            s.bind(vec![
                ("device_id", st::text(after)),
                ("limit", st::int(LIST_CHUNK)),
            ]),
        )
        .await?
        .iter()
        .map(|row| rows::text(row, 0, "indexed device id"))
        .collect()
    }

    /// The device's partition key in `devices_by_shard`.
    fn shard_key(&self, id: &str) -> Bound {
        st::big(i64::from(shard_of(id, self.shards)))
    }

    /// Writes the device's entry as is, whatever the row says (see
    /// [`ScyllaStore::set_shard_entry`]).
    async fn put_shard_entry(&self, id: &str, desired_running: bool) -> Result<(), StoreError> {
        let s = &st::PUT_SHARD_ENTRY;
        let values = s.bind(vec![
            ("shard", self.shard_key(id)),
            ("device_id", st::text(id)),
            ("desired_running", st::boolean(desired_running)),
        ]);
        self.execute(s, values).await.map(drop)
    }

    /// Makes the device's entry say `desired_running`, which a write of the row has just
    /// set. `false` is checked against the row afterwards (LOCAL_SERIAL): a concurrent
    /// write that made it true may have written its entry before this one, and an entry
    /// must never say false while its row says true (module docs, "Devices by shard").
    async fn set_shard_entry(&self, id: &str, desired_running: bool) -> Result<(), StoreError> {
        self.put_shard_entry(id, desired_running).await?;
        if !desired_running
            && let Some(state) = self.device_state(id, true).await?
            && state.device.desired_running
        {
            self.put_shard_entry(id, true).await?;
        }
        Ok(())
    }

    async fn delete_shard_entry(&self, id: &str) -> Result<(), StoreError> {
        let s = &st::DELETE_SHARD_ENTRY;
        let values = s.bind(vec![
            ("shard", self.shard_key(id)),
            ("device_id", st::text(id)),
        ]);
        self.execute(s, values).await.map(drop)
    }

    /// The devices whose entry in `shard` says they are wanted running (unchecked).
    async fn shard_candidates(&self, shard: u32) -> Result<Vec<DeviceId>, StoreError> {
        let s = &st::SHARD_ENTRIES;
        let mut ids = Vec::new();
        self.each_row(
            s,
            s.bind(vec![("shard", st::big(i64::from(shard)))]),
            |row| {
                if rows::opt_boolean(&row, 1, "shard entry desired_running")? == Some(true) {
                    ids.push(rows::text(&row, 0, "shard entry device id")?);
                }
                Ok(true)
            },
        )
        .await?;
        Ok(ids)
    }

    async fn index_device(&self, id: &str, present: bool) -> Result<(), StoreError> {
        let statement = if present {
            &st::INDEX_DEVICE
        } else {
            &st::UNINDEX_DEVICE
        };
        self.execute(statement, statement.bind(vec![("device_id", st::text(id))]))
            .await
            .map(drop)
    }

    /// The shard's lease slot at LOCAL_SERIAL, and whether its row exists.
    async fn lease_slot(&self, shard: u32) -> Result<(LeaseSlot, bool), StoreError> {
        let s = &st::SELECT_LEASE_SERIAL;
        let row = self
            .first(s, s.bind(vec![("shard", st::big(i64::from(shard)))]))
            .await?;
        match row {
            Some(row) => Ok((rows::lease_slot(shard, &row)?, true)),
            None => Ok((LeaseSlot::vacant(shard), false)),
        }
    }

    /// Check 1 of a fenced write (see the module docs): the lease holds the fence's epoch.
    async fn check_lease(&self, fence: Option<&Fence>) -> Result<Option<u64>, StoreError> {
        let Some(fence) = fence else {
            return Ok(None);
        };
        let (slot, _) = self.lease_slot(fence.shard).await?;
        lease_admits(&slot, fence)?;
        Ok(Some(fence.epoch))
    }

    /// Runs a compare-and-set on a device partition: `plan` gets the state read at
    /// LOCAL_SERIAL and the fence epoch the write must leave, and returns the write (or
    /// an answer without writing). Fence check 2 happens here, against the state read.
    async fn device_cas<T>(
        &self,
        device_id: &str,
        fence: Option<&Fence>,
        mut plan: impl FnMut(Option<&DeviceState>, u64) -> Result<DevicePlan<T>, StoreError>,
    ) -> Result<T, StoreError> {
        self.check_lease(fence).await?;
        for _ in 0..CAS_ATTEMPTS {
            let state = self.device_state(device_id, true).await?;
            let fence_epoch = match (&state, fence) {
                (Some(state), Some(fence)) => device_admits(fence, state.fence_epoch)?,
                (Some(state), None) => state.fence_epoch,
                (None, _) => 0,
            };
            let write = match plan(state.as_ref(), fence_epoch)? {
                DevicePlan::Done(answer) => return Ok(answer),
                DevicePlan::Write(parts, answer) => (parts, answer),
            };
            let (parts, answer) = write;
            let applied = if parts.len() == 1 {
                let (statement, values) = parts.into_iter().next().expect("one part");
                self.lwt(statement, values).await?
            } else {
                self.lwt_batch(parts).await?
            };
            if applied {
                return Ok(answer);
            }
        }
        Err(contention(device_id))
    }
}

/// What a device-partition compare-and-set does after reading the partition.
enum DevicePlan<T> {
    /// Answer without writing.
    Done(T),
    /// Apply these statements (one LWT, or a conditional batch) and answer this.
    Write(Vec<(&'static Statement, Vec<Bound>)>, T),
}

fn contention(what: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "{what}: gave up after {CAS_ATTEMPTS} compare-and-set attempts under contention"
    ))
}

/// Fence check 1: the lease slot is held under the fence's epoch.
fn lease_admits(slot: &LeaseSlot, fence: &Fence) -> Result<(), StoreError> {
    slot.admits(fence).map_err(|current| StoreError::Fenced {
        shard: fence.shard,
        epoch: fence.epoch,
        current,
    })
}

/// Fence check 2: no write of a higher epoch reached the device. Returns the device's
/// fence epoch after this write.
fn device_admits(fence: &Fence, device_fence_epoch: u64) -> Result<u64, StoreError> {
    if fence.epoch < device_fence_epoch {
        Err(StoreError::Fenced {
            shard: fence.shard,
            epoch: fence.epoch,
            current: Some(device_fence_epoch),
        })
    } else {
        Ok(fence.epoch)
    }
}

fn i64_of(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value} out of range")))
}

fn device_not_found(id: &str) -> StoreError {
    StoreError::NotFound {
        what: format!("device {id}"),
    }
}

/// The rows of a result.
fn result_rows(
    statement: &str,
    result: QueryResult,
) -> Result<Vec<Vec<Option<CqlValue>>>, StoreError> {
    let rows = result
        .into_rows_result()
        .map_err(|e| StoreError::Corrupt(format!("{statement} returned no rows: {e}")))?;
    let iter = rows
        .rows::<Row>()
        .map_err(|e| StoreError::Corrupt(format!("{statement}: {e}")))?;
    iter.map(|row| {
        row.map(|r| r.columns)
            .map_err(|e| StoreError::Corrupt(format!("{statement}: {e}")))
    })
    .collect()
}

/// Whether an LWT applied: its `[applied]` column (first row; a batch's rows agree).
fn applied(statement: &str, result: QueryResult) -> Result<Applied, StoreError> {
    let rows = result
        .into_rows_result()
        .map_err(|e| StoreError::Corrupt(format!("{statement} returned no [applied]: {e}")))?;
    let names: Vec<String> = rows
        .column_specs()
        .iter()
        .map(|spec| spec.name().to_owned())
        .collect();
    let first = rows
        .maybe_first_row::<Row>()
        .map_err(|e| StoreError::Corrupt(format!("{statement}: {e}")))?;
    applied_flag(
        statement,
        &names,
        first.as_ref().map(|r| r.columns.as_slice()),
    )
}

/// The `[applied]` flag among a result's columns.
fn applied_flag(
    statement: &str,
    names: &[String],
    row: Option<&[Option<CqlValue>]>,
) -> Result<Applied, StoreError> {
    let index = names
        .iter()
        .position(|n| n == "[applied]")
        .ok_or_else(|| StoreError::Corrupt(format!("{statement}: no [applied] column")))?;
    match row.and_then(|r| r.get(index)) {
        Some(Some(CqlValue::Boolean(applied))) => Ok(*applied),
        other => Err(StoreError::Corrupt(format!(
            "{statement}: [applied] is {other:?}"
        ))),
    }
}

async fn open_session(config: &ScyllaConfig) -> Result<Session, StoreError> {
    let mut policy = DefaultPolicy::builder().token_aware(true);
    if let Some(dc) = &config.local_dc {
        policy = policy.prefer_datacenter(dc.clone());
    }
    let profile = ExecutionProfile::builder()
        .consistency(Consistency::LocalQuorum)
        .serial_consistency(Some(SerialConsistency::LocalSerial))
        .request_timeout(Some(config.request_timeout))
        // Retries idempotent statements only (and never a serial one), on another node.
        .retry_policy(Arc::new(DefaultRetryPolicy::new()))
        .load_balancing_policy(policy.build())
        .build();
    let builder = SessionBuilder::new()
        .known_nodes(&config.uris)
        .connection_timeout(config.connect_timeout)
        .default_execution_profile_handle(profile.into_handle());
    let bound = config.connect_timeout * 2;
    match tokio::time::timeout(bound, builder.build()).await {
        Ok(Ok(session)) => Ok(session),
        Ok(Err(e)) => Err(errors::session(&config.uris, e)),
        Err(_) => Err(StoreError::Unavailable(format!(
            "cannot connect to scylla at {}: no session within {} ms",
            config.uris.join(", "),
            bound.as_millis()
        ))),
    }
}

async fn ddl(session: &Session, cql: String) -> Result<(), StoreError> {
    session
        .query_unpaged(cql.clone(), ())
        .await
        .map(drop)
        .map_err(|e| errors::execution(&cql, e))
}

/// Creates the keyspace and the tables of every missing schema step; returns the version
/// found (0 for a new keyspace). The caller records [`SCHEMA_VERSION`] once the steps'
/// data is written too ([`record_schema_version`]).
async fn create_schema(session: &Session, keyspace: &KeyspaceOptions) -> Result<i32, StoreError> {
    let ks = &keyspace.name;
    ddl(session, schema::create_keyspace(keyspace)).await?;
    ddl(
        session,
        schema::in_keyspace(schema::SCHEMA_VERSION_TABLE, ks),
    )
    .await?;
    let version_stmt = prepare(session, ks, &st::GET_SCHEMA_VERSION).await?;
    let result = session
        .execute_unpaged(
            &version_stmt,
            st::GET_SCHEMA_VERSION.bind(vec![("component", st::text(schema::COMPONENT))]),
        )
        .await
        .map_err(|e| errors::execution(st::GET_SCHEMA_VERSION.name, e))?;
    let current = match result_rows(st::GET_SCHEMA_VERSION.name, result)?.first() {
        Some(row) => match row.first() {
            Some(Some(CqlValue::Int(v))) => *v,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "{ks}.schema_version holds {other:?}"
                )));
            }
        },
        None => 0,
    };
    if current > SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "keyspace {ks} has schema version {current}, newer than this build's {SCHEMA_VERSION}"
        )));
    }
    for (done, step) in schema::MIGRATIONS.iter().enumerate().skip(current as usize) {
        for statement in step.iter() {
            ddl(session, schema::in_keyspace(statement, ks)).await?;
        }
        tracing::info!(keyspace = %ks, version = done + 1, "applied schema step");
    }
    Ok(current)
}

async fn record_schema_version(session: &Session, ks: &str) -> Result<(), StoreError> {
    let put = prepare(session, ks, &st::PUT_SCHEMA_VERSION).await?;
    session
        .execute_unpaged(
            &put,
            st::PUT_SCHEMA_VERSION.bind(vec![
                ("component", st::text(schema::COMPONENT)),
                ("version", st::int(SCHEMA_VERSION)),
                ("updated_at_ms", st::big(now_ms())),
            ]),
        )
        .await
        .map_err(|e| errors::execution(st::PUT_SCHEMA_VERSION.name, e))?;
    Ok(())
}

async fn prepare(
    session: &Session,
    keyspace: &str,
    statement: &Statement,
) -> Result<PreparedStatement, StoreError> {
    let cql = schema::in_keyspace(statement.cql, keyspace);
    let mut prepared = session
        .prepare(cql)
        .await
        .map_err(|e| errors::prepare(statement.name, e))?;
    match statement.kind {
        Kind::Read | Kind::Write => {
            prepared.set_consistency(Consistency::LocalQuorum);
            prepared.set_is_idempotent(true);
        }
        Kind::SerialRead => {
            prepared.set_consistency(Consistency::LocalSerial);
            prepared.set_is_idempotent(true);
        }
        Kind::Lwt => {
            prepared.set_consistency(Consistency::LocalQuorum);
            prepared.set_serial_consistency(Some(SerialConsistency::LocalSerial));
            prepared.set_is_idempotent(false);
        }
    }
    Ok(prepared)
}

fn advance_statement(status: MessageStatus) -> Option<&'static Statement> {
    match status {
        MessageStatus::Queued => None,
        MessageStatus::Sent => Some(&st::ADVANCE_SENT),
        MessageStatus::Delivered => Some(&st::ADVANCE_DELIVERED),
        MessageStatus::Read => Some(&st::ADVANCE_READ),
        MessageStatus::Failed => Some(&st::ADVANCE_FAILED),
    }
}

/// `message` moved to `status` at `at_ms` (with `error` when given), as the advance
/// statement writes it.
fn advanced(
    mut message: MessageRecord,
    status: MessageStatus,
    at_ms: i64,
    error: Option<&str>,
) -> MessageRecord {
    message.status = status;
    match status {
        MessageStatus::Queued => {}
        MessageStatus::Sent => message.sent_at_ms = Some(at_ms),
        MessageStatus::Delivered => message.delivered_at_ms = Some(at_ms),
        MessageStatus::Read => message.read_at_ms = Some(at_ms),
        MessageStatus::Failed => message.failed_at_ms = Some(at_ms),
    }
    if let Some(error) = error {
        message.error = Some(error.to_owned());
    }
    message
}

fn is_queued_outbound(message: &MessageRecord) -> bool {
    message.status == MessageStatus::Queued && message.direction == Direction::Outbound
}

/// The values of [`st::INSERT_MESSAGE`] for a message.
fn message_values(m: &MessageRecord) -> Vec<Bound> {
    st::INSERT_MESSAGE.bind(vec![
        ("device_id", st::text(&m.device_id)),
        ("row_id", st::text(&m.id)),
        ("direction", st::text(m.direction.as_str())),
        ("peer_phone", st::text(&m.peer_phone)),
        ("text", st::text(&m.text)),
        ("status", st::text(m.status.as_str())),
        ("error", st::opt_text(m.error.as_deref())),
        (
            "idempotency_key",
            st::opt_text(m.idempotency_key.as_deref()),
        ),
        ("created_at_ms", st::big(m.created_at_ms)),
        ("not_before_ms", st::opt_big(m.not_before_ms)),
        ("sent_at_ms", st::opt_big(m.sent_at_ms)),
        ("delivered_at_ms", st::opt_big(m.delivered_at_ms)),
        ("read_at_ms", st::opt_big(m.read_at_ms)),
        ("failed_at_ms", st::opt_big(m.failed_at_ms)),
    ])
}

/// How a lease slot is written back: created (it had no row) or compared-and-set
/// against the slot as read.
fn lease_write(
    before: &LeaseSlot,
    existed: bool,
    after: &LeaseSlot,
) -> Result<(&'static Statement, Vec<Bound>), StoreError> {
    let shard = st::big(i64::from(after.shard));
    let holder = st::text(after.holder.as_deref().unwrap_or(""));
    let epoch = st::big(i64_of(after.epoch, "lease epoch")?);
    let expires = st::big(after.expires_at_ms);
    if !existed {
        let s = &st::INSERT_LEASE;
        return Ok((
            s,
            s.bind(vec![
                ("shard", shard),
                ("holder", holder),
                ("epoch", epoch),
                ("expires_at_ms", expires),
            ]),
        ));
    }
    let s = &st::UPDATE_LEASE;
    Ok((
        s,
        s.bind(vec![
            ("holder", holder),
            ("epoch", epoch),
            ("expires_at_ms", expires),
            ("shard", shard),
            (
                "if_holder",
                st::text(before.holder.as_deref().unwrap_or("")),
            ),
            ("if_epoch", st::big(i64_of(before.epoch, "lease epoch")?)),
            ("if_expires_at_ms", st::big(before.expires_at_ms)),
        ]),
    ))
}

impl ScyllaStore {
    /// Applies a lease rule to one shard: read at LOCAL_SERIAL, decide, write back
    /// with a compare-and-set on the slot as read, again if someone else wrote first.
    async fn apply_to_slot<T>(
        &self,
        shard: u32,
        rule: impl Fn(&mut LeaseSlot) -> (T, bool),
    ) -> Result<T, StoreError> {
        for _ in 0..CAS_ATTEMPTS {
            let (before, existed) = self.lease_slot(shard).await?;
            let mut after = before.clone();
            let (answer, changed) = rule(&mut after);
            if !changed {
                return Ok(answer);
            }
            let (statement, values) = lease_write(&before, existed, &after)?;
            if self.lwt(statement, values).await? {
                return Ok(answer);
            }
        }
        Err(contention(&format!("lease of shard {shard}")))
    }

    /// The message as stored, at LOCAL_SERIAL when `serial`.
    async fn message(
        &self,
        device_id: &str,
        message_id: &str,
        serial: bool,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let s = if serial {
            &st::SELECT_MESSAGE_SERIAL
        } else {
            &st::SELECT_MESSAGE
        };
        let row = self
            .first(
                s,
                s.bind(vec![
                    ("device_id", st::text(device_id)),
                    ("row_id", st::text(message_id)),
                ]),
            )
            .await?;
        row.map(|r| rows::message(&r)).transpose()
    }

    /// Records the message's send slot for [`Store::outbound_slots`]; a queued message
    /// without one (it gets one when its device drains it) has no slot row.
    async fn put_slot(&self, m: &MessageRecord) -> Result<(), StoreError> {
        if m.status == MessageStatus::Queued && m.not_before_ms.is_none() {
            let s = &st::SLOT_DELETE;
            return self
                .execute(
                    s,
                    s.bind(vec![
                        ("device_id", st::text(&m.device_id)),
                        ("created_at_ms", st::big(m.created_at_ms)),
                        ("message_id", st::text(&m.id)),
                    ]),
                )
                .await
                .map(drop);
        }
        let s = &st::SLOT_PUT;
        self.execute(
            s,
            s.bind(vec![
                ("device_id", st::text(&m.device_id)),
                ("created_at_ms", st::big(m.created_at_ms)),
                ("message_id", st::text(&m.id)),
                (
                    "slot_ms",
                    st::big(m.not_before_ms.unwrap_or(m.created_at_ms)),
                ),
            ]),
        )
        .await
        .map(drop)
    }

    async fn outbox(&self, m: &MessageRecord, present: bool) -> Result<(), StoreError> {
        self.outbox_entry(&m.device_id, m.created_at_ms, &m.id, present)
            .await
    }

    async fn outbox_entry(
        &self,
        device_id: &str,
        created_at_ms: i64,
        message_id: &str,
        present: bool,
    ) -> Result<(), StoreError> {
        let s = if present {
            &st::OUTBOX_ADD
        } else {
            &st::OUTBOX_REMOVE
        };
        self.execute(
            s,
            s.bind(vec![
                ("device_id", st::text(device_id)),
                ("created_at_ms", st::big(created_at_ms)),
                ("message_id", st::text(message_id)),
            ]),
        )
        .await
        .map(drop)
    }

    /// What an insert that did not apply ran into: the key's message, or the id.
    async fn refused_insert(&self, m: &MessageRecord) -> Result<InsertOutcome, StoreError> {
        if let Some(key) = &m.idempotency_key {
            let s = &st::SELECT_KEY_SERIAL;
            let holder = self
                .first(
                    s,
                    s.bind(vec![
                        ("device_id", st::text(&m.device_id)),
                        ("row_id", st::text(key)),
                    ]),
                )
                .await?;
            if let Some(row) = holder {
                let message_id = rows::text(&row, 0, "idempotency key's message id")?;
                return match self.message(&m.device_id, &message_id, true).await? {
                    Some(existing) => Ok(InsertOutcome::Existing(existing)),
                    None => Err(StoreError::Corrupt(format!(
                        "idempotency key {key} of device {} names message {message_id}, \
                         which does not exist",
                        m.device_id
                    ))),
                };
            }
        }
        Err(StoreError::Conflict {
            what: format!("message {} of device {}", m.id, m.device_id),
        })
    }
}

#[async_trait]
impl Store for ScyllaStore {
    async fn create_device(&self, d: &DeviceRecord) -> Result<(), StoreError> {
        // Indexed before and after: whatever interleaves with a delete of the same id,
        // a device that exists is listed (see `delete_device`).
        self.index_device(&d.id, true).await?;
        if d.desired_running {
            self.put_shard_entry(&d.id, true).await?;
        }
        let s = &st::INSERT_DEVICE;
        let values = s.bind(vec![
            ("device_id", st::text(&d.id)),
            ("name", st::text(&d.name)),
            ("tenant", st::text(&d.tenant)),
            ("status", st::text(d.status.as_str())),
            ("status_reason", st::opt_text(d.status_reason.as_deref())),
            ("trust_level", st::text(d.trust_level.as_str())),
            ("phone", st::opt_text(d.phone.as_deref())),
            ("webhook", st::opt_text(d.webhook.as_deref())),
            ("desired_running", st::boolean(d.desired_running)),
            ("created_at_ms", st::big(d.created_at_ms)),
            ("updated_at_ms", st::big(d.updated_at_ms)),
            ("last_connected_at_ms", st::opt_big(d.last_connected_at_ms)),
        ]);
        if !self.lwt(s, values).await? {
            return Err(StoreError::Conflict {
                what: format!("device {}", d.id),
            });
        }
        self.index_device(&d.id, true).await?;
        self.set_shard_entry(&d.id, d.desired_running).await
    }

    async fn get_device(&self, id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        Ok(self.device_state(id, false).await?.map(|s| s.device))
    }

    async fn patch_device(
        &self,
        id: &str,
        patch: &DevicePatch,
        now_ms: i64,
        fence: Option<&Fence>,
    ) -> Result<DeviceRecord, StoreError> {
        let p = patch.clone();
        if p.desired_running == Some(true) {
            // Before the row as well (module docs, "Devices by shard").
            self.put_shard_entry(id, true).await?;
        }
        let patched = self
            .device_cas(id, fence, |state, fence_epoch| {
                let Some(state) = state else {
                    return Err(device_not_found(id));
                };
                let mut after = state.device.clone();
                apply_patch(&mut after, &p, now_ms);
                let s = &st::PATCH_DEVICE;
                let values = s.bind(vec![
                    ("name", st::set_or_unset(p.name.as_deref(), st::text)),
                    (
                        "status",
                        st::set_or_unset(p.status, |v| st::text(v.as_str())),
                    ),
                    (
                        "status_reason",
                        st::set_or_unset(p.status_reason.as_ref(), |v| st::opt_text(v.as_deref())),
                    ),
                    (
                        "trust_level",
                        st::set_or_unset(p.trust_level, |v| st::text(v.as_str())),
                    ),
                    (
                        "phone",
                        st::set_or_unset(p.phone.as_ref(), |v| st::opt_text(v.as_deref())),
                    ),
                    (
                        "webhook",
                        st::set_or_unset(p.webhook.as_ref(), |v| st::opt_text(v.as_deref())),
                    ),
                    (
                        "desired_running",
                        st::set_or_unset(p.desired_running, st::boolean),
                    ),
                    (
                        "last_connected_at_ms",
                        st::set_or_unset(p.last_connected_at_ms, st::opt_big),
                    ),
                    ("updated_at_ms", st::big(now_ms)),
                    ("version", st::big(state.version + 1)),
                    ("fence_epoch", st::big(i64_of(fence_epoch, "fence epoch")?)),
                    ("device_id", st::text(id)),
                    ("if_version", st::big(state.version)),
                ]);
                Ok(DevicePlan::Write(vec![(s, values)], after))
            })
            .await?;
        if let Some(desired_running) = p.desired_running {
            self.set_shard_entry(id, desired_running).await?;
        }
        Ok(patched)
    }

    async fn list_devices(&self, query: &DeviceQuery) -> Result<DevicePage, StoreError> {
        if query.limit == 0 {
            return Ok(DevicePage {
                devices: Vec::new(),
                next_after: None,
            });
        }
        let limit = query.limit as usize;
        let mut after = query.after.clone().unwrap_or_default();
        let mut devices = Vec::new();
        // Each round reads the next ids of the index; it ends when the page is full or
        // the index is exhausted, and `after` only grows, so it terminates.
        while devices.len() <= limit {
            let ids = self.device_ids_after(&after).await?;
            let Some(last) = ids.last() else { break };
            after = last.clone();
            let fetched = join_all(ids.iter().map(|id| self.device_state(id, false))).await;
            for state in fetched {
                // An indexed id without a device: a create that did not finish or a
                // delete in progress; skipped.
                let Some(state) = state? else { continue };
                let d = state.device;
                let wanted = query.status.is_none_or(|s| s == d.status)
                    && query.desired_running.is_none_or(|r| r == d.desired_running);
                if wanted {
                    devices.push(d);
                }
            }
            if ids.len() < LIST_CHUNK as usize {
                break;
            }
        }
        let next_after = if devices.len() > limit {
            devices.truncate(limit);
            devices.last().map(|d| d.id.clone())
        } else {
            None
        };
        Ok(DevicePage {
            devices,
            next_after,
        })
    }

    async fn wanted_devices_in_shards(&self, shards: &[u32]) -> Result<Vec<DeviceId>, StoreError> {
        let shards: BTreeSet<u32> = shards
            .iter()
            .copied()
            .filter(|shard| *shard < self.shards)
            .collect();
        let mut candidates = Vec::new();
        let mut entries = stream::iter(shards)
            .map(|shard| self.shard_candidates(shard))
            .buffer_unordered(SHARD_READS);
        while let Some(ids) = entries.next().await {
            candidates.extend(ids?);
        }
        // An entry may say true for a row that says false or is gone: the rows decide.
        let mut wanted = Vec::with_capacity(candidates.len());
        let mut checked = stream::iter(candidates)
            .map(|id| async move {
                let state = self.device_state(&id, false).await?;
                let running = state.is_some_and(|s| s.device.desired_running);
                Ok::<_, StoreError>(running.then_some(id))
            })
            .buffer_unordered(SHARD_READS);
        while let Some(id) = checked.next().await {
            wanted.extend(id?);
        }
        wanted.sort_unstable();
        wanted.dedup();
        Ok(wanted)
    }

    fn shards(&self) -> u32 {
        self.shards
    }

    async fn count_devices_by_status(&self) -> Result<Vec<(DeviceStatus, u64)>, StoreError> {
        let mut counts: HashMap<DeviceStatus, u64> = HashMap::new();
        let mut bad = None;
        self.each_row(&st::DEVICE_STATUSES, Vec::new(), |row| {
            // A partition without a device row (status null) is not a device.
            if let Some(status) = rows::opt_text(&row, 1, "device status")? {
                match DeviceStatus::parse(&status) {
                    Some(status) => *counts.entry(status).or_default() += 1,
                    None => bad = Some(status),
                }
            }
            Ok(bad.is_none())
        })
        .await?;
        if let Some(status) = bad {
            return Err(StoreError::Corrupt(format!(
                "unknown device status {status:?}"
            )));
        }
        let mut counts: Vec<(DeviceStatus, u64)> = counts.into_iter().collect();
        counts.sort_by_key(|(status, _)| *status);
        Ok(counts)
    }

    async fn delete_device(&self, id: &str) -> Result<bool, StoreError> {
        let deleted = self
            .device_cas(id, None, |state, _| {
                let Some(state) = state else {
                    return Ok(DevicePlan::Done(false));
                };
                let s = &st::DELETE_DEVICE;
                let values = s.bind(vec![
                    ("device_id", st::text(id)),
                    ("if_version", st::big(state.version)),
                ]);
                Ok(DevicePlan::Write(vec![(s, values)], true))
            })
            .await?;
        if !deleted {
            return Ok(false);
        }
        for s in [&st::DELETE_MESSAGES, &st::DELETE_OUTBOX, &st::DELETE_SLOTS] {
            self.execute(s, s.bind(vec![("device_id", st::text(id))]))
                .await?;
        }
        self.index_device(id, false).await?;
        self.delete_shard_entry(id).await?;
        // A create of the same id may have run meanwhile: keep it listed.
        if let Some(state) = self.device_state(id, true).await? {
            self.index_device(id, true).await?;
            self.set_shard_entry(id, state.device.desired_running)
                .await?;
        }
        Ok(true)
    }

    async fn put_link_state(
        &self,
        device_id: &str,
        namespace: &str,
        key: &str,
        value: &SealedBlob,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        self.device_cas(device_id, fence, |state, fence_epoch| {
            let Some(state) = state else {
                return Err(device_not_found(device_id));
            };
            let s = &st::PUT_LINK_STATE;
            let values = s.bind(vec![
                ("key_version", st::big(i64::from(value.key_version))),
                ("value", st::blob(&value.bytes)),
                ("version", st::big(state.version + 1)),
                ("fence_epoch", st::big(i64_of(fence_epoch, "fence epoch")?)),
                ("device_id", st::text(device_id)),
                ("namespace", st::text(namespace)),
                ("key", st::text(key)),
                ("if_version", st::big(state.version)),
            ]);
            Ok(DevicePlan::Write(vec![(s, values)], ()))
        })
        .await
    }

    async fn get_link_state(
        &self,
        device_id: &str,
        namespace: &str,
        key: &str,
    ) -> Result<Option<SealedBlob>, StoreError> {
        let s = &st::SELECT_LINK_STATE;
        let row = self
            .first(
                s,
                s.bind(vec![
                    ("device_id", st::text(device_id)),
                    ("namespace", st::text(namespace)),
                    ("key", st::text(key)),
                ]),
            )
            .await?;
        match row {
            Some(row) => rows::blob(&row, 0),
            None => Ok(None),
        }
    }

    async fn list_link_state(
        &self,
        device_id: &str,
        namespace: &str,
    ) -> Result<Vec<(String, SealedBlob)>, StoreError> {
        let s = &st::LIST_LINK_STATE;
        let mut out = Vec::new();
        self.each_row(
            s,
            s.bind(vec![
                ("device_id", st::text(device_id)),
                ("namespace", st::text(namespace)),
            ]),
            |row| {
                if let Some(blob) = rows::blob(&row, 1)? {
                    out.push((rows::text(&row, 0, "link state key")?, blob));
                }
                Ok(true)
            },
        )
        .await?;
        Ok(out)
    }

    async fn delete_link_state(
        &self,
        device_id: &str,
        namespace: &str,
        key: &str,
        fence: Option<&Fence>,
    ) -> Result<bool, StoreError> {
        self.check_lease(fence).await?;
        for _ in 0..CAS_ATTEMPTS {
            let Some(state) = self.device_state(device_id, true).await? else {
                return Ok(false);
            };
            let fence_epoch = match fence {
                Some(fence) => device_admits(fence, state.fence_epoch)?,
                None => state.fence_epoch,
            };
            let row_key = vec![
                ("device_id", st::text(device_id)),
                ("namespace", st::text(namespace)),
                ("key", st::text(key)),
            ];
            let s = &st::SELECT_LINK_STATE_SERIAL;
            let present = match self.first(s, s.bind(row_key.clone())).await? {
                Some(row) => rows::blob(&row, 0)?.is_some(),
                None => false,
            };
            if !present {
                return Ok(false);
            }
            let parts = vec![
                (&st::DELETE_LINK_STATE, st::DELETE_LINK_STATE.bind(row_key)),
                bump(device_id, &state, fence_epoch)?,
            ];
            if self.lwt_batch(parts).await? {
                return Ok(true);
            }
        }
        Err(contention(device_id))
    }

    async fn clear_link_state(
        &self,
        device_id: &str,
        fence: Option<&Fence>,
    ) -> Result<u64, StoreError> {
        self.check_lease(fence).await?;
        for _ in 0..CAS_ATTEMPTS {
            let s = &st::LINK_STATE_KEYS_SERIAL;
            let found = self
                .rows(s, s.bind(vec![("device_id", st::text(device_id))]))
                .await?;
            let Some(first) = found.first() else {
                return Ok(0);
            };
            let Some(version) = rows::opt_big(first, 2, "device version")? else {
                return Ok(0);
            };
            let device_fence = rows::unsigned(first, 3, "device fence epoch")?;
            let fence_epoch = match fence {
                Some(fence) => device_admits(fence, device_fence)?,
                None => device_fence,
            };
            let mut parts = Vec::new();
            for row in &found {
                let (Some(namespace), Some(key)) = (
                    rows::opt_text(row, 0, "link state namespace")?,
                    rows::opt_text(row, 1, "link state key")?,
                ) else {
                    continue;
                };
                let d = &st::DELETE_LINK_STATE;
                parts.push((
                    d,
                    d.bind(vec![
                        ("device_id", st::text(device_id)),
                        ("namespace", st::text(&namespace)),
                        ("key", st::text(&key)),
                    ]),
                ));
            }
            if parts.is_empty() {
                return Ok(0);
            }
            let count = parts.len() as u64;
            let state_version = DeviceVersion {
                version,
                fence_epoch: device_fence,
            };
            parts.push(bump_version(device_id, state_version, fence_epoch)?);
            if self.lwt_batch(parts).await? {
                return Ok(count);
            }
        }
        Err(contention(device_id))
    }

    async fn insert_message(&self, m: &MessageRecord) -> Result<InsertOutcome, StoreError> {
        if self.device_state(&m.device_id, false).await?.is_none() {
            return Err(device_not_found(&m.device_id));
        }
        let queued = is_queued_outbound(m);
        if queued {
            // Before the message, so a queued message always has its entry.
            self.outbox(m, true).await?;
        }
        let applied = match &m.idempotency_key {
            Some(key) => {
                let claim = &st::CLAIM_KEY;
                let parts = vec![
                    (
                        claim,
                        claim.bind(vec![
                            ("device_id", st::text(&m.device_id)),
                            ("row_id", st::text(key)),
                            ("message_id", st::text(&m.id)),
                        ]),
                    ),
                    (&st::INSERT_MESSAGE, message_values(m)),
                ];
                self.lwt_batch(parts).await?
            }
            None => self.lwt(&st::INSERT_MESSAGE, message_values(m)).await?,
        };
        if !applied {
            return self.refused_insert(m).await;
        }
        if m.direction == Direction::Outbound {
            self.put_slot(m).await?;
        }
        Ok(InsertOutcome::Inserted)
    }

    async fn get_message(
        &self,
        device_id: &str,
        message_id: &str,
    ) -> Result<Option<MessageRecord>, StoreError> {
        self.message(device_id, message_id, false).await
    }

    async fn advance_message(
        &self,
        device_id: &str,
        message_id: &str,
        status: MessageStatus,
        at_ms: i64,
        error: Option<&str>,
    ) -> Result<Option<MessageRecord>, StoreError> {
        for _ in 0..CAS_ATTEMPTS {
            let Some(current) = self.message(device_id, message_id, true).await? else {
                return Ok(None);
            };
            let Some(s) =
                advance_statement(status).filter(|_| current.status.may_advance_to(status))
            else {
                return Ok(Some(current));
            };
            let values = s.bind(vec![
                ("status", st::text(status.as_str())),
                (s.binds[1], st::big(at_ms)),
                ("error", st::set_or_unset(error, st::text)),
                ("device_id", st::text(device_id)),
                ("row_id", st::text(message_id)),
                ("if_status", st::text(current.status.as_str())),
            ]);
            if self.lwt(s, values).await? {
                if is_queued_outbound(&current) {
                    self.outbox(&current, false).await?;
                }
                return Ok(Some(advanced(current, status, at_ms, error)));
            }
        }
        Err(contention(message_id))
    }

    async fn queued_messages(
        &self,
        device_id: &str,
        limit: u32,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        // The entries in queue order (a device's queue is what its rate limits hold
        // back: small), each checked against its message.
        let s = &st::OUTBOX_LIST;
        let mut entries: Vec<(i64, String)> = Vec::new();
        self.each_row(s, s.bind(vec![("device_id", st::text(device_id))]), |row| {
            entries.push((
                rows::big(&row, 0, "outbox created_at_ms")?,
                rows::text(&row, 1, "outbox message id")?,
            ));
            Ok(true)
        })
        .await?;
        let mut out = Vec::new();
        for (created_at_ms, message_id) in entries {
            if out.len() >= limit as usize {
                break;
            }
            match self.message(device_id, &message_id, false).await? {
                Some(m) if is_queued_outbound(&m) && m.created_at_ms == created_at_ms => {
                    out.push(m);
                }
                // Left behind by a crash or a refused insert: not queued.
                _ => {
                    self.outbox_entry(device_id, created_at_ms, &message_id, false)
                        .await?
                }
            }
        }
        Ok(out)
    }

    async fn devices_with_queued(&self, limit: u32) -> Result<Vec<String>, StoreError> {
        let mut candidates = Vec::new();
        self.each_row(&st::OUTBOX_DEVICES, Vec::new(), |row| {
            candidates.push(rows::text(&row, 0, "outbox device id")?);
            Ok(true)
        })
        .await?;
        let mut out = Vec::new();
        for device_id in candidates {
            if out.len() >= limit as usize {
                break;
            }
            if !self.queued_messages(&device_id, 1).await?.is_empty() {
                out.push(device_id);
            }
        }
        Ok(out)
    }

    async fn reschedule_message(
        &self,
        device_id: &str,
        message_id: &str,
        not_before_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        let Some(current) = self.message(device_id, message_id, false).await? else {
            return Ok(false);
        };
        let s = &st::RESCHEDULE_MESSAGE;
        let values = s.bind(vec![
            ("not_before_ms", st::opt_big(not_before_ms)),
            ("device_id", st::text(device_id)),
            ("row_id", st::text(message_id)),
        ]);
        if !self.lwt(s, values).await? {
            return Ok(false);
        }
        self.put_slot(&MessageRecord {
            not_before_ms,
            ..current
        })
        .await?;
        Ok(true)
    }

    async fn outbound_slots(
        &self,
        device_id: &str,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<i64>, StoreError> {
        let s = &st::SLOTS_SINCE;
        let mut slots = Vec::new();
        self.each_row(
            s,
            s.bind(vec![
                ("device_id", st::text(device_id)),
                ("created_at_ms", st::big(since_ms)),
            ]),
            |row| {
                slots.push(rows::big(&row, 0, "slot")?);
                Ok(true)
            },
        )
        .await?;
        slots.sort_unstable();
        slots.truncate(limit as usize);
        Ok(slots)
    }

    async fn get_setting(&self, key: &str) -> Result<Option<Setting>, StoreError> {
        let s = &st::GET_SETTING;
        let row = self.first(s, s.bind(vec![("key", st::text(key))])).await?;
        row.map(|row| {
            Ok(Setting {
                value: rows::text(&row, 0, "setting value")?,
                updated_at_ms: rows::big(&row, 1, "setting time")?,
            })
        })
        .transpose()
    }

    async fn put_setting(&self, key: &str, value: &str, now_ms: i64) -> Result<(), StoreError> {
        let s = &st::PUT_SETTING;
        self.execute(
            s,
            s.bind(vec![
                ("key", st::text(key)),
                ("value", st::text(value)),
                ("updated_at_ms", st::big(now_ms)),
            ]),
        )
        .await
        .map(drop)
    }

    async fn acquire_leases(
        &self,
        holder: &str,
        shards: &[u32],
        now_ms: i64,
        ttl_ms: u64,
    ) -> Result<Vec<Acquired>, StoreError> {
        join_all(shards.iter().map(|&shard| {
            self.apply_to_slot(shard, |slot| {
                let outcome = slot.acquire(holder, now_ms, ttl_ms);
                let granted = outcome.granted().is_some();
                (outcome, granted)
            })
        }))
        .await
        .into_iter()
        .collect()
    }

    async fn renew_leases(
        &self,
        holder: &str,
        leases: &[Fence],
        now_ms: i64,
        ttl_ms: u64,
    ) -> Result<Vec<bool>, StoreError> {
        join_all(leases.iter().map(|fence| {
            self.apply_to_slot(fence.shard, |slot| {
                let renewed = slot.renew(holder, fence.epoch, now_ms, ttl_ms);
                (renewed, renewed)
            })
        }))
        .await
        .into_iter()
        .collect()
    }

    async fn release_leases(
        &self,
        holder: &str,
        leases: &[Fence],
    ) -> Result<Vec<bool>, StoreError> {
        join_all(leases.iter().map(|fence| {
            self.apply_to_slot(fence.shard, |slot| {
                let released = slot.release(holder, fence.epoch);
                (released, released)
            })
        }))
        .await
        .into_iter()
        .collect()
    }

    async fn get_lease(&self, shard: u32) -> Result<Option<Lease>, StoreError> {
        Ok(self.lease_slot(shard).await?.0.lease())
    }

    async fn list_leases(&self, holder: Option<&str>) -> Result<Vec<Lease>, StoreError> {
        let mut leases = Vec::new();
        self.each_row(&st::LIST_LEASES, Vec::new(), |row| {
            let shard = rows::shard(&row, 0)?;
            if let Some(lease) = rows::lease_slot(shard, &row[1..])?.lease()
                && holder.is_none_or(|h| h == lease.holder)
            {
                leases.push(lease);
            }
            Ok(true)
        })
        .await?;
        leases.sort_by_key(|lease| lease.shard);
        Ok(leases)
    }
}

/// The partition's write counter and fence, as read before a conditional batch.
#[derive(Debug, Clone, Copy)]
struct DeviceVersion {
    version: i64,
    fence_epoch: u64,
}

/// The condition of a batch on a device partition: bumps `version` if unchanged.
fn bump(
    device_id: &str,
    state: &DeviceState,
    fence_epoch: u64,
) -> Result<(&'static Statement, Vec<Bound>), StoreError> {
    bump_version(
        device_id,
        DeviceVersion {
            version: state.version,
            fence_epoch: state.fence_epoch,
        },
        fence_epoch,
    )
}

fn bump_version(
    device_id: &str,
    seen: DeviceVersion,
    fence_epoch: u64,
) -> Result<(&'static Statement, Vec<Bound>), StoreError> {
    debug_assert!(fence_epoch >= seen.fence_epoch);
    let s = &st::BUMP_DEVICE;
    Ok((
        s,
        s.bind(vec![
            ("version", st::big(seen.version + 1)),
            ("fence_epoch", st::big(i64_of(fence_epoch, "fence epoch")?)),
            ("device_id", st::text(device_id)),
            ("if_version", st::big(seen.version)),
        ]),
    ))
}

/// The row a patch leaves (what [`st::PATCH_DEVICE`] writes).
fn apply_patch(d: &mut DeviceRecord, p: &DevicePatch, now_ms: i64) {
    if let Some(name) = &p.name {
        d.name = name.clone();
    }
    if let Some(status) = p.status {
        d.status = status;
    }
    if let Some(reason) = &p.status_reason {
        d.status_reason = reason.clone();
    }
    if let Some(level) = p.trust_level {
        d.trust_level = level;
    }
    if let Some(phone) = &p.phone {
        d.phone = phone.clone();
    }
    if let Some(webhook) = &p.webhook {
        d.webhook = webhook.clone();
    }
    if let Some(desired) = p.desired_running {
        d.desired_running = desired;
    }
    if let Some(at) = p.last_connected_at_ms {
        d.last_connected_at_ms = at;
    }
    d.updated_at_ms = now_ms;
}

#[cfg(test)]
mod tests {
    use scylla::value::MaybeUnset;

    use super::*;

    fn slot(holder: Option<&str>, epoch: u64) -> LeaseSlot {
        LeaseSlot {
            shard: 9,
            holder: holder.map(str::to_owned),
            epoch,
            expires_at_ms: 1_000,
        }
    }

    #[test]
    fn the_lease_check_refuses_other_epochs_and_free_shards() {
        let fence = Fence { shard: 9, epoch: 2 };
        assert!(lease_admits(&slot(Some("a"), 2), &fence).is_ok());
        for (held, current) in [(slot(Some("a"), 3), Some(3)), (slot(None, 2), None)] {
            match lease_admits(&held, &fence) {
                Err(StoreError::Fenced {
                    shard: 9,
                    epoch: 2,
                    current: got,
                }) => assert_eq!(got, current),
                other => panic!("expected Fenced, got {other:?}"),
            }
        }
    }

    #[test]
    fn the_device_fence_only_rises() {
        let fence = Fence { shard: 9, epoch: 2 };
        assert_eq!(device_admits(&fence, 0).ok(), Some(2));
        assert_eq!(device_admits(&fence, 2).ok(), Some(2));
        assert!(matches!(
            device_admits(&fence, 3),
            Err(StoreError::Fenced {
                current: Some(3),
                ..
            })
        ));
    }

    #[test]
    fn lease_writes_create_a_missing_row_and_compare_the_whole_slot_otherwise() {
        let vacant = LeaseSlot::vacant(9);
        let mut granted = vacant.clone();
        granted.acquire("a", 0, 10);
        let (statement, values) = lease_write(&vacant, false, &granted).expect("write");
        assert_eq!(statement.name, "insert_lease");
        assert_eq!(values.len(), 4);

        let mut released = granted.clone();
        assert!(released.release("a", 1));
        let (statement, values) = lease_write(&granted, true, &released).expect("write");
        assert_eq!(statement.name, "update_lease");
        let text = |v: &Bound| match v {
            MaybeUnset::Set(Some(CqlValue::Text(s))) => s.clone(),
            other => panic!("not text: {other:?}"),
        };
        assert_eq!(text(&values[0]), "", "a released slot stores holder ''");
        assert_eq!(text(&values[4]), "a", "the condition is the slot as read");
        assert!(matches!(
            values[5],
            MaybeUnset::Set(Some(CqlValue::BigInt(1)))
        ));
    }

    #[test]
    fn applied_is_read_by_name() {
        let names = vec!["[applied]".to_owned(), "version".to_owned()];
        let yes = [Some(CqlValue::Boolean(true)), None];
        let no = [Some(CqlValue::Boolean(false)), Some(CqlValue::BigInt(4))];
        assert!(applied_flag("s", &names, Some(&yes)).expect("flag"));
        assert!(!applied_flag("s", &names, Some(&no)).expect("flag"));
        for (names, row) in [
            (vec!["version".to_owned()], Some(&no[..])),
            (names.clone(), None),
            (names.clone(), Some(&[None][..])),
        ] {
            assert!(matches!(
                applied_flag("s", &names, row),
                Err(StoreError::Corrupt(_))
            ));
        }
    }

    #[test]
    fn an_advance_sets_the_status_its_time_and_only_a_given_error() {
        let m = MessageRecord {
            id: "m".into(),
            device_id: "d".into(),
            direction: Direction::Outbound,
            peer_phone: "+1".into(),
            text: "t".into(),
            status: MessageStatus::Failed,
            error: Some("boom".into()),
            idempotency_key: None,
            created_at_ms: 1,
            not_before_ms: None,
            sent_at_ms: None,
            delivered_at_ms: None,
            read_at_ms: None,
            failed_at_ms: Some(5),
        };
        let after = advanced(m.clone(), MessageStatus::Delivered, 9, None);
        assert_eq!(
            (after.status, after.delivered_at_ms, after.error.as_deref()),
            (MessageStatus::Delivered, Some(9), Some("boom"))
        );
        let after = advanced(m, MessageStatus::Read, 10, Some("late"));
        assert_eq!(after.error.as_deref(), Some("late"));
        assert_eq!(
            advance_statement(MessageStatus::Queued).map(|s| s.name),
            None
        );
    }

    #[test]
    fn a_patch_writes_only_its_fields() {
        let mut d = DeviceRecord {
            id: "d".into(),
            name: "n".into(),
            tenant: "t".into(),
            status: DeviceStatus::Ready,
            status_reason: Some("r".into()),
            trust_level: crate::store::TrustLevel::Newcomer,
            phone: Some("+1".into()),
            webhook: None,
            desired_running: true,
            created_at_ms: 1,
            updated_at_ms: 1,
            last_connected_at_ms: Some(3),
        };
        let before = d.clone();
        apply_patch(
            &mut d,
            &DevicePatch {
                phone: Some(None),
                ..DevicePatch::default()
            },
            7,
        );
        assert_eq!(
            d,
            DeviceRecord {
                phone: None,
                updated_at_ms: 7,
                ..before
            }
        );
    }
}
