//! The access directory (tenants, API keys, users as JSON documents) and the audit log:
//! schema step 4, statements in `statements/access.rs`.
//!
//! # Directory
//!
//! `access` keeps one partition per kind, records in id order. The directory is small
//! (thousands of records at most), so a kind fits one partition, and listing a kind is
//! reading it in clustering order from `after`: no index to keep in step. Writes are
//! single-row LWTs, so each answers what the `Store` contract asks without a read
//! first: a create is `INSERT ... IF NOT EXISTS` (`Conflict` when not applied), an
//! update `UPDATE ... IF EXISTS` (`NotFound`; a plain UPDATE would create the record),
//! a delete `DELETE ... IF EXISTS` (whether it applied). As everywhere in this store an
//! LWT whose answer is lost is not retried and answers `Unavailable`; a caller's retry
//! is answered truthfully (a create that had applied is then `Conflict`, a delete
//! `false`). Reads run at LOCAL_QUORUM like the device reads: they decide no
//! compare-and-set, and an LWT's commit is written at LOCAL_QUORUM, so every write that
//! has answered is seen.
//!
//! A tenant's records are picked out while reading the kind's partition page by page
//! (until the page is full or the partition ends), so listing one tenant's keys reads
//! the keys of the tenants listed before it too. For a directory of thousands that is a
//! few pages; a table by tenant would be a second partition written beside an
//! LWT-written row, with the ordering rules that `devices_by_shard` needs.
//!
//! What this costs: every write of a kind goes through Paxos on the same partition, so
//! concurrent directory writes of one kind contend (ScyllaDB retries them, and under
//! heavy contention one may time out as `Unavailable`). Administrative writes are rare,
//! so that is accepted. Every read of a record by id goes to the replicas of its kind's
//! partition: a caller that looks a key up on every API request should cache it, or the
//! `key` partition becomes a hot spot of the cluster.
//!
//! # Audit log
//!
//! `audit` has one partition per hour of `at_ms`, entries in id order. Since an entry's
//! id begins with its zero-padded `at_ms`, id order is time order, partitions follow
//! one another in time, and `since_ms`, `until_ms` and `after` bound the ids read (a
//! listing seeks to them instead of reading and dropping rows). `audit_hours` records,
//! in one small partition, which hours have entries: a listing reads it to find its
//! first hour (when `since_ms` and `after` do not say) and to skip empty hours, whatever
//! the time range asked. A marker is written before the entries of its hour, so an entry
//! is never without one (a crash in between leaves a marker of an hour without entries,
//! which costs a read). A setting would do for the first hour only, and would be written
//! by every append.
//!
//! Appends write each hour's entries as unlogged batches of plain upserts (one request
//! per [`AUDIT_BATCH`] entries of a partition). They are idempotent: a repeated id
//! writes the same values again, so a retried append leaves each entry once.
//!
//! A listing reads marked hours from its first to its last, each in pages of at most
//! [`AUDIT_PAGE`] rows, applies every filter of the query ([`AuditQuery::matches`]) and
//! stops as soon as `limit` entries matched: its memory is bounded by the page and the
//! limit, and a page is never an unbounded read. What is not bounded is how many pages a
//! very selective filter (an actor, a target) reads before it finds `limit` entries or
//! the range ends: like the SQLite store's, it reads every entry of the range. Narrow
//! such listings with `since_ms`.
//!
//! The log is append-only and grows without end (nothing prunes it yet, in either
//! store); an hour's partition holds what the API wrote that hour, and the hour being
//! written is the one partition every node appends to.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use super::statements::{self as st, Bound};
use super::{ScyllaStore, rows};
use crate::store::{AccessKind, AccessQuery, AccessRecord, AuditEntry, AuditQuery, StoreError};

/// The span of one `audit` partition.
pub(super) const HOUR_MS: i64 = 3_600_000;
/// Most rows read at once from one partition, by listings that filter.
const ACCESS_PAGE: u32 = 500;
pub(super) const AUDIT_PAGE: u32 = 500;
/// Most entries in one batch (well under ScyllaDB's batch size warning for entries of
/// a few hundred bytes).
pub(super) const AUDIT_BATCH: usize = 50;
/// Marked hours read at once.
const HOURS_CHUNK: i32 = 100;

fn what(kind: AccessKind, id: &str) -> String {
    format!("{} {id}", kind.as_str())
}

/// The `audit` partition of an entry made at `at_ms`.
pub(super) fn hour_of(at_ms: i64) -> i64 {
    at_ms.div_euclid(HOUR_MS)
}

/// The id prefix of `at_ms` (13 zero-padded digits), for the times ids can encode.
fn ms_key(at_ms: i64) -> Option<String> {
    (0..10_000_000_000_000)
        .contains(&at_ms)
        .then(|| format!("{at_ms:013}"))
}

/// The time an id encodes (its first 13 characters), if it has that shape.
fn id_ms(id: &str) -> Option<i64> {
    let prefix = id.get(..13)?;
    prefix
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| prefix.parse().ok())
        .flatten()
}

/// Above every id whose time prefix is below 10^13 ms (U+10FFFF sorts after any
/// ASCII), for a partition outside the range ids can encode.
const ABOVE_ALL: &str = "\u{10FFFF}";

/// What `query` says about the ids and hours worth reading: every entry it can match
/// lies in `first..=last` hours with `lower < id < upper(hour)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AuditRange {
    pub(super) first: i64,
    pub(super) last: i64,
    /// Exclusive; `after`, or just below the ids of `since_ms` (the prefix of the
    /// millisecond before: those entries are read and dropped by the filter).
    pub(super) lower: String,
    /// Exclusive; the prefix of `until_ms`, when given.
    until: Option<String>,
}

impl AuditRange {
    pub(super) fn of(query: &AuditQuery) -> AuditRange {
        let after_ms = query.after.as_deref().and_then(id_ms);
        let first = [query.since_ms, after_ms]
            .into_iter()
            .flatten()
            .map(hour_of)
            .max()
            .unwrap_or(i64::MIN);
        let last = query
            .until_ms
            .map_or(i64::MAX, |until| hour_of(until.saturating_sub(1)));
        let since_key = query
            .since_ms
            .and_then(|since| ms_key(since.saturating_sub(1)));
        let lower = [query.after.clone(), since_key]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or_default();
        AuditRange {
            first,
            last,
            lower,
            until: query.until_ms.and_then(ms_key),
        }
    }

    /// The exclusive upper id of `hour`'s reads: `until_ms`'s prefix or the next hour's.
    pub(super) fn upper(&self, hour: i64) -> String {
        let next_hour = hour.checked_add(1).and_then(|h| h.checked_mul(HOUR_MS));
        [self.until.clone(), next_hour.and_then(ms_key)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| ABOVE_ALL.to_owned())
    }
}

// ---- the directory ----

pub(super) async fn create(store: &ScyllaStore, r: &AccessRecord) -> Result<(), StoreError> {
    let s = &st::CREATE_ACCESS;
    let values = s.bind(vec![
        ("kind", st::text(r.kind.as_str())),
        ("id", st::text(&r.id)),
        ("tenant", st::opt_text(r.tenant.as_deref())),
        ("body", st::text(&r.body)),
        ("updated_at_ms", st::big(r.updated_at_ms)),
    ]);
    if store.lwt(s, values).await? {
        Ok(())
    } else {
        Err(StoreError::Conflict {
            what: what(r.kind, &r.id),
        })
    }
}

pub(super) async fn update(store: &ScyllaStore, r: &AccessRecord) -> Result<(), StoreError> {
    let s = &st::UPDATE_ACCESS;
    let values = s.bind(vec![
        ("tenant", st::opt_text(r.tenant.as_deref())),
        ("body", st::text(&r.body)),
        ("updated_at_ms", st::big(r.updated_at_ms)),
        ("kind", st::text(r.kind.as_str())),
        ("id", st::text(&r.id)),
    ]);
    if store.lwt(s, values).await? {
        Ok(())
    } else {
        Err(StoreError::NotFound {
            what: what(r.kind, &r.id),
        })
    }
}

fn key(kind: AccessKind, id: &str) -> Vec<(&'static str, Bound)> {
    vec![("kind", st::text(kind.as_str())), ("id", st::text(id))]
}

pub(super) async fn get(
    store: &ScyllaStore,
    kind: AccessKind,
    id: &str,
) -> Result<Option<AccessRecord>, StoreError> {
    let s = &st::GET_ACCESS;
    let row = store.first(s, s.bind(key(kind, id))).await?;
    row.map(|row| rows::access_record(kind, id.to_owned(), &row, 0))
        .transpose()
}

/// Reads the kind's partition from `after` in pages, keeping the tenant's records (all
/// of them without a tenant, when one page of `limit` rows is exactly the answer).
pub(super) async fn list(
    store: &ScyllaStore,
    query: &AccessQuery,
) -> Result<Vec<AccessRecord>, StoreError> {
    let limit = query.limit as usize;
    let page = if query.tenant.is_some() {
        ACCESS_PAGE
    } else {
        query.limit.min(ACCESS_PAGE)
    };
    let mut after = query.after.clone().unwrap_or_default();
    let mut out = Vec::new();
    while out.len() < limit {
        let s = &st::LIST_ACCESS;
        let values = s.bind(vec![
            ("kind", st::text(query.kind.as_str())),
            ("id", st::text(&after)),
            ("limit", st::int(page as i32)),
        ]);
        let found = store.rows(s, values).await?;
        let read = found.len();
        for row in found {
            let id = rows::text(&row, 0, "access id")?;
            after.clone_from(&id);
            let record = rows::access_record(query.kind, id, &row, 1)?;
            if query.tenant.is_none() || record.tenant == query.tenant {
                out.push(record);
                if out.len() == limit {
                    break;
                }
            }
        }
        if read < page as usize {
            break;
        }
    }
    Ok(out)
}

pub(super) async fn delete(
    store: &ScyllaStore,
    kind: AccessKind,
    id: &str,
) -> Result<bool, StoreError> {
    let s = &st::DELETE_ACCESS;
    store.lwt(s, s.bind(key(kind, id))).await
}

// ---- the audit log ----

impl ScyllaStore {
    /// Marks `hour` as having entries, unless it is the hour this process marked last
    /// (markers are never removed, so once is enough: the hour being written is marked
    /// once per process, not on every append; an entry of an earlier hour marks its
    /// hour again, harmlessly).
    async fn mark_audit_hour(&self, hour: i64) -> Result<(), StoreError> {
        if self.audit_hour_marked.load(Ordering::Relaxed) == hour {
            return Ok(());
        }
        let s = &st::PUT_AUDIT_HOUR;
        self.execute(s, s.bind(vec![("hour", st::big(hour))]))
            .await?;
        self.audit_hour_marked.store(hour, Ordering::Relaxed);
        Ok(())
    }
}

fn put_audit(hour: i64, e: &AuditEntry) -> Vec<Bound> {
    st::PUT_AUDIT.bind(vec![
        ("hour", st::big(hour)),
        ("id", st::text(&e.id)),
        ("at_ms", st::big(e.at_ms)),
        ("actor", st::text(&e.actor)),
        ("tenant", st::opt_text(e.tenant.as_deref())),
        ("action", st::text(&e.action)),
        ("target", st::text(&e.target)),
        ("source", st::text(&e.source)),
        ("status", st::int(i32::from(e.status))),
        ("outcome", st::text(&e.outcome)),
    ])
}

pub(super) async fn append_audit(
    store: &ScyllaStore,
    entries: &[AuditEntry],
) -> Result<(), StoreError> {
    let mut by_hour: BTreeMap<i64, Vec<&AuditEntry>> = BTreeMap::new();
    for entry in entries {
        by_hour.entry(hour_of(entry.at_ms)).or_default().push(entry);
    }
    for (hour, entries) in by_hour {
        store.mark_audit_hour(hour).await?;
        for chunk in entries.chunks(AUDIT_BATCH) {
            let parts = chunk
                .iter()
                .map(|e| (&st::PUT_AUDIT, put_audit(hour, e)))
                .collect();
            store.write_batch(parts).await?;
        }
    }
    Ok(())
}

pub(super) async fn list_audit(
    store: &ScyllaStore,
    query: &AuditQuery,
) -> Result<Vec<AuditEntry>, StoreError> {
    let limit = query.limit as usize;
    let range = AuditRange::of(query);
    let mut out = Vec::new();
    if limit == 0 || range.first > range.last {
        return Ok(out);
    }
    let mut from = range.first;
    loop {
        let s = &st::AUDIT_HOURS;
        let values = s.bind(vec![
            ("hour", st::big(from)),
            ("hour", st::big(range.last)),
            ("limit", st::int(HOURS_CHUNK)),
        ]);
        let hours = store.rows(s, values).await?;
        let mut last_read = None;
        for row in &hours {
            let hour = rows::big(row, 0, "audit hour")?;
            last_read = Some(hour);
            read_hour(store, query, &range, hour, &mut out).await?;
            if out.len() == limit {
                return Ok(out);
            }
        }
        match last_read.and_then(|h| h.checked_add(1)) {
            Some(next) if hours.len() == HOURS_CHUNK as usize && next <= range.last => {
                from = next;
            }
            _ => return Ok(out),
        }
    }
}

/// Adds the entries of `hour` that `query` matches to `out`, page by page, until `out`
/// holds `query.limit` entries or the hour's range is read.
async fn read_hour(
    store: &ScyllaStore,
    query: &AuditQuery,
    range: &AuditRange,
    hour: i64,
    out: &mut Vec<AuditEntry>,
) -> Result<(), StoreError> {
    let limit = query.limit as usize;
    let filtered = query.actor.is_some()
        || query.action.is_some()
        || query.target.is_some()
        || query.tenant.is_some();
    let page = if filtered {
        AUDIT_PAGE
    } else {
        query.limit.min(AUDIT_PAGE)
    };
    let upper = range.upper(hour);
    let mut lower = range.lower.clone();
    while lower < upper {
        let s = &st::AUDIT_PAGE;
        let values = s.bind(vec![
            ("hour", st::big(hour)),
            ("id", st::text(&lower)),
            ("id", st::text(&upper)),
            ("limit", st::int(page as i32)),
        ]);
        let found = store.rows(s, values).await?;
        let read = found.len();
        for row in found {
            let entry = rows::audit_entry(&row)?;
            lower.clone_from(&entry.id);
            if query.matches(&entry) {
                out.push(entry);
                if out.len() == limit {
                    return Ok(());
                }
            }
        }
        if read < page as usize {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_bound_the_hours_and_the_ids_read() {
        let h = 470_000; // an hour in 2023
        let at = |ms: i64| h * HOUR_MS + ms;
        let query = AuditQuery {
            since_ms: Some(at(10)),
            until_ms: Some(at(HOUR_MS)),
            after: Some(format!("{:013}-x", at(5))),
            limit: 10,
            ..AuditQuery::default()
        };
        let range = AuditRange::of(&query);
        // `until_ms` at the next hour's first millisecond: that hour is not read.
        assert_eq!((range.first, range.last), (h, h));
        assert_eq!(
            range.lower,
            format!("{:013}", at(9)),
            "since is above after"
        );
        assert_eq!(range.upper(h), format!("{:013}", at(HOUR_MS)));

        let later = AuditQuery {
            after: Some(format!("{:013}-x", at(2 * HOUR_MS + 1))),
            ..query.clone()
        };
        let range = AuditRange::of(&later);
        assert_eq!(range.first, h + 2, "a page after an id starts at its hour");
        assert!(range.first > range.last, "past until: nothing to read");

        let open = AuditRange::of(&AuditQuery {
            limit: 1,
            ..AuditQuery::default()
        });
        assert_eq!((open.first, open.last), (i64::MIN, i64::MAX));
        assert_eq!(open.lower, "");
        assert_eq!(open.upper(h), format!("{:013}", at(HOUR_MS)));
        assert_eq!(open.upper(i64::MAX), ABOVE_ALL);
        assert_eq!(open.upper(-1), format!("{:013}", 0));
    }

    #[test]
    fn every_id_of_a_range_lies_between_its_bounds() {
        // An entry at exactly `since_ms`, or just below `until_ms`, with the shortest
        // and a long suffix, is inside the bounds; one a millisecond outside is not.
        let (since, until) = (1_700_000_000_000, 1_700_000_000_500);
        let range = AuditRange::of(&AuditQuery {
            since_ms: Some(since),
            until_ms: Some(until),
            limit: 1,
            ..AuditQuery::default()
        });
        let upper = range.upper(hour_of(since));
        for at in [since, until - 1] {
            for suffix in ["", "-", "-zzzzzzzz"] {
                let id = format!("{at:013}{suffix}");
                assert!(range.lower < id && id < upper, "{id}");
            }
        }
        assert!(format!("{until:013}") >= upper);
        assert!(format!("{:013}-z", since - 2) < range.lower);
        assert_eq!(id_ms("0000000000042-a"), Some(42));
        assert_eq!(id_ms("00000000000x2-a"), None);
        assert_eq!(id_ms("short"), None);
    }
}
