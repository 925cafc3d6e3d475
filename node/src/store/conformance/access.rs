//! Conformance of the access directory, the audit log and tenant-scoped device reads.

use std::collections::BTreeMap;

use super::{create, device, fresh_prefix, ok};
use crate::store::{
    AccessKind, AccessQuery, AccessRecord, AuditEntry, AuditQuery, DevicePatch, DeviceQuery,
    DeviceStatus, Store, StoreError,
};

fn record(kind: AccessKind, id: &str, tenant: Option<&str>, body: &str) -> AccessRecord {
    AccessRecord {
        kind,
        id: id.to_owned(),
        tenant: tenant.map(str::to_owned),
        body: body.to_owned(),
        updated_at_ms: 1_700_000_000_000,
    }
}

fn ids(records: &[AccessRecord]) -> Vec<&str> {
    records.iter().map(|r| r.id.as_str()).collect()
}

/// Create is conditional, update needs the record, the same id under two kinds is two
/// records, lists are per kind (and tenant), in id order, paged; delete says whether
/// there was a record.
pub async fn check_access_directory(store: &dyn Store) {
    let p = fresh_prefix();
    let (t1, t2) = (format!("{p}-t1"), format!("{p}-t2"));
    let key = |n: &str| format!("{p}-k{n}");
    let body = r#"{"name":"é \"quoted\"","hash":"00ff"}"#;
    for (n, tenant) in [("3", &t1), ("1", &t1), ("2", &t2), ("4", &t1)] {
        ok(
            store
                .create_access(&record(AccessKind::Key, &key(n), Some(tenant), body))
                .await,
            "create key",
        );
    }
    // The same id as a user is another record.
    ok(
        store
            .create_access(&record(AccessKind::User, &key("1"), None, "{}"))
            .await,
        "create a user with a key's id",
    );
    match store
        .create_access(&record(AccessKind::Key, &key("1"), Some(&t2), "{}"))
        .await
    {
        Err(StoreError::Conflict { .. }) => {}
        other => panic!("creating an existing key: expected Conflict, got {other:?}"),
    }
    let got = ok(store.get_access(AccessKind::Key, &key("1")).await, "get");
    assert_eq!(
        got,
        Some(record(AccessKind::Key, &key("1"), Some(&t1), body)),
        "a key as created (the failed create changed nothing)"
    );
    assert_eq!(
        ok(store.get_access(AccessKind::Tenant, &key("1")).await, "get"),
        None,
        "no tenant under a key's id"
    );

    let mut updated = record(AccessKind::Key, &key("1"), Some(&t2), r#"{"revoked":true}"#);
    updated.updated_at_ms += 5;
    ok(store.update_access(&updated).await, "update");
    assert_eq!(
        ok(store.get_access(AccessKind::Key, &key("1")).await, "get"),
        Some(updated.clone()),
        "the update replaced tenant, body and time"
    );
    match store
        .update_access(&record(AccessKind::Key, &key("none"), None, "{}"))
        .await
    {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("updating a missing key: expected NotFound, got {other:?}"),
    }
    assert_eq!(
        ok(store.get_access(AccessKind::Key, &key("none")).await, "get"),
        None,
        "a failed update creates nothing"
    );

    // Lists: this check's keys only (others may share the store), by tenant, paged.
    let of_tenant = |tenant: &str, after: Option<String>, limit| AccessQuery {
        kind: AccessKind::Key,
        tenant: Some(tenant.to_owned()),
        after,
        limit,
    };
    let t1_keys = ok(store.list_access(&of_tenant(&t1, None, 10)).await, "list");
    assert_eq!(
        ids(&t1_keys),
        [key("3"), key("4")],
        "t1's keys, in id order"
    );
    let t2_keys = ok(store.list_access(&of_tenant(&t2, None, 10)).await, "list");
    assert_eq!(ids(&t2_keys), [key("1"), key("2")], "t2's keys (k1 moved)");
    let first = ok(store.list_access(&of_tenant(&t2, None, 1)).await, "list");
    assert_eq!(ids(&first), [key("1")], "a page of one");
    let next = ok(
        store.list_access(&of_tenant(&t2, Some(key("1")), 1)).await,
        "list",
    );
    assert_eq!(ids(&next), [key("2")], "the next page");
    let all = ok(
        store
            .list_access(&AccessQuery {
                kind: AccessKind::Key,
                tenant: None,
                after: Some(format!("{p}-")),
                limit: 4,
            })
            .await,
        "list",
    );
    assert_eq!(
        ids(&all),
        [key("1"), key("2"), key("3"), key("4")],
        "every tenant's keys after a prefix, in id order, users not among them"
    );

    assert!(ok(
        store.delete_access(AccessKind::Key, &key("2")).await,
        "delete"
    ));
    assert!(
        !ok(
            store.delete_access(AccessKind::Key, &key("2")).await,
            "delete"
        ),
        "deleting twice"
    );
    assert_eq!(
        ok(store.get_access(AccessKind::Key, &key("2")).await, "get"),
        None
    );
    assert!(
        ok(store.get_access(AccessKind::User, &key("1")).await, "get").is_some(),
        "deleting a key leaves the user of the same id"
    );
}

fn entry(p: &str, n: u32, at_ms: i64, actor: &str, tenant: Option<&str>) -> AuditEntry {
    AuditEntry {
        id: format!("{at_ms:013}-{p}-{n:03}"),
        at_ms,
        actor: format!("{p}-{actor}"),
        tenant: tenant.map(|t| format!("{p}-{t}")),
        action: if n.is_multiple_of(2) {
            "create_device"
        } else {
            "start_device"
        }
        .to_owned(),
        target: format!("/v1/devices/{p}-d{}", n % 3),
        source: "127.0.0.1:5555".to_owned(),
        status: if n == 4 { 404 } else { 201 },
        outcome: if n == 4 { "device_not_found" } else { "ok" }.to_owned(),
    }
}

/// Entries come back in id order whatever order they were appended in, a repeated id is
/// stored once, and every filter narrows the page.
pub async fn check_audit_log(store: &dyn Store) {
    let p = fresh_prefix();
    // Far in the future so that no other entry of a shared store falls among them.
    let t0 = 4_000_000_000_000 + i64::from(fastrand::u32(..1_000_000)) * 1_000;
    let entries: Vec<AuditEntry> = (0..6)
        .map(|n| {
            let actor = if n < 3 { "alice" } else { "bob" };
            let tenant = (n != 5).then_some("t1");
            entry(&p, n, t0 + i64::from(n) * 10, actor, tenant)
        })
        .collect();
    let mut shuffled = entries.clone();
    shuffled.reverse();
    ok(store.append_audit(&shuffled[..3]).await, "append");
    ok(
        store.append_audit(&shuffled[2..]).await,
        "append with a repeat",
    );
    ok(store.append_audit(&[]).await, "append nothing");

    let mine = AuditQuery {
        since_ms: Some(t0),
        until_ms: Some(t0 + 1_000),
        limit: 100,
        ..AuditQuery::default()
    };
    let listed = ok(store.list_audit(&mine).await, "list audit");
    assert_eq!(listed, entries, "every entry once, oldest first");

    let cases: [(&str, AuditQuery, Vec<u32>); 8] = [
        (
            "actor",
            AuditQuery {
                actor: Some(format!("{p}-bob")),
                ..mine.clone()
            },
            vec![3, 4, 5],
        ),
        (
            "action",
            AuditQuery {
                action: Some("start_device".into()),
                ..mine.clone()
            },
            vec![1, 3, 5],
        ),
        (
            "target",
            AuditQuery {
                target: Some(format!("/v1/devices/{p}-d1")),
                ..mine.clone()
            },
            vec![1, 4],
        ),
        (
            "tenant",
            AuditQuery {
                tenant: Some(format!("{p}-t1")),
                ..mine.clone()
            },
            vec![0, 1, 2, 3, 4],
        ),
        (
            "since",
            AuditQuery {
                since_ms: Some(t0 + 30),
                ..mine.clone()
            },
            vec![3, 4, 5],
        ),
        (
            "until",
            AuditQuery {
                until_ms: Some(t0 + 20),
                ..mine.clone()
            },
            vec![0, 1],
        ),
        (
            "after and limit",
            AuditQuery {
                after: Some(entries[1].id.clone()),
                limit: 2,
                ..mine.clone()
            },
            vec![2, 3],
        ),
        (
            "actor and action",
            AuditQuery {
                actor: Some(format!("{p}-alice")),
                action: Some("create_device".into()),
                ..mine.clone()
            },
            vec![0, 2],
        ),
    ];
    for (what, query, expected) in cases {
        let listed = ok(store.list_audit(&query).await, "list audit");
        let expected: Vec<AuditEntry> = expected
            .into_iter()
            .map(|n| entries[n as usize].clone())
            .collect();
        assert_eq!(listed, expected, "audit filtered by {what}");
        assert!(listed.iter().all(|e| query.matches(e)), "{what}: matches()");
    }
}

/// Devices listed and counted by tenant.
pub async fn check_tenant_devices(store: &dyn Store) {
    let p = fresh_prefix();
    let (t1, t2) = (format!("{p}-t1"), format!("{p}-t2"));
    for (n, tenant) in [(1, &t1), (2, &t2), (3, &t1), (4, &t1)] {
        let mut d = device(&format!("{p}-{n}"));
        d.tenant = tenant.clone();
        create(store, &d).await;
    }
    let ready = DevicePatch {
        status: Some(DeviceStatus::Ready),
        ..DevicePatch::default()
    };
    ok(
        store
            .patch_device(&format!("{p}-3"), &ready, 1_700_000_000_001, None)
            .await,
        "patch",
    );
    let page = ok(
        store
            .list_devices(&DeviceQuery {
                tenant: Some(t1.clone()),
                limit: 2,
                ..DeviceQuery::default()
            })
            .await,
        "list by tenant",
    );
    let listed: Vec<&str> = page.devices.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(
        listed,
        [format!("{p}-1"), format!("{p}-3")],
        "t1's first page"
    );
    let rest = ok(
        store
            .list_devices(&DeviceQuery {
                tenant: Some(t1.clone()),
                after: page.next_after.clone(),
                limit: 2,
                ..DeviceQuery::default()
            })
            .await,
        "list by tenant",
    );
    let listed: Vec<&str> = rest.devices.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(listed, [format!("{p}-4")], "t1's second page");
    assert_eq!(rest.next_after, None);
    let counts: BTreeMap<DeviceStatus, u64> = ok(
        store.count_tenant_devices_by_status(&t1).await,
        "count by tenant",
    )
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .collect();
    assert_eq!(
        counts,
        BTreeMap::from([(DeviceStatus::Stopped, 2), (DeviceStatus::Ready, 1)]),
        "t1's devices by status"
    );
    let none = ok(
        store
            .count_tenant_devices_by_status(&format!("{p}-nobody"))
            .await,
        "count",
    );
    assert!(
        none.iter().all(|(_, n)| *n == 0),
        "a tenant without devices"
    );
}
