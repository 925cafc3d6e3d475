//! The message log's query and page: the filters and the cursor that
//! `GET /v1/devices/{id}/messages` and a chat's messages share.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use wafleet_node::store::{ChatKey, Direction, LogKey, MessageQuery, MessageRecord, MessageStatus};

use crate::dto::{Message, next_cursor, page_limit, time_param};
use crate::error::ApiError;
use crate::validate;

/// Filters of the message log.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    /// `in` (received) or `out` (sent).
    #[param(pattern = "^(in|out)$")]
    pub direction: Option<String>,
    /// scheduled, queued, sent, delivered, read, failed or cancelled.
    #[param(pattern = "^(scheduled|queued|sent|delivered|read|failed|cancelled)$")]
    pub status: Option<String>,
    /// Only messages to or from this phone number.
    pub peer: Option<String>,
    /// RFC 3339: created at or after.
    pub since: Option<String>,
    /// RFC 3339: created before.
    pub until: Option<String>,
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^-?[0-9]{1,18}:.*$")]
    pub cursor: Option<String>,
}

/// Paging only (a chat's messages are the log of one peer).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^-?[0-9]{1,18}:.*$")]
    pub cursor: Option<String>,
}

/// A page of messages, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessagePage {
    pub messages: Vec<Message>,
    pub next_cursor: Option<String>,
}

impl LogParams {
    /// The store's query for these filters; a bad value is 400 naming it.
    pub fn query(&self) -> Result<MessageQuery, ApiError> {
        let direction = match self.direction.as_deref() {
            None => None,
            Some("in") => Some(Direction::Inbound),
            Some("out") => Some(Direction::Outbound),
            Some(_) => {
                return Err(ApiError::invalid(
                    "invalid_direction",
                    "direction is in or out",
                ));
            }
        };
        let status = self
            .status
            .as_deref()
            .map(|s| {
                MessageStatus::parse(s).ok_or_else(|| {
                    ApiError::invalid(
                        "invalid_status",
                        "status is scheduled, queued, sent, delivered, read, failed or cancelled",
                    )
                })
            })
            .transpose()?;
        let peer = self.peer.as_deref().map(validate::phone).transpose()?;
        Ok(MessageQuery {
            direction,
            status,
            peer,
            since_ms: time_param(self.since.as_deref(), "since")?,
            until_ms: time_param(self.until.as_deref(), "until")?,
            before: self.cursor.as_deref().map(log_cursor).transpose()?,
            limit: page_limit(self.limit)?,
        })
    }
}

impl PageParams {
    /// The query of one peer's messages.
    pub fn query(&self, peer: String) -> Result<MessageQuery, ApiError> {
        Ok(MessageQuery {
            peer: Some(peer),
            before: self.cursor.as_deref().map(log_cursor).transpose()?,
            limit: page_limit(self.limit)?,
            ..MessageQuery::default()
        })
    }
}

/// The page of `messages` asked for with `limit`.
pub fn message_page(messages: Vec<MessageRecord>, limit: u32) -> MessagePage {
    let next_cursor = next_cursor(&messages, limit, |m| cursor(m.created_at_ms, &m.id));
    MessagePage {
        messages: messages.into_iter().map(Message::from).collect(),
        next_cursor,
    }
}

/// A place in a list ordered by (time, text): `<ms>:<text>` (every string of that
/// form is a place, so a client cannot make an invalid one by accident).
pub fn cursor(at_ms: i64, text: &str) -> String {
    format!("{at_ms}:{text}")
}

fn parse_cursor(cursor: &str) -> Result<(i64, String), ApiError> {
    let bad = || ApiError::invalid("invalid_cursor", "cursor is a next_cursor of this list");
    let (at, rest) = cursor.split_once(':').ok_or_else(bad)?;
    Ok((at.parse().map_err(|_| bad())?, rest.to_owned()))
}

fn log_cursor(cursor: &str) -> Result<LogKey, ApiError> {
    let (created_at_ms, id) = parse_cursor(cursor)?;
    Ok(LogKey { created_at_ms, id })
}

/// The place a chats cursor names.
pub fn chat_cursor(cursor: &str) -> Result<ChatKey, ApiError> {
    let (last_at_ms, peer) = parse_cursor(cursor)?;
    Ok(ChatKey { last_at_ms, peer })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_whatever_the_id_holds() {
        for id in ["msg_1", "a:b:c", "3EB0 9F&x=1", ""] {
            let key = log_cursor(&cursor(1_700_000_000_123, id)).unwrap();
            assert_eq!(
                (key.created_at_ms, key.id.as_str()),
                (1_700_000_000_123, id)
            );
        }
        for bad in ["%%", "no-colon", "x:1", ""] {
            assert!(log_cursor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_become_the_store_query() {
        let params = LogParams {
            direction: Some("in".into()),
            status: Some("read".into()),
            peer: Some("+6281234567890".into()),
            since: Some("2026-12-01T00:00:00Z".into()),
            limit: Some(10),
            ..LogParams::default()
        };
        let query = params.query().unwrap();
        assert_eq!(query.direction, Some(Direction::Inbound));
        assert_eq!(query.status, Some(MessageStatus::Read));
        assert_eq!(query.peer.as_deref(), Some("6281234567890"));
        assert_eq!(query.since_ms, Some(1_796_083_200_000));
        assert_eq!(query.limit, 10);
        for bad in [
            LogParams {
                direction: Some("sideways".into()),
                ..LogParams::default()
            },
            LogParams {
                status: Some("lost".into()),
                ..LogParams::default()
            },
            LogParams {
                until: Some("yesterday".into()),
                ..LogParams::default()
            },
            LogParams {
                limit: Some(0),
                ..LogParams::default()
            },
        ] {
            assert!(bad.query().is_err(), "{bad:?}");
        }
    }
}
