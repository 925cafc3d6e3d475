//! Conformance of shard leases and fencing: acquire, renew, take over after expiry,
//! release, listings, concurrent acquires, and writes refused under a stale fence.

use futures_util::future::join_all;

use super::{
    T0, TTL, TTL_MS, blob, create, device, expect_fenced, expect_granted, expect_not_found,
    expect_refused, fence, fresh_prefix, fresh_shards, get_lease, lease, ok,
};
use crate::store::{Acquired, DevicePatch, DeviceStatus, Lease, Store};

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
