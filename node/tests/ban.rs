//! A temporary ban from WhatsApp holds the device's reconnects until the ban ends:
//! connecting again while banned (every 30 s, as a plain disconnect would) risks a
//! longer ban.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use wafleet_node::events::{BusConfig, EventBus};
use wafleet_node::link::{
    LinkCommand, LinkContext, LinkError, LinkEvent, LinkFactory, LinkSession,
};
use wafleet_node::seal::{MasterKey, Sealer};
use wafleet_node::store::{DeviceStatus, SqliteStore, TrustLevel};
use wafleet_node::{Fleet, NewDevice, NodeConfig};

const BAN: Duration = Duration::from_millis(1500);

/// First connection: paired, then banned and cut off. Later ones connect.
#[derive(Debug, Default, Clone)]
struct BanningLink {
    opens: Arc<Mutex<Vec<Instant>>>,
}

#[derive(Debug)]
struct Session;

impl LinkSession for Session {
    fn command(&mut self, _command: LinkCommand) -> Result<(), LinkError> {
        Ok(())
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[async_trait]
impl LinkFactory for BanningLink {
    async fn open(&self, ctx: LinkContext) -> Result<Box<dyn LinkSession>, LinkError> {
        let first = {
            let mut opens = self.opens.lock().unwrap();
            opens.push(Instant::now());
            opens.len() == 1
        };
        let phone = "6281000000009".to_owned();
        if first {
            ctx.events.emit(LinkEvent::Paired { phone });
            ctx.events.emit(LinkEvent::Banned {
                until_ms: now_ms() + BAN.as_millis() as i64,
            });
            ctx.events.emit(LinkEvent::Disconnected {
                reason: "temporarily banned by WhatsApp (101)".into(),
            });
        } else {
            ctx.events.emit(LinkEvent::Connected { phone });
        }
        Ok(Box::new(Session))
    }
}

#[tokio::test]
async fn a_banned_device_does_not_reconnect_before_the_ban_ends() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("w.db")).unwrap());
    let config = NodeConfig {
        connect_jitter: Duration::ZERO,
        reconnect_min: Duration::from_millis(10),
        reconnect_max: Duration::from_millis(50),
        ..NodeConfig::default()
    };
    let link = BanningLink::default();
    let fleet = Fleet::start(
        config,
        store,
        Arc::new(Sealer::new(MasterKey::new(1, [5u8; 32]))),
        EventBus::in_memory(BusConfig::default()),
        Arc::new(link.clone()),
    )
    .await
    .unwrap();
    fleet
        .catalog()
        .create_device(NewDevice {
            id: "b".into(),
            name: "b".into(),
            trust_level: TrustLevel::Trusted,
        })
        .await
        .unwrap();
    fleet.start_device("b", None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while link.opens.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "never reconnected after the ban");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let opens = link.opens.lock().unwrap().clone();
    let waited = opens[1] - opens[0];
    assert!(
        waited >= BAN - Duration::from_millis(100),
        "reconnected {waited:?} after a ban of {BAN:?}"
    );
    assert!(waited < BAN + Duration::from_secs(2), "{waited:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while fleet.catalog().device("b").await.unwrap().status != DeviceStatus::Ready {
        assert!(Instant::now() < deadline, "not READY again after the ban");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("reconnected {waited:?} after the first connection (ban {BAN:?})");
    fleet.shutdown().await;
}
