//! Devices run under a shard lease's fence: once another node takes the shard over, the
//! old run's next write is refused, and the run closes its link and stops without
//! writing anything, leaving the new owner's state alone. Times given to leases are
//! explicit, so nothing here waits for a lease to expire.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Mutex, mpsc, oneshot};
use wafleet_node::events::{BusConfig, EventBus, EventFilter, Subscription};
use wafleet_node::link::{
    LinkCommand, LinkContext, LinkError, LinkEvent, LinkEvents, LinkFactory, LinkSession,
};
use wafleet_node::seal::{MasterKey, Sealer};
use wafleet_node::store::{
    DevicePatch, DeviceStatus, Fence, SqliteStore, Store, StoreError, TrustLevel,
};
use wafleet_node::vault::DeviceVault;
use wafleet_node::{Fleet, NewDevice, NodeConfig};

const SHARD: u32 = 7;
const T0: i64 = 1_000_000;
const TTL: u64 = 10_000;

/// One connection the test drives: it speaks for the network through `events`.
struct Opened {
    events: LinkEvents,
    vault: DeviceVault,
    /// Fires when the device drops its session (closes the link).
    closed: oneshot::Receiver<()>,
}

/// A link whose sessions the test drives by hand.
#[derive(Debug)]
struct DrivenLink {
    opens: AtomicU32,
    opened: mpsc::UnboundedSender<Opened>,
}

#[derive(Debug)]
struct DrivenSession {
    closed: Option<oneshot::Sender<()>>,
}

impl Drop for DrivenSession {
    fn drop(&mut self) {
        if let Some(closed) = self.closed.take() {
            let _ = closed.send(());
        }
    }
}

impl LinkSession for DrivenSession {
    fn command(&mut self, _command: LinkCommand) -> Result<(), LinkError> {
        Ok(())
    }
}

#[async_trait]
impl LinkFactory for DrivenLink {
    async fn open(&self, ctx: LinkContext) -> Result<Box<dyn LinkSession>, LinkError> {
        self.opens.fetch_add(1, Ordering::SeqCst);
        let (closed_tx, closed) = oneshot::channel();
        let _ = self.opened.send(Opened {
            events: ctx.events,
            vault: ctx.vault,
            closed,
        });
        Ok(Box::new(DrivenSession {
            closed: Some(closed_tx),
        }))
    }
}

struct Node {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    fleet: Fleet,
    events: Subscription,
    links: Arc<DrivenLink>,
    opened: Mutex<mpsc::UnboundedReceiver<Opened>>,
}

impl Node {
    async fn start() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("wafleet.db")).unwrap());
        let bus = EventBus::in_memory(BusConfig::default());
        let events = bus.subscribe(EventFilter::All, None).await.unwrap();
        let (opened_tx, opened) = mpsc::unbounded_channel();
        let links = Arc::new(DrivenLink {
            opens: AtomicU32::new(0),
            opened: opened_tx,
        });
        let config = NodeConfig {
            node_name: "a".into(),
            connect_jitter: Duration::ZERO,
            ..NodeConfig::default()
        };
        let fleet = Fleet::start(
            config,
            store.clone(),
            Arc::new(Sealer::new(MasterKey::new(1, [7u8; 32]))),
            bus,
            links.clone(),
        )
        .await
        .unwrap();
        fleet
            .catalog()
            .set_quota_table(wafleet_cluster_config::QuotaTable::UNTHROTTLED)
            .await
            .unwrap();
        fleet.refresh_settings().await.unwrap();
        fleet
            .catalog()
            .create_device(NewDevice {
                id: "d1".into(),
                name: "d1".into(),
                trust_level: TrustLevel::Newcomer,
            })
            .await
            .unwrap();
        Node {
            _dir: dir,
            store,
            fleet,
            events,
            links,
            opened: Mutex::new(opened),
        }
    }

    async fn next_open(&self) -> Opened {
        within("a link to open", async {
            self.opened.lock().await.recv().await
        })
        .await
        .expect("link factory alive")
    }

    /// Node `holder` acquires the shard at `now`; its fence.
    async fn acquire(&self, holder: &str, now: i64) -> Fence {
        let outcome = self
            .store
            .acquire_lease(holder, SHARD, now, TTL)
            .await
            .unwrap();
        outcome.granted().expect("granted").fence()
    }

    async fn until_status(&mut self, status: &str) {
        let events = &mut self.events;
        within(&format!("status {status}"), async {
            loop {
                let event = events.next().await.unwrap();
                if event.kind.as_str() == "status" && event.data["status"] == status {
                    return;
                }
            }
        })
        .await
    }

    /// Waits until the device has no actor on this node any more.
    async fn until_not_running(&self) {
        within("the run to stop", async {
            while self.fleet.is_running("d1") {
                tokio::task::yield_now().await;
            }
        })
        .await
    }
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[tokio::test]
async fn a_run_whose_shard_was_taken_over_stops_without_writing() {
    let mut node = Node::start().await;
    let fence_a = node.acquire("a", T0).await;
    node.fleet.run_owned("d1", fence_a).await.unwrap();
    let opened = node.next_open().await;
    assert_eq!(
        opened.vault.fence(),
        Some(fence_a),
        "the vault carries the fence"
    );
    opened.events.emit(LinkEvent::Connected {
        phone: "+100".into(),
    });
    node.until_status("READY").await;

    // Node b takes the shard over after expiry and records its own status.
    let fence_b = node.acquire("b", T0 + TTL as i64).await;
    assert_eq!(fence_b.epoch, fence_a.epoch + 1);
    let b_patch = DevicePatch {
        status: Some(DeviceStatus::Starting),
        status_reason: Some(Some("started by b".into())),
        ..DevicePatch::default()
    };
    let b_row = node
        .store
        .patch_device("d1", &b_patch, T0 + 20_000, Some(&fence_b))
        .await
        .unwrap();

    // a's link drops: a's run tries to record DISCONNECTED, is fenced off, and stops.
    opened.events.emit(LinkEvent::Disconnected {
        reason: "network blip".into(),
    });
    within("a's link to close", opened.closed).await.unwrap();
    node.until_not_running().await;
    assert_eq!(
        node.fleet.catalog().device("d1").await.unwrap(),
        b_row,
        "the stale run wrote over the new owner's row"
    );
    assert_eq!(node.links.opens.load(Ordering::SeqCst), 1);
    let err = opened
        .vault
        .put("sim", "identity", b"late")
        .await
        .expect_err("a stale vault write");
    assert!(err.is_fenced(), "{err}");
    node.fleet.shutdown().await;
}

#[tokio::test]
async fn a_link_that_reports_fenced_stops_the_run() {
    let mut node = Node::start().await;
    let fence_a = node.acquire("a", T0).await;
    node.fleet.run_owned("d1", fence_a).await.unwrap();
    let opened = node.next_open().await;
    node.until_status("STARTING").await;
    let before = node.fleet.catalog().device("d1").await.unwrap();

    opened.events.emit(LinkEvent::Fenced {
        reason: "cannot store credentials: write fenced off".into(),
    });
    within("the link to close", opened.closed).await.unwrap();
    node.until_not_running().await;
    assert_eq!(
        node.fleet.catalog().device("d1").await.unwrap(),
        before,
        "a fenced run wrote its status"
    );
    node.fleet.shutdown().await;
}

#[tokio::test]
async fn a_run_under_a_lost_lease_does_not_start() {
    let node = Node::start().await;
    let fence_a = node.acquire("a", T0).await;
    node.acquire("b", T0 + TTL as i64).await;
    let before = node.fleet.catalog().device("d1").await.unwrap();

    // The device's first write (STARTING under the fence) is its own, off the
    // supervisor (which never waits on the store): refused, the run ends by itself.
    node.fleet.run_owned("d1", fence_a).await.unwrap();
    node.until_not_running().await;
    assert_eq!(node.links.opens.load(Ordering::SeqCst), 0);
    assert_eq!(node.fleet.catalog().device("d1").await.unwrap(), before);
    node.fleet.shutdown().await;
}

#[tokio::test]
async fn a_run_under_a_newer_epoch_replaces_the_old_one() {
    let node = Node::start().await;
    let first = node.acquire("a", T0).await;
    node.fleet.run_owned("d1", first).await.unwrap();
    let old = node.next_open().await;

    // Same fence again: nothing happens.
    node.fleet.run_owned("d1", first).await.unwrap();
    // a's lease lapsed and a acquired the shard again: a new epoch, a new run.
    let second = node.acquire("a", T0 + TTL as i64).await;
    assert_eq!(second.epoch, first.epoch + 1);
    node.fleet.run_owned("d1", second).await.unwrap();
    within("the old link to close", old.closed).await.unwrap();
    let new = node.next_open().await;
    assert_eq!(new.vault.fence(), Some(second));
    assert_eq!(node.links.opens.load(Ordering::SeqCst), 2);

    let err = old
        .vault
        .clear()
        .await
        .expect_err("the old run's vault is fenced off");
    assert!(
        matches!(
            err,
            wafleet_node::vault::VaultError::Store(StoreError::Fenced {
                current: Some(2),
                ..
            })
        ),
        "{err}"
    );
    new.vault.clear().await.expect("the new run's vault writes");
    node.fleet.shutdown().await;
}

#[tokio::test]
async fn an_operator_stop_or_logout_under_a_lost_lease_is_refused() {
    let node = Node::start().await;
    let fence_a = node.acquire("a", T0).await;
    node.acquire("b", T0 + TTL as i64).await;
    let wanted = DevicePatch {
        desired_running: Some(true),
        phone: Some(Some("+100".into())),
        ..DevicePatch::default()
    };
    let before = node
        .store
        .patch_device("d1", &wanted, 1, None)
        .await
        .unwrap();

    // Node a checked ownership in memory, then lost the shard: its writes are refused.
    let stop = node.fleet.stop_device("d1", Some(fence_a)).await;
    assert!(
        matches!(
            stop,
            Err(wafleet_node::FleetError::Store(StoreError::Fenced { .. }))
        ),
        "{stop:?}"
    );
    let logout = node.fleet.logout_device("d1", Some(fence_a)).await;
    assert!(logout.is_err(), "{logout:?}");
    let delete = node.fleet.delete_device("d1", Some(fence_a)).await;
    assert!(
        matches!(
            delete,
            Err(wafleet_node::FleetError::Store(StoreError::Fenced { .. }))
        ),
        "{delete:?}"
    );
    assert_eq!(node.fleet.catalog().device("d1").await.unwrap(), before);
    node.fleet.shutdown().await;
}

#[tokio::test]
async fn a_run_replaced_under_a_valid_lease_stays_wanted_running() {
    let mut node = Node::start().await;
    let wanted = DevicePatch {
        desired_running: Some(true),
        ..DevicePatch::default()
    };
    node.store
        .patch_device("d1", &wanted, 1, None)
        .await
        .unwrap();
    let fence = node.acquire("a", T0).await;
    node.fleet.run_owned("d1", fence).await.unwrap();
    let opened = node.next_open().await;
    opened.events.emit(LinkEvent::Connected {
        phone: "+100".into(),
    });
    node.until_status("READY").await;

    // A stale run elsewhere connected with the same credentials.
    opened.events.emit(LinkEvent::Replaced);
    node.until_not_running().await;
    let device = node.fleet.catalog().device("d1").await.unwrap();
    assert!(
        device.desired_running,
        "a replaced run under a valid lease gave up the device"
    );
    assert_eq!(device.status, DeviceStatus::Disconnected);
    node.fleet.shutdown().await;
}
