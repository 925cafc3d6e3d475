//! The control API under `/sim/`, on the simulator's paths so the same tests drive
//! either: what a person does with a phone, as HTTP.

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::json;

use crate::network::{Linked, Network, Stats};
use crate::pairing::ScanError;

pub(crate) fn routes() -> Router<Network> {
    Router::new()
        .route("/sim/scan", post(scan))
        .route("/sim/stats", get(stats))
}

#[derive(Debug, Deserialize)]
struct ScanRequest {
    /// The raw content of the QR code.
    qr: String,
    phone: String,
}

async fn scan(
    State(network): State<Network>,
    Json(request): Json<ScanRequest>,
) -> Result<Json<Linked>, ScanError> {
    Ok(Json(network.scan(&request.qr, &request.phone).await?))
}

async fn stats(State(network): State<Network>) -> Json<Stats> {
    Json(network.stats())
}

impl IntoResponse for ScanError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ScanError::BadCode(_) => (StatusCode::BAD_REQUEST, "bad_qr_code"),
            ScanError::UnknownCode => (StatusCode::NOT_FOUND, "qr_not_found"),
            ScanError::KeyMismatch => (StatusCode::BAD_REQUEST, "qr_key_mismatch"),
            ScanError::Refused(_) => (StatusCode::CONFLICT, "pairing_refused"),
        };
        (
            status,
            Json(json!({"error": {"code": code, "message": self.to_string()}})),
        )
            .into_response()
    }
}
