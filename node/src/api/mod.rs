//! The node's API as every caller sees it: the one device command, its reply, its
//! errors, and the types that cross crates (gateway, cluster, tests).
//!
//! # One operation, three places
//! A device operation is:
//! 1. a variant of [`DeviceCommand`]: the `op` oneof of `NodeCommand` in
//!    `protocol/proto/node_api.proto`, used as it is generated, in standalone as over
//!    the cluster (nothing converts commands by hand);
//! 2. its handler, an arm of [`Fleet::execute`](crate::Fleet::execute) in
//!    `fleet/execute.rs`;
//! 3. its route in the gateway, which sends the command through `DeviceApi::execute`.
//!
//! Replies are a handful of types ([`Reply`]) shared by many operations; their wire
//! form is written once per type in [`wire`].
//!
//! Reads that need no owner (devices, messages, settings) are not commands: they go
//! through the store-backed [`Catalog`](crate::catalog::Catalog) from any process.
//!
//! # Layout
//! - this file: [`DeviceCommand`], [`Reply`], [`CommandError`], the request and answer
//!   types ([`NewDevice`], [`SendText`], [`Sent`], [`QrCode`], and the re-exported
//!   [`PairCode`], [`LimitsView`]).
//! - [`error`]: [`FleetError`], the failures of an operation, and the rule codes.
//! - [`wire`]: replies, errors and records to and from their prost form.

pub mod error;
pub mod wire;

use wafleet_protocol::node_api as pb;

pub use self::error::{FleetError, group_code, known_group_code, known_state_code, state_code};
pub use crate::limits::view::{LimitsView, Window};
pub use crate::link::{NumberCheck, PairCode};
use crate::store::{DeviceRecord, MessageRecord, TrustLevel};

impl From<TrustLevel> for SetTrustLevel {
    fn from(level: TrustLevel) -> SetTrustLevel {
        SetTrustLevel {
            level: pb::TrustLevel::from(level).into(),
        }
    }
}

/// One operation on one device: the generated `node_command::Op` of
/// `node_api.proto`, with the generated payloads below
/// (`DeviceCommand::Start(Empty {})`, `DeviceCommand::SetTrustLevel(level.into())`).
pub type DeviceCommand = pb::node_command::Op;

pub use crate::webhooks::config::{WebhookSpec, WebhookView};
/// Command payloads, as generated: there is nothing to convert.
pub use pb::{
    CancelMessage, CheckNumbers, CreateGroup, Empty, EventNames, Group, GroupChange, GroupCommand,
    GroupParticipant, GroupRef, GroupRefs, MarkRead, ReplayWebhook, RequestPairingCode, SendText,
    SetTrustLevel, SetWebhook, group_command::Op as GroupOp,
};

/// A device to create. Its webhook, if any, is set by its owner after the create (the
/// secret is sealed with the cluster's master key, which only nodes hold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevice {
    pub id: String,
    pub name: String,
    pub trust_level: TrustLevel,
}

impl From<WebhookSpec> for SetWebhook {
    fn from(spec: WebhookSpec) -> SetWebhook {
        SetWebhook {
            url: spec.url,
            secret: spec.secret,
            events: spec.events.map(|names| EventNames { names }),
        }
    }
}

impl From<SetWebhook> for WebhookSpec {
    fn from(set: SetWebhook) -> WebhookSpec {
        WebhookSpec {
            url: set.url,
            secret: set.secret,
            events: set.events.map(|e| e.names),
        }
    }
}

/// What became of a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub message: MessageRecord,
    /// The same Idempotency-Key was seen before: this is the earlier message.
    pub replayed: bool,
}

/// A QR code being shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrCode {
    pub code: String,
    pub expires_at_ms: i64,
}

/// What a command gave. Each operation answers with one kind (see the comments of
/// `node_api.proto`); the `into_*` methods take the kind a caller expects and call any
/// other a bug ([`FleetError::Internal`]). Not `Eq`: the generated group types are
/// only `PartialEq`.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The device after start, stop, restart, logout or set_trust_level.
    Device(DeviceRecord),
    /// What the command removed is gone (the device, its webhook).
    Deleted,
    Qr(QrCode),
    PairingCode(PairCode),
    Sent(Sent),
    Limits(LimitsView),
    /// The settings were read again.
    Refreshed,
    /// The device's webhook as set.
    Webhook(WebhookView),
    /// Deliveries queued again.
    Replayed(u64),
    /// Which numbers are on WhatsApp, in the order asked.
    NumberChecks(Vec<NumberCheck>),
    /// How many inbound messages became read.
    MarkedRead(u64),
    /// A group, after a group operation (all but list).
    Group(Group),
    /// The device's groups (list).
    Groups(Vec<Group>),
    /// One message, its text opened (cancel_message).
    Message(MessageRecord),
}

macro_rules! reply_into {
    ($($(#[$doc:meta])* $method:ident => $variant:ident($ty:ty);)*) => {
        impl Reply {
            $(
                $(#[$doc])*
                pub fn $method(self) -> Result<$ty, FleetError> {
                    match self {
                        Reply::$variant(value) => Ok(value),
                        other => Err(other.unexpected(stringify!($variant))),
                    }
                }
            )*
        }
    };
}

reply_into! {
    /// The device, or `Internal` for any other reply.
    into_device => Device(DeviceRecord);
    /// The QR code, or `Internal` for any other reply.
    into_qr => Qr(QrCode);
    /// The pairing code, or `Internal` for any other reply.
    into_pairing_code => PairingCode(PairCode);
    /// The send's outcome, or `Internal` for any other reply.
    into_sent => Sent(Sent);
    /// The quota use, or `Internal` for any other reply.
    into_limits => Limits(LimitsView);
    /// The webhook, or `Internal` for any other reply.
    into_webhook => Webhook(WebhookView);
    /// How many deliveries were queued again, or `Internal` for any other reply.
    into_replayed => Replayed(u64);
    /// The number checks, or `Internal` for any other reply.
    into_number_checks => NumberChecks(Vec<NumberCheck>);
    /// How many messages became read, or `Internal` for any other reply.
    into_marked_read => MarkedRead(u64);
    /// The group, or `Internal` for any other reply.
    into_group => Group(Group);
    /// The groups, or `Internal` for any other reply.
    into_groups => Groups(Vec<Group>);
    /// The message, or `Internal` for any other reply.
    into_message => Message(MessageRecord);
}

impl Reply {
    /// `Ok` for [`Reply::Deleted`], `Internal` for any other reply.
    pub fn into_deleted(self) -> Result<(), FleetError> {
        match self {
            Reply::Deleted => Ok(()),
            other => Err(other.unexpected("Deleted")),
        }
    }

    /// A reply of the wrong kind: a bug, or peers of mismatched versions.
    fn unexpected(&self, wanted: &str) -> FleetError {
        FleetError::Internal(format!("expected a {wanted} reply, got {self:?}"))
    }
}

/// Why a command has no [`Reply`].
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The fleet refused or failed (or, from [`FleetError::Unavailable`], the answering
    /// process runs no devices).
    #[error(transparent)]
    Fleet(#[from] FleetError),
    /// The answering node does not own the device's shard; `owner_hint` is the node it
    /// believes does.
    #[error("this node does not own the device (owner: {owner_hint:?})")]
    NotOwner { owner_hint: Option<String> },
}
