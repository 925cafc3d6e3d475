//! The device status machine under failure: crashes are restarted with backoff and end
//! in FAILED; a link that cannot connect leaves the device DISCONNECTED and retrying,
//! never FAILED and never spinning.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use wafleet_node::device::supervisor::STOP_TIMEOUT;
use wafleet_node::events::{BusConfig, EventBus, EventFilter, Subscription};
use wafleet_node::link::{
    LinkCommand, LinkContext, LinkError, LinkEvent, LinkFactory, LinkSession,
};
use wafleet_node::seal::{MasterKey, Sealer};
use wafleet_node::store::{SqliteStore, TrustLevel};
use wafleet_node::{Fleet, NewDevice, NodeConfig};

/// A link whose every connection attempt panics (a bug in a link must not take the
/// node down or loop forever).
#[derive(Debug, Default)]
struct PanickingLink {
    opens: AtomicU32,
}

#[async_trait]
impl LinkFactory for PanickingLink {
    async fn open(&self, _ctx: LinkContext) -> Result<Box<dyn LinkSession>, LinkError> {
        self.opens.fetch_add(1, Ordering::SeqCst);
        panic!("link bug");
    }
}

/// A link that can never reach WhatsApp.
#[derive(Debug, Default)]
struct UnreachableLink {
    opens: AtomicU32,
}

#[async_trait]
impl LinkFactory for UnreachableLink {
    async fn open(&self, _ctx: LinkContext) -> Result<Box<dyn LinkSession>, LinkError> {
        self.opens.fetch_add(1, Ordering::SeqCst);
        Err(LinkError::Connect("connection refused".into()))
    }
}

/// A link whose handshake never ends for devices named `slow-*` (the network hangs)
/// and that connects at once for the others.
#[derive(Debug, Default)]
struct HangingLink;

#[derive(Debug)]
struct Connected;

impl LinkSession for Connected {
    fn command(&mut self, _command: LinkCommand) -> Result<(), LinkError> {
        Ok(())
    }
}

#[async_trait]
impl LinkFactory for HangingLink {
    async fn open(&self, ctx: LinkContext) -> Result<Box<dyn LinkSession>, LinkError> {
        if ctx.device_id.starts_with("slow") {
            std::future::pending::<()>().await;
        }
        ctx.events.emit(LinkEvent::Connected {
            phone: "+100".into(),
        });
        Ok(Box::new(Connected))
    }
}

fn fast_config() -> NodeConfig {
    NodeConfig {
        connect_jitter: Duration::ZERO,
        reconnect_min: Duration::from_millis(10),
        reconnect_max: Duration::from_millis(40),
        crash_backoff: Duration::from_millis(5),
        max_crashes: 3,
        ..NodeConfig::default()
    }
}

async fn fleet(dir: &std::path::Path, links: Arc<dyn LinkFactory>) -> (Fleet, EventBus) {
    let store = SqliteStore::open(&dir.join("wafleet.db")).unwrap();
    let bus = EventBus::in_memory(BusConfig::default());
    let sealer = Sealer::new(MasterKey::new(1, [7u8; 32]));
    let fleet = Fleet::start(
        fast_config(),
        Arc::new(store),
        Arc::new(sealer),
        bus.clone(),
        links,
    )
    .await
    .unwrap();
    fleet
        .catalog()
        .set_quota_table(wafleet_cluster_config::QuotaTable::UNTHROTTLED)
        .await
        .unwrap();
    fleet.refresh_settings().await.unwrap();
    (fleet, bus)
}

async fn create(fleet: &Fleet, id: &str) {
    fleet
        .catalog()
        .create_device(NewDevice {
            id: id.into(),
            name: id.into(),
            trust_level: TrustLevel::Newcomer,
        })
        .await
        .unwrap();
}

/// The next `status` event with this status, within 10 s.
async fn until_status(events: &mut Subscription, status: &str) -> serde_json::Value {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let event = events.next().await.unwrap();
            if event.kind.as_str() == "status" && event.data["status"] == status {
                return event.data.clone();
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {status} in time"))
}

#[tokio::test]
async fn a_device_that_keeps_crashing_ends_failed_after_max_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let links = Arc::new(PanickingLink::default());
    let (fleet, bus) = fleet(dir.path(), links.clone()).await;
    create(&fleet, "crashy").await;
    let mut events = bus.subscribe(EventFilter::All, None).await.unwrap();
    fleet.start_device("crashy", None).await.unwrap();

    let failed = until_status(&mut events, "FAILED").await;
    assert!(
        failed["reason"].as_str().unwrap().contains("3 times"),
        "{failed}"
    );
    assert_eq!(links.opens.load(Ordering::SeqCst), 3);
    let device = fleet.catalog().device("crashy").await.unwrap();
    assert_eq!(device.status.as_str(), "FAILED");

    // Starting it again by hand forgives the crashes: it is tried again.
    fleet.start_device("crashy", None).await.unwrap();
    until_status(&mut events, "FAILED").await;
    assert_eq!(links.opens.load(Ordering::SeqCst), 6);
    fleet.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_network_means_disconnected_with_capped_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let links = Arc::new(UnreachableLink::default());
    let (fleet, bus) = fleet(dir.path(), links.clone()).await;
    create(&fleet, "offline").await;
    let mut events = bus.subscribe(EventFilter::All, None).await.unwrap();
    let started = std::time::Instant::now();
    fleet.start_device("offline", None).await.unwrap();

    let mut reasons = Vec::new();
    for _ in 0..5 {
        let disconnected = until_status(&mut events, "DISCONNECTED").await;
        reasons.push(disconnected["reason"].as_str().unwrap().to_owned());
    }
    assert!(
        reasons.iter().all(|r| r.contains("connection refused")),
        "{reasons:?}"
    );
    let device = fleet.catalog().device("offline").await.unwrap();
    assert_ne!(device.status.as_str(), "FAILED");

    // Stopping ends the retries; until then they were paced, not spinning: every delay
    // is at least half of reconnect_min (5 ms).
    fleet.stop_device("offline", None).await.unwrap();
    let elapsed_ms = started.elapsed().as_millis() as u32;
    let opens = links.opens.load(Ordering::SeqCst);
    assert!(
        opens >= 5 && opens <= 1 + elapsed_ms / 5,
        "{opens} attempts in {elapsed_ms} ms"
    );
    assert_eq!(
        fleet
            .catalog()
            .device("offline")
            .await
            .unwrap()
            .status
            .as_str(),
        "STOPPED"
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_device_stuck_in_its_handshake_delays_no_other_device() {
    let dir = tempfile::tempdir().unwrap();
    let (fleet, bus) = fleet(dir.path(), Arc::new(HangingLink)).await;
    for id in ["slow-1", "fast-1", "fast-2"] {
        create(&fleet, id).await;
    }
    let mut events = bus.subscribe(EventFilter::All, None).await.unwrap();
    fleet.start_device("slow-1", None).await.unwrap();
    fleet.start_device("fast-1", None).await.unwrap();
    until_status(&mut events, "READY").await;

    // The stop of the stuck device waits for its handshake, then kills it; meanwhile
    // other devices start and stop at once.
    let stopping = {
        let fleet = fleet.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            fleet.stop_device("slow-1", None).await.unwrap();
            started.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    fleet.stop_device("fast-1", None).await.unwrap();
    fleet.start_device("fast-2", None).await.unwrap();
    until_status(&mut events, "READY").await;
    let others = started.elapsed();
    assert!(
        others < Duration::from_secs(1),
        "another device's stop and start took {others:?}"
    );
    let slow = stopping.await.unwrap();
    assert!(
        slow >= STOP_TIMEOUT && slow < STOP_TIMEOUT + Duration::from_secs(3),
        "the stuck device stopped after {slow:?}"
    );
    assert!(!fleet.is_running("slow-1"));
    fleet.shutdown().await;
}
