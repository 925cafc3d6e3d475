//! [`MeteredStore`]: any [`Store`] with every call timed and every error counted
//! (`wafleet_store_request_duration_seconds{operation}`,
//! `wafleet_store_errors_total{operation,kind}`), by delegation. Nodes and gateways
//! open their store wrapped in it.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::{
    Acquired, DeviceId, DevicePage, DevicePatch, DeviceQuery, DeviceRecord, DeviceStatus, Fence,
    InsertOutcome, Lease, MessageRecord, MessageStatus, SealedBlob, Setting, Store, StoreError,
};
use crate::metrics;

/// Every operation label [`MeteredStore`] records: the methods of [`Store`] (the
/// single-lease helpers are their bulk methods, counted as those; `shards`, which only
/// returns a number the store holds, is not timed).
pub const OPERATIONS: &[&str] = &[
    "create_device",
    "get_device",
    "patch_device",
    "list_devices",
    "wanted_devices_in_shards",
    "count_devices_by_status",
    "delete_device",
    "put_link_state",
    "get_link_state",
    "list_link_state",
    "delete_link_state",
    "clear_link_state",
    "insert_message",
    "get_message",
    "advance_message",
    "queued_messages",
    "count_queued",
    "devices_with_queued",
    "reschedule_message",
    "outbound_slots",
    "get_setting",
    "put_setting",
    "acquire_leases",
    "renew_leases",
    "release_leases",
    "get_lease",
    "list_leases",
];

/// A [`Store`] that records the duration and errors of each call to the store inside.
#[derive(Debug, Clone)]
pub struct MeteredStore {
    inner: Arc<dyn Store>,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn Store>) -> MeteredStore {
        MeteredStore { inner }
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = call.await;
        metrics::store_call(operation, started.elapsed(), result.as_ref().err());
        result
    }
}

#[async_trait]
impl Store for MeteredStore {
    async fn create_device(&self, device: &DeviceRecord) -> Result<(), StoreError> {
        self.timed("create_device", self.inner.create_device(device))
            .await
    }

    async fn get_device(&self, id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        self.timed("get_device", self.inner.get_device(id)).await
    }

    async fn patch_device(
        &self,
        id: &str,
        patch: &DevicePatch,
        now_ms: i64,
        fence: Option<&Fence>,
    ) -> Result<DeviceRecord, StoreError> {
        self.timed(
            "patch_device",
            self.inner.patch_device(id, patch, now_ms, fence),
        )
        .await
    }

    async fn list_devices(&self, query: &DeviceQuery) -> Result<DevicePage, StoreError> {
        self.timed("list_devices", self.inner.list_devices(query))
            .await
    }

    async fn wanted_devices_in_shards(&self, shards: &[u32]) -> Result<Vec<DeviceId>, StoreError> {
        self.timed(
            "wanted_devices_in_shards",
            self.inner.wanted_devices_in_shards(shards),
        )
        .await
    }

    fn shards(&self) -> u32 {
        self.inner.shards()
    }

    async fn count_devices_by_status(&self) -> Result<Vec<(DeviceStatus, u64)>, StoreError> {
        self.timed(
            "count_devices_by_status",
            self.inner.count_devices_by_status(),
        )
        .await
    }

    async fn delete_device(&self, id: &str) -> Result<bool, StoreError> {
        self.timed("delete_device", self.inner.delete_device(id))
            .await
    }

    async fn put_link_state(
        &self,
        device_id: &str,
        namespace: &str,
        key: &str,
        value: &SealedBlob,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        self.timed(
            "put_link_state",
            self.inner
                .put_link_state(device_id, namespace, key, value, fence),
        )
        .await
    }

    async fn get_link_state(
        &self,
        device_id: &str,
        namespace: &str,
        key: &str,
    ) -> Result<Option<SealedBlob>, StoreError> {
        self.timed(
            "get_link_state",
            self.inner.get_link_state(device_id, namespace, key),
        )
        .await
    }

    async fn list_link_state(
        &self,
        device_id: &str,
        namespace: &str,
    ) -> Result<Vec<(String, SealedBlob)>, StoreError> {
        self.timed(
            "list_link_state",
            self.inner.list_link_state(device_id, namespace),
        )
        .await
    }

    async fn delete_link_state(
        &self,
        device_id: &str,
        namespace: &str,
        key: &str,
        fence: Option<&Fence>,
    ) -> Result<bool, StoreError> {
        self.timed(
            "delete_link_state",
            self.inner
                .delete_link_state(device_id, namespace, key, fence),
        )
        .await
    }

    async fn clear_link_state(
        &self,
        device_id: &str,
        fence: Option<&Fence>,
    ) -> Result<u64, StoreError> {
        self.timed(
            "clear_link_state",
            self.inner.clear_link_state(device_id, fence),
        )
        .await
    }

    async fn insert_message(&self, message: &MessageRecord) -> Result<InsertOutcome, StoreError> {
        self.timed("insert_message", self.inner.insert_message(message))
            .await
    }

    async fn get_message(
        &self,
        device_id: &str,
        message_id: &str,
    ) -> Result<Option<MessageRecord>, StoreError> {
        self.timed("get_message", self.inner.get_message(device_id, message_id))
            .await
    }

    async fn advance_message(
        &self,
        device_id: &str,
        message_id: &str,
        status: MessageStatus,
        at_ms: i64,
        error: Option<&str>,
    ) -> Result<Option<MessageRecord>, StoreError> {
        self.timed(
            "advance_message",
            self.inner
                .advance_message(device_id, message_id, status, at_ms, error),
        )
        .await
    }

    async fn queued_messages(
        &self,
        device_id: &str,
        limit: u32,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        self.timed(
            "queued_messages",
            self.inner.queued_messages(device_id, limit),
        )
        .await
    }

    async fn count_queued(&self, device_id: &str, limit: u32) -> Result<u32, StoreError> {
        self.timed("count_queued", self.inner.count_queued(device_id, limit))
            .await
    }

    async fn devices_with_queued(&self, limit: u32) -> Result<Vec<DeviceId>, StoreError> {
        self.timed("devices_with_queued", self.inner.devices_with_queued(limit))
            .await
    }

    async fn reschedule_message(
        &self,
        device_id: &str,
        message_id: &str,
        not_before_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        self.timed(
            "reschedule_message",
            self.inner
                .reschedule_message(device_id, message_id, not_before_ms),
        )
        .await
    }

    async fn outbound_slots(
        &self,
        device_id: &str,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<i64>, StoreError> {
        self.timed(
            "outbound_slots",
            self.inner.outbound_slots(device_id, since_ms, limit),
        )
        .await
    }

    async fn get_setting(&self, key: &str) -> Result<Option<Setting>, StoreError> {
        self.timed("get_setting", self.inner.get_setting(key)).await
    }

    async fn put_setting(&self, key: &str, value: &str, now_ms: i64) -> Result<(), StoreError> {
        self.timed("put_setting", self.inner.put_setting(key, value, now_ms))
            .await
    }

    async fn acquire_leases(
        &self,
        holder: &str,
        shards: &[u32],
        now_ms: i64,
        ttl_ms: u64,
    ) -> Result<Vec<Acquired>, StoreError> {
        self.timed(
            "acquire_leases",
            self.inner.acquire_leases(holder, shards, now_ms, ttl_ms),
        )
        .await
    }

    async fn renew_leases(
        &self,
        holder: &str,
        leases: &[Fence],
        now_ms: i64,
        ttl_ms: u64,
    ) -> Result<Vec<bool>, StoreError> {
        self.timed(
            "renew_leases",
            self.inner.renew_leases(holder, leases, now_ms, ttl_ms),
        )
        .await
    }

    async fn release_leases(
        &self,
        holder: &str,
        leases: &[Fence],
    ) -> Result<Vec<bool>, StoreError> {
        self.timed("release_leases", self.inner.release_leases(holder, leases))
            .await
    }

    async fn get_lease(&self, shard: u32) -> Result<Option<Lease>, StoreError> {
        self.timed("get_lease", self.inner.get_lease(shard)).await
    }

    async fn list_leases(&self, holder: Option<&str>) -> Result<Vec<Lease>, StoreError> {
        self.timed("list_leases", self.inner.list_leases(holder))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;
    use crate::store::record::TrustLevel;

    fn device(id: &str) -> DeviceRecord {
        DeviceRecord {
            id: id.into(),
            name: id.into(),
            tenant: "default".into(),
            status: DeviceStatus::Stopped,
            status_reason: None,
            trust_level: TrustLevel::Newcomer,
            phone: None,
            webhook: None,
            desired_running: false,
            created_at_ms: 1,
            updated_at_ms: 1,
            last_connected_at_ms: None,
        }
    }

    /// Runs `work` on this thread with a Prometheus recorder of its own; returns what
    /// the recorder renders.
    fn recorded(work: impl AsyncFnOnce()) -> String {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        ::metrics::with_local_recorder(&recorder, || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(work());
        });
        handle.render()
    }

    #[test]
    fn records_a_sample_per_call_and_counts_errors_by_kind() {
        let dir = tempfile::tempdir().unwrap();
        let text = recorded(async || {
            let inner = SqliteStore::open(&dir.path().join("w.db")).unwrap();
            let store = MeteredStore::new(Arc::new(inner));
            store.create_device(&device("a")).await.unwrap();
            assert!(store.get_device("a").await.unwrap().is_some());
            assert!(matches!(
                store.create_device(&device("a")).await,
                Err(StoreError::Conflict { .. })
            ));
        });
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
                .to_owned()
        };
        assert!(
            line("wafleet_store_request_duration_seconds_count{operation=\"create_device\"}")
                .ends_with(" 2")
        );
        assert!(
            line("wafleet_store_request_duration_seconds_count{operation=\"get_device\"}")
                .ends_with(" 1")
        );
        assert!(
            line("wafleet_store_errors_total{operation=\"create_device\",kind=\"conflict\"}")
                .ends_with(" 1")
        );
        assert!(!text.contains("operation=\"get_device\",kind="), "{text}");
    }
}
