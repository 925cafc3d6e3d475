//! Per-tenant data keys: what message texts, webhook payloads and event payloads are
//! sealed with at rest.
//!
//! Each tenant has numbered data keys (AES-256), created on first use. A data key is
//! stored only wrapped by the master key ([`Sealer`]), as a directory record of kind
//! [`AccessKind::DataKey`] with id `<tenant>/<version, 10 digits>`; what it seals names
//! the key's version, so that a tenant's key can be rotated ([`DataKeys::rotate`]: new
//! texts get the new version, old ones still open) and the master key too
//! ([`DataKeys::rewrap_all`]: every data key is wrapped again under the master key's
//! current version, while the texts sealed with them stay as they are).
//!
//! Unwrapped keys are cached for the life of the process (they never change); which
//! version is a tenant's current one is read again after [`CURRENT_TTL`], so that a
//! rotation made elsewhere reaches every process within that time.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use aes_gcm::aead::KeyInit;
use aes_gcm::{Aes256Gcm, Key};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use super::text::{Place, SealedText};
use super::{SealError, Sealer, decrypt, encrypt};
use crate::clock::now_ms;
use crate::store::{AccessKind, AccessQuery, AccessRecord, SealedBlob, Store, StoreError};

/// How long a process trusts what it read of a tenant's current key version.
pub const CURRENT_TTL: Duration = Duration::from_secs(60);
/// The namespace data keys are wrapped under (the master key's associated data).
const WRAP_NAMESPACE: &str = "data-key";
/// Records read per page when walking every data key.
const PAGE: u32 = 500;

/// One tenant's data key of one version, unwrapped.
#[derive(Clone)]
pub struct DataKey {
    tenant: Arc<str>,
    version: u32,
    cipher: Arc<Aes256Gcm>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("tenant", &self.tenant)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl DataKey {
    /// Seals `plaintext` for `place` under this key (fresh random nonce).
    ///
    /// # Panics
    /// If the operating system's random source fails (as [`Sealer::seal`]).
    pub fn seal(&self, place: &Place<'_>, plaintext: &str) -> SealedText {
        let aad = place.associated_data(&self.tenant);
        let bytes = encrypt(&self.cipher, &aad, plaintext.as_bytes());
        SealedText::new(&self.tenant, self.version, &bytes)
    }

    fn open(&self, place: &Place<'_>, sealed: &SealedText) -> Result<String, SealError> {
        let aad = place.associated_data(&self.tenant);
        let plain = decrypt(&self.cipher, &aad, &sealed.bytes()?)?;
        String::from_utf8(plain).map_err(|_| SealError::Unauthentic)
    }
}

/// A data key as stored: wrapped by the master key.
#[derive(Debug, Serialize, Deserialize)]
struct StoredDataKey {
    tenant: String,
    version: u32,
    /// The master key version that wrapped it.
    master_version: u32,
    /// `nonce || ciphertext || tag`, base64.
    wrapped: String,
    created_at_ms: i64,
}

/// What [`DataKeys::rewrap_all`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rewrapped {
    /// Data keys wrapped again under the master key's current version.
    pub rewrapped: u64,
    /// Data keys that already were.
    pub current: u64,
}

/// Every tenant's data keys, for one process. Cheap to share (`Arc`).
pub struct DataKeys {
    store: Arc<dyn Store>,
    master: Arc<Sealer>,
    /// Tenant → version → key: every key this process has unwrapped.
    keys: RwLock<HashMap<Arc<str>, HashMap<u32, DataKey>>>,
    /// Tenant → its current key, and when that was read.
    current: RwLock<HashMap<Arc<str>, (DataKey, Instant)>>,
}

impl std::fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeys")
            .field("master", &self.master)
            .finish_non_exhaustive()
    }
}

impl DataKeys {
    pub fn new(store: Arc<dyn Store>, master: Arc<Sealer>) -> DataKeys {
        DataKeys {
            store,
            master,
            keys: RwLock::default(),
            current: RwLock::default(),
        }
    }

    /// The master key that wraps the data keys (and seals credentials).
    pub fn master(&self) -> &Arc<Sealer> {
        &self.master
    }

    /// The tenant's current data key, made (version 1) if the tenant has none yet.
    pub async fn current(&self, tenant: &str) -> Result<DataKey, StoreError> {
        if let Some((key, _)) = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(tenant)
            .filter(|(_, read_at)| read_at.elapsed() < CURRENT_TTL)
        {
            return Ok(key.clone());
        }
        let version = match self.latest(tenant).await? {
            Some(version) => version,
            None => self.create(tenant, 1).await?,
        };
        self.make_current(tenant, version).await
    }

    /// Reads the tenant's key of `version` and makes it the current one here.
    async fn make_current(&self, tenant: &str, version: u32) -> Result<DataKey, StoreError> {
        let key = self.version(tenant, version).await?;
        self.current
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.tenant.clone(), (key.clone(), Instant::now()));
        Ok(key)
    }

    /// Seals `plaintext` for `place` with the tenant's current key.
    pub async fn seal(
        &self,
        tenant: &str,
        place: &Place<'_>,
        plaintext: &str,
    ) -> Result<SealedText, StoreError> {
        Ok(self.current(tenant).await?.seal(place, plaintext))
    }

    /// The text `stored` holds for `place`: opened if it is sealed, as it is if it was
    /// stored before texts were sealed. A sealed text that does not open (corrupt, moved,
    /// or sealed with a key this store does not hold) is [`StoreError::Corrupt`].
    pub async fn open(&self, place: &Place<'_>, stored: &str) -> Result<String, StoreError> {
        let Some(sealed) = SealedText::parse(stored).map_err(|e| unreadable(place, e))? else {
            return Ok(stored.to_owned());
        };
        let key = self.version(sealed.tenant(), sealed.version()).await?;
        key.open(place, &sealed).map_err(|e| unreadable(place, e))
    }

    /// Starts a new data key version for the tenant: what is sealed from now on (in
    /// every process within [`CURRENT_TTL`]) uses it; what was sealed before still
    /// opens. Returns the new version.
    pub async fn rotate(&self, tenant: &str) -> Result<u32, StoreError> {
        let next = self.latest(tenant).await?.unwrap_or(0) + 1;
        let version = self.create(tenant, next).await?;
        self.make_current(tenant, version).await?;
        Ok(version)
    }

    /// Wraps every tenant's every data key again under the master key's current
    /// version (after a master key rotation), so that the previous master key can be
    /// retired. Nothing sealed with the data keys changes, and processes that hold the
    /// keys unwrapped go on as they were: safe while the system runs.
    pub async fn rewrap_all(&self) -> Result<Rewrapped, StoreError> {
        let mut done = Rewrapped::default();
        let mut after = None;
        loop {
            let page = self
                .store
                .list_access(&AccessQuery {
                    kind: AccessKind::DataKey,
                    tenant: None,
                    after: after.clone(),
                    limit: PAGE,
                })
                .await?;
            let Some(last) = page.last() else {
                return Ok(done);
            };
            after = Some(last.id.clone());
            for record in &page {
                let stored = parse_record(record)?;
                if stored.master_version == self.master.current_version() {
                    done.current += 1;
                    continue;
                }
                let raw = self.unwrap(&record.id, &stored)?;
                let rewrapped = self.wrap(&record.id, &stored.tenant, stored.version, &raw);
                self.store
                    .update_access(&AccessRecord {
                        body: rewrapped,
                        updated_at_ms: now_ms(),
                        ..record.clone()
                    })
                    .await?;
                done.rewrapped += 1;
            }
        }
    }

    /// The tenant's key of `version`, from the cache or the store.
    async fn version(&self, tenant: &str, version: u32) -> Result<DataKey, StoreError> {
        if let Some(key) = self
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(tenant)
            .and_then(|versions| versions.get(&version))
        {
            return Ok(key.clone());
        }
        let id = record_id(tenant, version);
        let record = self
            .store
            .get_access(AccessKind::DataKey, &id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("data key {id} is missing")))?;
        let stored = parse_record(&record)?;
        let raw = self.unwrap(&id, &stored)?;
        Ok(self.remember(tenant, version, raw))
    }

    /// The tenant's highest data key version in the store.
    async fn latest(&self, tenant: &str) -> Result<Option<u32>, StoreError> {
        let mut after = None;
        let mut latest = None;
        loop {
            let page = self
                .store
                .list_access(&AccessQuery {
                    kind: AccessKind::DataKey,
                    tenant: Some(tenant.to_owned()),
                    after: after.clone(),
                    limit: PAGE,
                })
                .await?;
            let Some(last) = page.last() else {
                return Ok(latest);
            };
            after = Some(last.id.clone());
            for record in &page {
                let version = parse_record(record)?.version;
                latest = Some(latest.map_or(version, |l: u32| l.max(version)));
            }
        }
    }

    /// Makes the tenant's key of `version`; if another process made it first, that
    /// one is the key. Returns `version`.
    async fn create(&self, tenant: &str, version: u32) -> Result<u32, StoreError> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw)
            .map_err(|e| StoreError::Unavailable(format!("os random source failed: {e}")))?;
        let id = record_id(tenant, version);
        let record = AccessRecord {
            kind: AccessKind::DataKey,
            id: id.clone(),
            tenant: Some(tenant.to_owned()),
            body: self.wrap(&id, tenant, version, &raw),
            updated_at_ms: now_ms(),
        };
        match self.store.create_access(&record).await {
            Ok(()) => {
                tracing::info!(tenant, version, "made a data key");
                self.remember(tenant, version, raw);
                Ok(version)
            }
            // Made meanwhile by another process (or task): the stored one is the key.
            Err(StoreError::Conflict { .. }) => Ok(version),
            Err(error) => Err(error),
        }
    }

    fn remember(&self, tenant: &str, version: u32, raw: [u8; 32]) -> DataKey {
        let key = DataKey {
            tenant: Arc::from(tenant),
            version,
            cipher: Arc::new(Aes256Gcm::new(&Key::<Aes256Gcm>::from(raw))),
        };
        self.keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.tenant.clone())
            .or_default()
            .insert(version, key.clone());
        key
    }

    /// The record body of a data key wrapped under the master key's current version.
    fn wrap(&self, id: &str, tenant: &str, version: u32, raw: &[u8; 32]) -> String {
        let blob = self.master.seal(tenant, WRAP_NAMESPACE, id, raw);
        serde_json::to_string(&StoredDataKey {
            tenant: tenant.to_owned(),
            version,
            master_version: blob.key_version,
            wrapped: BASE64.encode(&blob.bytes),
            created_at_ms: now_ms(),
        })
        .expect("a data key record serializes")
    }

    fn unwrap(&self, id: &str, stored: &StoredDataKey) -> Result<[u8; 32], StoreError> {
        let bytes = BASE64
            .decode(&stored.wrapped)
            .map_err(|_| StoreError::Corrupt(format!("data key {id} is not base64")))?;
        let blob = SealedBlob {
            key_version: stored.master_version,
            bytes,
        };
        let raw = self
            .master
            .open(&stored.tenant, WRAP_NAMESPACE, id, &blob)
            .map_err(|e| StoreError::Corrupt(format!("data key {id} cannot be unwrapped: {e}")))?;
        <[u8; 32]>::try_from(raw)
            .map_err(|_| StoreError::Corrupt(format!("data key {id} is not 32 bytes")))
    }
}

/// `<tenant>/<version>`, the version zero-padded so that ids sort by version.
fn record_id(tenant: &str, version: u32) -> String {
    format!("{tenant}/{version:010}")
}

fn parse_record(record: &AccessRecord) -> Result<StoredDataKey, StoreError> {
    let stored: StoredDataKey = serde_json::from_str(&record.body)
        .map_err(|e| StoreError::Corrupt(format!("data key {}: {e}", record.id)))?;
    if record_id(&stored.tenant, stored.version) != record.id {
        return Err(StoreError::Corrupt(format!(
            "data key {} names another place ({}/{})",
            record.id, stored.tenant, stored.version
        )));
    }
    Ok(stored)
}

fn unreadable(place: &Place<'_>, error: SealError) -> StoreError {
    StoreError::Corrupt(format!("{place} cannot be opened: {error}"))
}

#[cfg(test)]
mod tests;
