//! Tenants (admin of every tenant): create, list, read, change, delete.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_node::access::directory::{NewTenant, TenantPatch, TenantView};
use wafleet_node::clock::{now_ms, rfc3339};

use crate::AppState;
use crate::auth::Caller;
use crate::dto::{Deleted, PageQuery, next_cursor};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};

/// Body of `POST /v1/tenants`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// `[a-zA-Z0-9_.@-]{1,64}`; generated when absent.
    #[schema(pattern = "^[a-zA-Z0-9_.@-]{1,64}$", min_length = 1, max_length = 64)]
    pub id: Option<String>,
    /// 1 to 200 characters, not only spaces.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"[^\t\n\x0B\x0C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    pub name: String,
    /// At most this many devices (none: no limit).
    #[schema(value_type = Option<u64>, maximum = 4_294_967_295_u64)]
    pub max_devices: Option<u32>,
}

/// Body of `PATCH /v1/tenants/{id}`: the fields given are changed
/// (`"max_devices": null` removes the limit).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchTenant {
    /// 1 to 200 characters, not only spaces.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"[^\t\n\x0B\x0C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::dto::present")]
    #[schema(value_type = Option<u64>, maximum = 4_294_967_295_u64)]
    pub max_devices: Option<Option<u32>>,
}

/// A page of tenants.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantList {
    pub tenants: Vec<TenantDto>,
    pub next_cursor: Option<String>,
}

/// A tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantDto {
    pub id: String,
    pub name: String,
    pub max_devices: Option<u32>,
    pub created_at: String,
}

impl From<TenantView> for TenantDto {
    fn from(view: TenantView) -> TenantDto {
        TenantDto {
            id: view.id,
            name: view.tenant.name,
            max_devices: view.tenant.max_devices,
            created_at: rfc3339(view.tenant.created_at_ms),
        }
    }
}

#[utoipa::path(post, path = "/v1/tenants", tag = "access", request_body = CreateTenant,
    description = "Creates a tenant (admin of every tenant).",
    responses((status = 201, body = TenantDto), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create_tenant(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateTenant>,
) -> Result<(StatusCode, Json<TenantDto>), ApiError> {
    let new = NewTenant {
        id: body.id,
        name: body.name,
        max_devices: body.max_devices,
    };
    let view = state.access.create_tenant(&caller, new, now_ms()).await?;
    Ok((StatusCode::CREATED, Json(view.into())))
}

#[utoipa::path(get, path = "/v1/tenants", tag = "access",
    description = "The tenants: all for an admin of every tenant, one's own otherwise.",
    params(PageQuery),
    responses((status = 200, body = TenantList), (status = 400, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_tenants(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<TenantList>, ApiError> {
    let limit = query.limit()?;
    let listed = state
        .access
        .list_tenants(&caller, query.cursor, limit)
        .await?;
    let tenants: Vec<TenantDto> = listed.into_iter().map(TenantDto::from).collect();
    Ok(Json(TenantList {
        next_cursor: next_cursor(&tenants, limit, |t| t.id.clone()),
        tenants,
    }))
}

#[utoipa::path(get, path = "/v1/tenants/{id}", tag = "access", params(("id" = String, Path)),
    responses((status = 200, body = TenantDto), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_tenant(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TenantDto>, ApiError> {
    Ok(Json(state.access.tenant(&caller, &id).await?.into()))
}

#[utoipa::path(patch, path = "/v1/tenants/{id}", tag = "access", params(("id" = String, Path)),
    request_body = PatchTenant,
    responses((status = 200, body = TenantDto), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn patch_tenant(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PatchTenant>,
) -> Result<Json<TenantDto>, ApiError> {
    let patch = TenantPatch {
        name: body.name,
        max_devices: body.max_devices,
    };
    let view = state
        .access
        .patch_tenant(&caller, &id, patch, now_ms())
        .await?;
    Ok(Json(view.into()))
}

#[utoipa::path(delete, path = "/v1/tenants/{id}", tag = "access", params(("id" = String, Path)),
    description = "Deletes a tenant that has no devices, keys or users left (409 otherwise).",
    responses((status = 200, body = Deleted), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete_tenant(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Deleted>, ApiError> {
    state.access.delete_tenant(&caller, &id).await?;
    Ok(Json(Deleted { id, deleted: true }))
}

/// The routes of this file, each with its OpenAPI path.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_tenant, list_tenants))
        .routes(routes!(get_tenant, patch_tenant, delete_tenant))
}
