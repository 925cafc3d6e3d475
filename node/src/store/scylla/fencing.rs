//! The two fence checks of a fenced write (see "Device partitions and fencing" in the
//! docs of [`super`]) and the compare-and-set every write of a device partition makes.

use super::rows::DeviceState;
use super::statements::{self as st, Bound, Statement};
use super::{CAS_ATTEMPTS, ScyllaStore, contention, i64_of};
use crate::store::{Fence, LeaseSlot, StoreError};

impl ScyllaStore {
    /// Check 1 of a fenced write (docs of [`super`]): the lease holds the fence's epoch.
    pub(super) async fn check_lease(
        &self,
        fence: Option<&Fence>,
    ) -> Result<Option<u64>, StoreError> {
        let Some(fence) = fence else {
            return Ok(None);
        };
        let (slot, _) = self.lease_slot(fence.shard).await?;
        lease_admits(&slot, fence)?;
        Ok(Some(fence.epoch))
    }

    /// Runs a compare-and-set on a device partition: `plan` gets the state read at
    /// LOCAL_SERIAL and the fence epoch the write must leave, and returns the write (or
    /// an answer without writing). Fence check 2 happens here, against the state read.
    pub(super) async fn device_cas<T>(
        &self,
        device_id: &str,
        fence: Option<&Fence>,
        mut plan: impl FnMut(Option<&DeviceState>, u64) -> Result<DevicePlan<T>, StoreError>,
    ) -> Result<T, StoreError> {
        self.check_lease(fence).await?;
        for _ in 0..CAS_ATTEMPTS {
            let state = self.device_state(device_id, true).await?;
            let fence_epoch = match (&state, fence) {
                (Some(state), Some(fence)) => device_admits(fence, state.fence_epoch)?,
                (Some(state), None) => state.fence_epoch,
                (None, _) => 0,
            };
            let write = match plan(state.as_ref(), fence_epoch)? {
                DevicePlan::Done(answer) => return Ok(answer),
                DevicePlan::Write(parts, answer) => (parts, answer),
            };
            let (parts, answer) = write;
            let applied = if parts.len() == 1 {
                let (statement, values) = parts.into_iter().next().expect("one part");
                self.lwt(statement, values).await?
            } else {
                self.lwt_batch(parts).await?
            };
            if applied {
                return Ok(answer);
            }
        }
        Err(contention(device_id))
    }
}

/// What a device-partition compare-and-set does after reading the partition.
pub(super) enum DevicePlan<T> {
    /// Answer without writing.
    Done(T),
    /// Apply these statements (one LWT, or a conditional batch) and answer this.
    Write(Vec<(&'static Statement, Vec<Bound>)>, T),
}

/// Fence check 1: the lease slot is held under the fence's epoch.
pub(super) fn lease_admits(slot: &LeaseSlot, fence: &Fence) -> Result<(), StoreError> {
    slot.admits(fence).map_err(|current| StoreError::Fenced {
        shard: fence.shard,
        epoch: fence.epoch,
        current,
    })
}

/// Fence check 2: no write of a higher epoch reached the device. Returns the device's
/// fence epoch after this write.
pub(super) fn device_admits(fence: &Fence, device_fence_epoch: u64) -> Result<u64, StoreError> {
    if fence.epoch < device_fence_epoch {
        Err(StoreError::Fenced {
            shard: fence.shard,
            epoch: fence.epoch,
            current: Some(device_fence_epoch),
        })
    } else {
        Ok(fence.epoch)
    }
}

/// The partition's write counter and fence, as read before a conditional batch.
#[derive(Debug, Clone, Copy)]
pub(super) struct DeviceVersion {
    pub(super) version: i64,
    pub(super) fence_epoch: u64,
}

/// The condition of a batch on a device partition: bumps `version` if unchanged.
pub(super) fn bump(
    device_id: &str,
    state: &DeviceState,
    fence_epoch: u64,
) -> Result<(&'static Statement, Vec<Bound>), StoreError> {
    bump_version(
        device_id,
        DeviceVersion {
            version: state.version,
            fence_epoch: state.fence_epoch,
        },
        fence_epoch,
    )
}

pub(super) fn bump_version(
    device_id: &str,
    seen: DeviceVersion,
    fence_epoch: u64,
) -> Result<(&'static Statement, Vec<Bound>), StoreError> {
    debug_assert!(fence_epoch >= seen.fence_epoch);
    let s = &st::BUMP_DEVICE;
    Ok((
        s,
        s.bind(vec![
            ("version", st::big(seen.version + 1)),
            ("fence_epoch", st::big(i64_of(fence_epoch, "fence epoch")?)),
            ("device_id", st::text(device_id)),
            ("if_version", st::big(seen.version)),
        ]),
    ))
}
