//! Driver failures as [`StoreError`]s: what a retry may cure is `Unavailable` (the
//! gateway answers 503 with `retryable: true`), what it cannot is `Corrupt`.

use scylla::errors::{
    DbError, ExecutionError, NewSessionError, NextRowError, PagerExecutionError, PrepareError,
    RequestAttemptError,
};

use super::super::StoreError;

/// A server's answer that says the request itself does not fit the schema or the
/// cluster's configuration: no retry helps.
fn db_error_is_permanent(error: &DbError) -> bool {
    matches!(
        error,
        DbError::SyntaxError
            | DbError::Invalid
            | DbError::AlreadyExists { .. }
            | DbError::FunctionFailure { .. }
            | DbError::ConfigError
            | DbError::Unauthorized
            | DbError::AuthenticationError
            | DbError::ProtocolError
    )
}

/// One request's failure. Timeouts (client or server), lost connections, overloaded or
/// unavailable replicas: `Unavailable`. A conditional write that fails this way may or
/// may not have been applied; callers retry, and every conditional write here answers a
/// retry truthfully (`Conflict`, `Existing`, `false`).
pub(crate) fn execution(statement: &str, error: ExecutionError) -> StoreError {
    let permanent = match &error {
        ExecutionError::BadQuery(_) => true,
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _)) => {
            db_error_is_permanent(db)
        }
        _ => false,
    };
    if permanent {
        StoreError::Corrupt(format!("{statement}: {error}"))
    } else {
        StoreError::Unavailable(format!("{statement}: {error}"))
    }
}

pub(crate) fn prepare(statement: &str, error: PrepareError) -> StoreError {
    let permanent = match &error {
        PrepareError::AllAttemptsFailed {
            first_attempt: RequestAttemptError::DbError(db, _),
        } => db_error_is_permanent(db),
        _ => false,
    };
    if permanent {
        StoreError::Corrupt(format!("cannot prepare {statement}: {error}"))
    } else {
        StoreError::Unavailable(format!("cannot prepare {statement}: {error}"))
    }
}

pub(crate) fn pager(statement: &str, error: PagerExecutionError) -> StoreError {
    match error {
        PagerExecutionError::NextPageError(e) => {
            StoreError::Unavailable(format!("{statement}: {e}"))
        }
        other => StoreError::Corrupt(format!("{statement}: {other}")),
    }
}

pub(crate) fn next_row(statement: &str, error: NextRowError) -> StoreError {
    match error {
        NextRowError::NextPageError(e) => StoreError::Unavailable(format!("{statement}: {e}")),
        other => StoreError::Corrupt(format!("{statement}: {other}")),
    }
}

/// The session could not start: nothing answered, or not in time.
pub(crate) fn session(uris: &[String], error: NewSessionError) -> StoreError {
    StoreError::Unavailable(format!(
        "cannot connect to scylla at {}: {error}",
        uris.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use scylla::errors::{BadQuery, WriteType};

    use super::*;

    fn attempt(db: DbError) -> ExecutionError {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, "from test".into()))
    }

    #[test]
    fn timeouts_and_lost_replicas_are_unavailable() {
        let cases = [
            ExecutionError::RequestTimeout(Duration::from_millis(5)),
            ExecutionError::EmptyPlan,
            ExecutionError::LastAttemptError(RequestAttemptError::UnableToAllocStreamId),
            attempt(DbError::WriteTimeout {
                consistency: scylla::statement::Consistency::LocalQuorum,
                received: 1,
                required: 2,
                write_type: WriteType::Cas,
            }),
            attempt(DbError::Overloaded),
            attempt(DbError::IsBootstrapping),
            attempt(DbError::ServerError),
        ];
        for error in cases {
            let shown = error.to_string();
            match execution("put_link_state", error) {
                StoreError::Unavailable(message) => {
                    assert!(message.starts_with("put_link_state: "), "{message}");
                }
                other => panic!("{shown}: expected Unavailable, got {other:?}"),
            }
        }
    }

    #[test]
    fn requests_that_do_not_fit_the_schema_are_corrupt() {
        for error in [
            attempt(DbError::Invalid),
            attempt(DbError::SyntaxError),
            attempt(DbError::Unauthorized),
            ExecutionError::BadQuery(BadQuery::TooManyQueriesInBatchStatement(70_000)),
        ] {
            let shown = error.to_string();
            assert!(
                matches!(execution("select_device", error), StoreError::Corrupt(_)),
                "{shown}"
            );
        }
    }
}
