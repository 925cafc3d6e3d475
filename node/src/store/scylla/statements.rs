//! Every CQL statement the store prepares, with the names of its bind markers in order.
//!
//! Values are bound by name through [`Statement::bind`], which checks the names against
//! [`Statement::binds`]; a unit test checks `binds` against the markers of the text. So a
//! statement, its markers and the Rust values bound to it cannot drift apart unnoticed.
//!
//! The statements of a later concept live in a child module of `statements/` (the
//! access directory and the audit log: `statements/access.rs`), re-exported here, so
//! that one path names every statement and [`ALL`] lists them all.

use scylla::value::{CqlValue, MaybeUnset};

mod access;

pub(crate) use self::access::{
    AUDIT_HOURS, AUDIT_PAGE, CREATE_ACCESS, DELETE_ACCESS, GET_ACCESS, LIST_ACCESS, PUT_AUDIT,
    PUT_AUDIT_HOUR, UPDATE_ACCESS,
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

// ---- messages ----

macro_rules! message_columns {
    () => {
        "device_id, row_id, direction, peer_phone, text, status, error, idempotency_key, \
         created_at_ms, not_before_ms, sent_at_ms, delivered_at_ms, read_at_ms, failed_at_ms"
    };
}

pub(crate) const SELECT_MESSAGE: Statement = Statement {
    name: "select_message",
    cql: concat!(
        "SELECT ",
        message_columns!(),
        " FROM {ks}.messages WHERE device_id = ? AND row_kind = 'm' AND row_id = ?"
    ),
    kind: Kind::Read,
    binds: &["device_id", "row_id"],
};

/// Every message of a device (the message log: filtered and ordered by the caller).
pub(crate) const LIST_MESSAGES: Statement = Statement {
    name: "list_messages",
    cql: concat!(
        "SELECT ",
        message_columns!(),
        " FROM {ks}.messages WHERE device_id = ? AND row_kind = 'm'"
    ),
    kind: Kind::Read,
    binds: &["device_id"],
};

/// [`SELECT_MESSAGE`] at LOCAL_SERIAL: after a refused conditional insert or update.
pub(crate) const SELECT_MESSAGE_SERIAL: Statement = Statement {
    name: "select_message_serial",
    kind: Kind::SerialRead,
    ..SELECT_MESSAGE
};

/// Which message holds an idempotency key, at LOCAL_SERIAL.
pub(crate) const SELECT_KEY_SERIAL: Statement = Statement {
    name: "select_key_serial",
    cql: "SELECT message_id FROM {ks}.messages \
          WHERE device_id = ? AND row_kind = 'k' AND row_id = ?",
    kind: Kind::SerialRead,
    binds: &["device_id", "row_id"],
};

pub(crate) const INSERT_MESSAGE: Statement = Statement {
    name: "insert_message",
    cql: concat!(
        "INSERT INTO {ks}.messages (row_kind, ",
        message_columns!(),
        ") VALUES ('m', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
    ),
    kind: Kind::Lwt,
    binds: &[
        "device_id",
        "row_id",
        "direction",
        "peer_phone",
        "text",
        "status",
        "error",
        "idempotency_key",
        "created_at_ms",
        "not_before_ms",
        "sent_at_ms",
        "delivered_at_ms",
        "read_at_ms",
        "failed_at_ms",
    ],
};

/// Claims an idempotency key for a message; batched with [`INSERT_MESSAGE`].
pub(crate) const CLAIM_KEY: Statement = Statement {
    name: "claim_key",
    cql: "INSERT INTO {ks}.messages (device_id, row_kind, row_id, message_id) \
          VALUES (?, 'k', ?, ?) IF NOT EXISTS",
    kind: Kind::Lwt,
    binds: &["device_id", "row_id", "message_id"],
};

macro_rules! advance {
    ($name:literal, $column:literal) => {
        Statement {
            name: $name,
            cql: concat!(
                "UPDATE {ks}.messages SET status = ?, ",
                $column,
                " = ?, error = ? WHERE device_id = ? AND row_kind = 'm' AND row_id = ? \
                 IF status = ?"
            ),
            kind: Kind::Lwt,
            binds: &[
                "status",
                $column,
                "error",
                "device_id",
                "row_id",
                "if_status",
            ],
        }
    };
}

pub(crate) const ADVANCE_SENT: Statement = advance!("advance_sent", "sent_at_ms");
pub(crate) const ADVANCE_DELIVERED: Statement = advance!("advance_delivered", "delivered_at_ms");
pub(crate) const ADVANCE_READ: Statement = advance!("advance_read", "read_at_ms");
pub(crate) const ADVANCE_FAILED: Statement = advance!("advance_failed", "failed_at_ms");

pub(crate) const RESCHEDULE_MESSAGE: Statement = Statement {
    name: "reschedule_message",
    cql: "UPDATE {ks}.messages SET not_before_ms = ? \
          WHERE device_id = ? AND row_kind = 'm' AND row_id = ? \
          IF status = 'queued' AND direction = 'outbound'",
    kind: Kind::Lwt,
    binds: &["not_before_ms", "device_id", "row_id"],
};

pub(crate) const DELETE_MESSAGES: Statement = Statement {
    name: "delete_messages",
    cql: "DELETE FROM {ks}.messages WHERE device_id = ?",
    kind: Kind::Write,
    binds: &["device_id"],
};

pub(crate) const OUTBOX_ADD: Statement = Statement {
    name: "outbox_add",
    cql: "INSERT INTO {ks}.outbox (device_id, created_at_ms, message_id) VALUES (?, ?, ?)",
    kind: Kind::Write,
    binds: &["device_id", "created_at_ms", "message_id"],
};

pub(crate) const OUTBOX_REMOVE: Statement = Statement {
    name: "outbox_remove",
    cql: "DELETE FROM {ks}.outbox WHERE device_id = ? AND created_at_ms = ? AND message_id = ?",
    kind: Kind::Write,
    binds: &["device_id", "created_at_ms", "message_id"],
};

pub(crate) const OUTBOX_LIST: Statement = Statement {
    name: "outbox_list",
    cql: "SELECT created_at_ms, message_id FROM {ks}.outbox WHERE device_id = ?",
    kind: Kind::Read,
    binds: &["device_id"],
};

pub(crate) const DELETE_OUTBOX: Statement = Statement {
    name: "delete_outbox",
    cql: "DELETE FROM {ks}.outbox WHERE device_id = ?",
    kind: Kind::Write,
    binds: &["device_id"],
};

pub(crate) const SLOT_PUT: Statement = Statement {
    name: "slot_put",
    cql: "INSERT INTO {ks}.outbound_slots (device_id, created_at_ms, message_id, slot_ms) \
          VALUES (?, ?, ?, ?)",
    kind: Kind::Write,
    binds: &["device_id", "created_at_ms", "message_id", "slot_ms"],
};

pub(crate) const SLOT_DELETE: Statement = Statement {
    name: "slot_delete",
    cql: "DELETE FROM {ks}.outbound_slots \
          WHERE device_id = ? AND created_at_ms = ? AND message_id = ?",
    kind: Kind::Write,
    binds: &["device_id", "created_at_ms", "message_id"],
};

pub(crate) const SLOTS_SINCE: Statement = Statement {
    name: "slots_since",
    cql: "SELECT slot_ms FROM {ks}.outbound_slots WHERE device_id = ? AND created_at_ms >= ?",
    kind: Kind::Read,
    binds: &["device_id", "created_at_ms"],
};

pub(crate) const DELETE_SLOTS: Statement = Statement {
    name: "delete_slots",
    cql: "DELETE FROM {ks}.outbound_slots WHERE device_id = ?",
    kind: Kind::Write,
    binds: &["device_id"],
};

// ---- webhook deliveries ----

macro_rules! delivery_columns {
    () => {
        "device_id, seq, event_id, tenant, event, data, created_at_ms, status, attempts, \
         next_attempt_ms, last_status_code, last_error, delivered_at_ms"
    };
}

macro_rules! tally_columns {
    () => {
        "version, pending, failed, dead, due_floor, oldest_due_ms"
    };
}

/// The partition's tally (static columns) at LOCAL_SERIAL, before a compare-and-set.
pub(crate) const SELECT_DELIVERY_TALLY_SERIAL: Statement = Statement {
    name: "select_delivery_tally_serial",
    cql: concat!(
        "SELECT ",
        tally_columns!(),
        " FROM {ks}.deliveries WHERE device_id = ? LIMIT 1"
    ),
    kind: Kind::SerialRead,
    binds: &["device_id"],
};

/// [`SELECT_DELIVERY_TALLY_SERIAL`] at LOCAL_QUORUM: where a reader starts and whether
/// anything is due.
pub(crate) const SELECT_DELIVERY_TALLY: Statement = Statement {
    name: "select_delivery_tally",
    kind: Kind::Read,
    ..SELECT_DELIVERY_TALLY_SERIAL
};

/// The `seq` an event id was recorded at (its claim row), at LOCAL_SERIAL.
pub(crate) const SELECT_DELIVERY_CLAIM_SERIAL: Statement = Statement {
    name: "select_delivery_claim_serial",
    cql: "SELECT event_seq FROM {ks}.deliveries \
          WHERE device_id = ? AND row_kind = 'e' AND seq = 0 AND event_id = ?",
    kind: Kind::SerialRead,
    binds: &["device_id", "event_id"],
};

/// One delivery with the partition's tally, at LOCAL_SERIAL, before a compare-and-set.
pub(crate) const SELECT_DELIVERY_SERIAL: Statement = Statement {
    name: "select_delivery_serial",
    cql: concat!(
        "SELECT ",
        delivery_columns!(),
        ", ",
        tally_columns!(),
        " FROM {ks}.deliveries WHERE device_id = ? AND row_kind = 'd' AND seq = ? AND event_id = ?"
    ),
    kind: Kind::SerialRead,
    binds: &["device_id", "seq", "event_id"],
};

/// The first marker rows ('q' by seq, 'o' by age) from a key on, at LOCAL_SERIAL: the
/// next lowest due seq or oldest due time when a delivery settles.
pub(crate) const DELIVERY_MARKS_SERIAL: Statement = Statement {
    name: "delivery_marks_serial",
    cql: "SELECT seq, event_id FROM {ks}.deliveries \
          WHERE device_id = ? AND row_kind = ? AND seq >= ? LIMIT ?",
    kind: Kind::SerialRead,
    binds: &["device_id", "row_kind", "seq", "limit"],
};

/// The due deliveries (their 'q' copies) in seq order, from the lowest due seq on.
pub(crate) const DUE_DELIVERIES: Statement = Statement {
    name: "due_deliveries",
    cql: concat!(
        "SELECT ",
        delivery_columns!(),
        " FROM {ks}.deliveries WHERE device_id = ? AND row_kind = 'q' AND seq >= ? LIMIT ?"
    ),
    kind: Kind::Read,
    binds: &["device_id", "seq", "limit"],
};

/// A device's deliveries before a seq, newest first.
pub(crate) const LIST_DELIVERIES: Statement = Statement {
    name: "list_deliveries",
    cql: concat!(
        "SELECT ",
        delivery_columns!(),
        " FROM {ks}.deliveries WHERE device_id = ? AND row_kind = 'd' AND seq < ? \
         ORDER BY row_kind DESC, seq DESC LIMIT ?"
    ),
    kind: Kind::Read,
    binds: &["device_id", "seq", "limit"],
};

/// [`LIST_DELIVERIES`] of one status: filtered by the replicas, within the partition.
pub(crate) const LIST_DELIVERIES_BY_STATUS: Statement = Statement {
    name: "list_deliveries_by_status",
    cql: concat!(
        "SELECT ",
        delivery_columns!(),
        " FROM {ks}.deliveries WHERE device_id = ? AND row_kind = 'd' AND seq < ? \
         AND status = ? ORDER BY row_kind DESC, seq DESC LIMIT ? ALLOW FILTERING"
    ),
    kind: Kind::Read,
    binds: &["device_id", "seq", "status", "limit"],
};

/// Every partition's tally (static columns only, one row per device), for the backlog.
pub(crate) const DELIVERY_TALLIES: Statement = Statement {
    name: "delivery_tallies",
    cql: "SELECT DISTINCT device_id, pending, failed, dead, oldest_due_ms FROM {ks}.deliveries",
    kind: Kind::Read,
    binds: &[],
};

/// The condition of every conditional batch of a deliveries partition: the tally as
/// read, written with `version` one up.
pub(crate) const SET_DELIVERY_TALLY: Statement = Statement {
    name: "set_delivery_tally",
    cql: "UPDATE {ks}.deliveries SET version = ?, pending = ?, failed = ?, dead = ?, \
          due_floor = ?, oldest_due_ms = ? WHERE device_id = ? IF version = ?",
    kind: Kind::Lwt,
    binds: &[
        "version",
        "pending",
        "failed",
        "dead",
        "due_floor",
        "oldest_due_ms",
        "device_id",
        "if_version",
    ],
};

/// A whole delivery row ('d') or its due copy ('q'); batched with [`SET_DELIVERY_TALLY`].
pub(crate) const PUT_DELIVERY: Statement = Statement {
    name: "put_delivery",
    cql: "INSERT INTO {ks}.deliveries (device_id, row_kind, seq, event_id, tenant, event, \
          data, created_at_ms, status, attempts, next_attempt_ms, last_status_code, \
          last_error, delivered_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    kind: Kind::Lwt,
    binds: &[
        "device_id",
        "row_kind",
        "seq",
        "event_id",
        "tenant",
        "event",
        "data",
        "created_at_ms",
        "status",
        "attempts",
        "next_attempt_ms",
        "last_status_code",
        "last_error",
        "delivered_at_ms",
    ],
};

/// An event id's claim ('e') or a due delivery's age marker ('o'); batched with
/// [`SET_DELIVERY_TALLY`].
pub(crate) const PUT_DELIVERY_MARK: Statement = Statement {
    name: "put_delivery_mark",
    cql: "INSERT INTO {ks}.deliveries (device_id, row_kind, seq, event_id, event_seq) \
          VALUES (?, ?, ?, ?, ?)",
    kind: Kind::Lwt,
    binds: &["device_id", "row_kind", "seq", "event_id", "event_seq"],
};

/// One row of a deliveries partition, of any kind; batched with [`SET_DELIVERY_TALLY`].
pub(crate) const DELETE_DELIVERY_ROW: Statement = Statement {
    name: "delete_delivery_row",
    cql: "DELETE FROM {ks}.deliveries \
          WHERE device_id = ? AND row_kind = ? AND seq = ? AND event_id = ?",
    kind: Kind::Lwt,
    binds: &["device_id", "row_kind", "seq", "event_id"],
};

/// A device's whole delivery log (its device is deleted).
pub(crate) const DELETE_DELIVERIES: Statement = Statement {
    name: "delete_deliveries",
    cql: "DELETE FROM {ks}.deliveries WHERE device_id = ?",
    kind: Kind::Write,
    binds: &["device_id"],
};

pub(crate) const PUT_DELIVERED_ENTRY: Statement = Statement {
    name: "put_delivered_entry",
    cql: "INSERT INTO {ks}.delivered_by_day (day, bucket, created_at_ms, device_id, seq, \
          event_id) VALUES (?, ?, ?, ?, ?, ?)",
    kind: Kind::Write,
    binds: &[
        "day",
        "bucket",
        "created_at_ms",
        "device_id",
        "seq",
        "event_id",
    ],
};

pub(crate) const DELETE_DELIVERED_ENTRY: Statement = Statement {
    name: "delete_delivered_entry",
    cql: "DELETE FROM {ks}.delivered_by_day WHERE day = ? AND bucket = ? \
          AND created_at_ms = ? AND device_id = ? AND seq = ? AND event_id = ?",
    kind: Kind::Write,
    binds: &[
        "day",
        "bucket",
        "created_at_ms",
        "device_id",
        "seq",
        "event_id",
    ],
};

/// One partition's entries recorded before a time, oldest first.
pub(crate) const DELIVERED_ENTRIES: Statement = Statement {
    name: "delivered_entries",
    cql: "SELECT created_at_ms, device_id, seq, event_id FROM {ks}.delivered_by_day \
          WHERE day = ? AND bucket = ? AND created_at_ms < ? LIMIT ?",
    kind: Kind::Read,
    binds: &["day", "bucket", "created_at_ms", "limit"],
};

/// The partitions of `delivered_by_day` (a few per day kept), for pruning.
pub(crate) const DELIVERED_DAYS: Statement = Statement {
    name: "delivered_days",
    cql: "SELECT DISTINCT day, bucket FROM {ks}.delivered_by_day",
    kind: Kind::Read,
    binds: &[],
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
    DELETE_MESSAGES,
    OUTBOX_ADD,
    OUTBOX_REMOVE,
    OUTBOX_LIST,
    DELETE_OUTBOX,
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
];

#[cfg(test)]
mod tests;
