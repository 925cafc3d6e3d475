//! Settings: small named documents, last writer wins.

use rusqlite::Connection;

use super::sql::{column, db_error, execute, query_first};
use crate::store::{Setting, StoreError};

pub(super) const GET_SETTING: &str = "SELECT value, updated_at_ms FROM settings WHERE key = ?1";
pub(super) const PUT_SETTING: &str =
    "INSERT INTO settings (key, value, updated_at_ms) VALUES (?1, ?2, ?3)
     ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at_ms = excluded.updated_at_ms";

pub(super) fn get(conn: &Connection, key: &str) -> Result<Option<Setting>, StoreError> {
    query_first(conn, GET_SETTING, [key], |row| {
        Ok(Setting {
            value: column(row, 0)?,
            updated_at_ms: column(row, 1)?,
        })
    })
}

pub(super) fn put(
    conn: &Connection,
    key: &str,
    value: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    execute(conn, PUT_SETTING, (key, value, now_ms))
        .map(drop)
        .map_err(db_error)
}
