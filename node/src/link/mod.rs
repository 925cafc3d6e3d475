//! The link between a device actor and WhatsApp.
//!
//! A [`LinkFactory`] opens one [`LinkSession`] per connection attempt of a device. The
//! session reports what happens as [`LinkEvent`]s through a [`LinkEvents`] sink (to the
//! device actor) and takes [`LinkCommand`]s. A link keeps whatever it needs to reconnect
//! without a new scan (credentials, protocol state) in the device's
//! [`DeviceVault`](crate::vault::DeviceVault), sealed.
//!
//! # Layout
//! - [`sim`]: the link to the simulated network (`wafleet sim`), over a [`FramePipe`];
//!   `sim_groups`: its group operations as frames; `sim_media`: its files, uploaded to
//!   and downloaded from the simulator's media servers.
//! - [`spread`]: a simulated network of several processes: each device dials the one
//!   its id picks ([`SimSpread`]).
//! - [`whatsapp`]: the link to real WhatsApp, on the `whatsapp-rust` crate.
//! - [`ws`]: the WebSocket dialer for an external simulator.
//! - `redacted`: `Debug` of events and commands that shows a message's text as its
//!   length, so that no log line carries one.

mod redacted;
pub mod sim;
mod sim_groups;
mod sim_media;
pub mod spread;
pub mod whatsapp;
pub mod ws;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::oneshot;

use wafleet_protocol::node_api as pb;

use crate::content::{MediaPart, Quote};
use crate::media::MediaLibrary;
use crate::vault::DeviceVault;

/// What a link tells its device (`Debug` shows no message text: see `redacted`).
#[derive(Clone, PartialEq)]
pub enum LinkEvent {
    /// Pairing: a (new) QR code to show.
    Qr { code: String, expires_at_ms: i64 },
    /// A phone scanned the QR or entered the code; credentials are stored.
    Paired { phone: String },
    /// Reconnected with stored credentials.
    Connected { phone: String },
    /// The connection ended; the device should retry later.
    Disconnected { reason: String },
    /// The stored credentials were refused or unreadable and are wiped: pair again.
    CredentialsRejected { reason: String },
    /// The phone unlinked the device; credentials are wiped.
    LoggedOut,
    /// Nobody scanned before the last QR code expired.
    QrTimeout,
    /// Another connection took over this link.
    Replaced,
    /// A write to the vault was fenced off: another node owns the device now. The
    /// session has ended; the device stops without writing anything more.
    Fenced { reason: String },
    /// Progress of an outbound message.
    Receipt {
        message_id: String,
        status: ReceiptStatus,
        error: Option<String>,
        at_ms: i64,
    },
    /// The link gave up waiting on a send that may have gone out (it timed out, or the
    /// connection went while sending). The message is neither sent nor failed: it stays
    /// queued and is handed again later, and a link sends it again under the same network
    /// message id, so the network delivers it once.
    Unsent { message_id: String, reason: String },
    /// A phone wrote to the device; acknowledge with [`LinkCommand::AckInbound`] once stored.
    Inbound {
        message_id: String,
        from_phone: String,
        /// The text; with media, its caption.
        text: String,
        at_ms: i64,
        /// A media file the phone sent, already in the media library (the link stores
        /// it before it reports the message).
        media: Option<MediaPart>,
        /// The group it was written in (`from_phone` is then the participant who
        /// wrote); `None` for a message to the device's number.
        group: Option<String>,
        /// The message it replies to (quotes): the device's id for it when the link
        /// knows it (a message the device sent, or one it received: both links keep a
        /// received message under the network's id), else the network's id.
        reply_to: Option<String>,
    },
    /// The account is temporarily banned.
    Banned { until_ms: i64 },
}

/// Why a link could not hand a media message to the network (its file could not be
/// read, or not uploaded to the network's media servers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SendFailure {
    /// It never will (the file is gone, unreadable, or not what its record says): the
    /// message fails.
    Permanent(String),
    /// It may later (storage, the network's media servers): the message stays queued.
    Transient(String),
}

impl SendFailure {
    /// What the link reports of `message_id`: a failed receipt, or `Unsent`.
    pub(crate) fn event(self, message_id: String) -> LinkEvent {
        match self {
            SendFailure::Permanent(reason) => LinkEvent::Receipt {
                message_id,
                status: ReceiptStatus::Failed,
                error: Some(reason),
                at_ms: crate::clock::now_ms(),
            },
            SendFailure::Transient(reason) => LinkEvent::Unsent { message_id, reason },
        }
    }
}

/// Receipt states a link reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptStatus {
    Sent,
    Delivered,
    Read,
    Failed,
}

/// Whether a phone number has a WhatsApp account, as the network answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberCheck {
    /// The number as asked.
    pub phone: String,
    pub on_whatsapp: bool,
    /// The account's JID (`6281234567890@s.whatsapp.net`), when it has one.
    pub jid: Option<String>,
}

/// The network's answer to a group command ([`LinkCommand::Group`]).
#[derive(Debug, Clone, PartialEq)]
pub enum GroupAnswer {
    /// The group, after the operation.
    Group(pb::Group),
    /// The device's number's groups.
    Groups(Vec<pb::Group>),
    /// The network said no: `code` is the network's (`not_found`, `not_admin`,
    /// `not_participant`, `not_on_whatsapp`, `invalid_subject`, `invalid_phone`, or
    /// `unsupported` for a link without groups).
    Refused { code: String, message: String },
}

/// A pairing code for the user to type on the phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairCode {
    pub code: String,
    pub expires_at_ms: i64,
}

/// What a device asks of its link (`Debug` shows no message text: see `redacted`).
pub enum LinkCommand {
    /// Send a message: a text, or a media file of the media library (`text` its
    /// caption), which the link uploads first.
    SendText {
        message_id: String,
        /// A phone number, or a group id ([`crate::group::is_group_id`]).
        to_phone: String,
        text: String,
        media: Option<MediaPart>,
        /// Numbers the text mentions (digits).
        mentions: Vec<String>,
        /// The message it replies to, as the outbox kept it (the link names it on the
        /// network: [`Quote`]). Boxed: most messages are no replies.
        quote: Option<Box<Quote>>,
    },
    /// Ask for a pairing code for `phone` (only while pairing).
    RequestPairCode {
        phone: String,
        reply: oneshot::Sender<Result<PairCode, LinkError>>,
    },
    /// An inbound message is stored; the network may forget it.
    AckInbound { message_id: String },
    /// A receipt is stored (or was stale): the network need not tell it again.
    AckReceipt {
        message_id: String,
        status: ReceiptStatus,
    },
    /// The operator logs the device out: tell the network to unlink it (answered when
    /// it is done or has failed; the device forgets its credentials either way).
    Logout { reply: oneshot::Sender<()> },
    /// Ask the network which of `phones` have a WhatsApp account (only when ready);
    /// answered with a check per phone asked, in any order.
    CheckNumbers {
        phones: Vec<String>,
        reply: oneshot::Sender<Result<Vec<NumberCheck>, LinkError>>,
    },
    /// Send read receipts for these inbound messages of `peer_phone` (only when
    /// ready); answered once the network has them. In a group (`group`), they are the
    /// messages `peer_phone` wrote there: a group's receipts name the chat and the
    /// author, one command per author.
    MarkRead {
        peer_phone: String,
        group: Option<String>,
        message_ids: Vec<String>,
        reply: oneshot::Sender<Result<(), LinkError>>,
    },
    /// A group operation, the device's own number acting (only when ready).
    Group {
        command: pb::GroupCommand,
        reply: oneshot::Sender<Result<GroupAnswer, LinkError>>,
    },
}

/// Failures of a link.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("the link is closed")]
    Closed,
    #[error("not possible now: {0}")]
    WrongState(String),
    #[error("link storage failed: {0}")]
    Storage(String),
    #[error("the network did not answer in time")]
    Timeout,
    #[error("the network refused: {0}")]
    Refused(String),
}

/// Where a session delivers its events. `session` tags every event so a device can
/// ignore the late events of a session it has already replaced.
#[derive(Clone)]
pub struct LinkEvents {
    session: u64,
    deliver: Arc<dyn Fn(u64, LinkEvent) + Send + Sync>,
}

impl LinkEvents {
    pub fn new(session: u64, deliver: Arc<dyn Fn(u64, LinkEvent) + Send + Sync>) -> LinkEvents {
        LinkEvents { session, deliver }
    }

    pub fn emit(&self, event: LinkEvent) {
        (self.deliver)(self.session, event)
    }
}

impl Debug for LinkEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkEvents")
            .field("session", &self.session)
            .finish()
    }
}

/// Everything a link session gets from its device.
#[derive(Debug, Clone)]
pub struct LinkContext {
    pub device_id: String,
    /// The device's tenant: the owner of the media it receives.
    pub tenant: String,
    pub vault: DeviceVault,
    pub events: LinkEvents,
    /// Where the media a device sends is read from and the media it receives goes.
    pub media: Arc<MediaLibrary>,
}

/// Opens sessions for devices. One factory per node.
#[async_trait]
pub trait LinkFactory: Send + Sync + Debug + 'static {
    /// Connects and starts the handshake; progress arrives as events.
    async fn open(&self, ctx: LinkContext) -> Result<Box<dyn LinkSession>, LinkError>;
}

/// One open connection of one device. Dropping it closes the connection.
pub trait LinkSession: Send + Debug {
    fn command(&mut self, command: LinkCommand) -> Result<(), LinkError>;
}

pub use sim::{FramePipe, SimBlob, SimDialer, SimLinkFactory};
pub use spread::{NoSimulator, SimSpread};
pub use whatsapp::{WhatsAppConfig, WhatsAppLinkFactory};
