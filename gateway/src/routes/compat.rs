//! The account-management routes of the original product (`/whatsapp/sessions…`),
//! mapped onto the same operations as `/v1/devices`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_node::NewDevice;
use wafleet_node::store::{DeviceQuery, DeviceStatus, TrustLevel};

use wafleet_node::api::{DeviceCommand, Empty};

use crate::AppState;
use crate::auth::Caller;
use crate::dto::{Device, counts_json};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::routes::{devices, qr};
use crate::validate;

/// `POST /whatsapp/sessions`: create a session and start it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// The session id (`[a-zA-Z0-9_-]{1,64}`); generated when absent.
    #[serde(alias = "sessionId", alias = "session_id")]
    #[schema(pattern = "^[a-zA-Z0-9_-]{1,64}$", min_length = 1, max_length = 64)]
    pub id: Option<String>,
    /// Defaults to the id; 1 to 128 characters, not only spaces.
    #[serde(alias = "deviceName")]
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"[^\t\n\x0B\x0C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    pub name: Option<String>,
}

/// `GET /whatsapp/sessions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<Device>,
    #[schema(value_type = Object)]
    pub counts: serde_json::Map<String, serde_json::Value>,
}

#[utoipa::path(get, path = "/whatsapp/sessions", tag = "compatibility",
    description = "Every session (device) with its status, and counts by status.",
    responses((status = 200, body = SessionList)), security(("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<SessionList>, ApiError> {
    let mut sessions = Vec::new();
    let mut counts = std::collections::BTreeMap::<DeviceStatus, u64>::new();
    let mut after = None;
    loop {
        let page = state
            .catalog
            .list_devices(&DeviceQuery {
                tenant: caller.tenant.clone(),
                after: after.take(),
                limit: 1000,
                ..DeviceQuery::default()
            })
            .await?;
        for device in page.devices {
            if caller.sees_device(&device) {
                *counts.entry(device.status).or_default() += 1;
                sessions.push(state.device(device));
            }
        }
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let counts: Vec<(DeviceStatus, u64)> = counts.into_iter().collect();
    Ok(Json(SessionList {
        sessions,
        counts: counts_json(&counts),
    }))
}

#[utoipa::path(post, path = "/whatsapp/sessions", tag = "compatibility",
    description = "Creates a session and starts it (it shows a QR code: GET /whatsapp/sessions/{id}/qr).",
    request_body = CreateSession,
    responses((status = 201, body = Device), (status = 400, body = ErrorBody),
        (status = 403, description = "a key limited to some devices", body = ErrorBody),
        (status = 409, description = "id taken (`device_exists`), or the tenant has its `max_devices` (`tenant_device_limit`)",
            body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateSession>,
) -> Result<(StatusCode, Json<Device>), ApiError> {
    let id = match body.id {
        Some(id) => id,
        None => format!("dev_{}", &uuid::Uuid::new_v4().simple().to_string()[..20]),
    };
    validate::device_id(&id)?;
    let name = body.name.unwrap_or_else(|| id.clone());
    validate::name(&name)?;
    let tenant = state.access.tenant_for_new_device(&caller, None).await?;
    let new = NewDevice {
        id: id.clone(),
        name,
        trust_level: TrustLevel::Newcomer,
    };
    state.catalog.create_device_of(new, &tenant).await?;
    let record = state
        .devices
        .execute(&id, DeviceCommand::Start(Empty {}))
        .await?
        .into_device()?;
    Ok((StatusCode::CREATED, Json(state.device(record))))
}

#[utoipa::path(delete, path = "/whatsapp/sessions/{id}", tag = "compatibility",
    description = "Logs out and deletes the session.",
    params(("id" = String, Path)),
    responses((status = 200, body = crate::dto::Deleted), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete(
    state: State<AppState>,
    id: ApiPath<String>,
) -> Result<Json<crate::dto::Deleted>, ApiError> {
    devices::delete(state, id).await
}

#[utoipa::path(get, path = "/whatsapp/sessions/{id}/qr", tag = "compatibility",
    params(("id" = String, Path), ("format" = Option<String>, Query, description = "png (default), svg or raw",
        pattern = "^(png|svg|raw)$")),
    responses((status = 200, description = "The QR code, as `GET /v1/devices/{id}/qr` gives it",
            content((crate::dto::RawQr = "application/json"), ([u8] = "image/png"), (String = "image/svg+xml"))),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn qr(
    state: State<AppState>,
    id: ApiPath<String>,
    query: ApiQuery<qr::QrQuery>,
) -> Result<Response, ApiError> {
    qr::qr(state, id, query).await
}

#[utoipa::path(post, path = "/whatsapp/sessions/{id}/restart", tag = "compatibility",
    params(("id" = String, Path)),
    responses((status = 202, body = Device), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn restart(
    state: State<AppState>,
    id: ApiPath<String>,
) -> Result<(StatusCode, Json<Device>), ApiError> {
    devices::restart(state, id).await
}

/// The routes of this file, each with its OpenAPI path (one declaration: the handler's
/// `#[utoipa::path]`).
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(delete))
        .routes(routes!(qr))
        .routes(routes!(restart))
}
