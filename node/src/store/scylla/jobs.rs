//! Campaigns on ScyllaDB: NOT IMPLEMENTED YET. Every call fails with
//! `StoreError::Unavailable`; the implementation is being written (see the conformance
//! checks `check_jobs`, `check_job_recipients`, `check_concurrent_claims`).

use super::ScyllaStore;
use crate::store::{
    JobQuery, JobRecord, JobStatus, RecipientQuery, RecipientRecord, RecipientStatus, StoreError,
};

fn missing<T>() -> Result<T, StoreError> {
    Err(StoreError::Unavailable(
        "jobs are not implemented on ScyllaDB yet".to_owned(),
    ))
}

pub(super) async fn put_recipients(
    _: &ScyllaStore,
    _: &[RecipientRecord],
) -> Result<(), StoreError> {
    missing()
}
pub(super) async fn create(_: &ScyllaStore, _: &JobRecord) -> Result<(), StoreError> {
    missing()
}
pub(super) async fn get(_: &ScyllaStore, _: &str) -> Result<Option<JobRecord>, StoreError> {
    missing()
}
pub(super) async fn list(_: &ScyllaStore, _: &JobQuery) -> Result<Vec<JobRecord>, StoreError> {
    missing()
}
pub(super) async fn update(
    _: &ScyllaStore,
    _: &JobRecord,
    _: JobStatus,
) -> Result<bool, StoreError> {
    missing()
}
pub(super) async fn delete(_: &ScyllaStore, _: &str) -> Result<bool, StoreError> {
    missing()
}
pub(super) async fn count(
    _: &ScyllaStore,
    _: &str,
) -> Result<Vec<(RecipientStatus, u64)>, StoreError> {
    missing()
}
pub(super) async fn claim(
    _: &ScyllaStore,
    _: &str,
    _: &str,
    _: i64,
) -> Result<Option<RecipientRecord>, StoreError> {
    missing()
}
pub(super) async fn update_recipient(
    _: &ScyllaStore,
    _: &RecipientRecord,
    _: RecipientStatus,
) -> Result<bool, StoreError> {
    missing()
}
pub(super) async fn list_recipients(
    _: &ScyllaStore,
    _: &RecipientQuery,
) -> Result<Vec<RecipientRecord>, StoreError> {
    missing()
}
pub(super) async fn move_recipients(
    _: &ScyllaStore,
    _: &str,
    _: RecipientStatus,
    _: RecipientStatus,
    _: i64,
) -> Result<u64, StoreError> {
    missing()
}
