//! The rows of campaigns: a job (what to send, through which devices, its status) and
//! its recipients (one row each, numbered from 0, with where its send stands). The rules
//! of what a job may do are [`crate::jobs`]'; a store keeps what it is given and does
//! the few compare-and-set steps that make a hand-off happen once.
//!
//! A recipient moves `pending` → `queued` (claimed by a device, its message in that
//! device's outbox) → `sent` → `delivered` → `read`, or to `failed` (for good, or back
//! to `pending` for a retry), or to `cancelled` (the job was cancelled before its
//! message left).

use super::StoreError;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    /// Waiting for its start time.
    Scheduled,
    Running,
    /// No new hand-offs until resumed.
    Paused,
    /// Every recipient has an outcome.
    Completed,
    /// Stopped for good; what had not left never will.
    Cancelled,
}

/// Where one recipient's send is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecipientStatus {
    /// Waiting for a device (now, or from `next_at_ms`).
    Pending,
    /// Claimed by a device; its message is (or is being put) in that device's outbox.
    Queued,
    Sent,
    Delivered,
    Read,
    Failed,
    Cancelled,
}

/// Declares `ALL`, `as_str` and `parse` of a status enum from one list of names.
macro_rules! named {
    ($type:ident { $($variant:ident = $name:literal),* $(,)? }) => {
        impl $type {
            /// Every status, in a stable order.
            pub const ALL: &[$type] = &[$($type::$variant),*];

            /// The stored (and shown) name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($type::$variant => $name),*
                }
            }

            /// Parses a stored name.
            pub fn parse(s: &str) -> Option<$type> {
                Self::ALL.iter().copied().find(|status| status.as_str() == s)
            }

            /// Parses a stored name, or says the row is corrupt.
            pub(crate) fn stored(s: &str) -> Result<$type, StoreError> {
                Self::parse(s).ok_or_else(|| {
                    StoreError::Corrupt(format!(concat!(stringify!($type), " {:?}"), s))
                })
            }
        }
    };
}

named!(JobStatus {
    Scheduled = "scheduled",
    Running = "running",
    Paused = "paused",
    Completed = "completed",
    Cancelled = "cancelled",
});

named!(RecipientStatus {
    Pending = "pending",
    Queued = "queued",
    Sent = "sent",
    Delivered = "delivered",
    Read = "read",
    Failed = "failed",
    Cancelled = "cancelled",
});

impl JobStatus {
    /// Whether the job may still send (it is not completed or cancelled).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            JobStatus::Scheduled | JobStatus::Running | JobStatus::Paused
        )
    }
}

impl RecipientStatus {
    /// Whether the recipient's send still has to happen or be heard of (its job is not
    /// complete while one is).
    pub fn is_open(self) -> bool {
        matches!(self, RecipientStatus::Pending | RecipientStatus::Queued)
    }
}

/// One job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    /// `job_` and 32 hex digits.
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub status: JobStatus,
    /// The pool of devices that send it, in the order given.
    pub devices: Vec<String>,
    /// What every recipient gets unless its row has a text of its own: the stored
    /// (sealed) form of a [`crate::content::Content`], plus the window, as the job
    /// rules keep it (JSON, opaque to the store).
    pub spec: String,
    pub total: u64,
    /// Not started before this (Unix ms); `None`: at once.
    pub start_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub updated_at_ms: i64,
}

/// One recipient of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientRecord {
    pub job_id: String,
    /// Its place in the job, from 0: recipients are handed off in this order.
    pub seq: u64,
    /// A phone number (digits) or a group id.
    pub to: String,
    /// Its own text (sealed), filled from a template; empty: the job's.
    pub text: String,
    pub status: RecipientStatus,
    /// The device that claimed it (while and after it is `queued`).
    pub device_id: Option<String>,
    /// Its message in that device's log, once there.
    pub message_id: Option<String>,
    /// Sends tried so far (a claim is an attempt).
    pub attempts: u32,
    pub error: Option<String>,
    /// Not claimed before this (Unix ms): a retry's wait.
    pub next_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A page request for [`super::Store::list_jobs`]: jobs in id order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobQuery {
    /// Only this tenant's.
    pub tenant: Option<String>,
    /// Only jobs that may still send ([`JobStatus::is_active`]).
    pub active_only: bool,
    /// The previous page's last id.
    pub after: Option<String>,
    pub limit: u32,
}

/// A page request for [`super::Store::list_job_recipients`]: one job's recipients in
/// `seq` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientQuery {
    pub job_id: String,
    pub status: Option<RecipientStatus>,
    /// Only those claimed by this device.
    pub device_id: Option<String>,
    /// The previous page's last `seq`.
    pub after: Option<u64>,
    pub limit: u32,
}

impl RecipientQuery {
    /// The `queued` recipients `device` claimed in `job_id`, a page after `after`.
    pub fn claimed_by(
        job_id: &str,
        device: &str,
        after: Option<u64>,
        limit: u32,
    ) -> RecipientQuery {
        RecipientQuery {
            job_id: job_id.to_owned(),
            status: Some(RecipientStatus::Queued),
            device_id: Some(device.to_owned()),
            after,
            limit,
        }
    }

    /// Whether `r` passes the filters (not the page bounds).
    pub fn matches(&self, r: &RecipientRecord) -> bool {
        self.status.is_none_or(|s| r.status == s)
            && self
                .device_id
                .as_deref()
                .is_none_or(|d| r.device_id.as_deref() == Some(d))
    }
}
