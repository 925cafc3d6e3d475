//! The access directory and the audit log in ScyllaDB: NOT WRITTEN YET. Every call
//! answers `Unavailable` so that a cluster on ScyllaDB refuses access management
//! clearly instead of pretending; it is being written next.

use super::ScyllaStore;
use crate::store::{AccessKind, AccessQuery, AccessRecord, AuditEntry, AuditQuery, StoreError};

fn missing() -> StoreError {
    StoreError::Unavailable("the ScyllaDB store does not keep the access directory yet".into())
}

pub(super) async fn create(_: &ScyllaStore, _: &AccessRecord) -> Result<(), StoreError> {
    Err(missing())
}
pub(super) async fn update(_: &ScyllaStore, _: &AccessRecord) -> Result<(), StoreError> {
    Err(missing())
}
pub(super) async fn get(
    _: &ScyllaStore,
    _: AccessKind,
    _: &str,
) -> Result<Option<AccessRecord>, StoreError> {
    Err(missing())
}
pub(super) async fn list(
    _: &ScyllaStore,
    _: &AccessQuery,
) -> Result<Vec<AccessRecord>, StoreError> {
    Err(missing())
}
pub(super) async fn delete(_: &ScyllaStore, _: AccessKind, _: &str) -> Result<bool, StoreError> {
    Err(missing())
}
pub(super) async fn append_audit(_: &ScyllaStore, _: &[AuditEntry]) -> Result<(), StoreError> {
    Err(missing())
}
pub(super) async fn list_audit(
    _: &ScyllaStore,
    _: &AuditQuery,
) -> Result<Vec<AuditEntry>, StoreError> {
    Err(missing())
}
