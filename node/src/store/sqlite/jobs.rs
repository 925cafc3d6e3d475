//! Campaigns: `jobs` (one row per job, its devices as JSON), `job_recipients` (one row
//! per recipient, keyed by job and `seq`, indexed by job, status and `seq` so a claim is
//! one seek) and `job_counts` (recipients by job and status, kept as they change: a
//! progress count is a few rows), schema step 10. Writes run
//! on the store's one writer, so a claim's read and update cannot interleave with
//! another's.

use rusqlite::{Connection, Row, params};

use super::sql::{column, db_error, execute, is_uniqueness_violation, query_all, query_first};
use crate::store::{
    JobQuery, JobRecord, JobStatus, RecipientQuery, RecipientRecord, RecipientStatus, StoreError,
};

const JOB_COLUMNS: &str = "id, tenant, name, status, devices, spec, total, start_at_ms, \
     created_at_ms, started_at_ms, finished_at_ms, updated_at_ms";
const RECIPIENT_COLUMNS: &str = "job_id, seq, recipient, text, status, device_id, message_id, \
     attempts, error, next_at_ms, updated_at_ms";

fn job_from_row(row: &Row<'_>) -> Result<JobRecord, StoreError> {
    let status: String = column(row, 3)?;
    let devices: String = column(row, 4)?;
    let total: i64 = column(row, 6)?;
    Ok(JobRecord {
        id: column(row, 0)?,
        tenant: column(row, 1)?,
        name: column(row, 2)?,
        status: JobStatus::stored(&status)?,
        devices: serde_json::from_str(&devices)
            .map_err(|e| StoreError::Corrupt(format!("job devices {devices:?}: {e}")))?,
        spec: column(row, 5)?,
        total: u64::try_from(total)
            .map_err(|_| StoreError::Corrupt(format!("job total {total}")))?,
        start_at_ms: column(row, 7)?,
        created_at_ms: column(row, 8)?,
        started_at_ms: column(row, 9)?,
        finished_at_ms: column(row, 10)?,
        updated_at_ms: column(row, 11)?,
    })
}

fn recipient_from_row(row: &Row<'_>) -> Result<RecipientRecord, StoreError> {
    let seq: i64 = column(row, 1)?;
    let status: String = column(row, 4)?;
    let attempts: i64 = column(row, 7)?;
    Ok(RecipientRecord {
        job_id: column(row, 0)?,
        seq: u64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("recipient seq {seq}")))?,
        to: column(row, 2)?,
        text: column(row, 3)?,
        status: RecipientStatus::stored(&status)?,
        device_id: column(row, 5)?,
        message_id: column(row, 6)?,
        attempts: u32::try_from(attempts)
            .map_err(|_| StoreError::Corrupt(format!("recipient attempts {attempts}")))?,
        error: column(row, 8)?,
        next_at_ms: column(row, 9)?,
        updated_at_ms: column(row, 10)?,
    })
}

fn devices_json(job: &JobRecord) -> String {
    // A list of strings always serializes.
    serde_json::to_string(&job.devices).unwrap_or_default()
}

fn seq(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Inserts each recipient, or replaces the one stored at its `seq`. A replacement is an
/// update (the `job_recipients_recounted` trigger moves its count); new recipients are
/// counted here, one `job_counts` write per status and batch, not one per row (a trigger
/// per insert made a 100,000-recipient job take 2.0 s to make instead of 0.8 s). Each
/// statement is prepared once per batch.
pub(super) fn put_recipients(
    conn: &Connection,
    recipients: &[RecipientRecord],
) -> Result<(), StoreError> {
    let mut insert = conn
        .prepare_cached(&format!(
            "INSERT INTO job_recipients ({RECIPIENT_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (job_id, seq) DO NOTHING"
        ))
        .map_err(db_error)?;
    let mut added: Vec<((&str, RecipientStatus), i64)> = Vec::new();
    for r in recipients {
        let values = params![
            r.job_id,
            seq(r.seq),
            r.to,
            r.text,
            r.status.as_str(),
            r.device_id,
            r.message_id,
            r.attempts,
            r.error,
            r.next_at_ms,
            r.updated_at_ms
        ];
        if insert.execute(values).map_err(db_error)? == 1 {
            let key = (r.job_id.as_str(), r.status);
            match added.iter_mut().find(|(k, _)| *k == key) {
                Some((_, n)) => *n += 1,
                None => added.push((key, 1)),
            }
        } else {
            execute(
                conn,
                "UPDATE job_recipients SET recipient = ?3, text = ?4, status = ?5,
                     device_id = ?6, message_id = ?7, attempts = ?8, error = ?9,
                     next_at_ms = ?10, updated_at_ms = ?11
                 WHERE job_id = ?1 AND seq = ?2",
                values,
            )
            .map_err(db_error)?;
        }
    }
    for ((job_id, status), n) in added {
        execute(
            conn,
            "INSERT INTO job_counts (job_id, status, n) VALUES (?1, ?2, ?3)
             ON CONFLICT (job_id, status) DO UPDATE SET n = n + excluded.n",
            params![job_id, status.as_str(), n],
        )
        .map_err(db_error)?;
    }
    Ok(())
}

pub(super) fn create(conn: &Connection, job: &JobRecord) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO jobs ({JOB_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    );
    let inserted = execute(
        conn,
        &sql,
        params![
            job.id,
            job.tenant,
            job.name,
            job.status.as_str(),
            devices_json(job),
            job.spec,
            seq(job.total),
            job.start_at_ms,
            job.created_at_ms,
            job.started_at_ms,
            job.finished_at_ms,
            job.updated_at_ms
        ],
    );
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if is_uniqueness_violation(&e) => Err(StoreError::Conflict {
            what: format!("job {}", job.id),
        }),
        Err(e) => Err(db_error(e)),
    }
}

pub(super) fn get(conn: &Connection, id: &str) -> Result<Option<JobRecord>, StoreError> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1");
    query_first(conn, &sql, params![id], job_from_row)
}

pub(super) fn list(conn: &Connection, query: &JobQuery) -> Result<Vec<JobRecord>, StoreError> {
    let active = if query.active_only {
        " AND status IN ('scheduled', 'running', 'paused')"
    } else {
        ""
    };
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE (?1 IS NULL OR tenant = ?1) AND id > ?2{active}
         ORDER BY id LIMIT ?3"
    );
    query_all(
        conn,
        &sql,
        params![
            query.tenant,
            query.after.as_deref().unwrap_or(""),
            i64::from(query.limit)
        ],
        job_from_row,
    )
}

pub(super) fn update(
    conn: &Connection,
    job: &JobRecord,
    expected: JobStatus,
) -> Result<bool, StoreError> {
    execute(
        conn,
        "UPDATE jobs SET status = ?2, started_at_ms = ?3, finished_at_ms = ?4, updated_at_ms = ?5
         WHERE id = ?1 AND status = ?6",
        params![
            job.id,
            job.status.as_str(),
            job.started_at_ms,
            job.finished_at_ms,
            job.updated_at_ms,
            expected.as_str()
        ],
    )
    .map(|changed| changed > 0)
    .map_err(db_error)
}

pub(super) fn delete(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    execute(
        conn,
        "DELETE FROM job_recipients WHERE job_id = ?1",
        params![id],
    )
    .map_err(db_error)?;
    execute(
        conn,
        "DELETE FROM job_counts WHERE job_id = ?1",
        params![id],
    )
    .map_err(db_error)?;
    execute(conn, "DELETE FROM jobs WHERE id = ?1", params![id])
        .map(|deleted| deleted > 0)
        .map_err(db_error)
}

pub(super) fn count(
    conn: &Connection,
    job_id: &str,
) -> Result<Vec<(RecipientStatus, u64)>, StoreError> {
    query_all(
        conn,
        "SELECT status, n FROM job_counts WHERE job_id = ?1 AND n > 0",
        params![job_id],
        |row| {
            let status: String = column(row, 0)?;
            let count: i64 = column(row, 1)?;
            Ok((
                RecipientStatus::stored(&status)?,
                u64::try_from(count).unwrap_or(0),
            ))
        },
    )
}

pub(super) fn claim(
    conn: &Connection,
    job_id: &str,
    device_id: &str,
    now_ms: i64,
) -> Result<Option<RecipientRecord>, StoreError> {
    let sql = format!(
        "UPDATE job_recipients SET status = 'queued', device_id = ?2, message_id = NULL,
             attempts = attempts + 1, error = NULL, updated_at_ms = ?3
         WHERE job_id = ?1 AND seq = (
             SELECT seq FROM job_recipients
             WHERE job_id = ?1 AND status = 'pending' AND next_at_ms <= ?3
             ORDER BY seq LIMIT 1)
         RETURNING {RECIPIENT_COLUMNS}"
    );
    query_first(
        conn,
        &sql,
        params![job_id, device_id, now_ms],
        recipient_from_row,
    )
}

pub(super) fn update_recipient(
    conn: &Connection,
    r: &RecipientRecord,
    expected: RecipientStatus,
) -> Result<bool, StoreError> {
    execute(
        conn,
        "UPDATE job_recipients SET status = ?3, device_id = ?4, message_id = ?5, attempts = ?6,
             error = ?7, next_at_ms = ?8, updated_at_ms = ?9
         WHERE job_id = ?1 AND seq = ?2 AND status = ?10",
        params![
            r.job_id,
            seq(r.seq),
            r.status.as_str(),
            r.device_id,
            r.message_id,
            r.attempts,
            r.error,
            r.next_at_ms,
            r.updated_at_ms,
            expected.as_str()
        ],
    )
    .map(|changed| changed > 0)
    .map_err(db_error)
}

pub(super) fn list_recipients(
    conn: &Connection,
    query: &RecipientQuery,
) -> Result<Vec<RecipientRecord>, StoreError> {
    let sql = format!(
        "SELECT {RECIPIENT_COLUMNS} FROM job_recipients
         WHERE job_id = ?1 AND seq > ?2 AND (?3 IS NULL OR status = ?3)
             AND (?4 IS NULL OR device_id = ?4)
         ORDER BY seq LIMIT ?5"
    );
    query_all(
        conn,
        &sql,
        params![
            query.job_id,
            query.after.map_or(-1, seq),
            query.status.map(RecipientStatus::as_str),
            query.device_id,
            i64::from(query.limit)
        ],
        recipient_from_row,
    )
}

pub(super) fn move_recipients(
    conn: &Connection,
    job_id: &str,
    from: RecipientStatus,
    to: RecipientStatus,
    now_ms: i64,
) -> Result<u64, StoreError> {
    let changed = if to == RecipientStatus::Pending {
        execute(
            conn,
            "UPDATE job_recipients SET status = 'pending', device_id = NULL, message_id = NULL,
                 attempts = 0, error = NULL, next_at_ms = ?3, updated_at_ms = ?3
             WHERE job_id = ?1 AND status = ?2",
            params![job_id, from.as_str(), now_ms],
        )
    } else {
        execute(
            conn,
            "UPDATE job_recipients SET status = ?3, updated_at_ms = ?4
             WHERE job_id = ?1 AND status = ?2",
            params![job_id, from.as_str(), to.as_str(), now_ms],
        )
    };
    changed.map(|n| n as u64).map_err(db_error)
}
