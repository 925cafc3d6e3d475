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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::link::whatsapp::conformance::create_starting_device;
    use crate::seal::{MasterKey, Sealer};
    use crate::store::{MessageRecord, MessageStatus, SqliteStore};

    /// Stores message `id` of device `d1`, its content sealed as the device seals it.
    async fn stored(
        store: &dyn Store,
        keys: &DataKeys,
        id: &str,
        direction: Direction,
        peer: &str,
        content: Content,
    ) {
        let sealed = keys
            .seal("default", &Place::message("d1", id), &content.to_stored())
            .await
            .unwrap();
        let record = MessageRecord {
            id: id.into(),
            device_id: "d1".into(),
            direction,
            peer_phone: peer.into(),
            text: sealed.into_string(),
            status: MessageStatus::Delivered,
            error: None,
            idempotency_key: None,
            created_at_ms: 1,
            not_before_ms: None,
            sent_at_ms: None,
            delivered_at_ms: None,
            read_at_ms: None,
            failed_at_ms: None,
            send_at_ms: None,
            queued_at_ms: None,
        };
        store.insert_message(&record).await.unwrap();
    }

    #[tokio::test]
    async fn a_reply_quotes_a_message_of_its_device_s_log_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("wafleet.db")).unwrap());
        create_starting_device(store.as_ref(), "d1").await;
        create_starting_device(store.as_ref(), "d2").await;
        let keys = DataKeys::new(
            store.clone(),
            Arc::new(Sealer::new(MasterKey::new(1, [9u8; 32]))),
        );
        let group = "120363041234567890@g.us";
        stored(
            store.as_ref(),
            &keys,
            "msg_ours",
            Direction::Outbound,
            "6282222222222",
            Content::text("your order"),
        )
        .await;
        stored(
            store.as_ref(),
            &keys,
            "3EB0THEIRS",
            Direction::Inbound,
            group,
            Content {
                author: Some("6283333333333".into()),
                ..Content::text("who has the key?")
            },
        )
        .await;

        let ours = quote_for(store.as_ref(), &keys, "d1", "msg_ours")
            .await
            .unwrap();
        assert_eq!(
            ours,
            Quote {
                id: "msg_ours".into(),
                from_me: true,
                chat: Some("6282222222222".into()),
                author: None,
                text: "your order".into(),
            }
        );
        let theirs = quote_for(store.as_ref(), &keys, "d1", "3EB0THEIRS")
            .await
            .unwrap();
        assert!(!theirs.from_me);
        assert_eq!(theirs.chat.as_deref(), Some(group));
        assert_eq!(theirs.author.as_deref(), Some("6283333333333"));
        assert_eq!(theirs.text, "who has the key?");

        let long = "m".repeat(MAX_ID_LEN + 1);
        for (device, id) in [
            ("d1", "msg_nobody"),
            ("d2", "msg_ours"),
            ("d1", ""),
            ("d1", long.as_str()),
        ] {
            let refused = quote_for(store.as_ref(), &keys, device, id).await;
            assert!(
                matches!(&refused, Err(FleetError::ReplyToNotFound(_))),
                "{device} {id}: {refused:?}"
            );
        }
    }
}
