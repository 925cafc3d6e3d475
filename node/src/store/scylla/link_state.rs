//! Link state: clustering rows of the device partition, written with a compare-and-set
//! on the partition's `version` (and its fence).

use std::collections::HashSet;

use futures_util::StreamExt;

use super::fencing::{DevicePlan, DeviceVersion, bump, bump_version, device_admits};
use super::statements as st;
use super::{CAS_ATTEMPTS, ScyllaStore, contention, i64_of, rows};
use crate::store::{Fence, SealedBlob, StoreError, device_not_found};

pub(super) async fn put(
    store: &ScyllaStore,
    device_id: &str,
    namespace: &str,
    key: &str,
    value: &SealedBlob,
    fence: Option<&Fence>,
) -> Result<(), StoreError> {
    store
        .device_cas(device_id, fence, |state, fence_epoch| {
            let Some(state) = state else {
                return Err(device_not_found(device_id));
            };
            let s = &st::PUT_LINK_STATE;
            let values = s.bind(vec![
                ("key_version", st::big(i64::from(value.key_version))),
                ("value", st::blob(&value.bytes)),
                ("version", st::big(state.version + 1)),
                ("fence_epoch", st::big(i64_of(fence_epoch, "fence epoch")?)),
                ("device_id", st::text(device_id)),
                ("namespace", st::text(namespace)),
                ("key", st::text(key)),
                ("if_version", st::big(state.version)),
            ]);
            Ok(DevicePlan::Write(vec![(s, values)], ()))
        })
        .await
}

/// Records written by one conditional batch in [`put_many`]: well under ScyllaDB's
/// batch size warning (128 KiB) for records the size of a pre-key.
const RECORDS_PER_BATCH: usize = 100;

/// Many records of one namespace: a conditional batch per [`RECORDS_PER_BATCH`] records,
/// each the device partition's compare-and-set (its `version` and fence) with the rows.
/// Each batch is whole or nothing; a failure leaves the earlier batches written.
pub(super) async fn put_many(
    store: &ScyllaStore,
    device_id: &str,
    namespace: &str,
    records: &[(String, SealedBlob)],
    fence: Option<&Fence>,
) -> Result<(), StoreError> {
    for chunk in records.chunks(RECORDS_PER_BATCH) {
        store
            .device_cas(device_id, fence, |state, fence_epoch| {
                let Some(state) = state else {
                    return Err(device_not_found(device_id));
                };
                let mut parts = vec![bump(device_id, state, fence_epoch)?];
                let s = &st::SET_LINK_STATE;
                parts.extend(chunk.iter().map(|(key, value)| {
                    let values = s.bind(vec![
                        ("key_version", st::big(i64::from(value.key_version))),
                        ("value", st::blob(&value.bytes)),
                        ("device_id", st::text(device_id)),
                        ("namespace", st::text(namespace)),
                        ("key", st::text(key)),
                    ]);
                    (s, values)
                }));
                Ok(DevicePlan::Write(parts, ()))
            })
            .await?;
    }
    Ok(())
}

pub(super) async fn get(
    store: &ScyllaStore,
    device_id: &str,
    namespace: &str,
    key: &str,
) -> Result<Option<SealedBlob>, StoreError> {
    let s = &st::SELECT_LINK_STATE;
    let row = store
        .first(
            s,
            s.bind(vec![
                ("device_id", st::text(device_id)),
                ("namespace", st::text(namespace)),
                ("key", st::text(key)),
            ]),
        )
        .await?;
    match row {
        Some(row) => rows::blob(&row, 0),
        None => Ok(None),
    }
}

pub(super) async fn list(
    store: &ScyllaStore,
    device_id: &str,
    namespace: &str,
) -> Result<Vec<(String, SealedBlob)>, StoreError> {
    let s = &st::LIST_LINK_STATE;
    let mut out = Vec::new();
    store
        .each_row(
            s,
            s.bind(vec![
                ("device_id", st::text(device_id)),
                ("namespace", st::text(namespace)),
            ]),
            |row| {
                if let Some(blob) = rows::blob(&row, 1)? {
                    out.push((rows::text(&row, 0, "link state key")?, blob));
                }
                Ok(true)
            },
        )
        .await?;
    Ok(out)
}

/// Keys asked at once above which [`get_many`] reads the namespace in one paged read
/// rather than each key in a round trip of its own.
const READ_NAMESPACE_ABOVE: usize = 16;

/// The records of `namespace` under those of `keys` that hold one. Few keys: a read
/// each. Many: the namespace's rows, kept when asked for. What asks for many keys at
/// once asks for most of a small namespace (the real link's pre-keys: 812 keys of a
/// namespace of about as many), so one read of the rows replaces hundreds of round
/// trips.
pub(super) async fn get_many(
    store: &ScyllaStore,
    device_id: &str,
    namespace: &str,
    keys: &[String],
) -> Result<Vec<(String, SealedBlob)>, StoreError> {
    if keys.len() <= READ_NAMESPACE_ABOVE {
        let mut found = Vec::new();
        for key in keys {
            if let Some(value) = get(store, device_id, namespace, key).await? {
                found.push((key.clone(), value));
            }
        }
        return Ok(found);
    }
    let wanted: HashSet<&str> = keys.iter().map(String::as_str).collect();
    let mut found = list(store, device_id, namespace).await?;
    found.retain(|(key, _)| wanted.contains(key.as_str()));
    Ok(found)
}

/// Point reads [`any`] keeps in flight at once.
const ANY_IN_FLIGHT: usize = 32;

/// Whether any of `keys` holds a record of `namespace`: a read of each key, up to
/// [`ANY_IN_FLIGHT`] at a time, ending at the first found. The real link asks it over
/// 400 addresses a namespace, in a namespace (sessions) that can hold thousands of
/// large records, so neither one read of the namespace nor one read after another.
pub(super) async fn any(
    store: &ScyllaStore,
    device_id: &str,
    namespace: &str,
    keys: &[String],
) -> Result<bool, StoreError> {
    let mut reads = futures_util::stream::iter(keys.iter().cloned())
        .map(|key| async move { get(store, device_id, namespace, &key).await })
        .buffer_unordered(ANY_IN_FLIGHT);
    while let Some(found) = reads.next().await {
        if found?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

pub(super) async fn delete(
    store: &ScyllaStore,
    device_id: &str,
    namespace: &str,
    key: &str,
    fence: Option<&Fence>,
) -> Result<bool, StoreError> {
    store.check_lease(fence).await?;
    for _ in 0..CAS_ATTEMPTS {
        let Some(state) = store.device_state(device_id, true).await? else {
            return Ok(false);
        };
        let fence_epoch = match fence {
            Some(fence) => device_admits(fence, state.fence_epoch)?,
            None => state.fence_epoch,
        };
        let row_key = vec![
            ("device_id", st::text(device_id)),
            ("namespace", st::text(namespace)),
            ("key", st::text(key)),
        ];
        let s = &st::SELECT_LINK_STATE_SERIAL;
        let present = match store.first(s, s.bind(row_key.clone())).await? {
            Some(row) => rows::blob(&row, 0)?.is_some(),
            None => false,
        };
        if !present {
            return Ok(false);
        }
        let parts = vec![
            (&st::DELETE_LINK_STATE, st::DELETE_LINK_STATE.bind(row_key)),
            bump(device_id, &state, fence_epoch)?,
        ];
        if store.lwt_batch(parts).await? {
            return Ok(true);
        }
    }
    Err(contention(device_id))
}

pub(super) async fn clear(
    store: &ScyllaStore,
    device_id: &str,
    fence: Option<&Fence>,
) -> Result<u64, StoreError> {
    store.check_lease(fence).await?;
    for _ in 0..CAS_ATTEMPTS {
        let s = &st::LINK_STATE_KEYS_SERIAL;
        let found = store
            .rows(s, s.bind(vec![("device_id", st::text(device_id))]))
            .await?;
        let Some(first) = found.first() else {
            return Ok(0);
        };
        let Some(version) = rows::opt_big(first, 2, "device version")? else {
            return Ok(0);
        };
        let device_fence = rows::unsigned(first, 3, "device fence epoch")?;
        let fence_epoch = match fence {
            Some(fence) => device_admits(fence, device_fence)?,
            None => device_fence,
        };
        let mut parts = Vec::new();
        for row in &found {
            let (Some(namespace), Some(key)) = (
                rows::opt_text(row, 0, "link state namespace")?,
                rows::opt_text(row, 1, "link state key")?,
            ) else {
                continue;
            };
            let d = &st::DELETE_LINK_STATE;
            parts.push((
                d,
                d.bind(vec![
                    ("device_id", st::text(device_id)),
                    ("namespace", st::text(&namespace)),
                    ("key", st::text(&key)),
                ]),
            ));
        }
        if parts.is_empty() {
            return Ok(0);
        }
        let count = parts.len() as u64;
        let state_version = DeviceVersion {
            version,
            fence_epoch: device_fence,
        };
        parts.push(bump_version(device_id, state_version, fence_epoch)?);
        if store.lwt_batch(parts).await? {
            return Ok(count);
        }
    }
    Err(contention(device_id))
}
