//! Running cached statements, decoding columns, and mapping SQLite's errors to
//! [`StoreError`]s: what every part of the SQLite store uses.

use rusqlite::types::FromSql;
use rusqlite::{Connection, Params, Row, ffi};

use crate::store::StoreError;

// ---- errors ----

/// Maps a failure no caller-specific rule covered: contention and I/O are worth a
/// retry, unreadable data is not.
pub(super) fn db_error(e: rusqlite::Error) -> StoreError {
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

pub(super) fn is_foreign_key_violation(e: &rusqlite::Error) -> bool {
    extended_code(e) == Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY)
}

pub(super) fn is_uniqueness_violation(e: &rusqlite::Error) -> bool {
    matches!(
        extended_code(e),
        Some(ffi::SQLITE_CONSTRAINT_PRIMARYKEY | ffi::SQLITE_CONSTRAINT_UNIQUE)
    )
}

// ---- rows ----

pub(super) fn column<T: FromSql>(row: &Row<'_>, index: usize) -> Result<T, StoreError> {
    row.get(index).map_err(db_error)
}

pub(super) fn parse_column<T>(
    row: &Row<'_>,
    index: usize,
    what: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, StoreError> {
    let text: String = column(row, index)?;
    parse(&text).ok_or_else(|| StoreError::Corrupt(format!("unknown {what} {text:?}")))
}

/// Runs a cached query and decodes every row.
pub(super) fn query_all<T>(
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
pub(super) fn query_first<T>(
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

pub(super) fn execute(
    conn: &Connection,
    sql: &str,
    params: impl Params,
) -> Result<usize, rusqlite::Error> {
    conn.prepare_cached(sql)?.execute(params)
}

/// Runs `sql` (parameters: a shard, a row limit) for each of `shards` in turn, collecting
/// the device ids in its first column, at most `limit` in all.
pub(super) fn device_ids_by_shard(
    conn: &Connection,
    sql: &str,
    shards: &[u32],
    limit: u32,
) -> Result<Vec<String>, StoreError> {
    let mut ids = Vec::new();
    for shard in shards {
        let left = limit.saturating_sub(u32::try_from(ids.len()).unwrap_or(u32::MAX));
        if left == 0 {
            break;
        }
        ids.extend(query_all(
            conn,
            sql,
            (i64::from(*shard), i64::from(left)),
            |row| column(row, 0),
        )?);
    }
    Ok(ids)
}
