//! The webhook delivery log on ScyllaDB: not written yet. Every call answers
//! `Unavailable` with that said, so a cluster on ScyllaDB records no webhook events
//! (it logs why) instead of pretending to deliver them.

use super::ScyllaStore;
use crate::store::{
    Attempt, DeliveryBacklog, DeliveryRecord, DeliveryStatus, DeviceId, NewDelivery, ReplayWhich,
    StoreError,
};

fn missing() -> StoreError {
    StoreError::Unavailable(
        "the webhook delivery log is not implemented for ScyllaDB yet (use the SQLite store \
         for webhooks)"
            .to_owned(),
    )
}

pub(super) async fn append(_: &ScyllaStore, _: &NewDelivery) -> Result<(), StoreError> {
    Err(missing())
}

pub(super) async fn due(
    _: &ScyllaStore,
    _: &str,
    _: u32,
) -> Result<Vec<DeliveryRecord>, StoreError> {
    Err(missing())
}

pub(super) async fn record_attempt(
    _: &ScyllaStore,
    _: &str,
    _: &str,
    _: &Attempt,
) -> Result<Option<DeliveryRecord>, StoreError> {
    Err(missing())
}

pub(super) async fn list(
    _: &ScyllaStore,
    _: &str,
    _: Option<DeliveryStatus>,
    _: Option<i64>,
    _: u32,
) -> Result<Vec<DeliveryRecord>, StoreError> {
    Err(missing())
}

pub(super) async fn replay(
    _: &ScyllaStore,
    _: &str,
    _: &ReplayWhich,
    _: i64,
) -> Result<u64, StoreError> {
    Err(missing())
}

pub(super) async fn devices_with_due(
    _: &ScyllaStore,
    _: &[u32],
    _: u32,
) -> Result<Vec<DeviceId>, StoreError> {
    Err(missing())
}

pub(super) async fn backlog(_: &ScyllaStore) -> Result<DeliveryBacklog, StoreError> {
    Err(missing())
}

pub(super) async fn prune(_: &ScyllaStore, _: i64, _: u32) -> Result<u64, StoreError> {
    Err(missing())
}
