//! The statements of the access directory (`access`) and the audit log (`audit`,
//! `audit_hours`); schema step 4, used by `scylla/access.rs`.
//!
//! Directory writes are LWTs so that a create is conditional (`Conflict`) and an update
//! or a delete can tell whether the record was there; the reads are plain LOCAL_QUORUM
//! reads, which see every LWT that has completed (its commit is written at
//! LOCAL_QUORUM), like the device reads. Audit writes are plain idempotent upserts: an
//! entry's id is unique, so a repeat writes the same values again.

use super::{Kind, Statement};

/// One directory record (its kind is the partition, known to the caller).
pub(crate) const GET_ACCESS: Statement = Statement {
    name: "get_access",
    cql: "SELECT tenant, body, updated_at_ms FROM {ks}.access WHERE kind = ? AND id = ?",
    kind: Kind::Read,
    binds: &["kind", "id"],
};

/// The next records of a kind in id order: one page of a listing.
pub(crate) const LIST_ACCESS: Statement = Statement {
    name: "list_access",
    cql: "SELECT id, tenant, body, updated_at_ms FROM {ks}.access \
          WHERE kind = ? AND id > ? LIMIT ?",
    kind: Kind::Read,
    binds: &["kind", "id", "limit"],
};

pub(crate) const CREATE_ACCESS: Statement = Statement {
    name: "create_access",
    cql: "INSERT INTO {ks}.access (kind, id, tenant, body, updated_at_ms) \
          VALUES (?, ?, ?, ?, ?) IF NOT EXISTS",
    kind: Kind::Lwt,
    binds: &["kind", "id", "tenant", "body", "updated_at_ms"],
};

/// Replaces the record's tenant and body; applies only if the record exists (a plain
/// UPDATE would create it).
pub(crate) const UPDATE_ACCESS: Statement = Statement {
    name: "update_access",
    cql: "UPDATE {ks}.access SET tenant = ?, body = ?, updated_at_ms = ? \
          WHERE kind = ? AND id = ? IF EXISTS",
    kind: Kind::Lwt,
    binds: &["tenant", "body", "updated_at_ms", "kind", "id"],
};

/// Applied only if the record existed: `[applied]` is the answer of `delete_access`.
pub(crate) const DELETE_ACCESS: Statement = Statement {
    name: "delete_access",
    cql: "DELETE FROM {ks}.access WHERE kind = ? AND id = ? IF EXISTS",
    kind: Kind::Lwt,
    binds: &["kind", "id"],
};

/// Marks an hour as having audit entries (written before them).
pub(crate) const PUT_AUDIT_HOUR: Statement = Statement {
    name: "put_audit_hour",
    cql: "INSERT INTO {ks}.audit_hours (bucket, hour) VALUES (0, ?)",
    kind: Kind::Write,
    binds: &["hour"],
};

/// The next marked hours of a range, oldest first.
pub(crate) const AUDIT_HOURS: Statement = Statement {
    name: "audit_hours",
    cql: "SELECT hour FROM {ks}.audit_hours WHERE bucket = 0 AND hour >= ? AND hour <= ? \
          LIMIT ?",
    kind: Kind::Read,
    binds: &["hour", "hour", "limit"],
};

pub(crate) const PUT_AUDIT: Statement = Statement {
    name: "put_audit",
    cql: "INSERT INTO {ks}.audit \
          (hour, id, at_ms, actor, tenant, action, target, source, status, outcome) \
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    kind: Kind::Write,
    binds: &[
        "hour", "id", "at_ms", "actor", "tenant", "action", "target", "source", "status", "outcome",
    ],
};

/// The next entries of an hour between two ids (both exclusive), in id order.
pub(crate) const AUDIT_PAGE: Statement = Statement {
    name: "audit_page",
    cql: "SELECT id, at_ms, actor, tenant, action, target, source, status, outcome \
          FROM {ks}.audit WHERE hour = ? AND id > ? AND id < ? LIMIT ?",
    kind: Kind::Read,
    binds: &["hour", "id", "id", "limit"],
};
