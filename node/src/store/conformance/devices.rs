//! Conformance of devices: create, get, patch, list (pages, filters, order), counts,
//! deletes with what they own, and the devices of given shards.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use wafleet_cluster_config::shard_of;

use super::{
    T0, blob, counts_map, create, device, expect_conflict, expect_not_found, fresh_prefix,
    full_device, insert, keyed_message, ok,
};
use crate::store::{DevicePatch, DeviceQuery, DeviceRecord, DeviceStatus, Store, TrustLevel};

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
