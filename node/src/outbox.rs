//! The outbox rule: how a text message is accepted. A message is in the store,
//! `queued`, before anyone answers for it, so nothing accepted is lost if a process
//! dies; whichever node runs the device drains it from there.
//!
//! The node's send handler ([`Fleet::execute`](crate::Fleet::execute)) accepts through
//! [`check_send`] and [`insert_accepted`] with the slot its rate limiter gave; a process
//! without the device's owner (a gateway while the owner is being replaced) accepts
//! through [`accept_text`], without a slot.
//!
//! # Scheduled messages
//!
//! A send whose `send_at_ms` is ahead ([`scheduled_for`]; at most
//! [`MAX_SCHEDULE_AHEAD_MS`]) is stored `scheduled`, with no slot: it is not in the
//! device's queue, so it holds up none of the device's other messages, and it spends
//! no quota before it is due. When it falls due, the device's owner asks its rate
//! limiter for a slot and moves it into the queue, placed at that time (see
//! `device/schedule.rs` and [`crate::store::QueueKey`]). A send at or before now is an
//! ordinary one.
//!
//! A message's text is stored sealed with its tenant's data key
//! ([`crate::seal::data_keys`]); what this module hands back carries it in clear.

use sha2::{Digest, Sha256};

use crate::api::{FleetError, SendText, Sent, state_code};
use crate::clock::now_ms;
use crate::content::{Content, MediaPart, Quote};
use crate::limits::policy::Refusal;
use crate::metrics;
use crate::seal::data_keys::DataKeys;
use crate::seal::text::Place;
use crate::store::{
    DeviceRecord, DeviceStatus, Direction, GuardedInsert, InsertOutcome, MessageRecord,
    MessageStatus, Store, StoreError, TrustLevel,
};

/// Accepts a text message into the store's outbox as `queued`, without a rate-limit
/// slot: whichever node runs the device asks its limiter for one and sends it then.
/// Any process with the store can accept (a gateway does while the owner is being
/// replaced).
///
/// Accepted while the device is linked and running (`READY`, `STARTING`,
/// `DISCONNECTED`): it is sent when the device is READY. Refused with
/// `device_not_ready` otherwise (stopped, pairing, logged out, failed), because
/// nothing would send it. With an Idempotency-Key, a repeat returns the first
/// message whatever the device's state.
pub async fn accept_text(
    store: &dyn Store,
    keys: &DataKeys,
    device_id: &str,
    send: SendText,
) -> Result<Sent, FleetError> {
    match check_send(store, keys, device_id, &send).await? {
        Checked::Replay(sent) => Ok(sent),
        Checked::New(id) => {
            let device = store
                .get_device(device_id)
                .await?
                .ok_or_else(|| FleetError::DeviceNotFound(device_id.to_owned()))?;
            let sealing = Sealing {
                keys,
                tenant: &device.tenant,
            };
            insert_accepted(store, sealing, device_id, id, send, now_ms(), None).await
        }
    }
}

/// How a new message's text is sealed: with the current data key of the device's
/// tenant.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sealing<'a> {
    pub keys: &'a DataKeys,
    pub tenant: &'a str,
}

/// A send that passed [`check_send`]. Short-lived; boxing the replay buys nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Checked {
    /// A repeat of an earlier message (same Idempotency-Key).
    Replay(Sent),
    /// A new message, to be stored under this id.
    New(String),
}

/// How far ahead a message may be scheduled: a year.
pub const MAX_SCHEDULE_AHEAD_MS: i64 = 366 * 24 * 3_600_000;

/// The time `send` is scheduled for, asked at `now_ms`: its `send_at_ms` when that is
/// ahead of now; `None` (send as soon as the rate limiter allows) when absent, now or
/// past.
pub fn scheduled_for(send: &SendText, now_ms: i64) -> Option<i64> {
    send.send_at_ms.filter(|&at| at > now_ms)
}

/// `Invalid` (422) for a `send_at_ms` more than [`MAX_SCHEDULE_AHEAD_MS`] after
/// `now_ms`.
pub fn check_send_at(send_at_ms: Option<i64>, now_ms: i64) -> Result<(), FleetError> {
    match send_at_ms {
        Some(at) if at > now_ms.saturating_add(MAX_SCHEDULE_AHEAD_MS) => Err(FleetError::Invalid(
            "send_at is more than a year ahead".into(),
        )),
        _ => Ok(()),
    }
}

/// The check before a send: `send_at` within a year ([`check_send_at`]), and a repeat
/// (same Idempotency-Key) is answered with the first message. Whether the device may
/// send is checked by [`insert_accepted`], with the insert.
pub(crate) async fn check_send(
    store: &dyn Store,
    keys: &DataKeys,
    device_id: &str,
    send: &SendText,
) -> Result<Checked, FleetError> {
    check_send_at(send.send_at_ms, now_ms())?;
    let id = match &send.idempotency_key {
        Some(key) => idempotent_message_id(device_id, key),
        None => format!("msg_{}", uuid::Uuid::now_v7().simple()),
    };
    if send.idempotency_key.is_some()
        && let Some(existing) = store.get_message(device_id, &id).await?
    {
        return replay(keys, existing, send).await.map(Checked::Replay);
    }
    Ok(Checked::New(id))
}

/// Whether a device takes messages: linked and running (`READY`, `STARTING`,
/// `DISCONNECTED`). Anything else (stopped, pairing, logged out, failed) would never
/// send them.
fn sendable(device: &DeviceRecord) -> bool {
    device.phone.is_some()
        && device.desired_running
        && matches!(
            device.status,
            DeviceStatus::Ready | DeviceStatus::Starting | DeviceStatus::Disconnected
        )
}

/// `Ok` if the device takes messages now ([`sendable`]); the refusal a client gets
/// otherwise. For a send refused before its insert (by the rate limiter), so that a
/// device that is not ready says so first.
pub(crate) async fn require_sendable(store: &dyn Store, device_id: &str) -> Result<(), FleetError> {
    let device = store
        .get_device(device_id)
        .await?
        .ok_or_else(|| FleetError::DeviceNotFound(device_id.to_owned()))?;
    if sendable(&device) {
        Ok(())
    } else {
        Err(not_ready(&device))
    }
}

fn not_ready(device: &DeviceRecord) -> FleetError {
    FleetError::WrongState {
        code: state_code::DEVICE_NOT_READY,
        message: format!(
            "device {} is {}; messages are accepted only while it is linked and running (READY, STARTING or DISCONNECTED)",
            device.id, device.status
        ),
    }
}

/// Stores a checked send, created at `created_at_ms`, if its device takes messages
/// ([`sendable`], read in the same store call as the insert): `device_not_ready` if
/// not. It is `queued` with its rate-limit slot (`None`: none yet), or `scheduled` when
/// [`scheduled_for`] a later time (with no slot: the caller passes `None`). A reply
/// keeps the quote of its `reply_to` ([`crate::quote`]): `reply_to_not_found` if the
/// log has no such message.
pub(crate) async fn insert_accepted(
    store: &dyn Store,
    sealing: Sealing<'_>,
    device_id: &str,
    id: String,
    send: SendText,
    created_at_ms: i64,
    not_before_ms: Option<i64>,
) -> Result<Sent, FleetError> {
    let quote = match &send.reply_to {
        Some(id) => Some(crate::quote::quote_for(store, sealing.keys, device_id, id).await?),
        None => None,
    };
    let key = sealing.keys.current(sealing.tenant).await?;
    let stored = stored_content(&send, quote)?;
    let sealed = key.seal(&Place::message(device_id, &id), &stored);
    let send_at_ms = scheduled_for(&send, created_at_ms);
    let status = match send_at_ms {
        Some(_) => MessageStatus::Scheduled,
        None => MessageStatus::Queued,
    };
    let mut message = MessageRecord {
        id,
        device_id: device_id.to_owned(),
        direction: Direction::Outbound,
        peer_phone: send.to_phone.clone(),
        text: sealed.into_string(),
        status,
        error: None,
        idempotency_key: send.idempotency_key.clone(),
        created_at_ms,
        not_before_ms: not_before_ms.filter(|_| send_at_ms.is_none()),
        sent_at_ms: None,
        delivered_at_ms: None,
        read_at_ms: None,
        failed_at_ms: None,
        send_at_ms,
        queued_at_ms: None,
    };
    match store.insert_message_if(&message, sendable).await {
        Ok(GuardedInsert::Done(InsertOutcome::Inserted)) => {}
        Ok(GuardedInsert::Done(InsertOutcome::Existing(existing))) => {
            return replay(sealing.keys, existing, &send).await;
        }
        Ok(GuardedInsert::Refused(device)) => return Err(not_ready(&device)),
        Err(StoreError::NotFound { .. }) => {
            return Err(FleetError::DeviceNotFound(device_id.to_owned()));
        }
        Err(StoreError::Conflict { .. }) => {
            let existing = store
                .get_message(device_id, &message.id)
                .await?
                .ok_or_else(|| FleetError::MessageNotFound(message.id.clone()))?;
            return replay(sealing.keys, existing, &send).await;
        }
        Err(error) => return Err(error.into()),
    }
    message.text = stored;
    metrics::message_outcome(if send_at_ms.is_some() {
        "scheduled"
    } else {
        "accepted"
    });
    Ok(Sent {
        message,
        replayed: false,
    })
}

/// The message's text field for `send`, quoting `quote` (its `reply_to`): its
/// [`Content`] as stored.
fn stored_content(send: &SendText, quote: Option<Quote>) -> Result<String, FleetError> {
    let media = send
        .media
        .clone()
        .map(MediaPart::try_from)
        .transpose()
        .map_err(FleetError::Invalid)?;
    Ok(Content {
        text: send.text.clone(),
        media,
        mentions: send.mentions.clone(),
        author: None,
        quote,
    }
    .to_stored())
}

/// A sentence for a refused send.
pub(crate) fn refusal_message(reason: Refusal, level: TrustLevel, retry_after_ms: i64) -> String {
    let seconds = (retry_after_ms + 999) / 1000;
    match reason {
        Refusal::DailyQuota => format!(
            "the device has used its daily quota ({} level); sending is possible again in {seconds} s",
            level.as_str()
        ),
        Refusal::InFlight => format!(
            "the device has too many messages waiting to be sent ({} level); retry in {seconds} s",
            level.as_str()
        ),
        Refusal::Paused => {
            format!("sending is paused after WhatsApp restricted this number; retry in {seconds} s")
        }
    }
}

/// The message id an Idempotency-Key stands for: the same key on the same device is the
/// same message, which makes a repeat a lookup.
fn idempotent_message_id(device_id: &str, key: &str) -> String {
    let digest = Sha256::new()
        .chain_update(device_id.as_bytes())
        .chain_update([0u8])
        .chain_update(key.as_bytes())
        .finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("msg_{hex}")
}

/// The answer to a repeat of `existing` (its text opened), or
/// `IdempotencyKeyReused` if the repeat asks for another message.
async fn replay(
    keys: &DataKeys,
    mut existing: MessageRecord,
    send: &SendText,
) -> Result<Sent, FleetError> {
    existing.text = keys
        .open(
            &Place::message(&existing.device_id, &existing.id),
            &existing.text,
        )
        .await?;
    // The same reply quotes what the first one quoted, as it was then.
    let quote = Content::from_stored(&existing.text)
        .quote
        .filter(|quote| send.reply_to.as_ref() == Some(&quote.id));
    if existing.peer_phone != send.to_phone || existing.text != stored_content(send, quote)? {
        return Err(FleetError::IdempotencyKeyReused);
    }
    metrics::message_outcome("duplicate");
    Ok(Sent {
        message: existing,
        replayed: true,
    })
}
