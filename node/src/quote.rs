//! The one rule of a reply: which message a send may quote, and what the reply keeps of
//! it ([`Quote`]). The outbox calls [`quote_for`] before it stores a message with a
//! `reply_to`; the gateway only passes the id on.
//!
//! A send may quote any message of its device's log, either direction, in any chat (a
//! quote of another chat's message is WhatsApp's "reply privately"). An id the log does
//! not have is refused with [`FleetError::ReplyToNotFound`], whatever the reason (never
//! there, another device's, deleted).

use crate::api::FleetError;
use crate::content::{Content, Quote};
use crate::seal::data_keys::DataKeys;
use crate::seal::text::Place;
use crate::store::{Direction, Store};

/// The longest message id a reply may name (what `GET …/messages/{id}` takes).
pub const MAX_ID_LEN: usize = 128;

/// The quote of message `reply_to` of device `device_id`: its direction, chat, writer in
/// a group and text, read (and opened) from the store now.
pub async fn quote_for(
    store: &dyn Store,
    keys: &DataKeys,
    device_id: &str,
    reply_to: &str,
) -> Result<Quote, FleetError> {
    let not_found = || FleetError::ReplyToNotFound(reply_to.chars().take(MAX_ID_LEN).collect());
    if reply_to.is_empty() || reply_to.len() > MAX_ID_LEN {
        return Err(not_found());
    }
    let quoted = store
        .get_message(device_id, reply_to)
        .await?
        .ok_or_else(not_found)?;
    let text = keys
        .open(&Place::message(device_id, &quoted.id), &quoted.text)
        .await?;
    let content = Content::from_stored(&text);
    let from_me = quoted.direction == Direction::Outbound;
    Ok(Quote {
        id: quoted.id,
        from_me,
        chat: Some(quoted.peer_phone),
        author: if from_me { None } else { content.author },
        text: content.text,
    })
}
