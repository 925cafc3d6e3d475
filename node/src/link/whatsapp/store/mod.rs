//! whatsapp-rust's storage traits (its `Backend`: [`SignalStore`], [`AppSyncStore`],
//! [`ProtocolStore`], [`MsgSecretStore`], [`DeviceStore`]) on one device's
//! [`DeviceVault`]: every byte of WhatsApp protocol state is a sealed record in
//! wafleet's store, and every write carries the device's fence.
//!
//! # Records
//! One vault namespace per kind of state (`wa.session`, `wa.prekey`, ...). A record's
//! vault key is not the natural key (a contact's address, a group id) but a hash of it
//! under a random per-device salt that is itself sealed (`wa.meta/salt`), so the
//! store never holds a phone number or a group id in clear, not even as a key. The
//! natural key travels inside the sealed value, in front of the payload (an
//! *envelope*: `u32` big-endian length, the key, the payload), which is how listing
//! operations recover it and how a read checks it got the record it asked for.
//! Payloads are the raw bytes whatsapp-rust hands over, or JSON for its structs.
//!
//! # Fencing and closing
//! A write refused as fenced (another node owns the device now) marks the backend
//! fenced: every later write is refused without reaching the store, and the link
//! session learns of it through [`VaultBackend::fenced`] and ends. The session also
//! [closes](VaultBackend::close) the backend when it wipes the credentials (logout),
//! so that no straggling background write of the client resurrects them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, watch};
use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::store::traits::{
    AppStateSyncKey, AppSyncStore, DeviceListRecord, DeviceStore, LidPnMappingEntry,
    MsgSecretEntry, MsgSecretStore, PendingInboundKey, PendingInboundRow, ProtocolStore,
    SignalStore, TcTokenEntry, merge_msg_secret_expiry, merge_msg_secret_message_ts,
};
use whatsapp_rust::wacore::appstate::hash::HashState;
use whatsapp_rust::wacore::appstate::processor::AppStateMutationMAC;
use whatsapp_rust::wacore::store::Device;
use whatsapp_rust::wacore::store::error::{Result, StoreError};

use crate::vault::{DeviceVault, VaultError};

/// Namespaces of the records. `wa.mutation_mac.<collection>` holds one app-state
/// collection's MACs (the collection names are WhatsApp's fixed ones).
mod ns {
    pub(super) const META: &str = "wa.meta";
    pub(super) const DEVICE: &str = "wa.device";
    pub(super) const IDENTITY: &str = "wa.identity";
    pub(super) const SESSION: &str = "wa.session";
    pub(super) const PREKEY: &str = "wa.prekey";
    pub(super) const SIGNED_PREKEY: &str = "wa.signed_prekey";
    pub(super) const SENDER_KEY: &str = "wa.sender_key";
    pub(super) const SYNC_KEY: &str = "wa.sync_key";
    pub(super) const APP_VERSION: &str = "wa.app_version";
    pub(super) const MUTATION_MAC: &str = "wa.mutation_mac";
    pub(super) const SENDER_KEY_DEVICES: &str = "wa.skdm";
    pub(super) const LID: &str = "wa.lid";
    pub(super) const PN: &str = "wa.pn";
    pub(super) const BASE_KEY: &str = "wa.base_key";
    pub(super) const DEVICE_LIST: &str = "wa.device_list";
    pub(super) const GROUP: &str = "wa.group";
    pub(super) const TC_TOKEN: &str = "wa.tc_token";
    pub(super) const SENT: &str = "wa.sent";
    pub(super) const PENDING_INBOUND: &str = "wa.pending_inbound";
    pub(super) const MSG_SECRET: &str = "wa.msg_secret";
    /// wafleet's own: the wafleet message id of each WhatsApp message id it sent,
    /// stamped with when it was sent (pruned after [`super::OUTBOUND_KEEP_SECS`]).
    pub(super) const OUTBOUND: &str = "wa.outbound_at";
    /// The same map as first written, without the time: read, no longer written.
    pub(super) const OUTBOUND_UNSTAMPED: &str = "wa.outbound";
}

/// How long the link remembers which wafleet message a WhatsApp message id is: a
/// receipt for a message sent longer ago is dropped (its status stays as it was).
pub(crate) const OUTBOUND_KEEP_SECS: i64 = 14 * 86_400;
/// How often a session looks for expired entries of that map (each look reads the
/// whole map), at whatsapp-rust's retention sweeps.
const OUTBOUND_PRUNE_EVERY_SECS: i64 = 86_400;

/// Keys of the singleton records in [`ns::META`] and [`ns::DEVICE`].
const SALT_KEY: &str = "salt";
const LATEST_SYNC_KEY: &str = "latest_sync_key";
const DEVICE_KEY: &str = "device";

/// The one device row a vault holds; whatsapp-rust asks for its id.
const DEVICE_ROW_ID: i32 = 1;

/// whatsapp-rust's `Backend` on a device's vault. Cheap to share (`Arc`).
pub struct VaultBackend {
    vault: DeviceVault,
    /// Hashes natural keys into vault keys; sealed in the vault (see the module docs).
    salt: [u8; 32],
    /// Serialises the read-modify-write operations, which the traits ask to be atomic.
    rmw: Mutex<()>,
    /// Writes are refused once set: after a fenced write, or once the session closed.
    closed: AtomicBool,
    /// Why a write was fenced off, for the session to end with.
    fenced: watch::Sender<Option<String>>,
    /// When this backend last pruned the outbound map (unix s; 0: never).
    outbound_pruned_at: AtomicI64,
}

impl std::fmt::Debug for VaultBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultBackend")
            .field("device_id", &self.vault.device_id())
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl VaultBackend {
    /// The backend of `vault`'s device, creating its key salt on first use (a write,
    /// under the vault's fence).
    pub async fn open(vault: DeviceVault) -> std::result::Result<VaultBackend, VaultError> {
        let salt = match vault.get(ns::META, SALT_KEY).await? {
            Some(bytes) if bytes.len() == 32 => {
                let mut salt = [0u8; 32];
                salt.copy_from_slice(&bytes);
                salt
            }
            _ => {
                let mut salt = [0u8; 32];
                getrandom::fill(&mut salt).expect("the operating system's random source");
                vault.put(ns::META, SALT_KEY, &salt).await?;
                salt
            }
        };
        Ok(VaultBackend {
            vault,
            salt,
            rmw: Mutex::new(()),
            closed: AtomicBool::new(false),
            fenced: watch::channel(None).0,
            outbound_pruned_at: AtomicI64::new(0),
        })
    }

    pub fn device_id(&self) -> &str {
        self.vault.device_id()
    }

    /// Refuses every later write (the session ended, or the credentials are wiped).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Becomes `Some(reason)` once a write was fenced off.
    pub fn fenced(&self) -> watch::Receiver<Option<String>> {
        self.fenced.subscribe()
    }

    /// Forgets everything the device's link kept (logout): closes the backend first,
    /// so that nothing the client still flushes brings the credentials back.
    pub async fn wipe(&self) -> std::result::Result<(), VaultError> {
        self.close();
        self.vault.clear().await.map(|_| ())
    }

    /// Whether the device's link state was wiped behind this backend's back (the
    /// operator logged the device out while the session was closing): the salt, written
    /// once when the backend opened, is gone. Then whatever the closing client flushed
    /// afterwards is wiped too, so a logout never leaves credentials behind.
    pub async fn rewipe_if_cleared(&self) -> std::result::Result<bool, VaultError> {
        if self.vault.get(ns::META, SALT_KEY).await?.is_some() {
            return Ok(false);
        }
        self.vault.clear().await?;
        Ok(true)
    }

    /// Remembers which wafleet message a WhatsApp message id belongs to (for receipts).
    pub async fn put_outbound(&self, wa_id: &str, message_id: &str) -> Result<()> {
        self.put_outbound_at(wa_id, message_id, now_secs()).await
    }

    /// [`VaultBackend::put_outbound`] as if sent at `at_secs` (unix s).
    pub(crate) async fn put_outbound_at(
        &self,
        wa_id: &str,
        message_id: &str,
        at_secs: i64,
    ) -> Result<()> {
        self.put(
            ns::OUTBOUND,
            wa_id,
            &stamped(at_secs, message_id.as_bytes()),
        )
        .await
    }

    /// The wafleet message id of a WhatsApp message id this device sent.
    pub async fn outbound(&self, wa_id: &str) -> Result<Option<String>> {
        let id = match self.get(ns::OUTBOUND, wa_id).await? {
            Some(record) => Some(unstamp(&record)?.1.to_vec()),
            None => self.get(ns::OUTBOUND_UNSTAMPED, wa_id).await?,
        };
        Ok(id.and_then(|bytes| String::from_utf8(bytes).ok()))
    }

    /// Forgets the outbound ids sent before `cutoff_secs`; how many it forgot.
    pub async fn forget_outbound_before(&self, cutoff_secs: i64) -> Result<u32> {
        self.delete_stamped_before(ns::OUTBOUND, cutoff_secs).await
    }

    /// [`VaultBackend::forget_outbound_before`] `OUTBOUND_KEEP_SECS` ago, if this
    /// backend has not done so in the last day.
    async fn prune_outbound(&self) -> Result<u32> {
        let now = now_secs();
        let last = self.outbound_pruned_at.load(Ordering::Acquire);
        if now - last < OUTBOUND_PRUNE_EVERY_SECS
            || self
                .outbound_pruned_at
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return Ok(0);
        }
        self.forget_outbound_before(now - OUTBOUND_KEEP_SECS).await
    }

    // ---- records ----

    /// The vault key of `natural` in `namespace`: 128 bits of a salted SHA-256, hex.
    fn vault_key(&self, namespace: &str, natural: &str) -> String {
        let mut hash = Sha256::new();
        hash.update(self.salt);
        hash.update(namespace.as_bytes());
        hash.update([0u8]);
        hash.update(natural.as_bytes());
        hex(&hash.finalize()[..16])
    }

    async fn get(&self, namespace: &str, natural: &str) -> Result<Option<Vec<u8>>> {
        let key = self.vault_key(namespace, natural);
        let Some(sealed) = self.vault.get(namespace, &key).await.map_err(read_error)? else {
            return Ok(None);
        };
        let (stored, payload) = open_envelope(&sealed)?;
        Ok((stored == natural).then(|| payload.to_vec()))
    }

    async fn put(&self, namespace: &str, natural: &str, payload: &[u8]) -> Result<()> {
        self.check_open()?;
        let key = self.vault_key(namespace, natural);
        let result = self
            .vault
            .put(namespace, &key, &envelope(natural, payload))
            .await;
        self.written(result)
    }

    async fn delete(&self, namespace: &str, natural: &str) -> Result<()> {
        self.check_open()?;
        let key = self.vault_key(namespace, natural);
        let result = self.vault.delete(namespace, &key).await.map(|_| ());
        self.written(result)
    }

    /// Every record of `namespace` as (natural key, payload).
    async fn list(&self, namespace: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let records = self.vault.list(namespace).await.map_err(read_error)?;
        records
            .iter()
            .map(|(_, sealed)| {
                let (natural, payload) = open_envelope(sealed)?;
                Ok((natural.to_owned(), payload.to_vec()))
            })
            .collect()
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        namespace: &str,
        natural: &str,
    ) -> Result<Option<T>> {
        self.get(namespace, natural)
            .await?
            .map(|bytes| from_json(&bytes))
            .transpose()
    }

    async fn put_json<T: Serialize>(
        &self,
        namespace: &str,
        natural: &str,
        value: &T,
    ) -> Result<()> {
        self.put(namespace, natural, &to_json(value)?).await
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Validation(
                "the link session is closed, writes are refused".into(),
            ));
        }
        Ok(())
    }

    /// Maps a write's outcome; a fenced write closes the backend and tells the session.
    fn written(&self, result: std::result::Result<(), VaultError>) -> Result<()> {
        match result {
            Ok(()) => Ok(()),
            Err(error) if error.is_fenced() => {
                self.close();
                let reason = error.to_string();
                self.fenced.send_if_modified(|slot| {
                    let first = slot.is_none();
                    if first {
                        *slot = Some(reason.clone());
                    }
                    first
                });
                Err(StoreError::Database(Box::new(error)))
            }
            Err(error) => Err(StoreError::Database(Box::new(error))),
        }
    }
}

fn read_error(error: VaultError) -> StoreError {
    StoreError::Database(Box::new(error))
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Serialization(Box::new(e)))
}

fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Serialization(Box::new(e)))
}

fn envelope(natural: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + natural.len() + payload.len());
    out.extend_from_slice(&(natural.len() as u32).to_be_bytes());
    out.extend_from_slice(natural.as_bytes());
    out.extend_from_slice(payload);
    out
}

fn open_envelope(bytes: &[u8]) -> Result<(&str, &[u8])> {
    let malformed = || StoreError::Validation("malformed link-state record".into());
    let (len, rest) = bytes.split_first_chunk::<4>().ok_or_else(malformed)?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return Err(malformed());
    }
    let (natural, payload) = rest.split_at(len);
    let natural = std::str::from_utf8(natural).map_err(|_| malformed())?;
    Ok((natural, payload))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[(byte >> 4) as usize] as char);
        out.push(DIGITS[(byte & 0xf) as usize] as char);
    }
    out
}

/// Natural key of a record addressed by several parts (`\0` cannot occur in a JID or
/// a message id).
fn joined(parts: &[&str]) -> String {
    parts.join("\0")
}

fn prekey_key(id: u32) -> String {
    format!("{id:010}")
}

fn mutation_macs_namespace(collection: &str) -> String {
    format!("{}.{collection}", ns::MUTATION_MAC)
}

/// A pre-key record: whether it was uploaded, then the record.
fn prekey_payload(record: &[u8], uploaded: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + record.len());
    out.push(u8::from(uploaded));
    out.extend_from_slice(record);
    out
}

/// A timestamped payload (sent messages, pending inbound): unix seconds, then bytes.
fn stamped(at_secs: i64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&at_secs.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn unstamp(bytes: &[u8]) -> Result<(i64, &[u8])> {
    let (at, payload) = bytes
        .split_first_chunk::<8>()
        .ok_or_else(|| StoreError::Validation("malformed timestamped record".into()))?;
    Ok((i64::from_be_bytes(*at), payload))
}

fn now_secs() -> i64 {
    crate::clock::now_ms() / 1000
}

/// A message secret row: the secret, its expiry and its parent message's time.
#[derive(serde::Serialize, serde::Deserialize)]
struct MsgSecretRow {
    secret: Vec<u8>,
    expires_at: i64,
    message_ts: i64,
}

#[async_trait]
impl SignalStore for VaultBackend {
    async fn put_identity(&self, address: &str, key: [u8; 32]) -> Result<()> {
        self.put(ns::IDENTITY, address, &key).await
    }

    async fn load_identity(&self, address: &str) -> Result<Option<[u8; 32]>> {
        Ok(self
            .get(ns::IDENTITY, address)
            .await?
            .and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok()))
    }

    async fn delete_identity(&self, address: &str) -> Result<()> {
        self.delete(ns::IDENTITY, address).await
    }

    async fn get_session(&self, address: &str) -> Result<Option<Bytes>> {
        Ok(self.get(ns::SESSION, address).await?.map(Bytes::from))
    }

    async fn put_session(&self, address: &str, session: &[u8]) -> Result<()> {
        self.put(ns::SESSION, address, session).await
    }

    async fn delete_session(&self, address: &str) -> Result<()> {
        self.delete(ns::SESSION, address).await
    }

    async fn store_prekey(&self, id: u32, record: &[u8], uploaded: bool) -> Result<()> {
        self.put(
            ns::PREKEY,
            &prekey_key(id),
            &prekey_payload(record, uploaded),
        )
        .await
    }

    async fn load_prekey(&self, id: u32) -> Result<Option<Bytes>> {
        Ok(self
            .get(ns::PREKEY, &prekey_key(id))
            .await?
            .filter(|payload| !payload.is_empty())
            .map(|payload| Bytes::copy_from_slice(&payload[1..])))
    }

    async fn mark_prekeys_uploaded(&self, ids: &[u32]) -> Result<()> {
        let _guard = self.rmw.lock().await;
        for &id in ids {
            let key = prekey_key(id);
            // Update only: a key consumed since the upload snapshot stays deleted.
            if let Some(mut payload) = self.get(ns::PREKEY, &key).await?
                && let Some(flag) = payload.first_mut()
                && *flag == 0
            {
                *flag = 1;
                self.put(ns::PREKEY, &key, &payload).await?;
            }
        }
        Ok(())
    }

    async fn remove_prekey(&self, id: u32) -> Result<()> {
        self.delete(ns::PREKEY, &prekey_key(id)).await
    }

    async fn get_max_prekey_id(&self) -> Result<u32> {
        Ok(self
            .list(ns::PREKEY)
            .await?
            .iter()
            .filter_map(|(key, _)| key.parse::<u32>().ok())
            .max()
            .unwrap_or(0))
    }

    async fn store_signed_prekey(&self, id: u32, record: &[u8]) -> Result<()> {
        self.put(ns::SIGNED_PREKEY, &prekey_key(id), record).await
    }

    async fn load_signed_prekey(&self, id: u32) -> Result<Option<Vec<u8>>> {
        self.get(ns::SIGNED_PREKEY, &prekey_key(id)).await
    }

    async fn load_all_signed_prekeys(&self) -> Result<Vec<(u32, Vec<u8>)>> {
        Ok(self
            .list(ns::SIGNED_PREKEY)
            .await?
            .into_iter()
            .filter_map(|(key, record)| key.parse::<u32>().ok().map(|id| (id, record)))
            .collect())
    }

    async fn remove_signed_prekey(&self, id: u32) -> Result<()> {
        self.delete(ns::SIGNED_PREKEY, &prekey_key(id)).await
    }

    async fn put_sender_key(&self, address: &str, record: &[u8]) -> Result<()> {
        self.put(ns::SENDER_KEY, address, record).await
    }

    async fn get_sender_key(&self, address: &str) -> Result<Option<Vec<u8>>> {
        self.get(ns::SENDER_KEY, address).await
    }

    async fn delete_sender_key(&self, address: &str) -> Result<()> {
        self.delete(ns::SENDER_KEY, address).await
    }
}

impl VaultBackend {
    /// Deletes the timestamped records of `namespace` older than `cutoff` (unix s).
    async fn delete_stamped_before(&self, namespace: &str, cutoff: i64) -> Result<u32> {
        let mut deleted = 0;
        for (key, record) in self.list(namespace).await? {
            if unstamp(&record)?.0 < cutoff {
                self.delete(namespace, &key).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// The sender-key status of every device of every group, by group.
    async fn all_sender_key_devices(&self) -> Result<Vec<(String, BTreeMap<String, bool>)>> {
        self.list(ns::SENDER_KEY_DEVICES)
            .await?
            .into_iter()
            .map(|(group, bytes)| Ok((group, from_json(&bytes)?)))
            .collect()
    }
}

#[async_trait]
impl AppSyncStore for VaultBackend {
    async fn get_sync_key(&self, key_id: &[u8]) -> Result<Option<AppStateSyncKey>> {
        self.get_json(ns::SYNC_KEY, &hex(key_id)).await
    }

    async fn set_sync_key(&self, key_id: &[u8], key: AppStateSyncKey) -> Result<()> {
        self.put_json(ns::SYNC_KEY, &hex(key_id), &key).await?;
        self.put(ns::META, LATEST_SYNC_KEY, key_id).await
    }

    async fn get_version(&self, name: &str) -> Result<HashState> {
        Ok(self
            .get_json(ns::APP_VERSION, name)
            .await?
            .unwrap_or_default())
    }

    async fn set_version(&self, name: &str, state: HashState) -> Result<()> {
        self.put_json(ns::APP_VERSION, name, &state).await
    }

    async fn put_mutation_macs(
        &self,
        name: &str,
        _version: u64,
        mutations: &[AppStateMutationMAC],
    ) -> Result<()> {
        let namespace = mutation_macs_namespace(name);
        for mutation in mutations {
            self.put(&namespace, &hex(&mutation.index_mac), &mutation.value_mac)
                .await?;
        }
        Ok(())
    }

    async fn get_mutation_mac(&self, name: &str, index_mac: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get(&mutation_macs_namespace(name), &hex(index_mac))
            .await
    }

    async fn delete_mutation_macs(&self, name: &str, index_macs: &[Vec<u8>]) -> Result<()> {
        let namespace = mutation_macs_namespace(name);
        for index_mac in index_macs {
            self.delete(&namespace, &hex(index_mac)).await?;
        }
        Ok(())
    }

    async fn clear_mutation_macs(&self, name: &str) -> Result<()> {
        let namespace = mutation_macs_namespace(name);
        for (key, _) in self.list(&namespace).await? {
            self.delete(&namespace, &key).await?;
        }
        Ok(())
    }

    async fn get_latest_sync_key_id(&self) -> Result<Option<Vec<u8>>> {
        self.get(ns::META, LATEST_SYNC_KEY).await
    }
}

#[async_trait]
impl ProtocolStore for VaultBackend {
    async fn get_sender_key_devices(&self, group_jid: &str) -> Result<Vec<(String, bool)>> {
        let devices: BTreeMap<String, bool> = self
            .get_json(ns::SENDER_KEY_DEVICES, group_jid)
            .await?
            .unwrap_or_default();
        Ok(devices.into_iter().collect())
    }

    async fn set_sender_key_status(&self, group_jid: &str, entries: &[(&str, bool)]) -> Result<()> {
        let _guard = self.rmw.lock().await;
        let mut devices: BTreeMap<String, bool> = self
            .get_json(ns::SENDER_KEY_DEVICES, group_jid)
            .await?
            .unwrap_or_default();
        for (device, has_key) in entries {
            devices.insert((*device).to_owned(), *has_key);
        }
        self.put_json(ns::SENDER_KEY_DEVICES, group_jid, &devices)
            .await
    }

    async fn clear_sender_key_devices(&self, group_jid: &str) -> Result<()> {
        let _guard = self.rmw.lock().await;
        self.delete(ns::SENDER_KEY_DEVICES, group_jid).await
    }

    async fn delete_sender_key_device_rows(&self, device_jids: &[&str]) -> Result<()> {
        if device_jids.is_empty() {
            return Ok(());
        }
        let _guard = self.rmw.lock().await;
        for (group, mut devices) in self.all_sender_key_devices().await? {
            let before = devices.len();
            devices.retain(|device, _| !device_jids.contains(&device.as_str()));
            if devices.len() != before {
                self.put_json(ns::SENDER_KEY_DEVICES, &group, &devices)
                    .await?;
            }
        }
        Ok(())
    }

    async fn clear_all_sender_key_devices(&self) -> Result<()> {
        let _guard = self.rmw.lock().await;
        for (group, _) in self.list(ns::SENDER_KEY_DEVICES).await? {
            self.delete(ns::SENDER_KEY_DEVICES, &group).await?;
        }
        Ok(())
    }

    async fn get_lid_mapping(&self, lid: &str) -> Result<Option<LidPnMappingEntry>> {
        self.get_json(ns::LID, lid).await
    }

    async fn get_pn_mapping(&self, phone: &str) -> Result<Option<LidPnMappingEntry>> {
        let Some(lid) = self.get(ns::PN, phone).await? else {
            return Ok(None);
        };
        let lid = String::from_utf8(lid).map_err(|e| StoreError::Serialization(Box::new(e)))?;
        self.get_lid_mapping(&lid).await
    }

    async fn put_lid_mapping(&self, entry: &LidPnMappingEntry) -> Result<()> {
        let _guard = self.rmw.lock().await;
        // A LID that moved to another number leaves no stale reverse entry behind.
        if let Some(old) = self.get_lid_mapping(&entry.lid).await?
            && old.phone_number != entry.phone_number
        {
            self.delete(ns::PN, &old.phone_number).await?;
        }
        self.put_json(ns::LID, &entry.lid, entry).await?;
        self.put(ns::PN, &entry.phone_number, entry.lid.as_bytes())
            .await
    }

    async fn put_lid_mappings(&self, entries: &[LidPnMappingEntry]) -> Result<()> {
        for entry in entries {
            self.put_lid_mapping(entry).await?;
        }
        Ok(())
    }

    async fn get_all_lid_mappings(&self) -> Result<Vec<LidPnMappingEntry>> {
        self.list(ns::LID)
            .await?
            .iter()
            .map(|(_, bytes)| from_json(bytes))
            .collect()
    }

    async fn save_base_key(&self, address: &str, message_id: &str, base_key: &[u8]) -> Result<()> {
        self.put(ns::BASE_KEY, &joined(&[address, message_id]), base_key)
            .await
    }

    async fn has_same_base_key(
        &self,
        address: &str,
        message_id: &str,
        current_base_key: &[u8],
    ) -> Result<bool> {
        Ok(self
            .get(ns::BASE_KEY, &joined(&[address, message_id]))
            .await?
            .is_some_and(|saved| saved == current_base_key))
    }

    async fn delete_base_key(&self, address: &str, message_id: &str) -> Result<()> {
        self.delete(ns::BASE_KEY, &joined(&[address, message_id]))
            .await
    }

    async fn update_device_list(&self, record: DeviceListRecord) -> Result<()> {
        self.put_json(ns::DEVICE_LIST, &record.user, &record).await
    }

    async fn get_devices(&self, user: &str) -> Result<Option<DeviceListRecord>> {
        self.get_json(ns::DEVICE_LIST, user).await
    }

    async fn delete_devices(&self, user: &str) -> Result<()> {
        self.delete(ns::DEVICE_LIST, user).await
    }

    async fn get_group_metadata(&self, group_jid: &str) -> Result<Option<Vec<u8>>> {
        self.get(ns::GROUP, group_jid).await
    }

    async fn put_group_metadata(&self, group_jid: &str, blob: &[u8]) -> Result<()> {
        self.put(ns::GROUP, group_jid, blob).await
    }

    async fn delete_group_metadata(&self, group_jid: &str) -> Result<()> {
        self.delete(ns::GROUP, group_jid).await
    }

    async fn get_tc_token(&self, jid: &str) -> Result<Option<TcTokenEntry>> {
        self.get_json(ns::TC_TOKEN, jid).await
    }

    async fn put_tc_token(&self, jid: &str, entry: &TcTokenEntry) -> Result<()> {
        self.put_json(ns::TC_TOKEN, jid, entry).await
    }

    async fn delete_tc_token(&self, jid: &str) -> Result<()> {
        self.delete(ns::TC_TOKEN, jid).await
    }

    async fn get_all_tc_token_jids(&self) -> Result<Vec<String>> {
        Ok(self
            .list(ns::TC_TOKEN)
            .await?
            .into_iter()
            .map(|(jid, _)| jid)
            .collect())
    }

    async fn delete_expired_tc_tokens(&self, token_cutoff: i64, sender_cutoff: i64) -> Result<u32> {
        let _guard = self.rmw.lock().await;
        let mut deleted = 0;
        for (jid, bytes) in self.list(ns::TC_TOKEN).await? {
            let entry: TcTokenEntry = from_json(&bytes)?;
            let token_live = !entry.token.is_empty() && entry.token_timestamp >= token_cutoff;
            let sender_live = entry.sender_timestamp.is_some_and(|ts| ts >= sender_cutoff);
            if !token_live && !sender_live {
                self.delete(ns::TC_TOKEN, &jid).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    async fn touch_tc_token_sender_timestamp(
        &self,
        jid: &str,
        sender_timestamp: i64,
    ) -> Result<()> {
        let _guard = self.rmw.lock().await;
        let entry = match self.get_tc_token(jid).await? {
            Some(existing) => TcTokenEntry {
                sender_timestamp: Some(
                    existing
                        .sender_timestamp
                        .map_or(sender_timestamp, |e| e.max(sender_timestamp)),
                ),
                ..existing
            },
            None => TcTokenEntry {
                token: Vec::new(),
                token_timestamp: sender_timestamp,
                sender_timestamp: Some(sender_timestamp),
            },
        };
        self.put_tc_token(jid, &entry).await
    }

    async fn store_received_tc_token(
        &self,
        jid: &str,
        token: &[u8],
        token_timestamp: i64,
    ) -> Result<()> {
        let _guard = self.rmw.lock().await;
        let existing = self.get_tc_token(jid).await?;
        if let Some(existing) = &existing
            && !existing.token.is_empty()
            && token_timestamp < existing.token_timestamp
        {
            return Ok(());
        }
        let sender_timestamp = existing.and_then(|existing| existing.sender_timestamp);
        self.put_tc_token(
            jid,
            &TcTokenEntry {
                token: token.to_vec(),
                token_timestamp,
                sender_timestamp,
            },
        )
        .await
    }

    async fn store_sent_message(
        &self,
        chat_jid: &str,
        message_id: &str,
        payload: &[u8],
    ) -> Result<()> {
        self.put(
            ns::SENT,
            &joined(&[chat_jid, message_id]),
            &stamped(now_secs(), payload),
        )
        .await
    }

    async fn take_sent_message(&self, chat_jid: &str, message_id: &str) -> Result<Option<Vec<u8>>> {
        let _guard = self.rmw.lock().await;
        let key = joined(&[chat_jid, message_id]);
        let Some(record) = self.get(ns::SENT, &key).await? else {
            return Ok(None);
        };
        self.delete(ns::SENT, &key).await?;
        Ok(Some(unstamp(&record)?.1.to_vec()))
    }

    async fn delete_expired_sent_messages(&self, cutoff_timestamp: i64) -> Result<u32> {
        // wafleet's own map of sent ids rides on whatsapp-rust's retention sweep.
        if let Err(error) = self.prune_outbound().await {
            tracing::debug!(device_id = self.device_id(), %error, "cannot prune the outbound ids");
        }
        self.delete_stamped_before(ns::SENT, cutoff_timestamp).await
    }

    async fn store_pending_inbound(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
        message: &[u8],
    ) -> Result<()> {
        self.put(
            ns::PENDING_INBOUND,
            &joined(&[chat, sender, id]),
            &stamped(now_secs(), message),
        )
        .await
    }

    async fn get_pending_inbound(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
    ) -> Result<Option<Vec<u8>>> {
        self.get(ns::PENDING_INBOUND, &joined(&[chat, sender, id]))
            .await?
            .map(|record| Ok(unstamp(&record)?.1.to_vec()))
            .transpose()
    }

    async fn delete_pending_inbound(&self, chat: &str, sender: &str, id: &str) -> Result<()> {
        self.delete(ns::PENDING_INBOUND, &joined(&[chat, sender, id]))
            .await
    }

    async fn delete_expired_pending_inbound(&self, cutoff_timestamp: i64) -> Result<u32> {
        self.delete_stamped_before(ns::PENDING_INBOUND, cutoff_timestamp)
            .await
    }

    async fn store_pending_inbound_batch(&self, rows: &[PendingInboundRow<'_>]) -> Result<()> {
        for row in rows {
            self.store_pending_inbound(row.chat, row.sender, row.id, row.message)
                .await?;
        }
        Ok(())
    }

    async fn delete_pending_inbound_batch(&self, keys: &[PendingInboundKey<'_>]) -> Result<()> {
        for key in keys {
            self.delete_pending_inbound(key.chat, key.sender, key.id)
                .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl MsgSecretStore for VaultBackend {
    async fn put_msg_secrets(&self, entries: Vec<MsgSecretEntry>) -> Result<usize> {
        let _guard = self.rmw.lock().await;
        let stored = entries.len();
        for entry in entries {
            let key = joined(&[&entry.chat, &entry.sender, &entry.msg_id]);
            let row = match self.get_json::<MsgSecretRow>(ns::MSG_SECRET, &key).await? {
                Some(existing) => MsgSecretRow {
                    secret: entry.secret.to_vec(),
                    expires_at: merge_msg_secret_expiry(existing.expires_at, entry.expires_at),
                    message_ts: merge_msg_secret_message_ts(existing.message_ts, entry.message_ts),
                },
                None => MsgSecretRow {
                    secret: entry.secret.to_vec(),
                    expires_at: entry.expires_at,
                    message_ts: entry.message_ts,
                },
            };
            self.put_json(ns::MSG_SECRET, &key, &row).await?;
        }
        Ok(stored)
    }

    async fn get_msg_secret(
        &self,
        chat: &str,
        sender: &str,
        msg_id: &str,
    ) -> Result<Option<Vec<u8>>> {
        Ok(self
            .get_msg_secret_with_ts(chat, sender, msg_id)
            .await?
            .map(|(secret, _)| secret))
    }

    async fn get_msg_secret_with_ts(
        &self,
        chat: &str,
        sender: &str,
        msg_id: &str,
    ) -> Result<Option<(Vec<u8>, i64)>> {
        Ok(self
            .get_json::<MsgSecretRow>(ns::MSG_SECRET, &joined(&[chat, sender, msg_id]))
            .await?
            .map(|row| (row.secret, row.message_ts)))
    }

    async fn delete_expired_msg_secrets(&self, cutoff_timestamp: i64) -> Result<u32> {
        let _guard = self.rmw.lock().await;
        let mut deleted = 0;
        for (key, bytes) in self.list(ns::MSG_SECRET).await? {
            let row: MsgSecretRow = from_json(&bytes)?;
            if row.expires_at != 0 && row.expires_at <= cutoff_timestamp {
                self.delete(ns::MSG_SECRET, &key).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

#[async_trait]
impl DeviceStore for VaultBackend {
    async fn save(&self, device: &Device) -> Result<()> {
        self.put_json(ns::DEVICE, DEVICE_KEY, device).await
    }

    async fn load(&self) -> Result<Option<Device>> {
        self.get_json(ns::DEVICE, DEVICE_KEY).await
    }

    async fn exists(&self) -> Result<bool> {
        Ok(self.get(ns::DEVICE, DEVICE_KEY).await?.is_some())
    }

    /// Stores a fresh device (new identity, noise key and registration id) unless one
    /// exists, so that the identity is fixed from the first open, not the first flush.
    async fn create(&self) -> Result<i32> {
        let _guard = self.rmw.lock().await;
        if self.get(ns::DEVICE, DEVICE_KEY).await?.is_none() {
            self.save(&Device::new()).await?;
        }
        Ok(DEVICE_ROW_ID)
    }
}

/// The state whatsapp-rust keeps, grouped by namespace: what the README's "what
/// wafleet stores" section lists.
pub const NAMESPACES: &[(&str, &str)] = &[
    (
        ns::DEVICE,
        "noise key, identity key, registration id, signed pre-key, account",
    ),
    (ns::META, "the key salt and the latest app-state key id"),
    (ns::IDENTITY, "contacts' identity keys"),
    (ns::SESSION, "Signal sessions"),
    (ns::PREKEY, "one-time pre-keys"),
    (ns::SIGNED_PREKEY, "signed pre-keys"),
    (ns::SENDER_KEY, "group sender keys"),
    (ns::SYNC_KEY, "app-state sync keys"),
    (ns::APP_VERSION, "app-state collection versions"),
    (
        ns::MUTATION_MAC,
        "app-state mutation MACs (one namespace per collection)",
    ),
    (
        ns::SENDER_KEY_DEVICES,
        "which group devices hold our sender key",
    ),
    (ns::LID, "LID to phone number mappings"),
    (ns::PN, "phone number to LID index"),
    (ns::BASE_KEY, "base keys for retry collision detection"),
    (ns::DEVICE_LIST, "contacts' device lists"),
    (ns::GROUP, "group metadata cache"),
    (ns::TC_TOKEN, "trusted-contact privacy tokens"),
    (ns::SENT, "recently sent messages, for retry receipts"),
    (
        ns::PENDING_INBOUND,
        "inbound messages awaiting a durability commit",
    ),
    (ns::MSG_SECRET, "message secrets (polls, reactions, edits)"),
    (
        ns::OUTBOUND,
        "wafleet message id of each WhatsApp message id sent, for 14 days",
    ),
    (
        ns::OUTBOUND_UNSTAMPED,
        "the same, as first written (read only)",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_opens_to_what_was_sealed_in_it() {
        let sealed = envelope("123@s.whatsapp.net", b"payload");
        assert_eq!(
            open_envelope(&sealed).unwrap(),
            ("123@s.whatsapp.net", &b"payload"[..])
        );
        assert!(open_envelope(&sealed[..3]).is_err());
        assert!(open_envelope(&[0, 0, 0, 9, b'x']).is_err());
    }

    #[test]
    fn hex_is_lowercase_and_two_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }
}
