//! The statements of messages (`messages`: a device's messages and idempotency keys),
//! the outbox (`outbox`: what is queued), the schedule (`schedule`: what is scheduled)
//! and the rate limiter's send slots (`outbound_slots`), used by `scylla/messages.rs`.

use super::{Kind, Statement};

macro_rules! message_columns {
    () => {
        "device_id, row_id, direction, peer_phone, text, status, error, idempotency_key, \
         created_at_ms, not_before_ms, sent_at_ms, delivered_at_ms, read_at_ms, failed_at_ms, \
         send_at_ms, queued_at_ms"
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
        ") VALUES ('m', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
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
        "send_at_ms",
        "queued_at_ms",
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

/// A scheduled message into the queue, at its place and with its slot.
pub(crate) const PROMOTE_MESSAGE: Statement = Statement {
    name: "promote_message",
    cql: "UPDATE {ks}.messages SET status = 'queued', queued_at_ms = ?, not_before_ms = ? \
          WHERE device_id = ? AND row_kind = 'm' AND row_id = ? \
          IF status = 'scheduled' AND direction = 'outbound'",
    kind: Kind::Lwt,
    binds: &["queued_at_ms", "not_before_ms", "device_id", "row_id"],
};

/// A message that has not left, cancelled: a compare-and-set on the status read
/// (`queued` or `scheduled`).
pub(crate) const CANCEL_MESSAGE: Statement = Statement {
    name: "cancel_message",
    cql: "UPDATE {ks}.messages SET status = 'cancelled' \
          WHERE device_id = ? AND row_kind = 'm' AND row_id = ? \
          IF status = ? AND direction = 'outbound'",
    kind: Kind::Lwt,
    binds: &["device_id", "row_id", "if_status"],
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

pub(crate) const SCHEDULE_ADD: Statement = Statement {
    name: "schedule_add",
    cql: "INSERT INTO {ks}.schedule (device_id, send_at_ms, message_id) VALUES (?, ?, ?)",
    kind: Kind::Write,
    binds: &["device_id", "send_at_ms", "message_id"],
};

pub(crate) const SCHEDULE_REMOVE: Statement = Statement {
    name: "schedule_remove",
    cql: "DELETE FROM {ks}.schedule WHERE device_id = ? AND send_at_ms = ? AND message_id = ?",
    kind: Kind::Write,
    binds: &["device_id", "send_at_ms", "message_id"],
};

pub(crate) const SCHEDULE_LIST: Statement = Statement {
    name: "schedule_list",
    cql: "SELECT send_at_ms, message_id FROM {ks}.schedule WHERE device_id = ?",
    kind: Kind::Read,
    binds: &["device_id"],
};

pub(crate) const DELETE_SCHEDULE: Statement = Statement {
    name: "delete_schedule",
    cql: "DELETE FROM {ks}.schedule WHERE device_id = ?",
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
