//! The shard keeper: turns the live-member view into leases.
//!
//! Every renew interval, and at once when membership changes, it computes the placement
//! over the live members and (between ticks, only step 3, every quarter interval: see
//! `next_look`)
//! 1. renews every lease it holds; a lease that does not renew, or whose deadline passes
//!    by this node's own monotonic clock before a renewal succeeds, is dropped and its
//!    devices stopped at once — a node never serves a shard it may no longer hold;
//! 2. hands off the shards placed elsewhere: stops their devices here, then releases the
//!    leases (graceful handoff on a join);
//! 3. acquires the shards placed here that it does not hold yet (a dead node's leases
//!    are granted once they expire) and gives them to `starts`, which starts their
//!    devices wanted running under the lease's fence, in the background: the keeper
//!    itself never waits on device starts, so renewals are never late because of a
//!    takeover. A shard whose lease its previous holder never released is a takeover:
//!    its devices are recoveries, timed from the moment the shard was first placed here
//!    until each is READY (`wafleet_node_lease_takeovers_total`,
//!    `wafleet_node_recovery_duration_seconds`);
//!
//! `starts` also runs the reconcile pass (see there), which also nudges the devices
//! that have queued messages (accepted by a gateway while the device was between
//! owners) to send them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{info, warn};
use wafleet_cluster_config::{Placement, shard_of};

use super::lease_watch::LeaseWatch;
use super::ownership::{Ownership, OwnershipCheck};
use super::starts::{Granted, Starts, stop_devices};
use crate::Fleet;
use crate::clock::Clock;
use crate::metrics;
use crate::store::{Acquired, Fence, Store, StoreError};

/// Timings of the keeper.
#[derive(Debug, Clone)]
pub struct ShardTimings {
    pub ttl: Duration,
    pub renew_interval: Duration,
    /// How often the reconcile pass runs.
    pub reconcile_interval: Duration,
    /// The wall clock leases are written with (tests set one node's ahead). Other
    /// nodes' leases are judged expired by the monotonic clock: see `lease_watch`.
    pub clock: Clock,
}

/// What the keeper holds and where it places shards, shared with the command path: the
/// node's [`OwnershipCheck`].
#[derive(Debug, Clone)]
pub struct HeldShards {
    me: String,
    shards: u32,
    inner: Arc<RwLock<HeldView>>,
}

#[derive(Debug, Default)]
struct HeldView {
    fences: HashMap<u32, Fence>,
    placement: Option<Placement>,
}

impl HeldShards {
    pub fn new(me: &str, shards: u32) -> HeldShards {
        HeldShards {
            me: me.to_owned(),
            shards,
            inner: Arc::default(),
        }
    }

    fn update(&self, held: &Held, placement: Placement) {
        let mut view = self.inner.write().unwrap_or_else(|e| e.into_inner());
        view.fences = held.leases.iter().map(|(s, (f, _))| (*s, *f)).collect();
        view.placement = Some(placement);
    }

    /// The fence of the lease held on `shard`, if held.
    pub fn fence_of(&self, shard: u32) -> Option<Fence> {
        self.read().fences.get(&shard).copied()
    }

    /// The fences of every lease held, by shard.
    pub fn fences(&self) -> HashMap<u32, Fence> {
        self.read().fences.clone()
    }

    /// The cluster's shard count.
    pub fn shard_count(&self) -> u32 {
        self.shards
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HeldView> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn drop_shards(&self, shards: &HashSet<u32>) {
        let mut view = self.inner.write().unwrap_or_else(|e| e.into_inner());
        view.fences.retain(|s, _| !shards.contains(s));
    }
}

impl OwnershipCheck for HeldShards {
    fn owns(&self, device_id: &str) -> Ownership {
        let shard = shard_of(device_id, self.shards);
        let view = self.read();
        if let Some(fence) = view.fences.get(&shard) {
            return Ownership::Owned {
                fence: Some(*fence),
            };
        }
        let owner_hint = view
            .placement
            .as_ref()
            .map(|p| p.owner(shard).to_owned())
            .filter(|owner| *owner != self.me);
        Ownership::Elsewhere { owner_hint }
    }
}

/// What this node holds: per shard, its fence and the instant after which it must stop
/// serving unless a renewal succeeded.
#[derive(Debug, Default)]
struct Held {
    leases: HashMap<u32, (Fence, Instant)>,
    /// Shards placed here and not held yet: since when (the start of a recovery).
    wanted_since: HashMap<u32, Instant>,
}

/// Runs until the member view's sender is dropped, or until `leaving` turns true: then
/// it hands every shard off (stops their devices here, releases the leases, so the nodes
/// that take them over need not wait for the leases to expire) and returns. Publishes
/// how many shards it holds.
pub async fn keep_shards(
    fleet: Fleet,
    store: Arc<dyn Store>,
    timings: ShardTimings,
    mut members: watch::Receiver<Vec<String>>,
    shared: HeldShards,
    held_count: watch::Sender<usize>,
    mut leaving: watch::Receiver<bool>,
) {
    let (me, shards) = (shared.me.clone(), shared.shards);
    let mut held = Held::default();
    let mut watch = LeaseWatch::new(timings.ttl, timings.renew_interval);
    let starts = Starts::spawn(
        fleet.clone(),
        store.clone(),
        shared.clone(),
        timings.reconcile_interval,
    );
    let mut tick = tokio::time::interval(timings.renew_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When to read the leases again before the next tick (see `next_look`).
    let mut look = Instant::now() + timings.renew_interval / 4;
    loop {
        let full = tokio::select! {
            changed = members.changed() => {
                if changed.is_err() {
                    return;
                }
                true
            }
            () = until_leaving(&mut leaving) => {
                drop(starts);
                let all: HashSet<u32> = held.leases.keys().copied().collect();
                // Refused from now (a gateway retries elsewhere or keeps the message).
                shared.drop_shards(&all);
                hand_off(&fleet, &store, &me, &mut held, &all, shards).await;
                held_count.send_replace(0);
                return;
            }
            _ = tick.tick() => true,
            () = until_deadline(&held) => {
                // A lease ran out before a renewal succeeded: stop serving it now, not
                // at the next tick (another node may take it a quarter renew interval
                // after this deadline; see `lease_watch`).
                drop_expired(&fleet, &mut held, HashSet::new(), &shared).await;
                held_count.send_replace(held.leases.len());
                continue;
            }
            () = tokio::time::sleep_until(look.into()) => false,
        };
        // Set again below; this is for a pass that ends early (no placement).
        look = Instant::now() + timings.renew_interval / 4;
        let live = members.borrow_and_update().clone();
        let Ok(placement) = Placement::new(shards, &live) else {
            continue;
        };
        let mine: HashSet<u32> = placement.shards_of(&me).collect();
        let leaving: HashSet<u32> = held
            .leases
            .keys()
            .filter(|s| !mine.contains(s))
            .copied()
            .collect();
        // A look between ticks only reads the leases and asks for what may be taken;
        // renewals and handoffs wait for the tick.
        if full {
            // Renewed first, leaving shards included: they stay ours while their
            // devices stop, and no renewal waits on a stop.
            renew(&fleet, &store, &me, &mut held, &timings, &shared).await;
            // Shards leaving are no longer served from the moment they are decided.
            shared.drop_shards(&leaving);
            hand_off(&fleet, &store, &me, &mut held, &leaving, shards).await;
        }
        observe(&store, &mut watch).await;
        let granted = acquire(&store, &me, &mut held, &watch, &mine, &timings).await;
        look = next_look(&watch, &me, &held, &mine, &timings);
        shared.update(&held, placement);
        if let Some(granted) = granted {
            starts.granted(granted);
        }
        held_count.send_if_modified(|count| {
            let changed = *count != held.leases.len();
            *count = held.leases.len();
            changed
        });
    }
}

/// Returns once `leaving` says so (or its sender is gone: the process is ending).
async fn until_leaving(leaving: &mut watch::Receiver<bool>) {
    loop {
        let now = *leaving.borrow_and_update();
        if now || leaving.changed().await.is_err() {
            return;
        }
    }
}

async fn hand_off(
    fleet: &Fleet,
    store: &Arc<dyn Store>,
    me: &str,
    held: &mut Held,
    leaving: &HashSet<u32>,
    total: u32,
) {
    if leaving.is_empty() {
        return;
    }
    stop_shards(fleet, leaving, total).await;
    let fences: Vec<Fence> = leaving
        .iter()
        .filter_map(|s| held.leases.remove(s).map(|(fence, _)| fence))
        .collect();
    if let Err(error) = store.release_leases(me, &fences).await {
        warn!(%error, "cannot release leases; they will expire");
    }
    info!(shards = leaving.len(), "handed shards off");
}

async fn renew(
    fleet: &Fleet,
    store: &Arc<dyn Store>,
    me: &str,
    held: &mut Held,
    timings: &ShardTimings,
    shared: &HeldShards,
) {
    if held.leases.is_empty() {
        return;
    }
    drop_expired(fleet, held, HashSet::new(), shared).await;
    if held.leases.is_empty() {
        return;
    }
    let started = Instant::now();
    let fences: Vec<Fence> = held.leases.values().map(|(fence, _)| *fence).collect();
    // Never past the earliest deadline: a hung store must not keep a lease served.
    let wait = earliest_deadline(held)
        .map_or(timings.renew_interval, |d| {
            d.saturating_duration_since(started)
        })
        .min(timings.renew_interval);
    let renewal = store.renew_leases(me, &fences, timings.clock.now_ms(), ttl_ms(timings));
    let renewal = match tokio::time::timeout(wait, renewal).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::Unavailable(format!(
            "no answer in {} ms",
            wait.as_millis()
        ))),
    };
    let lost: HashSet<u32> = match renewal {
        Ok(renewed) => {
            let deadline = started + timings.ttl.saturating_sub(timings.renew_interval / 2);
            for (fence, ok) in fences.iter().zip(&renewed) {
                if *ok && let Some(entry) = held.leases.get_mut(&fence.shard) {
                    entry.1 = deadline;
                }
            }
            fences
                .iter()
                .zip(renewed)
                .filter(|(_, ok)| !ok)
                .map(|(f, _)| f.shard)
                .collect()
        }
        Err(error) => {
            warn!(%error, "cannot renew leases");
            HashSet::new()
        }
    };
    drop_expired(fleet, held, lost, shared).await;
}

/// When to read the leases again between ticks: every quarter renew interval, and at
/// the moment a shard placed here but held by another node will have stood unchanged
/// for a TTL here (`LeaseWatch`). The TTL counts from when a lease's value was first
/// read, so reading only at each tick, a dead holder's last renewal was seen up to one
/// renew interval after it was made, and its shards taken up to another interval after
/// they could be. A read is one query of the leases table (one row per shard).
fn next_look(
    watch: &LeaseWatch,
    me: &str,
    held: &Held,
    mine: &HashSet<u32>,
    timings: &ShardTimings,
) -> Instant {
    let soon = Instant::now() + timings.renew_interval / 4;
    mine.iter()
        .filter(|s| !held.leases.contains_key(s))
        .filter_map(|s| watch.takeable_at(*s, me))
        .min()
        .map_or(soon, |takeable| takeable.min(soon))
}

/// Returns at the earliest deadline of the leases held (never if none is held).
async fn until_deadline(held: &Held) {
    match earliest_deadline(held) {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

fn earliest_deadline(held: &Held) -> Option<Instant> {
    held.leases.values().map(|(_, deadline)| *deadline).min()
}

/// Drops the shards `lost` on renewal and those past their deadline by our own clock,
/// and stops their devices: a node never serves a shard it may no longer hold.
async fn drop_expired(fleet: &Fleet, held: &mut Held, lost: HashSet<u32>, shared: &HeldShards) {
    let now = Instant::now();
    let mut dropped: HashSet<u32> = lost;
    dropped.extend(
        held.leases
            .iter()
            .filter(|(_, (_, deadline))| now >= *deadline)
            .map(|(s, _)| *s),
    );
    if !dropped.is_empty() {
        warn!(
            shards = dropped.len(),
            "leases lost, stopping their devices"
        );
        for shard in &dropped {
            held.leases.remove(shard);
        }
        // Commands for these shards are refused from now, before their devices stop.
        shared.drop_shards(&dropped);
        stop_shards(fleet, &dropped, shared.shards).await;
    }
}

/// Reads every lease, for `watch` to judge other nodes' leases by this node's clock.
async fn observe(store: &Arc<dyn Store>, watch: &mut LeaseWatch) {
    let started = Instant::now();
    match store.list_leases(None).await {
        Ok(leases) => watch.observe(leases, started, Instant::now()),
        Err(error) => {
            warn!(%error, "cannot read the leases; taking no shard until they can be read");
            watch.read_failed();
        }
    }
}

/// Asks for the shards placed here and not held that `watch` says may be taken;
/// returns those granted, for their devices to be started once the shared view holds
/// them.
async fn acquire(
    store: &Arc<dyn Store>,
    me: &str,
    held: &mut Held,
    watch: &LeaseWatch,
    mine: &HashSet<u32>,
    timings: &ShardTimings,
) -> Option<Granted> {
    let now = Instant::now();
    let missing: Vec<u32> = mine
        .iter()
        .filter(|s| !held.leases.contains_key(s) && watch.may_take(**s, me, now))
        .copied()
        .collect();
    let leases = &held.leases;
    held.wanted_since
        .retain(|s, _| mine.contains(s) && !leases.contains_key(s));
    let started = Instant::now();
    for shard in mine.iter().filter(|s| !held.leases.contains_key(s)) {
        held.wanted_since.entry(*shard).or_insert(started);
    }
    if missing.is_empty() {
        return None;
    }
    let granted: Vec<Fence> = match store
        .acquire_leases(me, &missing, timings.clock.now_ms(), ttl_ms(timings))
        .await
    {
        Ok(results) => results
            .into_iter()
            .filter_map(|r| match r {
                Acquired::Granted(lease) => Some(lease.fence()),
                Acquired::Refused(_) => None,
            })
            .collect(),
        Err(error) => {
            warn!(%error, "cannot acquire leases");
            return None;
        }
    };
    if granted.is_empty() {
        return None;
    }
    let deadline = started + timings.ttl.saturating_sub(timings.renew_interval / 2);
    for fence in &granted {
        held.leases.insert(fence.shard, (*fence, deadline));
    }
    // Granted shards that another holder never released: taken over after a loss.
    let recovering: HashMap<u32, Instant> = granted
        .iter()
        .filter(|f| watch.is_held(f.shard))
        .map(|f| {
            (
                f.shard,
                held.wanted_since.get(&f.shard).copied().unwrap_or(started),
            )
        })
        .collect();
    metrics::lease_takeovers(recovering.len());
    for fence in &granted {
        held.wanted_since.remove(&fence.shard);
    }
    info!(
        shards = granted.len(),
        taken_over = recovering.len(),
        "took shards over"
    );
    Some(Granted {
        fences: granted.iter().map(|f| (f.shard, *f)).collect(),
        recovering,
    })
}

/// Stops this node's devices of these shards (without touching their stored state).
async fn stop_shards(fleet: &Fleet, shards: &HashSet<u32>, total: u32) {
    let ids = fleet
        .running_devices()
        .into_iter()
        .filter(|id| shards.contains(&shard_of(id, total)))
        .collect();
    stop_devices(fleet, ids).await;
}

fn ttl_ms(timings: &ShardTimings) -> u64 {
    timings.ttl.as_millis() as u64
}
