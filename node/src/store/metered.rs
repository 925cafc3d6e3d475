//! [`MeteredStore`]: any [`Store`] with every call timed and every error counted
//! (`wafleet_store_request_duration_seconds{operation}`,
//! `wafleet_store_errors_total{operation,kind}`), by delegation. Nodes and gateways
//! open their store wrapped in it. Tests give it a [`CallHook`] to slow every call down
//! (a ScyllaDB LWT takes about 5 ms) or to fail one.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::{
    AccessKind, AccessQuery, AccessRecord, Acquired, Attempt, AuditEntry, AuditQuery, Chat,
    ChatQuery, ContactQuery, ContactRecord, ContactUpsert, DeliveryBacklog, DeliveryOf,
    DeliveryRecord, DeliveryStatus, DeviceId, DevicePage, DevicePatch, DeviceQuery, DeviceRecord,
    DeviceRule, DeviceStatus, Fence, GuardedInsert, InsertOutcome, JobQuery, JobRecord, JobStatus,
    Lease, MessageQuery, MessageRecord, MessageStatus, NewDelivery, QueueKey, RecipientQuery,
    RecipientRecord, RecipientStatus, ReplayWhich, RunStart, SealedBlob, Setting, Store,
    StoreError, TagCount, Upserted,
};
use crate::metrics;

/// Runs before each timed call of a [`MeteredStore`]; an error is the call's result.
#[async_trait]
pub trait CallHook: Send + Sync + std::fmt::Debug {
    async fn before(&self, operation: &'static str) -> Result<(), StoreError>;
}

/// A [`Store`] that records the duration and errors of each call to the store inside.
#[derive(Debug, Clone)]
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    hook: Option<Arc<dyn CallHook>>,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn Store>) -> MeteredStore {
        MeteredStore { inner, hook: None }
    }

    /// The store with `hook` run before every timed call (for tests).
    pub fn with_hook(inner: Arc<dyn Store>, hook: Arc<dyn CallHook>) -> MeteredStore {
        MeteredStore {
            inner,
            hook: Some(hook),
        }
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = match &self.hook {
            Some(hook) => match hook.before(operation).await {
                Ok(()) => call.await,
                Err(error) => Err(error),
            },
            None => call.await,
        };
        metrics::store_call(operation, started.elapsed(), result.as_ref().err());
        result
    }
}

/// Declares [`MeteredStore`]'s `impl Store` and [`OPERATIONS`] from one list of
/// signatures, so that a method cannot be delegated without being a label, or the other
/// way round. `untimed` methods are delegated as they are; each `timed` one is delegated
/// through [`MeteredStore::timed`] under its own name.
macro_rules! metered_store {
    (
        untimed {
            $(fn $plain:ident(&self) -> $plain_output:ty;)*
        }
        timed {
            $(async fn $name:ident(&self $(, $arg:ident: $arg_type:ty)* $(,)?) -> $output:ty;)*
        }
    ) => {
        /// Every operation label [`MeteredStore`] records: the methods of [`Store`] (the
        /// single-lease helpers are their bulk methods, counted as those; `shards`, which
        /// only returns a number the store holds, is not timed).
        pub const OPERATIONS: &[&str] = &[$(stringify!($name)),*];

        #[async_trait]
        impl Store for MeteredStore {
            $(
                fn $plain(&self) -> $plain_output {
                    self.inner.$plain()
                }
            )*
            $(
                async fn $name(&self $(, $arg: $arg_type)*) -> $output {
                    self.timed(stringify!($name), self.inner.$name($($arg),*)).await
                }
            )*
        }
    };
}

// In the order of the trait. A method with a default body is listed too when a backend
// may override it (`begin_run`, `count_queued`, `insert_message_if`, `queued_messages_after`, `list_chats`); the single-lease helpers are not (their defaults
// call the bulk methods, which are timed). A test checks this list against the trait.
metered_store! {
    untimed {
        fn shards(&self) -> u32;
    }
    timed {
        async fn create_device(&self, device: &DeviceRecord) -> Result<(), StoreError>;
        async fn get_device(&self, id: &str) -> Result<Option<DeviceRecord>, StoreError>;
        async fn patch_device(
            &self,
            id: &str,
            patch: &DevicePatch,
            now_ms: i64,
            fence: Option<&Fence>,
        ) -> Result<DeviceRecord, StoreError>;
        async fn patch_device_recording(
            &self,
            id: &str,
            patch: &DevicePatch,
            now_ms: i64,
            fence: Option<&Fence>,
            then: DeliveryOf,
        ) -> Result<DeviceRecord, StoreError>;
        async fn begin_run(
            &self,
            id: &str,
            patch: &DevicePatch,
            now_ms: i64,
            fence: Option<&Fence>,
        ) -> Result<Option<RunStart>, StoreError>;
        async fn list_devices(&self, query: &DeviceQuery) -> Result<DevicePage, StoreError>;
        async fn wanted_devices_in_shards(
            &self,
            shards: &[u32],
        ) -> Result<Vec<DeviceId>, StoreError>;
        async fn count_devices_by_status(&self) -> Result<Vec<(DeviceStatus, u64)>, StoreError>;
        async fn count_tenant_devices_by_status(
            &self,
            tenant: &str,
        ) -> Result<Vec<(DeviceStatus, u64)>, StoreError>;
        async fn delete_device(&self, id: &str, fence: Option<&Fence>) -> Result<bool, StoreError>;

        async fn put_link_state(
            &self,
            device_id: &str,
            namespace: &str,
            key: &str,
            value: &SealedBlob,
            fence: Option<&Fence>,
        ) -> Result<(), StoreError>;
        async fn get_link_state(
            &self,
            device_id: &str,
            namespace: &str,
            key: &str,
        ) -> Result<Option<SealedBlob>, StoreError>;
        async fn any_link_state(
            &self,
            device_id: &str,
            namespace: &str,
            keys: &[String],
        ) -> Result<bool, StoreError>;
        async fn get_link_state_many(
            &self,
            device_id: &str,
            namespace: &str,
            keys: &[String],
        ) -> Result<Vec<(String, SealedBlob)>, StoreError>;
        async fn put_link_state_many(
            &self,
            device_id: &str,
            namespace: &str,
            records: &[(String, SealedBlob)],
            fence: Option<&Fence>,
        ) -> Result<(), StoreError>;
        async fn list_link_state(
            &self,
            device_id: &str,
            namespace: &str,
        ) -> Result<Vec<(String, SealedBlob)>, StoreError>;
        async fn delete_link_state(
            &self,
            device_id: &str,
            namespace: &str,
            key: &str,
            fence: Option<&Fence>,
        ) -> Result<bool, StoreError>;
        async fn clear_link_state(
            &self,
            device_id: &str,
            fence: Option<&Fence>,
        ) -> Result<u64, StoreError>;

        async fn insert_message(
            &self,
            message: &MessageRecord,
        ) -> Result<InsertOutcome, StoreError>;
        async fn insert_message_if(
            &self,
            message: &MessageRecord,
            rule: DeviceRule,
        ) -> Result<GuardedInsert, StoreError>;
        async fn get_message(
            &self,
            device_id: &str,
            message_id: &str,
        ) -> Result<Option<MessageRecord>, StoreError>;
        async fn advance_message(
            &self,
            device_id: &str,
            message_id: &str,
            status: MessageStatus,
            at_ms: i64,
            error: Option<&str>,
        ) -> Result<Option<MessageRecord>, StoreError>;
        async fn queued_messages(
            &self,
            device_id: &str,
            limit: u32,
        ) -> Result<Vec<MessageRecord>, StoreError>;
        async fn queued_messages_after(
            &self,
            device_id: &str,
            after: Option<&QueueKey>,
            limit: u32,
        ) -> Result<Vec<MessageRecord>, StoreError>;
        async fn count_queued(&self, device_id: &str, limit: u32) -> Result<u32, StoreError>;
        async fn devices_with_queued(
            &self,
            shards: &[u32],
            limit: u32,
        ) -> Result<Vec<DeviceId>, StoreError>;
        async fn reschedule_message(
            &self,
            device_id: &str,
            message_id: &str,
            not_before_ms: Option<i64>,
        ) -> Result<bool, StoreError>;
        async fn scheduled_messages(
            &self,
            device_id: &str,
            limit: u32,
        ) -> Result<Vec<MessageRecord>, StoreError>;
        async fn promote_message(
            &self,
            device_id: &str,
            message_id: &str,
            queued_at_ms: i64,
            not_before_ms: i64,
        ) -> Result<Option<MessageRecord>, StoreError>;
        async fn cancel_message(
            &self,
            device_id: &str,
            message_id: &str,
        ) -> Result<Option<MessageRecord>, StoreError>;
        async fn outbound_slots(
            &self,
            device_id: &str,
            since_ms: i64,
            limit: u32,
        ) -> Result<Vec<i64>, StoreError>;
        async fn list_messages(
            &self,
            device_id: &str,
            query: &MessageQuery,
        ) -> Result<Vec<MessageRecord>, StoreError>;
        async fn list_chats(&self, device_id: &str, query: &ChatQuery) -> Result<Vec<Chat>, StoreError>;

        async fn get_setting(&self, key: &str) -> Result<Option<Setting>, StoreError>;
        async fn put_setting(&self, key: &str, value: &str, now_ms: i64) -> Result<(), StoreError>;

        async fn create_access(&self, record: &AccessRecord) -> Result<(), StoreError>;
        async fn update_access(&self, record: &AccessRecord) -> Result<(), StoreError>;
        async fn get_access(
            &self,
            kind: AccessKind,
            id: &str,
        ) -> Result<Option<AccessRecord>, StoreError>;
        async fn list_access(&self, query: &AccessQuery) -> Result<Vec<AccessRecord>, StoreError>;
        async fn delete_access(&self, kind: AccessKind, id: &str) -> Result<bool, StoreError>;
        async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError>;
        async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;

        async fn upsert_contacts(
            &self,
            tenant: &str,
            contacts: &[ContactUpsert],
            now_ms: i64,
        ) -> Result<Vec<Upserted>, StoreError>;
        async fn get_contact(
            &self,
            tenant: &str,
            phone: &str,
        ) -> Result<Option<ContactRecord>, StoreError>;
        async fn list_contacts(&self, query: &ContactQuery) -> Result<Vec<ContactRecord>, StoreError>;
        async fn set_contact_tags(
            &self,
            tenant: &str,
            phone: &str,
            tags: &[String],
            now_ms: i64,
        ) -> Result<Option<ContactRecord>, StoreError>;
        async fn delete_contact(&self, tenant: &str, phone: &str) -> Result<bool, StoreError>;
        async fn list_contact_tags(
            &self,
            tenant: &str,
            after: Option<&str>,
            limit: u32,
        ) -> Result<Vec<TagCount>, StoreError>;

        async fn put_job_recipients(&self, recipients: &[RecipientRecord]) -> Result<(), StoreError>;
        async fn create_job(&self, job: &JobRecord) -> Result<(), StoreError>;
        async fn get_job(&self, id: &str) -> Result<Option<JobRecord>, StoreError>;
        async fn list_jobs(&self, query: &JobQuery) -> Result<Vec<JobRecord>, StoreError>;
        async fn update_job(&self, job: &JobRecord, expected: JobStatus) -> Result<bool, StoreError>;
        async fn delete_job(&self, id: &str) -> Result<bool, StoreError>;
        async fn count_job_recipients(
            &self,
            job_id: &str,
        ) -> Result<Vec<(RecipientStatus, u64)>, StoreError>;
        async fn claim_job_recipient(
            &self,
            job_id: &str,
            device_id: &str,
            now_ms: i64,
        ) -> Result<Option<RecipientRecord>, StoreError>;
        async fn update_job_recipient(
            &self,
            recipient: &RecipientRecord,
            expected: RecipientStatus,
        ) -> Result<bool, StoreError>;
        async fn list_job_recipients(
            &self,
            query: &RecipientQuery,
        ) -> Result<Vec<RecipientRecord>, StoreError>;
        async fn move_job_recipients(
            &self,
            job_id: &str,
            from: RecipientStatus,
            to: RecipientStatus,
            now_ms: i64,
        ) -> Result<u64, StoreError>;

        async fn append_delivery(&self, delivery: &NewDelivery) -> Result<(), StoreError>;
        async fn due_deliveries(
            &self,
            device_id: &str,
            limit: u32,
        ) -> Result<Vec<DeliveryRecord>, StoreError>;
        async fn record_attempt(
            &self,
            device_id: &str,
            event_id: &str,
            attempt: &Attempt,
        ) -> Result<Option<DeliveryRecord>, StoreError>;
        async fn list_deliveries(
            &self,
            device_id: &str,
            status: Option<DeliveryStatus>,
            before_seq: Option<i64>,
            limit: u32,
        ) -> Result<Vec<DeliveryRecord>, StoreError>;
        async fn replay_deliveries(
            &self,
            device_id: &str,
            which: &ReplayWhich,
            now_ms: i64,
        ) -> Result<u64, StoreError>;
        async fn devices_with_due_deliveries(
            &self,
            shards: &[u32],
            limit: u32,
        ) -> Result<Vec<DeviceId>, StoreError>;
        async fn delivery_backlog(&self) -> Result<DeliveryBacklog, StoreError>;
        async fn prune_deliveries(&self, before_ms: i64, limit: u32) -> Result<u64, StoreError>;


        async fn acquire_leases(
            &self,
            holder: &str,
            shards: &[u32],
            now_ms: i64,
            ttl_ms: u64,
        ) -> Result<Vec<Acquired>, StoreError>;
        async fn renew_leases(
            &self,
            holder: &str,
            leases: &[Fence],
            now_ms: i64,
            ttl_ms: u64,
        ) -> Result<Vec<bool>, StoreError>;
        async fn release_leases(
            &self,
            holder: &str,
            leases: &[Fence],
        ) -> Result<Vec<bool>, StoreError>;
        async fn get_lease(&self, shard: u32) -> Result<Option<Lease>, StoreError>;
        async fn list_leases(&self, holder: Option<&str>) -> Result<Vec<Lease>, StoreError>;
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

    /// What `metered_store!` cannot see: a method of [`Store`] with a default body that
    /// is missing from its list would not be timed, and a backend's override of it would
    /// be skipped.
    #[test]
    fn every_method_of_the_store_is_an_operation() {
        let source = include_str!("mod.rs");
        let start = source.find("pub trait Store").expect("the trait");
        let end = start + source[start..].find("\n}\n").expect("the end of the trait");
        let not_timed = ["shards", "acquire_lease", "renew_lease", "release_lease"];
        let methods: Vec<&str> = source[start..end]
            .lines()
            .filter_map(|line| {
                let line = line.trim_start();
                line.strip_prefix("async fn ")
                    .or_else(|| line.strip_prefix("fn "))
            })
            .map(|rest| &rest[..rest.find('(').expect("a parameter list")])
            .filter(|name| !not_timed.contains(name))
            .collect();
        assert_eq!(methods, OPERATIONS);
    }

    #[test]
    fn records_a_sample_per_call_and_counts_errors_by_kind() {
        let dir = tempfile::tempdir().unwrap();
        let text = crate::metrics::recorded(async || {
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
