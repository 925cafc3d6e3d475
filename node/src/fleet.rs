//! The node's API: what the gateway calls to manage devices and send messages.
//!
//! Reads come from the store; commands go to the device's actor through the
//! supervisor. A message is in the store, `queued`, before [`Fleet::send_text`]
//! returns, so nothing accepted is lost if the process dies.
//!
//! Devices started through this API (and resumed by [`Fleet::start`]) run unfenced:
//! that is standalone, the only writer of its data. A cluster node runs the devices of
//! the shards it leases with [`Fleet::run_owned`], under the lease's fence. Operator
//! writes here (start/stop wishes, an operator logout of a device that is not running)
//! are not tied to a lease and stay unfenced.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorRef};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tracing::{info, warn};

use wafleet_cluster_config::QuotaTable;

use crate::census::Census;
use crate::clock::{Clock, now_ms};
use crate::context::{NodeConfig, NodeContext, Quotas};
use crate::device::supervisor::{DeviceSupervisor, SupervisorMsg};
use crate::device::{DeviceMsg, QrCode};
use crate::events::EventBus;
use crate::limits::actor::LimiterMsg;
use crate::limits::policy::Decision;
use crate::limits::view::{LimitsView, limits_from_store};
use crate::link::{LinkError, LinkFactory, PairCode};
use crate::metrics;
use crate::seal::Sealer;
use crate::store::{
    DevicePage, DevicePatch, DeviceQuery, DeviceRecord, DeviceStatus, Direction, Fence,
    InsertOutcome, MessageRecord, MessageStatus, Store, StoreError, TrustLevel,
};
use crate::vault::Vault;

/// How long a call into a device actor may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Failures of fleet operations, each meaning one thing to an API client.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("device {0} not found")]
    DeviceNotFound(String),
    #[error("message {0} not found")]
    MessageNotFound(String),
    #[error("device {0} already exists")]
    DeviceExists(String),
    /// The device is not in a state that allows this; `code` names the rule.
    #[error("{message}")]
    WrongState { code: &'static str, message: String },
    #[error("this Idempotency-Key was used for a different message")]
    IdempotencyKeyReused,
    #[error("the device did not answer in time")]
    Timeout,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
    /// The device's node cannot be reached, or this process runs no devices; the same
    /// call may succeed later (a gateway says 503, retryable).
    #[error("{0}")]
    Unavailable(String),
    /// The rate limiter refused the send (429 with `Retry-After`); `code` is one of
    /// [`Refusal::code`](crate::limits::policy::Refusal::code).
    #[error("{message}")]
    RateLimited {
        code: &'static str,
        message: String,
        retry_after_ms: i64,
    },
    /// The request is malformed in a way only the node can tell (e.g. a quota table
    /// that does not hold together).
    #[error("{0}")]
    Invalid(String),
}

/// The store setting that holds the trust-level quota table (JSON).
pub const TRUST_LEVELS_SETTING: &str = "trust_levels";

/// The rules a [`FleetError::WrongState`] names, as API clients see them. Every code the
/// fleet uses is here, so that a code that crossed a process boundary as text finds its
/// `&'static str` again ([`known_state_code`]).
pub mod state_code {
    /// The device was never linked (logout).
    pub const DEVICE_NOT_LINKED: &str = "device_not_linked";
    /// QR and pairing codes exist only in `SCAN_QR`.
    pub const DEVICE_NOT_IN_SCAN_QR: &str = "device_not_in_scan_qr";
    /// The link could not give a pairing code.
    pub const LINK_UNAVAILABLE: &str = "link_unavailable";
    /// Messages are accepted only while the device is linked and running.
    pub const DEVICE_NOT_READY: &str = "device_not_ready";
    /// The device stopped while handling the request.
    pub const DEVICE_STOPPING: &str = "device_stopping";
    /// A code this build does not know (sent by a newer peer).
    pub const OTHER: &str = "wrong_state";

    /// Every code above.
    pub const ALL: [&str; 6] = [
        DEVICE_NOT_LINKED,
        DEVICE_NOT_IN_SCAN_QR,
        LINK_UNAVAILABLE,
        DEVICE_NOT_READY,
        DEVICE_STOPPING,
        OTHER,
    ];
}

/// The `&'static str` of a wrong-state code received as text; [`state_code::OTHER`] for
/// one this build does not know.
pub fn known_state_code(code: &str) -> &'static str {
    state_code::ALL
        .into_iter()
        .find(|known| *known == code)
        .unwrap_or(state_code::OTHER)
}

/// A device to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevice {
    pub id: String,
    pub name: String,
    pub trust_level: TrustLevel,
    pub webhook: Option<String>,
}

/// A text message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendText {
    pub to_phone: String,
    pub text: String,
    pub idempotency_key: Option<String>,
}

/// What became of a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub message: MessageRecord,
    /// The same Idempotency-Key was seen before: this is the earlier message.
    pub replayed: bool,
}

/// Handle to a node's devices. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Fleet {
    ctx: Arc<NodeContext>,
    supervisor: ActorRef<SupervisorMsg>,
}

impl Fleet {
    /// Starts the supervisor and resumes every device that should run (paced by the
    /// connect gate, so thousands of devices never dial at once).
    pub async fn start(
        config: NodeConfig,
        store: Arc<dyn Store>,
        sealer: Arc<Sealer>,
        bus: EventBus,
        links: Arc<dyn LinkFactory>,
    ) -> Result<Fleet, FleetError> {
        let store_for_quotas = store.clone();
        let ctx = Arc::new(NodeContext {
            connect_gate: Arc::new(Semaphore::new(config.connect_concurrency.max(1))),
            config,
            vault: Vault::new(store.clone(), sealer),
            store,
            bus,
            links,
            running: Default::default(),
            quotas: Quotas::new(load_quota_table(store_for_quotas.as_ref()).await?),
            clock: Clock::system(),
            census: Census::default(),
        });
        spawn_settings_refresh(Arc::downgrade(&ctx));
        spawn_trust_checks(Arc::downgrade(&ctx));
        let (supervisor, _) = Actor::spawn(None, DeviceSupervisor, ctx.clone())
            .await
            .map_err(|e| FleetError::Internal(e.to_string()))?;
        let fleet = Fleet { ctx, supervisor };
        if fleet.ctx.config.resume_all {
            fleet.resume().await?;
        }
        Ok(fleet)
    }

    /// Restarts devices wanted running; marks the rest as not running (a killed process
    /// leaves stale statuses behind).
    async fn resume(&self) -> Result<(), FleetError> {
        let mut after = None;
        let (mut resumed, mut settled) = (0u64, 0u64);
        loop {
            let page = self
                .ctx
                .store
                .list_devices(&DeviceQuery {
                    after: after.take(),
                    limit: 500,
                    ..DeviceQuery::default()
                })
                .await?;
            for device in &page.devices {
                if device.desired_running {
                    self.spawn(&device.id, false, None).await?;
                    resumed += 1;
                } else if !matches!(
                    device.status,
                    DeviceStatus::Stopped | DeviceStatus::LoggedOut | DeviceStatus::Failed
                ) {
                    self.ctx
                        .record_status(
                            &device.id,
                            Some(device.status),
                            DeviceStatus::Stopped,
                            None,
                            DevicePatch::default(),
                            None,
                        )
                        .await?;
                    settled += 1;
                }
            }
            match page.next_after {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        info!(resumed, settled, "devices resumed");
        Ok(())
    }

    pub fn bus(&self) -> &EventBus {
        &self.ctx.bus
    }

    pub fn node_name(&self) -> &str {
        &self.ctx.config.node_name
    }

    /// Refreshes the gauges computed when metrics are scraped: the devices hosted here
    /// by status, the recoveries under way, and the cluster's devices by status (from
    /// the store).
    pub async fn refresh_metrics(&self) -> Result<(), FleetError> {
        let running: std::collections::HashSet<String> =
            self.running_devices().into_iter().collect();
        let snapshot = self.ctx.census.snapshot(&running, Instant::now());
        metrics::set_hosted_counts(self.node_name(), &snapshot.by_status);
        metrics::recoveries_pending(snapshot.pending, snapshot.oldest_pending);
        for _ in 0..snapshot.abandoned {
            metrics::recovery_finished("abandoned", None);
        }
        let counts = self.ctx.store.count_devices_by_status().await?;
        metrics::set_device_counts(&counts);
        Ok(())
    }

    /// Runs the device on this node under `fence` as a recovery: its shard was taken
    /// over from a node that did not release it, and this node has wanted the shard
    /// since `since`. The recovery is timed until the device is READY here.
    pub async fn run_recovered(
        &self,
        id: &str,
        fence: Fence,
        since: Instant,
    ) -> Result<(), FleetError> {
        self.ctx.census.recovery_started(id, since);
        metrics::recovery_started();
        self.run_owned(id, fence).await
    }

    pub async fn create_device(&self, new: NewDevice) -> Result<DeviceRecord, FleetError> {
        create_device(self.ctx.store.as_ref(), new).await
    }

    pub async fn device(&self, id: &str) -> Result<DeviceRecord, FleetError> {
        self.ctx
            .store
            .get_device(id)
            .await?
            .ok_or_else(|| FleetError::DeviceNotFound(id.to_owned()))
    }

    pub async fn list_devices(&self, query: &DeviceQuery) -> Result<DevicePage, FleetError> {
        Ok(self.ctx.store.list_devices(query).await?)
    }

    pub async fn count_devices(&self) -> Result<Vec<(DeviceStatus, u64)>, FleetError> {
        Ok(self.ctx.store.count_devices_by_status().await?)
    }

    /// Runs the device (pairing if it has no credentials).
    pub async fn start_device(&self, id: &str) -> Result<DeviceRecord, FleetError> {
        let device = self.device(id).await?;
        if !device.desired_running {
            let patch = DevicePatch {
                desired_running: Some(true),
                ..DevicePatch::default()
            };
            self.ctx
                .store
                .patch_device(id, &patch, now_ms(), None)
                .await?;
        }
        self.spawn(id, true, None).await?;
        self.device(id).await
    }

    /// Runs a device of a shard this node leases, under the lease's `fence`: its
    /// credentials, link state and status are written with it, so the run stops by
    /// itself (without writing) once another node has taken the shard over. Running it
    /// already under the same fence is a no-op; under another fence, the run is
    /// replaced. Does not change the device's `desired_running`.
    pub async fn run_owned(&self, id: &str, fence: Fence) -> Result<(), FleetError> {
        self.device(id).await?;
        self.spawn(id, true, Some(fence)).await
    }

    /// Starts the device on this node under `fence`, the lease of its shard: marks it
    /// wanted running and runs it (see [`Fleet::run_owned`]).
    pub async fn start_device_owned(
        &self,
        id: &str,
        fence: Fence,
    ) -> Result<DeviceRecord, FleetError> {
        let device = self.device(id).await?;
        if !device.desired_running {
            let patch = DevicePatch {
                desired_running: Some(true),
                ..DevicePatch::default()
            };
            self.ctx
                .store
                .patch_device(id, &patch, now_ms(), Some(&fence))
                .await?;
        }
        self.run_owned(id, fence).await?;
        self.device(id).await
    }

    /// Stops the device's actor on this node without touching what is stored (its
    /// wish to run, its status): for a shard that moves to another node, whose run takes
    /// over from there.
    pub async fn hand_off(&self, id: &str) -> Result<(), FleetError> {
        self.stop_actor(id).await
    }

    /// Nudges the devices running here that have queued messages to send them: a message
    /// may have been accepted by a gateway while its owner was being replaced.
    pub async fn nudge_queued(&self) -> Result<(), FleetError> {
        for id in self.ctx.store.devices_with_queued(10_000).await? {
            if let Some(actor) = self.ctx.running.device(&id) {
                let _ = actor.cast(DeviceMsg::Drain);
            }
        }
        Ok(())
    }

    /// The devices with an actor on this node now.
    pub fn running_devices(&self) -> Vec<String> {
        self.ctx.running.device_ids()
    }

    /// Whether the device has an actor on this node now.
    pub fn is_running(&self, id: &str) -> bool {
        self.ctx.running.device(id).is_some()
    }

    /// Stops the device; it stays stopped across restarts until started.
    pub async fn stop_device(&self, id: &str) -> Result<DeviceRecord, FleetError> {
        let device = self.device(id).await?;
        let patch = DevicePatch {
            desired_running: Some(false),
            ..DevicePatch::default()
        };
        self.ctx
            .store
            .patch_device(id, &patch, now_ms(), None)
            .await?;
        self.stop_actor(id).await?;
        if matches!(
            device.status,
            DeviceStatus::LoggedOut | DeviceStatus::Failed
        ) {
            return self.device(id).await;
        }
        let current = self.device(id).await?;
        Ok(self
            .ctx
            .record_status(
                id,
                Some(current.status),
                DeviceStatus::Stopped,
                None,
                DevicePatch::default(),
                None,
            )
            .await?)
    }

    pub async fn restart_device(&self, id: &str) -> Result<DeviceRecord, FleetError> {
        self.device(id).await?;
        self.stop_actor(id).await?;
        self.start_device(id).await
    }

    /// Unlinks the device from its WhatsApp account: credentials wiped, `LOGGED_OUT`.
    pub async fn logout_device(&self, id: &str) -> Result<DeviceRecord, FleetError> {
        let device = self.device(id).await?;
        if let Some(actor) = self.ctx.running.device(id) {
            call(&actor, DeviceMsg::Logout).await?;
            return self.device(id).await;
        }
        if device.status == DeviceStatus::LoggedOut {
            return Ok(device);
        }
        if device.phone.is_none() {
            return Err(FleetError::WrongState {
                code: state_code::DEVICE_NOT_LINKED,
                message: format!("device {id} is not linked to a WhatsApp account"),
            });
        }
        self.ctx
            .vault
            .device(id, None)
            .clear()
            .await
            .map_err(vault_error)?;
        let patch = DevicePatch {
            phone: Some(None),
            desired_running: Some(false),
            ..DevicePatch::default()
        };
        Ok(self
            .ctx
            .record_status(
                id,
                Some(device.status),
                DeviceStatus::LoggedOut,
                Some("logged out by the operator".into()),
                patch,
                None,
            )
            .await?)
    }

    /// Logs out, wipes and deletes the device with its messages.
    pub async fn delete_device(&self, id: &str) -> Result<(), FleetError> {
        self.device(id).await?;
        self.stop_actor(id).await?;
        if !self.ctx.store.delete_device(id).await? {
            return Err(FleetError::DeviceNotFound(id.to_owned()));
        }
        self.ctx.bus.forget(id);
        Ok(())
    }

    /// The QR code on show; `WrongState` unless the device is in `SCAN_QR`.
    pub async fn qr(&self, id: &str) -> Result<QrCode, FleetError> {
        let device = self.device(id).await?;
        let qr = match self.ctx.running.device(id) {
            Some(actor) => call(&actor, DeviceMsg::GetQr).await?,
            None => None,
        };
        qr.ok_or_else(|| FleetError::WrongState {
            code: state_code::DEVICE_NOT_IN_SCAN_QR,
            message: format!(
                "device {id} is {}; a QR code exists only in SCAN_QR (start the device first)",
                device.status
            ),
        })
    }

    /// Asks for a pairing code for `phone`; the device must be in `SCAN_QR`.
    pub async fn pairing_code(&self, id: &str, phone: &str) -> Result<PairCode, FleetError> {
        let device = self.device(id).await?;
        let not_pairing = || FleetError::WrongState {
            code: state_code::DEVICE_NOT_IN_SCAN_QR,
            message: format!(
                "device {id} is {}; a pairing code needs SCAN_QR (start the device first)",
                device.status
            ),
        };
        let actor = self.ctx.running.device(id).ok_or_else(not_pairing)?;
        let phone = phone.to_owned();
        match call(&actor, move |reply| DeviceMsg::PairCode(phone, reply)).await? {
            Ok(code) => Ok(code),
            Err(LinkError::WrongState(_)) => Err(not_pairing()),
            Err(error) => Err(FleetError::WrongState {
                code: state_code::LINK_UNAVAILABLE,
                message: format!("the link could not give a pairing code: {error}"),
            }),
        }
    }

    /// Accepts a text message and nudges the device's actor, if it runs here, to send
    /// it. The device's rate limiter decides first: now, later (`not_before_ms`, the
    /// message's slot) or not at all ([`FleetError::RateLimited`]). A device that runs
    /// nowhere has no limiter here; its message is accepted without a slot (see
    /// [`accept_text`]) and gets one when its device drains it.
    pub async fn send_text(&self, device_id: &str, send: SendText) -> Result<Sent, FleetError> {
        let checked = match check_send(self.ctx.store.as_ref(), device_id, &send).await? {
            Checked::Replay(sent) => return Ok(sent),
            Checked::New(id) => id,
        };
        let limiter = match (
            self.ctx.running.limiter(device_id),
            self.ctx.running.device(device_id),
        ) {
            (Some(limiter), _) => limiter,
            (None, Some(actor)) => call(&actor, DeviceMsg::Limiter).await?,
            (None, None) => {
                return insert_queued(
                    self.ctx.store.as_ref(),
                    device_id,
                    checked,
                    send,
                    now_ms(),
                    None,
                )
                .await;
            }
        };
        let admission = call(&limiter, LimiterMsg::Admit).await??;
        if let Decision::Refused {
            retry_after_ms,
            reason,
        } = admission.decision
        {
            metrics::message_outcome("rate_limited");
            return Err(FleetError::RateLimited {
                code: reason.code(),
                message: refusal_message(reason, admission.level, retry_after_ms),
                retry_after_ms,
            });
        }
        let slot = admission.slot();
        let result = insert_queued(
            self.ctx.store.as_ref(),
            device_id,
            checked,
            send,
            admission.at_ms,
            slot,
        )
        .await;
        match &result {
            Ok(sent) if !sent.replayed => {
                if let Some(actor) = self.ctx.running.device(device_id) {
                    let _ = actor.cast(DeviceMsg::Drain);
                }
            }
            _ => {
                if let Some(slot) = slot {
                    let _ = limiter.cast(LimiterMsg::Release(slot));
                }
            }
        }
        result
    }

    /// The device's quota use: from its limiter when it runs here, else from the store.
    pub async fn limits(&self, device_id: &str) -> Result<LimitsView, FleetError> {
        let device = self.device(device_id).await?;
        if let Some(limiter) = self.ctx.running.limiter(device_id)
            && let Ok(view) = call(&limiter, LimiterMsg::Limits).await
        {
            return Ok(view?);
        }
        Ok(limits_from_store(&self.ctx, device_id, device.trust_level).await?)
    }

    /// Sets the device's trust level (an admin's decision); its limiter, if it runs
    /// here, uses the new level's quota from the next send.
    pub async fn set_trust_level(
        &self,
        device_id: &str,
        level: TrustLevel,
    ) -> Result<DeviceRecord, FleetError> {
        let before = self.device(device_id).await?;
        let patch = DevicePatch {
            trust_level: Some(level),
            ..DevicePatch::default()
        };
        let record = self
            .ctx
            .store
            .patch_device(device_id, &patch, now_ms(), None)
            .await?;
        if let Some(actor) = self.ctx.running.device(device_id) {
            let _ = actor.cast(DeviceMsg::SetLevel(level));
        }
        if before.trust_level != level {
            let mut data = serde_json::Map::new();
            data.insert("status".into(), record.status.as_str().into());
            data.insert("reason".into(), "trust_level_changed".into());
            data.insert("trust_level".into(), level.as_str().into());
            data.insert(
                "previous_trust_level".into(),
                before.trust_level.as_str().into(),
            );
            self.ctx
                .bus
                .publish(device_id, crate::events::EventKind::Status, data);
        }
        Ok(record)
    }

    /// The trust-level quota table in force on this node.
    pub fn quota_table(&self) -> QuotaTable {
        *self.ctx.quotas.current()
    }

    /// Checks and stores a new quota table, and applies it here at once (other nodes
    /// read it from the store within their settings refresh).
    pub async fn set_quota_table(&self, table: QuotaTable) -> Result<QuotaTable, FleetError> {
        store_quota_table(self.ctx.store.as_ref(), &table).await?;
        self.ctx.quotas.set(table);
        Ok(table)
    }

    /// Reads the quota table from the store now (what the periodic refresh does).
    pub async fn refresh_settings(&self) -> Result<(), FleetError> {
        let table = load_quota_table(self.ctx.store.as_ref()).await?;
        self.ctx.quotas.set(table);
        Ok(())
    }

    pub async fn message(
        &self,
        device_id: &str,
        message_id: &str,
    ) -> Result<MessageRecord, FleetError> {
        self.ctx
            .store
            .get_message(device_id, message_id)
            .await?
            .ok_or_else(|| FleetError::MessageNotFound(message_id.to_owned()))
    }

    /// Stops every device actor (not their desired state) and the supervisor.
    pub async fn shutdown(&self) {
        let _ = self
            .supervisor
            .stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(10)))
            .await;
    }

    async fn spawn(&self, id: &str, reset: bool, fence: Option<Fence>) -> Result<(), FleetError> {
        let device_id = id.to_owned();
        let result = ractor::call_t!(
            self.supervisor,
            |reply| SupervisorMsg::Start {
                device_id,
                reset,
                fence,
                reply
            },
            CALL_TIMEOUT.as_millis() as u64
        )
        .map_err(|e| FleetError::Internal(e.to_string()))?;
        result.map_err(FleetError::Internal)
    }

    async fn stop_actor(&self, id: &str) -> Result<(), FleetError> {
        let device_id = id.to_owned();
        ractor::call_t!(
            self.supervisor,
            |reply| SupervisorMsg::Stop { device_id, reply },
            CALL_TIMEOUT.as_millis() as u64
        )
        .map_err(|e| FleetError::Internal(e.to_string()))
    }
}

/// Stores a new device, `STOPPED`. It needs no node: any process with the store can
/// create (a gateway does, whatever the state of the device's future owner).
pub async fn create_device(store: &dyn Store, new: NewDevice) -> Result<DeviceRecord, FleetError> {
    let now = now_ms();
    let record = DeviceRecord {
        id: new.id,
        name: new.name,
        tenant: "default".into(),
        status: DeviceStatus::Stopped,
        status_reason: None,
        trust_level: new.trust_level,
        phone: None,
        webhook: new.webhook,
        desired_running: false,
        created_at_ms: now,
        updated_at_ms: now,
        last_connected_at_ms: None,
    };
    match store.create_device(&record).await {
        Ok(()) => Ok(record),
        Err(StoreError::Conflict { .. }) => Err(FleetError::DeviceExists(record.id)),
        Err(error) => Err(error.into()),
    }
}

/// Accepts a text message into the store's outbox as `queued`, without a rate-limit
/// slot: whichever node runs the device asks its limiter for one and sends it then.
/// Any process with the store can accept (a gateway does while the owner is being
/// replaced).
///
/// Accepted while the device is linked and running (`READY`, `STARTING`,
/// `DISCONNECTED`): it is sent when the device is READY. Refused with
/// `device_not_ready` otherwise (stopped, pairing, logged out, failed), because
/// nothing would send it. With an Idempotency-Key, a repeat returns the first
/// message whatever the device's state.
pub async fn accept_text(
    store: &dyn Store,
    device_id: &str,
    send: SendText,
) -> Result<Sent, FleetError> {
    match check_send(store, device_id, &send).await? {
        Checked::Replay(sent) => Ok(sent),
        Checked::New(id) => insert_queued(store, device_id, id, send, now_ms(), None).await,
    }
}

/// A send that passed [`check_send`]. Short-lived; boxing the replay buys nothing.
#[allow(clippy::large_enum_variant)]
enum Checked {
    /// A repeat of an earlier message (same Idempotency-Key).
    Replay(Sent),
    /// A new message, to be stored under this id.
    New(String),
}

/// The checks before a send: a repeat is answered with the first message; a new one
/// needs a device that is linked and running.
async fn check_send(
    store: &dyn Store,
    device_id: &str,
    send: &SendText,
) -> Result<Checked, FleetError> {
    let id = match &send.idempotency_key {
        Some(key) => idempotent_message_id(device_id, key),
        None => format!("msg_{}", uuid::Uuid::now_v7().simple()),
    };
    if send.idempotency_key.is_some()
        && let Some(existing) = store.get_message(device_id, &id).await?
    {
        return replay(existing, send).map(Checked::Replay);
    }
    let device = store
        .get_device(device_id)
        .await?
        .ok_or_else(|| FleetError::DeviceNotFound(device_id.to_owned()))?;
    let linked = device.phone.is_some() && device.desired_running;
    let sendable = matches!(
        device.status,
        DeviceStatus::Ready | DeviceStatus::Starting | DeviceStatus::Disconnected
    );
    if !(linked && sendable) {
        return Err(FleetError::WrongState {
            code: state_code::DEVICE_NOT_READY,
            message: format!(
                "device {device_id} is {}; messages are accepted only while it is linked and running (READY, STARTING or DISCONNECTED)",
                device.status
            ),
        });
    }
    Ok(Checked::New(id))
}

/// Stores a checked send as `queued`, created at `created_at_ms`, with its rate-limit
/// slot (`None`: none yet).
async fn insert_queued(
    store: &dyn Store,
    device_id: &str,
    id: String,
    send: SendText,
    created_at_ms: i64,
    not_before_ms: Option<i64>,
) -> Result<Sent, FleetError> {
    let message = MessageRecord {
        id,
        device_id: device_id.to_owned(),
        direction: Direction::Outbound,
        peer_phone: send.to_phone.clone(),
        text: send.text.clone(),
        status: MessageStatus::Queued,
        error: None,
        idempotency_key: send.idempotency_key.clone(),
        created_at_ms,
        not_before_ms,
        sent_at_ms: None,
        delivered_at_ms: None,
        read_at_ms: None,
        failed_at_ms: None,
    };
    match store.insert_message(&message).await {
        Ok(InsertOutcome::Inserted) => {}
        Ok(InsertOutcome::Existing(existing)) => return replay(existing, &send),
        Err(StoreError::Conflict { .. }) => {
            let existing = store
                .get_message(device_id, &message.id)
                .await?
                .ok_or_else(|| FleetError::MessageNotFound(message.id.clone()))?;
            return replay(existing, &send);
        }
        Err(error) => return Err(error.into()),
    }
    metrics::message_outcome("accepted");
    Ok(Sent {
        message,
        replayed: false,
    })
}

/// A sentence for a refused send.
fn refusal_message(
    reason: crate::limits::policy::Refusal,
    level: TrustLevel,
    retry_after_ms: i64,
) -> String {
    let seconds = (retry_after_ms + 999) / 1000;
    match reason {
        crate::limits::policy::Refusal::DailyQuota => format!(
            "the device has used its daily quota ({} level); sending is possible again in {seconds} s",
            level.as_str()
        ),
        crate::limits::policy::Refusal::InFlight => format!(
            "the device has too many messages waiting to be sent ({} level); retry in {seconds} s",
            level.as_str()
        ),
        crate::limits::policy::Refusal::Paused => {
            format!("sending is paused after WhatsApp restricted this number; retry in {seconds} s")
        }
    }
}

/// The quota table stored in the settings, or the defaults when none is stored.
pub async fn load_quota_table(store: &dyn Store) -> Result<QuotaTable, FleetError> {
    let Some(setting) = store.get_setting(TRUST_LEVELS_SETTING).await? else {
        return Ok(QuotaTable::default());
    };
    Ok(parse_quota_table(&setting.value).unwrap_or_else(|| {
        warn!("the stored trust-level table is unusable; using the defaults");
        QuotaTable::default()
    }))
}

/// A stored quota table, if it reads and holds together.
fn parse_quota_table(json: &str) -> Option<QuotaTable> {
    serde_json::from_str::<QuotaTable>(json)
        .ok()
        .filter(|table| table.check().is_ok())
}

/// Checks `table` and stores it as the cluster's quota table. Any process with the
/// store can (a gateway does); nodes pick it up within their settings refresh.
pub async fn store_quota_table(store: &dyn Store, table: &QuotaTable) -> Result<(), FleetError> {
    table
        .check()
        .map_err(|error| FleetError::Invalid(error.to_string()))?;
    let json = serde_json::to_string(table).map_err(|e| FleetError::Internal(e.to_string()))?;
    store
        .put_setting(TRUST_LEVELS_SETTING, &json, now_ms())
        .await?;
    Ok(())
}

/// Asks every running device, spread evenly over `trust_check_interval`, whether it has
/// earned promotion: one task per node, not a timer per device.
fn spawn_trust_checks(ctx: std::sync::Weak<NodeContext>) {
    tokio::spawn(async move {
        loop {
            let Some((every, devices)) = ctx.upgrade().map(|ctx| {
                let devices: Vec<ActorRef<DeviceMsg>> = ctx.running.devices();
                (ctx.config.trust_check_interval, devices)
            }) else {
                return;
            };
            if every.is_zero() {
                return;
            }
            if devices.is_empty() {
                tokio::time::sleep(every).await;
                continue;
            }
            let step = every / u32::try_from(devices.len()).unwrap_or(u32::MAX);
            for device in devices {
                tokio::time::sleep(step).await;
                let _ = device.cast(DeviceMsg::CheckTrust);
            }
        }
    });
}

/// Reads the quota table from the store every `settings_refresh` while the fleet lives,
/// so a change made through any gateway reaches every running device.
fn spawn_settings_refresh(ctx: std::sync::Weak<NodeContext>) {
    tokio::spawn(async move {
        let mut last_seen: Option<i64> = None;
        loop {
            let Some(every) = ctx.upgrade().map(|ctx| ctx.config.settings_refresh) else {
                return;
            };
            tokio::time::sleep(every.max(Duration::from_millis(50))).await;
            let Some(ctx) = ctx.upgrade() else {
                return;
            };
            match ctx.store.get_setting(TRUST_LEVELS_SETTING).await {
                Ok(Some(setting)) if last_seen != Some(setting.updated_at_ms) => {
                    last_seen = Some(setting.updated_at_ms);
                    match parse_quota_table(&setting.value) {
                        Some(table) => {
                            if ctx.quotas.set(table) {
                                info!("trust-level table changed; applied to every device");
                            }
                        }
                        None => warn!(
                            "the stored trust-level table is unusable; keeping the current one"
                        ),
                    }
                }
                Ok(_) => {}
                Err(error) => warn!(%error, "cannot read the trust-level table"),
            }
        }
    });
}

/// Calls a device actor with the fleet's timeout.
async fn call<M: ractor::Message, T: Send + 'static>(
    actor: &ActorRef<M>,
    msg: impl FnOnce(ractor::RpcReplyPort<T>) -> M,
) -> Result<T, FleetError> {
    match actor.call(msg, Some(CALL_TIMEOUT)).await {
        Ok(ractor::rpc::CallResult::Success(value)) => Ok(value),
        Ok(ractor::rpc::CallResult::Timeout) => Err(FleetError::Timeout),
        Ok(ractor::rpc::CallResult::SenderError) | Err(_) => Err(FleetError::WrongState {
            code: state_code::DEVICE_STOPPING,
            message: "the device stopped while handling the request; retry".into(),
        }),
    }
}

/// The message id an Idempotency-Key stands for: the same key on the same device is the
/// same message, which makes a repeat a lookup.
fn idempotent_message_id(device_id: &str, key: &str) -> String {
    let digest = Sha256::new()
        .chain_update(device_id.as_bytes())
        .chain_update([0u8])
        .chain_update(key.as_bytes())
        .finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("msg_{hex}")
}

fn replay(existing: MessageRecord, send: &SendText) -> Result<Sent, FleetError> {
    if existing.peer_phone != send.to_phone || existing.text != send.text {
        return Err(FleetError::IdempotencyKeyReused);
    }
    metrics::message_outcome("duplicate");
    Ok(Sent {
        message: existing,
        replayed: true,
    })
}

fn vault_error(error: crate::vault::VaultError) -> FleetError {
    match error {
        crate::vault::VaultError::Store(error) => FleetError::Store(error),
        other => {
            warn!(%other, "vault error");
            FleetError::Internal(other.to_string())
        }
    }
}
