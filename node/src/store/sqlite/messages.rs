//! Messages, their queue (the `messages_queued` partial index, in queue order: see
//! [`crate::store::QueueKey`]), the scheduled ones (`messages_scheduled`), and the rate
//! limiter's send slots, the message log and chats (the `messages_by_time` index).

use rusqlite::types::Value;
use rusqlite::{Connection, Row, params, params_from_iter};

use super::sql::{
    column, db_error, device_ids_by_shard, execute, is_foreign_key_violation,
    is_uniqueness_violation, parse_column, query_all, query_first,
};
use crate::store::{
    Chat, ChatQuery, DeviceId, Direction, InsertOutcome, MessageQuery, MessageRecord,
    MessageStatus, QueueKey, StoreError, device_not_found,
};

/// The columns [`message_from_row`] reads, in order.
macro_rules! message_columns {
    () => {
        "device_id, id, direction, peer_phone, text, status, error, idempotency_key, \
         created_at_ms, not_before_ms, sent_at_ms, delivered_at_ms, read_at_ms, failed_at_ms, \
         send_at_ms, queued_at_ms"
    };
}

const INSERT_MESSAGE: &str = concat!(
    "INSERT INTO messages (",
    message_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
);
const SELECT_MESSAGE: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE device_id = ?1 AND id = ?2"
);
const SELECT_MESSAGE_BY_IDEMPOTENCY_KEY: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE device_id = ?1 AND idempotency_key = ?2"
);
/// Written with the literal terms of the `messages_queued` partial index, and naming it
/// (`INDEXED BY`): `messages_by_time` has the same columns, and without statistics the
/// planner may take it and walk a device's whole history instead of its queue.
/// The count of [`QUEUED_MESSAGES`], on the `messages_queued` index alone.
pub(super) const COUNT_QUEUED: &str =
    "SELECT COUNT(*) FROM (SELECT 1 FROM messages INDEXED BY messages_queued
     WHERE device_id = ?1 AND status = 'queued' AND direction = 'outbound' LIMIT ?2)";

pub(super) const QUEUED_MESSAGES: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages INDEXED BY messages_queued
     WHERE device_id = ?1 AND status = 'queued' AND direction = 'outbound'
     ORDER BY COALESCE(queued_at_ms, created_at_ms), id LIMIT ?2"
);

/// [`QUEUED_MESSAGES`] after a place in the queue: a seek in the same index (on the
/// place's time; the ids of that one time are then skipped past in the index).
pub(super) const QUEUED_MESSAGES_AFTER: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages INDEXED BY messages_queued
     WHERE device_id = ?1 AND status = 'queued' AND direction = 'outbound'
       AND COALESCE(queued_at_ms, created_at_ms) >= ?2
       AND (COALESCE(queued_at_ms, created_at_ms) > ?2 OR id > ?3)
     ORDER BY COALESCE(queued_at_ms, created_at_ms), id LIMIT ?4"
);

/// On the `messages_by_time` index: the device's messages since `?2`, inbound ones
/// skipped.
const OUTBOUND_SLOTS: &str = "SELECT COALESCE(not_before_ms, created_at_ms) AS slot
     FROM messages INDEXED BY messages_by_time
     WHERE device_id = ?1 AND direction = 'outbound' AND created_at_ms >= ?2
       AND NOT (status = 'queued' AND not_before_ms IS NULL)
       AND status NOT IN ('scheduled', 'cancelled')
     ORDER BY slot LIMIT ?3";

/// The device's scheduled messages, earliest first, on the `messages_scheduled`
/// partial index (its terms, literally).
const SCHEDULED_MESSAGES: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages INDEXED BY messages_scheduled
     WHERE device_id = ?1 AND status = 'scheduled' AND direction = 'outbound'
     ORDER BY send_at_ms, id LIMIT ?2"
);

/// A scheduled message into the queue, only while it is still scheduled.
const PROMOTE_MESSAGE: &str = concat!(
    "UPDATE messages SET status = 'queued', queued_at_ms = ?3, not_before_ms = ?4
     WHERE device_id = ?1 AND id = ?2 AND status = 'scheduled' AND direction = 'outbound'
     RETURNING ",
    message_columns!()
);

/// A message that has not left, cancelled.
const CANCEL_MESSAGE: &str = concat!(
    "UPDATE messages SET status = 'cancelled'
     WHERE device_id = ?1 AND id = ?2 AND status IN ('queued', 'scheduled')
       AND direction = 'outbound'
     RETURNING ",
    message_columns!()
);

const RESCHEDULE_MESSAGE: &str = "UPDATE messages SET not_before_ms = ?3
     WHERE device_id = ?1 AND id = ?2 AND status = 'queued' AND direction = 'outbound'";

/// Uses the `messages_queued` partial index (its terms, literally).
/// Per shard: its devices (`devices_by_shard`), each looked up in the partial index of
/// queued messages; no scan of the messages table.
const DEVICES_WITH_QUEUED: &str = "SELECT d.id FROM devices d WHERE d.shard = ?1
     AND (EXISTS (SELECT 1 FROM messages m INDEXED BY messages_queued WHERE m.device_id = d.id
         AND m.status = 'queued' AND m.direction = 'outbound')
       OR EXISTS (SELECT 1 FROM messages m INDEXED BY messages_scheduled
         WHERE m.device_id = d.id AND m.status = 'scheduled' AND m.direction = 'outbound'))
     LIMIT ?2";

/// The UPDATE that moves a message to `status`, setting that status's timestamp; `None`
/// for `queued`, `scheduled` and `cancelled`, which no receipt moves a message to.
pub(super) fn advance_statement(status: MessageStatus) -> Option<&'static str> {
    macro_rules! advance {
        ($column:literal) => {
            concat!(
                "UPDATE messages SET status = ?3, ",
                $column,
                " = ?4, error = COALESCE(?5, error) WHERE device_id = ?1 AND id = ?2 RETURNING ",
                message_columns!()
            )
        };
    }
    match status {
        MessageStatus::Queued | MessageStatus::Scheduled | MessageStatus::Cancelled => None,
        MessageStatus::Sent => Some(advance!("sent_at_ms")),
        MessageStatus::Delivered => Some(advance!("delivered_at_ms")),
        MessageStatus::Read => Some(advance!("read_at_ms")),
        MessageStatus::Failed => Some(advance!("failed_at_ms")),
    }
}

pub(super) fn message_from_row(row: &Row<'_>) -> Result<MessageRecord, StoreError> {
    Ok(MessageRecord {
        device_id: column(row, 0)?,
        id: column(row, 1)?,
        direction: parse_column(row, 2, "message direction", Direction::parse)?,
        peer_phone: column(row, 3)?,
        text: column(row, 4)?,
        status: parse_column(row, 5, "message status", MessageStatus::parse)?,
        error: column(row, 6)?,
        idempotency_key: column(row, 7)?,
        created_at_ms: column(row, 8)?,
        not_before_ms: column(row, 9)?,
        sent_at_ms: column(row, 10)?,
        delivered_at_ms: column(row, 11)?,
        read_at_ms: column(row, 12)?,
        failed_at_ms: column(row, 13)?,
        send_at_ms: column(row, 14)?,
        queued_at_ms: column(row, 15)?,
    })
}

// ---- the message methods of `Store` ----

pub(super) fn insert(conn: &Connection, m: &MessageRecord) -> Result<InsertOutcome, StoreError> {
    // The call's transaction took the write lock first, so no other connection can
    // slip a message with the same idempotency key between the lookup and the insert.
    if let Some(key) = &m.idempotency_key
        && let Some(existing) = query_first(
            conn,
            SELECT_MESSAGE_BY_IDEMPOTENCY_KEY,
            (&m.device_id, key),
            message_from_row,
        )?
    {
        return Ok(InsertOutcome::Existing(existing));
    }
    let inserted = execute(
        conn,
        INSERT_MESSAGE,
        params![
            m.device_id,
            m.id,
            m.direction.as_str(),
            m.peer_phone,
            m.text,
            m.status.as_str(),
            m.error,
            m.idempotency_key,
            m.created_at_ms,
            m.not_before_ms,
            m.sent_at_ms,
            m.delivered_at_ms,
            m.read_at_ms,
            m.failed_at_ms,
            m.send_at_ms,
            m.queued_at_ms,
        ],
    );
    match inserted {
        Ok(_) => Ok(InsertOutcome::Inserted),
        Err(e) if is_foreign_key_violation(&e) => Err(device_not_found(&m.device_id)),
        Err(e) if is_uniqueness_violation(&e) => Err(StoreError::Conflict {
            what: format!("message {} of device {}", m.id, m.device_id),
        }),
        Err(e) => Err(db_error(e)),
    }
}

pub(super) fn get(
    conn: &Connection,
    device_id: &str,
    message_id: &str,
) -> Result<Option<MessageRecord>, StoreError> {
    query_first(
        conn,
        SELECT_MESSAGE,
        (device_id, message_id),
        message_from_row,
    )
}

pub(super) fn advance(
    conn: &Connection,
    device_id: &str,
    message_id: &str,
    status: MessageStatus,
    at_ms: i64,
    error: Option<&str>,
) -> Result<Option<MessageRecord>, StoreError> {
    let Some(current) = query_first(
        conn,
        SELECT_MESSAGE,
        (device_id, message_id),
        message_from_row,
    )?
    else {
        return Ok(None);
    };
    let update = advance_statement(status).filter(|_| current.status.may_advance_to(status));
    let Some(sql) = update else {
        return Ok(Some(current));
    };
    let advanced = query_first(
        conn,
        sql,
        params![device_id, message_id, status.as_str(), at_ms, error],
        message_from_row,
    )?;
    Ok(advanced)
}

pub(super) fn queued(
    conn: &Connection,
    device_id: &str,
    limit: u32,
) -> Result<Vec<MessageRecord>, StoreError> {
    query_all(
        conn,
        QUEUED_MESSAGES,
        params![device_id, i64::from(limit)],
        message_from_row,
    )
}

pub(super) fn queued_after(
    conn: &Connection,
    device_id: &str,
    after: &QueueKey,
    limit: u32,
) -> Result<Vec<MessageRecord>, StoreError> {
    query_all(
        conn,
        QUEUED_MESSAGES_AFTER,
        params![device_id, after.at_ms, after.id, i64::from(limit)],
        message_from_row,
    )
}

pub(super) fn count_queued(
    conn: &Connection,
    device_id: &str,
    limit: u32,
) -> Result<u32, StoreError> {
    conn.query_row(COUNT_QUEUED, params![device_id, i64::from(limit)], |row| {
        row.get::<_, u32>(0)
    })
    .map_err(db_error)
}

pub(super) fn devices_with_queued(
    conn: &Connection,
    shards: &[u32],
    limit: u32,
) -> Result<Vec<DeviceId>, StoreError> {
    device_ids_by_shard(conn, DEVICES_WITH_QUEUED, shards, limit)
}

pub(super) fn reschedule(
    conn: &Connection,
    device_id: &str,
    message_id: &str,
    not_before_ms: Option<i64>,
) -> Result<bool, StoreError> {
    execute(
        conn,
        RESCHEDULE_MESSAGE,
        (device_id, message_id, not_before_ms),
    )
    .map(|changed| changed > 0)
    .map_err(db_error)
}

pub(super) fn scheduled(
    conn: &Connection,
    device_id: &str,
    limit: u32,
) -> Result<Vec<MessageRecord>, StoreError> {
    query_all(
        conn,
        SCHEDULED_MESSAGES,
        params![device_id, i64::from(limit)],
        message_from_row,
    )
}

pub(super) fn promote(
    conn: &Connection,
    device_id: &str,
    message_id: &str,
    queued_at_ms: i64,
    not_before_ms: i64,
) -> Result<Option<MessageRecord>, StoreError> {
    query_first(
        conn,
        PROMOTE_MESSAGE,
        params![device_id, message_id, queued_at_ms, not_before_ms],
        message_from_row,
    )
}

pub(super) fn cancel(
    conn: &Connection,
    device_id: &str,
    message_id: &str,
) -> Result<Option<MessageRecord>, StoreError> {
    if let Some(cancelled) = query_first(
        conn,
        CANCEL_MESSAGE,
        params![device_id, message_id],
        message_from_row,
    )? {
        return Ok(Some(cancelled));
    }
    get(conn, device_id, message_id)
}

pub(super) fn outbound_slots(
    conn: &Connection,
    device_id: &str,
    since_ms: i64,
    limit: u32,
) -> Result<Vec<i64>, StoreError> {
    query_all(
        conn,
        OUTBOUND_SLOTS,
        params![device_id, since_ms, i64::from(limit)],
        |row| column(row, 0),
    )
}

// ---- the message log (the `messages_by_time` index) ----

/// The SELECT for one [`MessageQuery`] and its values: every given filter is a
/// condition, newest first, on the `messages_by_time` index.
pub(super) fn list_statement(device_id: &str, query: &MessageQuery) -> (String, Vec<Value>) {
    let mut sql = String::from(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages INDEXED BY messages_by_time WHERE device_id = ?1"
    ));
    let mut values = vec![Value::Text(device_id.to_owned())];
    let mut condition = |sql: &mut String, term: &str, value: Value| {
        values.push(value);
        sql.push_str(&format!(" AND {term} ?{}", values.len()));
    };
    if let Some(direction) = query.direction {
        condition(
            &mut sql,
            "direction =",
            Value::Text(direction.as_str().into()),
        );
    }
    if let Some(status) = query.status {
        condition(&mut sql, "status =", Value::Text(status.as_str().into()));
    }
    if let Some(peer) = &query.peer {
        condition(&mut sql, "peer_phone =", Value::Text(peer.clone()));
    }
    if let Some(since) = query.since_ms {
        condition(&mut sql, "created_at_ms >=", Value::Integer(since));
    }
    if let Some(until) = query.until_ms {
        condition(&mut sql, "created_at_ms <", Value::Integer(until));
    }
    if let Some(before) = &query.before {
        values.push(Value::Integer(before.created_at_ms));
        values.push(Value::Text(before.id.clone()));
        sql.push_str(&format!(
            " AND (created_at_ms, id) < (?{}, ?{})",
            values.len() - 1,
            values.len()
        ));
    }
    values.push(Value::Integer(i64::from(query.limit)));
    sql.push_str(&format!(
        " ORDER BY created_at_ms DESC, id DESC LIMIT ?{}",
        values.len()
    ));
    (sql, values)
}

pub(super) fn list(
    conn: &Connection,
    device_id: &str,
    query: &MessageQuery,
) -> Result<Vec<MessageRecord>, StoreError> {
    let (sql, values) = list_statement(device_id, query);
    query_all(conn, &sql, params_from_iter(values), message_from_row)
}

/// The device's chats, grouped in SQLite: each peer's newest message time and unread
/// count in one pass over the device's messages, then each listed chat's last message.
const CHATS: &str = "SELECT peer_phone, MAX(created_at_ms) AS last_at,
        SUM(direction = 'inbound' AND read_at_ms IS NULL)
     FROM messages INDEXED BY messages_by_time WHERE device_id = ?1
     GROUP BY peer_phone
     HAVING ?2 IS NULL OR (last_at, peer_phone) < (?2, ?3)
     ORDER BY last_at DESC, peer_phone DESC LIMIT ?4";

const LAST_OF_PEER: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE device_id = ?1 AND peer_phone = ?2
     ORDER BY created_at_ms DESC, id DESC LIMIT 1"
);

pub(super) fn chats(
    conn: &Connection,
    device_id: &str,
    query: &ChatQuery,
) -> Result<Vec<Chat>, StoreError> {
    let (before_at, before_peer) = match &query.before {
        Some(key) => (Some(key.last_at_ms), Some(key.peer.as_str())),
        None => (None, None),
    };
    let groups = query_all(
        conn,
        CHATS,
        params![device_id, before_at, before_peer, i64::from(query.limit)],
        |row| Ok((column::<String>(row, 0)?, column::<i64>(row, 2)?)),
    )?;
    let mut chats = Vec::with_capacity(groups.len());
    for (peer, unread) in groups {
        let last = query_first(
            conn,
            LAST_OF_PEER,
            params![device_id, peer],
            message_from_row,
        )?
        .ok_or_else(|| StoreError::Corrupt(format!("chat {peer} has no message")))?;
        chats.push(Chat {
            peer,
            last,
            unread: u32::try_from(unread).unwrap_or(u32::MAX),
        });
    }
    Ok(chats)
}
