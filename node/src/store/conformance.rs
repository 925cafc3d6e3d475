//! The conformance suite every [`Store`] backend must pass.
//!
//! Each `check_*` function exercises one part of the contract and panics with a message
//! that says what broke. A backend's tests call [`run_all`] on a store of its own.
//!
//! Checks only touch rows under fresh random ids (a uuid v4 per check), so they can share
//! one store with each other, with earlier runs and with unrelated data. Lease checks
//! likewise use fresh random shards far above any real shard count, fresh holder names,
//! and explicit times (`now_ms`), so expiry is tested without waiting. One exception:
//! [`check_device_counts`] compares counts before and after, so no other writer may
//! create, delete or re-status devices while it runs.

use std::collections::HashMap;
use std::fmt::Debug;

use uuid::Uuid;

mod access;
mod concurrency;
mod contacts;
mod deliveries;
mod devices;
mod jobs;
mod leases;
mod link_state;
mod message_log;
mod messages;
mod schedule;
mod settings;

pub use self::access::{check_access_directory, check_audit_log, check_tenant_devices};
pub use self::concurrency::{
    check_concurrent_advances, check_concurrent_device_creates,
    check_concurrent_idempotent_inserts, check_concurrent_patches,
};
pub use self::contacts::{check_contact_book, check_contact_bulk};
pub use self::deliveries::{
    check_delivery_append_and_order, check_delivery_attempts_and_replay,
    check_delivery_devices_backlog_prune, check_patch_device_recording,
};
pub use self::devices::{
    check_device_counts, check_device_create_get, check_device_delete_cascades, check_device_list,
    check_device_patch, check_wanted_devices_in_shards,
};
pub use self::jobs::{check_concurrent_claims, check_job_recipients, check_jobs};
pub use self::leases::{
    check_concurrent_lease_acquires, check_fenced_writes, check_lease_acquire_and_renew,
    check_lease_bulk_and_listing, check_lease_release, check_lease_takeover_after_expiry,
};
pub use self::link_state::{
    check_link_state_any, check_link_state_isolation, check_link_state_many,
    check_link_state_put_get_list, check_link_state_unknown_device,
};
pub use self::message_log::{check_chats, check_message_log};
pub use self::messages::{
    check_begin_run, check_devices_with_queued, check_guarded_insert, check_message_advance,
    check_message_idempotency, check_message_insert_get, check_outbound_slots,
    check_queued_messages, check_reschedule_message,
};
pub use self::schedule::{check_cancel_message, check_scheduled_messages};
pub use self::settings::check_settings;
use super::{
    Acquired, DeviceRecord, DeviceStatus, Direction, Fence, InsertOutcome, Lease, MessageRecord,
    MessageStatus, SealedBlob, Store, StoreError, TrustLevel,
};

/// Runs every check, one after the other.
pub async fn run_all(store: &dyn Store) {
    check_device_create_get(store).await;
    check_device_patch(store).await;
    check_device_list(store).await;
    check_device_counts(store).await;
    check_device_delete_cascades(store).await;
    check_wanted_devices_in_shards(store).await;
    check_link_state_put_get_list(store).await;
    check_link_state_isolation(store).await;
    check_link_state_any(store).await;
    check_link_state_many(store).await;
    check_link_state_unknown_device(store).await;
    check_message_insert_get(store).await;
    check_message_idempotency(store).await;
    check_guarded_insert(store).await;
    check_begin_run(store).await;
    check_message_advance(store).await;
    check_queued_messages(store).await;
    check_devices_with_queued(store).await;
    check_outbound_slots(store).await;
    check_reschedule_message(store).await;
    check_scheduled_messages(store).await;
    check_cancel_message(store).await;
    check_message_log(store).await;
    check_chats(store).await;
    check_settings(store).await;
    check_access_directory(store).await;
    check_audit_log(store).await;
    check_tenant_devices(store).await;
    check_contact_book(store).await;
    check_contact_bulk(store).await;
    check_jobs(store).await;
    check_job_recipients(store).await;
    check_concurrent_claims(store).await;
    check_delivery_append_and_order(store).await;
    check_delivery_attempts_and_replay(store).await;
    check_delivery_devices_backlog_prune(store).await;
    check_patch_device_recording(store).await;
    check_concurrent_device_creates(store).await;
    check_concurrent_idempotent_inserts(store).await;
    check_concurrent_patches(store).await;
    check_concurrent_advances(store).await;
    check_lease_acquire_and_renew(store).await;
    check_lease_takeover_after_expiry(store).await;
    check_lease_release(store).await;
    check_lease_bulk_and_listing(store).await;
    check_concurrent_lease_acquires(store).await;
    check_fenced_writes(store).await;
}

// ---- helpers ----

/// A fresh id prefix: 32 hex digits, so `{prefix}-{tag}` stays a valid device id.
fn fresh_prefix() -> String {
    Uuid::new_v4().simple().to_string()
}

fn device(id: &str) -> DeviceRecord {
    DeviceRecord {
        id: id.to_owned(),
        name: format!("device {id}"),
        tenant: "default".to_owned(),
        status: DeviceStatus::Stopped,
        status_reason: None,
        trust_level: TrustLevel::Newcomer,
        phone: None,
        webhook: None,
        desired_running: false,
        created_at_ms: 1_700_000_000_000,
        updated_at_ms: 1_700_000_000_000,
        last_connected_at_ms: None,
    }
}

/// A device with every optional field set and values that trip naive encodings.
fn full_device(id: &str) -> DeviceRecord {
    DeviceRecord {
        id: id.to_owned(),
        name: "Ünïcödé 📱 'quoted' \"name\"; DROP TABLE devices; --".to_owned(),
        tenant: "tenant-a".to_owned(),
        status: DeviceStatus::Ready,
        status_reason: Some("qr_timeout".to_owned()),
        trust_level: TrustLevel::Verified,
        phone: Some("+4915112345678".to_owned()),
        webhook: Some("https://example.test/hook?a=1&b=2".to_owned()),
        desired_running: true,
        created_at_ms: 1_700_000_000_123,
        updated_at_ms: 1_700_000_000_456,
        last_connected_at_ms: Some(i64::MAX),
    }
}

fn message(device_id: &str, id: &str, created_at_ms: i64) -> MessageRecord {
    MessageRecord {
        id: id.to_owned(),
        device_id: device_id.to_owned(),
        direction: Direction::Outbound,
        peer_phone: "+4915100000000".to_owned(),
        text: format!("text of {id}"),
        status: MessageStatus::Queued,
        error: None,
        idempotency_key: None,
        created_at_ms,
        not_before_ms: None,
        sent_at_ms: None,
        delivered_at_ms: None,
        read_at_ms: None,
        failed_at_ms: None,
        send_at_ms: None,
        queued_at_ms: None,
    }
}

fn keyed_message(device_id: &str, id: &str, key: &str) -> MessageRecord {
    MessageRecord {
        idempotency_key: Some(key.to_owned()),
        ..message(device_id, id, 1_000)
    }
}

fn blob(key_version: u32, bytes: &[u8]) -> SealedBlob {
    SealedBlob {
        key_version,
        bytes: bytes.to_vec(),
    }
}

#[track_caller]
fn ok<T>(result: Result<T, StoreError>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("{what}: unexpected store error: {e}"),
    }
}

#[track_caller]
fn expect_conflict<T: Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::Conflict { .. }) => {}
        other => panic!("{what}: expected Conflict, got {other:?}"),
    }
}

#[track_caller]
fn expect_not_found<T: Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

async fn create(store: &dyn Store, device: &DeviceRecord) {
    ok(
        store.create_device(device).await,
        &format!("create device {}", device.id),
    );
}

async fn insert(store: &dyn Store, message: &MessageRecord) {
    let outcome = ok(
        store.insert_message(message).await,
        &format!("insert message {}", message.id),
    );
    assert_eq!(
        outcome,
        InsertOutcome::Inserted,
        "insert message {}: expected Inserted",
        message.id
    );
}

/// `n` consecutive fresh shards: random, above 2^20 (real shard counts are in the
/// thousands), so no other check, run or node meets them.
fn fresh_shards(n: u32) -> Vec<u32> {
    let base = fastrand::u32(1 << 20..u32::MAX - n);
    (base..base + n).collect()
}

/// A time to start lease checks from, and a lease's time to live.
const T0: i64 = 1_700_000_000_000;
const TTL: u64 = 10_000;
const TTL_MS: i64 = TTL as i64;

fn lease(shard: u32, holder: &str, epoch: u64, expires_at_ms: i64) -> Lease {
    Lease {
        shard,
        holder: holder.to_owned(),
        epoch,
        expires_at_ms,
    }
}

fn fence(shard: u32, epoch: u64) -> Fence {
    Fence { shard, epoch }
}

#[track_caller]
fn expect_granted(outcome: Acquired, expected: &Lease, what: &str) {
    match outcome {
        Acquired::Granted(got) => assert_eq!(&got, expected, "{what}: granted lease"),
        Acquired::Refused(held) => panic!("{what}: expected Granted, refused by {held:?}"),
    }
}

#[track_caller]
fn expect_refused(outcome: Acquired, holders: &Lease, what: &str) {
    match outcome {
        Acquired::Refused(got) => assert_eq!(&got, holders, "{what}: the holder's lease"),
        Acquired::Granted(got) => panic!("{what}: expected Refused, granted {got:?}"),
    }
}

#[track_caller]
fn expect_fenced<T: Debug>(
    result: Result<T, StoreError>,
    fence: Fence,
    current: Option<u64>,
    what: &str,
) {
    match result {
        Err(StoreError::Fenced {
            shard,
            epoch,
            current: got,
        }) => assert_eq!(
            (shard, epoch, got),
            (fence.shard, fence.epoch, current),
            "{what}: Fenced {{ shard, epoch, current }}"
        ),
        other => panic!("{what}: expected Fenced, got {other:?}"),
    }
}

async fn get_lease(store: &dyn Store, shard: u32) -> Option<Lease> {
    ok(store.get_lease(shard).await, &format!("get lease {shard}"))
}

fn counts_map(counts: Vec<(DeviceStatus, u64)>) -> HashMap<DeviceStatus, u64> {
    let mut map = HashMap::new();
    for (status, count) in counts {
        assert!(
            map.insert(status, count).is_none(),
            "count_devices_by_status lists {status} twice"
        );
    }
    map
}
