//! Conformance of messages: inserts (idempotent, guarded by the device), runs, status
//! advances, queues, outbound slots and rescheduling.

use super::{
    create, device, expect_conflict, expect_fenced, expect_not_found, fence, fresh_prefix,
    fresh_shards, insert, keyed_message, message, ok,
};
use crate::store::{
    DevicePatch, DeviceRecord, DeviceStatus, Direction, GuardedInsert, InsertOutcome,
    MessageRecord, MessageStatus, QueueKey, RunStart, Store,
};

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
