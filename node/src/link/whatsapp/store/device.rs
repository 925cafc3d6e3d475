//! [`DeviceStore`]: the one device row (noise key, identity, registration id, account).

use async_trait::async_trait;
use whatsapp_rust::store::traits::DeviceStore;
use whatsapp_rust::wacore::store::Device;
use whatsapp_rust::wacore::store::error::Result;

use super::{DEVICE_KEY, DEVICE_ROW_ID, VaultBackend, ns};

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
