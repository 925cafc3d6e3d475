//! [`Fleet`]: the devices of one node. Commands run through [`Fleet::execute`]
//! (`execute.rs`, one arm per operation); reads go through its [`Catalog`]; what the
//! fleet runs in the background is in `background.rs`; the operations that wait on a
//! READY device's network: number checks in `link_requests.rs`, marking a chat read in
//! `chat_read.rs`, group operations in `groups.rs`, and the subjects of the devices'
//! groups that a chat list shows, remembered, in `group_subjects.rs`.
//!
//! A message is in the store, `queued`, before a send returns (see [`crate::outbox`]),
//! so nothing accepted is lost if the process dies.
//!
//! Devices started through commands without a fence (and resumed by [`Fleet::start`])
//! run unfenced: that is standalone, the only writer of its data. A cluster node runs
//! the devices of the shards it leases with [`Fleet::run_owned`], under the lease's
//! fence. Operator writes (start/stop wishes, an operator logout of a device that is
//! not running) are not tied to a lease and stay unfenced.

mod background;
mod chat_read;
mod execute;
mod group_subjects;
mod groups;
mod job_runner;
mod link_requests;
mod webhooks;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorRef};
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::api::{FleetError, state_code};
use crate::catalog::Catalog;
use crate::census::Census;
use crate::clock::Clock;
use crate::context::{NodeConfig, NodeContext, Quotas};
use crate::device::DeviceMsg;
use crate::device::supervisor::{DeviceSupervisor, SupervisorMsg};
use crate::events::EventBus;
use crate::link::LinkFactory;
use crate::media::{MediaLibrary, NoMediaStore};
use crate::metrics;
use crate::seal::Sealer;
use crate::seal::data_keys::DataKeys;
use crate::seal::key_check::{self, KeyCheckError};
use crate::settings;
use crate::store::{DevicePatch, DeviceQuery, DeviceStatus, Fence, Store};
use crate::vault::Vault;
use crate::webhooks::Webhooks;
use group_subjects::GroupSubjects;

/// How long a call into a device actor may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Handle to a node's devices. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Fleet {
    ctx: Arc<NodeContext>,
    /// Reads and owner-free writes, over the same store.
    catalog: Catalog,
    supervisor: ActorRef<SupervisorMsg>,
    /// The subjects of the running devices' groups, as group replies named them (what a
    /// chat list shows as a group chat's name).
    subjects: Arc<GroupSubjects>,
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
        // Before anything opens a credential: a wrong key would wipe them all.
        key_check::verify(store.as_ref(), &sealer)
            .await
            .map_err(|error| match error {
                KeyCheckError::Store(error) => FleetError::Store(error),
                other => FleetError::Invalid(other.to_string()),
            })?;
        let store_for_quotas = store.clone();
        let keys = Arc::new(DataKeys::new(store.clone(), sealer.clone()));
        let webhooks = Arc::new(Webhooks::new(
            store.clone(),
            keys.clone(),
            settings::load(store.as_ref()).await?,
            config.webhooks.concurrency,
            config.webhooks.allow_private_targets,
        ));
        let media = Arc::new(
            MediaLibrary::new(
                config
                    .media
                    .clone()
                    .unwrap_or_else(|| Arc::new(NoMediaStore)),
                keys.clone(),
                config.media_limits.clone(),
            )
            .allowing_private_urls(config.media_allow_private_urls),
        );
        let ctx = Arc::new(NodeContext {
            media,
            connect_gate: Arc::new(Semaphore::new(config.connect_concurrency.max(1))),
            config,
            webhooks,
            vault: Vault::new(store.clone(), sealer),
            keys,
            store,
            bus,
            links,
            running: Default::default(),
            quotas: Quotas::new(settings::load(store_for_quotas.as_ref()).await?),
            clock: Clock::system(),
            census: Census::default(),
            tenants: Default::default(),
        });
        background::spawn_settings_refresh(Arc::downgrade(&ctx));
        background::spawn_trust_checks(Arc::downgrade(&ctx));
        let (supervisor, _) = Actor::spawn(None, DeviceSupervisor, ctx.clone())
            .await
            .map_err(|e| FleetError::Internal(e.to_string()))?;
        let catalog = Catalog::new(ctx.store.clone(), ctx.keys.clone());
        let fleet = Fleet {
            ctx,
            catalog,
            supervisor,
            subjects: Arc::default(),
        };
        if fleet.ctx.config.resume_all {
            fleet.resume().await?;
            let every_shard: Vec<u32> = (0..fleet.ctx.store.shards()).collect();
            let lanes = fleet.resume_webhooks(&every_shard).await?;
            if lanes > 0 {
                info!(devices = lanes, "delivering the webhook events left due");
            }
        }
        background::spawn_delivery_pruning(Arc::downgrade(&fleet.ctx));
        fleet.spawn_job_runner();
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

    /// Reads and owner-free writes over this node's store.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn bus(&self) -> &EventBus {
        &self.ctx.bus
    }

    /// The media files this fleet's devices send and receive.
    pub fn media(&self) -> &Arc<MediaLibrary> {
        &self.ctx.media
    }

    pub fn node_name(&self) -> &str {
        &self.ctx.config.node_name
    }

    /// Refreshes the gauges computed when metrics are scraped: the devices hosted here
    /// by status, the recoveries under way, and the cluster's devices by status (from
    /// the store, counted at most once a second: see [`Catalog::recent_census`]).
    pub async fn refresh_metrics(&self) -> Result<(), FleetError> {
        let running: std::collections::HashSet<String> =
            self.running_devices().into_iter().collect();
        let snapshot = self.ctx.census.snapshot(&running, Instant::now());
        metrics::set_hosted_counts(self.node_name(), &snapshot.by_status);
        metrics::recoveries_pending(snapshot.pending, snapshot.oldest_pending);
        for _ in 0..snapshot.abandoned {
            metrics::recovery_finished("abandoned", None);
        }
        let counts = self.catalog.recent_census().await?;
        metrics::set_device_counts(&counts);
        match self.ctx.store.delivery_backlog().await {
            Ok(backlog) => metrics::set_webhook_backlog(&backlog, crate::clock::now_ms()),
            Err(error) => tracing::debug!(%error, "cannot count the webhook backlog"),
        }
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

    /// Runs a device of a shard this node leases, under the lease's `fence`: its
    /// credentials, link state and status are written with it, so the run stops by
    /// itself (without writing) once another node has taken the shard over. Running it
    /// already under the same fence is a no-op; under another fence, the run is
    /// replaced. Does not change the device's `desired_running`.
    pub async fn run_owned(&self, id: &str, fence: Fence) -> Result<(), FleetError> {
        self.catalog.device(id).await?;
        self.spawn(id, true, Some(fence)).await
    }

    /// Runs a device of a shard this node leases under the lease's `fence` unless it
    /// runs under it already, waits out a crash backoff or was given up after too many
    /// crashes (the reconcile pass: it neither resets crash counts nor reads first).
    pub async fn ensure_owned(&self, id: &str, fence: Fence) -> Result<(), FleetError> {
        self.spawn(id, false, Some(fence)).await
    }

    /// Stops the device's actor on this node without touching what is stored (its
    /// wish to run, its status): for a shard that moves to another node, whose run takes
    /// over from there.
    pub async fn hand_off(&self, id: &str) -> Result<(), FleetError> {
        self.stop_actor(id).await
    }

    /// Nudges the devices of these shards running here that have queued or scheduled
    /// messages to send them (and to read their schedule): a message may have been
    /// accepted by a gateway while its owner was being replaced.
    pub async fn nudge_queued(&self, shards: &[u32]) -> Result<(), FleetError> {
        for id in self.ctx.store.devices_with_queued(shards, 10_000).await? {
            if let Some(actor) = self.ctx.running.device(&id) {
                let _ = actor.cast(DeviceMsg::Drain);
                let _ = actor.cast(DeviceMsg::CheckSchedule);
            }
        }
        Ok(())
    }

    /// The devices with an actor on this node now.
    pub fn running_devices(&self) -> Vec<String> {
        self.ctx.running.device_ids()
    }

    /// How many devices have an actor on this node now (as heartbeats and
    /// `GET /v1/cluster` say it: saturated at `u32::MAX`).
    pub fn running_count(&self) -> u32 {
        u32::try_from(self.ctx.running.count()).unwrap_or(u32::MAX)
    }

    /// Whether the device has an actor on this node now.
    pub fn is_running(&self, id: &str) -> bool {
        self.ctx.running.device(id).is_some()
    }

    /// Stops every device actor (not their desired state) and the supervisor.
    pub async fn shutdown(&self) {
        let _ = self
            .supervisor
            .stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(10)))
            .await;
    }

    async fn spawn(&self, id: &str, reset: bool, fence: Option<Fence>) -> Result<(), FleetError> {
        // A run reads the device's webhook afresh (it may have changed on another node).
        self.ctx.webhooks.forget(id);
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

pub(crate) fn vault_error(error: crate::vault::VaultError) -> FleetError {
    match error {
        crate::vault::VaultError::Store(error) => FleetError::Store(error),
        other => {
            warn!(%other, "vault error");
            FleetError::Internal(other.to_string())
        }
    }
}

/// Calls a device actor with the fleet's timeout.
pub(crate) async fn call<M: ractor::Message, T: Send + 'static>(
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
