//! The access directory (tenants, keys, users as JSON documents) and the audit log.

use rusqlite::types::Value;
use rusqlite::{Connection, Row, params, params_from_iter};

use super::sql::{column, db_error, execute, is_uniqueness_violation, query_all, query_first};
use crate::store::{AccessKind, AccessQuery, AccessRecord, AuditEntry, AuditQuery, StoreError};

const INSERT_ACCESS: &str = "INSERT INTO access (kind, id, tenant, body, updated_at_ms)
     VALUES (?1, ?2, ?3, ?4, ?5)";
const UPDATE_ACCESS: &str =
    "UPDATE access SET tenant = ?3, body = ?4, updated_at_ms = ?5 WHERE kind = ?1 AND id = ?2";
const SELECT_ACCESS: &str =
    "SELECT kind, id, tenant, body, updated_at_ms FROM access WHERE kind = ?1 AND id = ?2";
const DELETE_ACCESS: &str = "DELETE FROM access WHERE kind = ?1 AND id = ?2";
const INSERT_AUDIT: &str = "INSERT OR IGNORE INTO audit
     (id, at_ms, actor, tenant, action, target, source, status, outcome)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

fn access_from_row(row: &Row<'_>) -> Result<AccessRecord, StoreError> {
    let kind: String = column(row, 0)?;
    Ok(AccessRecord {
        kind: AccessKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown access kind {kind:?}")))?,
        id: column(row, 1)?,
        tenant: column(row, 2)?,
        body: column(row, 3)?,
        updated_at_ms: column(row, 4)?,
    })
}

fn audit_from_row(row: &Row<'_>) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        id: column(row, 0)?,
        at_ms: column(row, 1)?,
        actor: column(row, 2)?,
        tenant: column(row, 3)?,
        action: column(row, 4)?,
        target: column(row, 5)?,
        source: column(row, 6)?,
        status: column(row, 7)?,
        outcome: column(row, 8)?,
    })
}

pub(super) fn create(conn: &Connection, r: &AccessRecord) -> Result<(), StoreError> {
    let inserted = execute(
        conn,
        INSERT_ACCESS,
        params![r.kind.as_str(), r.id, r.tenant, r.body, r.updated_at_ms],
    );
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if is_uniqueness_violation(&e) => Err(StoreError::Conflict {
            what: format!("{} {}", r.kind.as_str(), r.id),
        }),
        Err(e) => Err(db_error(e)),
    }
}

pub(super) fn update(conn: &Connection, r: &AccessRecord) -> Result<(), StoreError> {
    let changed = execute(
        conn,
        UPDATE_ACCESS,
        params![r.kind.as_str(), r.id, r.tenant, r.body, r.updated_at_ms],
    )
    .map_err(db_error)?;
    if changed == 0 {
        return Err(StoreError::NotFound {
            what: format!("{} {}", r.kind.as_str(), r.id),
        });
    }
    Ok(())
}

pub(super) fn get(
    conn: &Connection,
    kind: AccessKind,
    id: &str,
) -> Result<Option<AccessRecord>, StoreError> {
    query_first(
        conn,
        SELECT_ACCESS,
        params![kind.as_str(), id],
        access_from_row,
    )
}

pub(super) fn delete(conn: &Connection, kind: AccessKind, id: &str) -> Result<bool, StoreError> {
    execute(conn, DELETE_ACCESS, params![kind.as_str(), id])
        .map(|changed| changed > 0)
        .map_err(db_error)
}

/// The SELECT for one [`AccessQuery`] (one statement per combination of filters, each
/// cached), walking the `access_by_tenant` index or the primary key from `after`.
pub(super) fn list(
    conn: &Connection,
    query: &AccessQuery,
) -> Result<Vec<AccessRecord>, StoreError> {
    let mut sql =
        String::from("SELECT kind, id, tenant, body, updated_at_ms FROM access WHERE kind = ?1");
    let mut values = vec![Value::Text(query.kind.as_str().to_owned())];
    if let Some(tenant) = &query.tenant {
        values.push(Value::Text(tenant.clone()));
        sql.push_str(&format!(" AND tenant = ?{}", values.len()));
    }
    if let Some(after) = &query.after {
        values.push(Value::Text(after.clone()));
        sql.push_str(&format!(" AND id > ?{}", values.len()));
    }
    values.push(Value::Integer(i64::from(query.limit)));
    sql.push_str(&format!(" ORDER BY id LIMIT ?{}", values.len()));
    query_all(conn, &sql, params_from_iter(values), access_from_row)
}

pub(super) fn append_audit(conn: &Connection, entries: &[AuditEntry]) -> Result<(), StoreError> {
    for e in entries {
        execute(
            conn,
            INSERT_AUDIT,
            params![
                e.id, e.at_ms, e.actor, e.tenant, e.action, e.target, e.source, e.status, e.outcome
            ],
        )
        .map_err(db_error)?;
    }
    Ok(())
}

/// The SELECT for one [`AuditQuery`]: every given filter is a condition, in id order.
pub(super) fn list_audit(
    conn: &Connection,
    query: &AuditQuery,
) -> Result<Vec<AuditEntry>, StoreError> {
    let mut sql = String::from(
        "SELECT id, at_ms, actor, tenant, action, target, source, status, outcome FROM audit",
    );
    let mut values = Vec::new();
    let mut conditions = Vec::new();
    let texts = [
        ("id >", &query.after),
        ("tenant =", &query.tenant),
        ("actor =", &query.actor),
        ("action =", &query.action),
        ("target =", &query.target),
    ];
    for (condition, value) in texts {
        if let Some(value) = value {
            values.push(Value::Text(value.clone()));
            conditions.push(format!("{condition} ?{}", values.len()));
        }
    }
    for (condition, value) in [("at_ms >=", query.since_ms), ("at_ms <", query.until_ms)] {
        if let Some(value) = value {
            values.push(Value::Integer(value));
            conditions.push(format!("{condition} ?{}", values.len()));
        }
    }
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    values.push(Value::Integer(i64::from(query.limit)));
    sql.push_str(&format!(" ORDER BY id LIMIT ?{}", values.len()));
    query_all(conn, &sql, params_from_iter(values), audit_from_row)
}
