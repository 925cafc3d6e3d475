//! `wafleet node --config FILE`: one cluster node. This loads the settings and opens
//! what the node runs with (master key, store, Redis event bus, link factory, HTTP
//! listener); [`NodeProcess::run`] in the node crate does the rest: it joins the
//! cluster, leases the shards placed on it and runs their devices, and serves
//! `/healthz`, `/readyz`, `/metrics` and `/cluster/members`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use wafleet_cluster_config::{LinkKind, MasterKeySource, NodeSettings, StoreSettings};
use wafleet_node::events::{EventBus, RedisBusConfig};
use wafleet_node::link::{LinkFactory, SimLinkFactory, WhatsAppConfig, WhatsAppLinkFactory};
use wafleet_node::process::NodeProcess;
use wafleet_node::seal::{
    MasterKey, Sealer, load_master_key_file, load_or_create_master_key, master_key_from_env,
};
use wafleet_node::store::Store;

use crate::standalone::{bind_addr, sim_dialer};

pub(crate) async fn run(
    config: PathBuf,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let settings = NodeSettings::load(&config)?;
    // Before the store is opened: a node without its key must not touch the store.
    let master_key = master_key(
        &settings.store,
        std::env::var("WAFLEET_MASTER_KEY").ok().as_deref(),
    )?;
    let store: Arc<dyn Store> =
        crate::store::open(&settings.store, settings.cluster.shards).await?;
    let bus = EventBus::redis(RedisBusConfig {
        per_device_cap: settings.redis.stream_max_len as usize,
        ..RedisBusConfig::new(settings.redis.url.clone())
    })
    .await
    .context("cannot reach redis")?;
    let links: Arc<dyn LinkFactory> = match settings.link.kind {
        LinkKind::Sim => Arc::new(SimLinkFactory::new(sim_dialer(&settings.link.sim_urls())?)),
        LinkKind::Whatsapp => Arc::new(WhatsAppLinkFactory::new(WhatsAppConfig::default())),
    };
    let http = bind_addr(settings.node.http_listen).await?;
    let prometheus = wafleet_gateway::metrics::prometheus();
    let process = NodeProcess {
        settings,
        store,
        sealer: Arc::new(Sealer::new(master_key)),
        bus,
        links,
        http,
        render_metrics: Arc::new(move || prometheus.render()),
    };
    process.run(shutdown).await.map_err(|error| anyhow!(error))
}

/// The master key, the same on every node (each must open every device's credentials):
/// from `WAFLEET_MASTER_KEY` (`env_value`), else `store.master_key_file`, else, with
/// SQLite only, `master.key` beside the shared database file, created on first start.
/// With ScyllaDB and neither, the node refuses to start: a key it made up would differ
/// from every other node's.
fn master_key(store: &StoreSettings, env_value: Option<&str>) -> anyhow::Result<MasterKey> {
    let key = match store.master_key_source(env_value.is_some())? {
        MasterKeySource::Environment => master_key_from_env(env_value.unwrap_or_default()),
        MasterKeySource::File(path) => load_master_key_file(&path),
        MasterKeySource::BesideSqlite(dir) => load_or_create_master_key(&dir, None),
    };
    key.context("cannot load the master key")
}
