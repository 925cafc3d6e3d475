//! [`AppSyncStore`]: app-state sync keys, collection versions and mutation MACs.

use async_trait::async_trait;
use whatsapp_rust::store::traits::{AppStateSyncKey, AppSyncStore};
use whatsapp_rust::wacore::appstate::hash::HashState;
use whatsapp_rust::wacore::appstate::processor::AppStateMutationMAC;
use whatsapp_rust::wacore::store::error::Result;

use super::records::hex;
use super::{LATEST_SYNC_KEY, VaultBackend, ns};

fn mutation_macs_namespace(collection: &str) -> String {
    format!("{}.{collection}", ns::MUTATION_MAC)
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
        self.put_json(ns::APP_VERSION, name, &state).await?;
        self.collection_was_synced(name);
        Ok(())
    }

    async fn put_mutation_macs(
        &self,
        name: &str,
        _version: u64,
        mutations: &[AppStateMutationMAC],
    ) -> Result<()> {
        let records: Vec<(String, Vec<u8>)> = mutations
            .iter()
            .map(|mutation| (hex(&mutation.index_mac), mutation.value_mac.clone()))
            .collect();
        self.put_many(&mutation_macs_namespace(name), &records)
            .await
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
