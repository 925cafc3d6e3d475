//! Conformance under concurrency: creates, idempotent inserts, patches and advances
//! racing each other.

use futures_util::future::join_all;

use super::{create, device, fresh_prefix, insert, keyed_message, message, ok};
use crate::store::{
    DevicePatch, DeviceRecord, DeviceStatus, InsertOutcome, MessageRecord, MessageStatus, Store,
    StoreError, TrustLevel,
};

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
