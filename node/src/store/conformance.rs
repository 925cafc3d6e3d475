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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;

use futures_util::future::join_all;
use uuid::Uuid;
use wafleet_cluster_config::shard_of;

mod access;
mod contacts;
mod deliveries;
mod jobs;
mod link_state;
mod message_log;
mod schedule;

pub use self::access::{check_access_directory, check_audit_log, check_tenant_devices};
pub use self::contacts::{check_contact_book, check_contact_bulk};
pub use self::deliveries::{
    check_delivery_append_and_order, check_delivery_attempts_and_replay,
    check_delivery_devices_backlog_prune, check_patch_device_recording,
};
pub use self::jobs::{check_concurrent_claims, check_job_recipients, check_jobs};
pub use self::link_state::{
    check_link_state_any, check_link_state_isolation, check_link_state_many,
    check_link_state_put_get_list, check_link_state_unknown_device,
};
pub use self::message_log::{check_chats, check_message_log};
pub use self::schedule::{check_cancel_message, check_scheduled_messages};
use super::{
    Acquired, DevicePatch, DeviceQuery, DeviceRecord, DeviceStatus, Direction, Fence,
    GuardedInsert, InsertOutcome, Lease, MessageRecord, MessageStatus, QueueKey, RunStart,
    SealedBlob, Store, StoreError, TrustLevel,
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

// ---- devices ----

/// create/get round-trips every field; a second create of an id is a `Conflict` that
/// leaves the first row alone; an unknown id reads as `None`.
pub async fn check_device_create_get(store: &dyn Store) {
    let p = fresh_prefix();

    let minimal = device(&format!("{p}-min"));
    create(store, &minimal).await;
    let got = ok(store.get_device(&minimal.id).await, "get minimal device");
    assert_eq!(got, Some(minimal.clone()), "minimal device round trip");

    let full = full_device(&format!("{p}-full"));
    create(store, &full).await;
    let got = ok(store.get_device(&full.id).await, "get full device");
    assert_eq!(got, Some(full.clone()), "full device round trip");

    for (i, status) in DeviceStatus::ALL.into_iter().enumerate() {
        let trust_level = [
            TrustLevel::Newcomer,
            TrustLevel::Trusted,
            TrustLevel::Verified,
        ][i % 3];
        let d = DeviceRecord {
            status,
            trust_level,
            ..device(&format!("{p}-s{i}"))
        };
        create(store, &d).await;
        let got = ok(store.get_device(&d.id).await, "get device");
        assert_eq!(got, Some(d), "device with status {status} round trip");
    }

    let again = DeviceRecord {
        name: "another name".to_owned(),
        ..minimal.clone()
    };
    expect_conflict(store.create_device(&again).await, "create a device twice");
    let got = ok(store.get_device(&minimal.id).await, "get after conflict");
    assert_eq!(got, Some(minimal), "a conflicting create changed the row");

    let missing = ok(
        store.get_device(&format!("{p}-missing")).await,
        "get missing",
    );
    assert_eq!(missing, None, "get of an unknown device");
}

/// Each patch field is written alone, `Some(None)` clears, `updated_at_ms` is always
/// set, the returned row is what a later get sees; unknown device is `NotFound`.
pub async fn check_device_patch(store: &dyn Store) {
    let p = fresh_prefix();
    let mut expected = full_device(&format!("{p}-patch"));
    create(store, &expected).await;

    /// What a step is called, the patch, and its effect on the expected row.
    type PatchStep = (&'static str, DevicePatch, fn(&mut DeviceRecord));
    let steps: Vec<PatchStep> = vec![
        (
            "name",
            DevicePatch {
                name: Some("renamed".to_owned()),
                ..DevicePatch::default()
            },
            |d| d.name = "renamed".to_owned(),
        ),
        (
            "status",
            DevicePatch {
                status: Some(DeviceStatus::Disconnected),
                ..DevicePatch::default()
            },
            |d| d.status = DeviceStatus::Disconnected,
        ),
        (
            "status_reason set",
            DevicePatch {
                status_reason: Some(Some("network".to_owned())),
                ..DevicePatch::default()
            },
            |d| d.status_reason = Some("network".to_owned()),
        ),
        (
            "status_reason cleared",
            DevicePatch {
                status_reason: Some(None),
                ..DevicePatch::default()
            },
            |d| d.status_reason = None,
        ),
        (
            "trust_level",
            DevicePatch {
                trust_level: Some(TrustLevel::Trusted),
                ..DevicePatch::default()
            },
            |d| d.trust_level = TrustLevel::Trusted,
        ),
        (
            "phone cleared",
            DevicePatch {
                phone: Some(None),
                ..DevicePatch::default()
            },
            |d| d.phone = None,
        ),
        (
            "phone set",
            DevicePatch {
                phone: Some(Some("+4917000000000".to_owned())),
                ..DevicePatch::default()
            },
            |d| d.phone = Some("+4917000000000".to_owned()),
        ),
        (
            "webhook cleared",
            DevicePatch {
                webhook: Some(None),
                ..DevicePatch::default()
            },
            |d| d.webhook = None,
        ),
        (
            "webhook set",
            DevicePatch {
                webhook: Some(Some("https://example.test/other".to_owned())),
                ..DevicePatch::default()
            },
            |d| d.webhook = Some("https://example.test/other".to_owned()),
        ),
        (
            "desired_running false",
            DevicePatch {
                desired_running: Some(false),
                ..DevicePatch::default()
            },
            |d| d.desired_running = false,
        ),
        (
            "desired_running true",
            DevicePatch {
                desired_running: Some(true),
                ..DevicePatch::default()
            },
            |d| d.desired_running = true,
        ),
        (
            "last_connected_at_ms set",
            DevicePatch {
                last_connected_at_ms: Some(Some(1_700_000_009_999)),
                ..DevicePatch::default()
            },
            |d| d.last_connected_at_ms = Some(1_700_000_009_999),
        ),
        (
            "last_connected_at_ms cleared",
            DevicePatch {
                last_connected_at_ms: Some(None),
                ..DevicePatch::default()
            },
            |d| d.last_connected_at_ms = None,
        ),
        ("nothing", DevicePatch::default(), |_| {}),
        (
            "every field",
            DevicePatch {
                name: Some("all at once".to_owned()),
                status: Some(DeviceStatus::ScanQr),
                status_reason: Some(Some("waiting".to_owned())),
                trust_level: Some(TrustLevel::Newcomer),
                phone: Some(None),
                webhook: Some(Some("https://example.test/all".to_owned())),
                desired_running: Some(false),
                last_connected_at_ms: Some(Some(42)),
            },
            |d| {
                d.name = "all at once".to_owned();
                d.status = DeviceStatus::ScanQr;
                d.status_reason = Some("waiting".to_owned());
                d.trust_level = TrustLevel::Newcomer;
                d.phone = None;
                d.webhook = Some("https://example.test/all".to_owned());
                d.desired_running = false;
                d.last_connected_at_ms = Some(42);
            },
        ),
    ];

    for (step, (what, patch, apply)) in steps.into_iter().enumerate() {
        let now_ms = 1_800_000_000_000 + step as i64;
        apply(&mut expected);
        expected.updated_at_ms = now_ms;
        let returned = ok(
            store.patch_device(&expected.id, &patch, now_ms, None).await,
            &format!("patch {what}"),
        );
        assert_eq!(returned, expected, "patch {what}: returned row");
        let stored = ok(store.get_device(&expected.id).await, "get after patch");
        assert_eq!(stored, Some(expected.clone()), "patch {what}: stored row");
    }

    let patch = DevicePatch {
        name: Some("ghost".to_owned()),
        ..DevicePatch::default()
    };
    expect_not_found(
        store
            .patch_device(&format!("{p}-missing"), &patch, 1, None)
            .await,
        "patch an unknown device",
    );
    let missing = ok(store.get_device(&format!("{p}-missing")).await, "get");
    assert_eq!(missing, None, "patching an unknown device created it");
}

/// Walks `list_devices` pages from `{prefix}` (exclusive) with `limit`, checking the
/// paging contract on every page, until the pages leave the prefix's ids. Returns the
/// ids under the prefix, in order, and how many pages it took.
async fn walk_prefix(
    store: &dyn Store,
    prefix: &str,
    status: Option<DeviceStatus>,
    desired_running: Option<bool>,
    limit: u32,
) -> (Vec<String>, usize) {
    let mut after = prefix.to_owned();
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages < 10_000, "list_devices never reached the end");
        let query = DeviceQuery {
            tenant: None,
            status,
            desired_running,
            after: Some(after.clone()),
            limit,
        };
        let page = ok(store.list_devices(&query).await, "list devices");
        assert!(
            page.devices.len() <= limit as usize,
            "page of {} rows for limit {limit}",
            page.devices.len()
        );
        let mut previous = after.clone();
        for d in &page.devices {
            assert!(
                d.id > previous,
                "list is not ordered by id after {after:?}: {:?} then {:?}",
                previous,
                d.id
            );
            previous = d.id.clone();
            if let Some(status) = status {
                assert_eq!(d.status, status, "status filter let {} through", d.id);
            }
            if let Some(desired_running) = desired_running {
                assert_eq!(
                    d.desired_running, desired_running,
                    "desired_running filter let {} through",
                    d.id
                );
            }
        }
        if let Some(next) = &page.next_after {
            assert_eq!(
                page.devices.len(),
                limit as usize,
                "next_after set on a page that is not full"
            );
            assert_eq!(
                Some(next),
                page.devices.last().map(|d| &d.id),
                "next_after is not the last id of the page"
            );
        }
        let ours = format!("{prefix}-");
        let left_prefix = page.devices.iter().any(|d| !d.id.starts_with(&ours));
        ids.extend(
            page.devices
                .iter()
                .filter(|d| d.id.starts_with(&ours))
                .map(|d| d.id.clone()),
        );
        match page.next_after {
            Some(next) if !left_prefix => after = next,
            _ => return (ids, pages),
        }
    }
}

/// Keyset pagination over several pages, with and without the status and
/// desired_running filters.
pub async fn check_device_list(store: &dyn Store) {
    let p = fresh_prefix();
    let specs = [
        (DeviceStatus::Ready, true),
        (DeviceStatus::Stopped, false),
        (DeviceStatus::Ready, false),
        (DeviceStatus::ScanQr, true),
        (DeviceStatus::Ready, true),
        (DeviceStatus::Failed, true),
        (DeviceStatus::Ready, false),
    ];
    let mut all = Vec::new();
    // Created out of order: the list must sort by id, not by insertion.
    for (i, (status, desired_running)) in specs.iter().enumerate().rev() {
        let d = DeviceRecord {
            status: *status,
            desired_running: *desired_running,
            ..device(&format!("{p}-d{i}"))
        };
        create(store, &d).await;
        all.push(d);
    }
    all.sort_by(|a, b| a.id.cmp(&b.id));
    let ids_where = |keep: &dyn Fn(&DeviceRecord) -> bool| -> Vec<String> {
        all.iter()
            .filter(|d| keep(d))
            .map(|d| d.id.clone())
            .collect()
    };

    let (ids, pages) = walk_prefix(store, &p, None, None, 3).await;
    assert_eq!(ids, ids_where(&|_| true), "unfiltered pages");
    assert!(pages >= 3, "7 devices in pages of 3 took {pages} pages");

    let (ids, _) = walk_prefix(store, &p, Some(DeviceStatus::Ready), None, 2).await;
    assert_eq!(
        ids,
        ids_where(&|d| d.status == DeviceStatus::Ready),
        "status filter"
    );

    let (ids, _) = walk_prefix(store, &p, None, Some(true), 2).await;
    assert_eq!(
        ids,
        ids_where(&|d| d.desired_running),
        "desired_running filter"
    );

    let (ids, _) = walk_prefix(store, &p, Some(DeviceStatus::Ready), Some(false), 1).await;
    assert_eq!(
        ids,
        ids_where(&|d| d.status == DeviceStatus::Ready && !d.desired_running),
        "both filters"
    );

    let (ids, _) = walk_prefix(store, &p, Some(DeviceStatus::LoggedOut), None, 5).await;
    assert_eq!(
        ids,
        Vec::<String>::new(),
        "filter that matches none of ours"
    );

    // The rows come back whole.
    let query = DeviceQuery {
        after: Some(p.clone()),
        limit: 1,
        ..DeviceQuery::default()
    };
    let page = ok(store.list_devices(&query).await, "list one");
    assert_eq!(
        page.devices,
        vec![all[0].clone()],
        "first row after the prefix"
    );
    assert_eq!(
        page.next_after,
        Some(all[0].id.clone()),
        "a full page with more rows after it must say where to go on"
    );

    // Past every valid id (`[a-zA-Z0-9_-]`): an empty last page.
    let query = DeviceQuery {
        after: Some("~".to_owned()),
        ..DeviceQuery::default()
    };
    let page = ok(store.list_devices(&query).await, "list past the end");
    assert_eq!(page.devices, Vec::new(), "rows after every valid id");
    assert_eq!(page.next_after, None, "next_after on an empty page");
}

/// Counts per status move by exactly what this check did (creates, a status patch,
/// deletes). Needs no concurrent device writers.
pub async fn check_device_counts(store: &dyn Store) {
    let p = fresh_prefix();
    let before = counts_map(ok(store.count_devices_by_status().await, "count"));
    let created = [
        DeviceStatus::Ready,
        DeviceStatus::Ready,
        DeviceStatus::ScanQr,
        DeviceStatus::Failed,
    ];
    for (i, status) in created.into_iter().enumerate() {
        let d = DeviceRecord {
            status,
            ..device(&format!("{p}-c{i}"))
        };
        create(store, &d).await;
    }
    let patch = DevicePatch {
        status: Some(DeviceStatus::Disconnected),
        ..DevicePatch::default()
    };
    ok(
        store
            .patch_device(&format!("{p}-c0"), &patch, 2, None)
            .await,
        "patch status",
    );

    let after = counts_map(ok(store.count_devices_by_status().await, "count"));
    let expected_delta: HashMap<DeviceStatus, u64> = [
        (DeviceStatus::Ready, 1),
        (DeviceStatus::ScanQr, 1),
        (DeviceStatus::Failed, 1),
        (DeviceStatus::Disconnected, 1),
    ]
    .into_iter()
    .collect();
    for status in DeviceStatus::ALL {
        let was = before.get(&status).copied().unwrap_or(0);
        let now = after.get(&status).copied().unwrap_or(0);
        let delta = expected_delta.get(&status).copied().unwrap_or(0);
        assert_eq!(now, was + delta, "count of {status}: was {was}, now {now}");
    }

    for i in 0..created.len() {
        assert!(
            ok(
                store.delete_device(&format!("{p}-c{i}"), None).await,
                "delete"
            ),
            "delete of a created device returned false"
        );
    }
    let end = counts_map(ok(store.count_devices_by_status().await, "count"));
    for status in DeviceStatus::ALL {
        assert_eq!(
            end.get(&status).copied().unwrap_or(0),
            before.get(&status).copied().unwrap_or(0),
            "count of {status} after deleting this check's devices"
        );
    }
}

/// Deleting a device takes its link state and messages with it, for good: a device
/// created again under the same id starts empty.
pub async fn check_device_delete_cascades(store: &dyn Store) {
    let p = fresh_prefix();
    let id = format!("{p}-del");
    let bystander = format!("{p}-keep");
    for d in [&id, &bystander] {
        create(store, &device(d)).await;
        ok(
            store
                .put_link_state(d, "creds", "noise", &blob(1, b"n"), None)
                .await,
            "put",
        );
        ok(
            store
                .put_link_state(d, "sessions", "s1", &blob(1, b"s"), None)
                .await,
            "put",
        );
        insert(store, &keyed_message(d, "m1", "k1")).await;
    }

    assert!(
        ok(store.delete_device(&id, None).await, "delete"),
        "first delete"
    );
    assert!(
        !ok(store.delete_device(&id, None).await, "delete again"),
        "second delete of the same device returned true"
    );
    assert_eq!(ok(store.get_device(&id).await, "get"), None, "device gone");
    assert_eq!(
        ok(store.get_link_state(&id, "creds", "noise").await, "get"),
        None,
        "link state survived its device"
    );
    assert_eq!(
        ok(store.get_message(&id, "m1").await, "get"),
        None,
        "message survived its device"
    );
    assert!(
        ok(store.queued_messages(&id, 10).await, "queued").is_empty(),
        "queued message survived its device"
    );

    // Same id again: nothing of the old device shows through.
    create(store, &device(&id)).await;
    for ns in ["creds", "sessions"] {
        assert!(
            ok(store.list_link_state(&id, ns).await, "list").is_empty(),
            "old link state in {ns} came back with a new device of the same id"
        );
    }
    assert_eq!(ok(store.clear_link_state(&id, None).await, "clear"), 0);
    insert(store, &keyed_message(&id, "m1", "k1")).await;

    // The other device is untouched.
    assert_eq!(
        ok(store.get_device(&bystander).await, "get").map(|d| d.id),
        Some(bystander.clone())
    );
    assert_eq!(
        ok(store.list_link_state(&bystander, "creds").await, "list").len(),
        1,
        "deleting one device took another's link state"
    );
    assert!(
        ok(store.get_message(&bystander, "m1").await, "get").is_some(),
        "deleting one device took another's message"
    );
    assert!(!ok(
        store.delete_device(&format!("{p}-never"), None).await,
        "delete"
    ));
}

/// `wanted_devices_in_shards` lists exactly the devices wanted running whose shard
/// (`shard_of(id, store.shards())`) was asked for, ids ascending and each once: no device
/// of another shard, none with `desired_running = false`, none deleted; patches of
/// `desired_running` show at once, both ways. Other devices of the same shards (other
/// checks, other runs) may be listed too: they are only checked to be in those shards.
pub async fn check_wanted_devices_in_shards(store: &dyn Store) {
    let p = fresh_prefix();
    let count = store.shards();
    assert!(count > 0, "a store places devices in at least one shard");
    let shard = |id: &str| shard_of(id, count);

    // What this check's devices are: id → desired_running, for those that exist.
    let mut model: BTreeMap<String, bool> = BTreeMap::new();
    for i in 0..24 {
        let id = format!("{p}-{i:02}");
        let desired_running = i % 3 != 0;
        create(
            store,
            &DeviceRecord {
                desired_running,
                ..device(&id)
            },
        )
        .await;
        model.insert(id, desired_running);
    }
    let ids: Vec<String> = model.keys().cloned().collect();
    // The shards of the first half of the devices; the second half is mostly elsewhere.
    let asked: BTreeSet<u32> = ids[..12].iter().map(|id| shard(id)).collect();
    if count >= 64 {
        assert!(
            ids.iter().any(|id| !asked.contains(&shard(id))),
            "no device outside the asked shards: the check would prove nothing"
        );
    }

    let check = async |model: &BTreeMap<String, bool>, asked: &BTreeSet<u32>, what: &str| {
        // Each shard twice and one past the last, which has no device.
        let mut request: Vec<u32> = asked.iter().chain(asked.iter()).copied().collect();
        request.push(count);
        let listed = ok(store.wanted_devices_in_shards(&request).await, what);
        assert!(
            listed.windows(2).all(|w| w[0] < w[1]),
            "{what}: ids not ascending or listed twice: {listed:?}"
        );
        for id in &listed {
            assert!(
                asked.contains(&shard(id)),
                "{what}: {id} is in shard {}, not asked for",
                shard(id)
            );
        }
        let ours: Vec<&String> = listed.iter().filter(|id| id.starts_with(&p)).collect();
        let expected: Vec<&String> = model
            .iter()
            .filter(|(id, wanted)| **wanted && asked.contains(&shard(id)))
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ours, expected, "{what}: this check's devices");
    };

    check(&model, &asked, "first half's shards").await;
    let all: BTreeSet<u32> = ids.iter().map(|id| shard(id)).collect();
    check(&model, &all, "every device's shard").await;
    assert!(
        ok(store.wanted_devices_in_shards(&[]).await, "no shards").is_empty(),
        "no shard asked, devices listed"
    );

    // Patches of desired_running, both ways, and a patch of something else.
    let (start, stop, rename) = (&ids[0], &ids[1], &ids[2]);
    for (id, desired_running) in [(start, true), (stop, false)] {
        let patch = DevicePatch {
            desired_running: Some(desired_running),
            ..DevicePatch::default()
        };
        ok(
            store.patch_device(id, &patch, T0, None).await,
            "patch desired_running",
        );
        model.insert(id.clone(), desired_running);
    }
    let patch = DevicePatch {
        name: Some("renamed".to_owned()),
        status: Some(DeviceStatus::Ready),
        ..DevicePatch::default()
    };
    ok(store.patch_device(rename, &patch, T0, None).await, "rename");
    check(&model, &all, "after patches").await;

    // Deleted: gone, and a new device of the same id not wanted running stays unlisted.
    let deleted = &ids[4];
    assert!(model[deleted], "the device to delete is wanted running");
    assert!(ok(store.delete_device(deleted, None).await, "delete"));
    model.remove(deleted);
    check(&model, &all, "after a delete").await;
    create(store, &device(deleted)).await;
    model.insert(deleted.clone(), false);
    check(&model, &all, "after a delete and a create not running").await;
    ok(
        store
            .patch_device(
                deleted,
                &DevicePatch {
                    desired_running: Some(true),
                    ..DevicePatch::default()
                },
                T0,
                None,
            )
            .await,
        "start the new device",
    );
    model.insert(deleted.clone(), true);
    check(&model, &all, "after starting the new device").await;
}

// ---- messages ----

/// insert/get round-trips every field; the same id twice is a `Conflict`; an unknown
/// device is `NotFound`; message ids are scoped to their device.
pub async fn check_message_insert_get(store: &dyn Store) {
    let p = fresh_prefix();
    let (a, b) = (format!("{p}-a"), format!("{p}-b"));
    create(store, &device(&a)).await;
    create(store, &device(&b)).await;

    let plain = message(&a, "m-plain", 100);
    insert(store, &plain).await;
    assert_eq!(
        ok(store.get_message(&a, "m-plain").await, "get"),
        Some(plain.clone())
    );

    let full = MessageRecord {
        id: "m-full".to_owned(),
        device_id: a.clone(),
        direction: Direction::Inbound,
        peer_phone: "+4917011111111".to_owned(),
        text: "héllo 👋\nsecond line 'quoted'".to_owned(),
        status: MessageStatus::Read,
        error: Some("earlier hiccup".to_owned()),
        idempotency_key: Some("key-full".to_owned()),
        created_at_ms: 1_700_000_000_001,
        not_before_ms: Some(1_700_000_000_002),
        sent_at_ms: Some(1_700_000_000_003),
        delivered_at_ms: Some(1_700_000_000_004),
        read_at_ms: Some(i64::MAX),
        failed_at_ms: Some(-1),
        send_at_ms: Some(1_700_000_000_005),
        queued_at_ms: Some(1_700_000_000_006),
    };
    insert(store, &full).await;
    assert_eq!(
        ok(store.get_message(&a, "m-full").await, "get"),
        Some(full.clone()),
        "message with every field set"
    );
    for (i, status) in [
        MessageStatus::Queued,
        MessageStatus::Sent,
        MessageStatus::Delivered,
        MessageStatus::Read,
        MessageStatus::Failed,
    ]
    .into_iter()
    .enumerate()
    {
        let m = MessageRecord {
            status,
            ..message(&a, &format!("m-status-{i}"), 1)
        };
        insert(store, &m).await;
        assert_eq!(
            ok(store.get_message(&a, &m.id).await, "get"),
            Some(m),
            "status {status:?} round trip"
        );
    }

    let duplicate = MessageRecord {
        text: "different".to_owned(),
        ..plain.clone()
    };
    expect_conflict(store.insert_message(&duplicate).await, "insert an id twice");
    let keyed_duplicate = MessageRecord {
        idempotency_key: Some("fresh-key".to_owned()),
        ..plain.clone()
    };
    expect_conflict(
        store.insert_message(&keyed_duplicate).await,
        "insert an id twice with a new idempotency key",
    );
    assert_eq!(
        ok(store.get_message(&a, "m-plain").await, "get"),
        Some(plain.clone()),
        "a conflicting insert changed the row"
    );

    // The same message id on another device is another message.
    let on_b = message(&b, "m-plain", 200);
    insert(store, &on_b).await;
    assert_eq!(
        ok(store.get_message(&b, "m-plain").await, "get"),
        Some(on_b)
    );
    assert_eq!(
        ok(store.get_message(&a, "m-plain").await, "get"),
        Some(plain)
    );

    let ghost = format!("{p}-ghost");
    expect_not_found(
        store.insert_message(&message(&ghost, "m", 1)).await,
        "insert for an unknown device",
    );
    expect_not_found(
        store.insert_message(&keyed_message(&ghost, "m", "k")).await,
        "insert with a key for an unknown device",
    );
    assert_eq!(ok(store.get_message(&ghost, "m").await, "get"), None);
    assert_eq!(ok(store.get_message(&a, "m-missing").await, "get"), None);
}

/// `insert_message_if`: written only when the device meets the rule (the device comes
/// back as `Refused` otherwise, nothing written); an unknown device is `NotFound`; a
/// repeated idempotency key is `Existing`, as with `insert_message`.
pub async fn check_guarded_insert(store: &dyn Store) {
    fn running(device: &DeviceRecord) -> bool {
        device.desired_running
    }
    let p = fresh_prefix();
    let (on, off) = (format!("{p}-on"), format!("{p}-off"));
    create(
        store,
        &DeviceRecord {
            desired_running: true,
            ..device(&on)
        },
    )
    .await;
    create(
        store,
        &DeviceRecord {
            desired_running: false,
            ..device(&off)
        },
    )
    .await;

    let m = message(&on, "m-1", 100);
    assert_eq!(
        ok(store.insert_message_if(&m, running).await, "guarded insert"),
        GuardedInsert::Done(InsertOutcome::Inserted)
    );
    assert_eq!(ok(store.get_message(&on, "m-1").await, "get"), Some(m));

    let refused = message(&off, "m-1", 100);
    match ok(
        store.insert_message_if(&refused, running).await,
        "guarded insert",
    ) {
        GuardedInsert::Refused(device) => assert_eq!(device.id, off),
        other => panic!("a device failing the rule: expected Refused, got {other:?}"),
    }
    assert_eq!(ok(store.get_message(&off, "m-1").await, "get"), None);

    let keyed = keyed_message(&on, "m-2", "key-1");
    ok(
        store.insert_message_if(&keyed, running).await,
        "keyed insert",
    );
    let again = keyed_message(&on, "m-3", "key-1");
    assert_eq!(
        ok(
            store.insert_message_if(&again, running).await,
            "keyed again"
        ),
        GuardedInsert::Done(InsertOutcome::Existing(keyed))
    );

    expect_not_found(
        store
            .insert_message_if(&message(&format!("{p}-ghost"), "m", 1), running)
            .await,
        "guarded insert for an unknown device",
    );
}

/// `begin_run` applies the patch like `patch_device`, returns the status before it and
/// whether anything is queued (a message no longer queued does not count), is fenced
/// like a patch, and finds no unknown device.
pub async fn check_begin_run(store: &dyn Store) {
    let p = fresh_prefix();
    let (idle, busy) = (format!("{p}-idle"), format!("{p}-busy"));
    create(store, &device(&idle)).await;
    create(
        store,
        &DeviceRecord {
            status: DeviceStatus::Disconnected,
            status_reason: Some("link down".to_owned()),
            ..device(&busy)
        },
    )
    .await;
    insert(store, &message(&busy, "m-1", 100)).await;
    let starting = DevicePatch {
        status: Some(DeviceStatus::Starting),
        status_reason: Some(None),
        ..DevicePatch::default()
    };

    let start = ok(
        store.begin_run(&idle, &starting, 5, None).await,
        "begin idle",
    );
    let expected = DeviceRecord {
        status: DeviceStatus::Starting,
        updated_at_ms: 5,
        ..device(&idle)
    };
    assert_eq!(
        start,
        Some(RunStart {
            previous: DeviceStatus::Stopped,
            record: expected.clone(),
            queued: false,
        })
    );
    assert_eq!(ok(store.get_device(&idle).await, "get"), Some(expected));

    let start = ok(
        store.begin_run(&busy, &starting, 6, None).await,
        "begin busy",
    )
    .expect("the device exists");
    assert_eq!(start.previous, DeviceStatus::Disconnected);
    assert_eq!(start.record.status_reason, None);
    assert!(start.queued, "a queued message must be reported");

    ok(
        store
            .advance_message(&busy, "m-1", MessageStatus::Sent, 7, None)
            .await,
        "advance",
    );
    let start =
        ok(store.begin_run(&busy, &starting, 8, None).await, "again").expect("the device exists");
    assert!(!start.queued, "a sent message is not queued");

    assert_eq!(
        ok(
            store
                .begin_run(&format!("{p}-ghost"), &starting, 9, None)
                .await,
            "unknown device"
        ),
        None
    );
    let s = fresh_shards(1)[0];
    expect_fenced(
        store
            .begin_run(&idle, &starting, 10, Some(&fence(s, 1)))
            .await,
        fence(s, 1),
        None,
        "begin under a shard nobody holds",
    );
}

/// A second message with a device's idempotency key returns the first as `Existing` and
/// writes nothing; keys are scoped to their device.
pub async fn check_message_idempotency(store: &dyn Store) {
    let p = fresh_prefix();
    let (a, b) = (format!("{p}-a"), format!("{p}-b"));
    create(store, &device(&a)).await;
    create(store, &device(&b)).await;

    let original = keyed_message(&a, "m1", "order-42");
    insert(store, &original).await;

    let retry = MessageRecord {
        text: "retried with other text".to_owned(),
        ..keyed_message(&a, "m2", "order-42")
    };
    let outcome = ok(store.insert_message(&retry).await, "insert retry");
    assert_eq!(
        outcome,
        InsertOutcome::Existing(original.clone()),
        "same key, new id"
    );
    assert_eq!(
        ok(store.get_message(&a, "m2").await, "get"),
        None,
        "an idempotent retry stored a second message"
    );

    let outcome = ok(store.insert_message(&original).await, "insert again");
    assert_eq!(
        outcome,
        InsertOutcome::Existing(original.clone()),
        "same key, same id"
    );

    // Existing returns the row as it is now, not as it was inserted.
    let advanced = ok(
        store
            .advance_message(&a, "m1", MessageStatus::Sent, 5_000, None)
            .await,
        "advance",
    )
    .expect("message m1 exists");
    let outcome = ok(store.insert_message(&retry).await, "insert retry");
    assert_eq!(outcome, InsertOutcome::Existing(advanced), "after advance");

    let on_b = keyed_message(&b, "m1", "order-42");
    insert(store, &on_b).await;
    assert_eq!(ok(store.get_message(&b, "m1").await, "get"), Some(on_b));

    // Messages without a key never collide with each other.
    insert(store, &message(&a, "n1", 1)).await;
    insert(store, &message(&a, "n2", 1)).await;
}

/// advance_message only moves forward (queued < sent < failed < delivered < read), sets
/// the new status's timestamp, sets `error` only when given, and leaves everything
/// alone otherwise.
pub async fn check_message_advance(store: &dyn Store) {
    let p = fresh_prefix();
    let id = format!("{p}-adv");
    create(store, &device(&id)).await;
    for m in ["m1", "m2", "m3", "m4"] {
        insert(store, &message(&id, m, 1)).await;
    }

    struct Step {
        status: MessageStatus,
        at_ms: i64,
        error: Option<&'static str>,
        apply: fn(&mut MessageRecord),
    }
    let unchanged: fn(&mut MessageRecord) = |_| {};
    let plans: [(&str, Vec<Step>); 4] = [
        (
            "m1",
            vec![
                Step {
                    status: MessageStatus::Sent,
                    at_ms: 10,
                    error: None,
                    apply: |m| {
                        m.status = MessageStatus::Sent;
                        m.sent_at_ms = Some(10);
                    },
                },
                Step {
                    status: MessageStatus::Delivered,
                    at_ms: 20,
                    error: None,
                    apply: |m| {
                        m.status = MessageStatus::Delivered;
                        m.delivered_at_ms = Some(20);
                    },
                },
                // A late `sent` receipt never undoes `delivered`.
                Step {
                    status: MessageStatus::Sent,
                    at_ms: 30,
                    error: None,
                    apply: unchanged,
                },
                // A delivered message never becomes failed, and its error stays unset.
                Step {
                    status: MessageStatus::Failed,
                    at_ms: 40,
                    error: Some("too late"),
                    apply: unchanged,
                },
                Step {
                    status: MessageStatus::Read,
                    at_ms: 50,
                    error: None,
                    apply: |m| {
                        m.status = MessageStatus::Read;
                        m.read_at_ms = Some(50);
                    },
                },
                Step {
                    status: MessageStatus::Delivered,
                    at_ms: 60,
                    error: None,
                    apply: unchanged,
                },
                Step {
                    status: MessageStatus::Read,
                    at_ms: 70,
                    error: None,
                    apply: unchanged,
                },
            ],
        ),
        (
            "m2",
            vec![
                Step {
                    status: MessageStatus::Failed,
                    at_ms: 10,
                    error: Some("boom"),
                    apply: |m| {
                        m.status = MessageStatus::Failed;
                        m.failed_at_ms = Some(10);
                        m.error = Some("boom".to_owned());
                    },
                },
                Step {
                    status: MessageStatus::Sent,
                    at_ms: 20,
                    error: None,
                    apply: unchanged,
                },
                Step {
                    status: MessageStatus::Failed,
                    at_ms: 30,
                    error: Some("again"),
                    apply: unchanged,
                },
                // A delivery receipt outranks a failure; the old error stays (none given).
                Step {
                    status: MessageStatus::Delivered,
                    at_ms: 40,
                    error: None,
                    apply: |m| {
                        m.status = MessageStatus::Delivered;
                        m.delivered_at_ms = Some(40);
                    },
                },
            ],
        ),
        (
            "m3",
            vec![
                // Skipping ahead is allowed; skipped timestamps stay unset.
                Step {
                    status: MessageStatus::Read,
                    at_ms: 5,
                    error: None,
                    apply: |m| {
                        m.status = MessageStatus::Read;
                        m.read_at_ms = Some(5);
                    },
                },
            ],
        ),
        (
            "m4",
            vec![
                Step {
                    status: MessageStatus::Queued,
                    at_ms: 5,
                    error: Some("no"),
                    apply: unchanged,
                },
                Step {
                    status: MessageStatus::Sent,
                    at_ms: 6,
                    error: Some("sent with a warning"),
                    apply: |m| {
                        m.status = MessageStatus::Sent;
                        m.sent_at_ms = Some(6);
                        m.error = Some("sent with a warning".to_owned());
                    },
                },
            ],
        ),
    ];

    for (message_id, steps) in plans {
        let mut expected = message(&id, message_id, 1);
        for step in steps {
            let what = format!(
                "advance {message_id} to {:?} at {}",
                step.status, step.at_ms
            );
            (step.apply)(&mut expected);
            let returned = ok(
                store
                    .advance_message(&id, message_id, step.status, step.at_ms, step.error)
                    .await,
                &what,
            );
            assert_eq!(returned, Some(expected.clone()), "{what}: returned row");
            let stored = ok(store.get_message(&id, message_id).await, "get");
            assert_eq!(stored, Some(expected.clone()), "{what}: stored row");
        }
    }

    let missing = ok(
        store
            .advance_message(&id, "nope", MessageStatus::Sent, 1, None)
            .await,
        "advance unknown message",
    );
    assert_eq!(missing, None, "advance of an unknown message");
    let ghost = format!("{p}-ghost");
    let missing = ok(
        store
            .advance_message(&ghost, "m1", MessageStatus::Sent, 1, None)
            .await,
        "advance on unknown device",
    );
    assert_eq!(missing, None, "advance on an unknown device");
    assert_eq!(ok(store.get_message(&ghost, "m1").await, "get"), None);
}

/// queued_messages: outbound and still queued only, oldest first then by id, at most
/// `limit`, one device only.
/// `devices_with_queued` lists each device of the shards asked with a queued outbound
/// message once, and not devices whose messages are all sent or inbound, nor those of
/// other shards. Other checks' devices may be listed too, so it looks at this check's
/// devices only, with a limit large enough for all.
pub async fn check_devices_with_queued(store: &dyn Store) {
    let p = fresh_prefix();
    let (a, b, c) = (format!("{p}-a"), format!("{p}-b"), format!("{p}-c"));
    for id in [&a, &b, &c] {
        create(store, &device(id)).await;
    }
    insert(store, &message(&a, "one", 1)).await;
    insert(store, &message(&a, "two", 2)).await;
    let sent = MessageRecord {
        status: MessageStatus::Sent,
        sent_at_ms: Some(3),
        ..message(&b, "sent", 3)
    };
    insert(store, &sent).await;
    let inbound = MessageRecord {
        direction: Direction::Inbound,
        ..message(&c, "in", 4)
    };
    insert(store, &inbound).await;
    let all: Vec<u32> = (0..store.shards()).collect();
    let listed = ok(
        store.devices_with_queued(&all, 100_000).await,
        "devices with queued",
    );
    let mine: Vec<&String> = listed.iter().filter(|id| id.starts_with(&p)).collect();
    assert_eq!(
        mine,
        vec![&a],
        "only the device with a queued outbound message, once"
    );
    let shard_of_a = wafleet_cluster_config::shard_of(&a, store.shards());
    let others: Vec<u32> = all.iter().copied().filter(|s| *s != shard_of_a).collect();
    let listed = ok(
        store.devices_with_queued(&others, 100_000).await,
        "devices with queued",
    );
    assert!(!listed.contains(&a), "a device of a shard not asked for");
    let listed = ok(
        store.devices_with_queued(&[shard_of_a], 100_000).await,
        "devices with queued",
    );
    assert!(listed.contains(&a), "asked for its shard alone");
    ok(
        store
            .advance_message(&a, "one", MessageStatus::Sent, 5, None)
            .await,
        "advance",
    );
    ok(
        store
            .advance_message(&a, "two", MessageStatus::Sent, 6, None)
            .await,
        "advance",
    );
    let listed = ok(
        store.devices_with_queued(&all, 100_000).await,
        "devices with queued",
    );
    assert!(
        !listed.contains(&a),
        "a device whose messages all left is not listed"
    );
}

pub async fn check_queued_messages(store: &dyn Store) {
    let p = fresh_prefix();
    let (a, b) = (format!("{p}-a"), format!("{p}-b"));
    create(store, &device(&a)).await;
    create(store, &device(&b)).await;

    // Ids sort the other way round from creation times: the order must come from time.
    let newest = message(&a, "a-new", 300);
    let oldest = message(&a, "z-old", 100);
    let tie_b = message(&a, "m-tie-b", 200);
    let tie_a = MessageRecord {
        not_before_ms: Some(999_999),
        ..message(&a, "m-tie-a", 200)
    };
    for m in [&newest, &oldest, &tie_b, &tie_a] {
        insert(store, m).await;
    }
    let inbound = MessageRecord {
        direction: Direction::Inbound,
        ..message(&a, "in", 50)
    };
    let sent = MessageRecord {
        status: MessageStatus::Sent,
        sent_at_ms: Some(11),
        ..message(&a, "sent", 10)
    };
    let failed = MessageRecord {
        status: MessageStatus::Failed,
        failed_at_ms: Some(21),
        ..message(&a, "failed", 20)
    };
    for m in [&inbound, &sent, &failed, &message(&b, "other", 0)] {
        insert(store, m).await;
    }

    let queued = ok(store.queued_messages(&a, 10).await, "queued");
    assert_eq!(
        queued,
        vec![oldest.clone(), tie_a.clone(), tie_b.clone(), newest.clone()],
        "queued outbound messages, oldest first, ties by id"
    );
    let queued = ok(store.queued_messages(&a, 2).await, "queued");
    assert_eq!(queued, vec![oldest.clone(), tie_a.clone()], "limit 2");
    assert_eq!(ok(store.count_queued(&a, 10).await, "count"), 4);
    assert_eq!(
        ok(store.count_queued(&a, 2).await, "count"),
        2,
        "counts to the limit"
    );
    assert_eq!(ok(store.count_queued(&b, 10).await, "count"), 1);

    ok(
        store
            .advance_message(&a, "z-old", MessageStatus::Sent, 400, None)
            .await,
        "advance",
    );
    let ids: Vec<String> = ok(store.queued_messages(&a, 10).await, "queued")
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(
        ids,
        ["m-tie-a", "m-tie-b", "a-new"],
        "a sent message left the queue"
    );

    // After a place: the tie is broken by id, the place itself excluded, limits hold.
    let after = |m: &MessageRecord| QueueKey::of(m);
    let ids =
        |rows: Vec<MessageRecord>| -> Vec<String> { rows.into_iter().map(|m| m.id).collect() };
    let tail = ok(
        store
            .queued_messages_after(&a, Some(&after(&tie_a)), 10)
            .await,
        "queued after",
    );
    assert_eq!(ids(tail), ["m-tie-b", "a-new"], "after the first of a tie");
    let tail = ok(
        store
            .queued_messages_after(&a, Some(&after(&tie_a)), 1)
            .await,
        "queued after",
    );
    assert_eq!(ids(tail), ["m-tie-b"], "after, limit 1");
    let tail = ok(
        store
            .queued_messages_after(&a, Some(&after(&newest)), 10)
            .await,
        "queued after",
    );
    assert!(tail.is_empty(), "nothing after the newest: {tail:?}");
    let gone = QueueKey {
        at_ms: 100,
        id: "z-old".to_owned(),
    };
    let tail = ok(
        store.queued_messages_after(&a, Some(&gone), 10).await,
        "queued after",
    );
    assert_eq!(
        ids(tail),
        ["m-tie-a", "m-tie-b", "a-new"],
        "after a message that left the queue"
    );
    let all = ok(
        store.queued_messages_after(&a, None, 10).await,
        "queued after none",
    );
    assert_eq!(
        ids(all),
        ["m-tie-a", "m-tie-b", "a-new"],
        "no place: from the start"
    );

    let ids: Vec<String> = ok(store.queued_messages(&b, 10).await, "queued")
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, ["other"], "another device's queue");
    let ghost = format!("{p}-ghost");
    assert!(ok(store.queued_messages(&ghost, 10).await, "queued").is_empty());
}

// ---- concurrency ----

/// Many callers creating one device at once: exactly one wins, the rest get `Conflict`.
pub async fn check_concurrent_device_creates(store: &dyn Store) {
    let p = fresh_prefix();
    let candidates: Vec<DeviceRecord> = (0..20)
        .map(|i| DeviceRecord {
            name: format!("candidate {i}"),
            ..device(&format!("{p}-race"))
        })
        .collect();
    let results = join_all(candidates.iter().map(|d| store.create_device(d))).await;
    let mut winners = Vec::new();
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Ok(()) => winners.push(i),
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("concurrent create {i}: unexpected store error: {e}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "concurrent creates of one id: winners {winners:?}"
    );
    let stored = ok(store.get_device(&format!("{p}-race")).await, "get");
    assert_eq!(
        stored,
        Some(candidates[winners[0]].clone()),
        "the winner's row"
    );
}

/// 50 concurrent inserts with one idempotency key: exactly one `Inserted`, every other
/// call returns that same message as `Existing`, and only it is stored.
pub async fn check_concurrent_idempotent_inserts(store: &dyn Store) {
    let p = fresh_prefix();
    let id = format!("{p}-idem");
    create(store, &device(&id)).await;
    let attempts: Vec<MessageRecord> = (0..50)
        .map(|i| keyed_message(&id, &format!("m{i:02}"), "same-key"))
        .collect();
    let results = join_all(attempts.iter().map(|m| store.insert_message(m))).await;

    let mut inserted = Vec::new();
    let mut existing = Vec::new();
    for (i, result) in results.into_iter().enumerate() {
        match ok(result, &format!("concurrent insert {i}")) {
            InsertOutcome::Inserted => inserted.push(i),
            InsertOutcome::Existing(m) => existing.push(m),
        }
    }
    assert_eq!(inserted.len(), 1, "Inserted outcomes: {inserted:?}");
    let winner = &attempts[inserted[0]];
    assert!(
        existing.iter().all(|m| m == winner),
        "an Existing outcome is not the inserted message"
    );
    for m in &attempts {
        let stored = ok(store.get_message(&id, &m.id).await, "get");
        if m.id == winner.id {
            assert_eq!(stored.as_ref(), Some(winner), "the winner is stored");
        } else {
            assert_eq!(stored, None, "a losing insert {} was stored", m.id);
        }
    }
}

/// Concurrent patches of different fields of one device all land: a patch writes only
/// its own fields, never a stale copy of the others.
pub async fn check_concurrent_patches(store: &dyn Store) {
    let p = fresh_prefix();
    let id = format!("{p}-patches");
    create(store, &device(&id)).await;
    let patches = [
        DevicePatch {
            name: Some("patched".to_owned()),
            ..DevicePatch::default()
        },
        DevicePatch {
            status: Some(DeviceStatus::Ready),
            ..DevicePatch::default()
        },
        DevicePatch {
            status_reason: Some(Some("reason".to_owned())),
            ..DevicePatch::default()
        },
        DevicePatch {
            trust_level: Some(TrustLevel::Trusted),
            ..DevicePatch::default()
        },
        DevicePatch {
            phone: Some(Some("+100".to_owned())),
            ..DevicePatch::default()
        },
        DevicePatch {
            webhook: Some(Some("https://example.test/w".to_owned())),
            ..DevicePatch::default()
        },
        DevicePatch {
            desired_running: Some(true),
            ..DevicePatch::default()
        },
        DevicePatch {
            last_connected_at_ms: Some(Some(77)),
            ..DevicePatch::default()
        },
    ];
    let results = join_all(
        patches
            .iter()
            .map(|patch| store.patch_device(&id, patch, 99, None)),
    )
    .await;
    for (i, result) in results.into_iter().enumerate() {
        ok(result, &format!("concurrent patch {i}"));
    }
    let expected = DeviceRecord {
        name: "patched".to_owned(),
        status: DeviceStatus::Ready,
        status_reason: Some("reason".to_owned()),
        trust_level: TrustLevel::Trusted,
        phone: Some("+100".to_owned()),
        webhook: Some("https://example.test/w".to_owned()),
        desired_running: true,
        last_connected_at_ms: Some(77),
        updated_at_ms: 99,
        ..device(&id)
    };
    let stored = ok(store.get_device(&id).await, "get");
    assert_eq!(stored, Some(expected), "a concurrent patch was lost");
}

/// Concurrent receipts for one message settle on the highest-ranked status, whatever
/// order they land in, and each applied status keeps its timestamp.
pub async fn check_concurrent_advances(store: &dyn Store) {
    let p = fresh_prefix();
    let id = format!("{p}-receipts");
    create(store, &device(&id)).await;
    insert(store, &message(&id, "m", 1)).await;
    let receipts: Vec<(MessageStatus, i64)> = (0..40)
        .map(|i| {
            let status = [
                MessageStatus::Sent,
                MessageStatus::Delivered,
                MessageStatus::Failed,
                MessageStatus::Read,
            ][i % 4];
            (status, 1_000 + i as i64)
        })
        .collect();
    let results = join_all(
        receipts
            .iter()
            .map(|(status, at)| store.advance_message(&id, "m", *status, *at, None)),
    )
    .await;
    for (i, result) in results.into_iter().enumerate() {
        let row = ok(result, &format!("concurrent advance {i}"));
        assert!(row.is_some(), "concurrent advance {i} lost the message");
    }
    let stored = ok(store.get_message(&id, "m").await, "get").expect("message m exists");
    assert_eq!(stored.status, MessageStatus::Read, "final status");
    let read_at = stored.read_at_ms.expect("read_at_ms set");
    assert!(
        receipts.contains(&(MessageStatus::Read, read_at)),
        "read_at_ms {read_at} is not the time of a read receipt"
    );
    // Every status that was applied on the way kept a timestamp from its own receipts.
    for (status, at) in [
        (MessageStatus::Sent, stored.sent_at_ms),
        (MessageStatus::Delivered, stored.delivered_at_ms),
        (MessageStatus::Failed, stored.failed_at_ms),
    ] {
        if let Some(at) = at {
            assert!(
                receipts.contains(&(status, at)),
                "{status:?} timestamp {at} is not the time of a {status:?} receipt"
            );
        }
    }
}

// ---- leases and fencing ----

/// First grant is epoch 1 until `now + ttl`; another holder is refused and told who
/// holds it; the holder re-acquiring a live lease keeps its epoch; renew needs holder,
/// epoch and time left (an expired lease cannot be renewed); re-acquiring after a lapse
/// takes a new epoch, even for the same holder.
pub async fn check_lease_acquire_and_renew(store: &dyn Store) {
    let p = fresh_prefix();
    let (a, b) = (format!("{p}-a"), format!("{p}-b"));
    let s = fresh_shards(1)[0];

    assert_eq!(
        get_lease(store, s).await,
        None,
        "a fresh shard has no lease"
    );
    let first = lease(s, &a, 1, T0 + TTL_MS);
    expect_granted(
        ok(store.acquire_lease(&a, s, T0, TTL).await, "acquire"),
        &first,
        "first acquire",
    );
    assert_eq!(get_lease(store, s).await, Some(first.clone()));
    expect_refused(
        ok(store.acquire_lease(&b, s, T0 + 1, TTL).await, "acquire"),
        &first,
        "acquire of a live lease by another holder",
    );
    assert_eq!(
        get_lease(store, s).await,
        Some(first.clone()),
        "a refusal changes nothing"
    );

    let extended = lease(s, &a, 1, T0 + 5 + TTL_MS);
    expect_granted(
        ok(store.acquire_lease(&a, s, T0 + 5, TTL).await, "acquire"),
        &extended,
        "re-acquire of a live lease by its holder",
    );

    let renewed = lease(s, &a, 1, T0 + 6 + TTL_MS);
    assert!(
        ok(
            store.renew_lease(&a, fence(s, 1), T0 + 6, TTL).await,
            "renew"
        ),
        "renew by the holder before expiry"
    );
    assert_eq!(
        get_lease(store, s).await,
        Some(renewed.clone()),
        "renew extends"
    );
    for (holder, epoch, what) in [(&a, 2, "another epoch"), (&b, 1, "another holder")] {
        assert!(
            !ok(
                store
                    .renew_lease(holder, fence(s, epoch), T0 + 7, TTL)
                    .await,
                "renew"
            ),
            "renew with {what} succeeded"
        );
    }
    let expiry = renewed.expires_at_ms;
    assert!(
        !ok(
            store.renew_lease(&a, fence(s, 1), expiry, TTL).await,
            "renew"
        ),
        "renew at the expiry instant succeeded"
    );
    assert_eq!(
        get_lease(store, s).await,
        Some(renewed),
        "refused renews change nothing"
    );

    expect_granted(
        ok(store.acquire_lease(&a, s, expiry, TTL).await, "acquire"),
        &lease(s, &a, 2, expiry + TTL_MS),
        "re-acquire by the same holder after expiry",
    );
}

/// After expiry another node takes the shard with the next epoch; from then on the old
/// holder can neither renew, re-acquire, nor write (fenced, nothing changes), while the
/// new holder can.
pub async fn check_lease_takeover_after_expiry(store: &dyn Store) {
    let p = fresh_prefix();
    let (a, b) = (format!("{p}-a"), format!("{p}-b"));
    let s = fresh_shards(1)[0];
    let id = format!("{p}-dev");
    create(store, &device(&id)).await;

    let held = ok(store.acquire_lease(&a, s, T0, TTL).await, "acquire");
    let old = held.granted().expect("first acquire is granted").fence();
    ok(
        store
            .put_link_state(&id, "creds", "k", &blob(1, b"by a"), Some(&old))
            .await,
        "put by the holder",
    );
    ok(
        store
            .put_link_state(&id, "creds", "gone", &blob(1, b"by a"), Some(&old))
            .await,
        "put by the holder",
    );
    let ready = DevicePatch {
        status: Some(DeviceStatus::Ready),
        ..DevicePatch::default()
    };
    ok(
        store.patch_device(&id, &ready, T0, Some(&old)).await,
        "patch by the holder",
    );

    expect_refused(
        ok(
            store.acquire_lease(&b, s, T0 + TTL_MS - 1, TTL).await,
            "acquire",
        ),
        &lease(s, &a, 1, T0 + TTL_MS),
        "takeover a millisecond before expiry",
    );
    let taken = lease(s, &b, 2, T0 + 2 * TTL_MS);
    expect_granted(
        ok(
            store.acquire_lease(&b, s, T0 + TTL_MS, TTL).await,
            "acquire",
        ),
        &taken,
        "takeover at expiry",
    );
    let new = taken.fence();

    assert!(
        !ok(store.renew_lease(&a, old, T0 + TTL_MS, TTL).await, "renew"),
        "the old holder renewed after a takeover"
    );
    expect_refused(
        ok(
            store.acquire_lease(&a, s, T0 + TTL_MS + 1, TTL).await,
            "acquire",
        ),
        &taken,
        "the old holder re-acquiring",
    );

    expect_fenced(
        store
            .put_link_state(&id, "creds", "k", &blob(9, b"stale"), Some(&old))
            .await,
        old,
        Some(2),
        "put by the old holder",
    );
    expect_fenced(
        store.delete_link_state(&id, "creds", "k", Some(&old)).await,
        old,
        Some(2),
        "delete by the old holder",
    );
    expect_fenced(
        store.clear_link_state(&id, Some(&old)).await,
        old,
        Some(2),
        "clear by the old holder",
    );
    let stopped = DevicePatch {
        status: Some(DeviceStatus::Stopped),
        desired_running: Some(false),
        ..DevicePatch::default()
    };
    expect_fenced(
        store.patch_device(&id, &stopped, T0 + 1, Some(&old)).await,
        old,
        Some(2),
        "patch by the old holder",
    );
    let listed = ok(store.list_link_state(&id, "creds").await, "list");
    assert_eq!(
        listed,
        vec![
            ("gone".to_owned(), blob(1, b"by a")),
            ("k".to_owned(), blob(1, b"by a")),
        ],
        "fenced writes changed link state"
    );
    let row = ok(store.get_device(&id).await, "get").expect("device exists");
    assert_eq!(
        (row.status, row.desired_running, row.updated_at_ms),
        (DeviceStatus::Ready, false, T0),
        "a fenced patch changed the device"
    );

    ok(
        store
            .put_link_state(&id, "creds", "k", &blob(2, b"by b"), Some(&new))
            .await,
        "put by the new holder",
    );
    assert!(ok(
        store
            .delete_link_state(&id, "creds", "gone", Some(&new))
            .await,
        "delete by the new holder"
    ));
    ok(
        store.patch_device(&id, &stopped, T0 + 2, Some(&new)).await,
        "patch by the new holder",
    );
    assert_eq!(
        ok(store.list_link_state(&id, "creds").await, "list"),
        vec![("k".to_owned(), blob(2, b"by b"))]
    );
    assert_eq!(
        ok(
            store.clear_link_state(&id, Some(&new)).await,
            "clear by the new holder"
        ),
        1
    );
    assert!(
        ok(
            store.renew_lease(&b, new, T0 + TTL_MS + 5, TTL).await,
            "renew"
        ),
        "the new holder renews"
    );
}

/// Release by holder and epoch frees the shard at once and fences the released epoch;
/// the next holder, even before the old expiry, gets a higher epoch.
pub async fn check_lease_release(store: &dyn Store) {
    let p = fresh_prefix();
    let (a, b) = (format!("{p}-a"), format!("{p}-b"));
    let s = fresh_shards(1)[0];
    let id = format!("{p}-dev");
    create(store, &device(&id)).await;

    let first = lease(s, &a, 1, T0 + TTL_MS);
    expect_granted(
        ok(store.acquire_lease(&a, s, T0, TTL).await, "acquire"),
        &first,
        "acquire",
    );
    for (holder, epoch, what) in [(&b, 1, "another holder"), (&a, 2, "another epoch")] {
        assert!(
            !ok(
                store.release_lease(holder, fence(s, epoch)).await,
                "release"
            ),
            "release by {what} succeeded"
        );
    }
    assert_eq!(
        get_lease(store, s).await,
        Some(first.clone()),
        "refused releases"
    );

    assert!(ok(store.release_lease(&a, fence(s, 1)).await, "release"));
    assert_eq!(
        get_lease(store, s).await,
        None,
        "a released shard has no lease"
    );
    assert!(
        ok(store.list_leases(Some(&a)).await, "list").is_empty(),
        "a released lease is still listed"
    );
    assert!(
        !ok(store.release_lease(&a, fence(s, 1)).await, "release"),
        "second release"
    );
    assert!(
        !ok(
            store.renew_lease(&a, fence(s, 1), T0 + 1, TTL).await,
            "renew"
        ),
        "renew of a released lease"
    );
    expect_fenced(
        store
            .put_link_state(&id, "creds", "k", &blob(1, b"x"), Some(&fence(s, 1)))
            .await,
        fence(s, 1),
        None,
        "write under a released lease",
    );

    let next = lease(s, &b, 2, T0 + 2 + TTL_MS);
    expect_granted(
        ok(store.acquire_lease(&b, s, T0 + 2, TTL).await, "acquire"),
        &next,
        "acquire right after a release, long before the old expiry",
    );
    expect_fenced(
        store
            .put_link_state(&id, "creds", "k", &blob(1, b"x"), Some(&fence(s, 1)))
            .await,
        fence(s, 1),
        Some(2),
        "write under the released epoch",
    );
    assert!(
        ok(store.list_link_state(&id, "creds").await, "list").is_empty(),
        "a fenced write wrote"
    );
}

/// Bulk acquire, renew and release answer per item, in input order; listings are by
/// shard, held leases only (expired included), and per holder.
pub async fn check_lease_bulk_and_listing(store: &dyn Store) {
    let p = fresh_prefix();
    let (a, b) = (format!("{p}-a"), format!("{p}-b"));
    let s = fresh_shards(5);
    let mine = |shard: u32| s.contains(&shard);

    let b_lease = lease(s[1], &b, 1, T0 + TTL_MS);
    expect_granted(
        ok(store.acquire_lease(&b, s[1], T0, TTL).await, "acquire"),
        &b_lease,
        "acquire by b",
    );
    // Input order is not shard order.
    let wanted = [s[3], s[1], s[0], s[2]];
    let outcomes = ok(
        store.acquire_leases(&a, &wanted, T0 + 1, TTL).await,
        "acquire_leases",
    );
    let expires = T0 + 1 + TTL_MS;
    assert_eq!(
        outcomes,
        vec![
            Acquired::Granted(lease(s[3], &a, 1, expires)),
            Acquired::Refused(b_lease.clone()),
            Acquired::Granted(lease(s[0], &a, 1, expires)),
            Acquired::Granted(lease(s[2], &a, 1, expires)),
        ],
        "acquire_leases outcomes, in input order"
    );

    let a_leases = vec![
        lease(s[0], &a, 1, expires),
        lease(s[2], &a, 1, expires),
        lease(s[3], &a, 1, expires),
    ];
    assert_eq!(
        ok(store.list_leases(Some(&a)).await, "list a"),
        a_leases,
        "leases of a, by shard"
    );
    let all = ok(store.list_leases(None).await, "list all");
    assert!(
        all.windows(2).all(|w| w[0].shard < w[1].shard),
        "list_leases is not ordered by shard"
    );
    let ours: Vec<Lease> = all.into_iter().filter(|l| mine(l.shard)).collect();
    assert_eq!(
        ours,
        vec![
            a_leases[0].clone(),
            b_lease.clone(),
            a_leases[1].clone(),
            a_leases[2].clone(),
        ],
        "list_leases shows every held lease"
    );

    let renewed = ok(
        store
            .renew_leases(
                &a,
                &[
                    fence(s[2], 1),
                    fence(s[1], 1), // b's
                    fence(s[0], 7), // wrong epoch
                    fence(s[4], 1), // never leased
                    fence(s[3], 1),
                ],
                T0 + 2,
                TTL,
            )
            .await,
        "renew_leases",
    );
    assert_eq!(renewed, [true, false, false, false, true], "renew_leases");
    assert_eq!(
        get_lease(store, s[0]).await.map(|l| l.expires_at_ms),
        Some(expires),
        "a refused bulk renew changed its lease"
    );
    assert_eq!(
        get_lease(store, s[3]).await.map(|l| l.expires_at_ms),
        Some(T0 + 2 + TTL_MS)
    );

    // Expired leases are still listed (the store has no clock); the caller judges.
    let late = T0 + 100 * TTL_MS;
    assert_eq!(
        ok(store.list_leases(Some(&a)).await, "list a").len(),
        3,
        "expired leases are listed"
    );
    assert!(
        ok(store.list_leases(Some(&a)).await, "list a")
            .iter()
            .all(|l| l.is_expired(late))
    );

    let released = ok(
        store
            .release_leases(&a, &[fence(s[0], 1), fence(s[1], 1), fence(s[2], 1)])
            .await,
        "release_leases",
    );
    assert_eq!(released, [true, false, true], "release_leases");
    assert_eq!(
        ok(store.list_leases(Some(&a)).await, "list a"),
        vec![lease(s[3], &a, 1, T0 + 2 + TTL_MS)]
    );
    assert_eq!(
        get_lease(store, s[1]).await,
        Some(b_lease),
        "b's lease kept"
    );

    assert!(ok(store.acquire_leases(&a, &[], T0, TTL).await, "empty").is_empty());
    assert!(ok(store.renew_leases(&a, &[], T0, TTL).await, "empty").is_empty());
    assert!(ok(store.release_leases(&a, &[]).await, "empty").is_empty());
}

/// Many nodes racing for one free shard: exactly one wins, every other is refused with
/// the winner's lease. The same when they race to take over an expired lease: one
/// winner, and the epoch goes up exactly once.
pub async fn check_concurrent_lease_acquires(store: &dyn Store) {
    let p = fresh_prefix();
    let s = fresh_shards(1)[0];
    for (round, now, epoch) in [(0, T0, 1), (1, T0 + TTL_MS, 2)] {
        let holders: Vec<String> = (0..20).map(|i| format!("{p}-r{round}-n{i}")).collect();
        let results = join_all(holders.iter().map(|h| store.acquire_lease(h, s, now, TTL))).await;
        let outcomes: Vec<Acquired> = results
            .into_iter()
            .enumerate()
            .map(|(i, r)| ok(r, &format!("round {round}: acquire {i}")))
            .collect();
        let winners: Vec<&Lease> = outcomes.iter().filter_map(Acquired::granted).collect();
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let winner = winners[0].clone();
        assert_eq!(
            (winner.epoch, winner.expires_at_ms),
            (epoch, now + TTL_MS),
            "round {round}: the winner's lease"
        );
        assert!(
            outcomes.iter().all(|o| o.lease() == &winner),
            "round {round}: a refusal named another lease than the winner's"
        );
        assert_eq!(
            get_lease(store, s).await,
            Some(winner),
            "round {round}: stored"
        );
    }
}

/// A fenced write needs the shard's current epoch: none for a shard nobody holds, the
/// right one while held. The fence is checked before anything else (an unknown device
/// under a stale fence is `Fenced`, under a good one `NotFound`). Unfenced writes
/// (`None`) are accepted whatever the leases say.
pub async fn check_fenced_writes(store: &dyn Store) {
    let p = fresh_prefix();
    let a = format!("{p}-a");
    let s = fresh_shards(1)[0];
    let id = format!("{p}-dev");
    let ghost = format!("{p}-ghost");
    create(store, &device(&id)).await;
    let patch = DevicePatch {
        name: Some("renamed".to_owned()),
        ..DevicePatch::default()
    };

    expect_fenced(
        store
            .put_link_state(&id, "creds", "k", &blob(1, b"x"), Some(&fence(s, 1)))
            .await,
        fence(s, 1),
        None,
        "write under a shard nobody holds",
    );
    expect_fenced(
        store
            .patch_device(&id, &patch, T0, Some(&fence(s, 1)))
            .await,
        fence(s, 1),
        None,
        "patch under a shard nobody holds",
    );

    ok(store.acquire_lease(&a, s, T0, TTL).await, "acquire");
    let current = fence(s, 1);
    for stale in [fence(s, 0), fence(s, 2)] {
        expect_fenced(
            store
                .put_link_state(&id, "creds", "k", &blob(1, b"x"), Some(&stale))
                .await,
            stale,
            Some(1),
            "put with a wrong epoch",
        );
    }
    assert!(
        ok(store.list_link_state(&id, "creds").await, "list").is_empty(),
        "a fenced put wrote"
    );
    ok(
        store
            .put_link_state(&id, "creds", "k", &blob(1, b"x"), Some(&current))
            .await,
        "put with the current epoch",
    );
    assert_eq!(
        ok(store.get_link_state(&id, "creds", "k").await, "get"),
        Some(blob(1, b"x"))
    );
    let row = ok(
        store
            .patch_device(&id, &patch, T0 + 1, Some(&current))
            .await,
        "patch with the current epoch",
    );
    assert_eq!((row.name.as_str(), row.updated_at_ms), ("renamed", T0 + 1));

    // The fence comes first; a good fence does not hide a missing device.
    let stale = fence(s, 2);
    expect_fenced(
        store
            .put_link_state(&ghost, "creds", "k", &blob(1, b"x"), Some(&stale))
            .await,
        stale,
        Some(1),
        "put for an unknown device under a stale fence",
    );
    expect_not_found(
        store
            .put_link_state(&ghost, "creds", "k", &blob(1, b"x"), Some(&current))
            .await,
        "put for an unknown device under the current fence",
    );
    expect_not_found(
        store.patch_device(&ghost, &patch, T0, Some(&current)).await,
        "patch of an unknown device under the current fence",
    );
    assert!(!ok(
        store
            .delete_link_state(&ghost, "creds", "k", Some(&current))
            .await,
        "delete for an unknown device"
    ));

    // Unfenced writes ignore leases.
    ok(
        store
            .put_link_state(&id, "creds", "k", &blob(2, b"unfenced"), None)
            .await,
        "unfenced put while the shard is leased",
    );
    assert_eq!(
        ok(store.get_link_state(&id, "creds", "k").await, "get"),
        Some(blob(2, b"unfenced"))
    );
    ok(
        store
            .patch_device(&id, &DevicePatch::default(), T0 + 2, None)
            .await,
        "unfenced patch",
    );
    assert_eq!(
        ok(store.clear_link_state(&id, None).await, "unfenced clear"),
        1
    );

    // A delete is fenced like a patch: a stale fence deletes nothing.
    let stale = fence(s, 2);
    expect_fenced(
        store.delete_device(&id, Some(&stale)).await,
        stale,
        Some(1),
        "delete under a stale fence",
    );
    assert!(
        ok(store.get_device(&id).await, "get").is_some(),
        "a fenced delete deleted"
    );
    assert!(ok(
        store.delete_device(&id, Some(&current)).await,
        "delete under the current fence"
    ));
    assert!(ok(store.get_device(&id).await, "get").is_none());
}

/// Outbound slots: `not_before_ms` or else `created_at_ms`, of outbound messages created
/// since a time, whatever their status, ascending, limited, per device.
pub async fn check_outbound_slots(store: &dyn Store) {
    let p = fresh_prefix();
    let (a, b) = (format!("{p}-a"), format!("{p}-b"));
    create(store, &device(&a)).await;
    create(store, &device(&b)).await;
    let old = message(&a, "old", 100);
    let later = MessageRecord {
        not_before_ms: Some(5_000),
        ..message(&a, "later", 1_000)
    };
    let now = message(&a, "now", 2_000);
    let sent = MessageRecord {
        status: MessageStatus::Sent,
        sent_at_ms: Some(1_600),
        ..message(&a, "sent", 1_500)
    };
    let failed = MessageRecord {
        status: MessageStatus::Failed,
        failed_at_ms: Some(3_100),
        ..message(&a, "failed", 3_000)
    };
    let inbound = MessageRecord {
        direction: Direction::Inbound,
        status: MessageStatus::Delivered,
        ..message(&a, "in", 1_200)
    };
    for m in [
        &old,
        &later,
        &now,
        &sent,
        &failed,
        &inbound,
        &MessageRecord {
            not_before_ms: Some(1_100),
            ..message(&b, "other", 1_100)
        },
    ] {
        insert(store, m).await;
    }
    let slots = ok(store.outbound_slots(&a, 1_000, 100).await, "outbound_slots");
    assert_eq!(
        slots,
        vec![1_500, 3_000, 5_000],
        "slots since 1000: not_before or created, any status but queued without a slot, \
         outbound only, ascending"
    );
    ok(
        store.reschedule_message(&a, "now", Some(2_500)).await,
        "reschedule",
    );
    let slots = ok(store.outbound_slots(&a, 1_000, 100).await, "outbound_slots");
    assert_eq!(
        slots,
        vec![1_500, 2_500, 3_000, 5_000],
        "a slot given later counts"
    );
    ok(
        store.reschedule_message(&a, "later", None).await,
        "reschedule",
    );
    let slots = ok(store.outbound_slots(&a, 1_000, 100).await, "outbound_slots");
    assert_eq!(
        slots,
        vec![1_500, 2_500, 3_000],
        "a slot given back no longer counts"
    );
    let slots = ok(store.outbound_slots(&a, 0, 2).await, "outbound_slots");
    assert_eq!(slots, vec![1_500, 2_500], "limit keeps the earliest");
    let slots = ok(store.outbound_slots(&b, 0, 100).await, "outbound_slots");
    assert_eq!(slots, vec![1_100], "per device");
    let none = ok(
        store.outbound_slots(&format!("{p}-none"), 0, 100).await,
        "outbound_slots of an unknown device",
    );
    assert!(none.is_empty(), "an unknown device has no slots");
}

/// Rescheduling changes `not_before_ms` of a queued outbound message only.
pub async fn check_reschedule_message(store: &dyn Store) {
    let p = fresh_prefix();
    let a = format!("{p}-a");
    create(store, &device(&a)).await;
    insert(store, &message(&a, "q", 100)).await;
    let sent = MessageRecord {
        status: MessageStatus::Sent,
        sent_at_ms: Some(300),
        ..message(&a, "s", 200)
    };
    insert(store, &sent).await;

    let moved = ok(
        store.reschedule_message(&a, "q", Some(9_000)).await,
        "reschedule",
    );
    assert!(moved, "a queued message is rescheduled");
    let q = ok(store.get_message(&a, "q").await, "get").expect("message q");
    assert_eq!(q.not_before_ms, Some(9_000));
    assert_eq!(q.status, MessageStatus::Queued);
    let queued = ok(store.queued_messages(&a, 10).await, "queued");
    assert_eq!(queued, vec![q.clone()], "the queue shows the new time");

    let cleared = ok(store.reschedule_message(&a, "q", None).await, "reschedule");
    assert!(cleared);
    let q = ok(store.get_message(&a, "q").await, "get").expect("message q");
    assert_eq!(q.not_before_ms, None, "None clears the time");

    let moved = ok(
        store.reschedule_message(&a, "s", Some(9_000)).await,
        "reschedule",
    );
    assert!(!moved, "a sent message is left alone");
    let s = ok(store.get_message(&a, "s").await, "get").expect("message s");
    assert_eq!(s, sent, "unchanged");
    let missing = ok(
        store.reschedule_message(&a, "nope", Some(1)).await,
        "reschedule",
    );
    assert!(!missing, "an unknown message is not found");
}

/// Settings: absent until put, then the last value put, with its time.
pub async fn check_settings(store: &dyn Store) {
    let key = format!("conformance-{}", fresh_prefix());
    assert_eq!(ok(store.get_setting(&key).await, "get_setting"), None);
    ok(
        store.put_setting(&key, r#"{"a":1}"#, 1_000).await,
        "put_setting",
    );
    let got = ok(store.get_setting(&key).await, "get_setting").expect("setting");
    assert_eq!(got.value, r#"{"a":1}"#);
    assert_eq!(got.updated_at_ms, 1_000);
    ok(
        store.put_setting(&key, r#"{"a":2}"#, 2_000).await,
        "put_setting",
    );
    let got = ok(store.get_setting(&key).await, "get_setting").expect("setting");
    assert_eq!(
        (got.value.as_str(), got.updated_at_ms),
        (r#"{"a":2}"#, 2_000)
    );
    let other = format!("{key}-other");
    assert_eq!(
        ok(store.get_setting(&other).await, "get_setting"),
        None,
        "keys are independent"
    );
}
