//! Taking shards over. Device starts run beside the shard keeper's renewals, so a
//! takeover of thousands of devices on a slow store (5 ms a call, about a ScyllaDB LWT)
//! never lets one of the taking node's leases expire; the reconcile pass starts a device
//! whose first start failed; and a node whose wall clock is 2 s ahead never takes a
//! shard while its holder still serves it (no device has two live links).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::watch;
use wafleet_node::clock::{Clock, now_ms};
use wafleet_node::cluster::shards::{HeldShards, ShardTimings, keep_shards};
use wafleet_node::events::{BusConfig, EventBus};
use wafleet_node::link::{
    LinkCommand, LinkContext, LinkError, LinkEvent, LinkFactory, LinkSession,
};
use wafleet_node::seal::{MasterKey, Sealer};
use wafleet_node::store::metered::CallHook;
use wafleet_node::store::{
    DevicePatch, DeviceStatus, MeteredStore, SqliteStore, Store, StoreError, TrustLevel,
};
use wafleet_node::{Fleet, NewDevice, NodeConfig};

const SHARDS: u32 = 64;

/// Slows every store call down by `delay_ms`, fails the next `fail_get_device` calls
/// of `get_device`, and every lease call while `cut_off` (a node partitioned from the
/// store).
#[derive(Debug, Default)]
struct Hook {
    delay_ms: AtomicU64,
    fail_get_device: AtomicU32,
    failed: AtomicU32,
    cut_off: AtomicBool,
}

#[async_trait]
impl CallHook for Hook {
    async fn before(&self, operation: &'static str) -> Result<(), StoreError> {
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if operation.contains("lease") && self.cut_off.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("cut off from the store".into()));
        }
        if operation == "get_device"
            && self
                .fail_get_device
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Unavailable("injected failure".into()));
        }
        Ok(())
    }
}

/// A link that is connected as soon as it opens; it counts each device's live
/// sessions (over every node it serves) and the most a device ever had at once.
#[derive(Debug, Default)]
struct ReadyLink {
    live: Arc<Mutex<HashMap<String, u32>>>,
    most: AtomicU32,
}

#[derive(Debug)]
struct ReadySession {
    device_id: String,
    live: Arc<Mutex<HashMap<String, u32>>>,
}

impl LinkSession for ReadySession {
    fn command(&mut self, _command: LinkCommand) -> Result<(), LinkError> {
        Ok(())
    }
}

impl Drop for ReadySession {
    fn drop(&mut self) {
        if let Some(n) = self.live.lock().unwrap().get_mut(&self.device_id) {
            *n -= 1;
        }
    }
}

#[async_trait]
impl LinkFactory for ReadyLink {
    async fn open(&self, ctx: LinkContext) -> Result<Box<dyn LinkSession>, LinkError> {
        {
            let mut live = self.live.lock().unwrap();
            let n = live.entry(ctx.device_id.clone()).or_insert(0);
            *n += 1;
            self.most.fetch_max(*n, Ordering::SeqCst);
        }
        ctx.events.emit(LinkEvent::Connected {
            phone: format!("+{}", ctx.device_id.len()),
        });
        Ok(Box::new(ReadySession {
            device_id: ctx.device_id,
            live: self.live.clone(),
        }))
    }
}

struct Node {
    name: String,
    dir: Arc<tempfile::TempDir>,
    /// The store without the hook, for the test's own reads.
    raw: Arc<dyn Store>,
    store: Arc<dyn Store>,
    hook: Arc<Hook>,
    fleet: Fleet,
}

impl Node {
    /// A node named `b` with `devices` devices wanted running, none started.
    async fn with_devices(devices: usize) -> Node {
        Node::with_devices_on("b", devices, Arc::new(ReadyLink::default())).await
    }

    /// A node named `name` with `devices` devices wanted running, none started.
    async fn with_devices_on(name: &str, devices: usize, link: Arc<ReadyLink>) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let raw: Arc<dyn Store> = Arc::new(
            SqliteStore::open_with_shards(&dir.path().join("wafleet.db"), SHARDS).unwrap(),
        );
        let node = Node::beside(name, Arc::new(dir), raw, link).await;
        let wanted = DevicePatch {
            desired_running: Some(true),
            ..DevicePatch::default()
        };
        for n in 0..devices {
            let id = format!("d{n:05}");
            node.fleet
                .catalog()
                .create_device(NewDevice {
                    id: id.clone(),
                    name: id.clone(),
                    trust_level: TrustLevel::Newcomer,
                })
                .await
                .unwrap();
            node.raw
                .patch_device(&id, &wanted, now_ms(), None)
                .await
                .unwrap();
        }
        node
    }

    /// A node named `name` on the store `raw` (another node's, or a new one).
    async fn beside(
        name: &str,
        dir: Arc<tempfile::TempDir>,
        raw: Arc<dyn Store>,
        link: Arc<ReadyLink>,
    ) -> Node {
        let hook = Arc::new(Hook::default());
        let store: Arc<dyn Store> = Arc::new(MeteredStore::with_hook(raw.clone(), hook.clone()));
        let fleet = Fleet::start(
            NodeConfig {
                node_name: name.into(),
                connect_jitter: Duration::from_millis(50),
                // A cluster node runs only what its leases give it (as `wafleet node`).
                resume_all: false,
                ..NodeConfig::default()
            },
            store.clone(),
            Arc::new(Sealer::new(MasterKey::new(1, [7u8; 32]))),
            EventBus::in_memory(BusConfig::default()),
            link,
        )
        .await
        .unwrap();
        Node {
            name: name.to_owned(),
            dir,
            raw,
            store,
            hook,
            fleet,
        }
    }

    /// Runs the node's shard keeper as the only live member it sees; returns the
    /// number of leases it holds, as it changes.
    fn keep_shards(&self, timings: ShardTimings) -> (watch::Receiver<usize>, watch::Sender<bool>) {
        let (members_tx, members) = watch::channel(vec![self.name.clone()]);
        let (held_tx, held) = watch::channel(0usize);
        let (leave, leaving) = watch::channel(false);
        tokio::spawn(keep_shards(
            self.fleet.clone(),
            self.store.clone(),
            timings,
            members,
            HeldShards::new(&self.name, SHARDS),
            held_tx,
            leaving,
        ));
        // The members' sender must outlive the keeper: it returns when it is dropped.
        std::mem::forget(members_tx);
        (held, leave)
    }

    async fn ready(&self) -> u64 {
        self.raw
            .count_devices_by_status()
            .await
            .unwrap()
            .into_iter()
            .find(|(status, _)| *status == DeviceStatus::Ready)
            .map_or(0, |(_, n)| n)
    }

    /// Waits until `n` devices are READY; how long that took.
    async fn until_ready(&self, n: u64, limit: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let ready = self.ready().await;
            if ready >= n {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "{ready} of {n} devices READY after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_of_5000_devices_on_a_slow_store_never_lets_a_lease_expire() {
    const DEVICES: usize = 5_000;
    let node = Node::with_devices(DEVICES).await;
    // A node `a` held every shard and died: its leases run out 300 ms from now.
    let all: Vec<u32> = (0..SHARDS).collect();
    node.raw
        .acquire_leases("a", &all, now_ms() - 700, 1_000)
        .await
        .unwrap();
    node.hook.delay_ms.store(5, Ordering::SeqCst);

    let ttl = Duration::from_secs(2);
    let started = Instant::now();
    let (mut held, _leave) = node.keep_shards(ShardTimings {
        ttl,
        renew_interval: Duration::from_millis(400),
        reconcile_interval: Duration::from_secs(5),
        clock: Clock::system(),
    });
    within(Duration::from_secs(10), "every shard to be taken", async {
        held.wait_for(|n| *n == SHARDS as usize).await.unwrap();
    })
    .await;
    // From now on the held count must never drop: a dropped lease is one that expired
    // or was lost on renewal.
    let drops = Arc::new(AtomicU32::new(0));
    let watch_drops = drops.clone();
    tokio::spawn(async move {
        while held.changed().await.is_ok() {
            if *held.borrow_and_update() < SHARDS as usize {
                watch_drops.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let took = node
        .until_ready(DEVICES as u64, Duration::from_secs(120))
        .await;
    // Two more renewals after the last start.
    tokio::time::sleep(ttl).await;
    eprintln!(
        "{DEVICES} devices READY {:.2} s after the keeper started ({:.2} s after the leases were granted)",
        started.elapsed().as_secs_f64() - ttl.as_secs_f64(),
        took.as_secs_f64()
    );
    assert_eq!(drops.load(Ordering::SeqCst), 0, "a lease was dropped");
    let leases = node.raw.list_leases(Some("b")).await.unwrap();
    assert_eq!(leases.len(), SHARDS as usize);
    let first = leases[0].epoch;
    assert!(
        leases.iter().all(|lease| lease.epoch == first),
        "a lease was acquired again: {leases:?}"
    );
    assert_eq!(node.fleet.running_devices().len(), DEVICES);
}

#[tokio::test]
async fn a_device_whose_start_fails_is_ready_within_one_reconcile_period() {
    let node = Node::with_devices(3).await;
    node.hook.fail_get_device.store(1, Ordering::SeqCst);
    let reconcile = Duration::from_millis(1_000);
    let (mut held, _leave) = node.keep_shards(ShardTimings {
        ttl: Duration::from_secs(5),
        renew_interval: Duration::from_millis(500),
        reconcile_interval: reconcile,
        clock: Clock::system(),
    });
    within(Duration::from_secs(10), "every shard to be taken", async {
        held.wait_for(|n| *n == SHARDS as usize).await.unwrap();
    })
    .await;
    let granted = Instant::now();
    node.until_ready(2, Duration::from_secs(5)).await;
    assert_eq!(
        node.hook.failed.load(Ordering::SeqCst),
        1,
        "no start failed"
    );
    assert_eq!(
        node.ready().await,
        2,
        "the failed start was retried at once"
    );
    let took = node.until_ready(3, reconcile * 3).await;
    let since_granted = granted.elapsed();
    eprintln!(
        "the failed device was READY {:.2} s after its shard was granted",
        since_granted.as_secs_f64()
    );
    assert!(
        since_granted <= reconcile + Duration::from_millis(500),
        "READY {since_granted:?} after the grant ({took:?} after the others), reconcile every {reconcile:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_its_clock_2_s_ahead_never_takes_a_shard_its_holder_still_serves() {
    const DEVICES: usize = 50;
    let link = Arc::new(ReadyLink::default());
    let a = Node::with_devices_on("a", DEVICES, link.clone()).await;
    let timings = |clock| ShardTimings {
        ttl: Duration::from_secs(3),
        renew_interval: Duration::from_secs(1),
        reconcile_interval: Duration::from_secs(5),
        clock,
    };
    let (mut a_held, _a_leave) = a.keep_shards(timings(Clock::system()));
    within(Duration::from_secs(10), "a to take every shard", async {
        a_held.wait_for(|n| *n == SHARDS as usize).await.unwrap();
    })
    .await;
    a.until_ready(DEVICES as u64, Duration::from_secs(20)).await;

    // b shares the store, believes a dead, and its wall clock is 2 s ahead: by it, each
    // of a's leases has expired 1 s after a renewed it.
    let b = Node::beside("b", a.dir.clone(), a.raw.clone(), link.clone()).await;
    let (mut b_held, _b_leave) = b.keep_shards(timings(Clock::offset(2_000)));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(*b_held.borrow(), 0, "b took a shard that a renews");
    // Now a is cut off from the store: it stops serving at its own deadline.
    let cut = Instant::now();
    a.hook.cut_off.store(true, Ordering::SeqCst);
    within(Duration::from_secs(15), "b to take every shard", async {
        b_held.wait_for(|n| *n == SHARDS as usize).await.unwrap();
    })
    .await;
    within(Duration::from_secs(15), "b to run every device", async {
        while b.fleet.running_devices().len() < DEVICES {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    eprintln!(
        "b runs every device {:.2} s after a was cut off",
        cut.elapsed().as_secs_f64()
    );
    assert!(a.fleet.running_devices().is_empty());
    assert_eq!(
        link.most.load(Ordering::SeqCst),
        1,
        "a device had two live links"
    );
}

async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}
