//! Device partitions, the `device_ids` index and the `devices_by_shard` entries (see
//! "Devices by shard" in the docs of [`super`]): the device methods of
//! [`Store`](crate::store::Store).

use std::collections::{BTreeSet, HashMap};

use futures_util::future::join_all;
use futures_util::{StreamExt, stream};
use wafleet_cluster_config::shard_of;

use super::fencing::DevicePlan;
use super::rows::{self, DeviceState};
use super::statements::{self as st, Bound};
use super::{LIST_CHUNK, SHARD_READS, ScyllaStore, i64_of};
use crate::store::{
    DeviceId, DevicePage, DevicePatch, DeviceQuery, DeviceRecord, DeviceStatus, Fence, StoreError,
    device_not_found,
};

impl ScyllaStore {
    pub(super) async fn device_state(
        &self,
        id: &str,
        serial: bool,
    ) -> Result<Option<DeviceState>, StoreError> {
        let statement = if serial {
            &st::SELECT_DEVICE_SERIAL
        } else {
            &st::SELECT_DEVICE
        };
        match self
            .first(statement, statement.bind(vec![("device_id", st::text(id))]))
            .await?
        {
            Some(row) => rows::device_state(&row),
            None => Ok(None),
        }
    }

    /// The next [`LIST_CHUNK`] ids of `device_ids` after `after`, in id order.
    pub(super) async fn device_ids_after(&self, after: &str) -> Result<Vec<String>, StoreError> {
        let s = &st::LIST_DEVICE_IDS;
        self.rows(
            s,
            s.bind(vec![
                ("device_id", st::text(after)),
                ("limit", st::int(LIST_CHUNK)),
            ]),
        )
        .await?
        .iter()
        .map(|row| rows::text(row, 0, "indexed device id"))
        .collect()
    }

    /// The device's partition key in `devices_by_shard`.
    fn shard_key(&self, id: &str) -> Bound {
        st::big(i64::from(shard_of(id, self.shards)))
    }

    /// Writes the device's entry as is, whatever the row says (see
    /// [`ScyllaStore::set_shard_entry`]).
    async fn put_shard_entry(&self, id: &str, desired_running: bool) -> Result<(), StoreError> {
        let s = &st::PUT_SHARD_ENTRY;
        let values = s.bind(vec![
            ("shard", self.shard_key(id)),
            ("device_id", st::text(id)),
            ("desired_running", st::boolean(desired_running)),
        ]);
        self.execute(s, values).await.map(drop)
    }

    /// Makes the device's entry say `desired_running`, which a write of the row has just
    /// set. `false` is checked against the row afterwards (LOCAL_SERIAL): a concurrent
    /// write that made it true may have written its entry before this one, and an entry
    /// must never say false while its row says true ([`super`] docs, "Devices by shard").
    pub(super) async fn set_shard_entry(
        &self,
        id: &str,
        desired_running: bool,
    ) -> Result<(), StoreError> {
        self.put_shard_entry(id, desired_running).await?;
        if !desired_running
            && let Some(state) = self.device_state(id, true).await?
            && state.device.desired_running
        {
            self.put_shard_entry(id, true).await?;
        }
        Ok(())
    }

    async fn delete_shard_entry(&self, id: &str) -> Result<(), StoreError> {
        let s = &st::DELETE_SHARD_ENTRY;
        let values = s.bind(vec![
            ("shard", self.shard_key(id)),
            ("device_id", st::text(id)),
        ]);
        self.execute(s, values).await.map(drop)
    }

    /// The devices whose entry in `shard` says they are wanted running (unchecked).
    async fn shard_candidates(&self, shard: u32) -> Result<Vec<DeviceId>, StoreError> {
        let entries = self.shard_entries(shard).await?;
        Ok(entries
            .into_iter()
            .filter_map(|(id, wanted)| wanted.then_some(id))
            .collect())
    }

    /// Devices of these shards for which `probe` says yes, each once, at most `limit`:
    /// the shards' index partitions, then one `probe` (a single-partition read) per
    /// device, [`SHARD_READS`] at a time. The cost follows the shards asked for (a
    /// node's share), never the size of the table probed.
    pub(super) async fn devices_in_shards_where<F, Fut>(
        &self,
        shards: &[u32],
        limit: u32,
        probe: F,
    ) -> Result<Vec<DeviceId>, StoreError>
    where
        F: Fn(DeviceId) -> Fut,
        Fut: Future<Output = Result<Option<DeviceId>, StoreError>>,
    {
        let shards: BTreeSet<u32> = shards
            .iter()
            .copied()
            .filter(|shard| *shard < self.shards)
            .collect();
        let mut devices = Vec::new();
        let mut entries = stream::iter(shards)
            .map(|shard| self.shard_entries(shard))
            .buffer_unordered(SHARD_READS);
        while let Some(shard) = entries.next().await {
            devices.extend(shard?.into_iter().map(|(id, _)| id));
        }
        let limit = limit as usize;
        let mut out = Vec::new();
        let mut probes = stream::iter(devices)
            .map(probe)
            .buffer_unordered(SHARD_READS);
        while out.len() < limit
            && let Some(probed) = probes.next().await
        {
            out.extend(probed?);
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Every device with an entry in `shard`, and whether the entry says it is wanted
    /// running (unchecked: the device rows decide).
    pub(super) async fn shard_entries(
        &self,
        shard: u32,
    ) -> Result<Vec<(DeviceId, bool)>, StoreError> {
        let s = &st::SHARD_ENTRIES;
        let mut entries = Vec::new();
        self.each_row(
            s,
            s.bind(vec![("shard", st::big(i64::from(shard)))]),
            |row| {
                let wanted = rows::opt_boolean(&row, 1, "shard entry desired_running")?;
                entries.push((
                    rows::text(&row, 0, "shard entry device id")?,
                    wanted == Some(true),
                ));
                Ok(true)
            },
        )
        .await?;
        Ok(entries)
    }

    async fn index_device(&self, id: &str, present: bool) -> Result<(), StoreError> {
        let statement = if present {
            &st::INDEX_DEVICE
        } else {
            &st::UNINDEX_DEVICE
        };
        self.execute(statement, statement.bind(vec![("device_id", st::text(id))]))
            .await
            .map(drop)
    }
}

// ---- the device methods of `Store` ----

pub(super) async fn create(store: &ScyllaStore, d: &DeviceRecord) -> Result<(), StoreError> {
    // Indexed before and after: whatever interleaves with a delete of the same id,
    // a device that exists is listed (see `delete_device`).
    store.index_device(&d.id, true).await?;
    if d.desired_running {
        store.put_shard_entry(&d.id, true).await?;
    }
    let s = &st::INSERT_DEVICE;
    let values = s.bind(vec![
        ("device_id", st::text(&d.id)),
        ("name", st::text(&d.name)),
        ("tenant", st::text(&d.tenant)),
        ("status", st::text(d.status.as_str())),
        ("status_reason", st::opt_text(d.status_reason.as_deref())),
        ("trust_level", st::text(d.trust_level.as_str())),
        ("phone", st::opt_text(d.phone.as_deref())),
        ("webhook", st::opt_text(d.webhook.as_deref())),
        ("desired_running", st::boolean(d.desired_running)),
        ("created_at_ms", st::big(d.created_at_ms)),
        ("updated_at_ms", st::big(d.updated_at_ms)),
        ("last_connected_at_ms", st::opt_big(d.last_connected_at_ms)),
    ]);
    if !store.lwt(s, values).await? {
        return Err(StoreError::Conflict {
            what: format!("device {}", d.id),
        });
    }
    store.index_device(&d.id, true).await?;
    store.set_shard_entry(&d.id, d.desired_running).await
}

pub(super) async fn get(store: &ScyllaStore, id: &str) -> Result<Option<DeviceRecord>, StoreError> {
    Ok(store.device_state(id, false).await?.map(|s| s.device))
}

pub(super) async fn patch(
    store: &ScyllaStore,
    id: &str,
    patch: &DevicePatch,
    now_ms: i64,
    fence: Option<&Fence>,
) -> Result<DeviceRecord, StoreError> {
    let p = patch.clone();
    if p.desired_running == Some(true) {
        // Before the row as well (the `scylla` module docs, "Devices by shard").
        store.put_shard_entry(id, true).await?;
    }
    let patched = store
        .device_cas(id, fence, |state, fence_epoch| {
            let Some(state) = state else {
                return Err(device_not_found(id));
            };
            let mut after = state.device.clone();
            apply_patch(&mut after, &p, now_ms);
            let s = &st::PATCH_DEVICE;
            let values = s.bind(vec![
                ("name", st::set_or_unset(p.name.as_deref(), st::text)),
                (
                    "status",
                    st::set_or_unset(p.status, |v| st::text(v.as_str())),
                ),
                (
                    "status_reason",
                    st::set_or_unset(p.status_reason.as_ref(), |v| st::opt_text(v.as_deref())),
                ),
                (
                    "trust_level",
                    st::set_or_unset(p.trust_level, |v| st::text(v.as_str())),
                ),
                (
                    "phone",
                    st::set_or_unset(p.phone.as_ref(), |v| st::opt_text(v.as_deref())),
                ),
                (
                    "webhook",
                    st::set_or_unset(p.webhook.as_ref(), |v| st::opt_text(v.as_deref())),
                ),
                (
                    "desired_running",
                    st::set_or_unset(p.desired_running, st::boolean),
                ),
                (
                    "last_connected_at_ms",
                    st::set_or_unset(p.last_connected_at_ms, st::opt_big),
                ),
                ("updated_at_ms", st::big(now_ms)),
                ("version", st::big(state.version + 1)),
                ("fence_epoch", st::big(i64_of(fence_epoch, "fence epoch")?)),
                ("device_id", st::text(id)),
                ("if_version", st::big(state.version)),
            ]);
            Ok(DevicePlan::Write(vec![(s, values)], after))
        })
        .await?;
    if let Some(desired_running) = p.desired_running {
        store.set_shard_entry(id, desired_running).await?;
    }
    Ok(patched)
}

pub(super) async fn list(
    store: &ScyllaStore,
    query: &DeviceQuery,
) -> Result<DevicePage, StoreError> {
    if query.limit == 0 {
        return Ok(DevicePage {
            devices: Vec::new(),
            next_after: None,
        });
    }
    let limit = query.limit as usize;
    let mut after = query.after.clone().unwrap_or_default();
    let mut devices = Vec::new();
    // Each round reads the next ids of the index; it ends when the page is full or
    // the index is exhausted, and `after` only grows, so it terminates.
    while devices.len() <= limit {
        let ids = store.device_ids_after(&after).await?;
        let Some(last) = ids.last() else { break };
        after = last.clone();
        let fetched = join_all(ids.iter().map(|id| store.device_state(id, false))).await;
        for state in fetched {
            // An indexed id without a device: a create that did not finish or a
            // delete in progress; skipped.
            let Some(state) = state? else { continue };
            let d = state.device;
            let wanted = query.tenant.as_ref().is_none_or(|t| *t == d.tenant)
                && query.status.is_none_or(|s| s == d.status)
                && query.desired_running.is_none_or(|r| r == d.desired_running);
            if wanted {
                devices.push(d);
            }
        }
        if ids.len() < LIST_CHUNK as usize {
            break;
        }
    }
    Ok(DevicePage::cut(devices, limit))
}

pub(super) async fn wanted_in_shards(
    store: &ScyllaStore,
    shards: &[u32],
) -> Result<Vec<DeviceId>, StoreError> {
    let shards: BTreeSet<u32> = shards
        .iter()
        .copied()
        .filter(|shard| *shard < store.shards)
        .collect();
    let mut candidates = Vec::new();
    let mut entries = stream::iter(shards)
        .map(|shard| store.shard_candidates(shard))
        .buffer_unordered(SHARD_READS);
    while let Some(ids) = entries.next().await {
        candidates.extend(ids?);
    }
    // An entry may say true for a row that says false or is gone: the rows decide.
    let mut wanted = Vec::with_capacity(candidates.len());
    let mut checked = stream::iter(candidates)
        .map(|id| async move {
            let state = store.device_state(&id, false).await?;
            let running = state.is_some_and(|s| s.device.desired_running);
            Ok::<_, StoreError>(running.then_some(id))
        })
        .buffer_unordered(SHARD_READS);
    while let Some(id) = checked.next().await {
        wanted.extend(id?);
    }
    wanted.sort_unstable();
    wanted.dedup();
    Ok(wanted)
}

pub(super) async fn count_by_status(
    store: &ScyllaStore,
) -> Result<Vec<(DeviceStatus, u64)>, StoreError> {
    let mut counts: HashMap<DeviceStatus, u64> = HashMap::new();
    let mut bad = None;
    store
        .each_row(&st::DEVICE_STATUSES, Vec::new(), |row| {
            // A partition without a device row (status null) is not a device.
            if let Some(status) = rows::opt_text(&row, 1, "device status")? {
                match DeviceStatus::parse(&status) {
                    Some(status) => *counts.entry(status).or_default() += 1,
                    None => bad = Some(status),
                }
            }
            Ok(bad.is_none())
        })
        .await?;
    if let Some(status) = bad {
        return Err(StoreError::Corrupt(format!(
            "unknown device status {status:?}"
        )));
    }
    let mut counts: Vec<(DeviceStatus, u64)> = counts.into_iter().collect();
    counts.sort_by_key(|(status, _)| *status);
    Ok(counts)
}

pub(super) async fn delete(
    store: &ScyllaStore,
    id: &str,
    fence: Option<&Fence>,
) -> Result<bool, StoreError> {
    let deleted = store
        .device_cas(id, fence, |state, _| {
            let Some(state) = state else {
                return Ok(DevicePlan::Done(false));
            };
            let s = &st::DELETE_DEVICE;
            let values = s.bind(vec![
                ("device_id", st::text(id)),
                ("if_version", st::big(state.version)),
            ]);
            Ok(DevicePlan::Write(vec![(s, values)], true))
        })
        .await?;
    if !deleted {
        return Ok(false);
    }
    for s in [
        &st::DELETE_MESSAGES,
        &st::DELETE_OUTBOX,
        &st::DELETE_SCHEDULE,
        &st::DELETE_SLOTS,
        // The delivery log; its `delivered_by_day` entries are dropped by pruning.
        &st::DELETE_DELIVERIES,
    ] {
        store
            .execute(s, s.bind(vec![("device_id", st::text(id))]))
            .await?;
    }
    store.index_device(id, false).await?;
    store.delete_shard_entry(id).await?;
    // A create of the same id may have run meanwhile: keep it listed.
    if let Some(state) = store.device_state(id, true).await? {
        store.index_device(id, true).await?;
        store
            .set_shard_entry(id, state.device.desired_running)
            .await?;
    }
    Ok(true)
}

/// The row a patch leaves (what [`st::PATCH_DEVICE`] writes).
pub(super) fn apply_patch(d: &mut DeviceRecord, p: &DevicePatch, now_ms: i64) {
    if let Some(name) = &p.name {
        d.name = name.clone();
    }
    if let Some(status) = p.status {
        d.status = status;
    }
    if let Some(reason) = &p.status_reason {
        d.status_reason = reason.clone();
    }
    if let Some(level) = p.trust_level {
        d.trust_level = level;
    }
    if let Some(phone) = &p.phone {
        d.phone = phone.clone();
    }
    if let Some(webhook) = &p.webhook {
        d.webhook = webhook.clone();
    }
    if let Some(desired) = p.desired_running {
        d.desired_running = desired;
    }
    if let Some(at) = p.last_connected_at_ms {
        d.last_connected_at_ms = at;
    }
    d.updated_at_ms = now_ms;
}
