//! `wafleet gateway --config FILE`: one stateless gateway replica.
//!
//! It joins the cluster as an observer (it hears heartbeats, it is not a member), sends
//! each device call to the node that owns the device by placement, reads lists and
//! records from the shared store, and serves SSE from the Redis event streams.
//!
//! `/metrics` is served on the API's listener, or, with `gateway.metrics_listen`, on
//! that address only (the API's listener answers it 404), so that it can stay off the
//! public port.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use wafleet_cluster_config::GatewaySettings;
use wafleet_gateway::remote::RemoteDevices;
use wafleet_gateway::resolver::PlacementResolver;
use wafleet_gateway::{AppState, Edge};
use wafleet_node::catalog::Catalog;
use wafleet_node::cluster::ownership::AlwaysOwned;
use wafleet_node::cluster::tls::ClusterTls;
use wafleet_node::cluster::{ClusterOptions, join};
use wafleet_node::events::{EventBus, RedisBusConfig};
use wafleet_node::media::MediaLibrary;
use wafleet_node::seal::data_keys::DataKeys;
use wafleet_node::store::Store;

use crate::standalone::{announce, bind_addr};

pub(crate) async fn run(
    config: PathBuf,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let settings = GatewaySettings::load(&config)?;
    // Before anything starts: a bad certificate stops the gateway here.
    let tls = ClusterTls::from_settings(&settings.cluster.tls)?;
    let admin_key = std::env::var("WAFLEET_ADMIN_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty())
        .context("a gateway needs WAFLEET_ADMIN_KEY (the same on every replica)")?;
    // Message texts and event payloads are sealed at rest: the gateway opens them with
    // the same keys as the nodes.
    let sealer = Arc::new(crate::keys::cluster_sealer(&settings.store)?);
    let store: Arc<dyn Store> =
        crate::store::open(&settings.store, settings.cluster.shards).await?;
    wafleet_node::seal::key_check::verify(store.as_ref(), &sealer)
        .await
        .context("cannot start the gateway")?;
    let keys = Arc::new(DataKeys::new(store.clone(), sealer));
    let bus = EventBus::redis(RedisBusConfig {
        per_device_cap: settings.redis.stream_max_len as usize,
        keys: Some(keys.clone()),
        ..RedisBusConfig::new(settings.redis.url.clone())
    })
    .await
    .context("cannot reach redis")?;
    let http = bind_addr(settings.gateway.listen).await?;
    let metrics_http = match settings.gateway.metrics_listen {
        Some(addr) => Some(bind_addr(addr).await?),
        None => None,
    };
    let cluster = join(ClusterOptions {
        name: settings.gateway.name.clone(),
        cookie: settings.cluster.cookie.expose().to_owned(),
        listen: settings.gateway.cluster_listen,
        advertise_host: settings.gateway.advertised_host(),
        seeds: settings.gateway.seeds.clone(),
        heartbeat_interval: settings.cluster.heartbeat_interval,
        failure_timeout: settings.cluster.failure_timeout,
        member: false,
        http_addr: http.local_addr()?.to_string(),
        fleet: None,
        ownership: Arc::new(AlwaysOwned),
        tls,
    })
    .await?;
    let members = cluster.members();
    let resolver = PlacementResolver::new(settings.cluster.shards, members.clone())
        .with_details(cluster.member_details());
    let media = wafleet_node::media::open(&settings.media)
        .await
        .context("cannot open the media storage")?;
    let media = Arc::new(
        MediaLibrary::new(media, keys.clone(), settings.media.limits.clone())
            .allowing_private_urls(settings.media.allow_private_urls),
    );
    let catalog = Catalog::new(store, keys);
    let devices = RemoteDevices::new(Arc::new(resolver), catalog.clone())
        .with_timeout(settings.gateway.request_timeout);
    let state = AppState::new(Arc::new(devices), catalog, bus, media, admin_key);
    let (router, metrics_server) = match metrics_http {
        None => (wafleet_gateway::router(state), None),
        Some(listener) => {
            println!("metrics on http://{}", listener.local_addr()?);
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(wafleet_gateway::serve(
                listener,
                wafleet_gateway::metrics_router(state.clone()),
                Edge::new("metrics", settings.http),
                async {
                    let _ = stopped.await;
                },
            ));
            (
                wafleet_gateway::router_without_metrics(state),
                Some((stop, server)),
            )
        }
    };
    announce(&http)?;
    tokio::spawn(wafleet_node::process::print_changes(
        "members",
        members,
        |m| m.join(","),
    ));
    let served =
        wafleet_gateway::serve(http, router, Edge::new("api", settings.http), shutdown).await;
    if let Some((stop, server)) = metrics_server {
        let _ = stop.send(());
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "the metrics listener failed"),
            Err(error) => tracing::warn!(%error, "the metrics listener panicked"),
        }
    }
    served?;
    drop(cluster);
    Ok(())
}
