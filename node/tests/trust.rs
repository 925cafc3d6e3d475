//! Trust levels over time, on a running fleet: a NEWCOMER that stays linked and READY
//! becomes TRUSTED by itself, without a restart (with the week shortened to 300 ms).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use wafleet_node::events::{BusConfig, EventBus, EventFilter};
use wafleet_node::link::{
    LinkCommand, LinkContext, LinkError, LinkEvent, LinkFactory, LinkSession,
};
use wafleet_node::seal::{MasterKey, Sealer};
use wafleet_node::store::{SqliteStore, TrustLevel};
use wafleet_node::{Fleet, NewDevice, NodeConfig};

/// Pairs at once; swallows every command.
#[derive(Debug)]
struct PairingLink;

#[derive(Debug)]
struct Session;

impl LinkSession for Session {
    fn command(&mut self, _command: LinkCommand) -> Result<(), LinkError> {
        Ok(())
    }
}

#[async_trait]
impl LinkFactory for PairingLink {
    async fn open(&self, ctx: LinkContext) -> Result<Box<dyn LinkSession>, LinkError> {
        ctx.events.emit(LinkEvent::Paired {
            phone: "6281000000001".into(),
        });
        Ok(Box::new(Session))
    }
}

#[tokio::test]
async fn a_newcomer_linked_long_enough_becomes_trusted_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("w.db")).unwrap());
    let bus = EventBus::in_memory(BusConfig::default());
    let config = NodeConfig {
        connect_jitter: Duration::ZERO,
        promote_after: Duration::from_millis(300),
        trust_check_interval: Duration::from_millis(100),
        ..NodeConfig::default()
    };
    let fleet = Fleet::start(
        config,
        store,
        Arc::new(Sealer::new(MasterKey::new(1, [5u8; 32]))),
        bus.clone(),
        Arc::new(PairingLink),
    )
    .await
    .unwrap();
    let mut events = bus.subscribe(EventFilter::All, None).await.unwrap();
    for (id, level) in [("new", TrustLevel::Newcomer), ("vip", TrustLevel::Verified)] {
        fleet
            .catalog()
            .create_device(NewDevice {
                id: id.into(),
                name: id.into(),
                trust_level: level,
            })
            .await
            .unwrap();
        fleet.start_device(id, None).await.unwrap();
    }
    let promoted = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let event = events.next().await.unwrap();
            if event.data["reason"] == "promoted" {
                return event;
            }
        }
    })
    .await
    .expect("promoted within 10 s");
    assert_eq!(promoted.device_id, "new");
    assert_eq!(promoted.data["trust_level"], "trusted");
    assert_eq!(
        fleet.catalog().device("new").await.unwrap().trust_level,
        TrustLevel::Trusted
    );
    let limits = fleet.limits("new").await.unwrap();
    assert_eq!(
        limits.trust_level,
        TrustLevel::Trusted,
        "the limiter uses the new level"
    );
    assert!(limits.linked_at_ms.is_some());
    assert_eq!(
        fleet.catalog().device("vip").await.unwrap().trust_level,
        TrustLevel::Verified,
        "only newcomers are promoted; VERIFIED stays"
    );
    fleet.shutdown().await;
}
