//! Conformance of scheduled messages (kept out of the queue and the slots until they
//! fall due, then moved into the queue at their place) and of cancelling.

use super::{create, device, fresh_prefix, insert, message, ok};
use crate::store::{MessageRecord, MessageStatus, QueueKey, Store};

fn ids(messages: &[MessageRecord]) -> Vec<&str> {
    messages.iter().map(|m| m.id.as_str()).collect()
}

/// A message scheduled for `send_at`, created at `created_at`.
fn scheduled(device_id: &str, id: &str, created_at: i64, send_at: i64) -> MessageRecord {
    MessageRecord {
        status: MessageStatus::Scheduled,
        send_at_ms: Some(send_at),
        ..message(device_id, id, created_at)
    }
}

async fn queue(store: &dyn Store, device_id: &str) -> Vec<MessageRecord> {
    ok(store.queued_messages(device_id, 100).await, "queued")
}

async fn schedule(store: &dyn Store, device_id: &str) -> Vec<MessageRecord> {
    ok(store.scheduled_messages(device_id, 100).await, "scheduled")
}

async fn slots(store: &dyn Store, device_id: &str) -> Vec<i64> {
    ok(store.outbound_slots(device_id, 0, 100).await, "slots")
}

/// A scheduled message is stored whole, listed by `scheduled_messages` (earliest
/// first), and is in neither the queue, its count nor the slots; it makes its device
/// one with messages waiting. Promoted, it is queued at its new place (after what was
/// queued before that time, before what comes after), with its slot; it cannot be
/// promoted twice.
pub async fn check_scheduled_messages(store: &dyn Store) {
    let p = fresh_prefix();
    let d = format!("{p}-sched");
    create(store, &device(&d)).await;
    let late = scheduled(&d, "s-late", 1_000, 50_000);
    let early = scheduled(&d, "s-early", 2_000, 9_000);
    insert(store, &late).await;
    insert(store, &early).await;
    assert_eq!(
        ok(store.get_message(&d, "s-late").await, "get"),
        Some(late.clone()),
        "a scheduled message as stored"
    );
    assert_eq!(ids(&schedule(store, &d).await), ["s-early", "s-late"]);
    assert_eq!(
        ids(&ok(store.scheduled_messages(&d, 1).await, "scheduled")),
        ["s-early"],
        "limit"
    );
    assert!(queue(store, &d).await.is_empty(), "not queued");
    assert_eq!(ok(store.count_queued(&d, 10).await, "count"), 0);
    assert!(
        slots(store, &d).await.is_empty(),
        "no slot before it is due"
    );
    let all: Vec<u32> = (0..store.shards()).collect();
    let waiting = ok(store.devices_with_queued(&all, 100_000).await, "devices");
    assert!(
        waiting.contains(&d),
        "a device with a scheduled message waits"
    );

    // Queued around the time `early` falls due: one before, one after.
    let before = MessageRecord {
        not_before_ms: Some(8_500),
        ..message(&d, "q-before", 8_000)
    };
    let after = MessageRecord {
        not_before_ms: Some(11_000),
        ..message(&d, "q-after", 10_000)
    };
    insert(store, &before).await;
    insert(store, &after).await;
    let promoted = ok(
        store.promote_message(&d, "s-early", 9_100, 9_600).await,
        "promote",
    )
    .expect("a scheduled message is promoted");
    let expected = MessageRecord {
        status: MessageStatus::Queued,
        queued_at_ms: Some(9_100),
        not_before_ms: Some(9_600),
        ..early.clone()
    };
    assert_eq!(promoted, expected, "the message after the move");
    assert_eq!(
        ok(store.get_message(&d, "s-early").await, "get"),
        Some(expected.clone())
    );
    assert_eq!(
        ids(&queue(store, &d).await),
        ["q-before", "s-early", "q-after"],
        "in the queue at the time it entered it, not at its creation"
    );
    assert_eq!(
        ids(&ok(
            store
                .queued_messages_after(&d, Some(&QueueKey::of(&before)), 10)
                .await,
            "queued after"
        )),
        ["s-early", "q-after"],
        "after a place: by the new place"
    );
    assert_eq!(
        ids(&ok(
            store
                .queued_messages_after(&d, Some(&QueueKey::of(&promoted)), 10)
                .await,
            "queued after"
        )),
        ["q-after"]
    );
    assert_eq!(ok(store.count_queued(&d, 10).await, "count"), 3);
    assert_eq!(
        slots(store, &d).await,
        [8_500, 9_600, 11_000],
        "its slot counts"
    );
    assert_eq!(ids(&schedule(store, &d).await), ["s-late"]);
    assert_eq!(
        ok(
            store.promote_message(&d, "s-early", 9_200, 9_700).await,
            "promote again"
        ),
        None,
        "only a scheduled message is promoted"
    );
    assert_eq!(
        ok(store.promote_message(&d, "nope", 1, 1).await, "promote"),
        None
    );
    // Sent like any queued message.
    ok(
        store
            .advance_message(&d, "s-early", MessageStatus::Sent, 9_700, None)
            .await,
        "advance",
    );
    assert_eq!(ids(&queue(store, &d).await), ["q-before", "q-after"]);
}

/// Cancelling: a queued or scheduled outbound message becomes `cancelled` and leaves
/// the queue, the schedule and the slots; anything else is left alone (and returned);
/// nothing moves a cancelled message; an unknown one is `None`.
pub async fn check_cancel_message(store: &dyn Store) {
    let p = fresh_prefix();
    let d = format!("{p}-cancel");
    create(store, &device(&d)).await;
    let queued = MessageRecord {
        not_before_ms: Some(1_500),
        ..message(&d, "q", 1_000)
    };
    let slotless = message(&d, "q-none", 1_100);
    let later = scheduled(&d, "s", 1_200, 90_000);
    let sent = MessageRecord {
        status: MessageStatus::Sent,
        not_before_ms: Some(1_400),
        sent_at_ms: Some(1_450),
        ..message(&d, "sent", 1_300)
    };
    for m in [&queued, &slotless, &later, &sent] {
        insert(store, m).await;
    }
    assert_eq!(slots(store, &d).await, [1_400, 1_500]);

    let cancelled = ok(store.cancel_message(&d, "q").await, "cancel").expect("found");
    assert_eq!(
        cancelled,
        MessageRecord {
            status: MessageStatus::Cancelled,
            ..queued.clone()
        }
    );
    assert_eq!(
        ok(store.get_message(&d, "q").await, "get"),
        Some(cancelled.clone())
    );
    assert_eq!(ids(&queue(store, &d).await), ["q-none"], "out of the queue");
    assert_eq!(slots(store, &d).await, [1_400], "its slot is gone");

    let cancelled = ok(store.cancel_message(&d, "s").await, "cancel").expect("found");
    assert_eq!(cancelled.status, MessageStatus::Cancelled);
    assert!(schedule(store, &d).await.is_empty(), "out of the schedule");
    let cancelled = ok(store.cancel_message(&d, "q-none").await, "cancel").expect("found");
    assert_eq!(cancelled.status, MessageStatus::Cancelled);
    assert!(queue(store, &d).await.is_empty());
    assert_eq!(ok(store.count_queued(&d, 10).await, "count"), 0);
    let all: Vec<u32> = (0..store.shards()).collect();
    let waiting = ok(store.devices_with_queued(&all, 100_000).await, "devices");
    assert!(!waiting.contains(&d), "nothing waits any more");

    assert_eq!(
        ok(store.cancel_message(&d, "sent").await, "cancel sent"),
        Some(sent.clone()),
        "a sent message is left alone"
    );
    assert_eq!(
        ok(store.cancel_message(&d, "q").await, "cancel again"),
        Some(MessageRecord {
            status: MessageStatus::Cancelled,
            ..queued.clone()
        }),
        "a repeat changes nothing"
    );
    assert_eq!(
        ok(store.cancel_message(&d, "unknown").await, "cancel unknown"),
        None
    );
    // Final: no receipt moves it, and it cannot be promoted.
    let after = ok(
        store
            .advance_message(&d, "q", MessageStatus::Sent, 2_000, None)
            .await,
        "advance",
    )
    .expect("found");
    assert_eq!(after.status, MessageStatus::Cancelled);
    assert_eq!(
        ok(
            store.promote_message(&d, "s", 2_000, 2_000).await,
            "promote"
        ),
        None
    );
    assert_eq!(slots(store, &d).await, [1_400], "only the sent one counts");
}
