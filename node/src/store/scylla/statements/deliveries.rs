//! The statements of webhook deliveries (`deliveries`: each device's recorded events and
//! their attempts, and `delivered_by_day`), used by `scylla/deliveries.rs`.

use super::{Kind, Statement};

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
