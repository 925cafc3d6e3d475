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

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde_json::{Map, Value};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tracing::{debug, info, warn};

use crate::clock::now_ms;
use crate::context::NodeContext;
use crate::device::supervisor::SupervisorMsg;
use crate::events::EventKind;
use crate::limits::actor::{LimiterArgs, LimiterMsg, RateLimiter};
use crate::limits::policy::{Decision, quota_for};
use crate::limits::trust::{level_from_u8, level_to_u8, promote_if_earned, record_link};
use crate::link::{
    LinkCommand, LinkContext, LinkError, LinkEvent, LinkEvents, LinkSession, PairCode,
    ReceiptStatus,
};
use crate::metrics;
use crate::store::{
    DevicePatch, DeviceRecord, DeviceStatus, Direction, Fence, InsertOutcome, MessageRecord,
    MessageStatus, StoreError, TrustLevel,
};
use crate::vault::VaultError;
use wafleet_cluster_config::quota::{HOUR_MS, MINUTE_MS};

pub mod supervisor;

/// How long an operator's logout waits for the link to unlink the device from the
/// phone's account (the WhatsApp link gives up after 10 s itself).
const LOGOUT_WAIT: Duration = Duration::from_secs(12);

/// A QR code being shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrCode {
    pub code: String,
    pub expires_at_ms: i64,
}

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
    /// Hand queued outbound messages to the link.
    Drain,
    /// The timer set for the next due message, at this time (Unix ms), fired.
    DrainAt(i64),
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
    /// The drain timer set, if any: the time it fires at.
    next_drain_at: Option<i64>,
}

impl Actor for DeviceActor {
    type Msg = DeviceMsg;
    type State = DeviceState;
    type Arguments = DeviceArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<DeviceMsg>,
        args: DeviceArgs,
    ) -> Result<DeviceState, ActorProcessingErr> {
        let record = args
            .ctx
            .store
            .get_device(&args.device_id)
            .await?
            .ok_or_else(|| format!("device {} not found", args.device_id))?;
        let level = Arc::new(AtomicU8::new(level_to_u8(record.trust_level)));
        let mut state = DeviceState {
            id: args.device_id,
            fence: args.fence,
            ctx: args.ctx,
            supervisor: args.supervisor,
            status: record.status,
            session: None,
            session_no: 0,
            permit: None,
            qr: None,
            in_flight: HashSet::new(),
            backlog: false,
            reconnect_attempt: 0,
            banned_until_ms: None,
            limiter: None,
            level,
            handoffs: VecDeque::new(),
            next_drain_at: None,
        };
        // The first write under the fence comes before anything the device acts on is
        // read: a late write of a previous owner either landed before it (and is read
        // below or by the link) or is refused from now on. The trust level is taken from
        // the record this write returns, not from the read above.
        let record = state
            .set_status(DeviceStatus::Starting, None, DevicePatch::default())
            .await?;
        state
            .level
            .store(level_to_u8(record.trust_level), Ordering::SeqCst);
        myself.cast(DeviceMsg::Connect)?;
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<DeviceMsg>,
        state: &mut DeviceState,
    ) -> Result<(), ActorProcessingErr> {
        let Some(limiter) = state.limiter.take() else {
            return Ok(());
        };
        let mut limiters = state
            .ctx
            .limiters
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if limiters
            .get(&state.id)
            .is_some_and(|current| current.get_id() == limiter.get_id())
        {
            limiters.remove(&state.id);
        }
        drop(limiters);
        limiter.stop(None);
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<DeviceMsg>,
        event: SupervisionEvent,
        state: &mut DeviceState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            // The limiter failed: fail the device too, so its supervisor restarts both.
            SupervisionEvent::ActorFailed(_, error) => {
                Err(format!("the rate limiter of {} failed: {error}", state.id).into())
            }
            // The limiter stopped (fenced off, or the device is stopping): forget it; the
            // device meets the fence on its own writes.
            SupervisionEvent::ActorTerminated(cell, ..) => {
                if state
                    .limiter
                    .as_ref()
                    .is_some_and(|limiter| limiter.get_id() == cell.get_id())
                {
                    state.limiter = None;
                }
                Ok(())
            }
            _ => Ok(()),
        }
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
        DeviceMsg::Drain => state.drain(&myself).await?,
        DeviceMsg::Limiter(reply) => {
            let limiter = state.limiter(&myself).await?;
            let _ = reply.send(limiter);
        }
        DeviceMsg::SetLevel(level) => {
            state.level.store(level_to_u8(level), Ordering::SeqCst);
            if let Some(limiter) = &state.limiter {
                let _ = limiter.cast(LimiterMsg::SetLevel(level));
            }
        }
        DeviceMsg::CheckTrust => state.check_trust().await?,
        DeviceMsg::DrainAt(at) => {
            if state.next_drain_at == Some(at) {
                state.next_drain_at = None;
            }
            state.drain(&myself).await?
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
    async fn set_status(
        &mut self,
        status: DeviceStatus,
        reason: Option<String>,
        patch: DevicePatch,
    ) -> Result<DeviceRecord, StoreError> {
        let previous = self.status;
        let record = self
            .ctx
            .record_status(
                &self.id,
                Some(previous),
                status,
                reason,
                patch,
                self.fence.as_ref(),
            )
            .await?;
        self.status = status;
        Ok(record)
    }

    fn wait_for_connect_slot(&mut self, myself: ActorRef<DeviceMsg>) {
        if self.session.is_some() {
            return;
        }
        let gate = self.ctx.connect_gate.clone();
        let jitter = jitter(self.ctx.config.connect_jitter);
        tokio::spawn(async move {
            tokio::time::sleep(jitter).await;
            if let Ok(permit) = gate.acquire_owned().await {
                let _ = myself.cast(DeviceMsg::Open(permit));
            }
        });
    }

    async fn open(
        &mut self,
        myself: ActorRef<DeviceMsg>,
        permit: OwnedSemaphorePermit,
    ) -> Result<(), StoreError> {
        if self.session.is_some() {
            return Ok(());
        }
        if self.status != DeviceStatus::Starting {
            self.set_status(DeviceStatus::Starting, None, DevicePatch::default())
                .await?;
        }
        self.session_no += 1;
        let session_no = self.session_no;
        let to_actor = myself.clone();
        let link_ctx = LinkContext {
            device_id: self.id.clone(),
            vault: self.ctx.vault.device(&self.id, self.fence),
            events: LinkEvents::new(
                session_no,
                Arc::new(move |session, event| {
                    let _ = to_actor.cast(DeviceMsg::Link(session, event));
                }),
            ),
        };
        let timeout = self.ctx.config.handshake_timeout;
        match tokio::time::timeout(timeout, self.ctx.links.open(link_ctx)).await {
            Ok(Ok(session)) => {
                self.session = Some(session);
                self.permit = Some(permit);
                myself.send_after(timeout, move || DeviceMsg::HandshakeTimeout(session_no));
                Ok(())
            }
            Ok(Err(error)) => {
                drop(permit);
                self.disconnected(&myself, error.to_string()).await
            }
            Err(_) => {
                drop(permit);
                self.disconnected(&myself, "connect timed out".into()).await
            }
        }
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
                match &self.limiter {
                    Some(limiter) => {
                        let _ = limiter.cast(LimiterMsg::Linked);
                    }
                    // No limiter yet (an idle device needs none): record the link here.
                    None => {
                        let vault = self.ctx.vault.device(&self.id, self.fence);
                        record_link(&vault, self.ctx.clock.now_ms()).await?;
                    }
                }
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
                self.become_final(DeviceStatus::Stopped, "replaced", false)
                    .await?;
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
            LinkEvent::Inbound {
                message_id,
                from_phone,
                text,
                at_ms,
            } => self.on_inbound(message_id, from_phone, text, at_ms).await?,
            LinkEvent::Banned { until_ms } => self.on_banned(&myself, until_ms).await?,
        }
        Ok(())
    }

    async fn on_qr(&mut self, code: String, expires_at_ms: i64) -> Result<(), StoreError> {
        self.permit = None;
        self.qr = Some(QrCode {
            code: code.clone(),
            expires_at_ms,
        });
        if self.status != DeviceStatus::ScanQr {
            let patch = DevicePatch {
                phone: Some(None),
                ..DevicePatch::default()
            };
            self.set_status(DeviceStatus::ScanQr, None, patch).await?;
        }
        let mut data = Map::new();
        data.insert("code".into(), Value::from(code));
        data.insert("expires_at_ms".into(), Value::from(expires_at_ms));
        self.ctx.bus.publish(&self.id, EventKind::Qr, data);
        Ok(())
    }

    async fn on_ready(
        &mut self,
        myself: &ActorRef<DeviceMsg>,
        phone: String,
    ) -> Result<(), ActorProcessingErr> {
        self.permit = None;
        self.qr = None;
        self.reconnect_attempt = 0;
        self.banned_until_ms = None;
        let patch = DevicePatch {
            phone: Some(Some(phone)),
            last_connected_at_ms: Some(Some(now_ms())),
            ..DevicePatch::default()
        };
        self.set_status(DeviceStatus::Ready, None, patch).await?;
        let _ = self
            .supervisor
            .cast(SupervisorMsg::Healthy(self.id.clone()));
        self.drain(myself).await?;
        Ok(())
    }

    /// The connection is gone (or never came): `DISCONNECTED`, and retry with backoff.
    async fn disconnected(
        &mut self,
        myself: &ActorRef<DeviceMsg>,
        reason: String,
    ) -> Result<(), StoreError> {
        let mut delay = backoff(
            self.ctx.config.reconnect_min,
            self.ctx.config.reconnect_max,
            self.reconnect_attempt,
        );
        self.reconnect_attempt = self.reconnect_attempt.saturating_add(1);
        let now = self.ctx.clock.now_ms();
        if let Some(until_ms) = self.banned_until_ms.filter(|&until| until > now) {
            // Banned: wait for the ban to end (plus the usual delay, so devices banned
            // together do not all come back at once).
            delay += Duration::from_millis(u64::try_from(until_ms - now).unwrap_or(0));
            info!(device_id = %self.id, until_ms, "banned: not reconnecting before the ban ends");
        }
        debug!(device_id = %self.id, %reason, delay_ms = delay.as_millis() as u64, "link down, reconnecting later");
        self.set_status(
            DeviceStatus::Disconnected,
            Some(reason),
            DevicePatch::default(),
        )
        .await?;
        myself.send_after(delay, || DeviceMsg::Connect);
        Ok(())
    }

    /// A status the actor stops in. `wipe`: the credentials are gone, so is the phone.
    async fn become_final(
        &mut self,
        status: DeviceStatus,
        reason: &str,
        wipe: bool,
    ) -> Result<(), StoreError> {
        let patch = DevicePatch {
            desired_running: Some(false),
            phone: wipe.then_some(None),
            ..DevicePatch::default()
        };
        self.set_status(status, Some(reason.to_owned()), patch)
            .await
            .map(drop)
    }

    /// Another node owns the device now: close the link and stop, writing nothing (the
    /// new owner's status stands). The supervisor sees a normal stop, not a crash.
    fn lost_ownership(&mut self, myself: &ActorRef<DeviceMsg>, reason: &str) {
        warn!(device_id = %self.id, fence = ?self.fence, %reason, "lost ownership of the device, stopping");
        metrics::device_fenced();
        self.end_session();
        myself.stop(Some("fenced".into()));
    }

    fn end_session(&mut self) {
        self.session = None;
        self.permit = None;
        self.qr = None;
        self.in_flight.clear();
    }

    async fn logout(&mut self) -> Result<(), ActorProcessingErr> {
        let told = self.tell_network_logout().await;
        self.end_session();
        self.ctx.vault.device(&self.id, self.fence).clear().await?;
        let reason = if told {
            "logged out by the operator"
        } else {
            "logged out by the operator; not connected, so WhatsApp still lists the device \
             until the phone removes it"
        };
        self.become_final(DeviceStatus::LoggedOut, reason, true)
            .await?;
        Ok(())
    }

    /// Asks the connected link to unlink the device from the phone's account; whether
    /// it could (a device that is not READY cannot tell the network anything).
    async fn tell_network_logout(&mut self) -> bool {
        let Some(session) = self
            .session
            .as_mut()
            .filter(|_| self.status == DeviceStatus::Ready)
        else {
            return false;
        };
        let (reply, done) = oneshot::channel();
        if let Err(error) = session.command(LinkCommand::Logout { reply }) {
            warn!(device_id = %self.id, %error, "cannot pass the logout to the link");
            return false;
        }
        match tokio::time::timeout(LOGOUT_WAIT, done).await {
            Ok(_) => true,
            Err(_) => {
                warn!(device_id = %self.id, "the link did not finish the logout in time");
                false
            }
        }
    }

    fn request_pair_code(
        &mut self,
        phone: String,
        reply: RpcReplyPort<Result<PairCode, LinkError>>,
    ) {
        let session = match (&mut self.session, self.status) {
            (Some(session), DeviceStatus::ScanQr) => session,
            _ => {
                let _ = reply.send(Err(LinkError::WrongState(format!(
                    "device is {}, a pairing code needs SCAN_QR",
                    self.status
                ))));
                return;
            }
        };
        let (tx, rx) = oneshot::channel();
        if let Err(error) = session.command(LinkCommand::RequestPairCode { phone, reply: tx }) {
            let _ = reply.send(Err(error));
            return;
        }
        // Answer from a task so the actor does not wait on the network.
        tokio::spawn(async move {
            let answer = rx.await.unwrap_or(Err(LinkError::Closed));
            let _ = reply.send(answer);
        });
    }

    /// Hands queued messages (oldest first) to the link while READY, each at its slot.
    ///
    /// A message carries its slot as `not_before_ms`, given by the rate limiter when
    /// the message was accepted. One without (accepted by a gateway while the device
    /// moved, or given back by a pause) asks the limiter for one first, and the slot is
    /// stored. Messages go in order: the first that is not due sets a timer and ends
    /// the drain. Between two hand-offs at least the quota's minimum gap plus
    /// [`handoff_guard`](crate::context::NodeConfig::handoff_guard) passes.
    async fn drain(&mut self, myself: &ActorRef<DeviceMsg>) -> Result<(), ActorProcessingErr> {
        if self.session.is_none() || self.status != DeviceStatus::Ready {
            return Ok(());
        }
        let room = self
            .ctx
            .config
            .max_in_flight
            .saturating_sub(self.in_flight.len());
        if room == 0 {
            self.backlog = true;
            return Ok(());
        }
        let limit = (self.in_flight.len() + room).min(u32::MAX as usize) as u32;
        let queued = self.ctx.store.queued_messages(&self.id, limit).await?;
        self.backlog = queued.len() as u32 == limit;
        for message in queued {
            if self.in_flight.contains(&message.id) {
                continue;
            }
            let slot = match message.not_before_ms {
                Some(slot) => slot,
                None => match self.schedule(myself, &message.id).await? {
                    Ok(slot) => slot,
                    Err(retry_at) => {
                        self.drain_later(myself, retry_at);
                        return Ok(());
                    }
                },
            };
            let now = now_ms();
            let due = slot.max(self.earliest_handoff(now));
            if due > now {
                self.drain_later(myself, due);
                return Ok(());
            }
            let Some(session) = self.session.as_mut() else {
                return Ok(());
            };
            let command = LinkCommand::SendText {
                message_id: message.id.clone(),
                to_phone: message.peer_phone,
                text: message.text,
            };
            match session.command(command) {
                Ok(()) => {
                    self.in_flight.insert(message.id);
                    self.handoffs.push_back(now);
                }
                Err(LinkError::WrongState(_)) => {
                    // The link's buffer is full: try again shortly.
                    self.backlog = true;
                    myself.send_after(Duration::from_millis(20), || DeviceMsg::Drain);
                    break;
                }
                Err(_) => break,
            }
        }
        Ok(())
    }

    /// Asks the limiter for a slot for an accepted message that has none, and stores
    /// it. `Err(time)`: no slot before `time` (paused, or the day is full).
    async fn schedule(
        &mut self,
        myself: &ActorRef<DeviceMsg>,
        message_id: &str,
    ) -> Result<Result<i64, i64>, ActorProcessingErr> {
        let admission = self
            .limiter(myself)
            .await?
            .call(LimiterMsg::Schedule, Some(Duration::from_secs(10)))
            .await?;
        let admission = match admission {
            ractor::rpc::CallResult::Success(admission) => admission?,
            other => return Err(format!("rate limiter did not answer: {other:?}").into()),
        };
        let slot = match admission.decision {
            Decision::Refused { retry_after_ms, .. } => {
                return Ok(Err(admission.at_ms.saturating_add(retry_after_ms)));
            }
            _ => admission.slot().unwrap_or(admission.at_ms),
        };
        self.ctx
            .store
            .reschedule_message(&self.id, message_id, Some(slot))
            .await?;
        Ok(Ok(slot))
    }

    /// The earliest time the next message may be handed to the link, by the actual
    /// hand-offs so far: the quota's minimum gap after the last one, and no more than
    /// the minute's and the hour's quota in any window, each plus the guard. Slots plan
    /// the pace; this keeps it in what actually leaves, even when one hand-off ran late
    /// (a slot is a lower bound, never a promise to the millisecond).
    fn earliest_handoff(&mut self, now: i64) -> i64 {
        let level = level_from_u8(self.level.load(Ordering::SeqCst));
        let table = self.ctx.quotas.current();
        let quota = quota_for(&table, level);
        while self
            .handoffs
            .front()
            .is_some_and(|&at| at <= now.saturating_sub(HOUR_MS))
        {
            self.handoffs.pop_front();
        }
        let Some(&last) = self.handoffs.back() else {
            return now;
        };
        let guard = i64::try_from(self.ctx.config.handoff_guard.as_millis()).unwrap_or(0);
        let mut due = now;
        if quota.min_gap_ms > 0 {
            let gap = i64::try_from(quota.min_gap_ms).unwrap_or(i64::MAX);
            due = due.max(last.saturating_add(gap).saturating_add(guard));
        }
        for (limit, window) in [(quota.per_minute, MINUTE_MS), (quota.per_hour, HOUR_MS)] {
            let limit = limit as usize;
            if limit > 0 && self.handoffs.len() >= limit {
                let oldest = self.handoffs[self.handoffs.len() - limit];
                due = due.max(oldest.saturating_add(window).saturating_add(guard));
            }
        }
        due
    }

    /// Drains again at `at_ms` (Unix ms), unless a timer already fires as early.
    fn drain_later(&mut self, myself: &ActorRef<DeviceMsg>, at_ms: i64) {
        if self.next_drain_at.is_some_and(|set| set <= at_ms) {
            return;
        }
        self.next_drain_at = Some(at_ms);
        let delay = Duration::from_millis(u64::try_from(at_ms - now_ms()).unwrap_or(0));
        myself.send_after(delay, move || DeviceMsg::DrainAt(at_ms));
    }

    /// A ban from the link: the queued messages not yet handed over give their slots
    /// back (they are planned again, at the NEWCOMER pace, once the pause ends), and the
    /// limiter demotes the device and pauses it.
    async fn on_banned(
        &mut self,
        myself: &ActorRef<DeviceMsg>,
        until_ms: i64,
    ) -> Result<(), ActorProcessingErr> {
        warn!(device_id = %self.id, until_ms, "account temporarily banned");
        self.banned_until_ms = Some(until_ms);
        let limiter = self.limiter(myself).await?;
        let queued = self.ctx.store.queued_messages(&self.id, u32::MAX).await?;
        for message in queued {
            if self.in_flight.contains(&message.id) {
                continue;
            }
            let slot = message.not_before_ms.unwrap_or(message.created_at_ms);
            if self
                .ctx
                .store
                .reschedule_message(&self.id, &message.id, None)
                .await?
            {
                let _ = limiter.cast(LimiterMsg::Release(slot));
            }
        }
        let _ = limiter.cast(LimiterMsg::Banned { until_ms });
        Ok(())
    }

    /// The device's rate limiter: spawned (linked to this actor, registered for the
    /// fleet) the first time it is needed.
    async fn limiter(
        &mut self,
        myself: &ActorRef<DeviceMsg>,
    ) -> Result<ActorRef<LimiterMsg>, ActorProcessingErr> {
        if let Some(limiter) = &self.limiter {
            return Ok(limiter.clone());
        }
        let (limiter, _) = Actor::spawn_linked(
            None,
            RateLimiter,
            LimiterArgs {
                device_id: self.id.clone(),
                fence: self.fence,
                ctx: self.ctx.clone(),
                level: self.level.clone(),
            },
            myself.get_cell(),
        )
        .await?;
        self.ctx
            .limiters
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(self.id.clone(), limiter.clone());
        self.limiter = Some(limiter.clone());
        Ok(limiter)
    }

    /// Promotes a NEWCOMER to TRUSTED once it has earned it (see
    /// [`crate::limits::trust`]): read from the store and vault, so an idle device needs
    /// no limiter for it.
    async fn check_trust(&mut self) -> Result<(), ActorProcessingErr> {
        if level_from_u8(self.level.load(Ordering::SeqCst)) != TrustLevel::Newcomer {
            return Ok(());
        }
        let vault = self.ctx.vault.device(&self.id, self.fence);
        if let Some(level) = promote_if_earned(&self.ctx, &self.id, &vault).await? {
            self.level.store(level_to_u8(level), Ordering::SeqCst);
            if let Some(limiter) = &self.limiter {
                let _ = limiter.cast(LimiterMsg::SetLevel(level));
            }
        }
        Ok(())
    }

    async fn on_receipt(
        &mut self,
        myself: &ActorRef<DeviceMsg>,
        message_id: String,
        status: ReceiptStatus,
        error: Option<String>,
        at_ms: i64,
    ) -> Result<(), ActorProcessingErr> {
        let link_status = status;
        let status = match status {
            ReceiptStatus::Sent => MessageStatus::Sent,
            ReceiptStatus::Delivered => MessageStatus::Delivered,
            ReceiptStatus::Read => MessageStatus::Read,
            ReceiptStatus::Failed => MessageStatus::Failed,
        };
        let was_in_flight = self.in_flight.remove(&message_id);
        let before = self.ctx.store.get_message(&self.id, &message_id).await?;
        let Some(before) = before else {
            self.ack_receipt(message_id, link_status);
            return Ok(());
        };
        if before.status == MessageStatus::Queued && status != MessageStatus::Queued {
            // Out of the queue: the limiter's place in flight frees (its slot stays spent).
            if let Some(limiter) = &self.limiter {
                let _ = limiter.cast(LimiterMsg::Settled);
            }
        }
        if before.status.may_advance_to(status) {
            let at_ms = if at_ms > 0 { at_ms } else { now_ms() };
            if let Some(after) = self
                .ctx
                .store
                .advance_message(&self.id, &message_id, status, at_ms, error.as_deref())
                .await?
                && after.status == status
            {
                metrics::message_outcome(status.as_str());
                let mut data = Map::new();
                data.insert("message_id".into(), Value::from(message_id.as_str()));
                data.insert("status".into(), Value::from(status.as_str()));
                if let Some(error) = error {
                    data.insert("error".into(), Value::from(error));
                }
                data.insert("at_ms".into(), Value::from(at_ms));
                self.ctx
                    .bus
                    .publish(&self.id, EventKind::MessageStatus, data);
            }
        }
        // Stored (or already further along): the network need not tell it again.
        self.ack_receipt(message_id, link_status);
        if was_in_flight && self.backlog {
            self.drain(myself).await?;
        }
        Ok(())
    }

    fn ack_receipt(&mut self, message_id: String, status: ReceiptStatus) {
        if let Some(session) = self.session.as_mut() {
            let _ = session.command(LinkCommand::AckReceipt { message_id, status });
        }
    }

    async fn on_inbound(
        &mut self,
        message_id: String,
        from_phone: String,
        text: String,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let record = MessageRecord {
            id: message_id.clone(),
            device_id: self.id.clone(),
            direction: Direction::Inbound,
            peer_phone: from_phone.clone(),
            text: text.clone(),
            status: MessageStatus::Delivered,
            error: None,
            idempotency_key: None,
            created_at_ms: at_ms,
            not_before_ms: None,
            sent_at_ms: None,
            delivered_at_ms: Some(now_ms()),
            read_at_ms: None,
            failed_at_ms: None,
        };
        let fresh = match self.ctx.store.insert_message(&record).await {
            Ok(InsertOutcome::Inserted) => true,
            Ok(InsertOutcome::Existing(_)) | Err(StoreError::Conflict { .. }) => false,
            Err(error) => return Err(error),
        };
        if fresh {
            metrics::message_outcome("inbound");
            let mut data = Map::new();
            data.insert("message_id".into(), Value::from(message_id.as_str()));
            data.insert("from".into(), Value::from(from_phone));
            data.insert("text".into(), Value::from(text));
            data.insert("at_ms".into(), Value::from(at_ms));
            self.ctx
                .bus
                .publish(&self.id, EventKind::MessageInbound, data);
        }
        if let Some(session) = self.session.as_mut() {
            let _ = session.command(LinkCommand::AckInbound { message_id });
        }
        Ok(())
    }
}

/// `min · 2^attempt`, capped at `max`, with up to half of it as random jitter.
pub(crate) fn backoff(min: Duration, max: Duration, attempt: u32) -> Duration {
    let base = min
        .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
        .min(max);
    base / 2 + jitter(base / 2)
}

/// A random duration in `[0, up_to]`.
pub(crate) fn jitter(up_to: Duration) -> Duration {
    let ms = up_to.as_millis() as u64;
    if ms == 0 {
        Duration::ZERO
    } else {
        Duration::from_millis(fastrand::u64(0..=ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let min = Duration::from_secs(1);
        let max = Duration::from_secs(30);
        for attempt in 0..40 {
            let d = backoff(min, max, attempt);
            let base = min.saturating_mul(1 << attempt.min(20)).min(max);
            assert!(
                d >= base / 2 && d <= base,
                "attempt {attempt}: {d:?} vs {base:?}"
            );
        }
        assert!(backoff(min, max, 40) <= max);
    }
}
