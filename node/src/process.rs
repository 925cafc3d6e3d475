//! A cluster node as a process: its fleet, its place in the cluster, the shard keeper,
//! its small HTTP server (`/healthz`, `/readyz`, `/metrics`, `/cluster/members`) and
//! the SIGTERM choreography. The `wafleet node` command only loads the settings, opens
//! the store, the event bus and the link factory, and calls [`NodeProcess::run`].

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use wafleet_cluster_config::NodeSettings;

use crate::clock::Clock;
use crate::cluster::host::HostMsg;
use crate::cluster::shards::{HeldShards, ShardTimings, keep_shards};
use crate::cluster::tls::ClusterTls;
use crate::cluster::{ClusterOptions, join};
use crate::context::NodeConfig;
use crate::events::EventBus;
use crate::fleet::Fleet;
use crate::link::LinkFactory;
use crate::seal::Sealer;
use crate::store::Store;

/// The longest a node waits for its shards to be handed off when asked to stop.
const HANDOFF_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a node process could not run.
pub type RunError = Box<dyn std::error::Error + Send + Sync>;

/// Everything a node process runs with, opened by the caller.
pub struct NodeProcess {
    pub settings: NodeSettings,
    pub store: Arc<dyn Store>,
    pub sealer: Arc<Sealer>,
    pub bus: EventBus,
    pub links: Arc<dyn LinkFactory>,
    /// Where `/healthz`, `/readyz`, `/metrics` and `/cluster/members` are served.
    pub http: TcpListener,
    /// Renders the process's Prometheus text (the recorder is the process's, shared
    /// with any gateway code it links).
    pub render_metrics: Arc<dyn Fn() -> String + Send + Sync>,
}

impl std::fmt::Debug for NodeProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeProcess")
            .field("node", &self.settings.node.name)
            .finish_non_exhaustive()
    }
}

impl NodeProcess {
    /// Runs the node until `shutdown` completes, then leaves the cluster cleanly: on
    /// SIGTERM (or ^C) it hands every shard off, then tells the peers, then stops
    /// serving. Handing off first (devices stopped, leases released) means that the
    /// peers, once they hear this node is leaving, are granted its shards at once
    /// instead of waiting for the leases to expire; the gateway keeps any message sent
    /// meanwhile.
    ///
    /// Prints `listening on http://ADDR`, then `members: a,b,c` and `shards: N` at
    /// every change, for people and scripts.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RunError> {
        let NodeProcess {
            settings,
            store,
            sealer,
            bus,
            links,
            http,
            render_metrics,
        } = self;
        let name = settings.node.name.clone();
        // Before anything starts: a bad certificate stops the node here.
        let tls = ClusterTls::from_settings(&settings.cluster.tls)?;
        let media = crate::media::open(&settings.media)
            .await
            .map_err(|error| format!("cannot open the media storage: {error}"))?;
        let fleet = Fleet::start(
            NodeConfig {
                node_name: name.clone(),
                connect_concurrency: settings.recovery.concurrency,
                connect_jitter: settings.recovery.jitter,
                resume_all: false,
                webhooks: settings.webhooks.clone(),
                media: Some(media),
                media_limits: settings.media.limits.clone(),
                media_allow_private_urls: settings.media.allow_private_urls,
                ..NodeConfig::default()
            },
            store.clone(),
            sealer,
            bus,
            links,
        )
        .await
        .map_err(|error| format!("cannot start the fleet: {error}"))?;

        let owned = HeldShards::new(&name, settings.cluster.shards);
        {
            let owned = owned.clone();
            let total = settings.cluster.shards;
            fleet.set_webhook_ownership(Arc::new(move |device_id: &str| {
                owned
                    .fence_of(wafleet_cluster_config::shard_of(device_id, total))
                    .is_some()
            }));
        }
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
            tls,
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
                reconcile_interval: settings.recovery.reconcile,
                clock: Clock::system(),
            },
            members.clone(),
            owned,
            held,
            leaving,
        ));
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
            let _ = host.cast(HostMsg::Leave);
            // Two heartbeat intervals for the word to reach every peer (it is repeated
            // with every heartbeat until the process ends).
            tokio::time::sleep(beat * 2).await;
            println!("left the cluster");
            let _ = left.send(());
        });

        let router = router(fleet.clone(), render_metrics, name, members.clone());
        println!("listening on http://{}", http.local_addr()?);
        tokio::spawn(print_changes("members", members, |m| m.join(",")));
        tokio::spawn(print_changes("shards", held_shards, usize::to_string));
        wafleet_http_edge::serve(
            crate::open_files::Listener::new(http),
            router,
            wafleet_http_edge::Edge::new("node", settings.http),
            async {
                let _ = left_rx.await;
            },
        )
        .await?;
        drop(cluster);
        fleet.shutdown().await;
        Ok(())
    }
}

/// The node's HTTP routes.
fn router(
    fleet: Fleet,
    render_metrics: Arc<dyn Fn() -> String + Send + Sync>,
    name: String,
    members: watch::Receiver<Vec<String>>,
) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route(
            "/readyz",
            get(|| async { Json(json!({"status": "ready"})) }),
        )
        .route(
            "/metrics",
            get(move || {
                let (render, fleet) = (render_metrics.clone(), fleet.clone());
                async move {
                    // Devices by status come from the shared store: every node reports
                    // the cluster's counts (sum nothing across nodes; take any one).
                    if let Err(error) = fleet.refresh_metrics().await {
                        tracing::warn!(%error, "cannot refresh device gauges");
                    }
                    render()
                }
            }),
        )
        .route("/cluster/members", get(members_route))
        .with_state((name, members))
}

async fn members_route(
    State((name, members)): State<(String, watch::Receiver<Vec<String>>)>,
) -> impl IntoResponse {
    Json(json!({"node": name, "members": *members.borrow()}))
}

/// Prints `LABEL: VALUE` on stdout at every change (`members: a,b,c`, `shards: 512`), for
/// people and scripts.
pub async fn print_changes<T>(
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
