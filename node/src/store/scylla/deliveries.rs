//! The webhook delivery log: one `deliveries` partition per device, every write a
//! compare-and-set on its tally, and `delivered_by_day` for pruning (see "Webhook
//! deliveries" in the docs of [`super`]).

use std::collections::BTreeMap;

use futures_util::{StreamExt, stream};

use super::delivery_partition::{
    AGE, CLAIM, DELIVERY, DUE, DeliveredEntry, Move, PRUNE_BATCH, Successors, append_parts,
    attempted, day_of, delete_row, limit_of, min_of, move_parts, recorded, replayed, tally_write,
};
use super::rows::{self, Tally};
use super::statements as st;
use super::{CAS_ATTEMPTS, SHARD_READS, ScyllaStore, contention};
use crate::store::{
    Attempt, DeliveryBacklog, DeliveryRecord, DeliveryStatus, DeviceId, NewDelivery, ReplayWhich,
    StoreError, device_not_found,
};

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
        if !current.status.is_due()
            || current.attempts != attempt.prior_attempts
            || current.next_attempt_ms != attempt.prior_next_attempt_ms
        {
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
    store
        .devices_in_shards_where(shards, limit, |id| async move {
            let tally = store.delivery_tally(&id, false).await?;
            Ok(tally.has_due().then_some(id))
        })
        .await
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
