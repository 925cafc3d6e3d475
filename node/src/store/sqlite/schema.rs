//! The schema of the SQLite file: its steps, and the migration that applies the missing
//! ones when a file is opened.
//!
//! The schema is a list of steps ([`SCHEMA_VERSION`] of them); `PRAGMA user_version`
//! records how many a file has had, and opening a file applies the missing ones. A step
//! whose data SQL cannot compute has a Rust part ([`backfill`]) run in the same
//! transaction.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior, params};
use wafleet_cluster_config::shard_of;

use super::settings::{GET_SETTING, PUT_SETTING};
use super::sql::{column, db_error, execute, query_all, query_first};
use crate::clock::now_ms;
use crate::store::{SHARDS_SETTING, StoreError, check_shards};

/// Schema steps in order; step `n` takes a file from version `n` to `n + 1`. To change
/// the schema, append a step; never edit one that has shipped.
pub(super) const MIGRATIONS: &[&str] = &[
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
    // 5: the webhook delivery log. `seq` orders a device's events as recorded.
    "CREATE TABLE webhook_deliveries (
        seq              INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id         TEXT    NOT NULL UNIQUE,
        device_id        TEXT    NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
        tenant           TEXT    NOT NULL,
        event            TEXT    NOT NULL,
        data             TEXT    NOT NULL,
        created_at_ms    INTEGER NOT NULL,
        status           TEXT    NOT NULL,
        attempts         INTEGER NOT NULL,
        next_attempt_ms  INTEGER,
        last_status_code INTEGER,
        last_error       TEXT,
        delivered_at_ms  INTEGER
    ) STRICT;
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (device_id, seq)
        WHERE status IN ('pending', 'failed');
    CREATE INDEX webhook_deliveries_by_device ON webhook_deliveries (device_id, status, seq);
    CREATE INDEX webhook_deliveries_by_status ON webhook_deliveries (status, created_at_ms);",
    // 6: access control. The directory keeps tenants, API keys and users as documents
    // under (kind, id); the audit log's ids are ordered by time. Both are WITHOUT ROWID:
    // rows live in their primary key's b-tree, one b-tree write per audit entry fewer
    // (every send is audited). Devices by tenant, for a tenant's lists and counts.
    "CREATE TABLE access (
        kind          TEXT    NOT NULL,
        id            TEXT    NOT NULL,
        tenant        TEXT,
        body          TEXT    NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        PRIMARY KEY (kind, id)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX access_by_tenant ON access (kind, tenant, id);
    CREATE TABLE audit (
        id      TEXT    NOT NULL PRIMARY KEY,
        at_ms   INTEGER NOT NULL,
        actor   TEXT    NOT NULL,
        tenant  TEXT,
        action  TEXT    NOT NULL,
        target  TEXT    NOT NULL,
        source  TEXT    NOT NULL,
        status  INTEGER NOT NULL,
        outcome TEXT    NOT NULL
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX audit_by_tenant ON audit (tenant, id);
    CREATE INDEX devices_by_tenant ON devices (tenant, id);",
    // 7: the message log, both directions, newest first (and a device's chats, grouped
    // over it). It also serves the rate limiter's slots (skipping inbound rows), so the
    // outbound-only index of step 3 goes: every message written updates as many indexes
    // as before.
    "CREATE INDEX messages_by_time ON messages (device_id, created_at_ms, id);
    DROP INDEX messages_outbound_by_time;",
    // 8: the tenants' contact books. A contact's row keeps its tags (a JSON array, for
    // reading it whole); `contact_tags` has one row per (tag, contact), so that a
    // tenant's contacts with a tag are a range of its primary key in phone order (a
    // page of a 100,000-contact audience is a seek and `limit` rows) and the tag counts
    // a walk of it. Deleting a contact deletes its tag rows (the foreign key, served by
    // `contact_tags_by_phone`).
    "CREATE TABLE contacts (
        tenant        TEXT    NOT NULL,
        phone         TEXT    NOT NULL,
        name          TEXT    NOT NULL,
        tags          TEXT    NOT NULL,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        PRIMARY KEY (tenant, phone)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE contact_tags (
        tenant TEXT NOT NULL,
        tag    TEXT NOT NULL,
        phone  TEXT NOT NULL,
        PRIMARY KEY (tenant, tag, phone),
        FOREIGN KEY (tenant, phone) REFERENCES contacts (tenant, phone) ON DELETE CASCADE
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX contact_tags_by_phone ON contact_tags (tenant, phone);",
    // 9: scheduled messages and the queue's order. A scheduled message (`send_at_ms`)
    // waits in `messages_scheduled` until it falls due, then enters the queue at that
    // time (`queued_at_ms`): the queue is ordered by when a message entered it, its
    // creation for every other message (`queued_at_ms` NULL), which is the order of
    // the rate limiter's slots. The queue's index is made again on that order.
    "ALTER TABLE messages ADD COLUMN send_at_ms INTEGER;
    ALTER TABLE messages ADD COLUMN queued_at_ms INTEGER;
    DROP INDEX messages_queued;
    CREATE INDEX messages_queued
        ON messages (device_id, COALESCE(queued_at_ms, created_at_ms), id)
        WHERE status = 'queued' AND direction = 'outbound';
    CREATE INDEX messages_scheduled ON messages (device_id, send_at_ms, id)
        WHERE status = 'scheduled' AND direction = 'outbound';",
    // 10: campaigns. A job's recipients are one row each; `job_recipients_by_status`
    // makes a claim (the first pending recipient of a job) one seek. A job's progress
    // (recipients by status) is `job_counts`, kept in the transaction of every write
    // (new recipients counted per batch by the store, changes and deletes by triggers), so
    // reading it is a few rows however large the job (counting 100,000 index entries took
    // 20 to 50 ms). Active jobs (what each node's runner reads every
    // half second) are a small partial index.
    "CREATE TABLE jobs (
        id             TEXT    NOT NULL PRIMARY KEY,
        tenant         TEXT    NOT NULL,
        name           TEXT    NOT NULL,
        status         TEXT    NOT NULL,
        devices        TEXT    NOT NULL,
        spec           TEXT    NOT NULL,
        total          INTEGER NOT NULL,
        start_at_ms    INTEGER,
        created_at_ms  INTEGER NOT NULL,
        started_at_ms  INTEGER,
        finished_at_ms INTEGER,
        updated_at_ms  INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX jobs_by_tenant ON jobs (tenant, id);
    CREATE INDEX jobs_active ON jobs (id) WHERE status IN ('scheduled', 'running', 'paused');
    CREATE TABLE job_recipients (
        job_id        TEXT    NOT NULL,
        seq           INTEGER NOT NULL,
        recipient     TEXT    NOT NULL,
        text          TEXT    NOT NULL,
        status        TEXT    NOT NULL,
        device_id     TEXT,
        message_id    TEXT,
        attempts      INTEGER NOT NULL,
        error         TEXT,
        next_at_ms    INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        PRIMARY KEY (job_id, seq)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX job_recipients_by_status ON job_recipients (job_id, status, seq);
    CREATE TABLE job_counts (
        job_id TEXT    NOT NULL,
        status TEXT    NOT NULL,
        n      INTEGER NOT NULL,
        PRIMARY KEY (job_id, status)
    ) STRICT, WITHOUT ROWID;
    CREATE TRIGGER job_recipients_counted_out AFTER DELETE ON job_recipients BEGIN
        UPDATE job_counts SET n = n - 1 WHERE job_id = OLD.job_id AND status = OLD.status;
    END;
    CREATE TRIGGER job_recipients_recounted AFTER UPDATE OF status ON job_recipients
        WHEN OLD.status <> NEW.status BEGIN
        UPDATE job_counts SET n = n - 1 WHERE job_id = OLD.job_id AND status = OLD.status;
        INSERT INTO job_counts (job_id, status, n) VALUES (NEW.job_id, NEW.status, 1)
            ON CONFLICT (job_id, status) DO UPDATE SET n = n + 1;
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

const DEVICES_WITHOUT_SHARD: &str = "SELECT id FROM devices WHERE shard IS NULL";
const SET_DEVICE_SHARD: &str = "UPDATE devices SET shard = ?2 WHERE id = ?1";

/// Applies the missing schema steps and settles the shard count, in one transaction: a
/// file that already records its shard count is checked against `shards` before any
/// step; a file that did not have one yet (new, or older than
/// [`SHARD_COLUMN_VERSION`]) has its devices placed with `shards` and records it.
pub(super) fn migrate(conn: &mut Connection, path: &Path, shards: u32) -> Result<(), StoreError> {
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
