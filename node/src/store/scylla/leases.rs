//! Shard leases: the rules of [`crate::store::lease`], each applied with a
//! compare-and-set on the slot as read at LOCAL_SERIAL.

use futures_util::future::join_all;

use super::statements::{self as st, Bound, Statement};
use super::{CAS_ATTEMPTS, ScyllaStore, contention, i64_of, rows};
use crate::store::{Acquired, Fence, Lease, LeaseSlot, StoreError};

impl ScyllaStore {
    /// The shard's lease slot at LOCAL_SERIAL, and whether its row exists.
    pub(super) async fn lease_slot(&self, shard: u32) -> Result<(LeaseSlot, bool), StoreError> {
        let s = &st::SELECT_LEASE_SERIAL;
        let row = self
            .first(s, s.bind(vec![("shard", st::big(i64::from(shard)))]))
            .await?;
        match row {
            Some(row) => Ok((rows::lease_slot(shard, &row)?, true)),
            None => Ok((LeaseSlot::vacant(shard), false)),
        }
    }

    /// Applies a lease rule to one shard: read at LOCAL_SERIAL, decide, write back
    /// with a compare-and-set on the slot as read, again if someone else wrote first.
    async fn apply_to_slot<T>(
        &self,
        shard: u32,
        rule: impl Fn(&mut LeaseSlot) -> (T, bool),
    ) -> Result<T, StoreError> {
        for _ in 0..CAS_ATTEMPTS {
            let (before, existed) = self.lease_slot(shard).await?;
            let mut after = before.clone();
            let (answer, changed) = rule(&mut after);
            if !changed {
                return Ok(answer);
            }
            let (statement, values) = lease_write(&before, existed, &after)?;
            if self.lwt(statement, values).await? {
                return Ok(answer);
            }
        }
        Err(contention(&format!("lease of shard {shard}")))
    }
}

/// How a lease slot is written back: created (it had no row) or compared-and-set
/// against the slot as read.
pub(super) fn lease_write(
    before: &LeaseSlot,
    existed: bool,
    after: &LeaseSlot,
) -> Result<(&'static Statement, Vec<Bound>), StoreError> {
    let shard = st::big(i64::from(after.shard));
    let holder = st::text(after.holder.as_deref().unwrap_or(""));
    let epoch = st::big(i64_of(after.epoch, "lease epoch")?);
    let expires = st::big(after.expires_at_ms);
    if !existed {
        let s = &st::INSERT_LEASE;
        return Ok((
            s,
            s.bind(vec![
                ("shard", shard),
                ("holder", holder),
                ("epoch", epoch),
                ("expires_at_ms", expires),
            ]),
        ));
    }
    let s = &st::UPDATE_LEASE;
    Ok((
        s,
        s.bind(vec![
            ("holder", holder),
            ("epoch", epoch),
            ("expires_at_ms", expires),
            ("shard", shard),
            (
                "if_holder",
                st::text(before.holder.as_deref().unwrap_or("")),
            ),
            ("if_epoch", st::big(i64_of(before.epoch, "lease epoch")?)),
            ("if_expires_at_ms", st::big(before.expires_at_ms)),
        ]),
    ))
}

// ---- the lease methods of `Store` ----

pub(super) async fn acquire(
    store: &ScyllaStore,
    holder: &str,
    shards: &[u32],
    now_ms: i64,
    ttl_ms: u64,
) -> Result<Vec<Acquired>, StoreError> {
    join_all(shards.iter().map(|&shard| {
        store.apply_to_slot(shard, |slot| {
            let outcome = slot.acquire(holder, now_ms, ttl_ms);
            let granted = outcome.granted().is_some();
            (outcome, granted)
        })
    }))
    .await
    .into_iter()
    .collect()
}

pub(super) async fn renew(
    store: &ScyllaStore,
    holder: &str,
    leases: &[Fence],
    now_ms: i64,
    ttl_ms: u64,
) -> Result<Vec<bool>, StoreError> {
    join_all(leases.iter().map(|fence| {
        store.apply_to_slot(fence.shard, |slot| {
            let renewed = slot.renew(holder, fence.epoch, now_ms, ttl_ms);
            (renewed, renewed)
        })
    }))
    .await
    .into_iter()
    .collect()
}

pub(super) async fn release(
    store: &ScyllaStore,
    holder: &str,
    leases: &[Fence],
) -> Result<Vec<bool>, StoreError> {
    join_all(leases.iter().map(|fence| {
        store.apply_to_slot(fence.shard, |slot| {
            let released = slot.release(holder, fence.epoch);
            (released, released)
        })
    }))
    .await
    .into_iter()
    .collect()
}

pub(super) async fn get(store: &ScyllaStore, shard: u32) -> Result<Option<Lease>, StoreError> {
    Ok(store.lease_slot(shard).await?.0.lease())
}

pub(super) async fn list(
    store: &ScyllaStore,
    holder: Option<&str>,
) -> Result<Vec<Lease>, StoreError> {
    let mut leases = Vec::new();
    store
        .each_row(&st::LIST_LEASES, Vec::new(), |row| {
            let shard = rows::shard(&row, 0)?;
            if let Some(lease) = rows::lease_slot(shard, &row[1..])?.lease()
                && holder.is_none_or(|h| h == lease.holder)
            {
                leases.push(lease);
            }
            Ok(true)
        })
        .await?;
    leases.sort_by_key(|lease| lease.shard);
    Ok(leases)
}
