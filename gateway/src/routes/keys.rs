//! API keys: create (the secret shown once), list, revoke, rotate.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_node::access::Role;
use wafleet_node::access::directory::{KeyView, NewKeySpec};
use wafleet_node::clock::{now_ms, parse_rfc3339, rfc3339};

use crate::AppState;
use crate::auth::Caller;
use crate::dto::{Deleted, next_cursor, page_limit};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};

/// `admin` or `user`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoleDto {
    Admin,
    User,
}

impl From<RoleDto> for Role {
    fn from(role: RoleDto) -> Role {
        match role {
            RoleDto::Admin => Role::Admin,
            RoleDto::User => Role::User,
        }
    }
}

impl From<Role> for RoleDto {
    fn from(role: Role) -> RoleDto {
        match role {
            Role::Admin => RoleDto::Admin,
            Role::User => RoleDto::User,
        }
    }
}

/// Body of `POST /v1/keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// 1 to 200 characters, not only spaces.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"[^\t\n\x0B\x0C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    pub name: String,
    pub role: RoleDto,
    /// The tenant it acts for; an admin key without one is an admin of every tenant.
    /// A tenant's key can only give its own (the default).
    pub tenant: Option<String>,
    /// Only these devices (1 to 1000 ids).
    #[schema(min_items = 1, max_items = 1000)]
    pub devices: Option<Vec<String>>,
    /// RFC 3339 in UTC, in the future; the key stops working then.
    #[schema(
        pattern = r"^(19[7-9][0-9]|[2-9][0-9]{3})-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?Z$"
    )]
    pub expires_at: Option<String>,
}

/// Body of `POST /v1/keys/{id}/rotate`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// How long the old secret keeps working (default 0: it stops at once; at most
    /// 7 days).
    #[schema(maximum = 604_800)]
    pub grace_seconds: Option<u64>,
}

/// A key (its secret is never shown again after creation or rotation).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyDto {
    pub id: String,
    pub name: String,
    pub role: RoleDto,
    pub tenant: Option<String>,
    pub devices: Option<Vec<String>>,
    pub expires_at: Option<String>,
    pub created_at: String,
    pub created_by: String,
    pub rotated_at: Option<String>,
    /// When the secret before the last rotation stops working.
    pub previous_secret_until: Option<String>,
    /// The secret to present (`Authorization: Bearer <key>`): only in the answer to a
    /// creation or rotation; it is stored as a hash and cannot be shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl KeyDto {
    fn of(view: KeyView, secret: Option<String>) -> KeyDto {
        let key = view.key;
        KeyDto {
            id: view.id,
            name: key.name,
            role: key.role.into(),
            tenant: key.tenant,
            devices: key.devices,
            expires_at: key.expires_at_ms.map(rfc3339),
            created_at: rfc3339(key.created_at_ms),
            created_by: key.created_by,
            rotated_at: key.rotated_at_ms.map(rfc3339),
            previous_secret_until: key.previous.map(|p| rfc3339(p.until_ms)),
            key: secret,
        }
    }
}

/// A page of keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyDto>,
    pub next_cursor: Option<String>,
}

/// Query of `GET /v1/keys`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct KeysQuery {
    /// Only this tenant's keys (an admin of every tenant; others see their tenant's).
    pub tenant: Option<String>,
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[utoipa::path(post, path = "/v1/keys", tag = "access", request_body = CreateKey,
    description = "Creates an API key; the answer's `key` is the secret, shown this once. A user key may create \
keys of role user for its own tenant only.",
    responses((status = 201, body = KeyDto), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateKey>,
) -> Result<(StatusCode, Json<KeyDto>), ApiError> {
    let expires_at_ms = match &body.expires_at {
        None => None,
        Some(text) => Some(parse_rfc3339(text).ok_or_else(|| {
            ApiError::invalid("invalid_expiry", "expires_at is an RFC 3339 time")
        })?),
    };
    let spec = NewKeySpec {
        name: body.name,
        role: body.role.into(),
        tenant: body.tenant,
        devices: body.devices,
        expires_at_ms,
    };
    let (view, secret) = state.access.create_key(&caller, spec, now_ms()).await?;
    Ok((StatusCode::CREATED, Json(KeyDto::of(view, Some(secret)))))
}

#[utoipa::path(get, path = "/v1/keys", tag = "access", params(KeysQuery),
    description = "The keys the caller manages: every key for an admin of every tenant, the tenant's for its \
admins, those it made for a user key.",
    responses((status = 200, body = KeyList), (status = 400, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<KeysQuery>,
) -> Result<Json<KeyList>, ApiError> {
    let limit = page_limit(query.limit)?;
    let keys: Vec<KeyDto> = state
        .access
        .list_keys(&caller, query.tenant, query.cursor, limit)
        .await?
        .into_iter()
        .map(|view| KeyDto::of(view, None))
        .collect();
    Ok(Json(KeyList {
        next_cursor: next_cursor(&keys, limit, |k| k.id.clone()),
        keys,
    }))
}

#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "access", params(("id" = String, Path)),
    description = "Revokes a key: every gateway refuses it (401) within 2 s.",
    responses((status = 200, body = Deleted), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Deleted>, ApiError> {
    state.access.revoke_key(&caller, &id).await?;
    Ok(Json(Deleted { id, deleted: true }))
}

#[utoipa::path(post, path = "/v1/keys/{id}/rotate", tag = "access", params(("id" = String, Path)),
    request_body(content = Option<RotateKey>, description = "optional: no body rotates without grace"),
    description = "Gives the key a new secret (in the answer's `key`, shown once); the old one keeps working for \
grace_seconds.",
    responses((status = 200, body = KeyDto), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn rotate_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<Json<KeyDto>, ApiError> {
    // The body is optional: none (or empty) rotates without grace. When there is one it
    // is an object (serde would take an array as the fields in order).
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let body: RotateKey = if first.is_none() {
        RotateKey::default()
    } else if first != Some(&b'{') {
        return Err(ApiError::Unprocessable("the body is a JSON object".into()));
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::Unprocessable(e.to_string()))?
    };
    let grace = Duration::from_secs(body.grace_seconds.unwrap_or(0));
    let (view, secret) = state
        .access
        .rotate_key(&caller, &id, grace, now_ms())
        .await?;
    Ok(Json(KeyDto::of(view, Some(secret))))
}

/// The routes of this file, each with its OpenAPI path.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(revoke_key))
        .routes(routes!(rotate_key))
}
