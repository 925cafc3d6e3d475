//! Device management: create, list, read, delete, and the lifecycle commands.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_node::FleetError;
use wafleet_node::NewDevice;
use wafleet_node::access::Principal;
use wafleet_node::store::{DevicePage, DeviceQuery, DeviceStatus, TrustLevel};

use wafleet_node::api::{DeviceCommand, Empty};

use crate::AppState;
use crate::auth::Caller;
use crate::dto::{
    CreateDevice, CreateWebhook, Deleted, Device, DeviceList, ListQuery, counts_json,
};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::routes::webhooks;
use crate::validate;

#[utoipa::path(post, path = "/v1/devices", tag = "devices", request_body = CreateDevice,
    responses((status = 201, body = Device), (status = 400, body = ErrorBody),
        (status = 403, description = "another tenant asked for, or a key limited to some devices", body = ErrorBody),
        (status = 409, description = "id taken (`device_exists`), or the tenant has its `max_devices` (`tenant_device_limit`)",
            body = ErrorBody),
        (status = 422, description = "an unknown `tenant`, a webhook refused as by PUT /v1/devices/{id}/webhook, or the wrong shape",
            body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateDevice>,
) -> Result<(StatusCode, Json<Device>), ApiError> {
    let id = match body.id {
        Some(id) => {
            validate::device_id(&id)?;
            id
        }
        None => format!("dev_{}", &uuid::Uuid::new_v4().simple().to_string()[..20]),
    };
    validate::name(&body.name)?;
    let webhook = body.webhook.map(CreateWebhook::into_put);
    if let Some(webhook) = &webhook {
        validate::webhook(&webhook.url)?;
    }
    let tenant = state
        .access
        .tenant_for_new_device(&caller, body.tenant.as_deref())
        .await?;
    let new = NewDevice {
        id: id.clone(),
        name: body.name,
        trust_level: body.trust_level.map_or(TrustLevel::Newcomer, Into::into),
    };
    let mut record = state.catalog.create_device_of(new, &tenant).await?;
    if let Some(webhook) = webhook {
        // The owner checks the target and seals the secret; a refusal undoes the create.
        if let Err(error) = webhooks::set(&state, &id, webhook).await {
            if let Err(undo) = state.catalog.discard_new_device(&id).await {
                tracing::warn!(device_id = %id, %undo, "cannot remove a device whose webhook was refused");
            }
            return Err(error);
        }
        record = state.catalog.device(&id).await?;
    }
    Ok((StatusCode::CREATED, Json(state.device(record))))
}

#[utoipa::path(get, path = "/v1/devices", tag = "devices",
    params(("status" = Option<String>, Query, description = "only this status",
            pattern = "^(STOPPED|STARTING|SCAN_QR|READY|DISCONNECTED|LOGGED_OUT|FAILED)$"),
        ("limit" = Option<u32>, Query, description = "1 to 1000, default 100", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page (a device id)",
            pattern = "^[a-zA-Z0-9_-]{1,64}$")),
    responses((status = 200, body = DeviceList), (status = 400, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<DeviceList>, ApiError> {
    let status = match &query.status {
        Some(s) => Some(DeviceStatus::parse(s).ok_or_else(|| {
            ApiError::invalid(
                "invalid_status",
                format!("unknown status {s:?}; use one of STOPPED, STARTING, SCAN_QR, READY, DISCONNECTED, LOGGED_OUT, FAILED"),
            )
        })?),
        None => None,
    };
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("invalid_limit", "limit is 1 to 1000"));
    }
    if let Some(cursor) = &query.cursor {
        validate::device_id(cursor)
            .map_err(|_| ApiError::invalid("invalid_cursor", "cursor is not one this API gave"))?;
    }
    let query = DeviceQuery {
        tenant: caller.tenant.clone(),
        status,
        desired_running: None,
        after: query.cursor,
        limit,
    };
    let (page, counts) = match &caller.devices {
        None => (
            state.catalog.list_devices(&query).await?,
            state
                .catalog
                .count_devices(caller.tenant.as_deref())
                .await?,
        ),
        Some(ids) => listed_devices(&state, &caller, ids, &query).await?,
    };
    Ok(Json(DeviceList {
        devices: page.devices.into_iter().map(|d| state.device(d)).collect(),
        next_cursor: page.next_after,
        counts: counts_json(&counts),
    }))
}

#[utoipa::path(get, path = "/v1/devices/{id}", tag = "devices",
    params(("id" = String, Path)),
    responses((status = 200, body = Device), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Device>, ApiError> {
    validate::device_id(&id)?;
    Ok(Json(state.device(state.catalog.device(&id).await?)))
}

#[utoipa::path(delete, path = "/v1/devices/{id}", tag = "devices",
    description = "Logs the device out if linked, wipes its credentials and deletes it with its messages.",
    params(("id" = String, Path)),
    responses((status = 200, body = Deleted), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Deleted>, ApiError> {
    validate::device_id(&id)?;
    state
        .devices
        .execute(&id, DeviceCommand::Delete(Empty {}))
        .await?
        .into_deleted()?;
    Ok(Json(Deleted { id, deleted: true }))
}

/// The lifecycle commands share one shape: a command whose reply is the device.
async fn lifecycle(
    state: AppState,
    id: String,
    command: DeviceCommand,
) -> Result<(StatusCode, Json<Device>), ApiError> {
    validate::device_id(&id)?;
    let record = state.devices.execute(&id, command).await?.into_device()?;
    Ok((StatusCode::ACCEPTED, Json(state.device(record))))
}

#[utoipa::path(post, path = "/v1/devices/{id}/start", tag = "devices",
    description = "Runs the device: it reconnects with stored credentials, or shows a QR code (SCAN_QR).",
    params(("id" = String, Path)),
    responses((status = 202, body = Device), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn start(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<Device>), ApiError> {
    lifecycle(state, id, DeviceCommand::Start(Empty {})).await
}

#[utoipa::path(post, path = "/v1/devices/{id}/stop", tag = "devices",
    description = "Disconnects the device and keeps it stopped, also across restarts.",
    params(("id" = String, Path)),
    responses((status = 202, body = Device), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn stop(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<Device>), ApiError> {
    lifecycle(state, id, DeviceCommand::Stop(Empty {})).await
}

#[utoipa::path(post, path = "/v1/devices/{id}/restart", tag = "devices",
    params(("id" = String, Path)),
    responses((status = 202, body = Device), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn restart(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<Device>), ApiError> {
    lifecycle(state, id, DeviceCommand::Restart(Empty {})).await
}

#[utoipa::path(post, path = "/v1/devices/{id}/logout", tag = "devices",
    description = "Unlinks the device: credentials wiped, status LOGGED_OUT. Start it again to pair anew.",
    params(("id" = String, Path)),
    responses((status = 202, body = Device), (status = 404, body = ErrorBody),
        (status = 409, description = "never linked", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn logout(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<Device>), ApiError> {
    lifecycle(state, id, DeviceCommand::Logout(Empty {})).await
}

/// The routes of this file, each with its OpenAPI path (one declaration: the handler's
/// `#[utoipa::path]`).
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get, delete))
        .routes(routes!(start))
        .routes(routes!(stop))
        .routes(routes!(restart))
        .routes(routes!(logout))
}

/// A page of the devices a key limited to `ids` sees, and their counts: read one by one
/// (a key names at most 1,000), in id order, filtered like the store would.
async fn listed_devices(
    state: &AppState,
    caller: &Principal,
    ids: &[String],
    query: &DeviceQuery,
) -> Result<(DevicePage, Vec<(DeviceStatus, u64)>), ApiError> {
    let mut ids = ids.to_vec();
    ids.sort();
    ids.dedup();
    let mut visible = Vec::new();
    for id in &ids {
        match state.catalog.device(id).await {
            Ok(device) if caller.sees_device(&device) => visible.push(device),
            Ok(_) | Err(FleetError::DeviceNotFound(_)) => {}
            Err(error) => return Err(error.into()),
        }
    }
    let mut counts = std::collections::BTreeMap::<DeviceStatus, u64>::new();
    for device in &visible {
        *counts.entry(device.status).or_default() += 1;
    }
    let page: Vec<_> = visible
        .into_iter()
        .filter(|d| query.status.is_none_or(|s| s == d.status))
        .filter(|d| query.after.as_ref().is_none_or(|a| d.id > *a))
        .collect();
    Ok((
        DevicePage::cut(page, query.limit as usize),
        counts.into_iter().collect(),
    ))
}
