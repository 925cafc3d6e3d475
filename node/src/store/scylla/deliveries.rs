//! The webhook delivery log: one `deliveries` partition per device, every write a
//! compare-and-set on its tally, and `delivered_by_day` for pruning (see "Webhook
//! deliveries" in the docs of [`super`]).

use std::collections::BTreeMap;

use futures_util::{StreamExt, stream};
use wafleet_cluster_config::shard_of;

use super::rows::{self, Tally};
use super::statements::{self as st, Bound, Statement};
use super::{CAS_ATTEMPTS, SHARD_READS, ScyllaStore, contention};
use crate::store::{
    Attempt, AttemptOutcome, DeliveryBacklog, DeliveryRecord, DeliveryStatus, DeviceId,
    NewDelivery, ReplayWhich, StoreError, device_not_found,
};

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
const PRUNE_BATCH: usize = 50;

/// One statement of a conditional batch and its values.
type Part = (&'static Statement, Vec<Bound>);

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
    d.next_attempt_ms = Some(now_ms);
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
    fn of(d: &DeliveryRecord, from: Option<DeliveryStatus>, to: Option<DeliveryStatus>) -> Move {
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

fn min_of(a: Option<i64>, b: i64) -> Option<i64> {
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

fn tally_write(device_id: &str, before: &Tally, after: &Tally) -> Part {
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

fn delete_row(device_id: &str, row_kind: &str, seq: i64, event_id: &str) -> Part {
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

    fn key(&self) -> Vec<(&'static str, Bound)> {
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
fn limit_of(limit: u32) -> Bound {
    st::int(i32::try_from(limit).unwrap_or(i32::MAX))
}

// ---- reads ----

impl ScyllaStore {
    /// The tally of a device's deliveries partition (empty if it was never written).
    async fn delivery_tally(&self, device_id: &str, serial: bool) -> Result<Tally, StoreError> {
        let s = if serial {
            &st::SELECT_DELIVERY_TALLY_SERIAL
        } else {
            &st::SELECT_DELIVERY_TALLY
        };
        match self
            .first(s, s.bind(vec![("device_id", st::text(device_id))]))
            .await?
        {
            Some(row) => rows::tally(&row, 0),
            None => Ok(Tally::default()),
        }
    }

    /// The `seq` an event was recorded at, if it was (LOCAL_SERIAL).
    async fn delivery_claim(
        &self,
        device_id: &str,
        event_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        let s = &st::SELECT_DELIVERY_CLAIM_SERIAL;
        let row = self
            .first(
                s,
                s.bind(vec![
                    ("device_id", st::text(device_id)),
                    ("event_id", st::text(event_id)),
                ]),
            )
            .await?;
        row.map(|row| rows::big(&row, 0, "claimed seq")).transpose()
    }

    /// A delivery and its partition's tally (LOCAL_SERIAL).
    async fn delivery_serial(
        &self,
        device_id: &str,
        seq: i64,
        event_id: &str,
    ) -> Result<Option<(DeliveryRecord, Tally)>, StoreError> {
        let s = &st::SELECT_DELIVERY_SERIAL;
        let row = self
            .first(
                s,
                s.bind(vec![
                    ("device_id", st::text(device_id)),
                    ("seq", st::big(seq)),
                    ("event_id", st::text(event_id)),
                ]),
            )
            .await?;
        row.map(|row| {
            Ok((
                rows::delivery(&row)?,
                rows::tally(&row, rows::DELIVERY_COLUMNS)?,
            ))
        })
        .transpose()
    }

    /// The key (`seq` column) of the first `row_kind` row at or after `from` other than
    /// (`own_key`, `own_event`), LOCAL_SERIAL.
    async fn next_mark(
        &self,
        device_id: &str,
        row_kind: &str,
        from: i64,
        own_key: i64,
        own_event: &str,
    ) -> Result<Option<i64>, StoreError> {
        let s = &st::DELIVERY_MARKS_SERIAL;
        let found = self
            .rows(
                s,
                s.bind(vec![
                    ("device_id", st::text(device_id)),
                    ("row_kind", st::text(row_kind)),
                    ("seq", st::big(from)),
                    ("limit", st::int(2)),
                ]),
            )
            .await?;
        for row in &found {
            let key = rows::big(row, 0, "delivery mark key")?;
            let event_id = rows::text(row, 1, "delivery mark event id")?;
            if (key, event_id.as_str()) != (own_key, own_event) {
                return Ok(Some(key));
            }
        }
        Ok(None)
    }

    /// The successors a move needs (see [`Move::needs`]), read from the marker rows.
    async fn successors(
        &self,
        before: &Tally,
        current: &DeliveryRecord,
        to: DeliveryStatus,
    ) -> Result<Successors, StoreError> {
        let (floor, oldest) = Move::of(current, Some(current.status), Some(to)).needs(before);
        let (id, event_id) = (&current.device_id, &current.event_id);
        let mut successors = Successors::default();
        if floor {
            successors.due_floor = self
                .next_mark(id, DUE, current.seq, current.seq, event_id)
                .await?;
        }
        if oldest {
            let at = current.created_at_ms;
            successors.oldest_due_ms = self.next_mark(id, AGE, at, at, event_id).await?;
        }
        Ok(successors)
    }

    async fn delivered_entry(
        &self,
        entry: &DeliveredEntry,
        present: bool,
    ) -> Result<(), StoreError> {
        let s = if present {
            &st::PUT_DELIVERED_ENTRY
        } else {
            &st::DELETE_DELIVERED_ENTRY
        };
        self.execute(s, s.bind(entry.key())).await.map(drop)
    }

    /// Queues one delivery again (only if it is in `only`, when given); whether it was.
    async fn replay_one(
        &self,
        device_id: &str,
        seq: i64,
        event_id: &str,
        only: Option<DeliveryStatus>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        for _ in 0..CAS_ATTEMPTS {
            let Some((current, before)) = self.delivery_serial(device_id, seq, event_id).await?
            else {
                return Ok(false);
            };
            if only.is_some_and(|status| status != current.status) {
                return Ok(false);
            }
            let after = replayed(current.clone(), now_ms);
            // Due afterwards: no successors needed.
            let parts = move_parts(&before, &current, &after, &Successors::default());
            if self.lwt_batch(parts).await? {
                return Ok(true);
            }
        }
        Err(contention(event_id))
    }

    /// Deletes the delivered ones of `entries` (all of one device) recorded before
    /// `before_ms`, a batch at a time, and the entries that point at nothing to prune;
    /// returns how many deliveries.
    async fn prune_device(
        &self,
        device_id: &str,
        entries: &[DeliveredEntry],
        before_ms: i64,
    ) -> Result<u64, StoreError> {
        let mut pruned = 0;
        for chunk in entries.chunks(PRUNE_BATCH) {
            pruned += self.prune_chunk(device_id, chunk, before_ms).await?;
        }
        Ok(pruned)
    }

    async fn prune_chunk(
        &self,
        device_id: &str,
        entries: &[DeliveredEntry],
        before_ms: i64,
    ) -> Result<u64, StoreError> {
        for _ in 0..CAS_ATTEMPTS {
            let before = self.delivery_tally(device_id, true).await?;
            // One after the other: LOCAL_SERIAL reads of one partition at once would
            // contend with each other as writes do.
            let mut found = Vec::with_capacity(entries.len());
            for e in entries {
                found.push(self.delivery_serial(device_id, e.seq, &e.event_id).await);
            }
            let mut parts = Vec::new();
            let mut done = Vec::new();
            for (entry, found) in entries.iter().zip(found) {
                match found? {
                    Some((d, _)) if d.status == DeliveryStatus::Delivered => {
                        if d.created_at_ms < before_ms {
                            parts.push(delete_row(device_id, DELIVERY, d.seq, &d.event_id));
                            parts.push(delete_row(device_id, CLAIM, 0, &d.event_id));
                            done.push(entry);
                        }
                    }
                    // Replayed since: its entry stays for when it is delivered again.
                    Some((d, _)) if d.status.is_due() => {}
                    // Gone, or dead (a replay writes the entry again before it is
                    // delivered again): nothing to prune.
                    _ => done.push(entry),
                }
            }
            let count = parts.len() as u64 / 2;
            if !parts.is_empty() {
                let after = Tally {
                    version: Some(before.version.unwrap_or(0) + 1),
                    ..before
                };
                parts.insert(0, tally_write(device_id, &before, &after));
                if !self.lwt_batch(parts).await? {
                    continue;
                }
            }
            for entry in done {
                self.delivered_entry(entry, false).await?;
            }
            return Ok(count);
        }
        Err(contention(device_id))
    }
}

// ---- the delivery methods of `Store` ----

pub(super) async fn append(store: &ScyllaStore, d: &NewDelivery) -> Result<(), StoreError> {
    if store.device_state(&d.device_id, false).await?.is_none() {
        return Err(device_not_found(&d.device_id));
    }
    for _ in 0..CAS_ATTEMPTS {
        if store
            .delivery_claim(&d.device_id, &d.event_id)
            .await?
            .is_some()
        {
            // Recorded already (perhaps by an append whose answer was lost).
            return Ok(());
        }
        let before = store.delivery_tally(&d.device_id, true).await?;
        let record = recorded(d, before.version.unwrap_or(0) + 1);
        if store.lwt_batch(append_parts(&before, &record)).await? {
            return Ok(());
        }
    }
    Err(contention(&d.event_id))
}

pub(super) async fn due(
    store: &ScyllaStore,
    device_id: &str,
    limit: u32,
) -> Result<Vec<DeliveryRecord>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let tally = store.delivery_tally(device_id, false).await?;
    // From the lowest due seq: the due copies of settled deliveries left tombstones
    // below it, which this read then never walks.
    let from = match (tally.due_floor, tally.has_due()) {
        (Some(floor), _) => floor,
        (None, true) => i64::MIN,
        (None, false) => return Ok(Vec::new()),
    };
    let s = &st::DUE_DELIVERIES;
    let values = s.bind(vec![
        ("device_id", st::text(device_id)),
        ("seq", st::big(from)),
        ("limit", limit_of(limit)),
    ]);
    let mut out = Vec::new();
    store
        .each_row(s, values, |row| {
            out.push(rows::delivery(&row)?);
            Ok(out.len() < limit as usize)
        })
        .await?;
    Ok(out)
}

pub(super) async fn record_attempt(
    store: &ScyllaStore,
    device_id: &str,
    event_id: &str,
    attempt: &Attempt,
) -> Result<Option<DeliveryRecord>, StoreError> {
    let Some(seq) = store.delivery_claim(device_id, event_id).await? else {
        return Ok(None);
    };
    let mut indexed = false;
    for _ in 0..CAS_ATTEMPTS {
        let Some((current, before)) = store.delivery_serial(device_id, seq, event_id).await? else {
            return Ok(None);
        };
        if !current.status.is_due() || current.attempts != attempt.prior_attempts {
            return Ok(None);
        }
        let after = attempted(current.clone(), attempt);
        if after.status == DeliveryStatus::Delivered && !indexed {
            // Before the delivery says delivered, so a delivered one always has its
            // entry (one written for an attempt that then loses is pruned as stale).
            store
                .delivered_entry(&DeliveredEntry::of(&after), true)
                .await?;
            indexed = true;
        }
        let successors = store.successors(&before, &current, after.status).await?;
        if store
            .lwt_batch(move_parts(&before, &current, &after, &successors))
            .await?
        {
            return Ok(Some(after));
        }
    }
    Err(contention(event_id))
}

pub(super) async fn list(
    store: &ScyllaStore,
    device_id: &str,
    status: Option<DeliveryStatus>,
    before_seq: Option<i64>,
    limit: u32,
) -> Result<Vec<DeliveryRecord>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let before = st::big(before_seq.unwrap_or(i64::MAX));
    let (s, values) = match status {
        Some(status) => {
            let s = &st::LIST_DELIVERIES_BY_STATUS;
            let values = s.bind(vec![
                ("device_id", st::text(device_id)),
                ("seq", before),
                ("status", st::text(status.as_str())),
                ("limit", limit_of(limit)),
            ]);
            (s, values)
        }
        None => {
            let s = &st::LIST_DELIVERIES;
            let values = s.bind(vec![
                ("device_id", st::text(device_id)),
                ("seq", before),
                ("limit", limit_of(limit)),
            ]);
            (s, values)
        }
    };
    let mut out = Vec::new();
    store
        .each_row(s, values, |row| {
            out.push(rows::delivery(&row)?);
            Ok(out.len() < limit as usize)
        })
        .await?;
    Ok(out)
}

pub(super) async fn replay(
    store: &ScyllaStore,
    device_id: &str,
    which: &ReplayWhich,
    now_ms: i64,
) -> Result<u64, StoreError> {
    match which {
        ReplayWhich::Event(event_id) => {
            let Some(seq) = store.delivery_claim(device_id, event_id).await? else {
                return Ok(0);
            };
            let replayed = store
                .replay_one(device_id, seq, event_id, None, now_ms)
                .await?;
            Ok(u64::from(replayed))
        }
        ReplayWhich::Dead => {
            // One compare-and-set each, one after the other: they share the partition.
            let dead = list(store, device_id, Some(DeliveryStatus::Dead), None, u32::MAX).await?;
            let mut count = 0;
            for d in dead {
                let replayed = store
                    .replay_one(
                        device_id,
                        d.seq,
                        &d.event_id,
                        Some(DeliveryStatus::Dead),
                        now_ms,
                    )
                    .await?;
                count += u64::from(replayed);
            }
            Ok(count)
        }
    }
}

/// Like [`super::messages::devices_with_queued`]: the asked shards' devices
/// (`devices_by_shard`), then one single-row read of each device's tally. The cost
/// follows the shards asked for, never the size of the log.
pub(super) async fn devices_with_due(
    store: &ScyllaStore,
    shards: &[u32],
    limit: u32,
) -> Result<Vec<DeviceId>, StoreError> {
    let shards: std::collections::BTreeSet<u32> = shards
        .iter()
        .copied()
        .filter(|shard| *shard < store.shards)
        .collect();
    let mut devices = Vec::new();
    let mut entries = stream::iter(shards)
        .map(|shard| store.shard_entries(shard))
        .buffer_unordered(SHARD_READS);
    while let Some(shard) = entries.next().await {
        devices.extend(shard?.into_iter().map(|(id, _)| id));
    }
    let limit = limit as usize;
    let mut out = Vec::new();
    let mut probes = stream::iter(devices)
        .map(|id| async move {
            let tally = store.delivery_tally(&id, false).await?;
            Ok::<_, StoreError>(tally.has_due().then_some(id))
        })
        .buffer_unordered(SHARD_READS);
    while out.len() < limit
        && let Some(probe) = probes.next().await
    {
        out.extend(probe?);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Sums the tallies of every partition: one read of the partitions' static rows (a
/// token-range scan of one row per device that has a delivery log, however long the log
/// is), like `count_devices_by_status`.
pub(super) async fn backlog(store: &ScyllaStore) -> Result<DeliveryBacklog, StoreError> {
    let mut backlog = DeliveryBacklog::default();
    store
        .each_row(&st::DELIVERY_TALLIES, Vec::new(), |row| {
            let count = |index: usize, what: &str| -> Result<u64, StoreError> {
                let value = rows::opt_big(&row, index, what)?.unwrap_or(0);
                u64::try_from(value)
                    .map_err(|_| StoreError::Corrupt(format!("negative {what} {value}")))
            };
            backlog.pending += count(1, "pending count")?;
            backlog.failed += count(2, "failed count")?;
            backlog.dead += count(3, "dead count")?;
            if let Some(oldest) = rows::opt_big(&row, 4, "oldest due time")? {
                backlog.oldest_due_created_ms = min_of(backlog.oldest_due_created_ms, oldest);
            }
            Ok(true)
        })
        .await?;
    Ok(backlog)
}

/// Reads `delivered_by_day`'s partitions (a few per day kept: `SELECT DISTINCT`), then,
/// oldest day first, each one's entries recorded before `before_ms`, and deletes their
/// deliveries device by device (one conditional batch per [`PRUNE_BATCH`]).
pub(super) async fn prune(
    store: &ScyllaStore,
    before_ms: i64,
    limit: u32,
) -> Result<u64, StoreError> {
    if limit == 0 {
        return Ok(0);
    }
    let last_day = day_of(before_ms.saturating_sub(1));
    let mut partitions = Vec::new();
    store
        .each_row(&st::DELIVERED_DAYS, Vec::new(), |row| {
            let day = rows::big(&row, 0, "delivered day")?;
            if day <= last_day {
                partitions.push((day, rows::big(&row, 1, "delivered bucket")?));
            }
            Ok(true)
        })
        .await?;
    partitions.sort_unstable();
    let mut pruned = 0u64;
    for (day, bucket) in partitions {
        let left = u64::from(limit).saturating_sub(pruned);
        if left == 0 {
            break;
        }
        let s = &st::DELIVERED_ENTRIES;
        let values = s.bind(vec![
            ("day", st::big(day)),
            ("bucket", st::big(bucket)),
            ("created_at_ms", st::big(before_ms)),
            ("limit", limit_of(u32::try_from(left).unwrap_or(u32::MAX))),
        ]);
        let mut by_device: BTreeMap<String, Vec<DeliveredEntry>> = BTreeMap::new();
        store
            .each_row(s, values, |row| {
                let entry = DeliveredEntry {
                    day,
                    bucket,
                    created_at_ms: rows::big(&row, 0, "delivered created_at_ms")?,
                    device_id: rows::text(&row, 1, "delivered device id")?,
                    seq: rows::big(&row, 2, "delivered seq")?,
                    event_id: rows::text(&row, 3, "delivered event id")?,
                };
                by_device
                    .entry(entry.device_id.clone())
                    .or_default()
                    .push(entry);
                Ok(true)
            })
            .await?;
        // Devices at once, each device's deliveries one batch after the other (they
        // share its partition's compare-and-set).
        let mut done = stream::iter(by_device)
            .map(|(device_id, entries)| async move {
                store.prune_device(&device_id, &entries, before_ms).await
            })
            .buffer_unordered(SHARD_READS);
        while let Some(count) = done.next().await {
            pruned += count?;
        }
    }
    Ok(pruned)
}
