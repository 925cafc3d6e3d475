//! What the node's integration tests with a scripted link share: a fleet on a fresh
//! SQLite store and one VERIFIED device on it, READY.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wafleet_cluster_config::QuotaTable;
use wafleet_node::events::{BusConfig, EventBus};
use wafleet_node::link::LinkFactory;
use wafleet_node::seal::{MasterKey, Sealer};
use wafleet_node::store::{DeviceStatus, SqliteStore, Store, TrustLevel};
use wafleet_node::{Fleet, NewDevice, NodeConfig};

/// A fleet over `link` with `config` (its connect jitter zeroed), the quota table
/// `quotas` if given, and the VERIFIED device `id` started and READY. Keep the folder
/// for as long as the fleet runs.
pub(crate) async fn fleet_with_ready_device(
    config: NodeConfig,
    link: Arc<dyn LinkFactory>,
    quotas: Option<QuotaTable>,
    id: &str,
) -> (tempfile::TempDir, Fleet) {
    fleet_with_ready_device_on(|store| store, config, link, quotas, id).await
}

/// [`fleet_with_ready_device`] on the store `wrap` makes of the fresh SQLite store (a
/// [`MeteredStore`](wafleet_node::store::MeteredStore) with a hook, say).
pub(crate) async fn fleet_with_ready_device_on(
    wrap: impl FnOnce(Arc<dyn Store>) -> Arc<dyn Store>,
    config: NodeConfig,
    link: Arc<dyn LinkFactory>,
    quotas: Option<QuotaTable>,
    id: &str,
) -> (tempfile::TempDir, Fleet) {
    let dir = tempfile::tempdir().unwrap();
    let store = wrap(Arc::new(
        SqliteStore::open(&dir.path().join("w.db")).unwrap(),
    ));
    let fleet = Fleet::start(
        NodeConfig {
            connect_jitter: Duration::ZERO,
            ..config
        },
        store,
        Arc::new(Sealer::new(MasterKey::new(1, [5u8; 32]))),
        EventBus::in_memory(BusConfig::default()),
        link,
    )
    .await
    .unwrap();
    if let Some(quotas) = quotas {
        fleet.catalog().set_quota_table(quotas).await.unwrap();
        fleet.refresh_settings().await.unwrap();
    }
    fleet
        .catalog()
        .create_device(NewDevice {
            id: id.into(),
            name: id.into(),
            trust_level: TrustLevel::Verified,
        })
        .await
        .unwrap();
    fleet.start_device(id, None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while fleet.catalog().device(id).await.unwrap().status != DeviceStatus::Ready {
        assert!(Instant::now() < deadline, "never READY");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (dir, fleet)
}
