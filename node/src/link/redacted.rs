//! `Debug` of [`LinkEvent`] and [`LinkCommand`] without the text of a message.
//!
//! Both carry message text (an inbound message, a send), and a `?event` in a log line
//! or a `{:?}` in an error would otherwise write it to the logs. Here a text shows as
//! its length; every other field as derived.

use std::fmt;

use super::{LinkCommand, LinkEvent};

/// A message's text as it may be logged: its length in bytes.
struct Text<'a>(&'a str);

impl fmt::Debug for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0.len())
    }
}

impl fmt::Debug for LinkEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkEvent::Qr {
                code,
                expires_at_ms,
            } => f
                .debug_struct("Qr")
                .field("code", code)
                .field("expires_at_ms", expires_at_ms)
                .finish(),
            LinkEvent::Paired { phone } => f.debug_struct("Paired").field("phone", phone).finish(),
            LinkEvent::Connected { phone } => {
                f.debug_struct("Connected").field("phone", phone).finish()
            }
            LinkEvent::Disconnected { reason } => f
                .debug_struct("Disconnected")
                .field("reason", reason)
                .finish(),
            LinkEvent::CredentialsRejected { reason } => f
                .debug_struct("CredentialsRejected")
                .field("reason", reason)
                .finish(),
            LinkEvent::LoggedOut => f.write_str("LoggedOut"),
            LinkEvent::QrTimeout => f.write_str("QrTimeout"),
            LinkEvent::Replaced => f.write_str("Replaced"),
            LinkEvent::Fenced { reason } => {
                f.debug_struct("Fenced").field("reason", reason).finish()
            }
            LinkEvent::Receipt {
                message_id,
                status,
                error,
                at_ms,
            } => f
                .debug_struct("Receipt")
                .field("message_id", message_id)
                .field("status", status)
                .field("error", error)
                .field("at_ms", at_ms)
                .finish(),
            LinkEvent::Unsent { message_id, reason } => f
                .debug_struct("Unsent")
                .field("message_id", message_id)
                .field("reason", reason)
                .finish(),
            LinkEvent::Inbound {
                message_id,
                from_phone,
                text,
                at_ms,
                media,
                group,
                reply_to,
            } => f
                .debug_struct("Inbound")
                .field("message_id", message_id)
                .field("from_phone", from_phone)
                .field("text", &Text(text))
                .field("at_ms", at_ms)
                .field("media", &media.as_ref().map(|m| &m.id))
                .field("group", group)
                .field("reply_to", reply_to)
                .finish(),
            LinkEvent::Banned { until_ms } => f
                .debug_struct("Banned")
                .field("until_ms", until_ms)
                .finish(),
        }
    }
}

impl fmt::Debug for LinkCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkCommand::SendText {
                message_id,
                to_phone,
                text,
                media,
                mentions,
                quote,
            } => f
                .debug_struct("SendText")
                .field("message_id", message_id)
                .field("to_phone", to_phone)
                .field("text", &Text(text))
                .field("media", &media.as_ref().map(|m| &m.id))
                .field("mentions", mentions)
                .field("reply_to", &quote.as_ref().map(|q| &q.id))
                .finish(),
            LinkCommand::RequestPairCode { phone, .. } => f
                .debug_struct("RequestPairCode")
                .field("phone", phone)
                .finish_non_exhaustive(),
            LinkCommand::AckInbound { message_id } => f
                .debug_struct("AckInbound")
                .field("message_id", message_id)
                .finish(),
            LinkCommand::AckReceipt { message_id, status } => f
                .debug_struct("AckReceipt")
                .field("message_id", message_id)
                .field("status", status)
                .finish(),
            LinkCommand::Logout { .. } => f.debug_struct("Logout").finish_non_exhaustive(),
            LinkCommand::CheckNumbers { phones, .. } => f
                .debug_struct("CheckNumbers")
                .field("phones", phones)
                .finish_non_exhaustive(),
            LinkCommand::MarkRead {
                peer_phone,
                group,
                message_ids,
                ..
            } => f
                .debug_struct("MarkRead")
                .field("peer_phone", peer_phone)
                .field("group", group)
                .field("message_ids", message_ids)
                .finish_non_exhaustive(),
            // A subject is written by people: only the operation is shown.
            LinkCommand::Group { command, .. } => f
                .debug_struct("Group")
                .field("op", &command.op.as_ref().map(group_op_name))
                .finish_non_exhaustive(),
        }
    }
}

/// The name of a group operation, for logs.
fn group_op_name(op: &wafleet_protocol::node_api::group_command::Op) -> &'static str {
    use wafleet_protocol::node_api::group_command::Op;
    match op {
        Op::Create(_) => "create",
        Op::Info(_) => "info",
        Op::List(_) => "list",
        Op::AddParticipants(_) => "add_participants",
        Op::RemoveParticipants(_) => "remove_participants",
        Op::Promote(_) => "promote",
        Op::Demote(_) => "demote",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "meet me at the usual place";

    #[test]
    fn message_text_is_logged_as_its_length_only() {
        let inbound = LinkEvent::Inbound {
            message_id: "m-1".into(),
            from_phone: "6281111111111".into(),
            text: SECRET.into(),
            at_ms: 1,
            media: None,
            group: None,
            reply_to: None,
        };
        let shown = format!("{inbound:?}");
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(
            shown.contains("m-1") && shown.contains("<26 bytes>"),
            "{shown}"
        );

        let send = LinkCommand::SendText {
            message_id: "m-2".into(),
            to_phone: "6282222222222".into(),
            text: SECRET.into(),
            media: None,
            mentions: Vec::new(),
            quote: Some(Box::new(crate::content::Quote {
                id: "m-1".into(),
                text: SECRET.into(),
                ..Default::default()
            })),
        };
        let shown = format!("{send:?}");
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(
            shown.contains("m-2") && shown.contains("<26 bytes>"),
            "{shown}"
        );
    }

    #[test]
    fn a_group_subject_is_not_logged() {
        use wafleet_protocol::node_api as pb;
        let (reply, _) = tokio::sync::oneshot::channel();
        let create = LinkCommand::Group {
            command: pb::GroupCommand {
                op: Some(pb::group_command::Op::Create(pb::CreateGroup {
                    subject: SECRET.into(),
                    participants: vec!["6282222222222".into()],
                })),
            },
            reply,
        };
        let shown = format!("{create:?}");
        assert!(
            !shown.contains(SECRET) && shown.contains("create"),
            "{shown}"
        );
    }
}
