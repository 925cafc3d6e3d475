//! The shape of the webhook delivery log on ScyllaDB, and what each write makes of it
//! (pure: no I/O): the row kinds of a device's `deliveries` partition, a delivery as
//! recorded, attempted or replayed, the partition's tally after a move, the statements
//! of each conditional batch, and `delivered_by_day` placement. `deliveries` runs them.

use wafleet_cluster_config::shard_of;

use super::rows::Tally;
use super::statements::{self as st, Bound, Statement};
use crate::store::{Attempt, AttemptOutcome, DeliveryRecord, DeliveryStatus, NewDelivery};

/// `row_kind` of a delivery, at (`seq`, `event_id`).
pub(super) const DELIVERY: &str = "d";
/// `row_kind` of a due delivery's copy, at the delivery's key.
pub(super) const DUE: &str = "q";
/// `row_kind` of an event id's claim, at (0, `event_id`), naming the `seq` in `event_seq`.
pub(super) const CLAIM: &str = "e";
/// `row_kind` of a due delivery's age marker, at (`created_at_ms`, `event_id`).
pub(super) const AGE: &str = "o";

/// `delivered_by_day` partitions: one per day and bucket.
const DAY_MS: i64 = 86_400_000;
/// Buckets of a day in `delivered_by_day` (`shard_of(device_id, DELIVERED_BUCKETS)`).
const DELIVERED_BUCKETS: u32 = 16;
/// Deliveries of one device deleted by one conditional batch when pruning (two rows
/// each: the delivery and its claim).
pub(super) const PRUNE_BATCH: usize = 50;

/// One statement of a conditional batch and its values.
pub(super) type Part = (&'static Statement, Vec<Bound>);

// ---- what a write makes of a delivery and of its partition's tally (pure) ----

/// A new event as its append records it, at `seq`.
pub(super) fn recorded(d: &NewDelivery, seq: i64) -> DeliveryRecord {
    DeliveryRecord {
        seq,
        event_id: d.event_id.clone(),
        device_id: d.device_id.clone(),
        tenant: d.tenant.clone(),
        event: d.event.clone(),
        data: d.data.clone(),
        created_at_ms: d.created_at_ms,
        status: DeliveryStatus::Pending,
        attempts: 0,
        next_attempt_ms: None,
        last_status_code: None,
        last_error: None,
        delivered_at_ms: None,
    }
}

/// The delivery after an attempt's outcome is recorded (as the SQLite store writes it).
pub(super) fn attempted(mut d: DeliveryRecord, attempt: &Attempt) -> DeliveryRecord {
    let (status, next_attempt_ms, delivered_at_ms) = match attempt.outcome {
        AttemptOutcome::Delivered => (DeliveryStatus::Delivered, None, Some(attempt.at_ms)),
        AttemptOutcome::Retry { next_attempt_ms } => {
            (DeliveryStatus::Failed, Some(next_attempt_ms), None)
        }
        AttemptOutcome::Dead => (DeliveryStatus::Dead, None, None),
    };
    d.status = status;
    d.attempts = attempt.prior_attempts.saturating_add(1);
    d.next_attempt_ms = next_attempt_ms;
    d.last_status_code = attempt.status_code;
    d.last_error = attempt.error.clone();
    d.delivered_at_ms = delivered_at_ms;
    d
}

/// The delivery queued again by a replay: pending, no attempts, due at `now_ms`.
pub(super) fn replayed(mut d: DeliveryRecord, now_ms: i64) -> DeliveryRecord {
    d.status = DeliveryStatus::Pending;
    d.attempts = 0;
    // Always a change (see `Attempt::prior_next_attempt_ms`).
    d.next_attempt_ms = Some(if d.next_attempt_ms == Some(now_ms) {
        now_ms + 1
    } else {
        now_ms
    });
    d.last_status_code = None;
    d.last_error = None;
    d.delivered_at_ms = None;
    d
}

/// What a delivery that stops being due leaves behind it: the lowest due seq and the
/// oldest due time of the partition's other due deliveries (read from the 'q' and 'o'
/// rows only when the settling delivery held them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Successors {
    pub(super) due_floor: Option<i64>,
    pub(super) oldest_due_ms: Option<i64>,
}

/// A delivery changing status: `from` (`None`: it is new) to `to` (`None`: it is
/// deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Move {
    pub(super) from: Option<DeliveryStatus>,
    pub(super) to: Option<DeliveryStatus>,
    pub(super) seq: i64,
    pub(super) created_at_ms: i64,
}

impl Move {
    pub(super) fn of(
        d: &DeliveryRecord,
        from: Option<DeliveryStatus>,
        to: Option<DeliveryStatus>,
    ) -> Move {
        Move {
            from,
            to,
            seq: d.seq,
            created_at_ms: d.created_at_ms,
        }
    }

    fn was_due(&self) -> bool {
        self.from.is_some_and(DeliveryStatus::is_due)
    }

    fn is_due(&self) -> bool {
        self.to.is_some_and(DeliveryStatus::is_due)
    }

    /// Which successors the tally needs: (the lowest due seq, the oldest due time), each
    /// only when this delivery stops being due and held it.
    pub(super) fn needs(&self, before: &Tally) -> (bool, bool) {
        if !self.was_due() || self.is_due() {
            return (false, false);
        }
        (
            before.due_floor == Some(self.seq),
            before.oldest_due_ms == Some(self.created_at_ms),
        )
    }
}

fn count_of(tally: &mut Tally, status: DeliveryStatus) -> Option<&mut i64> {
    match status {
        DeliveryStatus::Pending => Some(&mut tally.pending),
        DeliveryStatus::Failed => Some(&mut tally.failed),
        DeliveryStatus::Dead => Some(&mut tally.dead),
        DeliveryStatus::Delivered => None,
    }
}

pub(super) fn min_of(a: Option<i64>, b: i64) -> Option<i64> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// The partition's tally after `m`, written with `version` one up.
pub(super) fn retally(before: &Tally, m: &Move, successors: &Successors) -> Tally {
    let mut after = *before;
    after.version = Some(before.version.unwrap_or(0) + 1);
    if let Some(count) = m.from.and_then(|s| count_of(&mut after, s)) {
        *count -= 1;
    }
    if let Some(count) = m.to.and_then(|s| count_of(&mut after, s)) {
        *count += 1;
    }
    match (m.was_due(), m.is_due()) {
        (false, true) => {
            after.due_floor = min_of(before.due_floor, m.seq);
            after.oldest_due_ms = min_of(before.oldest_due_ms, m.created_at_ms);
        }
        (true, false) => {
            let (floor, oldest) = m.needs(before);
            if floor {
                after.due_floor = successors.due_floor;
            }
            if oldest {
                after.oldest_due_ms = successors.oldest_due_ms;
            }
        }
        _ => {}
    }
    if !after.has_due() {
        after.due_floor = None;
        after.oldest_due_ms = None;
    }
    after
}

// ---- statements of a conditional batch ----

pub(super) fn tally_write(device_id: &str, before: &Tally, after: &Tally) -> Part {
    let s = &st::SET_DELIVERY_TALLY;
    (
        s,
        s.bind(vec![
            ("version", st::opt_big(after.version)),
            ("pending", st::big(after.pending)),
            ("failed", st::big(after.failed)),
            ("dead", st::big(after.dead)),
            ("due_floor", st::opt_big(after.due_floor)),
            ("oldest_due_ms", st::opt_big(after.oldest_due_ms)),
            ("device_id", st::text(device_id)),
            // Null for a partition never written: `IF version = null` holds there.
            ("if_version", st::opt_big(before.version)),
        ]),
    )
}

fn put_delivery(row_kind: &str, d: &DeliveryRecord) -> Part {
    let s = &st::PUT_DELIVERY;
    (
        s,
        s.bind(vec![
            ("device_id", st::text(&d.device_id)),
            ("row_kind", st::text(row_kind)),
            ("seq", st::big(d.seq)),
            ("event_id", st::text(&d.event_id)),
            ("tenant", st::text(&d.tenant)),
            ("event", st::text(&d.event)),
            ("data", st::text(&d.data)),
            ("created_at_ms", st::big(d.created_at_ms)),
            ("status", st::text(d.status.as_str())),
            ("attempts", st::big(i64::from(d.attempts))),
            ("next_attempt_ms", st::opt_big(d.next_attempt_ms)),
            (
                "last_status_code",
                st::opt_int(d.last_status_code.map(i32::from)),
            ),
            ("last_error", st::opt_text(d.last_error.as_deref())),
            ("delivered_at_ms", st::opt_big(d.delivered_at_ms)),
        ]),
    )
}

fn put_mark(device_id: &str, row_kind: &str, seq: i64, event_id: &str, event_seq: i64) -> Part {
    let s = &st::PUT_DELIVERY_MARK;
    (
        s,
        s.bind(vec![
            ("device_id", st::text(device_id)),
            ("row_kind", st::text(row_kind)),
            ("seq", st::big(seq)),
            ("event_id", st::text(event_id)),
            ("event_seq", st::big(event_seq)),
        ]),
    )
}

pub(super) fn delete_row(device_id: &str, row_kind: &str, seq: i64, event_id: &str) -> Part {
    let s = &st::DELETE_DELIVERY_ROW;
    (
        s,
        s.bind(vec![
            ("device_id", st::text(device_id)),
            ("row_kind", st::text(row_kind)),
            ("seq", st::big(seq)),
            ("event_id", st::text(event_id)),
        ]),
    )
}

/// What an append writes: the delivery, its due copy, its claim and its age marker.
pub(super) fn append_parts(before: &Tally, d: &DeliveryRecord) -> Vec<Part> {
    let after = retally(
        before,
        &Move::of(d, None, Some(d.status)),
        &Successors::default(),
    );
    vec![
        tally_write(&d.device_id, before, &after),
        put_delivery(DELIVERY, d),
        put_delivery(DUE, d),
        put_mark(&d.device_id, CLAIM, 0, &d.event_id, d.seq),
        put_mark(&d.device_id, AGE, d.created_at_ms, &d.event_id, d.seq),
    ]
}

/// What moving a delivery from `current` to `after` writes: the delivery, and its due
/// copy and age marker as it is or is no longer due.
pub(super) fn move_parts(
    before: &Tally,
    current: &DeliveryRecord,
    after: &DeliveryRecord,
    successors: &Successors,
) -> Vec<Part> {
    let m = Move::of(current, Some(current.status), Some(after.status));
    let tally = retally(before, &m, successors);
    let device_id = &current.device_id;
    let mut parts = vec![
        tally_write(device_id, before, &tally),
        put_delivery(DELIVERY, after),
    ];
    if m.is_due() {
        parts.push(put_delivery(DUE, after));
        if !m.was_due() {
            parts.push(put_mark(
                device_id,
                AGE,
                after.created_at_ms,
                &after.event_id,
                after.seq,
            ));
        }
    } else if m.was_due() {
        parts.push(delete_row(device_id, DUE, current.seq, &current.event_id));
        parts.push(delete_row(
            device_id,
            AGE,
            current.created_at_ms,
            &current.event_id,
        ));
    }
    parts
}

/// An entry of `delivered_by_day`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DeliveredEntry {
    pub(super) day: i64,
    pub(super) bucket: i64,
    pub(super) created_at_ms: i64,
    pub(super) device_id: String,
    pub(super) seq: i64,
    pub(super) event_id: String,
}

impl DeliveredEntry {
    pub(super) fn of(d: &DeliveryRecord) -> DeliveredEntry {
        DeliveredEntry {
            day: day_of(d.created_at_ms),
            bucket: i64::from(shard_of(&d.device_id, DELIVERED_BUCKETS)),
            created_at_ms: d.created_at_ms,
            device_id: d.device_id.clone(),
            seq: d.seq,
            event_id: d.event_id.clone(),
        }
    }

    pub(super) fn key(&self) -> Vec<(&'static str, Bound)> {
        vec![
            ("day", st::big(self.day)),
            ("bucket", st::big(self.bucket)),
            ("created_at_ms", st::big(self.created_at_ms)),
            ("device_id", st::text(&self.device_id)),
            ("seq", st::big(self.seq)),
            ("event_id", st::text(&self.event_id)),
        ]
    }
}

/// The `delivered_by_day` day of a time (days before 1970 are negative).
pub(super) fn day_of(at_ms: i64) -> i64 {
    at_ms.div_euclid(DAY_MS)
}

/// A `u32` limit as a CQL `LIMIT` (an int).
pub(super) fn limit_of(limit: u32) -> Bound {
    st::int(i32::try_from(limit).unwrap_or(i32::MAX))
}

// ---- reads ----
