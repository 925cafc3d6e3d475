//! Durable webhooks: every event a device's webhook wants is recorded in the store's
//! delivery log before it counts as emitted, and the node that owns the device delivers
//! it, signed, in event order, at least once, retrying on a Fibonacci schedule until it
//! is delivered or `dead`.
//!
//! # How an event travels
//! 1. [`Webhooks::record`] (called by [`NodeContext::emit`](crate::context::NodeContext::emit)
//!    before the event goes on the bus): if the device has a webhook that wants the
//!    event, it is appended to the log (`pending`) under a fresh event id, and the
//!    device's lane is woken.
//! 2. A lane (`lane.rs`) is one task per device with deliveries due on this node: it
//!    reads the device's due deliveries in event order and attempts the first; only
//!    when it is delivered or dead does the next go. A failed attempt is retried after
//!    `base_delay_ms × fib(n)` (capped); the lane sleeps until then.
//! 3. After a crash, a failover or a restart nothing is in memory that matters: the
//!    node that owns the device next finds its due deliveries in the store
//!    ([`Webhooks::resume`], called on start and by the cluster's reconcile pass) and
//!    goes on. A lane stops as soon as its node no longer owns the device.
//!
//! # Layout
//! - [`config`]: the webhook of a device (stored with it, secret sealed) and the
//!   target delivered to.
//! - [`settings`]: retry pacing, attempts and timeout (a shared store setting).
//! - [`sender`]: one signed POST, done safely (SSRF rule, timeouts, caps, pools).
//! - `lane`: the per-device delivery loop.

pub mod config;
mod lane;
pub mod sender;
pub mod settings;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::Notify;
use tracing::warn;

use self::config::{StoredWebhook, Target};
use self::sender::Sender;
use self::settings::WebhookSettings;
use crate::clock::now_ms;
use crate::events::EventKind;
use crate::metrics;
use crate::seal::Sealer;
use crate::seal::data_keys::{DataKey, DataKeys};
use crate::seal::text::Place;
use crate::store::{DeviceRecord, NewDelivery, Store, StoreError};

/// How long a device's webhook is trusted from memory before it is read again (a
/// change made through the device's owner applies at once; this bounds what a node that
/// missed it, e.g. after the device moved away and back, keeps using).
const TARGET_TTL: Duration = Duration::from_secs(30);
/// Deliveries a lane reads at once.
const LANE_BATCH: u32 = 64;

/// The event id of an event that is one fact however often it is told (see
/// [`NodeContext::emit_once`](crate::context::NodeContext::emit_once)): `evt_` and 128
/// bits of a hash of the device and `key`.
pub fn stable_event_id(device_id: &str, key: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"wafleet/webhook-event\0")
        .chain_update(device_id.as_bytes())
        .chain_update([0u8])
        .chain_update(key.as_bytes())
        .finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("evt_{hex}")
}

/// An event a device's webhook wants, before its data is known (see
/// [`Webhooks::plan`]).
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    device_id: String,
    tenant: Arc<str>,
    kind: EventKind,
}

impl Plan {
    /// The tenant whose data key seals the delivery's data.
    pub(crate) fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The delivery of the event with `data` (as on SSE: it gains `device_id`), under
    /// `event_id` (a fresh one if `None`), its data sealed with `key` (the tenant's).
    pub(crate) fn delivery(
        &self,
        key: &DataKey,
        mut data: Map<String, Value>,
        event_id: Option<String>,
    ) -> NewDelivery {
        data.insert("device_id".into(), Value::from(self.device_id.as_str()));
        let event_id = event_id.unwrap_or_else(|| format!("evt_{}", uuid::Uuid::now_v7().simple()));
        let data = key.seal(
            &Place::delivery(&self.device_id, &event_id),
            &Value::Object(data).to_string(),
        );
        NewDelivery {
            event_id,
            device_id: self.device_id.clone(),
            tenant: self.tenant.to_string(),
            event: self.kind.as_str().to_owned(),
            data: data.into_string(),
            created_at_ms: now_ms(),
        }
    }
}

/// Who owns which device, as the node's cluster role sees it: a lane delivers only
/// while its node owns the device.
pub type Ownership = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// A node's webhooks: the targets of its devices, the lanes delivering to them, the
/// live settings.
pub struct Webhooks {
    store: Arc<dyn Store>,
    /// The tenants' data keys (deliveries are sealed with them) and the master key
    /// (webhook secrets are sealed with it).
    keys: Arc<DataKeys>,
    sender: Sender,
    settings: RwLock<WebhookSettings>,
    targets: Mutex<HashMap<String, Cached>>,
    lanes: Mutex<HashMap<String, Arc<LaneSignal>>>,
    owns: RwLock<Ownership>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("settings", &self.settings())
            .field("sender", &self.sender)
            .finish_non_exhaustive()
    }
}

/// A device's webhook as last read, and when.
#[derive(Debug, Clone)]
struct Cached {
    target: Option<Arc<Target>>,
    tenant: Arc<str>,
    /// The record's `webhook` field it was made from.
    field: Option<String>,
    read_at: Instant,
}

/// How a lane is woken: a count of wakes (so a lane about to end sees one that came in
/// after its last read) and the notification itself.
#[derive(Debug, Default)]
pub(crate) struct LaneSignal {
    wakes: AtomicU64,
    notify: Notify,
}

impl Webhooks {
    /// `concurrency`: requests in flight at once from this node; `allow_private`:
    /// whether targets may be loopback or private addresses.
    pub fn new(
        store: Arc<dyn Store>,
        keys: Arc<DataKeys>,
        settings: WebhookSettings,
        concurrency: usize,
        allow_private: bool,
    ) -> Webhooks {
        Webhooks {
            store,
            keys,
            sender: Sender::new(concurrency, allow_private),
            settings: RwLock::new(settings),
            targets: Mutex::new(HashMap::new()),
            lanes: Mutex::new(HashMap::new()),
            owns: RwLock::new(Arc::new(|_: &str| true)),
        }
    }

    pub fn settings(&self) -> WebhookSettings {
        *self.settings.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies new settings to the next attempt of every lane; returns whether they
    /// changed.
    pub fn set_settings(&self, settings: WebhookSettings) -> bool {
        let mut current = self.settings.write().unwrap_or_else(|e| e.into_inner());
        let changed = *current != settings;
        *current = settings;
        changed
    }

    /// Whether targets may resolve to private addresses.
    pub fn allow_private(&self) -> bool {
        self.sender.allow_private()
    }

    pub fn sealer(&self) -> &Sealer {
        self.keys.master()
    }

    /// Sets who owns which device (a cluster node: the shards it holds).
    pub fn set_ownership(&self, owns: Ownership) {
        *self.owns.write().unwrap_or_else(|e| e.into_inner()) = owns;
    }

    fn owns(&self, device_id: &str) -> bool {
        let owns = self.owns.read().unwrap_or_else(|e| e.into_inner()).clone();
        owns(device_id)
    }

    /// Forgets what is known of the device's webhook: the next event reads it again.
    pub fn forget(&self, device_id: &str) {
        self.targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(device_id);
    }

    /// Remembers the device's webhook as just written by this node.
    pub(crate) fn remember(
        &self,
        device_id: &str,
        tenant: &str,
        stored: Option<&StoredWebhook>,
    ) -> Result<(), crate::api::FleetError> {
        let target = stored
            .map(|stored| stored.open(device_id, self.keys.master()).map(Arc::new))
            .transpose()?;
        self.targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                device_id.to_owned(),
                Cached {
                    target,
                    tenant: tenant.into(),
                    field: stored.map(StoredWebhook::to_field),
                    read_at: Instant::now(),
                },
            );
        Ok(())
    }

    /// Learns the device's webhook from a record this node just read or wrote (a status
    /// write returns the row), so that emitting its events needs no read of its own:
    /// only a webhook that changed is opened again.
    pub(crate) fn observe(&self, record: &DeviceRecord) {
        {
            let mut targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(cached) = targets.get_mut(&record.id)
                && cached.field.as_deref() == record.webhook.as_deref()
            {
                cached.read_at = Instant::now();
                return;
            }
        }
        self.learn(record);
    }

    /// Caches the webhook of `record` (none when it has none or it is unusable).
    fn learn(&self, record: &DeviceRecord) {
        let stored = match record.webhook.as_deref().map(StoredWebhook::parse) {
            None => None,
            Some(Ok(stored)) => Some(stored),
            Some(Err(error)) => {
                warn!(device_id = record.id, %error, "the device's stored webhook is unreadable");
                None
            }
        };
        let target = stored.as_ref().and_then(|stored| {
            stored
                .open(&record.id, self.keys.master())
                .map_err(|error| warn!(device_id = record.id, %error, "the device's webhook cannot be used"))
                .ok()
                .map(Arc::new)
        });
        self.targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                record.id.clone(),
                Cached {
                    target,
                    tenant: record.tenant.as_str().into(),
                    field: record.webhook.clone(),
                    read_at: Instant::now(),
                },
            );
    }

    /// The device's webhook target and tenant, from memory or the store; `None` for a
    /// device without a webhook (or without a record).
    async fn target(&self, device_id: &str) -> Result<Option<(Arc<Target>, Arc<str>)>, StoreError> {
        if let Some(cached) = self
            .targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(device_id)
            .filter(|cached| cached.read_at.elapsed() < TARGET_TTL)
        {
            return Ok(cached.target.clone().map(|t| (t, cached.tenant.clone())));
        }
        let Some(device) = self.store.get_device(device_id).await? else {
            return Ok(None);
        };
        self.learn(&device);
        Ok(self
            .targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(device_id)
            .and_then(|cached| cached.target.clone().map(|t| (t, cached.tenant.clone()))))
    }

    /// What to append for an event of `kind` of the device, when this node knows (from
    /// memory, fresh) that the device's webhook wants it; `None` when it does not know
    /// or the webhook does not want it (the caller then emits as usual).
    pub(crate) fn plan(&self, device_id: &str, kind: EventKind) -> Option<Plan> {
        let targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        let cached = targets
            .get(device_id)
            .filter(|cached| cached.read_at.elapsed() < TARGET_TTL)?;
        let target = cached.target.as_ref()?;
        target.wants(kind).then(|| Plan {
            device_id: device_id.to_owned(),
            tenant: cached.tenant.clone(),
            kind,
        })
    }

    /// Records the event in the delivery log if the device's webhook wants it, and
    /// wakes the device's lane. A failure is logged and counted: the event then reaches
    /// SSE but not the webhook.
    pub(crate) async fn record(
        self: &Arc<Self>,
        device_id: &str,
        kind: EventKind,
        data: &Map<String, Value>,
        event_id: Option<String>,
    ) {
        let wanted = match self.target(device_id).await {
            Ok(Some((target, tenant))) if target.wants(kind) => tenant,
            Ok(_) => return,
            Err(error) => {
                metrics::webhook_event_unrecorded();
                warn!(device_id, event = kind.as_str(), %error, "cannot read the device's webhook; event not recorded for it");
                return;
            }
        };
        let key = match self.keys.current(&wanted).await {
            Ok(key) => key,
            Err(error) => {
                metrics::webhook_event_unrecorded();
                warn!(device_id, event = kind.as_str(), %error, "cannot read the tenant's data key; event not recorded for the webhook");
                return;
            }
        };
        let plan = Plan {
            device_id: device_id.to_owned(),
            tenant: wanted,
            kind,
        };
        let delivery = plan.delivery(&key, data.clone(), event_id);
        match self.store.append_delivery(&delivery).await {
            Ok(()) => self.wake(device_id),
            Err(error) => {
                metrics::webhook_event_unrecorded();
                warn!(device_id, event = kind.as_str(), %error, "cannot record the event for the webhook");
            }
        }
    }

    /// Starts the device's lane, or wakes it if it runs (it reads the log again: a new
    /// event, or a replay).
    pub fn wake(self: &Arc<Self>, device_id: &str) {
        self.start_lane(device_id, true);
    }

    /// Starts the device's lane if it has none; wakes a running one only if `wake`.
    fn start_lane(self: &Arc<Self>, device_id: &str, wake: bool) {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(signal) = lanes.get(device_id) {
            if wake {
                signal.wakes.fetch_add(1, Ordering::SeqCst);
                signal.notify.notify_one();
            }
            return;
        }
        let signal = Arc::new(LaneSignal::default());
        lanes.insert(device_id.to_owned(), signal.clone());
        drop(lanes);
        tokio::spawn(lane::run(self.clone(), device_id.to_owned(), signal));
    }

    /// Starts a lane for every device of these shards with deliveries due and no lane
    /// here (after a start, a takeover, or as the reconcile pass's safety net). A lane
    /// that runs is left alone: one waiting out a long retry is not woken to read the
    /// log again every reconcile pass.
    pub async fn resume(self: &Arc<Self>, shards: &[u32]) -> Result<usize, StoreError> {
        let devices = self
            .store
            .devices_with_due_deliveries(shards, 100_000)
            .await?;
        let count = devices.len();
        for id in devices {
            if self.owns(&id) {
                self.start_lane(&id, false);
            }
        }
        Ok(count)
    }

    /// Ends the lane's entry if no wake came since `seen`; `false` when one did (the
    /// lane must read again).
    fn end_lane(&self, device_id: &str, signal: &Arc<LaneSignal>, seen: u64) -> bool {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        if signal.wakes.load(Ordering::SeqCst) != seen {
            return false;
        }
        if lanes
            .get(device_id)
            .is_some_and(|current| Arc::ptr_eq(current, signal))
        {
            lanes.remove(device_id);
        }
        true
    }

    /// Devices with a lane on this node now.
    pub fn lanes(&self) -> usize {
        self.lanes.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}
