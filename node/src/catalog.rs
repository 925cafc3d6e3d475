//! [`Catalog`]: what any process with the store can do without the device's owner —
//! read devices, messages and settings, create a device, store the quota table. The
//! gateway (standalone or cluster) and the node use this one service; commands that
//! need the running device go to its owner instead ([`crate::api::DeviceCommand`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use wafleet_cluster_config::QuotaTable;

use crate::api::wire::command_trust_level;
use crate::api::{DeviceCommand, FleetError, NewDevice, Reply};
use crate::clock::now_ms;
use crate::seal::data_keys::DataKeys;
use crate::seal::text::Place;
use crate::store::{
    Chat, ChatQuery, DeliveryRecord, DeliveryStatus, DevicePage, DevicePatch, DeviceQuery,
    DeviceRecord, DeviceStatus, MessageQuery, MessageRecord, Store, StoreError, TrustLevel,
};
use crate::webhooks::config::{StoredWebhook, WebhookView};
use crate::webhooks::settings::WebhookSettings;
use crate::{outbox, settings};

/// How old the census that `/readyz` and `/metrics` report may be.
pub const CENSUS_MAX_AGE: Duration = Duration::from_secs(1);

/// Store-backed reads and owner-free writes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Catalog {
    store: Arc<dyn Store>,
    /// The tenants' data keys: message texts are stored sealed with them.
    keys: Arc<DataKeys>,
    /// The last census (devices by status) and when it was taken, shared by clones.
    census: Arc<Mutex<Option<(Instant, Census)>>>,
}

/// Devices by status, or why the store could not count them.
type Census = Result<Vec<(DeviceStatus, u64)>, String>;

impl Catalog {
    pub fn new(store: Arc<dyn Store>, keys: Arc<DataKeys>) -> Catalog {
        Catalog {
            store,
            keys,
            census: Arc::default(),
        }
    }

    /// The store behind it.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The tenants' contact books, over the same store.
    pub fn contacts(&self) -> crate::contacts::ContactBook {
        crate::contacts::ContactBook::new(self.store.clone())
    }

    /// The tenants' jobs, over the same store, sealed with the same keys.
    pub fn jobs(&self) -> crate::jobs::JobBook {
        crate::jobs::JobBook::new(self.store.clone(), self.keys.clone())
    }

    /// The tenants' message templates, over the same store, sealed with the same keys.
    pub fn templates(&self) -> crate::jobs::templates::TemplateBook {
        crate::jobs::templates::TemplateBook::new(self.store.clone(), self.keys.clone())
    }

    /// A cluster-wide setting as stored (the defaults if none).
    pub async fn setting<T: settings::StoredSetting>(&self) -> Result<T, FleetError> {
        settings::load(self.store.as_ref()).await
    }

    /// Checks and stores a cluster-wide setting (`FleetError::Invalid` if it does not
    /// hold together); nodes read it within their settings refresh.
    pub async fn set_setting<T: settings::StoredSetting>(&self, value: T) -> Result<T, FleetError> {
        settings::store(self.store.as_ref(), &value).await?;
        Ok(value)
    }

    /// Stores a new device, `STOPPED`. It needs no node: any process with the store can
    /// create (a gateway does, whatever the state of the device's future owner).
    pub async fn create_device(&self, new: NewDevice) -> Result<DeviceRecord, FleetError> {
        self.create_device_of(new, crate::access::DEFAULT_TENANT)
            .await
    }

    /// [`Catalog::create_device`] in `tenant` (the caller checked it may).
    pub async fn create_device_of(
        &self,
        new: NewDevice,
        tenant: &str,
    ) -> Result<DeviceRecord, FleetError> {
        let now = now_ms();
        let record = DeviceRecord {
            id: new.id,
            name: new.name,
            tenant: tenant.to_owned(),
            status: DeviceStatus::Stopped,
            status_reason: None,
            trust_level: new.trust_level,
            phone: None,
            webhook: None,
            desired_running: false,
            created_at_ms: now,
            updated_at_ms: now,
            last_connected_at_ms: None,
        };
        match self.store.create_device(&record).await {
            Ok(()) => Ok(record),
            Err(StoreError::Conflict { .. }) => Err(FleetError::DeviceExists(record.id)),
            Err(error) => Err(error.into()),
        }
    }

    /// One device; `DeviceNotFound` if there is none.
    pub async fn device(&self, id: &str) -> Result<DeviceRecord, FleetError> {
        self.store
            .get_device(id)
            .await?
            .ok_or_else(|| FleetError::DeviceNotFound(id.to_owned()))
    }

    /// One page of devices.
    pub async fn list_devices(&self, query: &DeviceQuery) -> Result<DevicePage, FleetError> {
        Ok(self.store.list_devices(query).await?)
    }

    /// Devices per status (statuses without devices may be absent).
    /// Devices by status, of one tenant when `tenant` is given.
    pub async fn count_devices(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<(DeviceStatus, u64)>, FleetError> {
        Ok(match tenant {
            None => self.store.count_devices_by_status().await?,
            Some(tenant) => self.store.count_tenant_devices_by_status(tenant).await?,
        })
    }

    /// The devices by status as counted at most [`CENSUS_MAX_AGE`] ago, for the
    /// unauthenticated `/readyz` and `/metrics`: however often they are asked, the
    /// store counts once a second at most (callers meanwhile wait for the one count
    /// under way). A failed count is kept as long, as `Unavailable`.
    pub async fn recent_census(&self) -> Result<Vec<(DeviceStatus, u64)>, FleetError> {
        let mut census = self.census.lock().await;
        let fresh = census
            .as_ref()
            .filter(|(taken, _)| taken.elapsed() < CENSUS_MAX_AGE)
            .map(|(_, counts)| counts.clone());
        let counts = match fresh {
            Some(counts) => counts,
            None => {
                let counts = self
                    .store
                    .count_devices_by_status()
                    .await
                    .map_err(|e| e.to_string());
                *census = Some((Instant::now(), counts.clone()));
                counts
            }
        };
        counts.map_err(|e| FleetError::Store(StoreError::Unavailable(e)))
    }

    /// One message of the device; `MessageNotFound` if there is none.
    pub async fn message(
        &self,
        device_id: &str,
        message_id: &str,
    ) -> Result<MessageRecord, FleetError> {
        let mut message = self
            .store
            .get_message(device_id, message_id)
            .await?
            .ok_or_else(|| FleetError::MessageNotFound(message_id.to_owned()))?;
        self.open_text(&mut message).await?;
        Ok(message)
    }

    /// A page of the device's message log (both directions, newest first), texts
    /// opened. `DeviceNotFound` if no device.
    pub async fn messages(
        &self,
        device_id: &str,
        query: &MessageQuery,
    ) -> Result<Vec<MessageRecord>, FleetError> {
        self.device(device_id).await?;
        let mut messages = self.store.list_messages(device_id, query).await?;
        for message in &mut messages {
            self.open_text(message).await?;
        }
        Ok(messages)
    }

    /// A page of the device's chats (one per peer, newest first), their last messages'
    /// texts opened. `DeviceNotFound` if no device.
    pub async fn chats(&self, device_id: &str, query: &ChatQuery) -> Result<Vec<Chat>, FleetError> {
        self.device(device_id).await?;
        let mut chats = self.store.list_chats(device_id, query).await?;
        for chat in &mut chats {
            self.open_text(&mut chat.last).await?;
        }
        Ok(chats)
    }

    /// Opens a stored message's text in place.
    async fn open_text(&self, message: &mut MessageRecord) -> Result<(), FleetError> {
        message.text = self
            .keys
            .open(
                &Place::message(&message.device_id, &message.id),
                &message.text,
            )
            .await?;
        Ok(())
    }

    /// The tenants' data keys.
    pub fn keys(&self) -> &Arc<DataKeys> {
        &self.keys
    }

    /// The device's webhook (never its secret); `None` when it has none.
    pub async fn webhook(&self, id: &str) -> Result<Option<WebhookView>, FleetError> {
        let device = self.device(id).await?;
        device
            .webhook
            .as_deref()
            .map(|field| StoredWebhook::parse(field).map(|stored| stored.view()))
            .transpose()
    }

    /// The device's webhook deliveries, newest first: only those in `status` when given,
    /// those before the `before_seq` cursor when given. `DeviceNotFound` if no device.
    pub async fn deliveries(
        &self,
        id: &str,
        status: Option<DeliveryStatus>,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, FleetError> {
        self.device(id).await?;
        Ok(self
            .store
            .list_deliveries(id, status, before_seq, limit)
            .await?)
    }

    /// The webhook retry settings stored for the cluster (the defaults if none).
    pub async fn webhook_settings(&self) -> Result<WebhookSettings, FleetError> {
        settings::load(self.store.as_ref()).await
    }

    /// Checks and stores the webhook retry settings; nodes apply them within their
    /// settings refresh (`DeviceApi::settings_changed` asks them to at once).
    pub async fn set_webhook_settings(
        &self,
        settings: WebhookSettings,
    ) -> Result<WebhookSettings, FleetError> {
        settings::store(self.store.as_ref(), &settings).await?;
        Ok(settings)
    }

    /// Deletes a device no node has run yet (a create whose webhook was refused);
    /// unfenced, like the create.
    pub async fn discard_new_device(&self, id: &str) -> Result<(), FleetError> {
        self.store.delete_device(id, None).await?;
        Ok(())
    }

    /// The quota table per trust level stored for the cluster (the defaults if none).
    pub async fn quota_table(&self) -> Result<QuotaTable, FleetError> {
        settings::load(self.store.as_ref()).await
    }

    /// Checks and stores a quota table. Running devices apply it once their node reads
    /// the settings again (`DeviceApi::settings_changed` asks them to at once).
    pub async fn set_quota_table(&self, table: QuotaTable) -> Result<QuotaTable, FleetError> {
        settings::store(self.store.as_ref(), &table).await?;
        Ok(table)
    }
}

impl Catalog {
    /// What `command` becomes when no node can run it now (the device's owner is being
    /// replaced, or cannot be reached and surely did not run it): a send is accepted
    /// into the outbox without a rate-limit slot (the next owner drains it when the
    /// device is READY, so a message is never refused for a move); a trust level is
    /// stored (the device's next run starts with it). `None` for every other command:
    /// it needs the running device.
    pub async fn without_owner(
        &self,
        id: &str,
        command: DeviceCommand,
    ) -> Option<Result<Reply, FleetError>> {
        match command {
            DeviceCommand::SendText(send) => Some(
                outbox::accept_text(self.store.as_ref(), &self.keys, id, send)
                    .await
                    .map(Reply::Sent),
            ),
            DeviceCommand::SetTrustLevel(set) => Some(
                async {
                    let level = command_trust_level(set.level)?;
                    let (_, record) = self.store_trust_level(id, level).await?;
                    Ok(Reply::Device(record))
                }
                .await,
            ),
            _ => None,
        }
    }

    /// Stores the device's trust level (unfenced: an admin's decision, not the
    /// owner's); gives the level it had and the record written. A running device is
    /// told by its node ([`crate::Fleet::set_trust_level`]).
    pub(crate) async fn store_trust_level(
        &self,
        id: &str,
        level: TrustLevel,
    ) -> Result<(TrustLevel, DeviceRecord), FleetError> {
        let before = self.device(id).await?;
        let patch = DevicePatch {
            trust_level: Some(level),
            ..DevicePatch::default()
        };
        let record = self.store.patch_device(id, &patch, now_ms(), None).await?;
        Ok((before.trust_level, record))
    }
}
