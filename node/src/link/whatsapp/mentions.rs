//! Where a message goes on the real link (a phone number's JID or a group's) and the
//! mentions it carries: WhatsApp names each mentioned number's JID in the message's
//! `ContextInfo.mentionedJid` (the text keeps whatever `@number` the client wrote).

use whatsapp_rust::Jid;
use whatsapp_rust::waproto::buffa::MessageField;
use whatsapp_rust::waproto::whatsapp as wa;

use super::session::jid_of_phone;
use crate::group::is_group_id;

/// The JID of a message's peer: a group id as it is, a phone number as its JID.
pub(super) fn jid_of_peer(peer: &str) -> Result<Jid, String> {
    if is_group_id(peer) {
        peer.parse::<Jid>()
            .map_err(|e| format!("not a group id: {peer}: {e}"))
    } else {
        jid_of_phone(peer)
    }
}

/// `message` naming `mentions` (phone numbers): a plain text becomes an extended text,
/// which has a context; a media message gets it in its own.
pub(super) fn with_mentions(
    mut message: wa::Message,
    mentions: &[String],
) -> Result<wa::Message, String> {
    if mentions.is_empty() {
        return Ok(message);
    }
    let jids = mentions
        .iter()
        .map(|phone| jid_of_phone(phone).map(|jid| jid.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let context = || {
        MessageField::some(wa::ContextInfo {
            mentioned_jid: jids.clone(),
            ..Default::default()
        })
    };
    if let Some(text) = message.conversation.take() {
        message.extended_text_message = MessageField::some(wa::message::ExtendedTextMessage {
            text: Some(text),
            context_info: context(),
            ..Default::default()
        });
    } else if let Some(m) = message.extended_text_message.as_option_mut() {
        m.context_info = context();
    } else if let Some(m) = message.image_message.as_option_mut() {
        m.context_info = context();
    } else if let Some(m) = message.video_message.as_option_mut() {
        m.context_info = context();
    } else if let Some(m) = message.document_message.as_option_mut() {
        m.context_info = context();
    } else if let Some(m) = message.audio_message.as_option_mut() {
        m.context_info = context();
    } else if let Some(m) = message.sticker_message.as_option_mut() {
        m.context_info = context();
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use whatsapp_rust::wacore::proto_helpers::MessageBuilderExt;

    use super::*;

    #[test]
    fn groups_and_phones_have_their_jids() {
        assert_eq!(
            jid_of_peer("120363041234567890@g.us").unwrap().to_string(),
            "120363041234567890@g.us"
        );
        assert_eq!(
            jid_of_peer("6281234567890").unwrap().to_string(),
            "6281234567890@s.whatsapp.net"
        );
        assert!(jid_of_peer("x@g.us").is_err());
    }

    #[test]
    fn mentions_go_in_the_message_s_context() {
        let plain = with_mentions(wa::Message::text("halo"), &[]).unwrap();
        assert_eq!(plain.conversation.as_deref(), Some("halo"));

        let mentioned = with_mentions(
            wa::Message::text("halo @6282222222222"),
            &["6282222222222".into()],
        )
        .unwrap();
        assert_eq!(mentioned.conversation, None);
        let extended = mentioned.extended_text_message.as_option().unwrap();
        assert_eq!(extended.text.as_deref(), Some("halo @6282222222222"));
        assert_eq!(
            extended.context_info.as_option().unwrap().mentioned_jid,
            ["6282222222222@s.whatsapp.net"]
        );

        let image = wa::Message {
            image_message: MessageField::some(wa::message::ImageMessage::default()),
            ..Default::default()
        };
        let image = with_mentions(image, &["6283333333333".into()]).unwrap();
        let context = image
            .image_message
            .as_option()
            .unwrap()
            .context_info
            .as_option();
        assert_eq!(
            context.unwrap().mentioned_jid,
            ["6283333333333@s.whatsapp.net"]
        );

        assert!(with_mentions(wa::Message::text("x"), &["nope".into()]).is_err());
    }
}
