//! Device rows. Each row keeps its shard (`shard_of(id, S)`), indexed with
//! `desired_running`, so that a node taking shards over reads only their devices.

use std::collections::BTreeSet;

use rusqlite::types::Value;
use rusqlite::{Connection, Row, params, params_from_iter};

use super::leases::check_fence;
use super::sql::{
    column, db_error, execute, is_uniqueness_violation, parse_column, query_all, query_first,
};
use crate::store::{
    DeviceId, DevicePage, DevicePatch, DeviceQuery, DeviceRecord, DeviceStatus, Fence, StoreError,
    TrustLevel, device_not_found,
};

macro_rules! device_columns {
    () => {
        "id, name, tenant, status, status_reason, trust_level, phone, webhook, \
         desired_running, created_at_ms, updated_at_ms, last_connected_at_ms"
    };
}
#[cfg(test)]
pub(super) use device_columns;

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
pub(super) const WANTED_IN_SHARD: &str =
    "SELECT id FROM devices WHERE shard = ?1 AND desired_running = 1 ORDER BY id";
const COUNT_DEVICES_BY_STATUS: &str = "SELECT status, COUNT(*) FROM devices GROUP BY status";
const COUNT_TENANT_DEVICES_BY_STATUS: &str =
    "SELECT status, COUNT(*) FROM devices WHERE tenant = ?1 GROUP BY status";
const DELETE_DEVICE: &str = "DELETE FROM devices WHERE id = ?1";

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

/// The SELECT for one [`DeviceQuery`]: a separate statement per combination of filters
/// (each cached), so SQLite can walk an index from `after` instead of scanning.
pub(super) fn list_devices_statement(query: &DeviceQuery) -> (String, Vec<Value>) {
    let mut sql = String::from(concat!("SELECT ", device_columns!(), " FROM devices"));
    let mut values = Vec::new();
    let mut conditions = Vec::new();
    if let Some(after) = &query.after {
        values.push(Value::Text(after.clone()));
        conditions.push(format!("id > ?{}", values.len()));
    }
    if let Some(tenant) = &query.tenant {
        values.push(Value::Text(tenant.clone()));
        conditions.push(format!("tenant = ?{}", values.len()));
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

// ---- the device methods of `Store` ----

pub(super) fn create(conn: &Connection, d: &DeviceRecord, shard: u32) -> Result<(), StoreError> {
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
}

pub(super) fn get(conn: &Connection, id: &str) -> Result<Option<DeviceRecord>, StoreError> {
    query_first(conn, SELECT_DEVICE, [id], device_from_row)
}

pub(super) fn patch(
    conn: &Connection,
    id: &str,
    p: DevicePatch,
    now_ms: i64,
    fence: Option<&Fence>,
) -> Result<DeviceRecord, StoreError> {
    check_fence(conn, fence)?;
    let row = query_first(
        conn,
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
    let row = row.ok_or_else(|| device_not_found(id))?;
    Ok(row)
}

/// A page of [`list_devices_statement`]'s rows (at most `limit`, of the `limit + 1` it
/// asks for).
pub(super) fn page(
    conn: &Connection,
    sql: &str,
    values: Vec<Value>,
    limit: usize,
) -> Result<DevicePage, StoreError> {
    let devices = query_all(conn, sql, params_from_iter(values), device_from_row)?;
    Ok(DevicePage::cut(devices, limit))
}

pub(super) fn wanted_in_shards(
    conn: &Connection,
    shards: BTreeSet<u32>,
) -> Result<Vec<DeviceId>, StoreError> {
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
}

/// Devices per status, of one tenant when `tenant` is given.
pub(super) fn count_by_status(
    conn: &Connection,
    tenant: Option<&str>,
) -> Result<Vec<(DeviceStatus, u64)>, StoreError> {
    fn decode(row: &Row<'_>) -> Result<(DeviceStatus, u64), StoreError> {
        let status = parse_column(row, 0, "device status", DeviceStatus::parse)?;
        let count: i64 = column(row, 1)?;
        Ok((status, u64::try_from(count).unwrap_or(0)))
    }
    let mut counts = match tenant {
        None => query_all(conn, COUNT_DEVICES_BY_STATUS, [], decode)?,
        Some(tenant) => query_all(conn, COUNT_TENANT_DEVICES_BY_STATUS, [tenant], decode)?,
    };
    counts.sort_by_key(|(status, _)| *status);
    Ok(counts)
}

pub(super) fn delete(
    conn: &Connection,
    id: &str,
    fence: Option<&Fence>,
) -> Result<bool, StoreError> {
    check_fence(conn, fence)?;
    let deleted = execute(conn, DELETE_DEVICE, [id]).map_err(db_error)?;
    Ok(deleted > 0)
}
