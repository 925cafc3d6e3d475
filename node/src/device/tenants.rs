//! Which tenant each device of this node belongs to, so that every event says it
//! (`tenant` in the event's data): SSE streams and webhooks of a tenant carry only its
//! events, and a device's tenant never changes, so what is learned stays true until the
//! device is deleted.
//!
//! Learned from every device row a status write returns (no extra read), and read from
//! the store for the rare event of a device no write has shown yet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::store::{DeviceRecord, Store, StoreError};

/// Device id → tenant, for the devices this node has seen.
#[derive(Debug, Default)]
pub struct DeviceTenants {
    known: Mutex<HashMap<String, Arc<str>>>,
}

impl DeviceTenants {
    /// Remembers the tenant of `record`.
    pub(crate) fn observe(&self, record: &DeviceRecord) {
        let mut known = self.known.lock().expect("tenants lock");
        if known.get(&record.id).is_none_or(|t| **t != *record.tenant) {
            known.insert(record.id.clone(), Arc::from(record.tenant.as_str()));
        }
    }

    /// The tenant of `device_id`, from memory or the store; `None` if the device is not
    /// in the store (deleted) or the store cannot say now.
    pub(crate) async fn of(&self, device_id: &str, store: &dyn Store) -> Option<Arc<str>> {
        self.lookup(device_id, store).await.unwrap_or_else(|error| {
            tracing::warn!(device_id, %error, "cannot read the device's tenant for its event");
            None
        })
    }

    /// The tenant of `device_id`, from memory or the store; `None` if the device is not
    /// in the store.
    pub(crate) async fn lookup(
        &self,
        device_id: &str,
        store: &dyn Store,
    ) -> Result<Option<Arc<str>>, StoreError> {
        if let Some(tenant) = self.known.lock().expect("tenants lock").get(device_id) {
            return Ok(Some(tenant.clone()));
        }
        Ok(store.get_device(device_id).await?.map(|record| {
            self.observe(&record);
            Arc::from(record.tenant.as_str())
        }))
    }

    /// Forgets a deleted device (its id may come back under another tenant).
    pub(crate) fn forget(&self, device_id: &str) {
        self.known.lock().expect("tenants lock").remove(device_id);
    }
}
