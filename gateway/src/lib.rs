//! The wafleet HTTP API: REST + SSE over a node's [`Fleet`].
//!
//! In standalone the gateway calls the local fleet directly; in a cluster it will route
//! each call to the node that owns the device.
//!
//! # Layout
//! - [`routes`]: one file per resource (devices, qr, pairing, messages, events,
//!   compatibility routes, operational routes).
//! - [`dto`]: the JSON shapes; [`validate`]: checks of client values.
//! - [`error`]: [`error::ApiError`], the one error type, mapped to statuses in one place.
//! - [`extract`]: extractors whose rejections are API errors.
//! - [`auth`]: API keys. [`metrics`]: the Prometheus recorder and HTTP metrics.
//! - [`openapi`]: `/openapi.json`; `/docs` renders it.

pub mod auth;
pub mod dto;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod validate;

use std::future::Future;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use wafleet_node::Fleet;
use wafleet_node::store::DeviceRecord;

use crate::auth::Keys;
use crate::dto::Device;
use crate::error::ApiError;

/// Largest request body accepted (413 above).
pub const BODY_LIMIT_BYTES: usize = 1024 * 1024;

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    pub fleet: Fleet,
    pub keys: Keys,
    pub prometheus: PrometheusHandle,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("fleet", &self.fleet)
            .finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(fleet: Fleet, keys: Keys) -> AppState {
        AppState {
            fleet,
            keys,
            prometheus: metrics::prometheus(),
        }
    }

    fn device(&self, record: DeviceRecord) -> Device {
        Device::from_record(record, self.fleet.node_name())
    }
}

/// Every route of the API.
pub fn router(state: AppState) -> Router {
    use routes::{compat, devices, events, messages, ops, pairing, qr};
    let authenticated = Router::new()
        .route("/v1/devices", post(devices::create).get(devices::list))
        .route(
            "/v1/devices/{id}",
            get(devices::get).delete(devices::delete),
        )
        .route("/v1/devices/{id}/start", post(devices::start))
        .route("/v1/devices/{id}/stop", post(devices::stop))
        .route("/v1/devices/{id}/restart", post(devices::restart))
        .route("/v1/devices/{id}/logout", post(devices::logout))
        .route("/v1/devices/{id}/qr", get(qr::qr))
        .route("/v1/devices/{id}/pairing-code", post(pairing::pairing_code))
        .route("/v1/devices/{id}/messages", post(messages::send))
        .route("/v1/devices/{id}/messages/{message_id}", get(messages::get))
        .route("/v1/devices/{id}/events", get(events::device_events))
        .route("/v1/events", get(events::all_events))
        .route("/whatsapp/sessions", get(compat::list).post(compat::create))
        .route(
            "/whatsapp/sessions/{id}",
            axum::routing::delete(compat::delete),
        )
        .route("/whatsapp/sessions/{id}/qr", get(compat::qr))
        .route("/whatsapp/sessions/{id}/restart", post(compat::restart))
        .route_layer(from_fn_with_state(state.clone(), auth::require_key));
    let open = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .route("/docs", get(ops::docs));
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

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
