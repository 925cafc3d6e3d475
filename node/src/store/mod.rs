//! Durable state of the fleet behind one [`Store`] trait.
//!
//! Every backend (embedded SQLite, ScyllaDB for clusters) passes the same conformance
//! suite in [`conformance`]. Backends never see a secret in clear: credentials and link
//! state arrive already sealed ([`SealedBlob`], see [`crate::seal`]).
//!
//! # Layout
//! - [`record`]: the rows (devices, messages) and their enums.
//! - [`access`]: tenants, API keys and users (the directory), and the audit log.
//! - [`contact`]: each tenant's contact book (contacts by phone, their tags).
//! - [`lease`]: shard leases, fences, and the rules that grant, renew and release them.
//! - [`sqlite`]: the embedded backend (one SQLite file in WAL mode).
//! - [`scylla`]: the cluster backend (ScyllaDB, lightweight transactions for leases and
//!   fenced writes).
//! - [`conformance`]: the suite every backend must pass.
//! - [`metered`]: a wrapper that times every call and counts errors (metrics).

pub mod access;
pub mod conformance;
pub mod contact;
pub mod delivery;
pub mod job;
pub mod lease;
pub mod message_log;
pub mod metered;
pub mod record;
pub mod scylla;
pub mod sqlite;

use async_trait::async_trait;

pub use access::{AccessKind, AccessQuery, AccessRecord, AuditEntry, AuditQuery};
pub use contact::{ContactQuery, ContactRecord, ContactUpsert, TagCount, Upserted};
pub use delivery::{
    Attempt, AttemptOutcome, DeliveryBacklog, DeliveryRecord, DeliveryStatus, NewDelivery,
    ReplayWhich,
};
pub use job::{JobQuery, JobRecord, JobStatus, RecipientQuery, RecipientRecord, RecipientStatus};
pub use lease::{Acquired, Fence, Lease, LeaseSlot};
pub use message_log::{Chat, ChatKey, ChatQuery, LogKey, MessageQuery};
pub use metered::MeteredStore;
pub use record::{
    DeviceId, DevicePage, DevicePatch, DeviceQuery, DeviceRecord, DeviceStatus, Direction,
    MessageRecord, MessageStatus, TrustLevel,
};
pub use scylla::{ScyllaConfig, ScyllaStore};
pub use sqlite::SqliteStore;

/// A stored setting: its text and when it was last put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The document, as put (JSON by convention).
    pub value: String,
    /// When it was put, Unix milliseconds.
    pub updated_at_ms: i64,
}

/// An encrypted value as stored: the key version that sealed it and the AES-GCM
/// nonce + ciphertext (+ tag). Opaque to stores.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedBlob {
    /// Which master-key version sealed this blob, so the key can be rotated.
    pub key_version: u32,
    /// 12-byte nonce followed by the ciphertext and its 16-byte tag.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for SealedBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedBlob")
            .field("key_version", &self.key_version)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// What [`Store::insert_message`] did.
// Short-lived return value; boxing `Existing` would change the contract for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum InsertOutcome {
    /// The message is new and was stored.
    Inserted,
    /// A message with the same (device, idempotency key) already exists: this is it.
    Existing(MessageRecord),
}

/// A place in a device's queue: a message's `(queued_at, id)`, the queue's order, where
/// `queued_at` is when it entered the queue: its `created_at_ms` for a message accepted
/// `queued`, its `queued_at_ms` for a scheduled message that fell due. A scheduled
/// message thus takes its place behind everything queued before it fell due (whose
/// slots come before its own), never at the place of its creation, where it would
/// hold up the messages accepted in between.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct QueueKey {
    pub at_ms: i64,
    pub id: String,
}

impl QueueKey {
    /// The key of `message`.
    pub fn of(message: &MessageRecord) -> QueueKey {
        QueueKey {
            at_ms: queue_position(message),
            id: message.id.clone(),
        }
    }

    /// Whether `message` comes after this place in the queue.
    pub fn is_before(&self, message: &MessageRecord) -> bool {
        (self.at_ms, self.id.as_str()) < (queue_position(message), message.id.as_str())
    }
}

/// When `message` entered its device's queue (see [`QueueKey`]).
pub fn queue_position(message: &MessageRecord) -> i64 {
    message.queued_at_ms.unwrap_or(message.created_at_ms)
}

/// What [`Store::patch_device_recording`] appends for the row it wrote (`None`: nothing).
pub type DeliveryOf = Box<dyn FnOnce(&DeviceRecord) -> Option<NewDelivery> + Send>;

/// A condition on a device, checked by [`Store::insert_message_if`] with the insert.
pub type DeviceRule = fn(&DeviceRecord) -> bool;

/// What [`Store::insert_message_if`] did.
// Short-lived, like `InsertOutcome` inside it.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum GuardedInsert {
    /// The device met the rule; what the insert did.
    Done(InsertOutcome),
    /// The device did not meet the rule (here it is, as read): nothing was written.
    Refused(Box<DeviceRecord>),
}

/// What [`Store::begin_run`] found and wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct RunStart {
    /// The device's status before the write.
    pub previous: DeviceStatus,
    /// The device after the write.
    pub record: DeviceRecord,
    /// Whether any of the device's outbound messages was `queued` at the write.
    pub queued: bool,
}

/// Failures of a store. `Unavailable` is worth a retry; the rest are not.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} already exists")]
    Conflict { what: String },
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store data is invalid: {0}")]
    Corrupt(String),
    /// The store refuses to be opened with this configuration (for instance a shard
    /// count other than the one its devices were placed with). Only opening a store
    /// returns it.
    #[error("store refuses this configuration: {0}")]
    Misconfigured(String),
    /// A fenced write whose epoch is not the shard's current one: the writer no longer
    /// owns the shard (it must stop serving its devices). Nothing was written.
    #[error("write fenced off: shard {shard} epoch {epoch} is not current (current: {current:?})")]
    Fenced {
        shard: u32,
        epoch: u64,
        /// The epoch of the shard's held lease; `None` if nobody holds it.
        current: Option<u64>,
    },
}

/// The durable state of the fleet. All methods are safe to call concurrently, from
/// several tasks and (for a shared backend) several processes.
///
/// # Ownership and fencing
///
/// A node serves the devices of a shard only while it holds the shard's [`Lease`].
/// Each grant of a shard to a node that did not hold it live takes a new, higher
/// epoch. Writes that only the owner of a device may make carry a [`Fence`] (shard +
/// epoch): the store checks, atomically with the write, that the shard is held under
/// exactly that epoch, and otherwise refuses with [`StoreError::Fenced`] and writes
/// nothing. A node whose lease was taken over therefore cannot overwrite the new
/// owner's state, however late its writes arrive. Expiry alone does not fence (the store
/// has no clock): a holder must stop serving when it cannot renew, and the next grant's
/// epoch fences whatever it still writes. A fence names its shard: the store does not
/// check that the device belongs to it (the caller computes placement).
///
/// # Shards
///
/// A store is opened with the cluster's shard count S (`cluster.shards`), records it the
/// first time, and refuses to be opened with another one ([`StoreError::Misconfigured`]):
/// processes that disagree on S put a device in different shards, so two nodes would
/// both own it. The store keeps each device's shard, `shard_of(id, S)`, so that
/// [`Store::wanted_devices_in_shards`] reads only the devices of the shards asked for.
///
/// Fenced, when the caller passes `Some(fence)`: the device's credentials and link
/// state ([`Store::put_link_state`], [`Store::delete_link_state`],
/// [`Store::clear_link_state`]), device patches ([`Store::patch_device`]) and deletes
/// ([`Store::delete_device`]), because a stale owner's status write ("STOPPED,
/// replaced", `desired_running = false`) would undo the new owner's. Not fenced: message writes. Inserts are idempotent by id and
/// `advance_message` only moves forward, so a stale owner's insert or receipt is a true
/// fact that cannot undo the owner's work, and fencing it would drop receipts and refuse
/// `202`s during a handoff.
///
/// `None` means unfenced: the write is accepted whatever the leases say. It is for
/// processes where no cluster runs (standalone, which holds no leases and is the only
/// writer of its data folder) and for operator actions that are not tied to a
/// connection (start/stop, deleting a device). A node of a cluster passes the fence of
/// the device's shard on every device-owner write.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    // ---- devices ----

    /// Stores a new device. `Conflict` if the id exists.
    async fn create_device(&self, device: &DeviceRecord) -> Result<(), StoreError>;
    /// One device, or `None`.
    async fn get_device(&self, id: &str) -> Result<Option<DeviceRecord>, StoreError>;
    /// Applies the fields that are `Some` in `patch` and sets `updated_at_ms`;
    /// returns the updated row. `Fenced` if `fence` is not current (checked first);
    /// `NotFound` if there is no such device.
    async fn patch_device(
        &self,
        id: &str,
        patch: &DevicePatch,
        now_ms: i64,
        fence: Option<&Fence>,
    ) -> Result<DeviceRecord, StoreError>;
    /// [`Store::patch_device`], and the delivery `then` makes of the row written appended
    /// to the webhook log ([`Store::append_delivery`]) in the same write, where the
    /// backend can: a status change and its webhook event are then kept both or
    /// neither, so a crash between them cannot lose the event. The default makes two
    /// calls (the patch, then the append; an append that fails after the patch is
    /// reported, the patch stays). `then` returning `None` appends nothing.
    async fn patch_device_recording(
        &self,
        id: &str,
        patch: &DevicePatch,
        now_ms: i64,
        fence: Option<&Fence>,
        then: DeliveryOf,
    ) -> Result<DeviceRecord, StoreError> {
        let record = self.patch_device(id, patch, now_ms, fence).await?;
        if let Some(delivery) = then(&record) {
            self.append_delivery(&delivery).await?;
        }
        Ok(record)
    }
    /// The first write of a device's run: `patch` applied as by
    /// [`Store::patch_device`] (fenced the same way), returning the status the device had
    /// before it and whether any of its outbound messages is queued: what a device actor
    /// needs before it connects, in one call instead of a read, a write and a count.
    /// `None` if there is no such device. The default makes the three calls; a backend
    /// that can do them in one overrides it.
    async fn begin_run(
        &self,
        id: &str,
        patch: &DevicePatch,
        now_ms: i64,
        fence: Option<&Fence>,
    ) -> Result<Option<RunStart>, StoreError> {
        let Some(before) = self.get_device(id).await? else {
            return Ok(None);
        };
        let record = match self.patch_device(id, patch, now_ms, fence).await {
            Ok(record) => record,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(error),
        };
        let queued = self.count_queued(id, 1).await? > 0;
        Ok(Some(RunStart {
            previous: before.status,
            record,
            queued,
        }))
    }
    /// Devices ordered by id, after `query.after` (exclusive), at most `query.limit`,
    /// filtered by `status` and `desired_running` when given. `next_after` is the last id
    /// of the page when more rows may follow, else `None`.
    async fn list_devices(&self, query: &DeviceQuery) -> Result<DevicePage, StoreError>;
    /// Devices with `desired_running = true` whose shard (`shard_of(id, self.shards())`)
    /// is one of `shards`, ids ascending, each once: what a node starts when it takes
    /// these shards. Reads only those shards' devices. Shards `>= self.shards()` have no
    /// device.
    async fn wanted_devices_in_shards(&self, shards: &[u32]) -> Result<Vec<DeviceId>, StoreError>;
    /// The shard count S this store places devices in (see "Shards" above).
    fn shards(&self) -> u32;
    /// Number of devices per status (statuses with no device may be absent).
    async fn count_devices_by_status(&self) -> Result<Vec<(DeviceStatus, u64)>, StoreError>;
    /// [`Store::count_devices_by_status`] of one tenant's devices. The default pages
    /// through [`Store::list_devices`]; a backend that can count by tenant overrides it.
    async fn count_tenant_devices_by_status(
        &self,
        tenant: &str,
    ) -> Result<Vec<(DeviceStatus, u64)>, StoreError> {
        let mut counts = std::collections::BTreeMap::<DeviceStatus, u64>::new();
        let mut query = DeviceQuery {
            tenant: Some(tenant.to_owned()),
            limit: 1000,
            ..DeviceQuery::default()
        };
        loop {
            let page = self.list_devices(&query).await?;
            for device in &page.devices {
                *counts.entry(device.status).or_default() += 1;
            }
            match page.next_after {
                Some(after) => query.after = Some(after),
                None => return Ok(counts.into_iter().collect()),
            }
        }
    }
    /// Deletes the device and everything it owns (link state, messages).
    /// Returns whether it existed. Fenced like a patch: refused as `Fenced`, deleting
    /// nothing, unless the fence is current (`None`: unfenced).
    async fn delete_device(&self, id: &str, fence: Option<&Fence>) -> Result<bool, StoreError>;

    // ---- link state: sealed per-device key/value records (credentials live here too) ----
    //
    // Writes take the fence of the device's shard (`None`: unfenced, see the trait
    // docs); a stale fence is `Fenced`, checked before anything else.

    /// Inserts or replaces one record. `NotFound` if the device does not exist.
    async fn put_link_state(
        &self,
        device_id: &str,
        namespace: &str,
        key: &str,
        value: &SealedBlob,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError>;
    /// One record, or `None`.
    async fn get_link_state(
        &self,
        device_id: &str,
        namespace: &str,
        key: &str,
    ) -> Result<Option<SealedBlob>, StoreError>;
    /// Whether the device has a record of `namespace` under any of `keys`: one question
    /// over many keys (the real link asks it over hundreds of candidates at once). The
    /// default asks for each key in turn.
    async fn any_link_state(
        &self,
        device_id: &str,
        namespace: &str,
        keys: &[String],
    ) -> Result<bool, StoreError> {
        for key in keys {
            if self
                .get_link_state(device_id, namespace, key)
                .await?
                .is_some()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
    /// The records of `namespace` under those of `keys` that hold one, as (key, record),
    /// in no particular order: one question over many keys (the real link reads its
    /// 812 pre-keys at once). The default asks for each key in turn.
    async fn get_link_state_many(
        &self,
        device_id: &str,
        namespace: &str,
        keys: &[String],
    ) -> Result<Vec<(String, SealedBlob)>, StoreError> {
        let mut found = Vec::new();
        for key in keys {
            if let Some(value) = self.get_link_state(device_id, namespace, key).await? {
                found.push((key.clone(), value));
            }
        }
        Ok(found)
    }
    /// Inserts or replaces several records of one namespace: [`Store::put_link_state`]
    /// for each, in one write where the backend can (then all or none are written).
    /// The default puts each in turn, so a failure can leave the first ones written.
    async fn put_link_state_many(
        &self,
        device_id: &str,
        namespace: &str,
        records: &[(String, SealedBlob)],
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        for (key, value) in records {
            self.put_link_state(device_id, namespace, key, value, fence)
                .await?;
        }
        Ok(())
    }
    /// All records of a namespace, ordered by key.
    async fn list_link_state(
        &self,
        device_id: &str,
        namespace: &str,
    ) -> Result<Vec<(String, SealedBlob)>, StoreError>;
    /// Deletes one record; returns whether it existed.
    async fn delete_link_state(
        &self,
        device_id: &str,
        namespace: &str,
        key: &str,
        fence: Option<&Fence>,
    ) -> Result<bool, StoreError>;
    /// Deletes every link-state record of the device (all namespaces); returns how many.
    async fn clear_link_state(
        &self,
        device_id: &str,
        fence: Option<&Fence>,
    ) -> Result<u64, StoreError>;

    // ---- messages ----

    /// Stores a message. If `message.idempotency_key` is set and the device already has a
    /// message with that key, nothing is written and that message is returned as
    /// `Existing`. `Conflict` if the id exists; `NotFound` if the device does not.
    async fn insert_message(&self, message: &MessageRecord) -> Result<InsertOutcome, StoreError>;
    /// [`Store::insert_message`] if the message's device meets `rule` (read with the
    /// insert: one call instead of a read and a write); the device is returned as
    /// `Refused` if it does not, and nothing is written. `NotFound` if the device does
    /// not exist. The default reads, then inserts; a backend that can do both in one
    /// call overrides it.
    async fn insert_message_if(
        &self,
        message: &MessageRecord,
        rule: DeviceRule,
    ) -> Result<GuardedInsert, StoreError> {
        let device = self
            .get_device(&message.device_id)
            .await?
            .ok_or_else(|| device_not_found(&message.device_id))?;
        if !rule(&device) {
            return Ok(GuardedInsert::Refused(Box::new(device)));
        }
        self.insert_message(message).await.map(GuardedInsert::Done)
    }
    /// One message of a device, or `None`.
    async fn get_message(
        &self,
        device_id: &str,
        message_id: &str,
    ) -> Result<Option<MessageRecord>, StoreError>;
    /// Moves a message forward: applied only if `status` ranks above the stored one
    /// (queued < sent < delivered < read; failed ranks above queued and sent but a
    /// delivered or read message never becomes failed). Sets the matching timestamp
    /// (`sent_at_ms`, ...) to `at_ms` and `error` when given. Returns the row after the
    /// call (changed or not), `None` if there is no such message.
    async fn advance_message(
        &self,
        device_id: &str,
        message_id: &str,
        status: MessageStatus,
        at_ms: i64,
        error: Option<&str>,
    ) -> Result<Option<MessageRecord>, StoreError>;
    /// Outbound messages of the device still `queued`, in queue order (by their place,
    /// [`queue_position`], then id), at most `limit`.
    async fn queued_messages(
        &self,
        device_id: &str,
        limit: u32,
    ) -> Result<Vec<MessageRecord>, StoreError>;
    /// [`Store::queued_messages`] after `after` (a message's [`QueueKey`]): at most `limit` of those that come after it. A device reads its
    /// queue from after the last message it handed to its link, instead of reading the
    /// messages in flight again. The default reads the queue from its start, in pages
    /// that double, and skips; a backend that can seek overrides it.
    async fn queued_messages_after(
        &self,
        device_id: &str,
        after: Option<&QueueKey>,
        limit: u32,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let Some(after) = after else {
            return self.queued_messages(device_id, limit).await;
        };
        let mut page = limit.max(64);
        loop {
            let rows = self.queued_messages(device_id, page).await?;
            let complete = (rows.len() as u32) < page;
            let later: Vec<MessageRecord> = rows
                .into_iter()
                .filter(|m| after.is_before(m))
                .take(limit as usize)
                .collect();
            if complete || later.len() as u32 == limit {
                return Ok(later);
            }
            page = page.saturating_mul(2);
        }
    }
    /// How many outbound messages of the device are still `queued`, counting at most
    /// `limit`: the length of [`Store::queued_messages`], without reading the rows where
    /// the store can count them.
    async fn count_queued(&self, device_id: &str, limit: u32) -> Result<u32, StoreError> {
        let queued = self.queued_messages(device_id, limit).await?;
        Ok(u32::try_from(queued.len()).unwrap_or(u32::MAX))
    }
    /// Devices of these shards that have outbound messages still `queued` or
    /// `scheduled`, each once, at most `limit` (in no particular order): what a node
    /// nudges, for the shards it holds, in case a message was accepted elsewhere while
    /// the device ran here.
    async fn devices_with_queued(
        &self,
        shards: &[u32],
        limit: u32,
    ) -> Result<Vec<DeviceId>, StoreError>;

    /// Reschedules a queued outbound message: its `not_before_ms` becomes `not_before_ms`.
    /// Returns whether the message was found still queued (a message that has moved on
    /// is left alone). The rate limiter uses this when it plans a backlog again (after a
    /// pause); `not_before_ms` only matters while a message is queued.
    async fn reschedule_message(
        &self,
        device_id: &str,
        message_id: &str,
        not_before_ms: Option<i64>,
    ) -> Result<bool, StoreError>;
    /// Outbound messages of the device still `scheduled`, the earliest `send_at_ms`
    /// first (then by id), at most `limit`: what its owner moves to the queue when they
    /// fall due ([`Store::promote_message`]).
    async fn scheduled_messages(
        &self,
        device_id: &str,
        limit: u32,
    ) -> Result<Vec<MessageRecord>, StoreError>;
    /// Moves a `scheduled` outbound message into the queue: `queued`, in the queue at
    /// `queued_at_ms` ([`QueueKey`]), with its rate-limit slot `not_before_ms`. Returns
    /// the message after, or `None` when it was not found still scheduled (cancelled,
    /// or moved already): nothing is written then.
    async fn promote_message(
        &self,
        device_id: &str,
        message_id: &str,
        queued_at_ms: i64,
        not_before_ms: i64,
    ) -> Result<Option<MessageRecord>, StoreError>;
    /// Cancels an outbound message that is still `queued` or `scheduled`: it becomes
    /// `cancelled`, leaves the queue (or the schedule) and no longer counts among
    /// [`Store::outbound_slots`]. A message in any other status is left alone. Returns
    /// the message after the call (cancelled or not), `None` if there is no such
    /// message. Whether a queued message was handed to the link already is for its
    /// device's owner to check first: the store does not know.
    async fn cancel_message(
        &self,
        device_id: &str,
        message_id: &str,
    ) -> Result<Option<MessageRecord>, StoreError>;
    /// The send slots of the device's outbound messages created at or after `since_ms`:
    /// each message's `not_before_ms`, or its `created_at_ms` when it has none, whatever
    /// its status, except a message still queued without a slot (it gets one when its
    /// device drains it, see [`Store::reschedule_message`]), a scheduled one (it gets
    /// one when it falls due) and a cancelled one (it never left); ascending; at most
    /// `limit` (the earliest). This is the rate limiter's
    /// memory: every accepted send is a stored message, so the quota a device has spent
    /// survives a crash or a move with no write of its own.
    async fn outbound_slots(
        &self,
        device_id: &str,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<i64>, StoreError>;
    /// The device's messages of both directions that `query` asks for, newest first (by
    /// `created_at_ms`, then id, both descending), at most `query.limit`.
    async fn list_messages(
        &self,
        device_id: &str,
        query: &MessageQuery,
    ) -> Result<Vec<MessageRecord>, StoreError>;
    /// The device's chats (one per peer phone), the one with the newest last message
    /// first, at most `query.limit`. The default reads the device's whole log in pages
    /// and groups it; a backend that can group in the store overrides it.
    async fn list_chats(
        &self,
        device_id: &str,
        query: &ChatQuery,
    ) -> Result<Vec<Chat>, StoreError> {
        let mut all = Vec::new();
        let mut page = MessageQuery {
            limit: 1000,
            ..MessageQuery::default()
        };
        loop {
            let rows = self.list_messages(device_id, &page).await?;
            let full = rows.len() as u32 == page.limit;
            page.before = rows.last().map(message_log::LogKey::of);
            all.extend(rows);
            if !full {
                return Ok(message_log::chats_of(all, query));
            }
        }
    }

    // ---- settings: small named documents shared by every process (JSON text) ----

    /// The setting `key`, if it was ever put.
    async fn get_setting(&self, key: &str) -> Result<Option<Setting>, StoreError>;
    /// Replaces the setting `key` (last writer wins), stamped `now_ms`.
    async fn put_setting(&self, key: &str, value: &str, now_ms: i64) -> Result<(), StoreError>;

    // ---- access: the directory (tenants, keys, users) and the audit log ----
    //
    // Not fenced: no device owner writes them. Directory writes are last writer wins
    // but for the create, which is conditional.

    /// Stores a new directory record. `Conflict` if `(kind, id)` exists.
    async fn create_access(&self, record: &AccessRecord) -> Result<(), StoreError>;
    /// Replaces an existing directory record (its tenant and body). `NotFound` if there
    /// is none.
    async fn update_access(&self, record: &AccessRecord) -> Result<(), StoreError>;
    /// One directory record, or `None`.
    async fn get_access(
        &self,
        kind: AccessKind,
        id: &str,
    ) -> Result<Option<AccessRecord>, StoreError>;
    /// Records of `query.kind` (of `query.tenant` when given) in id order, after
    /// `query.after`, at most `query.limit`.
    async fn list_access(&self, query: &AccessQuery) -> Result<Vec<AccessRecord>, StoreError>;
    /// Deletes a directory record; whether it existed.
    async fn delete_access(&self, kind: AccessKind, id: &str) -> Result<bool, StoreError>;
    /// Appends entries to the audit log (ids are unique: an entry whose id is already
    /// there is not written twice).
    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError>;
    /// Audit entries that match `query`, in id order (oldest first), after
    /// `query.after`, at most `query.limit`.
    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;

    // ---- contacts: each tenant's contact book (rows and rules in [`contact`]) ----
    //
    // Not fenced: no device owner writes them. Each call is atomic per contact (a
    // contact and its tag entries change together); a bulk upsert is not atomic as a
    // whole. Phones and tags arrive checked (see [`crate::contacts`]).

    /// Creates or updates each contact of `tenant`, in order ([`contact::upserted`]: a
    /// phone given twice is created, then updated); returns what each became.
    async fn upsert_contacts(
        &self,
        tenant: &str,
        contacts: &[ContactUpsert],
        now_ms: i64,
    ) -> Result<Vec<Upserted>, StoreError>;
    /// One contact of `tenant`, or `None`.
    async fn get_contact(
        &self,
        tenant: &str,
        phone: &str,
    ) -> Result<Option<ContactRecord>, StoreError>;
    /// The tenant's contacts (with `query.tag` when given) in phone order, after
    /// `query.after`, at most `query.limit`. A page costs about `limit` rows read,
    /// whatever the size of the book or of the tag.
    async fn list_contacts(&self, query: &ContactQuery) -> Result<Vec<ContactRecord>, StoreError>;
    /// Replaces the tags of a contact ([`contact::retagged`]); `None` if there is no such
    /// contact (nothing is written).
    async fn set_contact_tags(
        &self,
        tenant: &str,
        phone: &str,
        tags: &[String],
        now_ms: i64,
    ) -> Result<Option<ContactRecord>, StoreError>;
    /// Deletes a contact and its tag entries; whether it existed.
    async fn delete_contact(&self, tenant: &str, phone: &str) -> Result<bool, StoreError>;
    /// The tenant's tags with how many contacts have each, in tag order, after `after`,
    /// at most `limit`; a tag no contact has any more is not listed.
    async fn list_contact_tags(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TagCount>, StoreError>;

    // ---- campaigns: jobs and their recipients (see [`job`]) ----
    //
    // Not fenced: a job belongs to no one device. The steps that must happen once are
    // compare-and-sets: a claim takes a `pending` recipient only if it still is, and
    // [`Store::update_job`] and [`Store::update_job_recipient`] write only over the
    // status the caller read.

    /// Stores recipients of a job (a job is made by storing its recipients, in batches,
    /// then the job); a recipient stored already (same job and `seq`) is replaced.
    async fn put_job_recipients(&self, recipients: &[RecipientRecord]) -> Result<(), StoreError>;
    /// Stores a new job; `Conflict` if its id exists.
    async fn create_job(&self, job: &JobRecord) -> Result<(), StoreError>;
    /// One job, or `None`.
    async fn get_job(&self, id: &str) -> Result<Option<JobRecord>, StoreError>;
    /// Jobs in id order, filtered by `query`, after `query.after`, at most `query.limit`.
    async fn list_jobs(&self, query: &JobQuery) -> Result<Vec<JobRecord>, StoreError>;
    /// Writes `job`'s status and times if the stored job's status is still `expected`;
    /// whether it did (`false` also when there is no such job).
    async fn update_job(&self, job: &JobRecord, expected: JobStatus) -> Result<bool, StoreError>;
    /// Deletes a job and its recipients; whether the job existed.
    async fn delete_job(&self, id: &str) -> Result<bool, StoreError>;
    /// How many of the job's recipients are in each status (statuses with none left out).
    async fn count_job_recipients(
        &self,
        job_id: &str,
    ) -> Result<Vec<(RecipientStatus, u64)>, StoreError>;
    /// Claims for `device_id` the job's first `pending` recipient (by `seq`) whose
    /// `next_at_ms` has come: it becomes `queued` by that device, its attempts one more,
    /// its message and error cleared. Returns it as it is now, `None` if none is due.
    /// Two claims never take the same recipient.
    async fn claim_job_recipient(
        &self,
        job_id: &str,
        device_id: &str,
        now_ms: i64,
    ) -> Result<Option<RecipientRecord>, StoreError>;
    /// Writes `recipient` (status, device, message, attempts, error, next and updated
    /// times) if its stored status is still `expected`; whether it did.
    async fn update_job_recipient(
        &self,
        recipient: &RecipientRecord,
        expected: RecipientStatus,
    ) -> Result<bool, StoreError>;
    /// A job's recipients in `seq` order, filtered by `query`, at most `query.limit`.
    async fn list_job_recipients(
        &self,
        query: &RecipientQuery,
    ) -> Result<Vec<RecipientRecord>, StoreError>;
    /// Moves every recipient of the job in status `from` to `to`; returns how many. To
    /// `pending` (a retry of the failed), each starts afresh: no device, message, error
    /// or attempts, due at `now_ms`.
    async fn move_job_recipients(
        &self,
        job_id: &str,
        from: RecipientStatus,
        to: RecipientStatus,
        now_ms: i64,
    ) -> Result<u64, StoreError>;

    // ---- webhook deliveries: the durable log of events a device's webhook is sent ----
    //
    // Not fenced, like message writes: an event recorded by a stale owner is a true
    // fact, and an attempt's outcome only moves a delivery on (a late one is recorded
    // only while the delivery still has the attempt count it began with).

    /// Records an event for the device's webhook, `pending`, after every event already
    /// recorded for the device (the store gives it its `seq`). Idempotent by event id: a
    /// repeat changes nothing. `NotFound` if there is no such device. Deleting the device
    /// deletes its deliveries.
    async fn append_delivery(&self, delivery: &NewDelivery) -> Result<(), StoreError>;
    /// The device's deliveries still to be attempted (`pending` or `failed`), in event
    /// order (`seq`), at most `limit`.
    async fn due_deliveries(
        &self,
        device_id: &str,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;
    /// Records the outcome of an attempt at a delivery that is still due with
    /// `attempt.prior_attempts` attempts made; returns it after, or `None` when it is not
    /// (gone, delivered, dead, or replayed meanwhile): nothing is written then.
    async fn record_attempt(
        &self,
        device_id: &str,
        event_id: &str,
        attempt: &Attempt,
    ) -> Result<Option<DeliveryRecord>, StoreError>;
    /// The device's deliveries, newest first (`seq` descending), only those in `status`
    /// when given, only those before `before_seq` when given, at most `limit`.
    async fn list_deliveries(
        &self,
        device_id: &str,
        status: Option<DeliveryStatus>,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;
    /// Queues deliveries of the device again: `pending`, no attempts, no last error,
    /// keeping their place in event order. Returns how many.
    async fn replay_deliveries(
        &self,
        device_id: &str,
        which: &ReplayWhich,
        now_ms: i64,
    ) -> Result<u64, StoreError>;
    /// Devices of these shards with deliveries still to be attempted, each once, at most
    /// `limit`: what a node that holds the shards must deliver.
    async fn devices_with_due_deliveries(
        &self,
        shards: &[u32],
        limit: u32,
    ) -> Result<Vec<DeviceId>, StoreError>;
    /// Counts of the whole log by status still to settle, and its oldest due event.
    async fn delivery_backlog(&self) -> Result<DeliveryBacklog, StoreError>;
    /// Deletes up to `limit` `delivered` deliveries recorded before `before_ms`; returns
    /// how many.
    async fn prune_deliveries(&self, before_ms: i64, limit: u32) -> Result<u64, StoreError>;

    // ---- shard leases (rules in [`lease`]) ----
    //
    // Times are the caller's: `now_ms` (Unix ms) and `ttl_ms`; the store has no clock.
    // A lease is expired when `expires_at_ms <= now_ms`. Each bulk call is one atomic
    // step per shard and one round trip (one transaction in SQLite); results are in the
    // order of the input.

    /// For each shard, grants `holder` a lease until `now_ms + ttl_ms` when the shard is
    /// free (never leased, released, or expired) or already held by `holder`; refuses it
    /// while another holder's lease is live, returning that lease. The epoch stays when
    /// `holder` extends its own live lease and otherwise goes up by one (first grant,
    /// new holder, or the same holder after a lapse).
    async fn acquire_leases(
        &self,
        holder: &str,
        shards: &[u32],
        now_ms: i64,
        ttl_ms: u64,
    ) -> Result<Vec<Acquired>, StoreError>;
    /// For each lease, extends it to `now_ms + ttl_ms` if `holder` holds the shard under
    /// that epoch and it has not expired; `false` otherwise (an expired lease must be
    /// acquired again, which may bump its epoch).
    async fn renew_leases(
        &self,
        holder: &str,
        leases: &[Fence],
        now_ms: i64,
        ttl_ms: u64,
    ) -> Result<Vec<bool>, StoreError>;
    /// For each lease, frees the shard at once if `holder` holds it under that epoch
    /// (expired or not); `false` otherwise. The epoch is kept, so the next holder's is
    /// higher, and writes fenced with the released epoch are refused from now on.
    async fn release_leases(&self, holder: &str, leases: &[Fence])
    -> Result<Vec<bool>, StoreError>;
    /// The held lease of a shard (expired or not), `None` if nobody holds it.
    async fn get_lease(&self, shard: u32) -> Result<Option<Lease>, StoreError>;
    /// Every held lease (expired or not), by shard; `holder` keeps only that node's.
    async fn list_leases(&self, holder: Option<&str>) -> Result<Vec<Lease>, StoreError>;

    /// [`Store::acquire_leases`] for one shard.
    async fn acquire_lease(
        &self,
        holder: &str,
        shard: u32,
        now_ms: i64,
        ttl_ms: u64,
    ) -> Result<Acquired, StoreError> {
        let mut outcomes = self
            .acquire_leases(holder, &[shard], now_ms, ttl_ms)
            .await?;
        one(outcomes.pop(), "acquire_leases")
    }
    /// [`Store::renew_leases`] for one lease.
    async fn renew_lease(
        &self,
        holder: &str,
        lease: Fence,
        now_ms: i64,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut renewed = self.renew_leases(holder, &[lease], now_ms, ttl_ms).await?;
        one(renewed.pop(), "renew_leases")
    }
    /// [`Store::release_leases`] for one lease.
    async fn release_lease(&self, holder: &str, lease: Fence) -> Result<bool, StoreError> {
        let mut released = self.release_leases(holder, &[lease]).await?;
        one(released.pop(), "release_leases")
    }
}

/// The setting in which a store records its shard count S (a JSON number) the first time
/// it is opened.
pub const SHARDS_SETTING: &str = "shards";

/// Checks the shard count recorded in [`SHARDS_SETTING`] against the one a process is
/// configured with.
fn check_shards(recorded: &str, configured: u32) -> Result<(), StoreError> {
    let recorded: u32 = recorded.trim().parse().map_err(|_| {
        StoreError::Corrupt(format!(
            "setting {SHARDS_SETTING:?} is {recorded:?}, not a shard count"
        ))
    })?;
    if recorded == configured {
        return Ok(());
    }
    Err(StoreError::Misconfigured(format!(
        "its devices are placed in {recorded} shards, and this process is configured with \
         cluster.shards = {configured}. Processes that disagree on the shard count put a \
         device in different shards, so two nodes would both own it: set cluster.shards = \
         {recorded} in every process of the cluster (the count is fixed for the life of its \
         store)"
    )))
}

/// The `NotFound` of a device, as every backend reports it.
fn device_not_found(id: &str) -> StoreError {
    StoreError::NotFound {
        what: format!("device {id}"),
    }
}

/// The single result of a bulk call made with one item.
fn one<T>(result: Option<T>, call: &str) -> Result<T, StoreError> {
    result.ok_or_else(|| StoreError::Corrupt(format!("{call} returned no result for one item")))
}
