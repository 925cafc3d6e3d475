//! Replies, errors and records to and from their prost form (`node_api.proto`): one
//! conversion per type, none per operation (commands are the generated type itself).
//!
//! Decoding is strict: a message with a missing oneof or an unknown enum value is
//! [`WireError`], never a guess. A reply that does not decode becomes
//! [`FleetError::Internal`] on the receiving side.

use crate::webhooks::config::WebhookView;
use wafleet_cluster_config::Quota;
use wafleet_protocol::node_api as pb;
use wafleet_protocol::node_api::node_error::Kind;
use wafleet_protocol::node_api::node_reply::Result as Outcome;
use wafleet_protocol::node_api::store_failure::Kind as StoreKind;

use super::{
    CommandError, FleetError, LimitsView, NumberCheck, PairCode, QrCode, Reply, Sent, Window,
    known_group_code, known_state_code,
};
use crate::limits::policy::Refusal;
use crate::store::{
    DeviceRecord, DeviceStatus, Direction, MessageRecord, MessageStatus, StoreError, TrustLevel,
};

/// A message that does not say what it must (a missing oneof, an unknown enum value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {0}")]
pub struct WireError(String);

fn malformed(what: &str) -> WireError {
    WireError(what.to_owned())
}

// ---- replies ----

/// The wire form of a command's outcome.
pub fn reply_to_wire(outcome: Result<Reply, CommandError>) -> pb::NodeReply {
    let result = match outcome {
        Ok(Reply::Device(device)) => Outcome::Device(device.into()),
        Ok(Reply::Deleted) => Outcome::Deleted(pb::Empty {}),
        Ok(Reply::Qr(qr)) => Outcome::Qr(pb::QrCode {
            code: qr.code,
            expires_at_ms: qr.expires_at_ms,
        }),
        Ok(Reply::PairingCode(code)) => Outcome::PairingCode(pb::PairingCode {
            code: code.code,
            expires_at_ms: code.expires_at_ms,
        }),
        Ok(Reply::Sent(sent)) => Outcome::Sent(pb::Sent {
            message: Some(sent.message.into()),
            replayed: sent.replayed,
        }),
        Ok(Reply::Refreshed) => Outcome::Refreshed(pb::Empty {}),
        Ok(Reply::Webhook(view)) => Outcome::Webhook(pb::Webhook {
            url: view.url,
            secret_set: view.secret_set,
            events: view.events.map(|names| pb::EventNames { names }),
        }),
        Ok(Reply::Replayed(count)) => Outcome::Replayed(pb::Replayed { count }),
        Ok(Reply::Limits(view)) => Outcome::Limits(view.into()),
        Ok(Reply::NumberChecks(checks)) => Outcome::Numbers(pb::NumberChecks {
            results: checks
                .into_iter()
                .map(|check| pb::NumberCheck {
                    phone: check.phone,
                    on_whatsapp: check.on_whatsapp,
                    jid: check.jid,
                })
                .collect(),
        }),
        Ok(Reply::MarkedRead(count)) => Outcome::MarkedRead(pb::MarkedRead { count }),
        Ok(Reply::Group(group)) => Outcome::Group(group),
        Ok(Reply::Groups(groups)) => Outcome::Groups(pb::Groups { groups }),
        Ok(Reply::Message(message)) => Outcome::Message(message.into()),
        Err(error) => Outcome::Error(error.into()),
    };
    pb::NodeReply {
        result: Some(result),
    }
}

/// A command's outcome from its wire form. A reply that does not decode is
/// [`FleetError::Internal`].
pub fn reply_from_wire(reply: pb::NodeReply) -> Result<Reply, CommandError> {
    let decoded = match reply.result {
        None => Err(malformed("reply: no result")),
        Some(Outcome::Error(error)) => return Err(error.into()),
        Some(Outcome::Device(device)) => device.try_into().map(Reply::Device),
        Some(Outcome::Deleted(_)) => Ok(Reply::Deleted),
        Some(Outcome::Qr(qr)) => Ok(Reply::Qr(QrCode {
            code: qr.code,
            expires_at_ms: qr.expires_at_ms,
        })),
        Some(Outcome::PairingCode(code)) => Ok(Reply::PairingCode(PairCode {
            code: code.code,
            expires_at_ms: code.expires_at_ms,
        })),
        Some(Outcome::Sent(sent)) => sent
            .message
            .ok_or_else(|| malformed("sent: no message"))
            .and_then(MessageRecord::try_from)
            .map(|message| {
                Reply::Sent(Sent {
                    message,
                    replayed: sent.replayed,
                })
            }),
        Some(Outcome::Refreshed(_)) => Ok(Reply::Refreshed),
        Some(Outcome::Webhook(webhook)) => Ok(Reply::Webhook(WebhookView {
            url: webhook.url,
            secret_set: webhook.secret_set,
            events: webhook.events.map(|e| e.names),
        })),
        Some(Outcome::Replayed(replayed)) => Ok(Reply::Replayed(replayed.count)),
        Some(Outcome::Limits(limits)) => limits.try_into().map(Reply::Limits),
        Some(Outcome::Numbers(numbers)) => Ok(Reply::NumberChecks(
            numbers
                .results
                .into_iter()
                .map(|check| NumberCheck {
                    phone: check.phone,
                    on_whatsapp: check.on_whatsapp,
                    jid: check.jid,
                })
                .collect(),
        )),
        Some(Outcome::MarkedRead(read)) => Ok(Reply::MarkedRead(read.count)),
        Some(Outcome::Group(group)) => Ok(Reply::Group(group)),
        Some(Outcome::Groups(groups)) => Ok(Reply::Groups(groups.groups)),
        Some(Outcome::Message(message)) => MessageRecord::try_from(message).map(Reply::Message),
    };
    decoded.map_err(|error| CommandError::Fleet(FleetError::Internal(error.to_string())))
}

// ---- errors ----

impl From<CommandError> for pb::NodeError {
    fn from(error: CommandError) -> pb::NodeError {
        let kind = match error {
            CommandError::NotOwner { owner_hint } => Kind::NotOwner(pb::NotOwner {
                owner_hint: owner_hint.unwrap_or_default(),
            }),
            CommandError::Fleet(error) => match error {
                FleetError::DeviceNotFound(id) => Kind::DeviceNotFound(id),
                FleetError::MessageNotFound(id) => Kind::MessageNotFound(id),
                FleetError::ReplyToNotFound(id) => Kind::ReplyToNotFound(id),
                FleetError::DeviceExists(id) => Kind::DeviceExists(id),
                FleetError::WrongState { code, message } => Kind::WrongState(pb::WrongState {
                    code: code.to_owned(),
                    message,
                }),
                FleetError::IdempotencyKeyReused => Kind::IdempotencyKeyReused(pb::Empty {}),
                FleetError::Timeout => Kind::Timeout(pb::Empty {}),
                FleetError::Store(error) => Kind::Store(store_failure(error)),
                FleetError::Internal(detail) => Kind::Internal(detail),
                FleetError::Unavailable(reason) => Kind::Unavailable(reason),
                FleetError::RateLimited {
                    code,
                    message,
                    retry_after_ms,
                } => Kind::RateLimited(pb::RateLimited {
                    code: code.to_owned(),
                    message,
                    retry_after_ms,
                }),
                FleetError::Invalid(reason) => Kind::Invalid(reason),
                FleetError::WebhookUrlNotAllowed(reason) => Kind::WebhookUrlNotAllowed(reason),
                FleetError::DeliveryNotFound(id) => Kind::DeliveryNotFound(id),
                FleetError::GroupNotFound(id) => Kind::GroupNotFound(id),
                FleetError::GroupRefused { code, message } => {
                    Kind::GroupRefused(pb::GroupRefused {
                        code: code.to_owned(),
                        message,
                    })
                }
            },
        };
        pb::NodeError { kind: Some(kind) }
    }
}

impl From<pb::NodeError> for CommandError {
    fn from(error: pb::NodeError) -> CommandError {
        let fleet = match error.kind {
            None => FleetError::Internal(malformed("error: no kind").to_string()),
            Some(Kind::NotOwner(not_owner)) => {
                let hint = not_owner.owner_hint;
                return CommandError::NotOwner {
                    owner_hint: (!hint.is_empty()).then_some(hint),
                };
            }
            Some(Kind::DeviceNotFound(id)) => FleetError::DeviceNotFound(id),
            Some(Kind::MessageNotFound(id)) => FleetError::MessageNotFound(id),
            Some(Kind::ReplyToNotFound(id)) => FleetError::ReplyToNotFound(id),
            Some(Kind::DeviceExists(id)) => FleetError::DeviceExists(id),
            Some(Kind::WrongState(wrong)) => FleetError::WrongState {
                code: known_state_code(&wrong.code),
                message: wrong.message,
            },
            Some(Kind::IdempotencyKeyReused(_)) => FleetError::IdempotencyKeyReused,
            Some(Kind::Timeout(_)) => FleetError::Timeout,
            Some(Kind::Store(failure)) => FleetError::Store(store_error(failure)),
            Some(Kind::Internal(detail)) => FleetError::Internal(detail),
            Some(Kind::Unavailable(reason)) => FleetError::Unavailable(reason),
            Some(Kind::RateLimited(limited)) => FleetError::RateLimited {
                code: known_refusal_code(&limited.code),
                message: limited.message,
                retry_after_ms: limited.retry_after_ms.max(1),
            },
            Some(Kind::Invalid(reason)) => FleetError::Invalid(reason),
            Some(Kind::WebhookUrlNotAllowed(reason)) => FleetError::WebhookUrlNotAllowed(reason),
            Some(Kind::DeliveryNotFound(id)) => FleetError::DeliveryNotFound(id),
            Some(Kind::GroupNotFound(id)) => FleetError::GroupNotFound(id),
            Some(Kind::GroupRefused(refused)) => FleetError::GroupRefused {
                code: known_group_code(&refused.code),
                message: refused.message,
            },
        };
        CommandError::Fleet(fleet)
    }
}

/// The `&'static str` of a refusal code received as text (`rate_limited` for one this
/// build does not know).
fn known_refusal_code(code: &str) -> &'static str {
    [Refusal::DailyQuota, Refusal::InFlight, Refusal::Paused]
        .into_iter()
        .map(Refusal::code)
        .find(|known| *known == code)
        .unwrap_or("rate_limited")
}

fn store_failure(error: StoreError) -> pb::StoreFailure {
    let kind = match error {
        StoreError::Conflict { what } => StoreKind::Conflict(what),
        StoreError::NotFound { what } => StoreKind::NotFound(what),
        StoreError::Unavailable(detail) => StoreKind::Unavailable(detail),
        StoreError::Corrupt(detail) => StoreKind::Corrupt(detail),
        // Only opening a store fails this way, never a call a peer asked for; the wire
        // has no kind of its own for it.
        error @ StoreError::Misconfigured(_) => StoreKind::Corrupt(error.to_string()),
        StoreError::Fenced {
            shard,
            epoch,
            current,
        } => StoreKind::Fenced(pb::Fenced {
            shard,
            epoch,
            current,
        }),
    };
    pb::StoreFailure { kind: Some(kind) }
}

fn store_error(failure: pb::StoreFailure) -> StoreError {
    match failure.kind {
        None => StoreError::Corrupt(malformed("store failure: no kind").to_string()),
        Some(StoreKind::Conflict(what)) => StoreError::Conflict { what },
        Some(StoreKind::NotFound(what)) => StoreError::NotFound { what },
        Some(StoreKind::Unavailable(detail)) => StoreError::Unavailable(detail),
        Some(StoreKind::Corrupt(detail)) => StoreError::Corrupt(detail),
        Some(StoreKind::Fenced(fenced)) => StoreError::Fenced {
            shard: fenced.shard,
            epoch: fenced.epoch,
            current: fenced.current,
        },
    }
}

// ---- records ----

impl From<DeviceRecord> for pb::Device {
    fn from(device: DeviceRecord) -> pb::Device {
        pb::Device {
            id: device.id,
            name: device.name,
            tenant: device.tenant,
            status: pb::DeviceStatus::from(device.status).into(),
            status_reason: device.status_reason,
            trust_level: pb::TrustLevel::from(device.trust_level).into(),
            phone: device.phone,
            webhook: device.webhook,
            desired_running: device.desired_running,
            created_at_ms: device.created_at_ms,
            updated_at_ms: device.updated_at_ms,
            last_connected_at_ms: device.last_connected_at_ms,
        }
    }
}

impl TryFrom<pb::Device> for DeviceRecord {
    type Error = WireError;

    fn try_from(device: pb::Device) -> Result<DeviceRecord, WireError> {
        Ok(DeviceRecord {
            status: device_status(device.status)?,
            trust_level: trust_level(device.trust_level)?,
            id: device.id,
            name: device.name,
            tenant: device.tenant,
            status_reason: device.status_reason,
            phone: device.phone,
            webhook: device.webhook,
            desired_running: device.desired_running,
            created_at_ms: device.created_at_ms,
            updated_at_ms: device.updated_at_ms,
            last_connected_at_ms: device.last_connected_at_ms,
        })
    }
}

impl From<MessageRecord> for pb::Message {
    fn from(message: MessageRecord) -> pb::Message {
        pb::Message {
            id: message.id,
            device_id: message.device_id,
            direction: pb::Direction::from(message.direction).into(),
            peer_phone: message.peer_phone,
            text: message.text,
            status: pb::MessageStatus::from(message.status).into(),
            error: message.error,
            idempotency_key: message.idempotency_key,
            created_at_ms: message.created_at_ms,
            not_before_ms: message.not_before_ms,
            sent_at_ms: message.sent_at_ms,
            delivered_at_ms: message.delivered_at_ms,
            read_at_ms: message.read_at_ms,
            failed_at_ms: message.failed_at_ms,
            send_at_ms: message.send_at_ms,
            queued_at_ms: message.queued_at_ms,
        }
    }
}

impl TryFrom<pb::Message> for MessageRecord {
    type Error = WireError;

    fn try_from(message: pb::Message) -> Result<MessageRecord, WireError> {
        let direction = match pb::Direction::try_from(message.direction) {
            Ok(pb::Direction::Outbound) => Direction::Outbound,
            Ok(pb::Direction::Inbound) => Direction::Inbound,
            Ok(pb::Direction::Unspecified) | Err(_) => return Err(malformed("message direction")),
        };
        let status = match pb::MessageStatus::try_from(message.status) {
            Ok(pb::MessageStatus::Queued) => MessageStatus::Queued,
            Ok(pb::MessageStatus::Sent) => MessageStatus::Sent,
            Ok(pb::MessageStatus::Delivered) => MessageStatus::Delivered,
            Ok(pb::MessageStatus::Read) => MessageStatus::Read,
            Ok(pb::MessageStatus::Failed) => MessageStatus::Failed,
            Ok(pb::MessageStatus::Scheduled) => MessageStatus::Scheduled,
            Ok(pb::MessageStatus::Cancelled) => MessageStatus::Cancelled,
            Ok(pb::MessageStatus::Unspecified) | Err(_) => {
                return Err(malformed("message status"));
            }
        };
        Ok(MessageRecord {
            id: message.id,
            device_id: message.device_id,
            direction,
            peer_phone: message.peer_phone,
            text: message.text,
            status,
            error: message.error,
            idempotency_key: message.idempotency_key,
            created_at_ms: message.created_at_ms,
            not_before_ms: message.not_before_ms,
            sent_at_ms: message.sent_at_ms,
            delivered_at_ms: message.delivered_at_ms,
            read_at_ms: message.read_at_ms,
            failed_at_ms: message.failed_at_ms,
            send_at_ms: message.send_at_ms,
            queued_at_ms: message.queued_at_ms,
        })
    }
}

impl From<LimitsView> for pb::Limits {
    fn from(view: LimitsView) -> pb::Limits {
        let window = |w: Window| pb::Window {
            limit: w.limit,
            spent: w.spent,
            remaining: w.remaining,
        };
        let quota = view.quota;
        pb::Limits {
            device_id: view.device_id,
            trust_level: pb::TrustLevel::from(view.trust_level).into(),
            quota: Some(pb::Quota {
                per_minute: quota.per_minute,
                per_hour: quota.per_hour,
                per_day: quota.per_day,
                min_gap_ms: quota.min_gap_ms,
                jitter_ms: quota.jitter_ms,
                max_in_flight: quota.max_in_flight,
            }),
            minute: Some(window(view.minute)),
            hour: Some(window(view.hour)),
            day: Some(window(view.day)),
            queued: view.queued,
            in_flight: view.in_flight,
            next_send_ms: view.next_send_ms,
            paused_until_ms: view.paused_until_ms,
            linked_at_ms: view.linked_at_ms,
            now_ms: view.now_ms,
        }
    }
}

impl TryFrom<pb::Limits> for LimitsView {
    type Error = WireError;

    fn try_from(limits: pb::Limits) -> Result<LimitsView, WireError> {
        let window = |w: Option<pb::Window>, name: &str| {
            w.map(|w| Window {
                limit: w.limit,
                spent: w.spent,
                remaining: w.remaining,
            })
            .ok_or_else(|| malformed(&format!("limits: no {name} window")))
        };
        let quota = limits.quota.ok_or_else(|| malformed("limits: no quota"))?;
        Ok(LimitsView {
            trust_level: trust_level(limits.trust_level)?,
            quota: Quota {
                per_minute: quota.per_minute,
                per_hour: quota.per_hour,
                per_day: quota.per_day,
                min_gap_ms: quota.min_gap_ms,
                jitter_ms: quota.jitter_ms,
                max_in_flight: quota.max_in_flight,
            },
            minute: window(limits.minute, "minute")?,
            hour: window(limits.hour, "hour")?,
            day: window(limits.day, "day")?,
            device_id: limits.device_id,
            queued: limits.queued,
            in_flight: limits.in_flight,
            next_send_ms: limits.next_send_ms,
            paused_until_ms: limits.paused_until_ms,
            linked_at_ms: limits.linked_at_ms,
            now_ms: limits.now_ms,
        })
    }
}

// ---- enums ----

impl From<DeviceStatus> for pb::DeviceStatus {
    fn from(status: DeviceStatus) -> pb::DeviceStatus {
        match status {
            DeviceStatus::Stopped => pb::DeviceStatus::Stopped,
            DeviceStatus::Starting => pb::DeviceStatus::Starting,
            DeviceStatus::ScanQr => pb::DeviceStatus::ScanQr,
            DeviceStatus::Ready => pb::DeviceStatus::Ready,
            DeviceStatus::Disconnected => pb::DeviceStatus::Disconnected,
            DeviceStatus::LoggedOut => pb::DeviceStatus::LoggedOut,
            DeviceStatus::Failed => pb::DeviceStatus::Failed,
        }
    }
}

fn device_status(value: i32) -> Result<DeviceStatus, WireError> {
    match pb::DeviceStatus::try_from(value) {
        Ok(pb::DeviceStatus::Stopped) => Ok(DeviceStatus::Stopped),
        Ok(pb::DeviceStatus::Starting) => Ok(DeviceStatus::Starting),
        Ok(pb::DeviceStatus::ScanQr) => Ok(DeviceStatus::ScanQr),
        Ok(pb::DeviceStatus::Ready) => Ok(DeviceStatus::Ready),
        Ok(pb::DeviceStatus::Disconnected) => Ok(DeviceStatus::Disconnected),
        Ok(pb::DeviceStatus::LoggedOut) => Ok(DeviceStatus::LoggedOut),
        Ok(pb::DeviceStatus::Failed) => Ok(DeviceStatus::Failed),
        Ok(pb::DeviceStatus::Unspecified) | Err(_) => Err(malformed("device status")),
    }
}

impl From<TrustLevel> for pb::TrustLevel {
    fn from(level: TrustLevel) -> pb::TrustLevel {
        match level {
            TrustLevel::Newcomer => pb::TrustLevel::Newcomer,
            TrustLevel::Trusted => pb::TrustLevel::Trusted,
            TrustLevel::Verified => pb::TrustLevel::Verified,
        }
    }
}

fn trust_level(value: i32) -> Result<TrustLevel, WireError> {
    match pb::TrustLevel::try_from(value) {
        Ok(pb::TrustLevel::Newcomer) => Ok(TrustLevel::Newcomer),
        Ok(pb::TrustLevel::Trusted) => Ok(TrustLevel::Trusted),
        Ok(pb::TrustLevel::Verified) => Ok(TrustLevel::Verified),
        Ok(pb::TrustLevel::Unspecified) | Err(_) => Err(malformed("trust level")),
    }
}

/// The trust level a command carries; an unknown one makes the command malformed
/// ([`FleetError::Internal`], like any command that does not decode).
pub(crate) fn command_trust_level(value: i32) -> Result<TrustLevel, FleetError> {
    trust_level(value).map_err(|error| FleetError::Internal(error.to_string()))
}

impl From<Direction> for pb::Direction {
    fn from(direction: Direction) -> pb::Direction {
        match direction {
            Direction::Outbound => pb::Direction::Outbound,
            Direction::Inbound => pb::Direction::Inbound,
        }
    }
}

impl From<MessageStatus> for pb::MessageStatus {
    fn from(status: MessageStatus) -> pb::MessageStatus {
        match status {
            MessageStatus::Queued => pb::MessageStatus::Queued,
            MessageStatus::Sent => pb::MessageStatus::Sent,
            MessageStatus::Delivered => pb::MessageStatus::Delivered,
            MessageStatus::Read => pb::MessageStatus::Read,
            MessageStatus::Failed => pb::MessageStatus::Failed,
            MessageStatus::Scheduled => pb::MessageStatus::Scheduled,
            MessageStatus::Cancelled => pb::MessageStatus::Cancelled,
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::api::state_code;

    fn reply_round_trip(outcome: Result<Reply, CommandError>) -> Result<Reply, CommandError> {
        let bytes = reply_to_wire(outcome).encode_to_vec();
        reply_from_wire(pb::NodeReply::decode(bytes.as_slice()).unwrap())
    }

    fn device(status: DeviceStatus, trust_level: TrustLevel, full: bool) -> DeviceRecord {
        DeviceRecord {
            id: "dev-1".into(),
            name: "Sales desk".into(),
            tenant: "default".into(),
            status,
            status_reason: full.then(|| "qr_timeout".into()),
            trust_level,
            phone: full.then(|| "6281234567890".into()),
            webhook: full.then(|| "https://example.test/hook".into()),
            desired_running: full,
            created_at_ms: 1_700_000_000_000,
            updated_at_ms: 1_700_000_000_500,
            last_connected_at_ms: full.then_some(1_700_000_000_250),
        }
    }

    fn message(direction: Direction, status: MessageStatus, full: bool) -> MessageRecord {
        MessageRecord {
            id: "msg_1".into(),
            device_id: "dev-1".into(),
            direction,
            peer_phone: "6281234567890".into(),
            text: "halo 👋".into(),
            status,
            error: full.then(|| "banned".into()),
            idempotency_key: full.then(|| "key-1".into()),
            created_at_ms: 1,
            not_before_ms: full.then_some(2),
            sent_at_ms: full.then_some(3),
            delivered_at_ms: full.then_some(4),
            read_at_ms: full.then_some(5),
            failed_at_ms: full.then_some(6),
            send_at_ms: full.then_some(7),
            queued_at_ms: full.then_some(8),
        }
    }

    #[test]
    fn every_record_round_trips() {
        let mut replies = vec![
            Reply::Deleted,
            Reply::Qr(QrCode {
                code: "2@abc,def".into(),
                expires_at_ms: 42,
            }),
            Reply::PairingCode(PairCode {
                code: "ABCD-EFGH".into(),
                expires_at_ms: 43,
            }),
            Reply::NumberChecks(vec![
                NumberCheck {
                    phone: "6281111111111".into(),
                    on_whatsapp: true,
                    jid: Some("6281111111111@s.whatsapp.net".into()),
                },
                NumberCheck {
                    phone: "6282222222222".into(),
                    on_whatsapp: false,
                    jid: None,
                },
            ]),
            Reply::NumberChecks(Vec::new()),
            Reply::MarkedRead(0),
            Reply::MarkedRead(7),
            Reply::Group(pb::Group {
                id: "120363041234567890@g.us".into(),
                subject: "Tim".into(),
                participants: vec![pb::GroupParticipant {
                    phone: "6281111111111".into(),
                    admin: true,
                }],
                creator: "6281111111111".into(),
                created_at_ms: 5,
            }),
            Reply::Groups(Vec::new()),
        ];
        for (level, paused) in [
            (TrustLevel::Newcomer, Some(9)),
            (TrustLevel::Verified, None),
        ] {
            let window = |spent| Window {
                limit: 10,
                spent,
                remaining: 10 - spent,
            };
            replies.push(Reply::Limits(LimitsView {
                device_id: "dev-1".into(),
                trust_level: level,
                quota: *crate::limits::policy::quota_for(
                    &wafleet_cluster_config::QuotaTable::default(),
                    level,
                ),
                minute: window(1),
                hour: window(2),
                day: window(3),
                queued: 4,
                in_flight: 5,
                next_send_ms: 6,
                paused_until_ms: paused,
                linked_at_ms: paused.map(|at| at - 1),
                now_ms: 8,
            }));
        }
        for (i, status) in DeviceStatus::ALL.into_iter().enumerate() {
            let level = [
                TrustLevel::Newcomer,
                TrustLevel::Trusted,
                TrustLevel::Verified,
            ][i % 3];
            replies.push(Reply::Device(device(status, level, i % 2 == 0)));
        }
        for (i, status) in MessageStatus::ALL.into_iter().enumerate() {
            replies.push(Reply::Message(message(
                Direction::Outbound,
                status,
                i % 2 == 1,
            )));
            for direction in [Direction::Outbound, Direction::Inbound] {
                let record = message(direction, status, i % 2 == 0);
                replies.push(Reply::Sent(Sent {
                    message: record,
                    replayed: i % 2 == 1,
                }));
            }
        }
        for reply in replies {
            assert_eq!(reply_round_trip(Ok(reply.clone())).unwrap(), reply);
        }
    }

    /// `FleetError` has no `PartialEq` (it wraps `StoreError`); its Debug form says
    /// every field.
    fn same(error: CommandError) {
        let expected = format!("{error:?}");
        let back = reply_round_trip(Err(error)).unwrap_err();
        assert_eq!(format!("{back:?}"), expected);
    }

    #[test]
    fn every_error_round_trips() {
        for code in state_code::ALL {
            same(
                FleetError::WrongState {
                    code,
                    message: format!("refused by {code}"),
                }
                .into(),
            );
        }
        let errors = [
            FleetError::DeviceNotFound("dev-1".into()),
            FleetError::MessageNotFound("msg_1".into()),
            FleetError::ReplyToNotFound("msg_2".into()),
            FleetError::DeviceExists("dev-1".into()),
            FleetError::IdempotencyKeyReused,
            FleetError::Timeout,
            FleetError::Internal("boom".into()),
            FleetError::Unavailable("node-b runs no devices".into()),
            FleetError::Store(StoreError::Conflict { what: "x".into() }),
            FleetError::Store(StoreError::NotFound { what: "y".into() }),
            FleetError::Store(StoreError::Unavailable("down".into())),
            FleetError::Store(StoreError::Corrupt("bad row".into())),
            FleetError::Store(StoreError::Fenced {
                shard: 7,
                epoch: 3,
                current: Some(4),
            }),
            FleetError::Store(StoreError::Fenced {
                shard: 7,
                epoch: 3,
                current: None,
            }),
        ];
        for error in errors {
            same(error.into());
        }
        same(CommandError::NotOwner {
            owner_hint: Some("node-b".into()),
        });
        same(CommandError::NotOwner { owner_hint: None });
    }

    #[test]
    fn an_unknown_wrong_state_code_keeps_its_message() {
        let error = pb::NodeError {
            kind: Some(Kind::WrongState(pb::WrongState {
                code: "from_the_future".into(),
                message: "a newer node said no".into(),
            })),
        };
        match CommandError::from(error) {
            CommandError::Fleet(FleetError::WrongState { code, message }) => {
                assert_eq!(code, state_code::OTHER);
                assert_eq!(message, "a newer node said no");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_reply_that_does_not_decode_is_internal() {
        let empty = pb::NodeReply { result: None };
        assert!(matches!(
            reply_from_wire(empty),
            Err(CommandError::Fleet(FleetError::Internal(_)))
        ));
        let bad_status = pb::NodeReply {
            result: Some(Outcome::Device(pb::Device {
                status: 99,
                trust_level: 1,
                ..pb::Device::default()
            })),
        };
        assert!(matches!(
            reply_from_wire(bad_status),
            Err(CommandError::Fleet(FleetError::Internal(_)))
        ));
        let no_message = pb::NodeReply {
            result: Some(Outcome::Sent(pb::Sent {
                message: None,
                replayed: false,
            })),
        };
        assert!(reply_from_wire(no_message).is_err());
    }
}
