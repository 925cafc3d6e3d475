//! Messages (partitioned by device, with their idempotency keys), the `outbox` queue and
//! the rate limiter's `outbound_slots` (see "Messages" in the docs of [`super`]).

use super::statements::{self as st, Bound, Statement};
use super::{CAS_ATTEMPTS, ScyllaStore, contention, rows};
use crate::store::{
    Direction, InsertOutcome, LogKey, MessageQuery, MessageRecord, MessageStatus, Store,
    StoreError, device_not_found, queue_position,
};

pub(super) fn advance_statement(status: MessageStatus) -> Option<&'static Statement> {
    match status {
        MessageStatus::Queued | MessageStatus::Scheduled | MessageStatus::Cancelled => None,
        MessageStatus::Sent => Some(&st::ADVANCE_SENT),
        MessageStatus::Delivered => Some(&st::ADVANCE_DELIVERED),
        MessageStatus::Read => Some(&st::ADVANCE_READ),
        MessageStatus::Failed => Some(&st::ADVANCE_FAILED),
    }
}

/// `message` moved to `status` at `at_ms` (with `error` when given), as the advance
/// statement writes it.
pub(super) fn advanced(
    mut message: MessageRecord,
    status: MessageStatus,
    at_ms: i64,
    error: Option<&str>,
) -> MessageRecord {
    message.status = status;
    match status {
        MessageStatus::Queued | MessageStatus::Scheduled | MessageStatus::Cancelled => {}
        MessageStatus::Sent => message.sent_at_ms = Some(at_ms),
        MessageStatus::Delivered => message.delivered_at_ms = Some(at_ms),
        MessageStatus::Read => message.read_at_ms = Some(at_ms),
        MessageStatus::Failed => message.failed_at_ms = Some(at_ms),
    }
    if let Some(error) = error {
        message.error = Some(error.to_owned());
    }
    message
}

fn is_queued_outbound(message: &MessageRecord) -> bool {
    message.status == MessageStatus::Queued && message.direction == Direction::Outbound
}

fn is_scheduled_outbound(message: &MessageRecord) -> bool {
    message.status == MessageStatus::Scheduled && message.direction == Direction::Outbound
}

/// Whether a message has a slot among [`Store::outbound_slots`]: an outbound message
/// that is neither queued without one, scheduled, nor cancelled.
fn has_slot(m: &MessageRecord) -> bool {
    m.direction == Direction::Outbound
        && !(m.status == MessageStatus::Queued && m.not_before_ms.is_none())
        && !matches!(
            m.status,
            MessageStatus::Scheduled | MessageStatus::Cancelled
        )
}

/// The values of [`st::INSERT_MESSAGE`] for a message.
fn message_values(m: &MessageRecord) -> Vec<Bound> {
    st::INSERT_MESSAGE.bind(vec![
        ("device_id", st::text(&m.device_id)),
        ("row_id", st::text(&m.id)),
        ("direction", st::text(m.direction.as_str())),
        ("peer_phone", st::text(&m.peer_phone)),
        ("text", st::text(&m.text)),
        ("status", st::text(m.status.as_str())),
        ("error", st::opt_text(m.error.as_deref())),
        (
            "idempotency_key",
            st::opt_text(m.idempotency_key.as_deref()),
        ),
        ("created_at_ms", st::big(m.created_at_ms)),
        ("not_before_ms", st::opt_big(m.not_before_ms)),
        ("sent_at_ms", st::opt_big(m.sent_at_ms)),
        ("delivered_at_ms", st::opt_big(m.delivered_at_ms)),
        ("read_at_ms", st::opt_big(m.read_at_ms)),
        ("failed_at_ms", st::opt_big(m.failed_at_ms)),
        ("send_at_ms", st::opt_big(m.send_at_ms)),
        ("queued_at_ms", st::opt_big(m.queued_at_ms)),
    ])
}

impl ScyllaStore {
    /// The message as stored, at LOCAL_SERIAL when `serial`.
    async fn message(
        &self,
        device_id: &str,
        message_id: &str,
        serial: bool,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let s = if serial {
            &st::SELECT_MESSAGE_SERIAL
        } else {
            &st::SELECT_MESSAGE
        };
        let row = self
            .first(
                s,
                s.bind(vec![
                    ("device_id", st::text(device_id)),
                    ("row_id", st::text(message_id)),
                ]),
            )
            .await?;
        row.map(|r| rows::message(&r)).transpose()
    }

    /// Records the message's send slot for [`Store::outbound_slots`]; a message
    /// without one ([`has_slot`]: queued without one, scheduled, cancelled) has no slot
    /// row.
    async fn put_slot(&self, m: &MessageRecord) -> Result<(), StoreError> {
        if !has_slot(m) {
            let s = &st::SLOT_DELETE;
            return self
                .execute(
                    s,
                    s.bind(vec![
                        ("device_id", st::text(&m.device_id)),
                        ("created_at_ms", st::big(m.created_at_ms)),
                        ("message_id", st::text(&m.id)),
                    ]),
                )
                .await
                .map(drop);
        }
        let s = &st::SLOT_PUT;
        self.execute(
            s,
            s.bind(vec![
                ("device_id", st::text(&m.device_id)),
                ("created_at_ms", st::big(m.created_at_ms)),
                ("message_id", st::text(&m.id)),
                (
                    "slot_ms",
                    st::big(m.not_before_ms.unwrap_or(m.created_at_ms)),
                ),
            ]),
        )
        .await
        .map(drop)
    }

    /// Adds or removes the message's `outbox` entry, at its place in the queue.
    async fn outbox(&self, m: &MessageRecord, present: bool) -> Result<(), StoreError> {
        self.outbox_entry(&m.device_id, queue_position(m), &m.id, present)
            .await
    }

    /// Adds or removes the `schedule` entry of a scheduled message.
    async fn schedule_entry(
        &self,
        device_id: &str,
        send_at_ms: i64,
        message_id: &str,
        present: bool,
    ) -> Result<(), StoreError> {
        let s = if present {
            &st::SCHEDULE_ADD
        } else {
            &st::SCHEDULE_REMOVE
        };
        self.execute(
            s,
            s.bind(vec![
                ("device_id", st::text(device_id)),
                ("send_at_ms", st::big(send_at_ms)),
                ("message_id", st::text(message_id)),
            ]),
        )
        .await
        .map(drop)
    }

    /// The `schedule` entry of a scheduled message, added or removed.
    async fn schedule(&self, m: &MessageRecord, present: bool) -> Result<(), StoreError> {
        let send_at_ms = m.send_at_ms.ok_or_else(|| {
            StoreError::Corrupt(format!("scheduled message {} has no send_at_ms", m.id))
        })?;
        self.schedule_entry(&m.device_id, send_at_ms, &m.id, present)
            .await
    }

    async fn outbox_entry(
        &self,
        device_id: &str,
        created_at_ms: i64,
        message_id: &str,
        present: bool,
    ) -> Result<(), StoreError> {
        let s = if present {
            &st::OUTBOX_ADD
        } else {
            &st::OUTBOX_REMOVE
        };
        self.execute(
            s,
            s.bind(vec![
                ("device_id", st::text(device_id)),
                ("created_at_ms", st::big(created_at_ms)),
                ("message_id", st::text(message_id)),
            ]),
        )
        .await
        .map(drop)
    }

    /// What an insert that did not apply ran into: the key's message, or the id.
    async fn refused_insert(&self, m: &MessageRecord) -> Result<InsertOutcome, StoreError> {
        if let Some(key) = &m.idempotency_key {
            let s = &st::SELECT_KEY_SERIAL;
            let holder = self
                .first(
                    s,
                    s.bind(vec![
                        ("device_id", st::text(&m.device_id)),
                        ("row_id", st::text(key)),
                    ]),
                )
                .await?;
            if let Some(row) = holder {
                let message_id = rows::text(&row, 0, "idempotency key's message id")?;
                return match self.message(&m.device_id, &message_id, true).await? {
                    Some(existing) => Ok(InsertOutcome::Existing(existing)),
                    None => Err(StoreError::Corrupt(format!(
                        "idempotency key {key} of device {} names message {message_id}, \
                         which does not exist",
                        m.device_id
                    ))),
                };
            }
        }
        Err(StoreError::Conflict {
            what: format!("message {} of device {}", m.id, m.device_id),
        })
    }
}

// ---- the message methods of `Store` ----

pub(super) async fn insert(
    store: &ScyllaStore,
    m: &MessageRecord,
) -> Result<InsertOutcome, StoreError> {
    if store.device_state(&m.device_id, false).await?.is_none() {
        return Err(device_not_found(&m.device_id));
    }
    if is_queued_outbound(m) {
        // Before the message, so a queued message always has its entry.
        store.outbox(m, true).await?;
    }
    if is_scheduled_outbound(m) {
        // Likewise for a scheduled message.
        store.schedule(m, true).await?;
    }
    let applied = match &m.idempotency_key {
        Some(key) => {
            let claim = &st::CLAIM_KEY;
            let parts = vec![
                (
                    claim,
                    claim.bind(vec![
                        ("device_id", st::text(&m.device_id)),
                        ("row_id", st::text(key)),
                        ("message_id", st::text(&m.id)),
                    ]),
                ),
                (&st::INSERT_MESSAGE, message_values(m)),
            ];
            store.lwt_batch(parts).await?
        }
        None => store.lwt(&st::INSERT_MESSAGE, message_values(m)).await?,
    };
    if !applied {
        return store.refused_insert(m).await;
    }
    if m.direction == Direction::Outbound {
        store.put_slot(m).await?;
    }
    Ok(InsertOutcome::Inserted)
}

pub(super) async fn get(
    store: &ScyllaStore,
    device_id: &str,
    message_id: &str,
) -> Result<Option<MessageRecord>, StoreError> {
    store.message(device_id, message_id, false).await
}

/// The message log: the device's partition read whole (its `m` rows), filtered and
/// sorted here. A read costs the device's whole history; fine for the thousands of
/// messages a number has, not for millions (a table by time would be the next step).
pub(super) async fn list(
    store: &ScyllaStore,
    device_id: &str,
    query: &MessageQuery,
) -> Result<Vec<MessageRecord>, StoreError> {
    let s = &st::LIST_MESSAGES;
    let mut found = Vec::new();
    store
        .each_row(s, s.bind(vec![("device_id", st::text(device_id))]), |row| {
            let message = rows::message(&row)?;
            if query.matches(&message) {
                found.push(message);
            }
            Ok(true)
        })
        .await?;
    found.sort_by_key(|m| std::cmp::Reverse(LogKey::of(m)));
    found.truncate(query.limit as usize);
    Ok(found)
}

pub(super) async fn advance(
    store: &ScyllaStore,
    device_id: &str,
    message_id: &str,
    status: MessageStatus,
    at_ms: i64,
    error: Option<&str>,
) -> Result<Option<MessageRecord>, StoreError> {
    for _ in 0..CAS_ATTEMPTS {
        let Some(current) = store.message(device_id, message_id, true).await? else {
            return Ok(None);
        };
        let Some(s) = advance_statement(status).filter(|_| current.status.may_advance_to(status))
        else {
            return Ok(Some(current));
        };
        let values = s.bind(vec![
            ("status", st::text(status.as_str())),
            (s.binds[1], st::big(at_ms)),
            ("error", st::set_or_unset(error, st::text)),
            ("device_id", st::text(device_id)),
            ("row_id", st::text(message_id)),
            ("if_status", st::text(current.status.as_str())),
        ]);
        if store.lwt(s, values).await? {
            if is_queued_outbound(&current) {
                store.outbox(&current, false).await?;
            }
            return Ok(Some(advanced(current, status, at_ms, error)));
        }
    }
    Err(contention(message_id))
}

pub(super) async fn queued(
    store: &ScyllaStore,
    device_id: &str,
    limit: u32,
) -> Result<Vec<MessageRecord>, StoreError> {
    // The entries in queue order (a device's queue is what its rate limits hold
    // back: small), each checked against its message.
    let s = &st::OUTBOX_LIST;
    let mut entries: Vec<(i64, String)> = Vec::new();
    store
        .each_row(s, s.bind(vec![("device_id", st::text(device_id))]), |row| {
            entries.push((
                rows::big(&row, 0, "outbox created_at_ms")?,
                rows::text(&row, 1, "outbox message id")?,
            ));
            Ok(true)
        })
        .await?;
    let mut out = Vec::new();
    for (created_at_ms, message_id) in entries {
        if out.len() >= limit as usize {
            break;
        }
        match store.message(device_id, &message_id, false).await? {
            Some(m) if is_queued_outbound(&m) && queue_position(&m) == created_at_ms => {
                out.push(m);
            }
            // Left behind by a crash or a refused insert: not queued.
            _ => {
                store
                    .outbox_entry(device_id, created_at_ms, &message_id, false)
                    .await?
            }
        }
    }
    Ok(out)
}

/// The outbox has no shard column: this lists the outbox's devices and keeps those of
/// `shards` (a node runs it once per reconcile period, not per request).
pub(super) async fn devices_with_queued(
    store: &ScyllaStore,
    shards: &[u32],
    limit: u32,
) -> Result<Vec<String>, StoreError> {
    // By shard, then one single-partition outbox (and schedule) read per device: a full
    // scan would also walk the tombstones sent messages leave.
    store
        .devices_in_shards_where(shards, limit, |id| async move {
            let waiting = !store.queued_messages(&id, 1).await?.is_empty()
                || !scheduled(store, &id, 1).await?.is_empty();
            Ok(waiting.then_some(id))
        })
        .await
}

pub(super) async fn reschedule(
    store: &ScyllaStore,
    device_id: &str,
    message_id: &str,
    not_before_ms: Option<i64>,
) -> Result<bool, StoreError> {
    let Some(current) = store.message(device_id, message_id, false).await? else {
        return Ok(false);
    };
    let s = &st::RESCHEDULE_MESSAGE;
    let values = s.bind(vec![
        ("not_before_ms", st::opt_big(not_before_ms)),
        ("device_id", st::text(device_id)),
        ("row_id", st::text(message_id)),
    ]);
    if !store.lwt(s, values).await? {
        return Ok(false);
    }
    store
        .put_slot(&MessageRecord {
            not_before_ms,
            ..current
        })
        .await?;
    Ok(true)
}

pub(super) async fn scheduled(
    store: &ScyllaStore,
    device_id: &str,
    limit: u32,
) -> Result<Vec<MessageRecord>, StoreError> {
    // The entries in time order, each checked against its message, as `queued` does.
    let s = &st::SCHEDULE_LIST;
    let mut entries: Vec<(i64, String)> = Vec::new();
    store
        .each_row(s, s.bind(vec![("device_id", st::text(device_id))]), |row| {
            entries.push((
                rows::big(&row, 0, "schedule send_at_ms")?,
                rows::text(&row, 1, "schedule message id")?,
            ));
            Ok(true)
        })
        .await?;
    let mut out = Vec::new();
    for (send_at_ms, message_id) in entries {
        if out.len() >= limit as usize {
            break;
        }
        match store.message(device_id, &message_id, false).await? {
            Some(m) if is_scheduled_outbound(&m) && m.send_at_ms == Some(send_at_ms) => {
                out.push(m);
            }
            // Left behind by a crash between two writes: not scheduled any more.
            _ => {
                store
                    .schedule_entry(device_id, send_at_ms, &message_id, false)
                    .await?
            }
        }
    }
    Ok(out)
}

pub(super) async fn promote(
    store: &ScyllaStore,
    device_id: &str,
    message_id: &str,
    queued_at_ms: i64,
    not_before_ms: i64,
) -> Result<Option<MessageRecord>, StoreError> {
    let Some(current) = store.message(device_id, message_id, true).await? else {
        return Ok(None);
    };
    if !is_scheduled_outbound(&current) {
        return Ok(None);
    }
    let promoted = MessageRecord {
        status: MessageStatus::Queued,
        queued_at_ms: Some(queued_at_ms),
        not_before_ms: Some(not_before_ms),
        ..current
    };
    // The queue's entry before the move, so a queued message always has its entry.
    store.outbox(&promoted, true).await?;
    let s = &st::PROMOTE_MESSAGE;
    let values = s.bind(vec![
        ("queued_at_ms", st::big(queued_at_ms)),
        ("not_before_ms", st::big(not_before_ms)),
        ("device_id", st::text(device_id)),
        ("row_id", st::text(message_id)),
    ]);
    if !store.lwt(s, values).await? {
        // Cancelled (or moved) meanwhile: the entry is stale; readers would skip it.
        store.outbox(&promoted, false).await?;
        return Ok(None);
    }
    store.schedule(&promoted, false).await?;
    store.put_slot(&promoted).await?;
    Ok(Some(promoted))
}

pub(super) async fn cancel(
    store: &ScyllaStore,
    device_id: &str,
    message_id: &str,
) -> Result<Option<MessageRecord>, StoreError> {
    for _ in 0..CAS_ATTEMPTS {
        let Some(current) = store.message(device_id, message_id, true).await? else {
            return Ok(None);
        };
        if current.direction != Direction::Outbound || !current.status.is_cancellable() {
            return Ok(Some(current));
        }
        let s = &st::CANCEL_MESSAGE;
        let values = s.bind(vec![
            ("device_id", st::text(device_id)),
            ("row_id", st::text(message_id)),
            ("if_status", st::text(current.status.as_str())),
        ]);
        if !store.lwt(s, values).await? {
            continue;
        }
        if is_queued_outbound(&current) {
            store.outbox(&current, false).await?;
        }
        if is_scheduled_outbound(&current) {
            store.schedule(&current, false).await?;
        }
        let cancelled = MessageRecord {
            status: MessageStatus::Cancelled,
            ..current
        };
        store.put_slot(&cancelled).await?;
        return Ok(Some(cancelled));
    }
    Err(contention(message_id))
}

pub(super) async fn outbound_slots(
    store: &ScyllaStore,
    device_id: &str,
    since_ms: i64,
    limit: u32,
) -> Result<Vec<i64>, StoreError> {
    let s = &st::SLOTS_SINCE;
    let mut slots = Vec::new();
    store
        .each_row(
            s,
            s.bind(vec![
                ("device_id", st::text(device_id)),
                ("created_at_ms", st::big(since_ms)),
            ]),
            |row| {
                slots.push(rows::big(&row, 0, "slot")?);
                Ok(true)
            },
        )
        .await?;
    slots.sort_unstable();
    slots.truncate(limit as usize);
    Ok(slots)
}
