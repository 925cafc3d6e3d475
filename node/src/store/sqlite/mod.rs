//! The embedded store: one SQLite file (WAL) in the data folder.
//!
//! Several node processes on one machine may open the same file: WAL lets readers run
//! beside the single writer, every read-modify-write is one `BEGIN IMMEDIATE`
//! transaction (so two processes cannot interleave inside it), and a busy timeout makes
//! a writer wait for the other rather than fail.
//!
//! SQLite calls block, so each [`Store`] call runs on tokio's blocking pool over one
//! connection behind a mutex; statements are prepared once and cached.
//!
//! Leases follow the rules of [`super::lease`]: a call reads the shard's slot, applies the
//! rule and writes it back inside one `BEGIN IMMEDIATE` transaction, so two processes
//! racing for a shard are serialized and exactly one wins. A fenced write checks its
//! fence in the same transaction as the write.
//!
//! The schema is a list of steps ([`SCHEMA_VERSION`] of them); `PRAGMA user_version`
//! records how many a file has had, and opening a file applies the missing ones. A step
//! whose data SQL cannot compute has a Rust part ([`backfill`]) run in the same
//! transaction.
//!
//! Each device row keeps its shard (`shard_of(id, S)`, S the store's shard count,
//! recorded in the settings by the open that created or migrated the file), indexed with
//! `desired_running`, so that a node taking shards over reads only their devices.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::{FromSql, Value};
use rusqlite::{Connection, Params, Row, TransactionBehavior, ffi, params, params_from_iter};
use wafleet_cluster_config::{ClusterSettings, shard_of};

use super::{
    Acquired, DeviceId, DevicePage, DevicePatch, DeviceQuery, DeviceRecord, DeviceStatus,
    Direction, Fence, InsertOutcome, Lease, LeaseSlot, MessageRecord, MessageStatus,
    SHARDS_SETTING, SealedBlob, Setting, Store, StoreError, TrustLevel, check_shards,
};
use crate::clock::now_ms;

/// How long a call waits for another connection's write lock before it gives up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Room for every distinct statement of this file (list queries have a few variants).
const STATEMENT_CACHE_CAPACITY: usize = 64;

/// Schema steps in order; step `n` takes a file from version `n` to `n + 1`. To change
/// the schema, append a step; never edit one that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: devices, their sealed link state, their messages.
    "CREATE TABLE devices (
        id                   TEXT    NOT NULL PRIMARY KEY,
        name                 TEXT    NOT NULL,
        tenant               TEXT    NOT NULL,
        status               TEXT    NOT NULL,
        status_reason        TEXT,
        trust_level          TEXT    NOT NULL,
        phone                TEXT,
        webhook              TEXT,
        desired_running      INTEGER NOT NULL,
        created_at_ms        INTEGER NOT NULL,
        updated_at_ms        INTEGER NOT NULL,
        last_connected_at_ms INTEGER
    ) STRICT;
    CREATE INDEX devices_by_status ON devices (status, id);
    CREATE INDEX devices_by_desired_running ON devices (desired_running, id);

    CREATE TABLE link_state (
        device_id   TEXT    NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
        namespace   TEXT    NOT NULL,
        key         TEXT    NOT NULL,
        key_version INTEGER NOT NULL,
        value       BLOB    NOT NULL,
        PRIMARY KEY (device_id, namespace, key)
    ) STRICT;

    CREATE TABLE messages (
        device_id       TEXT    NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
        id              TEXT    NOT NULL,
        direction       TEXT    NOT NULL,
        peer_phone      TEXT    NOT NULL,
        text            TEXT    NOT NULL,
        status          TEXT    NOT NULL,
        error           TEXT,
        idempotency_key TEXT,
        created_at_ms   INTEGER NOT NULL,
        not_before_ms   INTEGER,
        sent_at_ms      INTEGER,
        delivered_at_ms INTEGER,
        read_at_ms      INTEGER,
        failed_at_ms    INTEGER,
        PRIMARY KEY (device_id, id)
    ) STRICT;
    CREATE UNIQUE INDEX messages_by_idempotency_key ON messages (device_id, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX messages_queued ON messages (device_id, created_at_ms, id)
        WHERE status = 'queued' AND direction = 'outbound';",
    // 2: shard leases. A released lease keeps its row, holder NULL, so that the next
    // grant's epoch is higher than every earlier one.
    "CREATE TABLE leases (
        shard         INTEGER NOT NULL PRIMARY KEY,
        holder        TEXT,
        epoch         INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL
    ) STRICT;",
    // 3: the rate limiter's memory (outbound send slots by time) and shared settings.
    "CREATE INDEX messages_outbound_by_time ON messages (device_id, created_at_ms)
        WHERE direction = 'outbound';
    CREATE TABLE settings (
        key           TEXT    NOT NULL PRIMARY KEY,
        value         TEXT    NOT NULL,
        updated_at_ms INTEGER NOT NULL
    ) STRICT;",
    // 4: each device's shard, for recovery by shard (filled in by `backfill_shards`;
    // SQLite cannot add a NOT NULL column without a default, so a trigger refuses new
    // rows without one, such as those of a process built before this step).
    "ALTER TABLE devices ADD COLUMN shard INTEGER;
    CREATE INDEX devices_by_shard ON devices (shard, desired_running, id);
    CREATE TRIGGER devices_have_a_shard BEFORE INSERT ON devices WHEN NEW.shard IS NULL
    BEGIN
        SELECT RAISE(ABORT, 'devices.shard is required since schema version 4: \
this process is older than the store');
    END;",
];

/// The schema version from which device rows carry their shard.
const SHARD_COLUMN_VERSION: u32 = 4;

/// The schema version this build creates and understands (`PRAGMA user_version`).
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The schema of a file at `version` as that version created it (steps 1 to `version`,
/// which never change once shipped), ending by setting `user_version`: for tests of the
/// migration from an older file.
#[doc(hidden)]
pub fn schema_at_version(version: u32) -> String {
    let steps = MIGRATIONS[..version as usize].join(";\n");
    format!("{steps};\nPRAGMA user_version = {version};")
}

macro_rules! device_columns {
    () => {
        "id, name, tenant, status, status_reason, trust_level, phone, webhook, \
         desired_running, created_at_ms, updated_at_ms, last_connected_at_ms"
    };
}

macro_rules! message_columns {
    () => {
        "device_id, id, direction, peer_phone, text, status, error, idempotency_key, \
         created_at_ms, not_before_ms, sent_at_ms, delivered_at_ms, read_at_ms, failed_at_ms"
    };
}

const INSERT_DEVICE: &str = concat!(
    "INSERT INTO devices (",
    device_columns!(),
    ", shard) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
);
const SELECT_DEVICE: &str = concat!("SELECT ", device_columns!(), " FROM devices WHERE id = ?1");
/// One statement for every patch: `?2k` says whether field k is set and `?2k+1` holds
/// it (non-null columns use COALESCE, since their value is never NULL when set).
const PATCH_DEVICE: &str = concat!(
    "UPDATE devices SET
        name = COALESCE(?2, name),
        status = COALESCE(?3, status),
        status_reason = CASE WHEN ?4 THEN ?5 ELSE status_reason END,
        trust_level = COALESCE(?6, trust_level),
        phone = CASE WHEN ?7 THEN ?8 ELSE phone END,
        webhook = CASE WHEN ?9 THEN ?10 ELSE webhook END,
        desired_running = COALESCE(?11, desired_running),
        last_connected_at_ms = CASE WHEN ?12 THEN ?13 ELSE last_connected_at_ms END,
        updated_at_ms = ?14
     WHERE id = ?1
     RETURNING ",
    device_columns!()
);
/// Walks the `devices_by_shard` index (its terms, literally), in id order.
const WANTED_IN_SHARD: &str =
    "SELECT id FROM devices WHERE shard = ?1 AND desired_running = 1 ORDER BY id";
const DEVICES_WITHOUT_SHARD: &str = "SELECT id FROM devices WHERE shard IS NULL";
const SET_DEVICE_SHARD: &str = "UPDATE devices SET shard = ?2 WHERE id = ?1";
const COUNT_DEVICES_BY_STATUS: &str = "SELECT status, COUNT(*) FROM devices GROUP BY status";
const DELETE_DEVICE: &str = "DELETE FROM devices WHERE id = ?1";

const PUT_LINK_STATE: &str =
    "INSERT INTO link_state (device_id, namespace, key, key_version, value)
     VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (device_id, namespace, key)
     DO UPDATE SET key_version = excluded.key_version, value = excluded.value";
const GET_LINK_STATE: &str = "SELECT key_version, value FROM link_state
     WHERE device_id = ?1 AND namespace = ?2 AND key = ?3";
const LIST_LINK_STATE: &str = "SELECT key, key_version, value FROM link_state
     WHERE device_id = ?1 AND namespace = ?2 ORDER BY key";
const DELETE_LINK_STATE: &str =
    "DELETE FROM link_state WHERE device_id = ?1 AND namespace = ?2 AND key = ?3";
const CLEAR_LINK_STATE: &str = "DELETE FROM link_state WHERE device_id = ?1";

const SELECT_LEASE_SLOT: &str =
    "SELECT shard, holder, epoch, expires_at_ms FROM leases WHERE shard = ?1";
const UPSERT_LEASE_SLOT: &str = "INSERT INTO leases (shard, holder, epoch, expires_at_ms)
     VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (shard) DO UPDATE SET
        holder = excluded.holder, epoch = excluded.epoch, expires_at_ms = excluded.expires_at_ms";
const SELECT_LEASE: &str = "SELECT shard, holder, epoch, expires_at_ms FROM leases
     WHERE shard = ?1 AND holder IS NOT NULL";
const LIST_LEASES: &str = "SELECT shard, holder, epoch, expires_at_ms FROM leases
     WHERE holder IS NOT NULL ORDER BY shard";
const LIST_LEASES_OF: &str = "SELECT shard, holder, epoch, expires_at_ms FROM leases
     WHERE holder = ?1 ORDER BY shard";

const INSERT_MESSAGE: &str = concat!(
    "INSERT INTO messages (",
    message_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
);
const SELECT_MESSAGE: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE device_id = ?1 AND id = ?2"
);
const SELECT_MESSAGE_BY_IDEMPOTENCY_KEY: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE device_id = ?1 AND idempotency_key = ?2"
);
/// Written with the literal terms of the `messages_queued` partial index so SQLite uses it.
/// The count of [`QUEUED_MESSAGES`], on the `messages_queued` index alone.
const COUNT_QUEUED: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM messages
     WHERE device_id = ?1 AND status = 'queued' AND direction = 'outbound' LIMIT ?2)";

const QUEUED_MESSAGES: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages
     WHERE device_id = ?1 AND status = 'queued' AND direction = 'outbound'
     ORDER BY created_at_ms, id LIMIT ?2"
);

/// Uses the `messages_outbound_by_time` partial index (its terms, literally).
const OUTBOUND_SLOTS: &str = "SELECT COALESCE(not_before_ms, created_at_ms) AS slot FROM messages
     WHERE device_id = ?1 AND direction = 'outbound' AND created_at_ms >= ?2
       AND NOT (status = 'queued' AND not_before_ms IS NULL)
     ORDER BY slot LIMIT ?3";

const RESCHEDULE_MESSAGE: &str = "UPDATE messages SET not_before_ms = ?3
     WHERE device_id = ?1 AND id = ?2 AND status = 'queued' AND direction = 'outbound'";

const GET_SETTING: &str = "SELECT value, updated_at_ms FROM settings WHERE key = ?1";
const PUT_SETTING: &str = "INSERT INTO settings (key, value, updated_at_ms) VALUES (?1, ?2, ?3)
     ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at_ms = excluded.updated_at_ms";

/// Uses the `messages_queued` partial index (its terms, literally).
const DEVICES_WITH_QUEUED: &str = "SELECT DISTINCT device_id FROM messages
     WHERE status = 'queued' AND direction = 'outbound' LIMIT ?1";

/// The UPDATE that moves a message to `status`, setting that status's timestamp; `None`
/// for `queued`, which no message ever moves to.
fn advance_statement(status: MessageStatus) -> Option<&'static str> {
    macro_rules! advance {
        ($column:literal) => {
            concat!(
                "UPDATE messages SET status = ?3, ",
                $column,
                " = ?4, error = COALESCE(?5, error) WHERE device_id = ?1 AND id = ?2 RETURNING ",
                message_columns!()
            )
        };
    }
    match status {
        MessageStatus::Queued => None,
        MessageStatus::Sent => Some(advance!("sent_at_ms")),
        MessageStatus::Delivered => Some(advance!("delivered_at_ms")),
        MessageStatus::Read => Some(advance!("read_at_ms")),
        MessageStatus::Failed => Some(advance!("failed_at_ms")),
    }
}

/// The [`Store`] backed by one SQLite file.
pub struct SqliteStore {
    /// The database file, for logs and errors.
    path: PathBuf,
    /// The shard count devices are placed in (recorded in the file).
    shards: u32,
    /// The one connection; every call takes it on a blocking thread.
    conn: Arc<Mutex<Connection>>,
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
        migrate(&mut conn, path, shards)?;
        Ok(SqliteStore {
            path: path.to_owned(),
            shards,
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let task = tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave a half-done write behind:
            // an open transaction rolls back as it is dropped.
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn)
        });
        match task.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(StoreError::Unavailable(format!(
                "store call was cancelled: {e}"
            ))),
        }
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
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    // Every transaction here reads then writes: take the write lock up front, so two
    // processes never both hold a read snapshot they cannot upgrade.
    conn.set_transaction_behavior(TransactionBehavior::Immediate);
    Ok(())
}

/// Applies the missing schema steps and settles the shard count, in one transaction: a
/// file that already records its shard count is checked against `shards` before any
/// step; a file that did not have one yet (new, or older than
/// [`SHARD_COLUMN_VERSION`]) has its devices placed with `shards` and records it.
fn migrate(conn: &mut Connection, path: &Path, shards: u32) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_error)?;
    let current: u32 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(db_error)?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "{} has schema version {current}, newer than this build's {SCHEMA_VERSION}",
            path.display()
        )));
    }
    if current >= SHARD_COLUMN_VERSION {
        let recorded = query_first(&tx, GET_SETTING, [SHARDS_SETTING], |row| column(row, 0))?;
        let recorded: String = recorded.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "{} has schema version {current} but records no shard count \
                 (setting {SHARDS_SETTING:?})",
                path.display()
            ))
        })?;
        check_shards(&recorded, shards)?;
    }
    for (done, step) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = done as u32 + 1;
        tx.execute_batch(step).map_err(db_error)?;
        backfill(&tx, version, shards)?;
        tracing::info!(path = %path.display(), version, "applied schema step");
    }
    if current < SHARD_COLUMN_VERSION {
        execute(
            &tx,
            PUT_SETTING,
            params![SHARDS_SETTING, shards.to_string(), now_ms()],
        )
        .map_err(db_error)?;
    }
    if current < SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(db_error)?;
    }
    tx.commit().map_err(db_error)
}

/// The part of schema step `version` that SQL cannot do, run right after its SQL.
fn backfill(conn: &Connection, version: u32, shards: u32) -> Result<(), StoreError> {
    match version {
        SHARD_COLUMN_VERSION => backfill_shards(conn, shards),
        _ => Ok(()),
    }
}

/// Step 4: the shard of every device that has none (XXH3 is not in SQL).
fn backfill_shards(conn: &Connection, shards: u32) -> Result<(), StoreError> {
    let ids: Vec<String> = query_all(conn, DEVICES_WITHOUT_SHARD, [], |row| column(row, 0))?;
    for id in &ids {
        execute(conn, SET_DEVICE_SHARD, params![id, shard_of(id, shards)]).map_err(db_error)?;
    }
    Ok(())
}

// ---- errors ----

/// Maps a failure no caller-specific rule covered: contention and I/O are worth a
/// retry, unreadable data is not.
fn db_error(e: rusqlite::Error) -> StoreError {
    use ffi::ErrorCode;
    use rusqlite::Error as E;
    match &e {
        E::SqliteFailure(failure, _) => match failure.code {
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                StoreError::Corrupt(e.to_string())
            }
            ErrorCode::ConstraintViolation => StoreError::Conflict {
                what: e.to_string(),
            },
            _ => StoreError::Unavailable(e.to_string()),
        },
        E::FromSqlConversionFailure(..)
        | E::IntegralValueOutOfRange(..)
        | E::Utf8Error(..)
        | E::InvalidColumnType(..) => StoreError::Corrupt(e.to_string()),
        _ => StoreError::Unavailable(e.to_string()),
    }
}

fn extended_code(e: &rusqlite::Error) -> Option<i32> {
    match e {
        rusqlite::Error::SqliteFailure(failure, _) => Some(failure.extended_code),
        _ => None,
    }
}

fn is_foreign_key_violation(e: &rusqlite::Error) -> bool {
    extended_code(e) == Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY)
}

fn is_uniqueness_violation(e: &rusqlite::Error) -> bool {
    matches!(
        extended_code(e),
        Some(ffi::SQLITE_CONSTRAINT_PRIMARYKEY | ffi::SQLITE_CONSTRAINT_UNIQUE)
    )
}

fn device_not_found(device_id: &str) -> StoreError {
    StoreError::NotFound {
        what: format!("device {device_id}"),
    }
}

// ---- rows ----

fn column<T: FromSql>(row: &Row<'_>, index: usize) -> Result<T, StoreError> {
    row.get(index).map_err(db_error)
}

fn parse_column<T>(
    row: &Row<'_>,
    index: usize,
    what: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, StoreError> {
    let text: String = column(row, index)?;
    parse(&text).ok_or_else(|| StoreError::Corrupt(format!("unknown {what} {text:?}")))
}

fn device_from_row(row: &Row<'_>) -> Result<DeviceRecord, StoreError> {
    Ok(DeviceRecord {
        id: column(row, 0)?,
        name: column(row, 1)?,
        tenant: column(row, 2)?,
        status: parse_column(row, 3, "device status", DeviceStatus::parse)?,
        status_reason: column(row, 4)?,
        trust_level: parse_column(row, 5, "trust level", TrustLevel::parse)?,
        phone: column(row, 6)?,
        webhook: column(row, 7)?,
        desired_running: column(row, 8)?,
        created_at_ms: column(row, 9)?,
        updated_at_ms: column(row, 10)?,
        last_connected_at_ms: column(row, 11)?,
    })
}

fn message_from_row(row: &Row<'_>) -> Result<MessageRecord, StoreError> {
    Ok(MessageRecord {
        device_id: column(row, 0)?,
        id: column(row, 1)?,
        direction: parse_column(row, 2, "message direction", Direction::parse)?,
        peer_phone: column(row, 3)?,
        text: column(row, 4)?,
        status: parse_column(row, 5, "message status", MessageStatus::parse)?,
        error: column(row, 6)?,
        idempotency_key: column(row, 7)?,
        created_at_ms: column(row, 8)?,
        not_before_ms: column(row, 9)?,
        sent_at_ms: column(row, 10)?,
        delivered_at_ms: column(row, 11)?,
        read_at_ms: column(row, 12)?,
        failed_at_ms: column(row, 13)?,
    })
}

/// Epochs are `u64` in Rust and never above `i64::MAX` in SQLite's INTEGER.
fn epoch_column(row: &Row<'_>, index: usize) -> Result<u64, StoreError> {
    let epoch: i64 = column(row, index)?;
    u64::try_from(epoch).map_err(|_| StoreError::Corrupt(format!("negative lease epoch {epoch}")))
}

fn slot_from_row(row: &Row<'_>) -> Result<LeaseSlot, StoreError> {
    Ok(LeaseSlot {
        shard: column(row, 0)?,
        holder: column(row, 1)?,
        epoch: epoch_column(row, 2)?,
        expires_at_ms: column(row, 3)?,
    })
}

fn lease_from_row(row: &Row<'_>) -> Result<Lease, StoreError> {
    Ok(Lease {
        shard: column(row, 0)?,
        holder: column(row, 1)?,
        epoch: epoch_column(row, 2)?,
        expires_at_ms: column(row, 3)?,
    })
}

fn blob_from_row(row: &Row<'_>, first: usize) -> Result<SealedBlob, StoreError> {
    Ok(SealedBlob {
        key_version: column(row, first)?,
        bytes: column(row, first + 1)?,
    })
}

/// Runs a cached query and decodes every row.
fn query_all<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    decode: fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_error)?;
    let mut rows = stmt.query(params).map_err(db_error)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db_error)? {
        out.push(decode(row)?);
    }
    Ok(out)
}

/// Runs a cached query and decodes its first row, if any.
fn query_first<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    decode: fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_error)?;
    let mut rows = stmt.query(params).map_err(db_error)?;
    match rows.next().map_err(db_error)? {
        Some(row) => decode(row).map(Some),
        None => Ok(None),
    }
}

fn execute(conn: &Connection, sql: &str, params: impl Params) -> Result<usize, rusqlite::Error> {
    conn.prepare_cached(sql)?.execute(params)
}

// ---- leases and fences ----

/// The shard's slot as stored, or a vacant one.
fn load_slot(conn: &Connection, shard: u32) -> Result<LeaseSlot, StoreError> {
    let slot = query_first(conn, SELECT_LEASE_SLOT, [shard], slot_from_row)?;
    Ok(slot.unwrap_or_else(|| LeaseSlot::vacant(shard)))
}

fn save_slot(conn: &Connection, slot: &LeaseSlot) -> Result<(), StoreError> {
    let epoch = i64::try_from(slot.epoch)
        .map_err(|_| StoreError::Corrupt(format!("lease epoch {} out of range", slot.epoch)))?;
    execute(
        conn,
        UPSERT_LEASE_SLOT,
        params![slot.shard, slot.holder, epoch, slot.expires_at_ms],
    )
    .map_err(db_error)?;
    Ok(())
}

/// Applies `rule` to each shard's slot and saves the slots it changed, in one
/// transaction (which takes the write lock first, so no other connection can grant
/// the shard between the read and the write).
fn apply_to_slots<I, T>(
    conn: &mut Connection,
    items: &[I],
    shard_of: fn(&I) -> u32,
    rule: impl Fn(&mut LeaseSlot, &I) -> (T, bool),
) -> Result<Vec<T>, StoreError> {
    let tx = conn.transaction().map_err(db_error)?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let mut slot = load_slot(&tx, shard_of(item))?;
        let (result, changed) = rule(&mut slot, item);
        if changed {
            save_slot(&tx, &slot)?;
        }
        out.push(result);
    }
    tx.commit().map_err(db_error)?;
    Ok(out)
}

/// Refuses a write whose fence is not current. Call it inside the write's transaction.
fn check_fence(conn: &Connection, fence: Option<&Fence>) -> Result<(), StoreError> {
    let Some(fence) = fence else {
        return Ok(());
    };
    load_slot(conn, fence.shard)?
        .admits(fence)
        .map_err(|current| StoreError::Fenced {
            shard: fence.shard,
            epoch: fence.epoch,
            current,
        })
}

// ---- list query ----

/// The SELECT for one [`DeviceQuery`]: a separate statement per combination of filters
/// (each cached), so SQLite can walk an index from `after` instead of scanning.
fn list_devices_statement(query: &DeviceQuery) -> (String, Vec<Value>) {
    let mut sql = String::from(concat!("SELECT ", device_columns!(), " FROM devices"));
    let mut values = Vec::new();
    let mut conditions = Vec::new();
    if let Some(after) = &query.after {
        values.push(Value::Text(after.clone()));
        conditions.push(format!("id > ?{}", values.len()));
    }
    if let Some(status) = query.status {
        values.push(Value::Text(status.as_str().to_owned()));
        conditions.push(format!("status = ?{}", values.len()));
    }
    if let Some(desired_running) = query.desired_running {
        values.push(Value::Integer(i64::from(desired_running)));
        conditions.push(format!("desired_running = ?{}", values.len()));
    }
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    // One row more than asked, to know whether another page follows.
    values.push(Value::Integer(i64::from(query.limit) + 1));
    sql.push_str(&format!(" ORDER BY id LIMIT ?{}", values.len()));
    (sql, values)
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_device(&self, device: &DeviceRecord) -> Result<(), StoreError> {
        let d = device.clone();
        let shard = shard_of(&d.id, self.shards);
        self.with_conn(move |conn| {
            let inserted = execute(
                conn,
                INSERT_DEVICE,
                params![
                    d.id,
                    d.name,
                    d.tenant,
                    d.status.as_str(),
                    d.status_reason,
                    d.trust_level.as_str(),
                    d.phone,
                    d.webhook,
                    d.desired_running,
                    d.created_at_ms,
                    d.updated_at_ms,
                    d.last_connected_at_ms,
                    shard,
                ],
            );
            match inserted {
                Ok(_) => Ok(()),
                Err(e) if is_uniqueness_violation(&e) => Err(StoreError::Conflict {
                    what: format!("device {}", d.id),
                }),
                Err(e) => Err(db_error(e)),
            }
        })
        .await
    }

    async fn get_device(&self, id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let id = id.to_owned();
        self.with_conn(move |conn| query_first(conn, SELECT_DEVICE, [id], device_from_row))
            .await
    }

    async fn patch_device(
        &self,
        id: &str,
        patch: &DevicePatch,
        now_ms: i64,
        fence: Option<&Fence>,
    ) -> Result<DeviceRecord, StoreError> {
        let id = id.to_owned();
        let p = patch.clone();
        let fence = fence.copied();
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(db_error)?;
            check_fence(&tx, fence.as_ref())?;
            let row = query_first(
                &tx,
                PATCH_DEVICE,
                params![
                    id,
                    p.name,
                    p.status.map(DeviceStatus::as_str),
                    p.status_reason.is_some(),
                    p.status_reason.flatten(),
                    p.trust_level.map(TrustLevel::as_str),
                    p.phone.is_some(),
                    p.phone.flatten(),
                    p.webhook.is_some(),
                    p.webhook.flatten(),
                    p.desired_running,
                    p.last_connected_at_ms.is_some(),
                    p.last_connected_at_ms.flatten(),
                    now_ms,
                ],
                device_from_row,
            )?;
            let row = row.ok_or_else(|| device_not_found(&id))?;
            tx.commit().map_err(db_error)?;
            Ok(row)
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
        let (sql, values) = list_devices_statement(query);
        self.with_conn(move |conn| {
            let mut devices = query_all(conn, &sql, params_from_iter(values), device_from_row)?;
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
        })
        .await
    }

    async fn wanted_devices_in_shards(&self, shards: &[u32]) -> Result<Vec<DeviceId>, StoreError> {
        let shards: BTreeSet<u32> = shards.iter().copied().collect();
        self.with_conn(move |conn| {
            let mut ids = Vec::new();
            for shard in shards {
                ids.extend(query_all(conn, WANTED_IN_SHARD, [shard], |row| {
                    column::<String>(row, 0)
                })?);
            }
            // Each shard's ids come sorted and a device has one shard: only the merge of
            // the shards is left.
            ids.sort_unstable();
            Ok(ids)
        })
        .await
    }

    fn shards(&self) -> u32 {
        self.shards
    }

    async fn count_devices_by_status(&self) -> Result<Vec<(DeviceStatus, u64)>, StoreError> {
        self.with_conn(|conn| {
            let mut counts = query_all(conn, COUNT_DEVICES_BY_STATUS, [], |row| {
                let status = parse_column(row, 0, "device status", DeviceStatus::parse)?;
                let count: i64 = column(row, 1)?;
                Ok((status, u64::try_from(count).unwrap_or(0)))
            })?;
            counts.sort_by_key(|(status, _)| *status);
            Ok(counts)
        })
        .await
    }

    async fn delete_device(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.with_conn(move |conn| {
            let deleted = execute(conn, DELETE_DEVICE, [id]).map_err(db_error)?;
            Ok(deleted > 0)
        })
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
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(db_error)?;
            check_fence(&tx, fence.as_ref())?;
            let written = execute(
                &tx,
                PUT_LINK_STATE,
                params![device_id, namespace, key, value.key_version, value.bytes],
            );
            match written {
                Ok(_) => tx.commit().map_err(db_error),
                Err(e) if is_foreign_key_violation(&e) => Err(device_not_found(&device_id)),
                Err(e) => Err(db_error(e)),
            }
        })
        .await
    }

    async fn get_link_state(
        &self,
        device_id: &str,
        namespace: &str,
        key: &str,
    ) -> Result<Option<SealedBlob>, StoreError> {
        let params = (device_id.to_owned(), namespace.to_owned(), key.to_owned());
        self.with_conn(move |conn| {
            query_first(conn, GET_LINK_STATE, params, |row| blob_from_row(row, 0))
        })
        .await
    }

    async fn list_link_state(
        &self,
        device_id: &str,
        namespace: &str,
    ) -> Result<Vec<(String, SealedBlob)>, StoreError> {
        let params = (device_id.to_owned(), namespace.to_owned());
        self.with_conn(move |conn| {
            query_all(conn, LIST_LINK_STATE, params, |row| {
                Ok((column(row, 0)?, blob_from_row(row, 1)?))
            })
        })
        .await
    }

    async fn delete_link_state(
        &self,
        device_id: &str,
        namespace: &str,
        key: &str,
        fence: Option<&Fence>,
    ) -> Result<bool, StoreError> {
        let params = (device_id.to_owned(), namespace.to_owned(), key.to_owned());
        let fence = fence.copied();
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(db_error)?;
            check_fence(&tx, fence.as_ref())?;
            let deleted = execute(&tx, DELETE_LINK_STATE, params).map_err(db_error)?;
            tx.commit().map_err(db_error)?;
            Ok(deleted > 0)
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
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(db_error)?;
            check_fence(&tx, fence.as_ref())?;
            let deleted = execute(&tx, CLEAR_LINK_STATE, [device_id]).map_err(db_error)?;
            tx.commit().map_err(db_error)?;
            Ok(deleted as u64)
        })
        .await
    }

    async fn insert_message(&self, message: &MessageRecord) -> Result<InsertOutcome, StoreError> {
        let m = message.clone();
        self.with_conn(move |conn| {
            // The write lock is taken first, so no other connection can slip a message
            // with the same idempotency key between the lookup and the insert.
            let tx = conn.transaction().map_err(db_error)?;
            if let Some(key) = &m.idempotency_key
                && let Some(existing) = query_first(
                    &tx,
                    SELECT_MESSAGE_BY_IDEMPOTENCY_KEY,
                    (&m.device_id, key),
                    message_from_row,
                )?
            {
                return Ok(InsertOutcome::Existing(existing));
            }
            let inserted = execute(
                &tx,
                INSERT_MESSAGE,
                params![
                    m.device_id,
                    m.id,
                    m.direction.as_str(),
                    m.peer_phone,
                    m.text,
                    m.status.as_str(),
                    m.error,
                    m.idempotency_key,
                    m.created_at_ms,
                    m.not_before_ms,
                    m.sent_at_ms,
                    m.delivered_at_ms,
                    m.read_at_ms,
                    m.failed_at_ms,
                ],
            );
            match inserted {
                Ok(_) => {
                    tx.commit().map_err(db_error)?;
                    Ok(InsertOutcome::Inserted)
                }
                Err(e) if is_foreign_key_violation(&e) => Err(device_not_found(&m.device_id)),
                Err(e) if is_uniqueness_violation(&e) => Err(StoreError::Conflict {
                    what: format!("message {} of device {}", m.id, m.device_id),
                }),
                Err(e) => Err(db_error(e)),
            }
        })
        .await
    }

    async fn get_message(
        &self,
        device_id: &str,
        message_id: &str,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let params = (device_id.to_owned(), message_id.to_owned());
        self.with_conn(move |conn| query_first(conn, SELECT_MESSAGE, params, message_from_row))
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
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(db_error)?;
            let Some(current) = query_first(
                &tx,
                SELECT_MESSAGE,
                (&device_id, &message_id),
                message_from_row,
            )?
            else {
                return Ok(None);
            };
            let update =
                advance_statement(status).filter(|_| current.status.may_advance_to(status));
            let Some(sql) = update else {
                return Ok(Some(current));
            };
            let advanced = query_first(
                &tx,
                sql,
                params![device_id, message_id, status.as_str(), at_ms, error],
                message_from_row,
            )?;
            tx.commit().map_err(db_error)?;
            Ok(advanced)
        })
        .await
    }

    async fn queued_messages(
        &self,
        device_id: &str,
        limit: u32,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let device_id = device_id.to_owned();
        self.with_conn(move |conn| {
            query_all(
                conn,
                QUEUED_MESSAGES,
                params![device_id, i64::from(limit)],
                message_from_row,
            )
        })
        .await
    }

    async fn count_queued(&self, device_id: &str, limit: u32) -> Result<u32, StoreError> {
        let device_id = device_id.to_owned();
        self.with_conn(move |conn| {
            conn.query_row(COUNT_QUEUED, params![device_id, i64::from(limit)], |row| {
                row.get::<_, u32>(0)
            })
            .map_err(db_error)
        })
        .await
    }

    async fn devices_with_queued(&self, limit: u32) -> Result<Vec<String>, StoreError> {
        self.with_conn(move |conn| {
            query_all(
                conn,
                DEVICES_WITH_QUEUED,
                params![i64::from(limit)],
                |row| row.get::<_, String>(0).map_err(db_error),
            )
        })
        .await
    }

    async fn reschedule_message(
        &self,
        device_id: &str,
        message_id: &str,
        not_before_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        let params = (device_id.to_owned(), message_id.to_owned(), not_before_ms);
        self.with_conn(move |conn| {
            execute(conn, RESCHEDULE_MESSAGE, params)
                .map(|changed| changed > 0)
                .map_err(db_error)
        })
        .await
    }

    async fn outbound_slots(
        &self,
        device_id: &str,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<i64>, StoreError> {
        let device_id = device_id.to_owned();
        self.with_conn(move |conn| {
            query_all(
                conn,
                OUTBOUND_SLOTS,
                params![device_id, since_ms, i64::from(limit)],
                |row| column(row, 0),
            )
        })
        .await
    }

    async fn get_setting(&self, key: &str) -> Result<Option<Setting>, StoreError> {
        let key = key.to_owned();
        self.with_conn(move |conn| {
            query_first(conn, GET_SETTING, [key], |row| {
                Ok(Setting {
                    value: column(row, 0)?,
                    updated_at_ms: column(row, 1)?,
                })
            })
        })
        .await
    }

    async fn put_setting(&self, key: &str, value: &str, now_ms: i64) -> Result<(), StoreError> {
        let params = (key.to_owned(), value.to_owned(), now_ms);
        self.with_conn(move |conn| {
            execute(conn, PUT_SETTING, params)
                .map(drop)
                .map_err(db_error)
        })
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
        self.with_conn(move |conn| {
            apply_to_slots(
                conn,
                &shards,
                |shard| *shard,
                |slot, _| {
                    let outcome = slot.acquire(&holder, now_ms, ttl_ms);
                    let granted = outcome.granted().is_some();
                    (outcome, granted)
                },
            )
        })
        .await
    }

    async fn renew_leases(
        &self,
        holder: &str,
        leases: &[Fence],
        now_ms: i64,
        ttl_ms: u64,
    ) -> Result<Vec<bool>, StoreError> {
        let (holder, leases) = (holder.to_owned(), leases.to_vec());
        self.with_conn(move |conn| {
            apply_to_slots(
                conn,
                &leases,
                |fence| fence.shard,
                |slot, fence| {
                    let renewed = slot.renew(&holder, fence.epoch, now_ms, ttl_ms);
                    (renewed, renewed)
                },
            )
        })
        .await
    }

    async fn release_leases(
        &self,
        holder: &str,
        leases: &[Fence],
    ) -> Result<Vec<bool>, StoreError> {
        let (holder, leases) = (holder.to_owned(), leases.to_vec());
        self.with_conn(move |conn| {
            apply_to_slots(
                conn,
                &leases,
                |fence| fence.shard,
                |slot, fence| {
                    let released = slot.release(&holder, fence.epoch);
                    (released, released)
                },
            )
        })
        .await
    }

    async fn get_lease(&self, shard: u32) -> Result<Option<Lease>, StoreError> {
        self.with_conn(move |conn| query_first(conn, SELECT_LEASE, [shard], lease_from_row))
            .await
    }

    async fn list_leases(&self, holder: Option<&str>) -> Result<Vec<Lease>, StoreError> {
        let holder = holder.map(str::to_owned);
        self.with_conn(move |conn| match holder {
            Some(holder) => query_all(conn, LIST_LEASES_OF, [holder], lease_from_row),
            None => query_all(conn, LIST_LEASES, [], lease_from_row),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_temp() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("wafleet.db")).expect("open");
        (dir, store)
    }

    fn raw(store: &SqliteStore) -> std::sync::MutexGuard<'_, Connection> {
        store.conn.lock().expect("lock")
    }

    fn device(id: &str) -> DeviceRecord {
        DeviceRecord {
            id: id.to_owned(),
            name: "n".to_owned(),
            tenant: "default".to_owned(),
            status: DeviceStatus::Stopped,
            status_reason: None,
            trust_level: TrustLevel::Newcomer,
            phone: None,
            webhook: None,
            desired_running: false,
            created_at_ms: 1,
            updated_at_ms: 1,
            last_connected_at_ms: None,
        }
    }

    fn query_plan(conn: &Connection, sql: &str) -> String {
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("explain");
        let nulls = std::iter::repeat_n(Value::Null, stmt.parameter_count());
        let details: Vec<String> = stmt
            .query_map(params_from_iter(nulls), |row| row.get::<_, String>(3))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        details.join("; ")
    }

    #[tokio::test]
    async fn connection_is_configured_for_sharing() {
        let (_dir, store) = open_temp();
        let conn = raw(&store);
        let get = |name: &str| -> String {
            conn.pragma_query_value(None, name, |row| row.get::<_, rusqlite::types::Value>(0))
                .map(|v| format!("{v:?}"))
                .expect(name)
        };
        assert_eq!(get("journal_mode"), "Text(\"wal\")");
        assert_eq!(get("synchronous"), "Integer(1)"); // NORMAL
        assert_eq!(get("foreign_keys"), "Integer(1)");
        assert_eq!(get("busy_timeout"), "Integer(5000)");
        assert_eq!(get("user_version"), format!("Integer({SCHEMA_VERSION})"));
    }

    #[tokio::test]
    async fn unknown_enum_text_is_corrupt() {
        let (_dir, store) = open_temp();
        store.create_device(&device("d1")).await.expect("create");
        raw(&store)
            .execute("UPDATE devices SET status = 'EXPLODED' WHERE id = 'd1'", [])
            .expect("update");
        let err = store.get_device("d1").await.expect_err("bad status");
        assert!(
            matches!(&err, StoreError::Corrupt(m) if m.contains("EXPLODED")),
            "{err}"
        );
        let err = store
            .count_devices_by_status()
            .await
            .expect_err("bad status");
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    }

    #[tokio::test]
    async fn wrong_column_type_is_corrupt() {
        let (_dir, store) = open_temp();
        store.create_device(&device("d1")).await.expect("create");
        store
            .put_link_state(
                "d1",
                "ns",
                "k",
                &SealedBlob {
                    key_version: 1,
                    bytes: vec![1],
                },
                None,
            )
            .await
            .expect("put");
        raw(&store)
            .execute("UPDATE link_state SET key_version = -1", [])
            .expect("update");
        let err = store
            .get_link_state("d1", "ns", "k")
            .await
            .expect_err("bad version");
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wafleet.db");
        drop(SqliteStore::open(&path).expect("open"));
        Connection::open(&path)
            .expect("raw open")
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .expect("bump");
        let err = SqliteStore::open(&path).expect_err("newer schema");
        assert!(
            matches!(&err, StoreError::Corrupt(m) if m.contains("newer")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_version_1_file_gains_leases_and_keeps_its_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wafleet.db");
        {
            let conn = Connection::open(&path).expect("raw open");
            conn.execute_batch(MIGRATIONS[0]).expect("step 1");
            conn.pragma_update(None, "user_version", 1)
                .expect("version 1");
            conn.execute(
                concat!("INSERT INTO devices (", device_columns!(), ")
                 VALUES ('d1', 'n', 'default', 'READY', NULL, 'newcomer', NULL, NULL, 1, 1, 1, NULL)"),
                [],
            )
            .expect("a version 1 row");
        }
        let store = SqliteStore::open(&path).expect("open migrates");
        assert_eq!(
            store.get_device("d1").await.expect("get").map(|d| d.status),
            Some(DeviceStatus::Ready)
        );
        let granted = store.acquire_lease("n1", 3, 0, 10).await.expect("acquire");
        assert_eq!(granted.granted().map(|l| l.epoch), Some(1));
        let version: u32 = raw(&store)
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .expect("user_version");
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(SCHEMA_VERSION, 4);
        let shard = shard_of("d1", ClusterSettings::DEFAULT_SHARDS);
        assert_eq!(
            store
                .wanted_devices_in_shards(&[shard])
                .await
                .expect("wanted"),
            ["d1"]
        );
    }

    #[test]
    fn a_device_row_without_a_shard_is_refused() {
        // What an INSERT of a build before schema step 4 looks like.
        let (_dir, store) = open_temp();
        let err = raw(&store)
            .execute(
                concat!("INSERT INTO devices (", device_columns!(), ")
                 VALUES ('d1', 'n', 'default', 'READY', NULL, 'newcomer', NULL, NULL, 1, 1, 1, NULL)"),
                [],
            )
            .expect_err("no shard");
        assert!(
            err.to_string().contains("devices.shard is required"),
            "{err}"
        );
    }

    #[test]
    fn a_file_at_version_4_without_a_recorded_shard_count_is_corrupt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wafleet.db");
        drop(SqliteStore::open(&path).expect("open"));
        Connection::open(&path)
            .expect("raw open")
            .execute("DELETE FROM settings WHERE key = ?1", [SHARDS_SETTING])
            .expect("forget");
        let err = SqliteStore::open(&path).expect_err("no shard count");
        assert!(
            matches!(&err, StoreError::Corrupt(m) if m.contains("no shard count")),
            "{err}"
        );
    }

    #[test]
    fn the_wanted_devices_of_a_shard_come_from_its_index() {
        let (_dir, store) = open_temp();
        let plan = query_plan(&raw(&store), WANTED_IN_SHARD);
        assert!(
            plan.contains("USING COVERING INDEX devices_by_shard"),
            "{plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }

    #[tokio::test]
    async fn a_negative_epoch_is_corrupt() {
        let (_dir, store) = open_temp();
        store.acquire_lease("n1", 1, 0, 10).await.expect("acquire");
        raw(&store)
            .execute("UPDATE leases SET epoch = -1", [])
            .expect("update");
        let err = store.get_lease(1).await.expect_err("bad epoch");
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        let err = store
            .put_link_state(
                "d",
                "ns",
                "k",
                &SealedBlob {
                    key_version: 1,
                    bytes: vec![],
                },
                Some(&Fence { shard: 1, epoch: 1 }),
            )
            .await
            .expect_err("bad epoch under a fence");
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_corrupt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wafleet.db");
        std::fs::write(&path, vec![b'x'; 4096]).expect("write");
        let err = SqliteStore::open(&path).expect_err("not a database");
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    }

    #[test]
    fn open_creates_missing_folders() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a").join("b").join("wafleet.db");
        SqliteStore::open(&path).expect("open");
        assert!(path.exists());
    }

    #[test]
    fn list_statements_walk_an_index() {
        let (_dir, store) = open_temp();
        let conn = raw(&store);
        let query = |status, desired_running| DeviceQuery {
            status,
            desired_running,
            after: Some("x".to_owned()),
            limit: 10,
        };
        let cases = [
            (query(None, None), "USING INDEX sqlite_autoindex_devices_1"),
            (
                query(Some(DeviceStatus::Ready), None),
                "USING INDEX devices_by_status",
            ),
            (
                query(None, Some(true)),
                "USING INDEX devices_by_desired_running",
            ),
        ];
        for (query, index) in cases {
            let (sql, _) = list_devices_statement(&query);
            let plan = query_plan(&conn, &sql);
            assert!(plan.contains(index), "{sql}: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{sql} sorts: {plan}");
        }
    }

    #[test]
    fn queued_scan_uses_its_partial_index() {
        let (_dir, store) = open_temp();
        let plan = query_plan(&raw(&store), QUEUED_MESSAGES);
        assert!(plan.contains("USING INDEX messages_queued"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
        let plan = query_plan(&raw(&store), COUNT_QUEUED);
        assert!(
            plan.contains("USING COVERING INDEX messages_queued"),
            "{plan}"
        );
    }

    #[test]
    fn each_advance_sets_its_own_timestamp() {
        for (status, column) in [
            (MessageStatus::Sent, "sent_at_ms"),
            (MessageStatus::Delivered, "delivered_at_ms"),
            (MessageStatus::Read, "read_at_ms"),
            (MessageStatus::Failed, "failed_at_ms"),
        ] {
            let sql = advance_statement(status).expect("statement");
            assert!(sql.contains(&format!("{column} = ?4")), "{sql}");
        }
        assert_eq!(advance_statement(MessageStatus::Queued), None);
    }
}
