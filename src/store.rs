//! Opens the store a node or gateway is configured with (`[store] kind`), metered
//! (every call timed, every error counted: `wafleet_store_*`).

use std::sync::Arc;

use anyhow::Context;
use wafleet_cluster_config::{StoreKind, StoreSettings};
use wafleet_node::store::scylla::schema::KeyspaceOptions;
use wafleet_node::store::{MeteredStore, ScyllaConfig, ScyllaStore, SqliteStore, Store};

/// The configured store, ready: SQLite opened and migrated, or ScyllaDB connected with
/// its keyspace and tables created or migrated. `shards` is the cluster's shard count
/// (`cluster.shards`): the store records it the first time and refuses another one.
pub(crate) async fn open(settings: &StoreSettings, shards: u32) -> anyhow::Result<Arc<dyn Store>> {
    let store: Arc<dyn Store> = match settings.kind {
        StoreKind::Sqlite => Arc::new(
            SqliteStore::open_with_shards(&settings.sqlite.path, shards)
                .context("cannot open the store")?,
        ),
        StoreKind::Scylla => {
            let scylla = &settings.scylla;
            let config = ScyllaConfig {
                uris: scylla.uris.clone(),
                keyspace: KeyspaceOptions {
                    name: scylla.keyspace.clone(),
                    replication_factor: scylla.replication_factor,
                    tablets: scylla.tablets,
                },
                local_dc: scylla.local_dc.clone(),
                request_timeout: scylla.request_timeout_ms,
                connect_timeout: scylla.connect_timeout_ms,
                shards,
            };
            Arc::new(
                ScyllaStore::connect(&config)
                    .await
                    .context("cannot open the scylla store")?,
            )
        }
    };
    Ok(Arc::new(MeteredStore::new(store)))
}
