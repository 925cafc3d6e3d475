//! Reading a device's message log: its messages of both directions newest first,
//! filtered, and its chats (one per peer, the newest first, with the last message and
//! how many inbound messages are unread).

use std::collections::HashMap;

use super::{Direction, MessageRecord, MessageStatus};

/// A message's place in the log, which is ordered by `(created_at_ms, id)`, newest
/// first: what a page's cursor names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogKey {
    pub created_at_ms: i64,
    pub id: String,
}

impl LogKey {
    pub fn of(message: &MessageRecord) -> LogKey {
        LogKey {
            created_at_ms: message.created_at_ms,
            id: message.id.clone(),
        }
    }
}

/// A page request for [`super::Store::list_messages`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageQuery {
    pub direction: Option<Direction>,
    pub status: Option<MessageStatus>,
    /// Only messages to or from this phone.
    pub peer: Option<String>,
    /// Created at or after (Unix ms).
    pub since_ms: Option<i64>,
    /// Created before (Unix ms).
    pub until_ms: Option<i64>,
    /// Only messages older than this place (the previous page's last message).
    pub before: Option<LogKey>,
    pub limit: u32,
}

impl MessageQuery {
    /// Whether `message` is one the query asks for (the cursor included).
    pub fn matches(&self, message: &MessageRecord) -> bool {
        self.direction.is_none_or(|d| d == message.direction)
            && self.status.is_none_or(|s| s == message.status)
            && self.peer.as_deref().is_none_or(|p| p == message.peer_phone)
            && self.since_ms.is_none_or(|t| message.created_at_ms >= t)
            && self.until_ms.is_none_or(|t| message.created_at_ms < t)
            && self
                .before
                .as_ref()
                .is_none_or(|before| LogKey::of(message) < *before)
    }
}

/// A chat's place in the list, ordered by its last message's time, then its peer,
/// newest first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChatKey {
    pub last_at_ms: i64,
    pub peer: String,
}

/// A page request for [`super::Store::list_chats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatQuery {
    /// Only chats after this place (the previous page's last chat).
    pub before: Option<ChatKey>,
    pub limit: u32,
}

/// One conversation of a device: every message to or from one phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chat {
    pub peer: String,
    /// The newest message of the chat.
    pub last: MessageRecord,
    /// Inbound messages not yet marked read.
    pub unread: u32,
}

impl Chat {
    pub fn key(&self) -> ChatKey {
        ChatKey {
            last_at_ms: self.last.created_at_ms,
            peer: self.peer.clone(),
        }
    }
}

/// Whether an inbound message is still unread.
pub fn is_unread(message: &MessageRecord) -> bool {
    message.direction == Direction::Inbound && message.read_at_ms.is_none()
}

/// The page of chats `query` asks for, made from every message of a device (a backend
/// that cannot group in the store reads the log and calls this).
pub fn chats_of(messages: impl IntoIterator<Item = MessageRecord>, query: &ChatQuery) -> Vec<Chat> {
    let mut chats: HashMap<String, Chat> = HashMap::new();
    for message in messages {
        let unread = u32::from(is_unread(&message));
        match chats.get_mut(&message.peer_phone) {
            Some(chat) => {
                chat.unread += unread;
                if LogKey::of(&message) > LogKey::of(&chat.last) {
                    chat.last = message;
                }
            }
            None => {
                chats.insert(
                    message.peer_phone.clone(),
                    Chat {
                        peer: message.peer_phone.clone(),
                        last: message,
                        unread,
                    },
                );
            }
        }
    }
    let mut chats: Vec<Chat> = chats
        .into_values()
        .filter(|chat| {
            query
                .before
                .as_ref()
                .is_none_or(|before| chat.key() < *before)
        })
        .collect();
    chats.sort_by_key(|chat| std::cmp::Reverse(chat.key()));
    chats.truncate(query.limit as usize);
    chats
}
