//! The cancel rule: an outbound message may be cancelled while it has not left, that is
//! while it is `scheduled`, or `queued` and not handed to the device's link.
//!
//! The store knows the first half (its status, changed by one conditional write,
//! [`Store::cancel_message`](crate::store::Store::cancel_message)); only the device's
//! owner knows the second (what its actor has handed to its link). So a cancel is a
//! device command that the owner decides: the device's actor when it runs
//! (`device/cancel.rs`, which passes what it has handed and frees the message's
//! rate-limit slot), here with nothing handed when it runs nowhere in this process (then
//! nothing can hand it: a device's messages are handed by its actor alone). The actor
//! handles one message at a time, and its drain hands messages inside its handler, so a
//! cancel lands either before a hand-off (never sent) or after it (refused): never in
//! between.
//!
//! A cancelled message is final ([`MessageStatus::may_advance_to`]), never sent, counts
//! in no quota, and shows `cancelled` in the log and as a `message.status` event.

use serde_json::{Map, Value};

use crate::api::{FleetError, state_code};
use crate::clock::now_ms;
use crate::context::NodeContext;
use crate::events::EventKind;
use crate::metrics;
use crate::seal::text::Place;
use crate::store::{Direction, MessageRecord, MessageStatus};

/// A cancel that took effect.
#[derive(Debug)]
pub(crate) struct Cancelled {
    /// The message as it was before (its status and slot tell what to give back).
    pub before: MessageRecord,
    /// The message now, `cancelled`, its text opened.
    pub after: MessageRecord,
}

/// Cancels message `message_id` of `device_id` unless it has left. `handed` says why a
/// `queued` message has (maybe) left already, as its owner knows: handed to the link,
/// or given back by it unconfirmed; `None` when it has not. `Ok(None)` when the message
/// was cancelled already (a repeat: nothing to give back). Refused with
/// `message_not_cancellable` (saying its status) when it has left, `MessageNotFound`
/// when there is no such message.
pub(crate) async fn cancel(
    ctx: &NodeContext,
    device_id: &str,
    message_id: &str,
    handed: impl Fn(&str) -> Option<&'static str>,
) -> Result<Result<Cancelled, MessageRecord>, FleetError> {
    let before = ctx
        .store
        .get_message(device_id, message_id)
        .await?
        .ok_or_else(|| FleetError::MessageNotFound(message_id.to_owned()))?;
    if before.direction == Direction::Inbound {
        return Err(not_cancellable(message_id, "an inbound message"));
    }
    if before.status == MessageStatus::Cancelled {
        return Ok(Err(opened(ctx, before).await?));
    }
    if !before.status.is_cancellable() {
        return Err(not_cancellable(message_id, before.status.as_str()));
    }
    if let Some(why) = handed(message_id) {
        return Err(not_cancellable(message_id, why));
    }
    let after = ctx
        .store
        .cancel_message(device_id, message_id)
        .await?
        .ok_or_else(|| FleetError::MessageNotFound(message_id.to_owned()))?;
    if after.status != MessageStatus::Cancelled {
        return Err(not_cancellable(message_id, after.status.as_str()));
    }
    metrics::message_outcome("cancelled");
    let at_ms = now_ms();
    let mut data = Map::new();
    data.insert("message_id".into(), Value::from(message_id));
    data.insert("status".into(), Value::from("cancelled"));
    data.insert("at_ms".into(), Value::from(at_ms));
    ctx.emit_once(
        device_id,
        EventKind::MessageStatus,
        data,
        &format!("receipt\0{message_id}\0cancelled"),
    )
    .await;
    let after = opened(ctx, after).await?;
    Ok(Ok(Cancelled { before, after }))
}

/// `message_not_cancellable`, saying where the message is.
fn not_cancellable(message_id: &str, status: &str) -> FleetError {
    FleetError::WrongState {
        code: state_code::MESSAGE_NOT_CANCELLABLE,
        message: format!(
            "message {message_id} is {status}; only a scheduled message, or a queued one not yet \
             handed to WhatsApp, can be cancelled"
        ),
    }
}

/// `message` with its text opened.
async fn opened(
    ctx: &NodeContext,
    mut message: MessageRecord,
) -> Result<MessageRecord, FleetError> {
    message.text = ctx
        .keys
        .open(
            &Place::message(&message.device_id, &message.id),
            &message.text,
        )
        .await?;
    Ok(message)
}
