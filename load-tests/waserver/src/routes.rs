//! The control API under `/sim/`, on the simulator's paths so the same tests drive
//! either: what a person does with a phone, as HTTP.

use std::time::Duration;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::messages::{InboxMessage, SendError, SentMessage};
use crate::network::{Linked, Network, Stats};
use crate::pairing::ScanError;

/// The longest ban a request may ask for (ten years).
const MAX_BAN_SECONDS: u64 = 10 * 365 * 24 * 3600;

pub(crate) fn routes() -> Router<Network> {
    Router::new()
        .route("/sim/scan", post(scan))
        .route("/sim/pair-code", post(pair_code))
        .route("/sim/stats", get(stats))
        .route("/sim/phones/{phone}/inbox", get(inbox))
        .route("/sim/phones/{phone}/sent", get(sent))
        .route("/sim/phones/{phone}/send", post(send))
        .route("/sim/phones/{phone}/read", post(read))
        .route("/sim/phones/{phone}/unlink", post(unlink))
        .route("/sim/phones/{phone}/disconnect", post(disconnect))
        .route("/sim/phones/{phone}/ban", post(ban))
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

async fn inbox(
    State(network): State<Network>,
    Path(phone): Path<String>,
) -> Json<Vec<InboxMessage>> {
    Json(network.lock().inbox_of(&phone).clone())
}

async fn sent(State(network): State<Network>, Path(phone): Path<String>) -> Json<Vec<SentMessage>> {
    let state = network.lock();
    Json(
        state
            .sent
            .iter()
            .filter(|sent| sent.from_phone == phone)
            .cloned()
            .collect(),
    )
}

#[derive(Debug, Deserialize)]
struct PhoneMessage {
    to_phone: String,
    text: String,
}

async fn send(
    State(network): State<Network>,
    Path(phone): Path<String>,
    Json(message): Json<PhoneMessage>,
) -> Result<(StatusCode, Json<Value>), (StatusCode, Json<Value>)> {
    match network
        .send_from_phone(&phone, &message.to_phone, &message.text)
        .await
    {
        Ok(id) => Ok((StatusCode::ACCEPTED, Json(json!({ "message_id": id })))),
        Err(error) => {
            let status = match error {
                SendError::NoDevice(_) => StatusCode::NOT_FOUND,
                SendError::Crypto(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            Err(error_body(status, "send_failed", &error))
        }
    }
}

async fn read(State(network): State<Network>, Path(phone): Path<String>) -> Json<Value> {
    Json(json!({ "read": network.read(&phone) }))
}

async fn unlink(State(network): State<Network>, Path(phone): Path<String>) -> Json<Value> {
    Json(json!({ "unlinked": network.unlink(&phone) }))
}

async fn disconnect(State(network): State<Network>, Path(phone): Path<String>) -> Json<Value> {
    Json(json!({ "disconnected": network.disconnect(&phone) }))
}

#[derive(Debug, Default, Deserialize)]
struct BanRequest {
    /// How long; an hour when absent.
    seconds: Option<u64>,
}

async fn ban(
    State(network): State<Network>,
    Path(phone): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    let request: BanRequest = if body.iter().all(u8::is_ascii_whitespace) {
        BanRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| error_body(StatusCode::BAD_REQUEST, "invalid_request", &e))?
    };
    let seconds = request.seconds.unwrap_or(3600).min(MAX_BAN_SECONDS);
    let until = network.ban(&phone, Duration::from_secs(seconds));
    let until = until
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    Ok(Json(json!({ "phone": phone, "until": until })))
}

#[derive(Debug, Deserialize)]
struct PairCodeEntry {
    phone: String,
    code: String,
}

async fn pair_code(
    State(network): State<Network>,
    Json(entry): Json<PairCodeEntry>,
) -> Result<Json<Linked>, ScanError> {
    Ok(Json(
        network.enter_pair_code(&entry.phone, &entry.code).await?,
    ))
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
        error_body(status, code, &self).into_response()
    }
}

/// An error as every route answers one: `{"error": {"code", "message"}}`.
fn error_body(
    status: StatusCode,
    code: &str,
    error: &dyn std::fmt::Display,
) -> (StatusCode, Json<Value>) {
    let body = json!({"error": {"code": code, "message": error.to_string()}});
    (status, Json(body))
}
