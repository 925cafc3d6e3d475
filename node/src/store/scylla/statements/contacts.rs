//! The statements of the contact books (`contacts`); schema step 5, used by
//! `scylla/contacts.rs`.
//!
//! Every write is part of a conditional batch led by [`SET_CONTACTS_VERSION`] (one
//! partition: the tenant's), so they are all LWT statements; reads are plain
//! LOCAL_QUORUM reads made after the LOCAL_SERIAL read of the version they are judged
//! on, which sees every batch that applied before it.

use super::{Kind, Statement};

/// The partition's `version` (LOCAL_SERIAL): what the next batch is conditioned on.
pub(crate) const CONTACTS_VERSION_SERIAL: Statement = Statement {
    name: "contacts_version_serial",
    cql: "SELECT version FROM {ks}.contacts WHERE tenant = ? LIMIT 1",
    kind: Kind::SerialRead,
    binds: &["tenant"],
};

/// One row of the partition: a contact ('c'), a copy under a tag ('t') or a tag count
/// ('n').
pub(crate) const SELECT_CONTACT_ROW: Statement = Statement {
    name: "select_contact_row",
    cql: "SELECT name, tags, created_at_ms, updated_at_ms, tagged FROM {ks}.contacts \
          WHERE tenant = ? AND row_kind = ? AND tag = ? AND phone = ?",
    kind: Kind::Read,
    binds: &["tenant", "row_kind", "tag", "phone"],
};

/// The next contacts of a slice (all contacts: kind 'c', tag ''; those with a tag:
/// kind 't' and the tag), in phone order.
pub(crate) const LIST_CONTACT_ROWS: Statement = Statement {
    name: "list_contact_rows",
    cql: "SELECT phone, name, tags, created_at_ms, updated_at_ms FROM {ks}.contacts \
          WHERE tenant = ? AND row_kind = ? AND tag = ? AND phone > ? LIMIT ?",
    kind: Kind::Read,
    binds: &["tenant", "row_kind", "tag", "phone", "limit"],
};

/// The next tag counts ('n' rows) in tag order.
pub(crate) const LIST_TAG_COUNTS: Statement = Statement {
    name: "list_tag_counts",
    cql: "SELECT tag, tagged FROM {ks}.contacts \
          WHERE tenant = ? AND row_kind = ? AND tag > ? LIMIT ?",
    kind: Kind::Read,
    binds: &["tenant", "row_kind", "tag", "limit"],
};

/// The condition of every batch: the version read, and the next one.
pub(crate) const SET_CONTACTS_VERSION: Statement = Statement {
    name: "set_contacts_version",
    cql: "UPDATE {ks}.contacts SET version = ? WHERE tenant = ? IF version = ?",
    kind: Kind::Lwt,
    binds: &["version", "tenant", "if_version"],
};

/// A contact ('c') or its copy under a tag ('t'), whole.
pub(crate) const PUT_CONTACT_ROW: Statement = Statement {
    name: "put_contact_row",
    cql: "INSERT INTO {ks}.contacts \
          (tenant, row_kind, tag, phone, name, tags, created_at_ms, updated_at_ms) \
          VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    kind: Kind::Lwt,
    binds: &[
        "tenant",
        "row_kind",
        "tag",
        "phone",
        "name",
        "tags",
        "created_at_ms",
        "updated_at_ms",
    ],
};

/// A tag count ('n').
pub(crate) const PUT_TAG_COUNT: Statement = Statement {
    name: "put_tag_count",
    cql: "INSERT INTO {ks}.contacts (tenant, row_kind, tag, phone, tagged) \
          VALUES (?, ?, ?, ?, ?)",
    kind: Kind::Lwt,
    binds: &["tenant", "row_kind", "tag", "phone", "tagged"],
};

/// Any one row of the partition.
pub(crate) const DELETE_CONTACT_ROW: Statement = Statement {
    name: "delete_contact_row",
    cql: "DELETE FROM {ks}.contacts WHERE tenant = ? AND row_kind = ? AND tag = ? AND phone = ?",
    kind: Kind::Lwt,
    binds: &["tenant", "row_kind", "tag", "phone"],
};
