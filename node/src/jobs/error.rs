//! [`JobError`]: why a job call failed, with the code an API client is shown.

use crate::store::StoreError;

/// Why a job call failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A value breaks a rule the request's shape can state (400).
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// A well-formed request that cannot be done as asked (422): a template variable a
    /// recipient lacks, no recipients, a window that never opens.
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    /// More recipients than one job takes (413).
    #[error("{message}")]
    TooMany { message: String },
    /// No such job, device or template for the tenant (404).
    #[error("{what} not found")]
    NotFound { code: &'static str, what: String },
    /// The job is not in a status that allows this (409).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl JobError {
    pub(crate) fn invalid(code: &'static str, message: impl Into<String>) -> JobError {
        JobError::Invalid {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn refused(code: &'static str, message: impl Into<String>) -> JobError {
        JobError::Refused {
            code,
            message: message.into(),
        }
    }

    /// The job is not the caller's to see.
    pub fn job_not_found_for(id: &str) -> JobError {
        JobError::job_not_found(id)
    }

    pub(crate) fn job_not_found(id: &str) -> JobError {
        JobError::NotFound {
            code: "job_not_found",
            what: format!("job {id}"),
        }
    }
}
