//! What every actor of a node shares: the store, the vault, the event bus, the link
//! factory, the connect gate, the registry of running devices, and timings.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use wafleet_cluster_config::{MediaLimits, QuotaTable};

use crate::census::Census;
use crate::clock::{Clock, now_ms};
use crate::device::registry::Running;
use crate::events::{EventBus, EventKind};
use crate::link::LinkFactory;
use crate::media::{MediaLibrary, MediaStore};
use crate::seal::data_keys::DataKeys;
use crate::store::{
    DeliveryOf, DevicePatch, DeviceRecord, DeviceStatus, Fence, RunStart, Store, StoreError,
};
use crate::vault::Vault;
use crate::webhooks::Webhooks;

/// Timings and limits of a node's devices.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's name, shown as a device's `node`.
    pub node_name: String,
    /// At most this many devices connect (handshake) at once, so that a restart or a
    /// failover never becomes a reconnect storm.
    pub connect_concurrency: usize,
    /// Random delay, up to this, before a device that resumes or reconnects dials.
    pub connect_jitter: Duration,
    /// A connection attempt (dial + handshake) that takes longer is abandoned.
    pub handshake_timeout: Duration,
    /// First reconnect delay after a disconnect; doubles per failure up to `reconnect_max`.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Crashes in a row after which a device is left `FAILED`.
    pub max_crashes: u32,
    /// First restart delay after a crash; doubles per crash up to `reconnect_max`.
    pub crash_backoff: Duration,
    /// Outbound messages handed to a link before its `sent` receipts come back.
    pub max_in_flight: usize,
    /// Whether [`Fleet::start`](crate::Fleet::start) resumes every device wanted running
    /// (standalone). A cluster node runs only the devices of the shards it leases.
    pub resume_all: bool,
    /// A NEWCOMER linked this long, active and not banned meanwhile, becomes TRUSTED.
    pub promote_after: Duration,
    /// How often a running device checks whether it has earned promotion.
    pub trust_check_interval: Duration,
    /// Added to the quota's minimum gap when a message is handed to the link, measured
    /// from the previous hand-off: sends are planned by slot, and this guard keeps two
    /// arrivals at least the gap apart even when one hand-off ran late or the network
    /// delayed the earlier message a little.
    pub handoff_guard: Duration,
    /// How often the node reads the trust-level table from the store (a change made
    /// through any gateway applies on every node within this).
    pub settings_refresh: Duration,
    /// How the node sends webhook deliveries (`[webhooks]`).
    pub webhooks: wafleet_cluster_config::WebhooksSection,
    /// Where media files are kept (`[media]`): uploads sent and media received. `None`:
    /// nowhere, and every media operation fails saying so (tests that need none).
    pub media: Option<Arc<dyn MediaStore>>,
    /// The size limit of each media type (`[media.limits]`).
    pub media_limits: MediaLimits,
    /// Whether media URLs may point at private addresses (`media.allow_private_urls`).
    pub media_allow_private_urls: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            node_name: "standalone".into(),
            connect_concurrency: 128,
            connect_jitter: Duration::from_millis(200),
            handshake_timeout: Duration::from_secs(20),
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(30),
            max_crashes: 5,
            crash_backoff: Duration::from_millis(500),
            max_in_flight: 256,
            resume_all: true,
            promote_after: Duration::from_secs(7 * 24 * 3600),
            trust_check_interval: Duration::from_secs(3600),
            handoff_guard: Duration::from_millis(25),
            settings_refresh: Duration::from_secs(1),
            webhooks: wafleet_cluster_config::WebhooksSection::default(),
            media: None,
            media_limits: MediaLimits::default(),
            media_allow_private_urls: false,
        }
    }
}

/// The trust-level quota table every limiter of the node reads at each decision;
/// replaced whole when an admin changes it, so a change applies to the next send of
/// every running device.
#[derive(Debug, Clone, Default)]
pub struct Quotas(Arc<RwLock<Arc<QuotaTable>>>);

impl Quotas {
    pub fn new(table: QuotaTable) -> Quotas {
        Quotas(Arc::new(RwLock::new(Arc::new(table))))
    }

    /// The table now.
    pub fn current(&self) -> Arc<QuotaTable> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the table; returns whether it changed.
    pub fn set(&self, table: QuotaTable) -> bool {
        let mut current = self.0.write().unwrap_or_else(|e| e.into_inner());
        if **current == table {
            return false;
        }
        *current = Arc::new(table);
        true
    }
}

/// Shared by the fleet, the supervisor and every device actor.
#[derive(Debug)]
pub struct NodeContext {
    pub(crate) config: NodeConfig,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) vault: Vault,
    /// The tenants' data keys: message texts and event payloads are sealed with them.
    pub(crate) keys: Arc<DataKeys>,
    pub(crate) bus: EventBus,
    pub(crate) links: Arc<dyn LinkFactory>,
    pub(crate) connect_gate: Arc<Semaphore>,
    /// The actors of the devices running here and their limiters; written only by the
    /// actors that spawn them (see `device::registry`).
    pub(crate) running: Running,
    pub(crate) quotas: Quotas,
    pub(crate) clock: Clock,
    /// What the metrics know of the devices hosted here (statuses, recoveries).
    pub(crate) census: Census,
    /// The webhooks of the devices owned here: every emitted event passes through them.
    pub(crate) webhooks: Arc<Webhooks>,
    /// The tenant of each device seen here, which every event names.
    pub(crate) tenants: crate::device::tenants::DeviceTenants,
    /// Media files: sent by the devices' links, stored as they arrive.
    pub(crate) media: Arc<MediaLibrary>,
}

impl NodeContext {
    /// Emits an event of a device: recorded in the webhook delivery log first when the
    /// device's webhook wants it, then published on the bus (SSE).
    pub(crate) async fn emit(
        &self,
        device_id: &str,
        kind: EventKind,
        mut data: Map<String, Value>,
    ) {
        self.name_tenant(device_id, &mut data).await;
        self.webhooks.record(device_id, kind, &data, None).await;
        self.bus.publish(device_id, kind, data);
    }

    /// [`NodeContext::emit`] for an event that is one fact however often it is told
    /// (a receipt, an inbound message): its webhook event id is derived from `key`, so
    /// recording it again ([`NodeContext::emit_recovered`]) adds nothing.
    pub(crate) async fn emit_once(
        &self,
        device_id: &str,
        kind: EventKind,
        mut data: Map<String, Value>,
        key: &str,
    ) {
        self.name_tenant(device_id, &mut data).await;
        self.emit_recovered(device_id, kind, &data, key).await;
        self.bus.publish(device_id, kind, data);
    }

    /// Adds `tenant` to an event's data (unless it names one already), so that
    /// tenant-scoped streams can tell whose it is; an event whose device's tenant cannot
    /// be told goes without, and only operators' streams carry it.
    async fn name_tenant(&self, device_id: &str, data: &mut Map<String, Value>) {
        if data.contains_key("tenant") {
            return;
        }
        if let Some(tenant) = self.tenants.of(device_id, self.store.as_ref()).await {
            data.insert("tenant".into(), Value::from(&*tenant));
        }
    }

    /// Records again for the webhook an event emitted before with
    /// [`NodeContext::emit_once`] (the process may have died before it was recorded);
    /// nothing is published: SSE saw it then.
    pub(crate) async fn emit_recovered(
        &self,
        device_id: &str,
        kind: EventKind,
        data: &Map<String, Value>,
        key: &str,
    ) {
        let event_id = crate::webhooks::stable_event_id(device_id, key);
        if data.contains_key("tenant") {
            self.webhooks
                .record(device_id, kind, data, Some(event_id))
                .await;
        } else {
            let mut data = data.clone();
            self.name_tenant(device_id, &mut data).await;
            self.webhooks
                .record(device_id, kind, &data, Some(event_id))
                .await;
        }
    }

    /// Writes a status change (with any other fields in `patch`) under `fence` (the
    /// device owner's, `None` for unfenced writes) and publishes the `status` event.
    /// A fenced-off write publishes nothing.
    pub(crate) async fn record_status(
        &self,
        device_id: &str,
        previous: Option<DeviceStatus>,
        status: DeviceStatus,
        reason: Option<String>,
        mut patch: DevicePatch,
        fence: Option<&Fence>,
    ) -> Result<DeviceRecord, StoreError> {
        patch.status = Some(status);
        patch.status_reason = Some(reason.clone());
        // When this node knows the device's webhook wants status events, the event is
        // appended with the status write, in one store write: a crash cannot keep one
        // without the other.
        let Some(plan) = self.webhooks.plan(device_id, EventKind::Status) else {
            let record = self
                .store
                .patch_device(device_id, &patch, now_ms(), fence)
                .await?;
            self.status_recorded(device_id, previous, status, reason, &record)
                .await;
            return Ok(record);
        };
        let key = self.keys.current(plan.tenant()).await?;
        let node = self.config.node_name.clone();
        let event_reason = reason.clone();
        let then: DeliveryOf = Box::new(move |record: &DeviceRecord| {
            let data = status_data(previous, status, event_reason, record, &node);
            Some(plan.delivery(&key, data, None))
        });
        let record = self
            .store
            .patch_device_recording(device_id, &patch, now_ms(), fence, then)
            .await?;
        self.webhooks.wake(device_id);
        self.status_settled(device_id, status, &record);
        let data = status_data(previous, status, reason, &record, &self.config.node_name);
        self.bus.publish(device_id, EventKind::Status, data);
        Ok(record)
    }

    /// The first write of a device's run: `STARTING` under `fence`, published like
    /// [`NodeContext::record_status`], in one store call that also says whether the
    /// device has queued messages (see [`Store::begin_run`]). `None`: no such device.
    pub(crate) async fn begin_run(
        &self,
        device_id: &str,
        fence: Option<&Fence>,
    ) -> Result<Option<RunStart>, StoreError> {
        let status = DeviceStatus::Starting;
        let patch = DevicePatch {
            status: Some(status),
            status_reason: Some(None),
            ..DevicePatch::default()
        };
        let start = self
            .store
            .begin_run(device_id, &patch, now_ms(), fence)
            .await?;
        if let Some(start) = &start {
            self.status_recorded(device_id, Some(start.previous), status, None, &start.record)
                .await;
        }
        Ok(start)
    }

    /// After a status write: the census, and the `status` event.
    async fn status_recorded(
        &self,
        device_id: &str,
        previous: Option<DeviceStatus>,
        status: DeviceStatus,
        reason: Option<String>,
        record: &DeviceRecord,
    ) {
        self.status_settled(device_id, status, record);
        let data = status_data(previous, status, reason, record, &self.config.node_name);
        self.emit(device_id, EventKind::Status, data).await;
    }

    /// After a status write, before its event: the webhook known from the row, the
    /// census.
    fn status_settled(&self, device_id: &str, status: DeviceStatus, record: &DeviceRecord) {
        self.webhooks.observe(record);
        self.tenants.observe(record);
        if let Some(end) = self
            .census
            .status_recorded(device_id, status, std::time::Instant::now())
        {
            crate::metrics::recovery_finished(end.outcome, end.took);
        }
    }
}

/// The data of a `status` event, from the row the status write returned.
fn status_data(
    previous: Option<DeviceStatus>,
    status: DeviceStatus,
    reason: Option<String>,
    record: &DeviceRecord,
    node: &str,
) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("status".into(), Value::from(status.as_str()));
    if let Some(previous) = previous {
        data.insert("previous".into(), Value::from(previous.as_str()));
    }
    if let Some(reason) = reason {
        data.insert("reason".into(), Value::from(reason));
    }
    if let Some(phone) = &record.phone {
        data.insert("phone".into(), Value::from(phone.as_str()));
    }
    data.insert("node".into(), Value::from(node));
    data.insert("tenant".into(), Value::from(record.tenant.as_str()));
    data
}
