//! Read receipts on the real link: the device's user read a chat's inbound messages,
//! and WhatsApp is told with whatsapp-rust's `Client::mark_as_read`, under the
//! messages' WhatsApp ids (an inbound message keeps the id WhatsApp gave it): for the
//! 1:1 chat with the sender's phone number, or, in a group, for the group's chat and
//! the author of the messages (WhatsApp's group receipt names the participant).
//!
//! Not exercised against WhatsApp here (no account reaches it from these machines):
//! the tests below check what would be handed to whatsapp-rust.

use std::time::Duration;

use async_trait::async_trait;
use whatsapp_rust::{Client, Jid};

use super::mentions::jid_of_peer;
use super::session::jid_of_phone;
use crate::link::LinkError;

/// How long handing read receipts to WhatsApp may take.
const READ_TIMEOUT: Duration = Duration::from_secs(8);

/// What read receipts need of the WhatsApp client. A seam, so that a test can see what
/// would be sent without a connection.
#[async_trait]
pub(super) trait Reader: Send + Sync {
    /// Sends read receipts for `message_ids` of the chat `chat`; in a group, `sender`
    /// is their author (`None` in a 1:1 chat, whose sender is the chat).
    async fn mark_read(
        &self,
        chat: Jid,
        sender: Option<Jid>,
        message_ids: Vec<String>,
    ) -> Result<(), String>;

    /// Whether the connection to WhatsApp is up now.
    fn connected(&self) -> bool;
}

#[async_trait]
impl Reader for Client {
    async fn mark_read(
        &self,
        chat: Jid,
        sender: Option<Jid>,
        message_ids: Vec<String>,
    ) -> Result<(), String> {
        let ids: Vec<&str> = message_ids.iter().map(String::as_str).collect();
        self.mark_as_read(&chat, sender.as_ref(), &ids)
            .await
            .map_err(|e| e.to_string())
    }

    fn connected(&self) -> bool {
        self.is_connected()
    }
}

/// Tells WhatsApp that `message_ids` from `peer_phone` were read; in `group`, that
/// they are those `peer_phone` wrote there.
pub(super) async fn mark_read(
    client: &dyn Reader,
    peer_phone: &str,
    group: Option<&str>,
    message_ids: Vec<String>,
) -> Result<(), LinkError> {
    let (chat, sender) = match group {
        None => (jid_of_phone(peer_phone), None),
        Some(group) => (jid_of_peer(group), Some(jid_of_author(peer_phone))),
    };
    let chat = chat.map_err(LinkError::WrongState)?;
    let sender = sender.transpose().map_err(LinkError::WrongState)?;
    if message_ids.is_empty() {
        return Ok(());
    }
    if !client.connected() {
        return Err(LinkError::WrongState("not connected to WhatsApp".into()));
    }
    tokio::time::timeout(READ_TIMEOUT, client.mark_read(chat, sender, message_ids))
        .await
        .map_err(|_| LinkError::Timeout)?
        .map_err(LinkError::Refused)
}

/// The JID of a group message's author as the link relayed it: a phone number (digits or E.164),
/// or the JID itself when WhatsApp named the author by a LID without a phone number
/// (see `session::relayed_sender`).
fn jid_of_author(author: &str) -> Result<Jid, String> {
    if author.contains('@') {
        author
            .parse::<Jid>()
            .map_err(|e| format!("not a participant: {author}: {e}"))
    } else {
        jid_of_phone(author)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// One receipt request as it would have been sent: the chat, the sender (in a
    /// group), the message ids.
    type Sent = (String, Option<String>, Vec<String>);

    /// Remembers what it would have sent; fails when told to.
    struct Receipts {
        sent: Mutex<Vec<Sent>>,
        fail: Option<&'static str>,
    }

    #[async_trait]
    impl Reader for Receipts {
        async fn mark_read(
            &self,
            chat: Jid,
            sender: Option<Jid>,
            message_ids: Vec<String>,
        ) -> Result<(), String> {
            if let Some(error) = self.fail {
                return Err(error.into());
            }
            self.sent.lock().unwrap().push((
                chat.to_string(),
                sender.map(|s| s.to_string()),
                message_ids,
            ));
            Ok(())
        }

        fn connected(&self) -> bool {
            true
        }
    }

    fn receipts(fail: Option<&'static str>) -> Receipts {
        Receipts {
            sent: Mutex::new(Vec::new()),
            fail,
        }
    }

    #[tokio::test]
    async fn receipts_go_to_the_senders_chat_under_the_whatsapp_ids() {
        let client = receipts(None);
        let ids = vec!["3EB0AAAA".to_owned(), "3EB0BBBB".to_owned()];
        mark_read(&client, "+6281111111111", None, ids.clone())
            .await
            .expect("sent");
        mark_read(&client, "6282222222222", None, Vec::new())
            .await
            .expect("nothing to send");
        assert_eq!(
            *client.sent.lock().unwrap(),
            [("6281111111111@s.whatsapp.net".to_owned(), None, ids)]
        );
    }

    #[tokio::test]
    async fn in_a_group_receipts_go_to_the_group_and_name_the_author() {
        let client = receipts(None);
        let group = "120363041234567890@g.us";
        let ids = vec!["3EB0CCCC".to_owned()];
        mark_read(&client, "+6283333333333", Some(group), ids.clone())
            .await
            .expect("sent");
        // An author WhatsApp named by a LID only is named so again.
        mark_read(&client, "123456789012345@lid", Some(group), ids.clone())
            .await
            .expect("sent");
        assert_eq!(
            *client.sent.lock().unwrap(),
            [
                (
                    group.to_owned(),
                    Some("6283333333333@s.whatsapp.net".to_owned()),
                    ids.clone()
                ),
                (
                    group.to_owned(),
                    Some("123456789012345@lid".to_owned()),
                    ids
                ),
            ]
        );
        let bad = mark_read(
            &client,
            "6283333333333",
            Some("not-a-group"),
            vec!["x".into()],
        )
        .await;
        assert!(matches!(bad, Err(LinkError::WrongState(_))), "{bad:?}");
    }

    #[tokio::test]
    async fn a_bad_chat_or_a_refusal_is_an_error() {
        let client = receipts(Some("socket closed"));
        let refused = mark_read(&client, "6281111111111", None, vec!["3EB0AAAA".into()]).await;
        match refused {
            Err(LinkError::Refused(why)) => assert!(why.contains("socket closed"), "{why}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        let bad = mark_read(&client, "not a phone", None, vec!["3EB0AAAA".into()]).await;
        assert!(matches!(bad, Err(LinkError::WrongState(_))), "{bad:?}");
    }
}
