//! Sealed per-device key/value records: what a link keeps (credentials, protocol state),
//! encrypted before it reaches the [`Store`](crate::store::Store).
//!
//! A [`DeviceVault`] carries the [`Fence`] of its device's shard, set by whoever runs the
//! device: every write goes to the store with it, so once another node has taken the
//! shard over, this vault's writes fail with [`StoreError::Fenced`] and change nothing.
//! A vault without a fence (standalone, operator actions) writes unfenced.

use std::sync::Arc;

use crate::seal::Sealer;
use crate::store::{Fence, SealedBlob, Store, StoreError};

/// Failures of the vault.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored value does not open under any known key: lost key, or tampering.
    #[error("stored {namespace}/{key} cannot be decrypted")]
    Corrupt { namespace: String, key: String },
}

/// Seals and opens link state for any device.
#[derive(Debug, Clone)]
pub struct Vault {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
}

impl Vault {
    pub fn new(store: Arc<dyn Store>, sealer: Arc<Sealer>) -> Vault {
        Vault { store, sealer }
    }

    /// The vault of one device, writing under `fence` (`None`: unfenced, only where no
    /// cluster runs or for operator actions; see [`Store`]'s docs).
    pub fn device(&self, device_id: &str, fence: Option<Fence>) -> DeviceVault {
        DeviceVault {
            device_id: device_id.into(),
            fence,
            vault: self.clone(),
        }
    }
}

/// The sealed key/value records of one device.
#[derive(Debug, Clone)]
pub struct DeviceVault {
    device_id: Arc<str>,
    /// Proof that this node owns the device, carried by every write.
    fence: Option<Fence>,
    vault: Vault,
}

impl DeviceVault {
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// The store behind the vault (tests build other parts on it).
    #[cfg(test)]
    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.vault.store
    }

    /// The fence this vault's writes carry.
    pub fn fence(&self) -> Option<Fence> {
        self.fence
    }

    /// The value under `namespace/key`, opened; `Corrupt` if it does not decrypt.
    pub async fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, VaultError> {
        let Some(blob) = self
            .vault
            .store
            .get_link_state(&self.device_id, namespace, key)
            .await?
        else {
            return Ok(None);
        };
        self.open(namespace, key, &blob).map(Some)
    }

    /// Whether any of `keys` of `namespace` holds a value (nothing is opened).
    pub async fn any(&self, namespace: &str, keys: &[String]) -> Result<bool, VaultError> {
        Ok(self
            .vault
            .store
            .any_link_state(&self.device_id, namespace, keys)
            .await?)
    }

    /// Seals `value` and stores it under `namespace/key`.
    pub async fn put(&self, namespace: &str, key: &str, value: &[u8]) -> Result<(), VaultError> {
        let blob = self
            .vault
            .sealer
            .seal(&self.device_id, namespace, key, value);
        self.vault
            .store
            .put_link_state(&self.device_id, namespace, key, &blob, self.fence.as_ref())
            .await?;
        Ok(())
    }

    /// The values under those of `keys` of `namespace` that hold one, opened, as
    /// (key, value) in no particular order; `Corrupt` if one does not decrypt.
    pub async fn get_many(
        &self,
        namespace: &str,
        keys: &[String],
    ) -> Result<Vec<(String, Vec<u8>)>, VaultError> {
        let records = self
            .vault
            .store
            .get_link_state_many(&self.device_id, namespace, keys)
            .await?;
        self.open_all(namespace, records)
    }

    /// Seals each value and stores them under `namespace`, in one write where the
    /// store can ([`Store::put_link_state_many`]).
    pub async fn put_many(
        &self,
        namespace: &str,
        records: &[(String, Vec<u8>)],
    ) -> Result<(), VaultError> {
        let sealed: Vec<_> = records
            .iter()
            .map(|(key, value)| {
                let blob = self
                    .vault
                    .sealer
                    .seal(&self.device_id, namespace, key, value);
                (key.clone(), blob)
            })
            .collect();
        self.vault
            .store
            .put_link_state_many(&self.device_id, namespace, &sealed, self.fence.as_ref())
            .await?;
        Ok(())
    }

    /// Every record of `namespace`, opened, ordered by key; `Corrupt` if one does not
    /// decrypt.
    pub async fn list(&self, namespace: &str) -> Result<Vec<(String, Vec<u8>)>, VaultError> {
        let records = self
            .vault
            .store
            .list_link_state(&self.device_id, namespace)
            .await?;
        self.open_all(namespace, records)
    }

    /// Opens each of `records` of `namespace`; `Corrupt` if one does not decrypt.
    fn open_all(
        &self,
        namespace: &str,
        records: Vec<(String, SealedBlob)>,
    ) -> Result<Vec<(String, Vec<u8>)>, VaultError> {
        records
            .into_iter()
            .map(|(key, blob)| {
                let value = self.open(namespace, &key, &blob)?;
                Ok((key, value))
            })
            .collect()
    }

    /// Opens the record `namespace/key`; `Corrupt` if it does not decrypt.
    fn open(&self, namespace: &str, key: &str, blob: &SealedBlob) -> Result<Vec<u8>, VaultError> {
        self.vault
            .sealer
            .open(&self.device_id, namespace, key, blob)
            .map_err(|_| VaultError::Corrupt {
                namespace: namespace.to_owned(),
                key: key.to_owned(),
            })
    }

    pub async fn delete(&self, namespace: &str, key: &str) -> Result<bool, VaultError> {
        Ok(self
            .vault
            .store
            .delete_link_state(&self.device_id, namespace, key, self.fence.as_ref())
            .await?)
    }

    /// Forgets everything the device's link kept (logout).
    pub async fn clear(&self) -> Result<u64, VaultError> {
        Ok(self
            .vault
            .store
            .clear_link_state(&self.device_id, self.fence.as_ref())
            .await?)
    }
}

impl VaultError {
    /// Whether the write was refused because this node no longer owns the device.
    pub fn is_fenced(&self) -> bool {
        matches!(self, VaultError::Store(StoreError::Fenced { .. }))
    }
}
