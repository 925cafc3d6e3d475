//! One actor per running device: drives its link through the status machine
//! `STARTING → SCAN_QR → READY ⇄ DISCONNECTED`, ending in `LOGGED_OUT` or `STOPPED`,
//! and moves its outbound messages from the store's queue to the link.
//!
//! The actor keeps its mutable data in [`DeviceState`], built in `pre_start`. Handlers
//! match and delegate; nothing waits on the network inside a handler except opening a
//! link, which is bounded by the handshake timeout.
//!
//! A device run by a cluster node carries the [`Fence`] of its shard's lease: its status
//! writes and its link's vault writes go to the store with it. When one is refused as
//! [`StoreError::Fenced`] (another node took the shard over), the actor closes its link
//! and stops at once, writing nothing more: that is not a crash, and it is not retried.
//!
//! # Files
//!
//! - here: the actor ([`DeviceActor`], [`DeviceMsg`], [`DeviceState`]), the one `match`
//!   over its messages and the one over its link's events;
//! - `status`: the status machine: every status write, the QR on show, READY,
//!   DISCONNECTED and the reconnect timer, the final statuses, lost ownership, logout;
//! - `connect`: a connect slot, opening the link within the handshake timeout, reconnect
//!   backoff and jitter, pairing codes;
//! - `link_requests`: number checks, read receipts and group operations, asked of a
//!   READY device's link;
//! - `outbox`: moving queued messages to the link, each at its slot, within the quota;
//! - `schedule`: moving scheduled messages into the queue when they fall due;
//! - `cancel`: cancelling a message that has not left (the owner decides);
//! - `inbound`: receipts and inbound messages from the link;
//! - `limiter`: the device's rate-limiter child, its trust level, bans and promotion;
//! - `registry`: the devices running on the node and their limiters, and who writes it;
//! - [`supervisor`]: starts, stops and restarts device actors.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::OwnedSemaphorePermit;
use tracing::{info, warn};

use crate::api::{FleetError, QrCode};
use crate::content::{Content, Quote};
use crate::context::NodeContext;
use crate::limits::actor::LimiterMsg;
use crate::limits::trust::level_to_u8;
use crate::link::{GroupAnswer, LinkError, LinkEvent, LinkSession, NumberCheck, PairCode};
use crate::store::{
    DevicePatch, DeviceStatus, Fence, MessageRecord, QueueKey, StoreError, TrustLevel,
};
use crate::vault::VaultError;
use supervisor::SupervisorMsg;

mod cancel;
mod connect;
mod inbound;
mod limiter;
mod link_requests;
mod outbox;
pub(crate) mod registry;
mod schedule;
mod status;
pub mod supervisor;
pub mod tenants;

/// Messages a device actor handles.
#[derive(Debug)]
pub enum DeviceMsg {
    /// Wait for a connect slot, then open the link.
    Connect,
    /// A connect slot is ours: open the link now.
    Open(OwnedSemaphorePermit),
    /// Something from link session `.0`.
    Link(u64, LinkEvent),
    /// The handshake of session `.0` took too long.
    HandshakeTimeout(u64),
    /// Hand queued outbound messages to the link, reading the queue from its start
    /// (a nudge from anything that may have put a message anywhere in it).
    Drain,
    /// A message was accepted into the queue at this place: hand it (and whatever is
    /// due) to the link. A place before the last message handed makes the next read
    /// start from the queue's start again.
    Queued(QueueKey),
    /// The timer set for the next due message, at this time (Unix ms), fired.
    DrainAt(i64),
    /// Read the schedule: move the scheduled messages that are due into the queue, and
    /// set the timer for the next (a message was scheduled, or the node nudges).
    CheckSchedule,
    /// The schedule's timer, set for this time (Unix ms), fired.
    ScheduleAt(i64),
    /// Cancel this message unless it has left; the message after, or why not.
    Cancel(String, RpcReplyPort<Result<MessageRecord, FleetError>>),
    /// The device's rate limiter, spawned if it has none yet.
    Limiter(RpcReplyPort<ActorRef<LimiterMsg>>),
    /// An admin set the trust level (already stored).
    SetLevel(TrustLevel),
    /// Time to check whether the device has earned promotion.
    CheckTrust,
    /// The QR code on show, if pairing.
    GetQr(RpcReplyPort<Option<QrCode>>),
    /// Ask the link for a pairing code for this phone.
    PairCode(String, RpcReplyPort<Result<PairCode, LinkError>>),
    /// Forget the credentials and stop (`LOGGED_OUT`).
    Logout(RpcReplyPort<()>),
    /// Ask the network which of these numbers are on WhatsApp (READY only).
    CheckNumbers(
        Vec<String>,
        RpcReplyPort<Result<Vec<NumberCheck>, LinkError>>,
    ),
    /// Send read receipts for these inbound messages of this phone (READY only); in a
    /// group, for those it wrote in the group.
    MarkRead {
        peer_phone: String,
        group: Option<String>,
        message_ids: Vec<String>,
        reply: RpcReplyPort<Result<(), LinkError>>,
    },
    /// A group operation, the device's number acting (READY only).
    Group(
        wafleet_protocol::node_api::GroupCommand,
        RpcReplyPort<Result<GroupAnswer, LinkError>>,
    ),
}

/// The actor; its data lives in [`DeviceState`].
#[derive(Debug)]
pub struct DeviceActor;

/// What the actor is started with.
#[derive(Debug)]
pub struct DeviceArgs {
    pub(crate) device_id: String,
    /// The shard lease this node runs the device under; `None`: unfenced (standalone).
    pub(crate) fence: Option<Fence>,
    pub(crate) ctx: Arc<NodeContext>,
    pub(crate) supervisor: ActorRef<SupervisorMsg>,
}

/// The mutable data of a device actor.
#[derive(Debug)]
pub struct DeviceState {
    id: String,
    /// Carried by every status and vault write; see the module docs.
    fence: Option<Fence>,
    ctx: Arc<NodeContext>,
    supervisor: ActorRef<SupervisorMsg>,
    status: DeviceStatus,
    /// The link connection, while one is open.
    session: Option<Box<dyn LinkSession>>,
    /// Tags the current session's events; older sessions' late events are dropped.
    session_no: u64,
    /// Held from dialing until the handshake ends, bounding concurrent handshakes.
    permit: Option<OwnedSemaphorePermit>,
    qr: Option<QrCode>,
    /// Handed to the link, waiting for the `sent` receipt.
    in_flight: HashSet<String>,
    /// Handed to the link this run and given back unconfirmed (`Unsent`, or in flight
    /// when the connection ended): they may have reached WhatsApp, so they are not
    /// cancellable, until a receipt settles them.
    unconfirmed: HashSet<String>,
    /// More queued messages may wait than the last drain took.
    backlog: bool,
    /// Failed connection attempts in a row (sets the reconnect delay).
    reconnect_attempt: u32,
    /// The end of a temporary ban WhatsApp announced (Unix ms): no reconnect before it,
    /// since connecting while banned risks a longer ban.
    banned_until_ms: Option<i64>,
    /// The device's rate limiter (a linked child actor): every send passes through it.
    /// Spawned on first need (a send, a drain, a ban, a pairing), so that idle devices
    /// cost no second actor.
    limiter: Option<ActorRef<LimiterMsg>>,
    /// The device's trust level, shared with the limiter, which changes it.
    level: Arc<AtomicU8>,
    /// When messages were handed to the link (Unix ms), oldest first, over the last hour.
    handoffs: VecDeque<i64>,
    /// `handoffs` holds those of the device's earlier runs too (read from the store
    /// before this run's first hand-off).
    handoffs_recalled: bool,
    /// The drain timer set, if any: the time it fires at.
    next_drain_at: Option<i64>,
    /// The schedule's timer set, if any: the time it fires at.
    next_schedule_at: Option<i64>,
    /// The place in the queue of the last message handed to the link (or found in
    /// flight) this session: a drain reads after it. `None`: from the start.
    handed_upto: Option<QueueKey>,
    /// The queue was read (or counted) empty and nothing has been queued since: READY
    /// need not read it. Anything that may have queued a message clears it.
    queue_empty: bool,
}

impl Actor for DeviceActor {
    type Msg = DeviceMsg;
    type State = DeviceState;
    type Arguments = DeviceArgs;

    /// Builds the state without touching the store, so that spawning never waits on
    /// it: the supervisor spawns one device after another, and a slow store (a
    /// ScyllaDB LWT) must not make a takeover of thousands of devices serial.
    async fn pre_start(
        &self,
        _myself: ActorRef<DeviceMsg>,
        args: DeviceArgs,
    ) -> Result<DeviceState, ActorProcessingErr> {
        Ok(DeviceState {
            id: args.device_id,
            fence: args.fence,
            ctx: args.ctx,
            supervisor: args.supervisor,
            status: DeviceStatus::Starting,
            session: None,
            session_no: 0,
            permit: None,
            qr: None,
            in_flight: HashSet::new(),
            unconfirmed: HashSet::new(),
            backlog: false,
            reconnect_attempt: 0,
            banned_until_ms: None,
            limiter: None,
            level: Arc::new(AtomicU8::new(level_to_u8(TrustLevel::Newcomer))),
            handoffs: VecDeque::new(),
            handoffs_recalled: false,
            next_drain_at: None,
            next_schedule_at: None,
            handed_upto: None,
            queue_empty: false,
        })
    }

    /// The device's first store work, in its own task: its record, then its first
    /// write (`STARTING`) under the fence. Refused as fenced, the run ends without
    /// writing (another node owns the device); a device deleted meanwhile ends too.
    async fn post_start(
        &self,
        myself: ActorRef<DeviceMsg>,
        state: &mut DeviceState,
    ) -> Result<(), ActorProcessingErr> {
        match state.begin().await {
            Ok(true) => {
                myself.cast(DeviceMsg::Connect)?;
                myself.cast(DeviceMsg::CheckSchedule)?;
            }
            Ok(false) => myself.stop(Some("device not found".into())),
            Err(error) if is_fenced(&error) => state.lost_ownership(&myself, &error.to_string()),
            Err(error) => return Err(error),
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<DeviceMsg>,
        state: &mut DeviceState,
    ) -> Result<(), ActorProcessingErr> {
        state.stop_limiter();
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<DeviceMsg>,
        event: SupervisionEvent,
        state: &mut DeviceState,
    ) -> Result<(), ActorProcessingErr> {
        state.on_limiter_event(event)
    }

    async fn handle(
        &self,
        myself: ActorRef<DeviceMsg>,
        msg: DeviceMsg,
        state: &mut DeviceState,
    ) -> Result<(), ActorProcessingErr> {
        match dispatch(myself.clone(), msg, state).await {
            Err(error) if is_fenced(&error) => {
                state.lost_ownership(&myself, &error.to_string());
                Ok(())
            }
            other => other,
        }
    }
}

/// The one `match` over a device's messages.
async fn dispatch(
    myself: ActorRef<DeviceMsg>,
    msg: DeviceMsg,
    state: &mut DeviceState,
) -> Result<(), ActorProcessingErr> {
    match msg {
        DeviceMsg::Connect => state.wait_for_connect_slot(myself),
        DeviceMsg::Open(permit) => state.open(myself, permit).await?,
        DeviceMsg::Link(session, event) if session == state.session_no => {
            state.on_link_event(myself, event).await?
        }
        DeviceMsg::Link(..) => {}
        DeviceMsg::HandshakeTimeout(session) => {
            if session == state.session_no && state.permit.is_some() {
                state
                    .on_link_event(
                        myself,
                        LinkEvent::Disconnected {
                            reason: "handshake timed out".into(),
                        },
                    )
                    .await?;
            }
        }
        DeviceMsg::Drain => {
            state.handed_upto = None;
            state.queue_empty = false;
            state.drain(&myself).await?
        }
        DeviceMsg::Queued(place) => {
            state.queue_empty = false;
            state.queued(&place);
            state.drain(&myself).await?
        }
        DeviceMsg::Limiter(reply) => {
            let limiter = state.limiter(&myself).await?;
            let _ = reply.send(limiter);
        }
        DeviceMsg::SetLevel(level) => state.set_level(level),
        DeviceMsg::CheckTrust => state.check_trust().await?,
        DeviceMsg::DrainAt(at) => {
            state.queue_empty = false;
            if state.next_drain_at == Some(at) {
                state.next_drain_at = None;
            }
            state.drain(&myself).await?
        }
        DeviceMsg::CheckSchedule => state.check_schedule(&myself).await?,
        DeviceMsg::ScheduleAt(at) => {
            if state.next_schedule_at == Some(at) {
                state.next_schedule_at = None;
            }
            state.check_schedule(&myself).await?
        }
        DeviceMsg::Cancel(message_id, reply) => {
            let _ = reply.send(state.cancel(&message_id).await);
        }
        DeviceMsg::GetQr(reply) => {
            let qr = (state.status == DeviceStatus::ScanQr)
                .then(|| state.qr.clone())
                .flatten();
            let _ = reply.send(qr);
        }
        DeviceMsg::PairCode(phone, reply) => state.request_pair_code(phone, reply),
        DeviceMsg::Logout(reply) => {
            state.logout().await?;
            let _ = reply.send(());
            myself.stop(Some("logged out".into()));
        }
        DeviceMsg::CheckNumbers(phones, reply) => state.check_numbers(phones, reply),
        DeviceMsg::MarkRead {
            peer_phone,
            group,
            message_ids,
            reply,
        } => state.mark_read(peer_phone, group, message_ids, reply),
        DeviceMsg::Group(command, reply) => state.group(command, reply),
    }
    Ok(())
}

/// Whether a handler failed because a fenced write was refused.
fn is_fenced(error: &ActorProcessingErr) -> bool {
    matches!(
        error.downcast_ref::<StoreError>(),
        Some(StoreError::Fenced { .. })
    ) || error
        .downcast_ref::<VaultError>()
        .is_some_and(VaultError::is_fenced)
}

impl DeviceState {
    /// Writes `STARTING` under the fence (reading the status before it and whether
    /// anything is queued, in the same store call); `false` if the device is gone. The
    /// first write under the fence comes before anything the device acts on is read: a
    /// late write of a previous owner either landed before it (and is read by the link)
    /// or is refused from now on. The trust level is taken from the record this write
    /// returns.
    async fn begin(&mut self) -> Result<bool, ActorProcessingErr> {
        let Some(start) = self.ctx.begin_run(&self.id, self.fence.as_ref()).await? else {
            warn!(device_id = %self.id, "device not found, not starting");
            return Ok(false);
        };
        self.status = DeviceStatus::Starting;
        self.queue_empty = !start.queued;
        self.level
            .store(level_to_u8(start.record.trust_level), Ordering::SeqCst);
        Ok(true)
    }

    async fn on_link_event(
        &mut self,
        myself: ActorRef<DeviceMsg>,
        event: LinkEvent,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            LinkEvent::Qr {
                code,
                expires_at_ms,
            } => self.on_qr(code, expires_at_ms).await?,
            LinkEvent::Paired { phone } => {
                self.linked().await?;
                self.on_ready(&myself, phone).await?
            }
            LinkEvent::Connected { phone } => self.on_ready(&myself, phone).await?,
            LinkEvent::Disconnected { reason } => {
                self.end_session();
                self.disconnected(&myself, reason).await?;
            }
            LinkEvent::CredentialsRejected { reason } => {
                info!(device_id = %self.id, %reason, "credentials refused, pairing again");
                self.end_session();
                let patch = DevicePatch {
                    phone: Some(None),
                    ..DevicePatch::default()
                };
                self.set_status(DeviceStatus::Starting, Some(reason), patch)
                    .await?;
                myself.cast(DeviceMsg::Connect)?;
            }
            LinkEvent::LoggedOut => {
                self.end_session();
                self.become_final(DeviceStatus::LoggedOut, "unlinked by the phone", true)
                    .await?;
                myself.stop(Some("logged out".into()));
            }
            LinkEvent::QrTimeout => {
                self.end_session();
                self.become_final(DeviceStatus::Stopped, "qr_timeout", false)
                    .await?;
                myself.stop(Some("qr timeout".into()));
            }
            LinkEvent::Fenced { reason } => self.lost_ownership(&myself, &reason),
            LinkEvent::Replaced => {
                warn!(device_id = %self.id, "connection replaced by another, stopping");
                self.end_session();
                self.replaced().await?;
                myself.stop(Some("replaced".into()));
            }
            LinkEvent::Receipt {
                message_id,
                status,
                error,
                at_ms,
            } => {
                self.on_receipt(&myself, message_id, status, error, at_ms)
                    .await?
            }
            LinkEvent::Unsent { message_id, reason } => {
                self.on_unsent(&myself, &message_id, &reason)
            }
            LinkEvent::Inbound {
                message_id,
                from_phone,
                text,
                at_ms,
                media,
                group,
                reply_to,
            } => {
                let content = Content {
                    media,
                    quote: reply_to.map(|id| Quote {
                        id,
                        ..Quote::default()
                    }),
                    ..Content::text(text)
                };
                self.on_inbound(message_id, from_phone, at_ms, group, content)
                    .await?
            }
            LinkEvent::Banned { until_ms } => self.on_banned(&myself, until_ms).await?,
        }
        Ok(())
    }
}
