//! The statements of campaigns (`jobs`, `job_index`, `job_recipients`); schema step
//! [`crate::store::scylla::schema::JOBS`], used by `scylla/jobs.rs` and
//! `scylla/job_recipients.rs`.
//!
//! Jobs are single-row LWTs (a create is conditional, an update a compare-and-set on
//! the status). Index entries are plain idempotent writes. Every write of a job's
//! recipients partition is part of a conditional batch led by [`SET_JOB_TALLY`] (the
//! partition's `version`), so those statements are LWT statements too; its reads are
//! plain LOCAL_QUORUM reads made after the LOCAL_SERIAL read of the version they are
//! judged on.

use super::{Kind, Statement};

macro_rules! job_columns {
    () => {
        "id, tenant, name, status, devices, spec, total, start_at_ms, created_at_ms, \
         started_at_ms, finished_at_ms, updated_at_ms"
    };
}

macro_rules! recipient_columns {
    () => {
        "seq, recipient, text, status, device_id, message_id, attempts, error, next_at_ms, \
         updated_at_ms"
    };
}

macro_rules! job_tally_columns {
    () => {
        "version, pending_floor, n_pending, n_queued, n_sent, n_delivered, n_read, n_failed, \
         n_cancelled"
    };
}

pub(crate) const SELECT_JOB: Statement = Statement {
    name: "select_job",
    cql: concat!("SELECT ", job_columns!(), " FROM {ks}.jobs WHERE id = ?"),
    kind: Kind::Read,
    binds: &["id"],
};

/// [`SELECT_JOB`] at LOCAL_SERIAL: whether an index entry must stay, judged after an
/// update that may race another.
pub(crate) const SELECT_JOB_SERIAL: Statement = Statement {
    name: "select_job_serial",
    kind: Kind::SerialRead,
    ..SELECT_JOB
};

pub(crate) const INSERT_JOB: Statement = Statement {
    name: "insert_job",
    cql: concat!(
        "INSERT INTO {ks}.jobs (",
        job_columns!(),
        ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
    ),
    kind: Kind::Lwt,
    binds: &[
        "id",
        "tenant",
        "name",
        "status",
        "devices",
        "spec",
        "total",
        "start_at_ms",
        "created_at_ms",
        "started_at_ms",
        "finished_at_ms",
        "updated_at_ms",
    ],
};

/// A job's status and times, only over the status the caller read (false too when
/// there is no such job: a condition on a missing row does not hold).
pub(crate) const UPDATE_JOB: Statement = Statement {
    name: "update_job",
    cql: "UPDATE {ks}.jobs SET status = ?, started_at_ms = ?, finished_at_ms = ?, \
          updated_at_ms = ? WHERE id = ? IF status = ?",
    kind: Kind::Lwt,
    binds: &[
        "status",
        "started_at_ms",
        "finished_at_ms",
        "updated_at_ms",
        "id",
        "if_status",
    ],
};

/// Applied only if the job existed: `[applied]` is the answer of `delete_job`.
pub(crate) const DELETE_JOB: Statement = Statement {
    name: "delete_job",
    cql: "DELETE FROM {ks}.jobs WHERE id = ? IF EXISTS",
    kind: Kind::Lwt,
    binds: &["id"],
};

/// An entry of a listing scope (every job, the active ones, a tenant's, a tenant's
/// active ones).
pub(crate) const PUT_JOB_ENTRY: Statement = Statement {
    name: "put_job_entry",
    cql: "INSERT INTO {ks}.job_index (scope, id) VALUES (?, ?)",
    kind: Kind::Write,
    binds: &["scope", "id"],
};

pub(crate) const DELETE_JOB_ENTRY: Statement = Statement {
    name: "delete_job_entry",
    cql: "DELETE FROM {ks}.job_index WHERE scope = ? AND id = ?",
    kind: Kind::Write,
    binds: &["scope", "id"],
};

/// The next ids of a scope, in id order.
pub(crate) const LIST_JOB_ENTRIES: Statement = Statement {
    name: "list_job_entries",
    cql: "SELECT id FROM {ks}.job_index WHERE scope = ? AND id > ? LIMIT ?",
    kind: Kind::Read,
    binds: &["scope", "id", "limit"],
};

/// The recipients partition's tally (static columns) at LOCAL_SERIAL, before a
/// compare-and-set.
pub(crate) const SELECT_JOB_TALLY_SERIAL: Statement = Statement {
    name: "select_job_tally_serial",
    cql: concat!(
        "SELECT ",
        job_tally_columns!(),
        " FROM {ks}.job_recipients WHERE job_id = ? LIMIT 1"
    ),
    kind: Kind::SerialRead,
    binds: &["job_id"],
};

/// [`SELECT_JOB_TALLY_SERIAL`] at LOCAL_QUORUM: the counts by status.
pub(crate) const SELECT_JOB_TALLY: Statement = Statement {
    name: "select_job_tally",
    kind: Kind::Read,
    ..SELECT_JOB_TALLY_SERIAL
};

/// One recipient ('r' row).
pub(crate) const SELECT_JOB_RECIPIENT: Statement = Statement {
    name: "select_job_recipient",
    cql: concat!(
        "SELECT ",
        recipient_columns!(),
        " FROM {ks}.job_recipients WHERE job_id = ? AND row_kind = 'r' AND seq = ?"
    ),
    kind: Kind::Read,
    binds: &["job_id", "seq"],
};

/// The next recipients ('r' rows) in `seq` order.
pub(crate) const LIST_JOB_RECIPIENTS: Statement = Statement {
    name: "list_job_recipients",
    cql: concat!(
        "SELECT ",
        recipient_columns!(),
        " FROM {ks}.job_recipients WHERE job_id = ? AND row_kind = 'r' AND seq > ? LIMIT ?"
    ),
    kind: Kind::Read,
    binds: &["job_id", "seq", "limit"],
};

/// The next pending marks ('p' rows: the pending recipients, with when each is due)
/// from a `seq` on.
pub(crate) const LIST_JOB_MARKS: Statement = Statement {
    name: "list_job_marks",
    cql: "SELECT seq, next_at_ms FROM {ks}.job_recipients \
          WHERE job_id = ? AND row_kind = 'p' AND seq >= ? LIMIT ?",
    kind: Kind::Read,
    binds: &["job_id", "seq", "limit"],
};

/// The condition of every batch of the partition: the version read, and the tally
/// after the batch.
pub(crate) const SET_JOB_TALLY: Statement = Statement {
    name: "set_job_tally",
    cql: "UPDATE {ks}.job_recipients SET version = ?, pending_floor = ?, n_pending = ?, \
          n_queued = ?, n_sent = ?, n_delivered = ?, n_read = ?, n_failed = ?, \
          n_cancelled = ? WHERE job_id = ? IF version = ?",
    kind: Kind::Lwt,
    binds: &[
        "version",
        "pending_floor",
        "n_pending",
        "n_queued",
        "n_sent",
        "n_delivered",
        "n_read",
        "n_failed",
        "n_cancelled",
        "job_id",
        "if_version",
    ],
};

/// A recipient, whole (in a batch led by [`SET_JOB_TALLY`]).
pub(crate) const PUT_JOB_RECIPIENT: Statement = Statement {
    name: "put_job_recipient",
    cql: "INSERT INTO {ks}.job_recipients (job_id, row_kind, seq, recipient, text, status, \
          device_id, message_id, attempts, error, next_at_ms, updated_at_ms) \
          VALUES (?, 'r', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    kind: Kind::Lwt,
    binds: &[
        "job_id",
        "seq",
        "recipient",
        "text",
        "status",
        "device_id",
        "message_id",
        "attempts",
        "error",
        "next_at_ms",
        "updated_at_ms",
    ],
};

/// Where a recipient's send stands (not its number or text), in a batch led by
/// [`SET_JOB_TALLY`].
pub(crate) const SET_JOB_RECIPIENT: Statement = Statement {
    name: "set_job_recipient",
    cql: "UPDATE {ks}.job_recipients SET status = ?, device_id = ?, message_id = ?, \
          attempts = ?, error = ?, next_at_ms = ?, updated_at_ms = ? \
          WHERE job_id = ? AND row_kind = 'r' AND seq = ?",
    kind: Kind::Lwt,
    binds: &[
        "status",
        "device_id",
        "message_id",
        "attempts",
        "error",
        "next_at_ms",
        "updated_at_ms",
        "job_id",
        "seq",
    ],
};

/// A pending mark, in a batch led by [`SET_JOB_TALLY`].
pub(crate) const PUT_JOB_MARK: Statement = Statement {
    name: "put_job_mark",
    cql: "INSERT INTO {ks}.job_recipients (job_id, row_kind, seq, next_at_ms) \
          VALUES (?, 'p', ?, ?)",
    kind: Kind::Lwt,
    binds: &["job_id", "seq", "next_at_ms"],
};

/// A pending mark's removal, in a batch led by [`SET_JOB_TALLY`].
pub(crate) const DELETE_JOB_MARK: Statement = Statement {
    name: "delete_job_mark",
    cql: "DELETE FROM {ks}.job_recipients WHERE job_id = ? AND row_kind = 'p' AND seq = ?",
    kind: Kind::Lwt,
    binds: &["job_id", "seq"],
};

/// The whole partition: a job's recipients, marks and tally.
pub(crate) const DELETE_JOB_RECIPIENTS: Statement = Statement {
    name: "delete_job_recipients",
    cql: "DELETE FROM {ks}.job_recipients WHERE job_id = ?",
    kind: Kind::Write,
    binds: &["job_id"],
};
