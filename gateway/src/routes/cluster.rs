//! `GET /v1/cluster` (admin of every tenant): the nodes, the shards they hold and the
//! shards being recovered, as this gateway knows them. The rules (what "held" and
//! "recovering" mean) are the node crate's: [`wafleet_node::cluster::overview`]; this
//! file only gathers and shapes.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_node::cluster::overview::{Mode, NodeOverview, Recovering};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};

/// How the API runs.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClusterMode {
    /// One process: devices run in the gateway's own process.
    Standalone,
    /// Gateways in front of nodes that lease shards.
    Cluster,
}

/// The cluster.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterDto {
    pub mode: ClusterMode,
    /// The cluster's shard count; 0 in standalone.
    pub shards: u32,
    /// The live nodes this gateway hears (the process itself in standalone), by name.
    pub nodes: Vec<ClusterNode>,
    /// Shards whose placement owner does not hold a live lease on them: a failover or
    /// a hand-off under way. Their devices may answer 503 meanwhile. By shard.
    pub recovering: Vec<RecoveringShard>,
    /// Every device of every tenant, as counted at most a second ago.
    pub devices: u64,
}

/// A live node.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterNode {
    pub name: String,
    /// Where the node serves HTTP (`/healthz`, `/metrics`), as it says.
    pub http_addr: Option<String>,
    /// Devices with an actor on the node now, from its last heartbeat.
    pub devices_running: u32,
    /// Shards the node holds a live lease on.
    pub shards_held: u32,
    /// Shards placement gives the node.
    pub shards_placed: u32,
}

/// A shard being recovered.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveringShard {
    pub shard: u32,
    /// The node placement gives the shard to.
    pub placed_on: String,
    /// The node that holds a live lease on it now; null when none does.
    pub held_by: Option<String>,
}

impl From<NodeOverview> for ClusterNode {
    fn from(node: NodeOverview) -> ClusterNode {
        ClusterNode {
            name: node.name,
            http_addr: node.http_addr,
            devices_running: node.devices_running,
            shards_held: node.shards_held,
            shards_placed: node.shards_placed,
        }
    }
}

impl From<Recovering> for RecoveringShard {
    fn from(shard: Recovering) -> RecoveringShard {
        RecoveringShard {
            shard: shard.shard,
            placed_on: shard.placed_on,
            held_by: shard.held_by,
        }
    }
}

#[utoipa::path(get, path = "/v1/cluster", tag = "cluster",
    description = "The cluster as this gateway knows it (admin of every tenant): the live nodes with the devices \
each runs and the shards each holds and is placed, the shards being recovered (placed on a node that does not \
hold a live lease on them yet: a failover or a hand-off under way), and the number of devices. In standalone: \
one node, no shards.",
    responses((status = 200, body = ClusterDto),
        (status = 403, description = "not an admin of every tenant", body = ErrorBody),
        (status = 503, description = "the store did not answer", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn cluster(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<ClusterDto>, ApiError> {
    caller.require_operator()?;
    let overview = state.devices.cluster().await?;
    let devices = state
        .catalog
        .recent_census()
        .await?
        .iter()
        .map(|(_, n)| n)
        .sum();
    Ok(Json(ClusterDto {
        mode: match overview.mode {
            Mode::Standalone => ClusterMode::Standalone,
            Mode::Cluster => ClusterMode::Cluster,
        },
        shards: overview.shards,
        nodes: overview.nodes.into_iter().map(ClusterNode::from).collect(),
        recovering: overview
            .recovering
            .into_iter()
            .map(RecoveringShard::from)
            .collect(),
        devices,
    }))
}

/// The route of this file, with its OpenAPI path.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(cluster))
}
