//! The webhook delivery log: one row per event recorded for a device's webhook, in
//! `seq` order (the table's autoincrement key, so a device's events keep the order in
//! which they were recorded). The `webhook_deliveries_due` partial index holds the
//! deliveries still to be attempted.

use rusqlite::{Connection, Row, params};

use super::sql::{
    column, db_error, device_ids_by_shard, execute, is_foreign_key_violation,
    is_uniqueness_violation, parse_column, query_all, query_first,
};
use crate::store::{
    Attempt, AttemptOutcome, DeliveryBacklog, DeliveryRecord, DeliveryStatus, DeviceId,
    NewDelivery, ReplayWhich, StoreError, device_not_found,
};

macro_rules! delivery_columns {
    () => {
        "seq, event_id, device_id, tenant, event, data, created_at_ms, status, attempts, \
         next_attempt_ms, last_status_code, last_error, delivered_at_ms"
    };
}

const INSERT: &str = "INSERT INTO webhook_deliveries
     (event_id, device_id, tenant, event, data, created_at_ms, status, attempts)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0)";

/// Written with the literal terms of the `webhook_deliveries_due` partial index.
const DUE: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM webhook_deliveries
     WHERE device_id = ?1 AND status IN ('pending', 'failed')
     ORDER BY seq LIMIT ?2"
);

const SELECT_ONE: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM webhook_deliveries WHERE device_id = ?1 AND event_id = ?2"
);

const RECORD_ATTEMPT: &str = "UPDATE webhook_deliveries
     SET status = ?4, attempts = ?3 + 1, next_attempt_ms = ?5, last_status_code = ?6,
         last_error = ?7, delivered_at_ms = ?8
     WHERE device_id = ?1 AND event_id = ?2 AND attempts = ?3 AND next_attempt_ms IS ?9
       AND status IN ('pending', 'failed')";

const LIST: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM webhook_deliveries
     WHERE device_id = ?1 AND seq < ?2
     ORDER BY seq DESC LIMIT ?3"
);

const LIST_BY_STATUS: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM webhook_deliveries
     WHERE device_id = ?1 AND status = ?2 AND seq < ?3
     ORDER BY seq DESC LIMIT ?4"
);

/// `next_attempt_ms` always changes (see [`Attempt::prior_next_attempt_ms`]).
const REPLAY_ONE: &str = "UPDATE webhook_deliveries
     SET status = 'pending', attempts = 0,
         next_attempt_ms = CASE WHEN next_attempt_ms IS ?3 THEN ?3 + 1 ELSE ?3 END,
         last_error = NULL,
         last_status_code = NULL, delivered_at_ms = NULL
     WHERE device_id = ?1 AND event_id = ?2";

const REPLAY_DEAD: &str = "UPDATE webhook_deliveries
     SET status = 'pending', attempts = 0,
         next_attempt_ms = CASE WHEN next_attempt_ms IS ?2 THEN ?2 + 1 ELSE ?2 END,
         last_error = NULL,
         last_status_code = NULL
     WHERE device_id = ?1 AND status = 'dead'";

/// Per shard: its devices (`devices_by_shard`), each looked up in the partial index of
/// due deliveries.
const DEVICES_WITH_DUE: &str = "SELECT d.id FROM devices d WHERE d.shard = ?1
     AND EXISTS (SELECT 1 FROM webhook_deliveries w WHERE w.device_id = d.id
         AND w.status IN ('pending', 'failed'))
     LIMIT ?2";

const COUNT_BY_STATUS: &str = "SELECT COUNT(*), MIN(created_at_ms) FROM webhook_deliveries
     WHERE status = ?1";

const PRUNE: &str = "DELETE FROM webhook_deliveries WHERE seq IN (
     SELECT seq FROM webhook_deliveries
     WHERE status = 'delivered' AND created_at_ms < ?1 LIMIT ?2)";

fn decode(row: &Row<'_>) -> Result<DeliveryRecord, StoreError> {
    Ok(DeliveryRecord {
        seq: column(row, 0)?,
        event_id: column(row, 1)?,
        device_id: column(row, 2)?,
        tenant: column(row, 3)?,
        event: column(row, 4)?,
        data: column(row, 5)?,
        created_at_ms: column(row, 6)?,
        status: parse_column(row, 7, "delivery status", DeliveryStatus::parse)?,
        attempts: column(row, 8)?,
        next_attempt_ms: column(row, 9)?,
        last_status_code: column(row, 10)?,
        last_error: column(row, 11)?,
        delivered_at_ms: column(row, 12)?,
    })
}

pub(super) fn append(conn: &Connection, d: &NewDelivery) -> Result<(), StoreError> {
    let result = execute(
        conn,
        INSERT,
        params![
            d.event_id,
            d.device_id,
            d.tenant,
            d.event,
            d.data,
            d.created_at_ms
        ],
    );
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_foreign_key_violation(&e) => Err(device_not_found(&d.device_id)),
        // The same event again: it is recorded already.
        Err(e) if is_uniqueness_violation(&e) => Ok(()),
        Err(e) => Err(db_error(e)),
    }
}

pub(super) fn due(
    conn: &Connection,
    device_id: &str,
    limit: u32,
) -> Result<Vec<DeliveryRecord>, StoreError> {
    query_all(conn, DUE, params![device_id, i64::from(limit)], decode)
}

pub(super) fn record_attempt(
    conn: &Connection,
    device_id: &str,
    event_id: &str,
    attempt: &Attempt,
) -> Result<Option<DeliveryRecord>, StoreError> {
    let (status, next_attempt_ms, delivered_at_ms) = match attempt.outcome {
        AttemptOutcome::Delivered => (DeliveryStatus::Delivered, None, Some(attempt.at_ms)),
        AttemptOutcome::Retry { next_attempt_ms } => {
            (DeliveryStatus::Failed, Some(next_attempt_ms), None)
        }
        AttemptOutcome::Dead => (DeliveryStatus::Dead, None, None),
    };
    let changed = execute(
        conn,
        RECORD_ATTEMPT,
        params![
            device_id,
            event_id,
            attempt.prior_attempts,
            status.as_str(),
            next_attempt_ms,
            attempt.status_code,
            attempt.error,
            delivered_at_ms,
            attempt.prior_next_attempt_ms
        ],
    )
    .map_err(db_error)?;
    if changed == 0 {
        return Ok(None);
    }
    query_first(conn, SELECT_ONE, params![device_id, event_id], decode)
}

pub(super) fn list(
    conn: &Connection,
    device_id: &str,
    status: Option<DeliveryStatus>,
    before_seq: Option<i64>,
    limit: u32,
) -> Result<Vec<DeliveryRecord>, StoreError> {
    let before = before_seq.unwrap_or(i64::MAX);
    match status {
        Some(status) => query_all(
            conn,
            LIST_BY_STATUS,
            params![device_id, status.as_str(), before, i64::from(limit)],
            decode,
        ),
        None => query_all(
            conn,
            LIST,
            params![device_id, before, i64::from(limit)],
            decode,
        ),
    }
}

pub(super) fn replay(
    conn: &Connection,
    device_id: &str,
    which: &ReplayWhich,
    now_ms: i64,
) -> Result<u64, StoreError> {
    let changed = match which {
        ReplayWhich::Event(event_id) => {
            execute(conn, REPLAY_ONE, params![device_id, event_id, now_ms])
        }
        ReplayWhich::Dead => execute(conn, REPLAY_DEAD, params![device_id, now_ms]),
    }
    .map_err(db_error)?;
    Ok(changed as u64)
}

pub(super) fn devices_with_due(
    conn: &Connection,
    shards: &[u32],
    limit: u32,
) -> Result<Vec<DeviceId>, StoreError> {
    device_ids_by_shard(conn, DEVICES_WITH_DUE, shards, limit)
}

pub(super) fn backlog(conn: &Connection) -> Result<DeliveryBacklog, StoreError> {
    let count = |status: DeliveryStatus| {
        query_first(conn, COUNT_BY_STATUS, [status.as_str()], |row| {
            Ok((column::<i64>(row, 0)?, column::<Option<i64>>(row, 1)?))
        })
        .map(|found| found.unwrap_or((0, None)))
    };
    let (pending, oldest_pending) = count(DeliveryStatus::Pending)?;
    let (failed, oldest_failed) = count(DeliveryStatus::Failed)?;
    let (dead, _) = count(DeliveryStatus::Dead)?;
    let oldest_due_created_ms = match (oldest_pending, oldest_failed) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(DeliveryBacklog {
        pending: pending as u64,
        failed: failed as u64,
        dead: dead as u64,
        oldest_due_created_ms,
    })
}

pub(super) fn prune(conn: &Connection, before_ms: i64, limit: u32) -> Result<u64, StoreError> {
    execute(conn, PRUNE, params![before_ms, i64::from(limit)])
        .map(|n| n as u64)
        .map_err(db_error)
}
