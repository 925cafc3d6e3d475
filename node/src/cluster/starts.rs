//! Device starts, off the shard keeper's renewal path, and the reconcile pass.
//!
//! The keeper only takes leases; it hands each batch of granted shards to [`Starts`].
//! A task reads the batch's wanted devices and starts them, at most
//! [`START_CONCURRENCY`] at a time (their dials are paced further by the fleet's
//! connect gate and jitter), so a takeover of thousands of devices never delays a
//! renewal. Before each start the shard's lease is checked again: a start never runs
//! under a lease the keeper has dropped meanwhile.
//!
//! Every reconcile period the same task compares what should run with what runs: it
//! starts every device wanted running in a held shard that has no actor here (a start
//! that failed, a supervisor call that timed out, a shard read that failed), leaving
//! alone those waiting out a crash backoff or given up after too many crashes, and
//! stops every running device whose shard is not held. Then it nudges the devices of
//! held shards that have queued messages (accepted by a gateway while the device was
//! between owners), reading the store by shard.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tracing::{info, warn};
use wafleet_cluster_config::shard_of;

use super::shards::HeldShards;
use crate::Fleet;
use crate::store::{Fence, Store};

/// Device starts in flight at once (each is a store read and a supervisor call).
pub(super) const START_CONCURRENCY: usize = 64;
/// Device stops asked of the supervisor at once.
pub(super) const STOP_CONCURRENCY: usize = 256;

/// Shards just granted to this node.
#[derive(Debug, Default)]
pub(super) struct Granted {
    pub(super) fences: HashMap<u32, Fence>,
    /// Of them, the takeovers (their holder never released them): since when this
    /// node has wanted each.
    pub(super) recovering: HashMap<u32, Instant>,
}

/// The handle the keeper gives granted shards to. Dropping it ends the task.
#[derive(Debug)]
pub(super) struct Starts {
    granted: mpsc::UnboundedSender<Granted>,
    task: JoinHandle<()>,
}

impl Starts {
    pub(super) fn spawn(
        fleet: Fleet,
        store: Arc<dyn Store>,
        held: HeldShards,
        reconcile_every: Duration,
    ) -> Starts {
        let (granted, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(fleet, store, held, rx, reconcile_every));
        Starts { granted, task }
    }

    /// Starts the wanted devices of these shards (in the background).
    pub(super) fn granted(&self, granted: Granted) {
        let _ = self.granted.send(granted);
    }
}

impl Drop for Starts {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    fleet: Fleet,
    store: Arc<dyn Store>,
    held: HeldShards,
    mut granted: mpsc::UnboundedReceiver<Granted>,
    reconcile_every: Duration,
) {
    let gate = Arc::new(Semaphore::new(START_CONCURRENCY));
    let mut tick = tokio::time::interval(reconcile_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            batch = granted.recv() => {
                let Some(batch) = batch else { return };
                start_granted(&fleet, &store, &held, &gate, batch).await;
            }
            _ = tick.tick() => reconcile(&fleet, &store, &held, &gate).await,
        }
    }
}

/// Reads the granted shards' wanted devices and starts them in the background.
async fn start_granted(
    fleet: &Fleet,
    store: &Arc<dyn Store>,
    held: &HeldShards,
    gate: &Arc<Semaphore>,
    batch: Granted,
) {
    let shards: Vec<u32> = batch.fences.keys().copied().collect();
    let ids = match wanted_in(store, &shards).await {
        Some(ids) => ids,
        // The reconcile pass tries again.
        None => return,
    };
    let total = held.shard_count();
    let devices = ids.len();
    for id in ids {
        let shard = shard_of(&id, total);
        let Some(fence) = batch.fences.get(&shard).copied() else {
            // Not expected: the store places devices with this node's shard count (it
            // refuses to open with another).
            warn!(device_id = %id, shard, "store listed a device of a shard not asked for");
            continue;
        };
        let since = batch.recovering.get(&shard).copied();
        let (fleet, held) = (fleet.clone(), held.clone());
        let Ok(permit) = gate.clone().acquire_owned().await else {
            return;
        };
        tokio::spawn(async move {
            let _permit = permit;
            if held.fence_of(shard) != Some(fence) {
                return;
            }
            let run = match since {
                Some(since) => fleet.run_recovered(&id, fence, since).await,
                None => fleet.run_owned(&id, fence).await,
            };
            if let Err(error) = run {
                warn!(device_id = %id, %error, "cannot start device; the reconcile pass will try again");
            }
        });
    }
    info!(
        shards = shards.len(),
        taken_over = batch.recovering.len(),
        devices,
        "starting the devices of granted shards"
    );
    if let Err(error) = fleet.resume_webhooks(&shards).await {
        warn!(%error, "cannot look for due webhook deliveries; the reconcile pass will");
    }
}

/// Starts what should run here and does not; stops what runs here and should not.
async fn reconcile(
    fleet: &Fleet,
    store: &Arc<dyn Store>,
    held: &HeldShards,
    gate: &Arc<Semaphore>,
) {
    let fences = held.fences();
    let total = held.shard_count();
    let strays: Vec<String> = fleet
        .running_devices()
        .into_iter()
        .filter(|id| !fences.contains_key(&shard_of(id, total)))
        .collect();
    if !strays.is_empty() {
        warn!(
            devices = strays.len(),
            "devices running in shards not held, stopping them"
        );
        stop_devices(fleet, strays).await;
    }
    if fences.is_empty() {
        return;
    }
    let mut shards: Vec<u32> = fences.keys().copied().collect();
    shards.sort_unstable();
    if let Err(error) = fleet.nudge_queued(&shards).await {
        warn!(%error, "cannot look for queued messages");
    }
    if let Err(error) = fleet.resume_webhooks(&shards).await {
        warn!(%error, "cannot look for due webhook deliveries");
    }
    let Some(wanted) = wanted_in(store, &shards).await else {
        return;
    };
    let running: HashSet<String> = fleet.running_devices().into_iter().collect();
    let missing: Vec<String> = wanted
        .into_iter()
        .filter(|id| !running.contains(id))
        .collect();
    if missing.is_empty() {
        return;
    }
    let mut started = 0usize;
    for id in missing {
        let shard = shard_of(&id, total);
        let Some(fence) = fences.get(&shard).copied() else {
            continue;
        };
        let Ok(permit) = gate.clone().acquire_owned().await else {
            return;
        };
        started += 1;
        let (fleet, held) = (fleet.clone(), held.clone());
        tokio::spawn(async move {
            let _permit = permit;
            if held.fence_of(shard) != Some(fence) {
                return;
            }
            if let Err(error) = fleet.ensure_owned(&id, fence).await {
                warn!(device_id = %id, %error, "reconcile: cannot start device");
            }
        });
    }
    info!(
        devices = started,
        "reconcile: starting devices wanted running and not running"
    );
}

/// The devices wanted running in `shards`: the store reads only those shards'
/// devices. `None` (and logged) when they cannot be read.
async fn wanted_in(store: &Arc<dyn Store>, shards: &[u32]) -> Option<Vec<String>> {
    let mut shards = shards.to_vec();
    shards.sort_unstable();
    match store.wanted_devices_in_shards(&shards).await {
        Ok(ids) => Some(ids),
        Err(error) => {
            warn!(%error, shards = shards.len(), "cannot list the devices of held shards");
            None
        }
    }
}

/// Stops these devices' actors here (not their stored state), many at a time: the
/// supervisor waits for each in a task of its own.
pub(super) async fn stop_devices(fleet: &Fleet, ids: Vec<String>) {
    stream::iter(ids)
        .map(|id| async move {
            let _ = fleet.hand_off(&id).await;
        })
        .buffer_unordered(STOP_CONCURRENCY)
        .collect::<()>()
        .await;
}
