//! Campaigns: jobs and their listings (schema step [`super::schema::JOBS`], statements
//! in `statements/jobs.rs`); their recipients are `job_recipients.rs`.
//!
//! # Jobs
//!
//! `jobs` has one row per job, keyed by id, so a create is `INSERT ... IF NOT EXISTS`
//! (`Conflict` when it does not apply), a read one row, and [`update`] a single-row LWT
//! `UPDATE ... IF status = ?` on the status the caller read (not applied when the job
//! is gone, too). A delete is `DELETE ... IF EXISTS`, after the recipients' partition.
//!
//! # Listings
//!
//! Partitions come in token order, so listing jobs in id order needs an index:
//! `job_index` has one partition per listing scope and one row per job id in it:
//! `all` (every job), `active` (every tenant's jobs that may still send: the
//! scheduler's listing, which stays small because finished jobs leave it), `t:` and the
//! tenant, `a:` and the tenant (its active jobs). A page is one read of the scope's
//! ids after the cursor and one read of each job (concurrently), repeated while entries
//! turn out stale. An index entry and its job are in different partitions, so they
//! cannot be written atomically; entries are hints that may lag one way only: **an
//! entry may point at a job that is gone or no longer in its scope, never may a job
//! lack the entry of a scope it is in.** Readers check every entry against its job
//! (tenant, activity), so a stale entry costs a read, never a job. Writers keep the
//! rule so:
//! - a create writes its entries before the job (a create that fails leaves entries
//!   that point at nothing, or at another tenant's job: skipped);
//! - an update that makes a job active writes the active entries before its LWT;
//! - an update that makes it inactive deletes them after its LWT applied, then reads the
//!   job at LOCAL_SERIAL and writes them again if a concurrent update made it active
//!   meanwhile;
//! - a delete removes the job, then its entries.
//!
//! Entries are last-write-wins, so the third rule assumes that the coordinators'
//! clocks order the delete and the re-write as they happened (the clock-skew caveat of
//! the module docs of [`super`]). The `active` partition collects a tombstone per
//! finished job (until ScyllaDB's gc grace period purges it), which its reads step over.

use futures_util::future::try_join_all;

use super::statements as st;
use super::{ScyllaStore, i64_of, job_recipients, rows};
use crate::store::{JobQuery, JobRecord, JobStatus, StoreError};

/// The scope of every job.
const ALL: &str = "all";
/// The scope of every tenant's active jobs.
const ACTIVE: &str = "active";

/// A tenant's scope.
fn tenant_scope(tenant: &str) -> String {
    format!("t:{tenant}")
}

/// A tenant's active scope.
fn tenant_active_scope(tenant: &str) -> String {
    format!("a:{tenant}")
}

/// The scopes a job with this tenant and status is listed in.
fn scopes_of(tenant: &str, status: JobStatus) -> Vec<String> {
    let mut scopes = vec![ALL.to_owned(), tenant_scope(tenant)];
    scopes.extend(active_scopes(tenant).filter(|_| status.is_active()));
    scopes
}

/// The scopes only active jobs are listed in.
fn active_scopes(tenant: &str) -> impl Iterator<Item = String> {
    [ACTIVE.to_owned(), tenant_active_scope(tenant)].into_iter()
}

/// The scope a query reads.
fn scope_of(query: &JobQuery) -> String {
    match (&query.tenant, query.active_only) {
        (None, false) => ALL.to_owned(),
        (None, true) => ACTIVE.to_owned(),
        (Some(tenant), false) => tenant_scope(tenant),
        (Some(tenant), true) => tenant_active_scope(tenant),
    }
}

fn job_of(row: &rows::Columns) -> Result<JobRecord, StoreError> {
    let devices = rows::text(row, 4, "job devices")?;
    Ok(JobRecord {
        id: rows::text(row, 0, "job id")?,
        tenant: rows::text(row, 1, "job tenant")?,
        name: rows::text(row, 2, "job name")?,
        status: JobStatus::stored(&rows::text(row, 3, "job status")?)?,
        devices: serde_json::from_str(&devices)
            .map_err(|e| StoreError::Corrupt(format!("job devices {devices:?}: {e}")))?,
        spec: rows::text(row, 5, "job spec")?,
        total: rows::unsigned(row, 6, "job total")?,
        start_at_ms: rows::opt_big(row, 7, "job start_at_ms")?,
        created_at_ms: rows::big(row, 8, "job created_at_ms")?,
        started_at_ms: rows::opt_big(row, 9, "job started_at_ms")?,
        finished_at_ms: rows::opt_big(row, 10, "job finished_at_ms")?,
        updated_at_ms: rows::big(row, 11, "job updated_at_ms")?,
    })
}

impl ScyllaStore {
    /// One job, read at LOCAL_QUORUM or (`serial`) LOCAL_SERIAL.
    async fn job(&self, id: &str, serial: bool) -> Result<Option<JobRecord>, StoreError> {
        let s = if serial {
            &st::SELECT_JOB_SERIAL
        } else {
            &st::SELECT_JOB
        };
        let row = self.first(s, s.bind(vec![("id", st::text(id))])).await?;
        row.map(|row| job_of(&row)).transpose()
    }

    /// Writes (or, `put` false, deletes) the entries of `id` in `scopes`, concurrently.
    async fn job_entries(
        &self,
        id: &str,
        scopes: impl IntoIterator<Item = String>,
        put: bool,
    ) -> Result<(), StoreError> {
        let s = if put {
            &st::PUT_JOB_ENTRY
        } else {
            &st::DELETE_JOB_ENTRY
        };
        let writes = scopes.into_iter().map(|scope| async move {
            self.execute(
                s,
                s.bind(vec![("scope", st::text(&scope)), ("id", st::text(id))]),
            )
            .await
            .map(drop)
        });
        try_join_all(writes).await.map(drop)
    }
}

pub(super) async fn create(store: &ScyllaStore, job: &JobRecord) -> Result<(), StoreError> {
    store
        .job_entries(&job.id, scopes_of(&job.tenant, job.status), true)
        .await?;
    // A list of strings always serializes.
    let devices = serde_json::to_string(&job.devices).unwrap_or_default();
    let s = &st::INSERT_JOB;
    let values = s.bind(vec![
        ("id", st::text(&job.id)),
        ("tenant", st::text(&job.tenant)),
        ("name", st::text(&job.name)),
        ("status", st::text(job.status.as_str())),
        ("devices", st::text(&devices)),
        ("spec", st::text(&job.spec)),
        ("total", st::big(i64_of(job.total, "job total")?)),
        ("start_at_ms", st::opt_big(job.start_at_ms)),
        ("created_at_ms", st::big(job.created_at_ms)),
        ("started_at_ms", st::opt_big(job.started_at_ms)),
        ("finished_at_ms", st::opt_big(job.finished_at_ms)),
        ("updated_at_ms", st::big(job.updated_at_ms)),
    ]);
    if store.lwt(s, values).await? {
        Ok(())
    } else {
        Err(StoreError::Conflict {
            what: format!("job {}", job.id),
        })
    }
}

pub(super) async fn get(store: &ScyllaStore, id: &str) -> Result<Option<JobRecord>, StoreError> {
    store.job(id, false).await
}

/// A page of [`JobQuery`]: the scope's ids after the cursor, each checked against its
/// job (see "Listings" in the module docs), until `limit` jobs or the scope's end.
pub(super) async fn list(
    store: &ScyllaStore,
    query: &JobQuery,
) -> Result<Vec<JobRecord>, StoreError> {
    let limit = query.limit as usize;
    let scope = scope_of(query);
    let mut after = query.after.clone().unwrap_or_default();
    let mut out = Vec::new();
    while out.len() < limit {
        let s = &st::LIST_JOB_ENTRIES;
        let page = query.limit.max(1);
        let values = s.bind(vec![
            ("scope", st::text(&scope)),
            ("id", st::text(&after)),
            ("limit", st::int(i32::try_from(page).unwrap_or(i32::MAX))),
        ]);
        let ids = store
            .rows(s, values)
            .await?
            .iter()
            .map(|row| rows::text(row, 0, "job id"))
            .collect::<Result<Vec<_>, _>>()?;
        let Some(last) = ids.last() else { break };
        after.clone_from(last);
        let jobs = try_join_all(ids.iter().map(|id| store.job(id, false))).await?;
        out.extend(jobs.into_iter().flatten().filter(|job| {
            query.tenant.as_ref().is_none_or(|t| &job.tenant == t)
                && (!query.active_only || job.status.is_active())
        }));
        if ids.len() < page as usize {
            break;
        }
    }
    out.truncate(limit);
    Ok(out)
}

pub(super) async fn update(
    store: &ScyllaStore,
    job: &JobRecord,
    expected: JobStatus,
) -> Result<bool, StoreError> {
    let activates = job.status.is_active() && !expected.is_active();
    if activates {
        store
            .job_entries(&job.id, active_scopes(&job.tenant), true)
            .await?;
    }
    let s = &st::UPDATE_JOB;
    let values = s.bind(vec![
        ("status", st::text(job.status.as_str())),
        ("started_at_ms", st::opt_big(job.started_at_ms)),
        ("finished_at_ms", st::opt_big(job.finished_at_ms)),
        ("updated_at_ms", st::big(job.updated_at_ms)),
        ("id", st::text(&job.id)),
        ("if_status", st::text(expected.as_str())),
    ]);
    if !store.lwt(s, values).await? {
        return Ok(false);
    }
    if expected.is_active() && !job.status.is_active() {
        // Out of the active scopes, unless an update that came between made it active
        // again (its entries may have been written before this delete).
        let tenant = match store.job(&job.id, true).await? {
            Some(stored) => stored.tenant,
            None => job.tenant.clone(),
        };
        store
            .job_entries(&job.id, active_scopes(&tenant), false)
            .await?;
        if let Some(stored) = store.job(&job.id, true).await?
            && stored.status.is_active()
        {
            store
                .job_entries(&job.id, active_scopes(&stored.tenant), true)
                .await?;
        }
    }
    Ok(true)
}

pub(super) async fn delete(store: &ScyllaStore, id: &str) -> Result<bool, StoreError> {
    let before = store.job(id, true).await?;
    job_recipients::delete_all(store, id).await?;
    let s = &st::DELETE_JOB;
    let existed = store.lwt(s, s.bind(vec![("id", st::text(id))])).await?;
    if let Some(job) = before {
        // Every scope it may be in, whatever its status.
        store
            .job_entries(id, scopes_of(&job.tenant, JobStatus::Running), false)
            .await?;
    }
    Ok(existed)
}
