//! Users (who log in with a password) and login.

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_node::access::audit::entry_id;
use wafleet_node::access::directory::{NewUser, UserPatch, UserView};
use wafleet_node::clock::{now_ms, rfc3339};
use wafleet_node::store::AuditEntry;

use crate::AppState;
use crate::auth::{Caller, source_of};
use crate::dto::{Deleted, PageQuery, next_cursor};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::routes::keys::RoleDto;

/// Body of `POST /v1/users`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// `[a-zA-Z0-9_.@-]{1,64}`, unique.
    #[schema(pattern = "^[a-zA-Z0-9_.@-]{1,64}$", min_length = 1, max_length = 64)]
    pub username: String,
    /// 10 to 256 characters.
    #[schema(min_length = 10, max_length = 256)]
    pub password: String,
    pub role: RoleDto,
    /// The tenant; an admin without one is an admin of every tenant.
    pub tenant: Option<String>,
}

/// Body of `PATCH /v1/users/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchUser {
    /// A locked user cannot log in, and its tokens stop working.
    pub locked: Option<bool>,
    /// A new password (10 to 256 characters): the user's tokens stop working.
    #[schema(min_length = 10, max_length = 256)]
    pub password: Option<String>,
    pub role: Option<RoleDto>,
}

/// A user (never its password).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserDto {
    /// The user's name, which is its id.
    pub id: String,
    pub username: String,
    pub role: RoleDto,
    pub tenant: Option<String>,
    pub locked: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<UserView> for UserDto {
    fn from(view: UserView) -> UserDto {
        UserDto {
            id: view.username.clone(),
            username: view.username,
            role: view.user.role.into(),
            tenant: view.user.tenant,
            locked: view.user.locked,
            created_at: rfc3339(view.user.created_at_ms),
            updated_at: rfc3339(view.user.updated_at_ms),
        }
    }
}

/// A page of users.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserDto>,
    pub next_cursor: Option<String>,
}

/// Body of `POST /v1/auth/login`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    pub username: String,
    pub password: String,
}

/// A login token, usable as `Authorization: Bearer <token>` until `expires_at`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Token {
    pub token: String,
    pub expires_at: String,
}

#[utoipa::path(post, path = "/v1/users", tag = "access", request_body = CreateUser,
    description = "Creates a user (an admin of every tenant, or of the user's tenant). The password is kept as an \
argon2id hash.",
    responses((status = 201, body = UserDto), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateUser>,
) -> Result<(StatusCode, Json<UserDto>), ApiError> {
    let new = NewUser {
        username: body.username,
        password: body.password,
        role: body.role.into(),
        tenant: body.tenant,
    };
    let view = state.access.create_user(&caller, new, now_ms()).await?;
    Ok((StatusCode::CREATED, Json(view.into())))
}

#[utoipa::path(get, path = "/v1/users", tag = "access", params(PageQuery),
    responses((status = 200, body = UserList), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<UserList>, ApiError> {
    let limit = query.limit()?;
    let users: Vec<UserDto> = state
        .access
        .list_users(&caller, query.cursor, limit)
        .await?
        .into_iter()
        .map(UserDto::from)
        .collect();
    Ok(Json(UserList {
        next_cursor: next_cursor(&users, limit, |u| u.id.clone()),
        users,
    }))
}

#[utoipa::path(get, path = "/v1/users/{id}", tag = "access", params(("id" = String, Path)),
    responses((status = 200, body = UserDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<UserDto>, ApiError> {
    Ok(Json(state.access.user(&caller, &id).await?.into()))
}

#[utoipa::path(patch, path = "/v1/users/{id}", tag = "access", params(("id" = String, Path)),
    request_body = PatchUser,
    responses((status = 200, body = UserDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn patch_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PatchUser>,
) -> Result<Json<UserDto>, ApiError> {
    let patch = UserPatch {
        locked: body.locked,
        password: body.password,
        role: body.role.map(Into::into),
    };
    let view = state
        .access
        .patch_user(&caller, &id, patch, now_ms())
        .await?;
    Ok(Json(view.into()))
}

#[utoipa::path(delete, path = "/v1/users/{id}", tag = "access", params(("id" = String, Path)),
    responses((status = 200, body = Deleted), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Deleted>, ApiError> {
    state.access.delete_user(&caller, &id).await?;
    Ok(Json(Deleted { id, deleted: true }))
}

#[utoipa::path(post, path = "/v1/auth/login", tag = "access", request_body = LoginBody,
    description = "Logs a user in: a token usable as `Authorization: Bearer <token>` for an hour. A locked user, an \
unknown name or a wrong password is 401; from the fifth failure in a row (per name and per address) each failure \
closes further attempts for 1, 2, 4 ... s (up to 5 min): 429 with Retry-After. Every attempt is audited.",
    responses((status = 200, body = Token), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<Token>, ApiError> {
    let source = source_of(&request);
    let target = request.uri().path().to_owned();
    let ApiJson(body) = ApiJson::<LoginBody>::from_request(request, &state).await?;
    let result = state
        .access
        .login(&body.username, &body.password, &source, now_ms())
        .await
        .map_err(ApiError::from);
    let at_ms = now_ms();
    state.audit.record(AuditEntry {
        id: entry_id(at_ms),
        at_ms,
        actor: format!("user:{}", body.username),
        tenant: None,
        action: "login".to_owned(),
        target,
        source,
        status: result
            .as_ref()
            .map_or_else(|e| e.status_code().as_u16(), |_| 200),
        outcome: match &result {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.code().to_owned(),
        },
    });
    let login = result?;
    Ok(Json(Token {
        token: login.token,
        expires_at: rfc3339(login.expires_at_ms),
    }))
}

/// The routes of this file that need a key, each with its OpenAPI path.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_user, list_users))
        .routes(routes!(get_user, patch_user, delete_user))
}

/// Login, which needs no key.
pub(crate) fn open_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(login))
}
