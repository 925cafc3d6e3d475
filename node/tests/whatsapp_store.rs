//! whatsapp-rust's storage traits on the embedded SQLite store: the whole suite
//! (every trait method round-trips, a restored client keeps its identity, writes are
//! fenced, nothing is stored in clear). The suite is generic over `Arc<dyn Store>`:
//! another store runs it by calling `conformance::run_all` on an instance of its own.

use std::sync::Arc;

use wafleet_node::link::whatsapp::conformance;
use wafleet_node::seal::{MasterKey, Sealer};
use wafleet_node::store::{SqliteStore, Store};
use wafleet_node::vault::Vault;

#[tokio::test]
async fn the_whatsapp_storage_suite_passes_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("wafleet.db")).expect("open"));
    conformance::run_all(store).await;
}

fn vault(store: Arc<dyn Store>) -> Vault {
    Vault::new(store, Arc::new(Sealer::new(MasterKey::new(1, [3u8; 32]))))
}

#[tokio::test]
async fn a_client_restored_after_the_process_restarts_keeps_the_device_identity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wafleet.db");
    let saved = {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).expect("open"));
        conformance::create_starting_device(store.as_ref(), "phone-1").await;
        conformance::identity(vault(store).device("phone-1", None)).await
    };
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).expect("reopen"));
    let restored = conformance::identity(vault(store).device("phone-1", None)).await;
    assert_eq!(
        saved, restored,
        "identity key, noise key and registration id survive a restart"
    );
}
