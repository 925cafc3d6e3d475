//! Shard leases and fences: each call reads the shard's slot, applies the rule of
//! [`crate::store::lease`] and writes it back inside one `BEGIN IMMEDIATE` transaction
//! (its batch's, see `worker`), so two processes racing for a shard are serialized and
//! exactly one wins. A fenced
//! write checks its fence ([`check_fence`]) in the same transaction as the write.

use rusqlite::{Connection, Row, params};

use super::sql::{column, db_error, execute, query_all, query_first};
use crate::store::{Acquired, Fence, Lease, LeaseSlot, StoreError};

const SELECT_LEASE_SLOT: &str =
    "SELECT shard, holder, epoch, expires_at_ms FROM leases WHERE shard = ?1";
const UPSERT_LEASE_SLOT: &str = "INSERT INTO leases (shard, holder, epoch, expires_at_ms)
     VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (shard) DO UPDATE SET
        holder = excluded.holder, epoch = excluded.epoch, expires_at_ms = excluded.expires_at_ms";
const SELECT_LEASE: &str = "SELECT shard, holder, epoch, expires_at_ms FROM leases
     WHERE shard = ?1 AND holder IS NOT NULL";
const LIST_LEASES: &str = "SELECT shard, holder, epoch, expires_at_ms FROM leases
     WHERE holder IS NOT NULL ORDER BY shard";
const LIST_LEASES_OF: &str = "SELECT shard, holder, epoch, expires_at_ms FROM leases
     WHERE holder = ?1 ORDER BY shard";

// ---- rows ----

/// Epochs are `u64` in Rust and never above `i64::MAX` in SQLite's INTEGER.
fn epoch_column(row: &Row<'_>, index: usize) -> Result<u64, StoreError> {
    let epoch: i64 = column(row, index)?;
    u64::try_from(epoch).map_err(|_| StoreError::Corrupt(format!("negative lease epoch {epoch}")))
}

fn slot_from_row(row: &Row<'_>) -> Result<LeaseSlot, StoreError> {
    Ok(LeaseSlot {
        shard: column(row, 0)?,
        holder: column(row, 1)?,
        epoch: epoch_column(row, 2)?,
        expires_at_ms: column(row, 3)?,
    })
}

/// A row of a query that keeps only held leases (`holder` not NULL).
fn lease_from_row(row: &Row<'_>) -> Result<Lease, StoreError> {
    slot_from_row(row)?
        .lease()
        .ok_or_else(|| StoreError::Corrupt("a held lease without a holder".to_owned()))
}

// ---- slots ----

/// The shard's slot as stored, or a vacant one.
fn load_slot(conn: &Connection, shard: u32) -> Result<LeaseSlot, StoreError> {
    let slot = query_first(conn, SELECT_LEASE_SLOT, [shard], slot_from_row)?;
    Ok(slot.unwrap_or_else(|| LeaseSlot::vacant(shard)))
}

fn save_slot(conn: &Connection, slot: &LeaseSlot) -> Result<(), StoreError> {
    let epoch = i64::try_from(slot.epoch)
        .map_err(|_| StoreError::Corrupt(format!("lease epoch {} out of range", slot.epoch)))?;
    execute(
        conn,
        UPSERT_LEASE_SLOT,
        params![slot.shard, slot.holder, epoch, slot.expires_at_ms],
    )
    .map_err(db_error)?;
    Ok(())
}

/// Applies `rule` to each shard's slot and saves the slots it changed, in the call's
/// transaction (which took the write lock first, so no other connection can grant the
/// shard between the read and the write).
fn apply_to_slots<I, T>(
    conn: &Connection,
    items: &[I],
    shard_of: fn(&I) -> u32,
    rule: impl Fn(&mut LeaseSlot, &I) -> (T, bool),
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let mut slot = load_slot(conn, shard_of(item))?;
        let (result, changed) = rule(&mut slot, item);
        if changed {
            save_slot(conn, &slot)?;
        }
        out.push(result);
    }
    Ok(out)
}

/// Refuses a write whose fence is not current. Call it inside the write's transaction.
pub(super) fn check_fence(conn: &Connection, fence: Option<&Fence>) -> Result<(), StoreError> {
    let Some(fence) = fence else {
        return Ok(());
    };
    load_slot(conn, fence.shard)?
        .admits(fence)
        .map_err(|current| StoreError::Fenced {
            shard: fence.shard,
            epoch: fence.epoch,
            current,
        })
}

// ---- the lease methods of `Store` ----

pub(super) fn acquire(
    conn: &Connection,
    holder: &str,
    shards: &[u32],
    now_ms: i64,
    ttl_ms: u64,
) -> Result<Vec<Acquired>, StoreError> {
    apply_to_slots(
        conn,
        shards,
        |shard| *shard,
        |slot, _| {
            let outcome = slot.acquire(holder, now_ms, ttl_ms);
            let granted = outcome.granted().is_some();
            (outcome, granted)
        },
    )
}

pub(super) fn renew(
    conn: &Connection,
    holder: &str,
    leases: &[Fence],
    now_ms: i64,
    ttl_ms: u64,
) -> Result<Vec<bool>, StoreError> {
    apply_to_slots(
        conn,
        leases,
        |fence| fence.shard,
        |slot, fence| {
            let renewed = slot.renew(holder, fence.epoch, now_ms, ttl_ms);
            (renewed, renewed)
        },
    )
}

pub(super) fn release(
    conn: &Connection,
    holder: &str,
    leases: &[Fence],
) -> Result<Vec<bool>, StoreError> {
    apply_to_slots(
        conn,
        leases,
        |fence| fence.shard,
        |slot, fence| {
            let released = slot.release(holder, fence.epoch);
            (released, released)
        },
    )
}

pub(super) fn get(conn: &Connection, shard: u32) -> Result<Option<Lease>, StoreError> {
    query_first(conn, SELECT_LEASE, [shard], lease_from_row)
}

pub(super) fn list(conn: &Connection, holder: Option<&str>) -> Result<Vec<Lease>, StoreError> {
    match holder {
        Some(holder) => query_all(conn, LIST_LEASES_OF, [holder], lease_from_row),
        None => query_all(conn, LIST_LEASES, [], lease_from_row),
    }
}
