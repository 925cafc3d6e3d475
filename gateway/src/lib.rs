//! The wafleet HTTP API: REST + SSE over a [`DeviceApi`] and a
//! [`wafleet_node::catalog::Catalog`].
//!
//! Device commands go through [`DeviceApi::execute`]: in standalone to the local
//! [`wafleet_node::Fleet`], in a cluster through [`remote::RemoteDevices`] to the node
//! that owns the device. Reads come from the store through the catalog, and SSE from
//! the event bus, either way.
//!
//! # Layout
//! - [`device_api`]: [`DeviceApi`], where the routes send a device command.
//! - [`remote`]: [`remote::RemoteDevices`], that API over the cluster.
//! - [`routes`]: one file per resource (devices, qr, pairing, messages, events,
//!   compatibility routes, operational routes).
//! - [`dto`]: the JSON shapes; [`validate`]: checks of client values.
//! - [`error`]: [`error::ApiError`], the one error type, mapped to statuses in one place.
//! - [`extract`]: extractors whose rejections are API errors.
//! - `sse`: the body of an SSE response (frames rendered once, the heartbeat).
//! - [`auth`]: API keys. [`metrics`]: the Prometheus recorder and HTTP metrics.
//! - [`openapi`]: `/openapi.json`; `/docs` renders it.
//! - `ui`: the web dashboard at `/ui`, its files compiled in.

pub mod auth;
pub mod device_api;
pub mod dto;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod remote;
pub mod resolver;
pub mod routes;
mod sse;
mod ui;
pub mod validate;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
pub use wafleet_http_edge::Edge;
use wafleet_node::access::audit::AuditLog;
use wafleet_node::access::directory::Directory;
use wafleet_node::catalog::Catalog;
use wafleet_node::events::EventBus;
use wafleet_node::media::MediaLibrary;
use wafleet_node::store::DeviceRecord;

pub use crate::device_api::DeviceApi;
use crate::dto::Device;
use crate::error::ApiError;

/// Largest request body accepted (413 above).
pub const BODY_LIMIT_BYTES: usize = 1024 * 1024;

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    /// Where device commands run: the local fleet (standalone) or the cluster's nodes.
    pub devices: Arc<dyn DeviceApi>,
    /// Reads (devices, messages, settings) and owner-free writes, from the store.
    pub catalog: Catalog,
    /// Where SSE reads device events (not through `devices`: events do not depend on
    /// where a device runs).
    pub bus: EventBus,
    /// Media files: uploads stored here, any file served from here.
    pub media: Arc<MediaLibrary>,
    /// Tenants, keys, users: who is calling and what they may do.
    pub access: Arc<Directory>,
    /// Where every change made through the API is recorded.
    pub audit: AuditLog,
    /// The operation id (`create_device`, ...) of each route, by method and path: the
    /// audit log's action names.
    actions: Arc<HashMap<(Method, String), String>>,
    pub prometheus: PrometheusHandle,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("devices", &self.devices)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Standalone passes its fleet, its catalog and the fleet's bus; a cluster gateway
    /// its [`remote::RemoteDevices`], a catalog over the shared store and the shared bus.
    ///
    /// `admin_key` is the bootstrap admin key (`WAFLEET_ADMIN_KEY`): an admin of every
    /// tenant, and the key login tokens are signed under (the same on every gateway).
    /// Starts the audit log's writer on the current runtime.
    pub fn new(
        devices: Arc<dyn DeviceApi>,
        catalog: Catalog,
        bus: EventBus,
        media: Arc<MediaLibrary>,
        admin_key: String,
    ) -> AppState {
        let store = catalog.store().clone();
        AppState {
            devices,
            catalog,
            bus,
            media,
            access: Arc::new(Directory::new(store.clone(), admin_key)),
            audit: AuditLog::start(store),
            actions: Arc::new(operation_ids()),
            prometheus: metrics::prometheus(),
        }
    }

    /// The audit log's name of the route `path` (as matched) with `method`.
    pub fn action_of(&self, method: &Method, path: &str) -> String {
        self.actions
            .get(&(method.clone(), path.to_owned()))
            .cloned()
            .unwrap_or_else(|| format!("{method} {path}"))
    }

    fn device(&self, record: DeviceRecord) -> Device {
        let node = self.devices.node_of(&record.id);
        Device::from_record(record, &node)
    }
}

/// Every route of the API, `/metrics` included.
pub fn router(state: AppState) -> Router {
    routes(state, true)
}

/// Every route of the API but `/metrics` (answered 404 like any unknown route), for a
/// process that serves it on a listener of its own ([`metrics_router`]), off the API's
/// port: a cluster gateway with `gateway.metrics_listen`.
pub fn router_without_metrics(state: AppState) -> Router {
    routes(state, false)
}

/// `GET /metrics` alone (the same Prometheus text as [`router`]'s), for a listener of
/// its own.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(routes::ops::metrics))
        .fallback(|| async {
            ApiError::NotFound {
                code: "route_not_found",
                what: "route".into(),
            }
        })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

/// Every documented operation's id, by method and path.
fn operation_ids() -> HashMap<(Method, String), String> {
    let (_, mut api) = routes::api().split_for_parts();
    api.merge(routes::open_api().split_for_parts().1);
    let mut ids = HashMap::new();
    for (path, item) in api.paths.paths {
        let operations = [
            (Method::GET, &item.get),
            (Method::PUT, &item.put),
            (Method::POST, &item.post),
            (Method::DELETE, &item.delete),
            (Method::PATCH, &item.patch),
        ];
        for (method, operation) in operations {
            if let Some(id) = operation.as_ref().and_then(|o| o.operation_id.clone()) {
                ids.insert((method, path.clone()), id);
            }
        }
    }
    ids
}

fn routes(state: AppState, with_metrics: bool) -> Router {
    use routes::ops;
    let (api, _) = routes::api().split_for_parts();
    let authenticated = api.route_layer(from_fn_with_state(state.clone(), auth::guard));
    let (login, _) = routes::open_api().split_for_parts();
    let mut open = login
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/openapi.json", get(ops::openapi))
        .route("/docs", get(ops::docs))
        .merge(ui::router());
    if with_metrics {
        open = open.route("/metrics", get(ops::metrics));
    }
    authenticated
        .merge(open)
        .route_layer(from_fn(metrics::track))
        .fallback(|| async {
            ApiError::NotFound {
                code: "route_not_found",
                what: "route".into(),
            }
        })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .with_state(state)
}

/// Serves `router` on `listener` under `edge`'s rules (timeouts, connection cap) until
/// `shutdown` completes; see [`wafleet_http_edge::serve`]. The accept loop is
/// [`wafleet_node::open_files::Listener`], which says once when the process runs out of
/// open files.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    edge: Edge,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = wafleet_node::open_files::Listener::new(listener);
    wafleet_http_edge::serve(listener, router, edge, shutdown).await
}
