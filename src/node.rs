//! `wafleet node --config FILE`: one cluster node. This loads the settings and opens
//! what the node runs with (master key, store, Redis event bus, link factory, HTTP
//! listener); [`NodeProcess::run`] in the node crate does the rest: it joins the
//! cluster, leases the shards placed on it and runs their devices, and serves
//! `/healthz`, `/readyz`, `/metrics` and `/cluster/members`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use wafleet_cluster_config::{LinkKind, NodeSettings};
use wafleet_node::events::{EventBus, RedisBusConfig};
use wafleet_node::link::{LinkFactory, SimLinkFactory, WhatsAppConfig, WhatsAppLinkFactory};
use wafleet_node::process::NodeProcess;
use wafleet_node::seal::data_keys::DataKeys;
use wafleet_node::store::Store;

use crate::standalone::{bind_addr, sim_dialer};

pub(crate) async fn run(
    config: PathBuf,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let settings = NodeSettings::load(&config)?;
    // Before the store is opened: a node without its key must not touch the store.
    let sealer = Arc::new(crate::keys::cluster_sealer(&settings.store)?);
    let store: Arc<dyn Store> =
        crate::store::open(&settings.store, settings.cluster.shards).await?;
    let bus = EventBus::redis(RedisBusConfig {
        per_device_cap: settings.redis.stream_max_len as usize,
        keys: Some(Arc::new(DataKeys::new(store.clone(), sealer.clone()))),
        ..RedisBusConfig::new(settings.redis.url.clone())
    })
    .await
    .context("cannot reach redis")?;
    let links: Arc<dyn LinkFactory> = match settings.link.kind {
        LinkKind::Sim => Arc::new(SimLinkFactory::new(sim_dialer(&settings.link.sim_urls())?)),
        LinkKind::Whatsapp => Arc::new(WhatsAppLinkFactory::new(WhatsAppConfig {
            ws_url: settings.link.whatsapp_url.clone(),
            version: settings.link.whatsapp_version,
        })?),
    };
    let http = bind_addr(settings.node.http_listen).await?;
    let prometheus = wafleet_gateway::metrics::prometheus();
    let process = NodeProcess {
        settings,
        store,
        sealer,
        bus,
        links,
        http,
        render_metrics: Arc::new(move || prometheus.render()),
    };
    process.run(shutdown).await.map_err(|error| anyhow!(error))
}
