//! `wafleet node --config FILE`: one cluster node.
//!
//! It joins the cluster (ractor_cluster, cookie), follows membership by heartbeats,
//! leases the shards placed on it and runs their devices, appends device events to Redis,
//! and serves `/healthz`, `/readyz`, `/metrics` and `/cluster/members` over HTTP.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
use tokio::sync::watch;
use wafleet_cluster_config::{LinkKind, MasterKeySource, NodeSettings, StoreSettings};
use wafleet_node::cluster::shards::{HeldShards, ShardTimings, keep_shards};
use wafleet_node::cluster::{ClusterOptions, join};
use wafleet_node::events::{EventBus, RedisBusConfig};
use wafleet_node::link::ws::WsDialer;
use wafleet_node::link::{LinkFactory, SimLinkFactory, WhatsAppConfig, WhatsAppLinkFactory};
use wafleet_node::seal::{
    MasterKey, Sealer, load_master_key_file, load_or_create_master_key, master_key_from_env,
};
use wafleet_node::store::Store;
use wafleet_node::{Fleet, NodeConfig};

use crate::standalone::{announce, bind_addr};

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
    let links: Arc<dyn LinkFactory> = match (settings.link.kind, &settings.link.sim_url) {
        (LinkKind::Sim, Some(url)) => Arc::new(SimLinkFactory::new(Arc::new(WsDialer::new(url)))),
        (LinkKind::Sim, None) => bail!("[link] kind = \"sim\" needs sim_url"),
        (LinkKind::Whatsapp, _) => Arc::new(WhatsAppLinkFactory::new(WhatsAppConfig::default())),
    };
    let name = settings.node.name.clone();
    let fleet = Fleet::start(
        NodeConfig {
            node_name: name.clone(),
            connect_concurrency: settings.recovery.concurrency,
            connect_jitter: settings.recovery.jitter,
            resume_all: false,
            ..NodeConfig::default()
        },
        store.clone(),
        Arc::new(Sealer::new(master_key)),
        bus,
        links,
    )
    .await
    .context("cannot start the fleet")?;

    let owned = HeldShards::new(&name, settings.cluster.shards);
    let http = bind_addr(settings.node.http_listen).await?;
    let http_addr = http.local_addr()?.to_string();
    let cluster = join(ClusterOptions {
        name: name.clone(),
        cookie: settings.cluster.cookie.expose().to_owned(),
        listen: settings.node.cluster_listen,
        advertise_host: settings.node.advertised_host(),
        seeds: settings.node.seeds.clone(),
        heartbeat_interval: settings.cluster.heartbeat_interval,
        failure_timeout: settings.cluster.failure_timeout,
        member: true,
        http_addr,
        fleet: Some(fleet.clone()),
        ownership: Arc::new(owned.clone()),
    })
    .await?;
    let members = cluster.members();
    let (held, held_shards) = watch::channel(0usize);
    let (leave, leaving) = watch::channel(false);
    let keeper = tokio::spawn(keep_shards(
        fleet.clone(),
        store,
        ShardTimings {
            ttl: settings.lease.ttl,
            renew_interval: settings.lease.renew_interval,
        },
        members.clone(),
        owned,
        held,
        leaving,
    ));
    // On SIGTERM (or ^C): hand every shard off, then tell the peers, then stop serving.
    // Handing off first (devices stopped, leases released) means that the peers, once
    // they hear this node is leaving, are granted its shards at once instead of waiting
    // for the leases to expire; the gateway keeps any message sent meanwhile.
    let (left, left_rx) = tokio::sync::oneshot::channel::<()>();
    let host = cluster.host();
    let beat = settings.cluster.heartbeat_interval;
    tokio::spawn(async move {
        shutdown.await;
        println!("leaving: handing shards off");
        let _ = leave.send(true);
        match tokio::time::timeout(HANDOFF_TIMEOUT, keeper).await {
            Ok(_) => println!("shards: 0"),
            Err(_) => {
                eprintln!("handoff did not finish in {HANDOFF_TIMEOUT:?}; leases will expire")
            }
        }
        let _ = host.cast(wafleet_node::cluster::host::HostMsg::Leave);
        // Two heartbeat intervals for the word to reach every peer (it is repeated with
        // every heartbeat until the process ends).
        tokio::time::sleep(beat * 2).await;
        println!("left the cluster");
        let _ = left.send(());
    });

    let prometheus = wafleet_gateway::metrics::prometheus();
    let metrics_fleet = fleet.clone();
    let router = axum::Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route(
            "/readyz",
            get(|| async { Json(json!({"status": "ready"})) }),
        )
        .route(
            "/metrics",
            get(move || {
                let (prometheus, fleet) = (prometheus.clone(), metrics_fleet.clone());
                async move {
                    // Devices by status come from the shared store: every node reports the
                    // cluster's counts (sum nothing across nodes; take any one).
                    if let Err(error) = fleet.refresh_metrics().await {
                        tracing::warn!(%error, "cannot refresh device gauges");
                    }
                    prometheus.render()
                }
            }),
        )
        .route("/cluster/members", get(members_route))
        .with_state((name, members.clone()));
    announce(&http)?;
    tokio::spawn(print_changes("members", members, |m| m.join(",")));
    tokio::spawn(print_changes("shards", held_shards, usize::to_string));
    wafleet_gateway::serve(http, router, async {
        let _ = left_rx.await;
    })
    .await?;
    drop(cluster);
    fleet.shutdown().await;
    Ok(())
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

/// The longest a node waits for its shards to be handed off when asked to stop.
const HANDOFF_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

async fn members_route(
    State((name, members)): State<(String, watch::Receiver<Vec<String>>)>,
) -> impl IntoResponse {
    Json(json!({"node": name, "members": *members.borrow()}))
}

/// Prints `LABEL: VALUE` on stdout at every change (`members: a,b,c`, `shards: 512`), for
/// people and scripts.
pub(crate) async fn print_changes<T>(
    label: &'static str,
    mut values: watch::Receiver<T>,
    show: impl Fn(&T) -> String,
) {
    loop {
        println!("{label}: {}", show(&values.borrow_and_update()));
        if values.changed().await.is_err() {
            return;
        }
    }
}
