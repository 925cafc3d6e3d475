//! [`Fleet::mark_read`]: marking a chat read — read receipts to the network for its
//! unread inbound messages, then each stored read (`read_at_ms`).
//!
//! A chat is a phone's or a group's ([`MarkRead`] names one). WhatsApp's receipt for a
//! message in a group names the group and the message's author, so a group's unread
//! messages are sorted by author (kept in each message's sealed [`Content`]) and each
//! author's go in one request to the link ([`receipts`]). All receipts are handed to
//! the network before anything is stored read: a failure stores nothing, and a retry
//! sends them again (the network takes a receipt twice without harm).

use super::link_requests::link_failure;
use super::{Fleet, call};
use crate::api::{FleetError, MarkRead};
use crate::clock::now_ms;
use crate::content::Content;
use crate::device::DeviceMsg;
use crate::group::is_group_id;
use crate::seal::text::Place;
use crate::store::{
    Direction, MessageQuery, MessageRecord, MessageStatus, message_log::LogKey,
    message_log::is_unread,
};

/// Inbound messages read from the store per page while collecting a chat's unread ones.
const UNREAD_PAGE: u32 = 500;

/// The chat a [`MarkRead`] names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Chat {
    /// With a phone number (digits, as given).
    Phone(String),
    /// A group's, by its id.
    Group(String),
}

impl Chat {
    /// The chat `read` names: exactly one of a phone number and a valid group id.
    fn of(read: &MarkRead) -> Result<Chat, FleetError> {
        match (read.peer_phone.is_empty(), read.group_id.is_empty()) {
            (false, true) => Ok(Chat::Phone(read.peer_phone.clone())),
            (true, false) if is_group_id(&read.group_id) => Ok(Chat::Group(read.group_id.clone())),
            (true, false) => Err(FleetError::Invalid(format!(
                "{:?} is not a group id",
                read.group_id
            ))),
            _ => Err(FleetError::Invalid(
                "marking a chat read names a phone number or a group id".into(),
            )),
        }
    }

    /// The peers its messages are logged under: a link that writes the peer in E.164
    /// (`+62…`, the WhatsApp link) and one that writes digits (the simulator) are both
    /// found; a group's messages are logged under its id.
    fn peers(&self) -> Vec<String> {
        match self {
            Chat::Phone(phone) => {
                let digits = phone.strip_prefix('+').unwrap_or(phone);
                vec![digits.to_owned(), format!("+{digits}")]
            }
            Chat::Group(id) => vec![id.clone()],
        }
    }
}

/// One request of read receipts to the link: messages of one sender (in a group, of one
/// author in that group).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Receipts {
    peer_phone: String,
    group: Option<String>,
    message_ids: Vec<String>,
}

/// The receipts for `unread` (ids with, in a group, their authors) of `chat`: one
/// request for a phone's chat; one per author, in the order authors first appear, for a
/// group's. A group message without an author (none is stored so) gets no receipt.
fn receipts(chat: &Chat, unread: &[(String, Option<String>)]) -> Vec<Receipts> {
    match chat {
        Chat::Phone(phone) => vec![Receipts {
            peer_phone: phone.clone(),
            group: None,
            message_ids: unread.iter().map(|(id, _)| id.clone()).collect(),
        }],
        Chat::Group(group) => {
            let mut by_author: Vec<Receipts> = Vec::new();
            for (id, author) in unread {
                let Some(author) = author else { continue };
                match by_author.iter_mut().find(|r| &r.peer_phone == author) {
                    Some(receipts) => receipts.message_ids.push(id.clone()),
                    None => by_author.push(Receipts {
                        peer_phone: author.clone(),
                        group: Some(group.clone()),
                        message_ids: vec![id.clone()],
                    }),
                }
            }
            by_author
        }
    }
}

impl Fleet {
    /// Marks the chat `read` names read: read receipts for its unread inbound messages
    /// go to the network (see the module docs), then each is stored read
    /// (`read_at_ms`). The device must be READY. Returns how many messages became read.
    pub async fn mark_read(&self, id: &str, read: &MarkRead) -> Result<u64, FleetError> {
        let chat = Chat::of(read)?;
        let device = self.catalog.device(id).await?;
        let actor = self.ready_actor(&device, "marking a chat read")?;
        let unread = self.unread_in(id, &chat).await?;
        if unread.is_empty() {
            return Ok(0);
        }
        for request in receipts(&chat, &unread) {
            let sent = call(&actor, move |reply| DeviceMsg::MarkRead {
                peer_phone: request.peer_phone,
                group: request.group,
                message_ids: request.message_ids,
                reply,
            })
            .await?;
            sent.map_err(|error| link_failure(id, "send read receipts", error))?;
        }
        let at_ms = now_ms();
        let mut read = 0;
        for (message_id, _) in &unread {
            let stored = self
                .ctx
                .store
                .advance_message(id, message_id, MessageStatus::Read, at_ms, None)
                .await?;
            if stored.is_some_and(|m| m.read_at_ms == Some(at_ms)) {
                read += 1;
            }
        }
        Ok(read)
    }

    /// The unread inbound messages of `chat`: their ids and, in a group, their authors
    /// (opened from their sealed texts).
    async fn unread_in(
        &self,
        id: &str,
        chat: &Chat,
    ) -> Result<Vec<(String, Option<String>)>, FleetError> {
        let mut unread = Vec::new();
        for peer in chat.peers() {
            let mut query = MessageQuery {
                direction: Some(Direction::Inbound),
                status: Some(MessageStatus::Delivered),
                peer: Some(peer),
                limit: UNREAD_PAGE,
                ..MessageQuery::default()
            };
            loop {
                let page = self.ctx.store.list_messages(id, &query).await?;
                let full = page.len() as u32 == UNREAD_PAGE;
                query.before = page.last().map(LogKey::of);
                for message in page.into_iter().filter(is_unread) {
                    let author = match chat {
                        Chat::Phone(_) => None,
                        Chat::Group(_) => self.author_of(&message).await?,
                    };
                    unread.push((message.id, author));
                }
                if !full {
                    break;
                }
            }
        }
        Ok(unread)
    }

    /// Who wrote an inbound group message (its sealed content keeps it).
    async fn author_of(&self, message: &MessageRecord) -> Result<Option<String>, FleetError> {
        let text = self
            .ctx
            .keys
            .open(
                &Place::message(&message.device_id, &message.id),
                &message.text,
            )
            .await?;
        Ok(Content::from_stored(&text).author)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(peer_phone: &str, group_id: &str) -> MarkRead {
        MarkRead {
            peer_phone: peer_phone.into(),
            group_id: group_id.into(),
        }
    }

    #[test]
    fn a_chat_is_a_phone_or_a_valid_group_never_both() {
        let group = "120363041234567890@g.us";
        assert_eq!(
            Chat::of(&read("6281111111111", "")).unwrap(),
            Chat::Phone("6281111111111".into())
        );
        assert_eq!(
            Chat::of(&read("", group)).unwrap(),
            Chat::Group(group.into())
        );
        for bad in [
            read("", ""),
            read("6281111111111", group),
            read("", "12@g.us"),
        ] {
            assert!(
                matches!(Chat::of(&bad), Err(FleetError::Invalid(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            Chat::Phone("+6281111111111".into()).peers(),
            ["6281111111111", "+6281111111111"]
        );
        assert_eq!(Chat::Group(group.into()).peers(), [group]);
    }

    #[test]
    fn a_groups_receipts_go_one_request_per_author() {
        let group = Chat::Group("120363041234567890@g.us".into());
        let unread = [
            ("m1".to_owned(), Some("6281".to_owned())),
            ("m2".to_owned(), Some("6282".to_owned())),
            ("m3".to_owned(), Some("6281".to_owned())),
            ("m4".to_owned(), None),
        ];
        let shown: Vec<(String, Option<String>, Vec<String>)> = receipts(&group, &unread)
            .into_iter()
            .map(|r| (r.peer_phone, r.group, r.message_ids))
            .collect();
        let in_group = Some("120363041234567890@g.us".to_owned());
        assert_eq!(
            shown,
            [
                (
                    "6281".into(),
                    in_group.clone(),
                    vec!["m1".into(), "m3".into()]
                ),
                ("6282".into(), in_group, vec!["m2".into()]),
            ]
        );
        let phone = receipts(&Chat::Phone("6289".into()), &unread[..2]);
        assert_eq!(
            phone,
            [Receipts {
                peer_phone: "6289".into(),
                group: None,
                message_ids: vec!["m1".into(), "m2".into()],
            }]
        );
    }
}
