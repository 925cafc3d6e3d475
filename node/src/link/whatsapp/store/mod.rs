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
//!
//! # Layout
//! - this file: the backend, its namespaces, and what the link session asks of it
//!   (closing, wiping, the map of sent message ids).
//! - `records`: vault keys, envelopes, and the reads and writes every trait goes through.
//! - `signal`, `app_sync`, `protocol`, `msg_secret`, `device`: one whatsapp-rust trait
//!   each ([`SignalStore`], [`AppSyncStore`], [`ProtocolStore`], [`MsgSecretStore`],
//!   [`DeviceStore`]).
//!
//! [`SignalStore`]: whatsapp_rust::store::traits::SignalStore
//! [`AppSyncStore`]: whatsapp_rust::store::traits::AppSyncStore
//! [`ProtocolStore`]: whatsapp_rust::store::traits::ProtocolStore
//! [`MsgSecretStore`]: whatsapp_rust::store::traits::MsgSecretStore
//! [`DeviceStore`]: whatsapp_rust::store::traits::DeviceStore

mod app_sync;
mod device;
mod msg_secret;
mod protocol;
mod records;
mod signal;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use tokio::sync::{Mutex, watch};
use whatsapp_rust::wacore::appstate::patch_decode::WAPatchName;
use whatsapp_rust::wacore::store::error::Result;

use self::records::{now_secs, stamped, unstamp};
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

/// The app-state collections a new device syncs after pairing.
const APP_STATE_COLLECTIONS: [WAPatchName; 5] = [
    WAPatchName::CriticalBlock,
    WAPatchName::CriticalUnblockLow,
    WAPatchName::RegularLow,
    WAPatchName::RegularHigh,
    WAPatchName::Regular,
];

/// The work whatsapp-rust does on a new device's first connection, as the backend sees
/// it stored: the pre-keys marked uploaded, and a version of each app-state collection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Setup {
    pub prekeys_uploaded: bool,
    /// One bit per [`APP_STATE_COLLECTIONS`] entry whose version was stored.
    collections: u8,
}

impl Setup {
    /// Whether all of it is stored.
    pub fn is_complete(&self) -> bool {
        self.prekeys_uploaded
            && usize::try_from(self.collections.count_ones()) == Ok(APP_STATE_COLLECTIONS.len())
    }
}

impl VaultBackend {
    fn prekeys_were_uploaded(&self) {
        self.setup
            .send_if_modified(|setup| !std::mem::replace(&mut setup.prekeys_uploaded, true));
    }

    fn collection_was_synced(&self, name: &str) {
        if let Some(index) = APP_STATE_COLLECTIONS
            .iter()
            .position(|c| c.as_str() == name)
        {
            self.setup.send_if_modified(|setup| {
                let before = setup.collections;
                setup.collections |= 1 << index;
                setup.collections != before
            });
        }
    }
}

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
    /// How far the work that follows a pairing got ([`Setup`]).
    setup: watch::Sender<Setup>,
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
            setup: watch::channel(Setup::default()).0,
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

    /// What this backend stored so far of the work that follows a pairing.
    pub fn setup(&self) -> watch::Receiver<Setup> {
        self.setup.subscribe()
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
