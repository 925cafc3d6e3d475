//! Durable state of the fleet behind one [`Store`] trait.
//!
//! Every backend (embedded SQLite now, ScyllaDB later) passes the same conformance
//! suite in [`conformance`]. Backends never see a secret in clear: credentials and link
//! state arrive already sealed ([`SealedBlob`], see [`crate::seal`]).
//!
//! # Layout
//! - [`record`]: the rows (devices, messages) and their enums.
//! - [`sqlite`]: the embedded backend (one SQLite file in WAL mode).
//! - [`conformance`]: the suite every backend must pass.

pub mod conformance;
pub mod record;
pub mod sqlite;

use async_trait::async_trait;

pub use record::{
    DeviceId, DevicePage, DevicePatch, DeviceQuery, DeviceRecord, DeviceStatus, Direction,
    MessageRecord, MessageStatus, TrustLevel,
};
pub use sqlite::SqliteStore;

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
}

/// The durable state of the fleet. All methods are safe to call concurrently.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    // ---- devices ----

    /// Stores a new device. `Conflict` if the id exists.
    async fn create_device(&self, device: &DeviceRecord) -> Result<(), StoreError>;
    /// One device, or `None`.
    async fn get_device(&self, id: &str) -> Result<Option<DeviceRecord>, StoreError>;
    /// Applies the fields that are `Some` in `patch` and sets `updated_at_ms`;
    /// returns the updated row. `NotFound` if there is no such device.
    async fn patch_device(
        &self,
        id: &str,
        patch: &DevicePatch,
        now_ms: i64,
    ) -> Result<DeviceRecord, StoreError>;
    /// Devices ordered by id, after `query.after` (exclusive), at most `query.limit`,
    /// filtered by `status` and `desired_running` when given. `next_after` is the last id
    /// of the page when more rows may follow, else `None`.
    async fn list_devices(&self, query: &DeviceQuery) -> Result<DevicePage, StoreError>;
    /// Number of devices per status (statuses with no device may be absent).
    async fn count_devices_by_status(&self) -> Result<Vec<(DeviceStatus, u64)>, StoreError>;
    /// Deletes the device and everything it owns (link state, messages).
    /// Returns whether it existed.
    async fn delete_device(&self, id: &str) -> Result<bool, StoreError>;

    // ---- link state: sealed per-device key/value records (credentials live here too) ----

    /// Inserts or replaces one record. `NotFound` if the device does not exist.
    async fn put_link_state(
        &self,
        device_id: &str,
        namespace: &str,
        key: &str,
        value: &SealedBlob,
    ) -> Result<(), StoreError>;
    /// One record, or `None`.
    async fn get_link_state(
        &self,
        device_id: &str,
        namespace: &str,
        key: &str,
    ) -> Result<Option<SealedBlob>, StoreError>;
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
    ) -> Result<bool, StoreError>;
    /// Deletes every link-state record of the device (all namespaces); returns how many.
    async fn clear_link_state(&self, device_id: &str) -> Result<u64, StoreError>;

    // ---- messages ----

    /// Stores a message. If `message.idempotency_key` is set and the device already has a
    /// message with that key, nothing is written and that message is returned as
    /// `Existing`. `Conflict` if the id exists; `NotFound` if the device does not.
    async fn insert_message(&self, message: &MessageRecord) -> Result<InsertOutcome, StoreError>;
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
    /// Outbound messages of the device still `queued`, oldest first (by `created_at_ms`,
    /// then id), at most `limit`.
    async fn queued_messages(
        &self,
        device_id: &str,
        limit: u32,
    ) -> Result<Vec<MessageRecord>, StoreError>;
}
