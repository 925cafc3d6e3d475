//! What a scenario runs against: one `wafleet standalone --link sim` process, or a
//! local cluster (simulators, redis, nodes and a gateway).

use std::path::Path;
use std::sync::Arc;

use super::cluster::{GatewayProcess, LocalCluster, NodeProcess};
use super::process::{RedisServer, Standalone};
use super::sims::{Network, Sims, files_limit, sims_for};

/// What a scenario runs against: a standalone process or a local cluster.
#[derive(Debug)]
pub(crate) enum Target {
    Standalone {
        app: Standalone,
        _data: tempfile::TempDir,
    },
    Cluster {
        /// Boxed: the variants' sizes stay close.
        gateway: Box<GatewayProcess>,
        nodes: Vec<NodeProcess>,
        _redis: RedisServer,
        sims: Arc<Sims>,
        _dir: tempfile::TempDir,
        /// Cluster traffic over mutual TLS.
        tls: bool,
    },
}

impl Target {
    /// Started, with the quota table unthrottled: one standalone process (`nodes` 0,
    /// with `env` set as well) or a local cluster of `nodes` nodes and a gateway, with
    /// `sims` simulators (default: as many as `devices` need), its traffic encrypted
    /// when `tls`.
    pub(crate) async fn start(
        wafleet: &Path,
        nodes: usize,
        devices: usize,
        sims: Option<usize>,
        env: &[(&str, &str)],
        tls: bool,
    ) -> anyhow::Result<Target> {
        if nodes == 0 {
            let data = tempfile::tempdir()?;
            let app = Standalone::start_with_env(wafleet, data.path(), env).await?;
            return Ok(Target::Standalone { app, _data: data });
        }
        let sims = sims.unwrap_or_else(|| sims_for(devices, files_limit()));
        let cluster = LocalCluster::start_with(wafleet, nodes, sims, tls).await?;
        Ok(Target::Cluster {
            gateway: Box::new(cluster.gateway),
            nodes: cluster.nodes,
            _redis: cluster.redis,
            sims: Arc::new(cluster.sims),
            _dir: cluster.dir,
            tls,
        })
    }

    /// `http://…` of the API the messages go through.
    pub(crate) fn api(&self) -> &str {
        match self {
            Target::Standalone { app, .. } => &app.base,
            Target::Cluster { gateway, .. } => &gateway.base,
        }
    }

    pub(crate) fn network(&self) -> Network {
        match self {
            Target::Standalone { app, .. } => Network::One(app.base.clone()),
            Target::Cluster { sims, .. } => Network::Processes(sims.clone()),
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Target::Standalone { .. } => "standalone",
            Target::Cluster { .. } => "cluster",
        }
    }

    /// The wafleet processes (not the simulators nor redis), named `standalone`,
    /// `gateway` and the nodes' names, with their pids.
    pub(crate) fn processes(&self) -> Vec<(String, u32)> {
        match self {
            Target::Standalone { app, .. } => app
                .pid()
                .map(|pid| ("standalone".to_owned(), pid))
                .into_iter()
                .collect(),
            Target::Cluster { gateway, nodes, .. } => gateway
                .pid()
                .map(|pid| ("gateway".to_owned(), pid))
                .into_iter()
                .chain(
                    nodes
                        .iter()
                        .filter_map(|node| node.pid().map(|pid| (node.name.clone(), pid))),
                )
                .collect(),
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Target::Standalone { .. } => "standalone (simulator in process)".to_owned(),
            Target::Cluster {
                nodes, sims, tls, ..
            } => format!(
                "a cluster of {} nodes and a gateway ({} simulators, cluster traffic {})",
                nodes.len(),
                sims.len(),
                if *tls { "over mutual TLS" } else { "in clear" }
            ),
        }
    }
}
