//! Pairing by code instead of QR scan.

use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use wafleet_node::api::{DeviceCommand, RequestPairingCode};

use crate::AppState;
use crate::dto::{PairingCode, PairingCodeRequest, rfc3339};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath};
use crate::validate;

#[utoipa::path(post, path = "/v1/devices/{id}/pairing-code", tag = "devices",
    description = "A code to type on the phone (WhatsApp > Linked devices > Link with phone number) instead of scanning the QR. The device must be in SCAN_QR.",
    params(("id" = String, Path)),
    request_body = PairingCodeRequest,
    responses((status = 200, body = PairingCode), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "not in SCAN_QR", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn pairing_code(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PairingCodeRequest>,
) -> Result<Json<PairingCode>, ApiError> {
    validate::device_id(&id)?;
    let phone = validate::phone(&body.phone)?;
    let command = DeviceCommand::PairingCode(RequestPairingCode { phone });
    let code = state
        .devices
        .execute(&id, command)
        .await?
        .into_pairing_code()?;
    Ok(Json(PairingCode {
        code: code.code,
        expires_at: rfc3339(code.expires_at_ms),
    }))
}

/// The routes of this file, each with its OpenAPI path (one declaration: the handler's
/// `#[utoipa::path]`).
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(pairing_code))
}
