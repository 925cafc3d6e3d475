//! Link state: each device's sealed key/value records. Writes check their fence in the
//! transaction of the write.

use rusqlite::{Connection, Row, params};

use super::leases::check_fence;
use super::sql::{column, db_error, execute, is_foreign_key_violation, query_all, query_first};
use crate::store::{Fence, SealedBlob, StoreError, device_not_found};

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

fn blob_from_row(row: &Row<'_>, first: usize) -> Result<SealedBlob, StoreError> {
    Ok(SealedBlob {
        key_version: column(row, first)?,
        bytes: column(row, first + 1)?,
    })
}

pub(super) fn put(
    conn: &Connection,
    device_id: &str,
    namespace: &str,
    key: &str,
    value: &SealedBlob,
    fence: Option<&Fence>,
) -> Result<(), StoreError> {
    put_records(conn, device_id, namespace, [(key, value)], fence)
}

pub(super) fn get(
    conn: &Connection,
    device_id: &str,
    namespace: &str,
    key: &str,
) -> Result<Option<SealedBlob>, StoreError> {
    query_first(conn, GET_LINK_STATE, (device_id, namespace, key), |row| {
        blob_from_row(row, 0)
    })
}

/// Keys asked at once in [`any`] and [`get_many`]: well under SQLite's limit on a
/// statement's parameters.
const KEYS_PER_QUERY: usize = 500;

/// `SELECT {what} FROM link_state` for one device and namespace and the keys of
/// `chunk`, with the values to bind.
fn keyed_query<'a>(
    what: &str,
    device_id: &'a str,
    namespace: &'a str,
    chunk: &'a [String],
) -> (String, impl Iterator<Item = &'a str>) {
    let places = (3..chunk.len() + 3)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {what} FROM link_state WHERE device_id = ?1 AND namespace = ?2 AND key IN ({places})"
    );
    let values = [device_id, namespace]
        .into_iter()
        .chain(chunk.iter().map(String::as_str));
    (sql, values)
}

/// Whether any of `keys` has a record: one indexed query per [`KEYS_PER_QUERY`] keys.
pub(super) fn any(
    conn: &Connection,
    device_id: &str,
    namespace: &str,
    keys: &[String],
) -> Result<bool, StoreError> {
    for chunk in keys.chunks(KEYS_PER_QUERY) {
        let (sql, values) = keyed_query("1", device_id, namespace, chunk);
        let mut statement = conn
            .prepare_cached(&format!("{sql} LIMIT 1"))
            .map_err(db_error)?;
        if statement
            .exists(rusqlite::params_from_iter(values))
            .map_err(db_error)?
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The records of those of `keys` that hold one: one indexed query per
/// [`KEYS_PER_QUERY`] keys.
pub(super) fn get_many(
    conn: &Connection,
    device_id: &str,
    namespace: &str,
    keys: &[String],
) -> Result<Vec<(String, SealedBlob)>, StoreError> {
    let mut found = Vec::new();
    for chunk in keys.chunks(KEYS_PER_QUERY) {
        let (sql, values) = keyed_query("key, key_version, value", device_id, namespace, chunk);
        let mut statement = conn.prepare_cached(&sql).map_err(db_error)?;
        let mut rows = statement
            .query(rusqlite::params_from_iter(values))
            .map_err(db_error)?;
        while let Some(row) = rows.next().map_err(db_error)? {
            found.push((column(row, 0)?, blob_from_row(row, 1)?));
        }
    }
    Ok(found)
}

/// [`put`] for each of `records`, the fence checked once: the caller's transaction
/// (the worker's savepoint) makes them all or none.
pub(super) fn put_many(
    conn: &Connection,
    device_id: &str,
    namespace: &str,
    records: &[(String, SealedBlob)],
    fence: Option<&Fence>,
) -> Result<(), StoreError> {
    let records = records.iter().map(|(key, value)| (key.as_str(), value));
    put_records(conn, device_id, namespace, records, fence)
}

fn put_records<'a>(
    conn: &Connection,
    device_id: &str,
    namespace: &str,
    records: impl IntoIterator<Item = (&'a str, &'a SealedBlob)>,
    fence: Option<&Fence>,
) -> Result<(), StoreError> {
    check_fence(conn, fence)?;
    let mut statement = conn.prepare_cached(PUT_LINK_STATE).map_err(db_error)?;
    for (key, value) in records {
        let written = statement.execute(params![
            device_id,
            namespace,
            key,
            value.key_version,
            value.bytes
        ]);
        match written {
            Ok(_) => {}
            Err(e) if is_foreign_key_violation(&e) => return Err(device_not_found(device_id)),
            Err(e) => return Err(db_error(e)),
        }
    }
    Ok(())
}

pub(super) fn list(
    conn: &Connection,
    device_id: &str,
    namespace: &str,
) -> Result<Vec<(String, SealedBlob)>, StoreError> {
    query_all(conn, LIST_LINK_STATE, (device_id, namespace), |row| {
        Ok((column(row, 0)?, blob_from_row(row, 1)?))
    })
}

pub(super) fn delete(
    conn: &Connection,
    device_id: &str,
    namespace: &str,
    key: &str,
    fence: Option<&Fence>,
) -> Result<bool, StoreError> {
    check_fence(conn, fence)?;
    let deleted =
        execute(conn, DELETE_LINK_STATE, (device_id, namespace, key)).map_err(db_error)?;
    Ok(deleted > 0)
}

pub(super) fn clear(
    conn: &Connection,
    device_id: &str,
    fence: Option<&Fence>,
) -> Result<u64, StoreError> {
    check_fence(conn, fence)?;
    let deleted = execute(conn, CLEAR_LINK_STATE, [device_id]).map_err(db_error)?;
    Ok(deleted as u64)
}
