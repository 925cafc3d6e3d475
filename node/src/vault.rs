//! Sealed per-device key/value records: what a link keeps (credentials, protocol state),
//! encrypted before it reaches the [`Store`](crate::store::Store).

use std::sync::Arc;

use crate::seal::Sealer;
use crate::store::{Store, StoreError};

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

    /// The vault of one device.
    pub fn device(&self, device_id: &str) -> DeviceVault {
        DeviceVault {
            device_id: device_id.into(),
            vault: self.clone(),
        }
    }
}

/// The sealed key/value records of one device.
#[derive(Debug, Clone)]
pub struct DeviceVault {
    device_id: Arc<str>,
    vault: Vault,
}

impl DeviceVault {
    pub fn device_id(&self) -> &str {
        &self.device_id
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
        self.vault
            .sealer
            .open(&self.device_id, namespace, key, &blob)
            .map(Some)
            .map_err(|_| VaultError::Corrupt {
                namespace: namespace.to_owned(),
                key: key.to_owned(),
            })
    }

    /// Seals `value` and stores it under `namespace/key`.
    pub async fn put(&self, namespace: &str, key: &str, value: &[u8]) -> Result<(), VaultError> {
        let blob = self
            .vault
            .sealer
            .seal(&self.device_id, namespace, key, value);
        self.vault
            .store
            .put_link_state(&self.device_id, namespace, key, &blob, None)
            .await?;
        Ok(())
    }

    pub async fn delete(&self, namespace: &str, key: &str) -> Result<bool, VaultError> {
        Ok(self
            .vault
            .store
            .delete_link_state(&self.device_id, namespace, key, None)
            .await?)
    }

    /// Forgets everything the device's link kept (logout).
    pub async fn clear(&self) -> Result<u64, VaultError> {
        Ok(self
            .vault
            .store
            .clear_link_state(&self.device_id, None)
            .await?)
    }
}
