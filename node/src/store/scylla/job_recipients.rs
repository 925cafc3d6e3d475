//! A job's recipients: one partition of `job_recipients` per job (schema step
//! [`super::schema::JOBS`], statements in `statements/jobs.rs`).
//!
//! # One partition per job
//!
//! The partition holds the job's recipients ('r' rows, in `seq` order), a pending mark
//! for each pending recipient ('p' rows, same `seq`, with `next_at_ms`), and, in static
//! columns, the tally: the count of each status, `pending_floor` (at or below the lowest
//! mark) and `version`. So:
//! - a claim reads the marks from `pending_floor` until one is due: settled recipients
//!   (and the tombstones of their marks) are never read, however far the job has gone;
//! - [`count`] is one read of the static row, whatever the job's size;
//! - listings read the 'r' rows in `seq` order from the cursor (with a filter, pages of
//!   [`LIST_PAGE`] until a page of matches: a rare status in a large job reads much of
//!   it, the cost SQLite's index avoids).
//!
//! 100,000 recipients are some 100,000–200,000 rows (a few tens of MB with their texts)
//! in one partition: within what ScyllaDB handles (it logs a warning for large
//! partitions), and what makes every change one conditional batch. Jobs of millions of
//! recipients would need the partition split by a bucket of `seq`, each with its own
//! tally (and claims walking the buckets): not done, said here so nobody is surprised.
//!
//! # Writes
//!
//! Every write is a compare-and-set on the partition's `version`, like the contact and
//! delivery partitions (see the docs of [`super`]): read the tally at LOCAL_SERIAL, read
//! the rows concerned (plain LOCAL_QUORUM reads, which see every batch applied before
//! that serial read), decide, and write one batch `IF version = ?` that changes the
//! rows, their marks and the tally together; if another writer came between, read again
//! (at most [`CAS_ATTEMPTS`] times). Hence:
//! - **A claim is exactly-once.** A claim reads the first due mark, checks its
//!   recipient is pending, and writes it queued (and its mark gone) only if nothing
//!   changed the partition since; of two claims of the same recipient one loses, reads
//!   again and takes the next due one.
//! - **Compare-and-sets.** [`update_recipient`] applies only over the status read, in
//!   the same batch discipline.
//! - **The counts are exact.** They change in the batch that changes the rows, so a
//!   crash between two writes cannot make them drift (counter columns would: a counter
//!   cannot be part of a conditional batch). The price: every write of a job is
//!   serialized on its partition's version, so concurrent writers of one job retry (a
//!   claim that loses reads again). ScyllaDB serializes LWTs per partition anyway (Paxos),
//!   so a job takes some hundreds of writes a second at most: far above what its
//!   devices send (each a message every few seconds), and a job of many devices sees
//!   retries, not errors, until [`CAS_ATTEMPTS`] runs out under heavy contention.
//! - Bulk writes are batches of their own: [`put_recipients`] [`PUT_BATCH`] recipients
//!   per batch, [`move_recipients`] one batch per [`MOVE_PAGE`] recipients read (a
//!   failure part way leaves the earlier batches written; a move may be run again).
//!
//! Each claim costs a serial read, a read of marks (more when retries wait at the
//! front), a read of the recipient and one LWT; an update a serial read, a read and one
//! LWT. Deleting a job deletes its partition with a plain delete (the caveats of
//! "Deletes" in [`super`]).

use std::collections::BTreeMap;

use futures_util::future::try_join_all;

use super::statements::{self as st, Bound, Statement};
use super::{CAS_ATTEMPTS, ScyllaStore, contention, i64_of, rows};
use crate::store::{RecipientQuery, RecipientRecord, RecipientStatus, StoreError};

/// Most recipients one conditional batch of [`put_recipients`] writes (with their texts).
pub(super) const PUT_BATCH: usize = 32;
/// Recipients read, and moved in one batch, at a time by [`move_recipients`].
pub(super) const MOVE_PAGE: u32 = 100;
/// Pending marks read at a time by a claim.
pub(super) const MARK_PAGE: u32 = 100;
/// Recipients read at a time by a filtered listing.
pub(super) const LIST_PAGE: u32 = 500;

type Part = (&'static Statement, Vec<Bound>);

/// The partition's static columns.
#[derive(Debug, Clone, Default)]
struct Tally {
    /// `None`: the partition was never written.
    version: Option<i64>,
    /// At or below the lowest pending mark's `seq`.
    floor: i64,
    /// By status, in [`RecipientStatus::ALL`] order (the `n_` columns' order).
    counts: [i64; 7],
}

fn slot(status: RecipientStatus) -> usize {
    RecipientStatus::ALL
        .iter()
        .position(|s| *s == status)
        .unwrap_or(0)
}

impl Tally {
    fn of(row: &rows::Columns) -> Result<Tally, StoreError> {
        let mut counts = [0; 7];
        for (i, count) in counts.iter_mut().enumerate() {
            *count = rows::opt_big(row, 2 + i, "recipient count")?.unwrap_or(0);
        }
        Ok(Tally {
            version: rows::opt_big(row, 0, "recipients version")?,
            floor: rows::opt_big(row, 1, "pending floor")?.unwrap_or(0),
            counts,
        })
    }

    fn count(&self, status: RecipientStatus) -> i64 {
        self.counts[slot(status)]
    }

    /// The batch's condition: the version read, and the tally after.
    fn part(&self, job_id: &str) -> Part {
        let s = &st::SET_JOB_TALLY;
        let mut values = vec![
            ("version", st::big(self.version.unwrap_or(0) + 1)),
            ("pending_floor", st::big(self.floor)),
        ];
        let names = [
            "n_pending",
            "n_queued",
            "n_sent",
            "n_delivered",
            "n_read",
            "n_failed",
            "n_cancelled",
        ];
        values.extend(names.into_iter().zip(self.counts.map(st::big)));
        values.extend([
            ("job_id", st::text(job_id)),
            // Null for a partition never written: `IF version = null` holds there.
            ("if_version", st::opt_big(self.version)),
        ]);
        (s, s.bind(values))
    }

    /// Adds to `parts` what takes a recipient from `old` to `new` (all of it, or with
    /// `whole` false where its send stands), its mark, and counts it.
    fn change(
        &mut self,
        parts: &mut Vec<Part>,
        old: Option<&RecipientRecord>,
        new: &RecipientRecord,
        whole: bool,
    ) -> Result<(), StoreError> {
        let seq = i64_of(new.seq, "recipient seq")?;
        if let Some(old) = old {
            self.counts[slot(old.status)] -= 1;
        }
        self.counts[slot(new.status)] += 1;
        parts.push(recipient_part(new, seq, whole)?);
        if new.status == RecipientStatus::Pending {
            let s = &st::PUT_JOB_MARK;
            let values = s.bind(vec![
                ("job_id", st::text(&new.job_id)),
                ("seq", st::big(seq)),
                ("next_at_ms", st::big(new.next_at_ms)),
            ]);
            parts.push((s, values));
            self.floor = self.floor.min(seq);
        } else if old.is_some_and(|old| old.status == RecipientStatus::Pending) {
            let s = &st::DELETE_JOB_MARK;
            let values = s.bind(vec![
                ("job_id", st::text(&new.job_id)),
                ("seq", st::big(seq)),
            ]);
            parts.push((s, values));
        }
        Ok(())
    }
}

/// A recipient whole ([`st::PUT_JOB_RECIPIENT`]) or where its send stands
/// ([`st::SET_JOB_RECIPIENT`]).
fn recipient_part(r: &RecipientRecord, seq: i64, whole: bool) -> Result<Part, StoreError> {
    let stands = [
        ("status", st::text(r.status.as_str())),
        ("device_id", st::opt_text(r.device_id.as_deref())),
        ("message_id", st::opt_text(r.message_id.as_deref())),
        ("attempts", st::big(i64::from(r.attempts))),
        ("error", st::opt_text(r.error.as_deref())),
        ("next_at_ms", st::big(r.next_at_ms)),
        ("updated_at_ms", st::big(r.updated_at_ms)),
    ];
    let key = [("job_id", st::text(&r.job_id)), ("seq", st::big(seq))];
    Ok(if whole {
        let s = &st::PUT_JOB_RECIPIENT;
        let mut values = Vec::from(key);
        values.extend([("recipient", st::text(&r.to)), ("text", st::text(&r.text))]);
        values.extend(stands);
        (s, s.bind(values))
    } else {
        let s = &st::SET_JOB_RECIPIENT;
        let mut values = Vec::from(stands);
        values.extend(key);
        (s, s.bind(values))
    })
}

/// A recipient from the columns of [`st::LIST_JOB_RECIPIENTS`].
fn recipient_of(job_id: &str, row: &rows::Columns) -> Result<RecipientRecord, StoreError> {
    let attempts = rows::big(row, 6, "recipient attempts")?;
    Ok(RecipientRecord {
        job_id: job_id.to_owned(),
        seq: rows::unsigned(row, 0, "recipient seq")?,
        to: rows::text(row, 1, "recipient")?,
        // An empty text may come back as null.
        text: rows::opt_text(row, 2, "recipient text")?.unwrap_or_default(),
        status: RecipientStatus::stored(&rows::text(row, 3, "recipient status")?)?,
        device_id: rows::opt_text(row, 4, "recipient device")?,
        message_id: rows::opt_text(row, 5, "recipient message")?,
        attempts: u32::try_from(attempts)
            .map_err(|_| StoreError::Corrupt(format!("recipient attempts {attempts}")))?,
        error: rows::opt_text(row, 7, "recipient error")?,
        next_at_ms: rows::big(row, 8, "recipient next_at_ms")?,
        updated_at_ms: rows::big(row, 9, "recipient updated_at_ms")?,
    })
}

/// A page size as CQL's `LIMIT` takes it.
fn limit_of(limit: u64) -> i32 {
    i32::try_from(limit).unwrap_or(i32::MAX)
}

impl ScyllaStore {
    /// The partition's tally, at LOCAL_SERIAL (before a compare-and-set) or not.
    async fn job_tally(&self, job_id: &str, serial: bool) -> Result<Tally, StoreError> {
        let s = if serial {
            &st::SELECT_JOB_TALLY_SERIAL
        } else {
            &st::SELECT_JOB_TALLY
        };
        let row = self
            .first(s, s.bind(vec![("job_id", st::text(job_id))]))
            .await?;
        row.map_or(Ok(Tally::default()), |row| Tally::of(&row))
    }

    async fn job_recipient(
        &self,
        job_id: &str,
        seq: i64,
    ) -> Result<Option<RecipientRecord>, StoreError> {
        let s = &st::SELECT_JOB_RECIPIENT;
        let values = s.bind(vec![("job_id", st::text(job_id)), ("seq", st::big(seq))]);
        let row = self.first(s, values).await?;
        row.map(|row| recipient_of(job_id, &row)).transpose()
    }

    /// At most `limit` recipients after `seq`, in order.
    async fn job_recipients_after(
        &self,
        job_id: &str,
        after: i64,
        limit: u64,
    ) -> Result<Vec<RecipientRecord>, StoreError> {
        let s = &st::LIST_JOB_RECIPIENTS;
        let values = s.bind(vec![
            ("job_id", st::text(job_id)),
            ("seq", st::big(after)),
            ("limit", st::int(limit_of(limit))),
        ]);
        self.rows(s, values)
            .await?
            .iter()
            .map(|row| recipient_of(job_id, row))
            .collect()
    }

    /// At most `limit` pending marks (`seq`, `next_at_ms`) from `seq` on, in order.
    async fn job_marks(
        &self,
        job_id: &str,
        from: i64,
        limit: u32,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let s = &st::LIST_JOB_MARKS;
        let values = s.bind(vec![
            ("job_id", st::text(job_id)),
            ("seq", st::big(from)),
            ("limit", st::int(limit_of(u64::from(limit)))),
        ]);
        self.rows(s, values)
            .await?
            .iter()
            .map(|row| {
                Ok((
                    rows::big(row, 0, "mark seq")?,
                    rows::big(row, 1, "mark next_at_ms")?,
                ))
            })
            .collect()
    }

    /// The stored recipients of `chunk` (sorted by `seq`), by `seq`: one read of their
    /// range when it is dense, else one read each.
    async fn stored_recipients(
        &self,
        job_id: &str,
        chunk: &[&RecipientRecord],
    ) -> Result<BTreeMap<u64, RecipientRecord>, StoreError> {
        let (Some(first), Some(last)) = (chunk.first(), chunk.last()) else {
            return Ok(BTreeMap::new());
        };
        let span = last.seq - first.seq + 1;
        let found: Vec<RecipientRecord> = if span <= 4 * chunk.len() as u64 {
            let after = i64_of(first.seq, "recipient seq")? - 1;
            self.job_recipients_after(job_id, after, span).await?
        } else {
            let reads = chunk.iter().map(|r| async move {
                self.job_recipient(job_id, i64_of(r.seq, "recipient seq")?)
                    .await
            });
            try_join_all(reads).await?.into_iter().flatten().collect()
        };
        Ok(found.into_iter().map(|r| (r.seq, r)).collect())
    }

    /// Stores one job's recipients (sorted by `seq`, one each) as one compare-and-set.
    async fn put_recipient_chunk(
        &self,
        job_id: &str,
        chunk: &[&RecipientRecord],
    ) -> Result<(), StoreError> {
        for _ in 0..CAS_ATTEMPTS {
            let mut tally = self.job_tally(job_id, true).await?;
            let stored = self.stored_recipients(job_id, chunk).await?;
            let mut parts = Vec::with_capacity(chunk.len() * 2 + 1);
            for r in chunk {
                tally.change(&mut parts, stored.get(&r.seq), r, true)?;
            }
            parts.insert(0, tally.part(job_id));
            if self.lwt_batch(parts).await? {
                return Ok(());
            }
        }
        Err(contention(&format!("recipients of job {job_id}")))
    }
}

pub(super) async fn put_recipients(
    store: &ScyllaStore,
    recipients: &[RecipientRecord],
) -> Result<(), StoreError> {
    // The last of each (job, seq) wins, as one write after another would.
    let mut latest: BTreeMap<(&str, u64), &RecipientRecord> = BTreeMap::new();
    for r in recipients {
        latest.insert((r.job_id.as_str(), r.seq), r);
    }
    let mut by_job: BTreeMap<&str, Vec<&RecipientRecord>> = BTreeMap::new();
    for ((job_id, _), r) in latest {
        by_job.entry(job_id).or_default().push(r);
    }
    for (job_id, all) in by_job {
        for chunk in all.chunks(PUT_BATCH) {
            store.put_recipient_chunk(job_id, chunk).await?;
        }
    }
    Ok(())
}

pub(super) async fn count(
    store: &ScyllaStore,
    job_id: &str,
) -> Result<Vec<(RecipientStatus, u64)>, StoreError> {
    let tally = store.job_tally(job_id, false).await?;
    Ok(RecipientStatus::ALL
        .iter()
        .filter_map(|status| {
            let n = u64::try_from(tally.count(*status)).unwrap_or(0);
            (n > 0).then_some((*status, n))
        })
        .collect())
}

/// The first due mark from `floor` on, and the `seq` at or below the lowest mark once
/// that one is gone (the claim's new floor).
async fn first_due(
    store: &ScyllaStore,
    job_id: &str,
    floor: i64,
    now_ms: i64,
) -> Result<Option<(i64, i64)>, StoreError> {
    let mut from = floor;
    let mut lowest = None;
    let mut found: Option<i64> = None;
    loop {
        let marks = store.job_marks(job_id, from, MARK_PAGE).await?;
        for &(seq, next_at_ms) in &marks {
            let lowest = *lowest.get_or_insert(seq);
            if let Some(claimed) = found {
                // The mark after the claimed one: the floor once it is gone, if the
                // claimed one was the lowest.
                return Ok(Some((
                    claimed,
                    if claimed == lowest { seq } else { lowest },
                )));
            }
            if next_at_ms <= now_ms {
                found = Some(seq);
            }
        }
        if let Some(claimed) = found {
            // The last mark read: the floor once it is gone is past it.
            let lowest = lowest.unwrap_or(claimed);
            let floor = if claimed == lowest {
                claimed + 1
            } else {
                lowest
            };
            return Ok(Some((claimed, floor)));
        }
        match marks.last() {
            Some(&(last, _)) if marks.len() == MARK_PAGE as usize => from = last + 1,
            _ => return Ok(None),
        }
    }
}

pub(super) async fn claim(
    store: &ScyllaStore,
    job_id: &str,
    device_id: &str,
    now_ms: i64,
) -> Result<Option<RecipientRecord>, StoreError> {
    for _ in 0..CAS_ATTEMPTS {
        let mut tally = store.job_tally(job_id, true).await?;
        if tally.version.is_none() || tally.count(RecipientStatus::Pending) <= 0 {
            return Ok(None);
        }
        let Some((seq, floor)) = first_due(store, job_id, tally.floor, now_ms).await? else {
            return Ok(None);
        };
        let before = store.job_recipient(job_id, seq).await?;
        let Some(before) = before.filter(|r| r.status == RecipientStatus::Pending) else {
            // A batch came between the serial read and these (read again), or the mark
            // is wrong.
            if store.job_tally(job_id, true).await?.version == tally.version {
                return Err(StoreError::Corrupt(format!(
                    "job {job_id}: a pending mark at seq {seq} without a pending recipient"
                )));
            }
            continue;
        };
        let claimed = RecipientRecord {
            status: RecipientStatus::Queued,
            device_id: Some(device_id.to_owned()),
            message_id: None,
            attempts: before.attempts.saturating_add(1),
            error: None,
            updated_at_ms: now_ms,
            ..before.clone()
        };
        tally.floor = floor;
        let mut parts = Vec::with_capacity(3);
        tally.change(&mut parts, Some(&before), &claimed, false)?;
        parts.insert(0, tally.part(job_id));
        if store.lwt_batch(parts).await? {
            return Ok(Some(claimed));
        }
    }
    Err(contention(&format!("a claim of job {job_id}")))
}

pub(super) async fn update_recipient(
    store: &ScyllaStore,
    r: &RecipientRecord,
    expected: RecipientStatus,
) -> Result<bool, StoreError> {
    let seq = i64_of(r.seq, "recipient seq")?;
    for _ in 0..CAS_ATTEMPTS {
        let mut tally = store.job_tally(&r.job_id, true).await?;
        if tally.version.is_none() {
            return Ok(false);
        }
        let Some(before) = store.job_recipient(&r.job_id, seq).await? else {
            return Ok(false);
        };
        if before.status != expected {
            return Ok(false);
        }
        let after = RecipientRecord {
            to: before.to.clone(),
            text: before.text.clone(),
            ..r.clone()
        };
        let mut parts = Vec::with_capacity(3);
        tally.change(&mut parts, Some(&before), &after, false)?;
        parts.insert(0, tally.part(&r.job_id));
        if store.lwt_batch(parts).await? {
            return Ok(true);
        }
    }
    Err(contention(&format!(
        "recipient {} of job {}",
        r.seq, r.job_id
    )))
}

pub(super) async fn list_recipients(
    store: &ScyllaStore,
    query: &RecipientQuery,
) -> Result<Vec<RecipientRecord>, StoreError> {
    let limit = query.limit as usize;
    let filtered = query.status.is_some() || query.device_id.is_some();
    let page = if filtered {
        u64::from(LIST_PAGE)
    } else {
        u64::from(query.limit)
    };
    let mut after = match query.after {
        Some(seq) => i64_of(seq, "recipient seq")?,
        None => -1,
    };
    let mut out = Vec::new();
    while out.len() < limit {
        let found = store
            .job_recipients_after(&query.job_id, after, page)
            .await?;
        let read = found.len();
        for r in found {
            after = i64_of(r.seq, "recipient seq")?;
            if query.matches(&r) {
                out.push(r);
                if out.len() == limit {
                    break;
                }
            }
        }
        if (read as u64) < page {
            break;
        }
    }
    Ok(out)
}

/// `r` moved to `to` at `now_ms`: to `pending`, afresh (see
/// [`crate::store::Store::move_job_recipients`]).
fn moved(r: &RecipientRecord, to: RecipientStatus, now_ms: i64) -> RecipientRecord {
    let mut after = RecipientRecord {
        status: to,
        updated_at_ms: now_ms,
        ..r.clone()
    };
    if to == RecipientStatus::Pending {
        after.device_id = None;
        after.message_id = None;
        after.attempts = 0;
        after.error = None;
        after.next_at_ms = now_ms;
    }
    after
}

pub(super) async fn move_recipients(
    store: &ScyllaStore,
    job_id: &str,
    from: RecipientStatus,
    to: RecipientStatus,
    now_ms: i64,
) -> Result<u64, StoreError> {
    let mut total = 0u64;
    let mut after = -1i64;
    loop {
        // One page of recipients: (how many moved, the last seq read, whether it was full).
        let mut page = None;
        for _ in 0..CAS_ATTEMPTS {
            let mut tally = store.job_tally(job_id, true).await?;
            if tally.version.is_none() {
                return Ok(total);
            }
            let read = store
                .job_recipients_after(job_id, after, u64::from(MOVE_PAGE))
                .await?;
            let Some(last) = read.last() else {
                return Ok(total);
            };
            let last = i64_of(last.seq, "recipient seq")?;
            let full = read.len() == MOVE_PAGE as usize;
            let mut parts = Vec::new();
            let mut moved_here = 0u64;
            for r in read.iter().filter(|r| r.status == from) {
                tally.change(&mut parts, Some(r), &moved(r, to, now_ms), false)?;
                moved_here += 1;
            }
            if parts.is_empty() {
                page = Some((0, last, full));
                break;
            }
            parts.insert(0, tally.part(job_id));
            if store.lwt_batch(parts).await? {
                page = Some((moved_here, last, full));
                break;
            }
        }
        let Some((moved_here, last, full)) = page else {
            return Err(contention(&format!("a move of job {job_id}'s recipients")));
        };
        total += moved_here;
        if !full {
            return Ok(total);
        }
        after = last;
    }
}

/// Deletes the job's partition: its recipients, marks and tally.
pub(super) async fn delete_all(store: &ScyllaStore, job_id: &str) -> Result<(), StoreError> {
    let s = &st::DELETE_JOB_RECIPIENTS;
    store
        .execute(s, s.bind(vec![("job_id", st::text(job_id))]))
        .await
        .map(drop)
}

/// The partition's `pending_floor`, for the wire tests.
#[cfg(test)]
pub(super) async fn pending_floor(store: &ScyllaStore, job_id: &str) -> Result<i64, StoreError> {
    Ok(store.job_tally(job_id, false).await?.floor)
}
