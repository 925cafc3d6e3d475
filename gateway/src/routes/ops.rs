//! Unauthenticated operational routes: health, readiness, metrics, the API description.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

use crate::AppState;

/// The process is up.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The process can serve: its store answered the census (taken at most a second ago,
/// so probes never make the store count every device per request).
///
/// Unauthenticated, so a failure says only that the store is unavailable: its detail
/// (a file path, a driver's error text, host names) goes to the log, not to whoever
/// asks.
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.catalog.recent_census().await {
        Ok(_) => Json(json!({"status": "ready"})).into_response(),
        Err(error) => {
            tracing::warn!(%error, "not ready: the store did not answer the census");
            not_ready()
        }
    }
}

/// The body of a failed `/readyz`: the same whatever the failure.
fn not_ready() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "not_ready", "reason": "store unavailable"})),
    )
        .into_response()
}

/// Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    if let Err(error) = state.devices.refresh_metrics().await {
        tracing::warn!(%error, "cannot refresh device gauges");
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.prometheus.render(),
    )
        .into_response()
}

pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::document(),
    )
        .into_response()
}

/// A self-contained page that renders `/openapi.json` (no external scripts).
pub async fn docs() -> Html<&'static str> {
    Html(include_str!("../docs.html"))
}
