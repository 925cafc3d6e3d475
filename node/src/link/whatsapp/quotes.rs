//! Replies on the real link. WhatsApp keeps what a message quotes in the message's
//! `ContextInfo`: `stanza_id` (the quoted message's WhatsApp id), `participant` (who
//! wrote it), `quoted_message` (its content, which the recipient's phone shows above the
//! reply) and, for a quote of another chat's message, `remote_jid` (that chat).
//!
//! WhatsApp ids and wafleet ids: a message the device sent went out under
//! [`wa_message_id`] of its wafleet id (a hash: it cannot be turned back, so the link
//! maps it back through the vault's outbound map, kept for a while after the send); a
//! message the device received is stored under WhatsApp's own id. So a reply's
//! `stanza_id` is the wafleet id of a received message as it is, and of one the device
//! sent once the outbound map knows it; otherwise it is relayed as WhatsApp gave it.

use tracing::warn;
use whatsapp_rust::Jid;
use whatsapp_rust::wacore::proto_helpers::{MessageBuilderExt, MessageExt};
use whatsapp_rust::waproto::buffa::MessageField;
use whatsapp_rust::waproto::whatsapp as wa;

use super::mentions::jid_of_peer;
use super::send::wa_message_id;
use super::store::VaultBackend;
use crate::content::Quote;
use crate::link::LinkEvent;

/// The WhatsApp id of a quoted message of device `device_id` (see the module docs).
pub(super) fn quoted_wa_id(device_id: &str, quote: &Quote) -> String {
    if quote.from_me {
        wa_message_id(device_id, &quote.id)
    } else {
        quote.id.clone()
    }
}

/// The JID of a peer as a message keeps it: a phone number (digits, or E.164 as the
/// link reports senders), a group id, or a JID as received (a sender WhatsApp names only
/// by its LID).
fn jid_of(peer: &str) -> Result<Jid, String> {
    jid_of_peer(peer).or_else(|_| {
        peer.parse::<Jid>()
            .map_err(|e| format!("not a phone number, group or JID: {peer}: {e}"))
    })
}

/// The JID of whoever wrote a quoted message that is not the device's: its author in a
/// group, else the other side of its chat.
fn writer_jid(quote: &Quote, to: &str) -> Result<Jid, String> {
    jid_of(
        quote
            .author
            .as_deref()
            .or(quote.chat.as_deref())
            .unwrap_or(to),
    )
}

/// The context of a reply to `to` quoting `quote`, sent by device `device_id` whose
/// account is `own` (its phone-number JID, once logged in).
pub(super) fn quote_context(
    device_id: &str,
    own: Option<&Jid>,
    to: &str,
    quote: &Quote,
) -> Result<wa::ContextInfo, String> {
    let participant = if quote.from_me {
        own.map(Jid::to_string)
    } else {
        Some(writer_jid(quote, to)?.to_string())
    };
    // The same chat however it is written (a sender is kept as `+62…`, a recipient
    // as `62…`).
    let to = jid_of_peer(to)?.to_string();
    let remote_jid = match quote.chat.as_deref() {
        Some(chat) => Some(jid_of(chat)?.to_string()).filter(|chat| *chat != to),
        None => None,
    };
    Ok(wa::ContextInfo {
        stanza_id: Some(quoted_wa_id(device_id, quote)),
        participant,
        quoted_message: MessageField::some(wa::Message::text(quote.text.clone())),
        remote_jid,
        ..Default::default()
    })
}

/// `message` replying with `quote_context`: its quote fields go into the context the
/// message has already (its mentions'), or a new one; a plain text becomes an extended
/// text, which has a context.
pub(super) fn with_quote(mut message: wa::Message, quote_context: wa::ContextInfo) -> wa::Message {
    if let Some(context) = context_mut(&mut message) {
        context.stanza_id = quote_context.stanza_id;
        context.participant = quote_context.participant;
        context.quoted_message = quote_context.quoted_message;
        context.remote_jid = quote_context.remote_jid;
    }
    message
}

/// The context of the body of `message` the link sends (a text, or one media kind),
/// created if it has none; `None` for a body without one.
fn context_mut(message: &mut wa::Message) -> Option<&mut wa::ContextInfo> {
    if let Some(text) = message.conversation.take() {
        message.extended_text_message = MessageField::some(wa::message::ExtendedTextMessage {
            text: Some(text),
            ..Default::default()
        });
    }
    // Each kind is looked at before it is borrowed for the answer.
    if message.extended_text_message.as_option().is_some() {
        return message
            .extended_text_message
            .as_option_mut()
            .map(|m| m.context_info.get_or_insert_default());
    }
    if message.image_message.as_option().is_some() {
        return message
            .image_message
            .as_option_mut()
            .map(|m| m.context_info.get_or_insert_default());
    }
    if message.video_message.as_option().is_some() {
        return message
            .video_message
            .as_option_mut()
            .map(|m| m.context_info.get_or_insert_default());
    }
    if message.audio_message.as_option().is_some() {
        return message
            .audio_message
            .as_option_mut()
            .map(|m| m.context_info.get_or_insert_default());
    }
    if message.document_message.as_option().is_some() {
        return message
            .document_message
            .as_option_mut()
            .map(|m| m.context_info.get_or_insert_default());
    }
    message
        .sticker_message
        .as_option_mut()
        .map(|m| m.context_info.get_or_insert_default())
}

/// The WhatsApp id of the message an inbound `message` quotes, if it is a reply (a
/// text or a media message with a context naming one).
pub(super) fn quoted_id(message: &wa::Message) -> Option<String> {
    let base = message.get_base_message();
    let context = [
        base.extended_text_message
            .as_option()
            .and_then(|m| m.context_info.as_option()),
        base.image_message
            .as_option()
            .and_then(|m| m.context_info.as_option()),
        base.video_message
            .as_option()
            .and_then(|m| m.context_info.as_option()),
        base.audio_message
            .as_option()
            .and_then(|m| m.context_info.as_option()),
        base.document_message
            .as_option()
            .and_then(|m| m.context_info.as_option()),
        base.sticker_message
            .as_option()
            .and_then(|m| m.context_info.as_option()),
    ]
    .into_iter()
    .flatten()
    .next()?;
    context
        .stanza_id
        .as_ref()
        .filter(|id| !id.is_empty())
        .cloned()
}

/// An inbound event's `reply_to` as the device knows it: the WhatsApp id of a message
/// the device sent becomes its wafleet id, when the outbound map still has it.
pub(super) async fn known_reply_to(backend: &VaultBackend, event: &mut LinkEvent) {
    let LinkEvent::Inbound {
        reply_to: Some(reply_to),
        ..
    } = event
    else {
        return;
    };
    match backend.outbound(reply_to).await {
        Ok(Some(message_id)) => *reply_to = message_id,
        Ok(None) => {}
        Err(error) => {
            warn!(device_id = backend.device_id(), %error, "cannot map a quoted message to its wafleet id")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::link::whatsapp::conformance::create_starting_device;
    use crate::link::whatsapp::session::jid_of_phone;
    use crate::seal::{MasterKey, Sealer};
    use crate::store::{SqliteStore, Store};
    use crate::vault::Vault;

    const DEVICE: &str = "dev-1";
    const OWN: &str = "6281111111111";
    const PEER: &str = "6282222222222";
    const GROUP: &str = "120363041234567890@g.us";

    fn own() -> Jid {
        jid_of_phone(OWN).unwrap()
    }

    fn context_of(message: &wa::Message) -> &wa::ContextInfo {
        message
            .extended_text_message
            .as_option()
            .and_then(|m| m.context_info.as_option())
            .expect("an extended text with a context")
    }

    #[test]
    fn a_reply_to_our_own_message_names_its_whatsapp_id_and_our_account() {
        let quote = Quote {
            id: "msg_1".into(),
            from_me: true,
            chat: Some(PEER.into()),
            author: None,
            text: "your order is ready".into(),
        };
        let context = quote_context(DEVICE, Some(&own()), PEER, &quote).unwrap();
        let reply = with_quote(wa::Message::text("thanks"), context);
        assert_eq!(reply.conversation, None);
        let text = reply.extended_text_message.as_option().unwrap();
        assert_eq!(text.text.as_deref(), Some("thanks"));
        let context = context_of(&reply);
        assert_eq!(
            context.stanza_id.as_deref(),
            Some(wa_message_id(DEVICE, "msg_1").as_str())
        );
        assert_eq!(
            context.participant.as_deref(),
            Some("6281111111111@s.whatsapp.net")
        );
        assert_eq!(
            context
                .quoted_message
                .as_option()
                .unwrap()
                .conversation
                .as_deref(),
            Some("your order is ready")
        );
        assert_eq!(context.remote_jid, None, "the same chat");
    }

    #[test]
    fn a_reply_to_a_received_message_names_its_id_and_writer() {
        // 1:1: the writer is the chat's other side.
        let quote = Quote {
            id: "3EB0AABBCCDDEEFF001122".into(),
            chat: Some(PEER.into()),
            text: "is it in stock?".into(),
            ..Quote::default()
        };
        let context = quote_context(DEVICE, Some(&own()), PEER, &quote).unwrap();
        assert_eq!(context.stanza_id.as_deref(), Some("3EB0AABBCCDDEEFF001122"));
        assert_eq!(
            context.participant.as_deref(),
            Some("6282222222222@s.whatsapp.net")
        );
        assert_eq!(context.remote_jid, None);
        // A sender kept as E.164 (older stores) is the same chat as the recipient's digits.
        let e164 = Quote {
            chat: Some(format!("+{PEER}")),
            ..quote.clone()
        };
        let context = quote_context(DEVICE, Some(&own()), PEER, &e164).unwrap();
        assert_eq!(context.remote_jid, None, "the same chat");
        assert_eq!(
            context.participant.as_deref(),
            Some("6282222222222@s.whatsapp.net")
        );
        // A sender known only by its LID is named by it.
        let lid = Quote {
            chat: Some("100000000000001@lid".into()),
            ..quote.clone()
        };
        let context = quote_context(DEVICE, Some(&own()), PEER, &lid).unwrap();
        assert_eq!(context.participant.as_deref(), Some("100000000000001@lid"));

        // In a group: its author; quoted in a 1:1 chat ("reply privately"): the group
        // is named as the quote's chat.
        let quote = Quote {
            id: "3EB0CC".into(),
            chat: Some(GROUP.into()),
            author: Some("+6283333333333".into()),
            text: "who has the key?".into(),
            ..Quote::default()
        };
        let in_group = quote_context(DEVICE, Some(&own()), GROUP, &quote).unwrap();
        assert_eq!(
            in_group.participant.as_deref(),
            Some("6283333333333@s.whatsapp.net")
        );
        assert_eq!(in_group.remote_jid, None);
        let privately = quote_context(DEVICE, Some(&own()), "6283333333333", &quote).unwrap();
        assert_eq!(privately.remote_jid.as_deref(), Some(GROUP));
    }

    #[test]
    fn a_media_reply_keeps_its_mentions_and_gets_the_quote() {
        let image = wa::Message {
            image_message: MessageField::some(wa::message::ImageMessage {
                context_info: MessageField::some(wa::ContextInfo {
                    mentioned_jid: vec!["6284444444444@s.whatsapp.net".into()],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let quote = Quote {
            id: "3EB0DD".into(),
            chat: Some(PEER.into()),
            ..Quote::default()
        };
        let context = quote_context(DEVICE, Some(&own()), PEER, &quote).unwrap();
        let reply = with_quote(image, context);
        let context = reply
            .image_message
            .as_option()
            .and_then(|m| m.context_info.as_option())
            .unwrap();
        assert_eq!(context.stanza_id.as_deref(), Some("3EB0DD"));
        assert_eq!(context.mentioned_jid, ["6284444444444@s.whatsapp.net"]);
    }

    #[test]
    fn an_inbound_reply_s_context_gives_the_quoted_id() {
        let reply = with_quote(
            wa::Message::text("yes"),
            wa::ContextInfo {
                stanza_id: Some("3EB0EE".into()),
                ..Default::default()
            },
        );
        assert_eq!(quoted_id(&reply).as_deref(), Some("3EB0EE"));
        let document = wa::Message {
            document_message: MessageField::some(wa::message::DocumentMessage {
                context_info: MessageField::some(wa::ContextInfo {
                    stanza_id: Some("3EB0FF".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(quoted_id(&document).as_deref(), Some("3EB0FF"));
        assert_eq!(quoted_id(&wa::Message::text("not a reply")), None);
    }

    #[tokio::test]
    async fn a_quoted_id_of_a_message_we_sent_maps_back_to_its_wafleet_id() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("wafleet.db")).unwrap());
        create_starting_device(store.as_ref(), DEVICE).await;
        let sealer = Arc::new(Sealer::new(MasterKey::new(1, [7u8; 32])));
        let vault = Vault::new(store, sealer).device(DEVICE, None);
        let backend = VaultBackend::open(vault).await.unwrap();
        let ours = wa_message_id(DEVICE, "msg_ours");
        backend.put_outbound(&ours, "msg_ours").await.unwrap();

        let inbound = |reply_to: &str| LinkEvent::Inbound {
            message_id: "3EB0REPLY".into(),
            from_phone: format!("+{PEER}"),
            text: "ok".into(),
            at_ms: 1,
            media: None,
            group: None,
            reply_to: Some(reply_to.to_owned()),
        };
        let reply_to = |event: LinkEvent| match event {
            LinkEvent::Inbound { reply_to, .. } => reply_to,
            other => panic!("expected an inbound message, got {other:?}"),
        };
        let mut event = inbound(&ours);
        known_reply_to(&backend, &mut event).await;
        assert_eq!(reply_to(event).as_deref(), Some("msg_ours"));
        // A message the device received, or one it never had: the id as it came.
        let mut event = inbound("3EB0THEIRS");
        known_reply_to(&backend, &mut event).await;
        assert_eq!(reply_to(event).as_deref(), Some("3EB0THEIRS"));
    }
}
