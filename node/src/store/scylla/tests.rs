use scylla::value::{CqlValue, MaybeUnset};

use super::delivery_partition::{
    AGE, CLAIM, DELIVERY, DUE, DeliveredEntry, Move, Successors, append_parts, attempted, day_of,
    move_parts, recorded, replayed, retally,
};
use super::devices::apply_patch;
use super::fencing::{device_admits, lease_admits};
use super::leases::lease_write;
use super::messages::{advance_statement, advanced};
use super::rows::Tally;
use super::session::applied_flag;
use super::statements::Bound;
use crate::store::{
    Attempt, AttemptOutcome, DeliveryRecord, DeliveryStatus, DevicePatch, DeviceRecord,
    DeviceStatus, Direction, Fence, LeaseSlot, MessageRecord, MessageStatus, NewDelivery,
    StoreError,
};

fn slot(holder: Option<&str>, epoch: u64) -> LeaseSlot {
    LeaseSlot {
        shard: 9,
        holder: holder.map(str::to_owned),
        epoch,
        expires_at_ms: 1_000,
    }
}

#[test]
fn the_lease_check_refuses_other_epochs_and_free_shards() {
    let fence = Fence { shard: 9, epoch: 2 };
    assert!(lease_admits(&slot(Some("a"), 2), &fence).is_ok());
    for (held, current) in [(slot(Some("a"), 3), Some(3)), (slot(None, 2), None)] {
        match lease_admits(&held, &fence) {
            Err(StoreError::Fenced {
                shard: 9,
                epoch: 2,
                current: got,
            }) => assert_eq!(got, current),
            other => panic!("expected Fenced, got {other:?}"),
        }
    }
}

#[test]
fn the_device_fence_only_rises() {
    let fence = Fence { shard: 9, epoch: 2 };
    assert_eq!(device_admits(&fence, 0).ok(), Some(2));
    assert_eq!(device_admits(&fence, 2).ok(), Some(2));
    assert!(matches!(
        device_admits(&fence, 3),
        Err(StoreError::Fenced {
            current: Some(3),
            ..
        })
    ));
}

#[test]
fn lease_writes_create_a_missing_row_and_compare_the_whole_slot_otherwise() {
    let vacant = LeaseSlot::vacant(9);
    let mut granted = vacant.clone();
    granted.acquire("a", 0, 10);
    let (statement, values) = lease_write(&vacant, false, &granted).expect("write");
    assert_eq!(statement.name, "insert_lease");
    assert_eq!(values.len(), 4);

    let mut released = granted.clone();
    assert!(released.release("a", 1));
    let (statement, values) = lease_write(&granted, true, &released).expect("write");
    assert_eq!(statement.name, "update_lease");
    let text = |v: &Bound| match v {
        MaybeUnset::Set(Some(CqlValue::Text(s))) => s.clone(),
        other => panic!("not text: {other:?}"),
    };
    assert_eq!(text(&values[0]), "", "a released slot stores holder ''");
    assert_eq!(text(&values[4]), "a", "the condition is the slot as read");
    assert!(matches!(
        values[5],
        MaybeUnset::Set(Some(CqlValue::BigInt(1)))
    ));
}

#[test]
fn applied_is_read_by_name() {
    let names = vec!["[applied]".to_owned(), "version".to_owned()];
    let yes = [Some(CqlValue::Boolean(true)), None];
    let no = [Some(CqlValue::Boolean(false)), Some(CqlValue::BigInt(4))];
    assert!(applied_flag("s", &names, Some(&yes)).expect("flag"));
    assert!(!applied_flag("s", &names, Some(&no)).expect("flag"));
    for (names, row) in [
        (vec!["version".to_owned()], Some(&no[..])),
        (names.clone(), None),
        (names.clone(), Some(&[None][..])),
    ] {
        assert!(matches!(
            applied_flag("s", &names, row),
            Err(StoreError::Corrupt(_))
        ));
    }
}

#[test]
fn an_advance_sets_the_status_its_time_and_only_a_given_error() {
    let m = MessageRecord {
        id: "m".into(),
        device_id: "d".into(),
        direction: Direction::Outbound,
        peer_phone: "+1".into(),
        text: "t".into(),
        status: MessageStatus::Failed,
        error: Some("boom".into()),
        idempotency_key: None,
        created_at_ms: 1,
        not_before_ms: None,
        sent_at_ms: None,
        delivered_at_ms: None,
        read_at_ms: None,
        failed_at_ms: Some(5),
        send_at_ms: None,
        queued_at_ms: None,
    };
    let after = advanced(m.clone(), MessageStatus::Delivered, 9, None);
    assert_eq!(
        (after.status, after.delivered_at_ms, after.error.as_deref()),
        (MessageStatus::Delivered, Some(9), Some("boom"))
    );
    let after = advanced(m, MessageStatus::Read, 10, Some("late"));
    assert_eq!(after.error.as_deref(), Some("late"));
    assert_eq!(
        advance_statement(MessageStatus::Queued).map(|s| s.name),
        None
    );
}

#[test]
fn a_patch_writes_only_its_fields() {
    let mut d = DeviceRecord {
        id: "d".into(),
        name: "n".into(),
        tenant: "t".into(),
        status: DeviceStatus::Ready,
        status_reason: Some("r".into()),
        trust_level: crate::store::TrustLevel::Newcomer,
        phone: Some("+1".into()),
        webhook: None,
        desired_running: true,
        created_at_ms: 1,
        updated_at_ms: 1,
        last_connected_at_ms: Some(3),
    };
    let before = d.clone();
    apply_patch(
        &mut d,
        &DevicePatch {
            phone: Some(None),
            ..DevicePatch::default()
        },
        7,
    );
    assert_eq!(
        d,
        DeviceRecord {
            phone: None,
            updated_at_ms: 7,
            ..before
        }
    );
}

// ---- webhook deliveries ----

fn new_delivery(event_id: &str, created_at_ms: i64) -> NewDelivery {
    NewDelivery {
        event_id: event_id.into(),
        device_id: "d".into(),
        tenant: "default".into(),
        event: "message.inbound".into(),
        data: "{}".into(),
        created_at_ms,
    }
}

fn delivery_attempt(prior: u32, outcome: AttemptOutcome) -> Attempt {
    Attempt {
        prior_attempts: prior,
        prior_next_attempt_ms: None,
        at_ms: 50,
        outcome,
        status_code: Some(500),
        error: Some("HTTP 500".into()),
    }
}

#[test]
fn an_attempt_and_a_replay_write_what_the_sqlite_store_writes() {
    let d = recorded(&new_delivery("e1", 10), 4);
    assert_eq!(
        (d.seq, d.status, d.attempts),
        (4, DeliveryStatus::Pending, 0)
    );
    let failed = attempted(
        d.clone(),
        &delivery_attempt(
            0,
            AttemptOutcome::Retry {
                next_attempt_ms: 99,
            },
        ),
    );
    assert_eq!(
        (failed.status, failed.attempts, failed.next_attempt_ms),
        (DeliveryStatus::Failed, 1, Some(99))
    );
    assert_eq!(
        (failed.last_status_code, failed.last_error.as_deref()),
        (Some(500), Some("HTTP 500"))
    );
    let delivered = attempted(
        failed.clone(),
        &Attempt {
            status_code: Some(204),
            error: None,
            ..delivery_attempt(1, AttemptOutcome::Delivered)
        },
    );
    assert_eq!(
        (
            delivered.status,
            delivered.attempts,
            delivered.next_attempt_ms
        ),
        (DeliveryStatus::Delivered, 2, None)
    );
    assert_eq!(
        (delivered.delivered_at_ms, delivered.last_error.clone()),
        (Some(50), None)
    );
    let dead = attempted(failed, &delivery_attempt(1, AttemptOutcome::Dead));
    assert_eq!(
        (dead.status, dead.delivered_at_ms),
        (DeliveryStatus::Dead, None)
    );
    assert_eq!(
        attempted(d.clone(), &delivery_attempt(u32::MAX, AttemptOutcome::Dead)).attempts,
        u32::MAX,
        "the count saturates"
    );
    let again = replayed(delivered, 77);
    assert_eq!(
        again,
        DeliveryRecord {
            next_attempt_ms: Some(77),
            ..d
        },
        "a replay queues it as recorded, due now"
    );
}

/// The tally as it should be, recomputed from every delivery of a partition.
fn tally_of(version: i64, log: &[(i64, i64, DeliveryStatus)]) -> Tally {
    let count = |status| log.iter().filter(|(_, _, s)| *s == status).count() as i64;
    let due = || log.iter().filter(|(_, _, s)| s.is_due());
    Tally {
        version: Some(version),
        pending: count(DeliveryStatus::Pending),
        failed: count(DeliveryStatus::Failed),
        dead: count(DeliveryStatus::Dead),
        due_floor: due().map(|(seq, _, _)| *seq).min(),
        oldest_due_ms: due().map(|(_, at, _)| *at).min(),
    }
}

#[test]
fn the_tally_stays_what_the_partition_holds_through_any_sequence_of_writes() {
    let mut rng = fastrand::Rng::with_seed(13);
    for _round in 0..200 {
        let mut log: Vec<(i64, i64, DeliveryStatus)> = Vec::new();
        let mut tally = Tally::default();
        for _step in 0..60 {
            let version = tally.version.unwrap_or(0);
            let pick = (!log.is_empty()).then(|| rng.usize(..log.len()));
            let (m, index) = match (rng.u8(..4), pick) {
                (0, _) | (_, None) => {
                    // An append; times disagree with the order on purpose.
                    let created = rng.i64(0..20);
                    log.push((version + 1, created, DeliveryStatus::Pending));
                    let m = Move {
                        from: None,
                        to: Some(DeliveryStatus::Pending),
                        seq: version + 1,
                        created_at_ms: created,
                    };
                    (m, None)
                }
                (1, Some(i)) if log[i].2 == DeliveryStatus::Delivered => {
                    // Pruned.
                    let (seq, created, _) = log[i];
                    let m = Move {
                        from: Some(DeliveryStatus::Delivered),
                        to: None,
                        seq,
                        created_at_ms: created,
                    };
                    (m, Some((i, None)))
                }
                (_, Some(i)) => {
                    let to = DeliveryStatus::ALL[rng.usize(..4)];
                    let (seq, created, from) = log[i];
                    let m = Move {
                        from: Some(from),
                        to: Some(to),
                        seq,
                        created_at_ms: created,
                    };
                    (m, Some((i, Some(to))))
                }
            };
            // What the marker reads find: the others still due.
            let others: Vec<(i64, i64, DeliveryStatus)> = log
                .iter()
                .copied()
                .filter(|(seq, _, s)| *seq != m.seq && s.is_due())
                .collect();
            let (floor, oldest) = m.needs(&tally);
            let successors = Successors {
                due_floor: floor
                    .then(|| others.iter().map(|(seq, _, _)| *seq).min())
                    .flatten(),
                oldest_due_ms: oldest
                    .then(|| others.iter().map(|(_, at, _)| *at).min())
                    .flatten(),
            };
            tally = retally(&tally, &m, &successors);
            match index {
                Some((i, Some(to))) => log[i].2 = to,
                Some((i, None)) => {
                    log.remove(i);
                }
                None => {}
            }
            assert_eq!(tally, tally_of(version + 1, &log), "after {m:?}");
        }
    }
}

#[test]
fn a_settling_delivery_reads_successors_only_when_it_held_the_floor_or_the_oldest() {
    let tally = Tally {
        version: Some(5),
        pending: 2,
        failed: 0,
        dead: 0,
        due_floor: Some(2),
        oldest_due_ms: Some(10),
    };
    let m = |from, to, seq, created_at_ms| Move {
        from: Some(from),
        to: Some(to),
        seq,
        created_at_ms,
    };
    use DeliveryStatus::{Dead, Delivered, Failed, Pending};
    assert_eq!(m(Pending, Delivered, 2, 10).needs(&tally), (true, true));
    assert_eq!(m(Pending, Dead, 3, 10).needs(&tally), (false, true));
    assert_eq!(m(Failed, Delivered, 2, 11).needs(&tally), (true, false));
    assert_eq!(
        m(Pending, Failed, 2, 10).needs(&tally),
        (false, false),
        "still due"
    );
    assert_eq!(
        m(Dead, Pending, 1, 1).needs(&tally),
        (false, false),
        "becomes due"
    );
}

fn names_and_kinds(parts: &[(&'static super::statements::Statement, Vec<Bound>)]) -> Vec<String> {
    parts
        .iter()
        .map(|(s, values)| {
            let kind = s
                .binds
                .iter()
                .position(|b| *b == "row_kind")
                .map(|i| match &values[i] {
                    MaybeUnset::Set(Some(CqlValue::Text(k))) => k.clone(),
                    other => panic!("row_kind bound as {other:?}"),
                });
            match kind {
                Some(kind) => format!("{} {kind}", s.name),
                None => s.name.to_owned(),
            }
        })
        .collect()
}

#[test]
fn each_write_of_a_delivery_keeps_its_due_copy_and_markers_in_the_same_batch() {
    let fresh = Tally::default();
    let d = recorded(&new_delivery("e1", 10), 1);
    let parts = append_parts(&fresh, &d);
    assert_eq!(
        names_and_kinds(&parts),
        [
            "set_delivery_tally".to_owned(),
            format!("put_delivery {DELIVERY}"),
            format!("put_delivery {DUE}"),
            format!("put_delivery_mark {CLAIM}"),
            format!("put_delivery_mark {AGE}"),
        ]
    );
    let (_, tally_values) = &parts[0];
    assert!(
        matches!(tally_values.last(), Some(MaybeUnset::Set(None))),
        "a partition never written is conditioned on a null version"
    );
    assert!(matches!(
        tally_values[0],
        MaybeUnset::Set(Some(CqlValue::BigInt(1)))
    ));

    let before = retally(
        &fresh,
        &Move {
            from: None,
            to: Some(DeliveryStatus::Pending),
            seq: 1,
            created_at_ms: 10,
        },
        &Successors::default(),
    );
    let retry = attempted(
        d.clone(),
        &delivery_attempt(0, AttemptOutcome::Retry { next_attempt_ms: 5 }),
    );
    assert_eq!(
        names_and_kinds(&move_parts(&before, &d, &retry, &Successors::default())),
        [
            "set_delivery_tally".to_owned(),
            format!("put_delivery {DELIVERY}"),
            format!("put_delivery {DUE}"),
        ],
        "still due: the copy follows the row"
    );
    let dead = attempted(d.clone(), &delivery_attempt(0, AttemptOutcome::Dead));
    assert_eq!(
        names_and_kinds(&move_parts(&before, &d, &dead, &Successors::default())),
        [
            "set_delivery_tally".to_owned(),
            format!("put_delivery {DELIVERY}"),
            format!("delete_delivery_row {DUE}"),
            format!("delete_delivery_row {AGE}"),
        ],
        "settled: the copy and the age marker go"
    );
    assert_eq!(
        names_and_kinds(&move_parts(
            &before,
            &dead,
            &replayed(dead.clone(), 9),
            &Successors::default()
        )),
        [
            "set_delivery_tally".to_owned(),
            format!("put_delivery {DELIVERY}"),
            format!("put_delivery {DUE}"),
            format!("put_delivery_mark {AGE}"),
        ],
        "replayed: due again, in its place"
    );
}

#[test]
fn delivered_entries_are_placed_by_day_and_bucket() {
    assert_eq!(day_of(0), 0);
    assert_eq!(day_of(86_399_999), 0);
    assert_eq!(day_of(86_400_000), 1);
    assert_eq!(day_of(-1), -1, "times before 1970 keep their order");
    let mut d = recorded(&new_delivery("e1", 86_400_001), 3);
    for id in ["a", "b", "c", "d", "e"] {
        d.device_id = id.into();
        let entry = DeliveredEntry::of(&d);
        assert_eq!(
            (entry.day, entry.seq, entry.created_at_ms),
            (1, 3, 86_400_001)
        );
        assert!((0..16).contains(&entry.bucket), "{entry:?}");
        assert_eq!(
            entry,
            DeliveredEntry::of(&d),
            "the same delivery, the same entry"
        );
    }
}
