//! Conformance of the webhook delivery log.

use super::{create, device, fresh_prefix, ok};
use crate::store::{
    Attempt, AttemptOutcome, DeliveryStatus, NewDelivery, ReplayWhich, Store, StoreError,
};

fn event(device_id: &str, event_id: &str, created_at_ms: i64) -> NewDelivery {
    NewDelivery {
        event_id: event_id.to_owned(),
        device_id: device_id.to_owned(),
        tenant: "default".to_owned(),
        event: "message.inbound".to_owned(),
        data: format!(r#"{{"device_id":"{device_id}","text":"é \"{event_id}\""}}"#),
        created_at_ms,
    }
}

fn attempt(prior: u32, outcome: AttemptOutcome) -> Attempt {
    Attempt {
        prior_attempts: prior,
        prior_next_attempt_ms: None,
        at_ms: 1_700_000_000_500,
        outcome,
        status_code: Some(500),
        error: Some("HTTP 500".to_owned()),
    }
}

async fn due_ids(store: &dyn Store, device_id: &str) -> Vec<String> {
    ok(store.due_deliveries(device_id, 100).await, "due deliveries")
        .into_iter()
        .map(|d| d.event_id)
        .collect()
}

/// Appends keep the order recorded (not the events' times), repeats are ignored, and an
/// unknown device is `NotFound`.
pub async fn check_delivery_append_and_order(store: &dyn Store) {
    let p = fresh_prefix();
    let (a, b) = (format!("{p}-a"), format!("{p}-b"));
    create(store, &device(&a)).await;
    create(store, &device(&b)).await;
    // Recorded in this order, with times that disagree with it.
    for (id, at) in [("e3", 30), ("e1", 10), ("e2", 20)] {
        ok(
            store
                .append_delivery(&event(&a, &format!("{p}-{id}"), at))
                .await,
            "append",
        );
    }
    ok(
        store
            .append_delivery(&event(&b, &format!("{p}-b1"), 1))
            .await,
        "append",
    );
    ok(
        store
            .append_delivery(&event(&a, &format!("{p}-e1"), 99))
            .await,
        "append the same event again",
    );
    let due = ok(store.due_deliveries(&a, 100).await, "due deliveries");
    let ids: Vec<&str> = due.iter().map(|d| d.event_id.as_str()).collect();
    assert_eq!(
        ids,
        [format!("{p}-e3"), format!("{p}-e1"), format!("{p}-e2")],
        "due deliveries in the order recorded, each once"
    );
    assert!(due.windows(2).all(|w| w[0].seq < w[1].seq), "seq increases");
    let first = &due[0];
    assert_eq!(first.status, DeliveryStatus::Pending);
    assert_eq!(first.attempts, 0);
    assert_eq!(first.created_at_ms, 30);
    assert_eq!(first.data, event(&a, &format!("{p}-e3"), 30).data);
    assert_eq!(
        (first.tenant.as_str(), first.event.as_str()),
        ("default", "message.inbound")
    );
    assert_eq!(
        (
            first.next_attempt_ms,
            first.last_status_code,
            first.last_error.clone()
        ),
        (None, None, None)
    );
    let limited = ok(store.due_deliveries(&a, 2).await, "due deliveries");
    assert_eq!(limited.len(), 2, "limit");
    match store
        .append_delivery(&event(&format!("{p}-missing"), &format!("{p}-x"), 1))
        .await
    {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("append for an unknown device: expected NotFound, got {other:?}"),
    }
    ok(store.delete_device(&a, None).await, "delete");
    assert!(
        due_ids(store, &a).await.is_empty(),
        "deleting a device deletes its deliveries"
    );
    assert_eq!(due_ids(store, &b).await, [format!("{p}-b1")]);
}

/// Attempts: retry keeps it due, delivered and dead settle it, a stale attempt count
/// writes nothing, and dead ones are replayed in their place.
pub async fn check_delivery_attempts_and_replay(store: &dyn Store) {
    let p = fresh_prefix();
    let a = format!("{p}-a");
    create(store, &device(&a)).await;
    let (e1, e2, e3) = (format!("{p}-e1"), format!("{p}-e2"), format!("{p}-e3"));
    for (id, at) in [(&e1, 1), (&e2, 2), (&e3, 3)] {
        ok(store.append_delivery(&event(&a, id, at)).await, "append");
    }
    let retry = AttemptOutcome::Retry {
        next_attempt_ms: 1_700_000_001_000,
    };
    let after = ok(
        store.record_attempt(&a, &e1, &attempt(0, retry)).await,
        "record a failed attempt",
    )
    .expect("the delivery was due");
    assert_eq!(after.status, DeliveryStatus::Failed);
    assert_eq!(after.attempts, 1);
    assert_eq!(after.next_attempt_ms, Some(1_700_000_001_000));
    assert_eq!(after.last_status_code, Some(500));
    assert_eq!(after.last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(
        ok(
            store.record_attempt(&a, &e1, &attempt(0, retry)).await,
            "a stale attempt"
        ),
        None,
        "an attempt begun at another count writes nothing"
    );
    assert_eq!(
        due_ids(store, &a).await,
        [e1.clone(), e2.clone(), e3.clone()],
        "failed is still due"
    );
    let last = Attempt {
        prior_next_attempt_ms: Some(1_700_000_001_000),
        ..attempt(1, AttemptOutcome::Dead)
    };
    let dead = ok(
        store.record_attempt(&a, &e1, &last).await,
        "record the last attempt",
    )
    .expect("due");
    assert_eq!((dead.status, dead.attempts), (DeliveryStatus::Dead, 2));
    let delivered = Attempt {
        status_code: Some(204),
        error: None,
        ..attempt(0, AttemptOutcome::Delivered)
    };
    let done = ok(store.record_attempt(&a, &e2, &delivered).await, "deliver").expect("due");
    assert_eq!(done.status, DeliveryStatus::Delivered);
    assert_eq!(done.delivered_at_ms, Some(1_700_000_000_500));
    assert_eq!((done.last_status_code, done.last_error), (Some(204), None));
    assert_eq!(
        ok(store.record_attempt(&a, &e2, &delivered).await, "again"),
        None,
        "a delivered one takes no more attempts"
    );
    assert_eq!(
        due_ids(store, &a).await,
        std::slice::from_ref(&e3),
        "dead and delivered are not due"
    );

    // Listing: newest first, by status, before a seq.
    let all = ok(store.list_deliveries(&a, None, None, 100).await, "list");
    let ids: Vec<&str> = all.iter().map(|d| d.event_id.as_str()).collect();
    assert_eq!(ids, [&e3, &e2, &e1], "newest first");
    let older = ok(
        store.list_deliveries(&a, None, Some(all[0].seq), 1).await,
        "list a page",
    );
    assert_eq!(older.len(), 1);
    assert_eq!(older[0].event_id, e2, "the page before a seq");
    let dead_only = ok(
        store
            .list_deliveries(&a, Some(DeliveryStatus::Dead), None, 100)
            .await,
        "list dead",
    );
    assert_eq!(dead_only.len(), 1);
    assert_eq!(dead_only[0].event_id, e1);

    // Replays.
    assert_eq!(
        ok(
            store.replay_deliveries(&a, &ReplayWhich::Dead, 7).await,
            "replay dead"
        ),
        1
    );
    assert_eq!(
        due_ids(store, &a).await,
        [e1.clone(), e3.clone()],
        "the replayed one is due again, in its place"
    );
    let replayed = &ok(store.due_deliveries(&a, 1).await, "due")[0];
    assert_eq!(
        (
            replayed.status,
            replayed.attempts,
            replayed.last_error.clone()
        ),
        (DeliveryStatus::Pending, 0, None)
    );
    assert_eq!(
        ok(
            store
                .replay_deliveries(&a, &ReplayWhich::Event(e2.clone()), 8)
                .await,
            "replay a delivered one"
        ),
        1
    );
    assert_eq!(
        due_ids(store, &a).await,
        [e1.clone(), e2.clone(), e3.clone()]
    );
    assert_eq!(
        ok(
            store
                .replay_deliveries(&a, &ReplayWhich::Event(format!("{p}-none")), 8)
                .await,
            "replay an unknown event"
        ),
        0
    );

    // A replay while an attempt is in flight wins, even of a delivery that is still
    // pending at 0 attempts, and even in the millisecond its last replay was made.
    for now_ms in [9, 9] {
        let in_flight = ok(store.due_deliveries(&a, 100).await, "due")
            .into_iter()
            .find(|d| d.event_id == e3)
            .expect("e3 is due");
        assert_eq!(
            (in_flight.status, in_flight.attempts),
            (DeliveryStatus::Pending, 0)
        );
        let replayed = store
            .replay_deliveries(&a, &ReplayWhich::Event(e3.clone()), now_ms)
            .await;
        assert_eq!(ok(replayed, "replay a pending one"), 1);
        let stale = Attempt {
            prior_next_attempt_ms: in_flight.next_attempt_ms,
            ..delivered.clone()
        };
        assert_eq!(
            ok(store.record_attempt(&a, &e3, &stale).await, "in flight"),
            None,
            "an attempt begun before the replay writes nothing"
        );
    }
    let fresh = ok(store.due_deliveries(&a, 100).await, "due")
        .into_iter()
        .find(|d| d.event_id == e3)
        .expect("e3 is still due");
    let current = Attempt {
        prior_next_attempt_ms: fresh.next_attempt_ms,
        ..delivered
    };
    let done = ok(store.record_attempt(&a, &e3, &current).await, "deliver");
    assert_eq!(done.map(|d| d.status), Some(DeliveryStatus::Delivered));
}

/// Devices with due deliveries by shard; the backlog; pruning delivered ones.
pub async fn check_delivery_devices_backlog_prune(store: &dyn Store) {
    let p = fresh_prefix();
    let (a, b) = (format!("{p}-a"), format!("{p}-b"));
    create(store, &device(&a)).await;
    create(store, &device(&b)).await;
    let before = ok(store.delivery_backlog().await, "backlog");
    ok(
        store
            .append_delivery(&event(&a, &format!("{p}-a1"), 5))
            .await,
        "append",
    );
    ok(
        store
            .append_delivery(&event(&b, &format!("{p}-b1"), 6))
            .await,
        "append",
    );
    let delivered = Attempt {
        status_code: Some(200),
        error: None,
        ..attempt(0, AttemptOutcome::Delivered)
    };
    ok(
        store
            .record_attempt(&b, &format!("{p}-b1"), &delivered)
            .await,
        "deliver",
    );
    let all: Vec<u32> = (0..store.shards()).collect();
    let listed = ok(
        store.devices_with_due_deliveries(&all, 100_000).await,
        "devices with due deliveries",
    );
    let mine: Vec<&String> = listed.iter().filter(|id| id.starts_with(&p)).collect();
    assert_eq!(mine, [&a], "only the device with a due delivery, once");
    let shard_of_a = wafleet_cluster_config::shard_of(&a, store.shards());
    let others: Vec<u32> = all.iter().copied().filter(|s| *s != shard_of_a).collect();
    let listed = ok(
        store.devices_with_due_deliveries(&others, 100_000).await,
        "devices with due deliveries",
    );
    assert!(!listed.contains(&a), "a device of a shard not asked for");

    let after = ok(store.delivery_backlog().await, "backlog");
    assert!(
        after.pending > before.pending,
        "the pending count grows: {before:?} -> {after:?}"
    );
    assert!(
        after.oldest_due_created_ms.is_some_and(|t| t <= 5),
        "the oldest due delivery is at most as old as ours: {after:?}"
    );
    // Pruning: only delivered ones recorded before the time.
    let pruned = ok(store.prune_deliveries(7, 100_000).await, "prune");
    assert!(pruned >= 1, "the delivered one is pruned");
    let left = ok(store.list_deliveries(&b, None, None, 10).await, "list");
    assert!(left.is_empty(), "b's delivered event is gone");
    let kept = ok(store.list_deliveries(&a, None, None, 10).await, "list");
    assert_eq!(kept.len(), 1, "a's pending event is kept");
}

/// A patch that records a delivery made from the row it wrote keeps both; a fenced-off
/// patch keeps neither.
pub async fn check_patch_device_recording(store: &dyn Store) {
    use crate::store::{DevicePatch, DeviceStatus, Fence};
    let p = fresh_prefix();
    let a = format!("{p}-a");
    create(store, &device(&a)).await;
    let patch = DevicePatch {
        status: Some(DeviceStatus::Ready),
        phone: Some(Some("628123".to_owned())),
        ..DevicePatch::default()
    };
    let event_id = format!("{p}-e1");
    let (device_id, id) = (a.clone(), event_id.clone());
    let record = ok(
        store
            .patch_device_recording(
                &a,
                &patch,
                1_700_000_000_900,
                None,
                Box::new(move |row| {
                    Some(NewDelivery {
                        data: format!(r#"{{"phone":"{}"}}"#, row.phone.clone().unwrap_or_default()),
                        ..event(&device_id, &id, row.updated_at_ms)
                    })
                }),
            )
            .await,
        "patch and record",
    );
    assert_eq!(record.status, DeviceStatus::Ready);
    let due = ok(store.due_deliveries(&a, 10).await, "due");
    assert_eq!(due.len(), 1, "the delivery is recorded with the patch");
    assert_eq!(due[0].event_id, event_id);
    assert_eq!(
        due[0].data, r#"{"phone":"628123"}"#,
        "made from the row written"
    );
    assert_eq!(due[0].created_at_ms, record.updated_at_ms);

    ok(
        store
            .patch_device_recording(&a, &DevicePatch::default(), 1, None, Box::new(|_| None))
            .await,
        "patch, nothing to record",
    );
    assert_eq!(ok(store.due_deliveries(&a, 10).await, "due").len(), 1);

    // Fenced off: neither the patch nor the delivery.
    let shard = wafleet_cluster_config::shard_of(&a, store.shards());
    let stale = Fence {
        shard,
        epoch: u64::MAX - 7,
    };
    let (device_id, id) = (a.clone(), format!("{p}-e2"));
    let fenced = store
        .patch_device_recording(
            &a,
            &DevicePatch {
                status: Some(DeviceStatus::Stopped),
                ..DevicePatch::default()
            },
            2,
            Some(&stale),
            Box::new(move |row| Some(event(&device_id, &id, row.updated_at_ms))),
        )
        .await;
    assert!(
        matches!(fenced, Err(StoreError::Fenced { .. })),
        "a stale fence: {fenced:?}"
    );
    assert_eq!(
        ok(store.due_deliveries(&a, 10).await, "due").len(),
        1,
        "a refused patch records nothing"
    );
}
