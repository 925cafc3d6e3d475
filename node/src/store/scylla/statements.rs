//! Every CQL statement the store prepares, with the names of its bind markers in order.
//!
//! Values are bound by name through [`Statement::bind`], which checks the names against
//! [`Statement::binds`]; a unit test checks `binds` against the markers of the text. So a
//! statement, its markers and the Rust values bound to it cannot drift apart unnoticed.
//!
//! The statements of some concepts live in a child module of `statements/` (the
//! access directory and the audit log: `statements/access.rs`; contact books:
//! `statements/contacts.rs`; messages, the outbox and
//! send slots: `statements/messages.rs`; webhook deliveries:
//! `statements/deliveries.rs`; campaigns: `statements/jobs.rs`), re-exported here, so
//! that one path names every statement and [`ALL`] lists them all.

use scylla::value::{CqlValue, MaybeUnset};

mod access;
mod contacts;
mod deliveries;
mod jobs;
mod messages;

pub(crate) use self::access::{
    AUDIT_HOURS, AUDIT_PAGE, CREATE_ACCESS, DELETE_ACCESS, GET_ACCESS, LIST_ACCESS, PUT_AUDIT,
    PUT_AUDIT_HOUR, UPDATE_ACCESS,
};
pub(crate) use self::contacts::{
    CONTACTS_VERSION_SERIAL, DELETE_CONTACT_ROW, LIST_CONTACT_ROWS, LIST_TAG_COUNTS,
    PUT_CONTACT_ROW, PUT_TAG_COUNT, SELECT_CONTACT_ROW, SET_CONTACTS_VERSION,
};
pub(crate) use self::deliveries::{
    DELETE_DELIVERED_ENTRY, DELETE_DELIVERIES, DELETE_DELIVERY_ROW, DELIVERED_DAYS,
    DELIVERED_ENTRIES, DELIVERY_MARKS_SERIAL, DELIVERY_TALLIES, DUE_DELIVERIES, LIST_DELIVERIES,
    LIST_DELIVERIES_BY_STATUS, PUT_DELIVERED_ENTRY, PUT_DELIVERY, PUT_DELIVERY_MARK,
    SELECT_DELIVERY_CLAIM_SERIAL, SELECT_DELIVERY_SERIAL, SELECT_DELIVERY_TALLY,
    SELECT_DELIVERY_TALLY_SERIAL, SET_DELIVERY_TALLY,
};
pub(crate) use self::jobs::{
    DELETE_JOB, DELETE_JOB_ENTRY, DELETE_JOB_MARK, DELETE_JOB_RECIPIENTS, INSERT_JOB,
    LIST_JOB_ENTRIES, LIST_JOB_MARKS, LIST_JOB_RECIPIENTS, PUT_JOB_ENTRY, PUT_JOB_MARK,
    PUT_JOB_RECIPIENT, SELECT_JOB, SELECT_JOB_RECIPIENT, SELECT_JOB_SERIAL, SELECT_JOB_TALLY,
    SELECT_JOB_TALLY_SERIAL, SET_JOB_RECIPIENT, SET_JOB_TALLY, UPDATE_JOB,
};
pub(crate) use self::messages::{
    ADVANCE_DELIVERED, ADVANCE_FAILED, ADVANCE_READ, ADVANCE_SENT, CANCEL_MESSAGE, CLAIM_KEY,
    DELETE_MESSAGES, DELETE_OUTBOX, DELETE_SCHEDULE, DELETE_SLOTS, INSERT_MESSAGE, LIST_MESSAGES,
    OUTBOX_ADD, OUTBOX_LIST, OUTBOX_REMOVE, PROMOTE_MESSAGE, RESCHEDULE_MESSAGE, SCHEDULE_ADD,
    SCHEDULE_LIST, SCHEDULE_REMOVE, SELECT_KEY_SERIAL, SELECT_MESSAGE, SELECT_MESSAGE_SERIAL,
    SLOT_DELETE, SLOT_PUT, SLOTS_SINCE,
};

/// One bound value: unset (the column is left alone), null, or a value.
pub(crate) type Bound = MaybeUnset<Option<CqlValue>>;

/// How a statement runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A read at LOCAL_QUORUM; idempotent, so the retry policy may retry it.
    Read,
    /// A linearizable read (LOCAL_SERIAL): sees every applied or in-flight LWT.
    SerialRead,
    /// A plain write whose replay is harmless (idempotent).
    Write,
    /// A lightweight transaction (LOCAL_SERIAL); never retried blindly: a timeout
    /// leaves its outcome unknown.
    Lwt,
}

/// A statement: its name (for errors), text (`{ks}` = keyspace), kind and bind names.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Statement {
    pub(crate) name: &'static str,
    pub(crate) cql: &'static str,
    pub(crate) kind: Kind,
    /// One name per `?`, in order; conditions (`IF x = ?`) are named `if_x`.
    pub(crate) binds: &'static [&'static str],
}

impl Statement {
    /// The values for this statement, given as (name, value) in marker order.
    ///
    /// # Panics
    /// If the names are not exactly [`Statement::binds`]: a bug in this file, caught by
    /// every test that runs the statement.
    pub(crate) fn bind(&self, named: Vec<(&'static str, Bound)>) -> Vec<Bound> {
        let names: Vec<&str> = named.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, self.binds, "bind names of {}", self.name);
        named.into_iter().map(|(_, value)| value).collect()
    }
}

// ---- value helpers ----

pub(crate) fn text(value: &str) -> Bound {
    MaybeUnset::Set(Some(CqlValue::Text(value.to_owned())))
}

pub(crate) fn opt_text(value: Option<&str>) -> Bound {
    MaybeUnset::Set(value.map(|v| CqlValue::Text(v.to_owned())))
}

pub(crate) fn big(value: i64) -> Bound {
    MaybeUnset::Set(Some(CqlValue::BigInt(value)))
}

pub(crate) fn opt_big(value: Option<i64>) -> Bound {
    MaybeUnset::Set(value.map(CqlValue::BigInt))
}

pub(crate) fn int(value: i32) -> Bound {
    MaybeUnset::Set(Some(CqlValue::Int(value)))
}

pub(crate) fn opt_int(value: Option<i32>) -> Bound {
    MaybeUnset::Set(value.map(CqlValue::Int))
}

pub(crate) fn boolean(value: bool) -> Bound {
    MaybeUnset::Set(Some(CqlValue::Boolean(value)))
}

pub(crate) fn blob(value: &[u8]) -> Bound {
    MaybeUnset::Set(Some(CqlValue::Blob(value.to_vec())))
}

/// `Some(v)` binds `f(v)`, `None` leaves the column alone.
pub(crate) fn set_or_unset<T>(value: Option<T>, f: impl FnOnce(T) -> Bound) -> Bound {
    value.map_or(MaybeUnset::Unset, f)
}

// ---- devices and link state ----

macro_rules! device_columns {
    () => {
        "device_id, name, tenant, status, status_reason, trust_level, phone, webhook, \
         desired_running, created_at_ms, updated_at_ms, last_connected_at_ms"
    };
}

/// The device row plus the partition's `version` and `fence_epoch` (static columns, so
/// `LIMIT 1` reads them whether or not the device has link state).
pub(crate) const SELECT_DEVICE: Statement = Statement {
    name: "select_device",
    cql: concat!(
        "SELECT ",
        device_columns!(),
        ", version, fence_epoch FROM {ks}.devices WHERE device_id = ? LIMIT 1"
    ),
    kind: Kind::Read,
    binds: &["device_id"],
};

/// [`SELECT_DEVICE`] at LOCAL_SERIAL: the state a compare-and-set will be judged on.
pub(crate) const SELECT_DEVICE_SERIAL: Statement = Statement {
    name: "select_device_serial",
    kind: Kind::SerialRead,
    ..SELECT_DEVICE
};

pub(crate) const INSERT_DEVICE: Statement = Statement {
    name: "insert_device",
    cql: concat!(
        "INSERT INTO {ks}.devices (",
        device_columns!(),
        ", version, fence_epoch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0) IF NOT EXISTS"
    ),
    kind: Kind::Lwt,
    binds: &[
        "device_id",
        "name",
        "tenant",
        "status",
        "status_reason",
        "trust_level",
        "phone",
        "webhook",
        "desired_running",
        "created_at_ms",
        "updated_at_ms",
        "last_connected_at_ms",
    ],
};

/// A patch: unset values leave their column alone; always a compare-and-set on the
/// partition's `version`.
pub(crate) const PATCH_DEVICE: Statement = Statement {
    name: "patch_device",
    cql: "UPDATE {ks}.devices SET name = ?, status = ?, status_reason = ?, trust_level = ?, \
          phone = ?, webhook = ?, desired_running = ?, last_connected_at_ms = ?, \
          updated_at_ms = ?, version = ?, fence_epoch = ? WHERE device_id = ? IF version = ?",
    kind: Kind::Lwt,
    binds: &[
        "name",
        "status",
        "status_reason",
        "trust_level",
        "phone",
        "webhook",
        "desired_running",
        "last_connected_at_ms",
        "updated_at_ms",
        "version",
        "fence_epoch",
        "device_id",
        "if_version",
    ],
};

/// Deletes the whole partition (the device and its link state) if no write came between.
pub(crate) const DELETE_DEVICE: Statement = Statement {
    name: "delete_device",
    cql: "DELETE FROM {ks}.devices WHERE device_id = ? IF version = ?",
    kind: Kind::Lwt,
    binds: &["device_id", "if_version"],
};

pub(crate) const INDEX_DEVICE: Statement = Statement {
    name: "index_device",
    cql: "INSERT INTO {ks}.device_ids (bucket, device_id) VALUES (0, ?)",
    kind: Kind::Write,
    binds: &["device_id"],
};

pub(crate) const UNINDEX_DEVICE: Statement = Statement {
    name: "unindex_device",
    cql: "DELETE FROM {ks}.device_ids WHERE bucket = 0 AND device_id = ?",
    kind: Kind::Write,
    binds: &["device_id"],
};

pub(crate) const LIST_DEVICE_IDS: Statement = Statement {
    name: "list_device_ids",
    cql: "SELECT device_id FROM {ks}.device_ids WHERE bucket = 0 AND device_id > ? LIMIT ?",
    kind: Kind::Read,
    binds: &["device_id", "limit"],
};

/// One row per device partition: its status (static), for the counts.
pub(crate) const DEVICE_STATUSES: Statement = Statement {
    name: "device_statuses",
    cql: "SELECT DISTINCT device_id, status FROM {ks}.devices",
    kind: Kind::Read,
    binds: &[],
};

pub(crate) const SELECT_LINK_STATE: Statement = Statement {
    name: "select_link_state",
    cql: "SELECT key_version, value FROM {ks}.devices \
          WHERE device_id = ? AND namespace = ? AND key = ?",
    kind: Kind::Read,
    binds: &["device_id", "namespace", "key"],
};

/// [`SELECT_LINK_STATE`] at LOCAL_SERIAL, before a conditional delete.
pub(crate) const SELECT_LINK_STATE_SERIAL: Statement = Statement {
    name: "select_link_state_serial",
    kind: Kind::SerialRead,
    ..SELECT_LINK_STATE
};

pub(crate) const LIST_LINK_STATE: Statement = Statement {
    name: "list_link_state",
    cql: "SELECT key, key_version, value FROM {ks}.devices WHERE device_id = ? AND namespace = ?",
    kind: Kind::Read,
    binds: &["device_id", "namespace"],
};

/// Every link-state row of a device with the partition's `version`, at LOCAL_SERIAL
/// (a device without link state gives one row with a null namespace).
pub(crate) const LINK_STATE_KEYS_SERIAL: Statement = Statement {
    name: "link_state_keys_serial",
    cql: "SELECT namespace, key, version, fence_epoch FROM {ks}.devices WHERE device_id = ?",
    kind: Kind::SerialRead,
    binds: &["device_id"],
};

pub(crate) const PUT_LINK_STATE: Statement = Statement {
    name: "put_link_state",
    cql: "UPDATE {ks}.devices SET key_version = ?, value = ?, version = ?, fence_epoch = ? \
          WHERE device_id = ? AND namespace = ? AND key = ? IF version = ?",
    kind: Kind::Lwt,
    binds: &[
        "key_version",
        "value",
        "version",
        "fence_epoch",
        "device_id",
        "namespace",
        "key",
        "if_version",
    ],
};

/// Part of a conditional batch with [`BUMP_DEVICE`] (many records in one write).
pub(crate) const SET_LINK_STATE: Statement = Statement {
    name: "set_link_state",
    cql: "UPDATE {ks}.devices SET key_version = ?, value = ? \
          WHERE device_id = ? AND namespace = ? AND key = ?",
    kind: Kind::Lwt,
    binds: &["key_version", "value", "device_id", "namespace", "key"],
};

/// Part of a conditional batch with [`BUMP_DEVICE`].
pub(crate) const DELETE_LINK_STATE: Statement = Statement {
    name: "delete_link_state",
    cql: "DELETE FROM {ks}.devices WHERE device_id = ? AND namespace = ? AND key = ?",
    kind: Kind::Lwt,
    binds: &["device_id", "namespace", "key"],
};

/// The condition of a batch of link-state deletes: the partition is as read.
pub(crate) const BUMP_DEVICE: Statement = Statement {
    name: "bump_device",
    cql: "UPDATE {ks}.devices SET version = ?, fence_epoch = ? WHERE device_id = ? IF version = ?",
    kind: Kind::Lwt,
    binds: &["version", "fence_epoch", "device_id", "if_version"],
};

// ---- devices by shard ----

/// Sets a device's entry in its shard's partition.
pub(crate) const PUT_SHARD_ENTRY: Statement = Statement {
    name: "put_shard_entry",
    cql: "INSERT INTO {ks}.devices_by_shard (shard, device_id, desired_running) VALUES (?, ?, ?)",
    kind: Kind::Write,
    binds: &["shard", "device_id", "desired_running"],
};

pub(crate) const DELETE_SHARD_ENTRY: Statement = Statement {
    name: "delete_shard_entry",
    cql: "DELETE FROM {ks}.devices_by_shard WHERE shard = ? AND device_id = ?",
    kind: Kind::Write,
    binds: &["shard", "device_id"],
};

/// A shard's entries (one partition, paged), for recovery.
pub(crate) const SHARD_ENTRIES: Statement = Statement {
    name: "shard_entries",
    cql: "SELECT device_id, desired_running FROM {ks}.devices_by_shard WHERE shard = ?",
    kind: Kind::Read,
    binds: &["shard"],
};

// ---- leases ----

pub(crate) const SELECT_LEASE_SERIAL: Statement = Statement {
    name: "select_lease_serial",
    cql: "SELECT holder, epoch, expires_at_ms FROM {ks}.leases WHERE shard = ?",
    kind: Kind::SerialRead,
    binds: &["shard"],
};

pub(crate) const LIST_LEASES: Statement = Statement {
    name: "list_leases",
    cql: "SELECT shard, holder, epoch, expires_at_ms FROM {ks}.leases",
    kind: Kind::Read,
    binds: &[],
};

pub(crate) const INSERT_LEASE: Statement = Statement {
    name: "insert_lease",
    cql: "INSERT INTO {ks}.leases (shard, holder, epoch, expires_at_ms) VALUES (?, ?, ?, ?) \
          IF NOT EXISTS",
    kind: Kind::Lwt,
    binds: &["shard", "holder", "epoch", "expires_at_ms"],
};

/// A compare-and-set of the whole slot, as it was read.
pub(crate) const UPDATE_LEASE: Statement = Statement {
    name: "update_lease",
    cql: "UPDATE {ks}.leases SET holder = ?, epoch = ?, expires_at_ms = ? WHERE shard = ? \
          IF holder = ? AND epoch = ? AND expires_at_ms = ?",
    kind: Kind::Lwt,
    binds: &[
        "holder",
        "epoch",
        "expires_at_ms",
        "shard",
        "if_holder",
        "if_epoch",
        "if_expires_at_ms",
    ],
};

// ---- settings and schema ----

pub(crate) const GET_SETTING: Statement = Statement {
    name: "get_setting",
    cql: "SELECT value, updated_at_ms FROM {ks}.settings WHERE key = ?",
    kind: Kind::Read,
    binds: &["key"],
};

pub(crate) const PUT_SETTING: Statement = Statement {
    name: "put_setting",
    cql: "INSERT INTO {ks}.settings (key, value, updated_at_ms) VALUES (?, ?, ?)",
    kind: Kind::Write,
    binds: &["key", "value", "updated_at_ms"],
};

/// [`GET_SETTING`] at LOCAL_SERIAL: a setting written by [`CLAIM_SETTING`].
pub(crate) const GET_SETTING_SERIAL: Statement = Statement {
    name: "get_setting_serial",
    kind: Kind::SerialRead,
    ..GET_SETTING
};

/// Puts a setting only if nobody has (the store's shard count, recorded once).
pub(crate) const CLAIM_SETTING: Statement = Statement {
    name: "claim_setting",
    cql: "INSERT INTO {ks}.settings (key, value, updated_at_ms) VALUES (?, ?, ?) IF NOT EXISTS",
    kind: Kind::Lwt,
    binds: &["key", "value", "updated_at_ms"],
};

pub(crate) const GET_SCHEMA_VERSION: Statement = Statement {
    name: "get_schema_version",
    cql: "SELECT version FROM {ks}.schema_version WHERE component = ?",
    kind: Kind::SerialRead,
    binds: &["component"],
};

pub(crate) const PUT_SCHEMA_VERSION: Statement = Statement {
    name: "put_schema_version",
    cql: "INSERT INTO {ks}.schema_version (component, version, updated_at_ms) VALUES (?, ?, ?)",
    kind: Kind::Write,
    binds: &["component", "version", "updated_at_ms"],
};

/// Every statement, for preparing and for the tests.
pub(crate) const ALL: &[Statement] = &[
    SELECT_DEVICE,
    SELECT_DEVICE_SERIAL,
    INSERT_DEVICE,
    PATCH_DEVICE,
    DELETE_DEVICE,
    INDEX_DEVICE,
    UNINDEX_DEVICE,
    LIST_DEVICE_IDS,
    DEVICE_STATUSES,
    SELECT_LINK_STATE,
    SELECT_LINK_STATE_SERIAL,
    LIST_LINK_STATE,
    LINK_STATE_KEYS_SERIAL,
    PUT_LINK_STATE,
    SET_LINK_STATE,
    DELETE_LINK_STATE,
    BUMP_DEVICE,
    PUT_SHARD_ENTRY,
    DELETE_SHARD_ENTRY,
    SHARD_ENTRIES,
    SELECT_MESSAGE,
    LIST_MESSAGES,
    SELECT_MESSAGE_SERIAL,
    SELECT_KEY_SERIAL,
    INSERT_MESSAGE,
    CLAIM_KEY,
    ADVANCE_SENT,
    ADVANCE_DELIVERED,
    ADVANCE_READ,
    ADVANCE_FAILED,
    RESCHEDULE_MESSAGE,
    PROMOTE_MESSAGE,
    CANCEL_MESSAGE,
    DELETE_MESSAGES,
    OUTBOX_ADD,
    OUTBOX_REMOVE,
    OUTBOX_LIST,
    DELETE_OUTBOX,
    SCHEDULE_ADD,
    SCHEDULE_REMOVE,
    SCHEDULE_LIST,
    DELETE_SCHEDULE,
    SLOT_PUT,
    SLOT_DELETE,
    SLOTS_SINCE,
    DELETE_SLOTS,
    SELECT_DELIVERY_TALLY_SERIAL,
    SELECT_DELIVERY_TALLY,
    SELECT_DELIVERY_CLAIM_SERIAL,
    SELECT_DELIVERY_SERIAL,
    DELIVERY_MARKS_SERIAL,
    DUE_DELIVERIES,
    LIST_DELIVERIES,
    LIST_DELIVERIES_BY_STATUS,
    DELIVERY_TALLIES,
    SET_DELIVERY_TALLY,
    PUT_DELIVERY,
    PUT_DELIVERY_MARK,
    DELETE_DELIVERY_ROW,
    DELETE_DELIVERIES,
    PUT_DELIVERED_ENTRY,
    DELETE_DELIVERED_ENTRY,
    DELIVERED_ENTRIES,
    DELIVERED_DAYS,
    SELECT_LEASE_SERIAL,
    LIST_LEASES,
    INSERT_LEASE,
    UPDATE_LEASE,
    GET_SETTING,
    PUT_SETTING,
    GET_SETTING_SERIAL,
    CLAIM_SETTING,
    GET_SCHEMA_VERSION,
    PUT_SCHEMA_VERSION,
    GET_ACCESS,
    LIST_ACCESS,
    CREATE_ACCESS,
    UPDATE_ACCESS,
    DELETE_ACCESS,
    PUT_AUDIT_HOUR,
    AUDIT_HOURS,
    PUT_AUDIT,
    AUDIT_PAGE,
    CONTACTS_VERSION_SERIAL,
    SELECT_CONTACT_ROW,
    LIST_CONTACT_ROWS,
    LIST_TAG_COUNTS,
    SET_CONTACTS_VERSION,
    PUT_CONTACT_ROW,
    PUT_TAG_COUNT,
    DELETE_CONTACT_ROW,
    SELECT_JOB,
    SELECT_JOB_SERIAL,
    INSERT_JOB,
    UPDATE_JOB,
    DELETE_JOB,
    PUT_JOB_ENTRY,
    DELETE_JOB_ENTRY,
    LIST_JOB_ENTRIES,
    SELECT_JOB_TALLY_SERIAL,
    SELECT_JOB_TALLY,
    SELECT_JOB_RECIPIENT,
    LIST_JOB_RECIPIENTS,
    LIST_JOB_MARKS,
    SET_JOB_TALLY,
    PUT_JOB_RECIPIENT,
    SET_JOB_RECIPIENT,
    PUT_JOB_MARK,
    DELETE_JOB_MARK,
    DELETE_JOB_RECIPIENTS,
];

#[cfg(test)]
mod tests;
