//! Conformance of link state: each device's sealed key/value records (put, get, list,
//! delete, clear), one question over many keys, and many records in one write.

use super::{
    blob, create, device, expect_fenced, expect_not_found, fence, fresh_prefix, fresh_shards, ok,
};
use crate::store::Store;

/// Put, replace, get, list (ordered by key, byte-wise), delete and clear.
pub async fn check_link_state_put_get_list(store: &dyn Store) {
    let p = fresh_prefix();
    let id = format!("{p}-ls");
    create(store, &device(&id)).await;
    let big: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();

    for key in ["k2", "k10", "k1", "a/b:c"] {
        let value = blob(1, format!("value of {key}").as_bytes());
        ok(
            store.put_link_state(&id, "creds", key, &value, None).await,
            "put",
        );
    }
    ok(
        store
            .put_link_state(&id, "creds", "big", &blob(7, &big), None)
            .await,
        "put big",
    );
    ok(
        store
            .put_link_state(&id, "creds", "empty", &blob(1, b""), None)
            .await,
        "put empty",
    );

    let got = ok(store.get_link_state(&id, "creds", "big").await, "get big");
    assert_eq!(got, Some(blob(7, &big)), "64 KiB value round trip");
    let got = ok(store.get_link_state(&id, "creds", "empty").await, "get");
    assert_eq!(got, Some(blob(1, b"")), "empty value round trip");

    let replacement = blob(2, b"replaced");
    ok(
        store
            .put_link_state(&id, "creds", "k2", &replacement, None)
            .await,
        "replace",
    );
    let got = ok(store.get_link_state(&id, "creds", "k2").await, "get");
    assert_eq!(
        got,
        Some(replacement.clone()),
        "put replaces value and version"
    );

    let listed = ok(store.list_link_state(&id, "creds").await, "list");
    let keys: Vec<&str> = listed.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["a/b:c", "big", "empty", "k1", "k10", "k2"],
        "list is ordered by key"
    );
    assert_eq!(listed[5].1, replacement, "list shows the replaced value");
    assert_eq!(listed[3].1, blob(1, b"value of k1"), "list values");

    assert_eq!(
        ok(store.get_link_state(&id, "creds", "nope").await, "get"),
        None,
        "unknown key"
    );
    assert_eq!(
        ok(store.get_link_state(&id, "other", "k1").await, "get"),
        None,
        "key of another namespace"
    );

    assert!(
        ok(
            store.delete_link_state(&id, "creds", "k1", None).await,
            "delete"
        ),
        "delete of an existing record returned false"
    );
    assert!(
        !ok(
            store.delete_link_state(&id, "creds", "k1", None).await,
            "delete"
        ),
        "second delete returned true"
    );
    assert_eq!(
        ok(store.get_link_state(&id, "creds", "k1").await, "get"),
        None
    );

    ok(
        store
            .put_link_state(&id, "sessions", "s1", &blob(1, b"s"), None)
            .await,
        "put",
    );
    ok(
        store
            .put_link_state(&id, "sessions", "s2", &blob(1, b"s"), None)
            .await,
        "put",
    );
    assert_eq!(
        ok(store.clear_link_state(&id, None).await, "clear"),
        7,
        "clear counts every record of every namespace"
    );
    for ns in ["creds", "sessions"] {
        assert!(
            ok(store.list_link_state(&id, ns).await, "list").is_empty(),
            "{ns} not empty after clear"
        );
    }
    assert_eq!(ok(store.clear_link_state(&id, None).await, "clear"), 0);
    assert!(
        ok(store.get_device(&id).await, "get").is_some(),
        "clearing link state deleted the device"
    );
}

/// Records of one device or namespace never show through another.
/// `any_link_state` over many keys: no for keys of another device or namespace, yes as
/// soon as one of them (even past the first few hundred) holds a record.
pub async fn check_link_state_any(store: &dyn Store) {
    let p = fresh_prefix();
    let (a, b) = (format!("{p}-any-a"), format!("{p}-any-b"));
    create(store, &device(&a)).await;
    create(store, &device(&b)).await;
    let keys: Vec<String> = (0..1200).map(|i| format!("key-{i:04}")).collect();
    let any = |d: &str, ns: &str, keys: &[String]| {
        let (d, ns, keys) = (d.to_owned(), ns.to_owned(), keys.to_vec());
        async move { ok(store.any_link_state(&d, &ns, &keys).await, "any") }
    };
    assert!(!any(&a, "sessions", &keys).await, "an empty device");
    assert!(!any(&a, "sessions", &[]).await, "no keys");

    ok(
        store
            .put_link_state(&b, "sessions", "key-1100", &blob(1, b"b"), None)
            .await,
        "put",
    );
    ok(
        store
            .put_link_state(&a, "identities", "key-1100", &blob(1, b"a"), None)
            .await,
        "put",
    );
    assert!(
        !any(&a, "sessions", &keys).await,
        "another device's or namespace's record"
    );
    assert!(any(&b, "sessions", &keys).await, "a key far down the list");
    assert!(
        any(&a, "identities", &keys[1100..1101]).await,
        "the one key"
    );
    assert!(
        !any(&a, "identities", &keys[..1100]).await,
        "every key but it"
    );
}

pub async fn check_link_state_isolation(store: &dyn Store) {
    let p = fresh_prefix();
    let (a, b) = (format!("{p}-a"), format!("{p}-b"));
    create(store, &device(&a)).await;
    create(store, &device(&b)).await;
    for (d, ns, value) in [
        (&a, "creds", b"a-creds".as_slice()),
        (&a, "sessions", b"a-sessions"),
        (&b, "creds", b"b-creds"),
    ] {
        ok(
            store
                .put_link_state(d, ns, "k", &blob(1, value), None)
                .await,
            "put",
        );
    }

    let get = |d: &str, ns: &str| {
        let (d, ns) = (d.to_owned(), ns.to_owned());
        async move { ok(store.get_link_state(&d, &ns, "k").await, "get") }
    };
    assert_eq!(get(&a, "creds").await, Some(blob(1, b"a-creds")));
    assert_eq!(get(&a, "sessions").await, Some(blob(1, b"a-sessions")));
    assert_eq!(get(&b, "creds").await, Some(blob(1, b"b-creds")));
    assert_eq!(
        get(&b, "sessions").await,
        None,
        "namespace leaked across devices"
    );

    let listed = ok(store.list_link_state(&a, "creds").await, "list");
    assert_eq!(listed, vec![("k".to_owned(), blob(1, b"a-creds"))]);

    assert!(ok(
        store.delete_link_state(&a, "creds", "k", None).await,
        "delete"
    ));
    assert_eq!(
        get(&b, "creds").await,
        Some(blob(1, b"b-creds")),
        "delete leaked"
    );
    assert_eq!(get(&a, "sessions").await, Some(blob(1, b"a-sessions")));

    assert_eq!(ok(store.clear_link_state(&a, None).await, "clear"), 1);
    assert_eq!(
        get(&b, "creds").await,
        Some(blob(1, b"b-creds")),
        "clear leaked"
    );
}

/// Writing link state for an unknown device is `NotFound` and writes nothing; reads
/// and deletes are empty.
pub async fn check_link_state_unknown_device(store: &dyn Store) {
    let ghost = format!("{}-ghost", fresh_prefix());
    expect_not_found(
        store
            .put_link_state(&ghost, "creds", "k", &blob(1, b"x"), None)
            .await,
        "put link state for an unknown device",
    );
    assert_eq!(
        ok(store.get_link_state(&ghost, "creds", "k").await, "get"),
        None
    );
    assert!(ok(store.list_link_state(&ghost, "creds").await, "list").is_empty());
    assert!(!ok(
        store.delete_link_state(&ghost, "creds", "k", None).await,
        "delete"
    ));
    assert_eq!(ok(store.clear_link_state(&ghost, None).await, "clear"), 0);
    assert_eq!(
        ok(store.get_device(&ghost).await, "get"),
        None,
        "a link-state write created a device"
    );
}

/// `get_link_state_many` and `put_link_state_many`: many keys at once (past the first
/// few hundred), only the device's and namespace's records, nothing for missing keys;
/// a write of many replaces like single puts, is fenced as a whole, and needs the
/// device.
pub async fn check_link_state_many(store: &dyn Store) {
    let p = fresh_prefix();
    let (a, b) = (format!("{p}-many-a"), format!("{p}-many-b"));
    create(store, &device(&a)).await;
    create(store, &device(&b)).await;
    let keys: Vec<String> = (0..1200).map(|i| format!("key-{i:04}")).collect();
    let records: Vec<_> = keys
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 == 0)
        .map(|(i, key)| (key.clone(), blob(1, format!("v{i}").as_bytes())))
        .collect();
    ok(
        store
            .put_link_state_many(&a, "prekeys", &records, None)
            .await,
        "put many",
    );
    ok(
        store.put_link_state_many(&a, "prekeys", &[], None).await,
        "put none",
    );
    ok(
        store
            .put_link_state(&b, "prekeys", "key-0001", &blob(1, b"b"), None)
            .await,
        "put",
    );
    ok(
        store
            .put_link_state(&a, "other", "key-0001", &blob(1, b"other"), None)
            .await,
        "put",
    );

    let mut found = ok(
        store.get_link_state_many(&a, "prekeys", &keys).await,
        "get many",
    );
    found.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(found, records, "every record written, none other");
    assert!(
        ok(
            store.get_link_state_many(&a, "prekeys", &[]).await,
            "get none"
        )
        .is_empty(),
        "no keys"
    );
    assert_eq!(
        ok(
            store
                .get_link_state_many(&a, "prekeys", &keys[1197..1198])
                .await,
            "get one"
        ),
        vec![(keys[1197].clone(), blob(1, b"v1197"))],
        "a key far down the list"
    );
    assert!(
        ok(
            store.get_link_state_many(&a, "prekeys", &keys[1..3]).await,
            "get"
        )
        .is_empty(),
        "another device's or namespace's record"
    );

    // Replacing, as single puts do.
    let replaced = vec![(keys[0].clone(), blob(2, b"new"))];
    ok(
        store
            .put_link_state_many(&a, "prekeys", &replaced, None)
            .await,
        "replace",
    );
    assert_eq!(
        ok(store.get_link_state(&a, "prekeys", &keys[0]).await, "get"),
        Some(blob(2, b"new"))
    );

    // Fenced as a whole; an unknown device is refused.
    let s = fresh_shards(1)[0];
    let stale = fence(s, 1);
    expect_fenced(
        store
            .put_link_state_many(&a, "fenced", &records, Some(&stale))
            .await,
        stale,
        None,
        "put many under a shard nobody holds",
    );
    assert!(
        ok(store.list_link_state(&a, "fenced").await, "list").is_empty(),
        "a fenced write of many wrote"
    );
    expect_not_found(
        store
            .put_link_state_many(&format!("{p}-many-ghost"), "prekeys", &records, None)
            .await,
        "put many for an unknown device",
    );
}
