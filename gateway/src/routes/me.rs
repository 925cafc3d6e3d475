//! `GET /v1/auth/me`: who the presented key or token is, so that a client (the
//! dashboard) shows what the caller may do without trying it.

use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::routes::keys::RoleDto;

/// The caller, as the API sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// As the audit log names it: `bootstrap`, `key:<id>` or `user:<name>`.
    pub actor: String,
    pub role: RoleDto,
    /// The caller's tenant; none for an admin of every tenant.
    pub tenant: Option<String>,
    /// The only devices the caller may see, when it is limited to some.
    pub devices: Option<Vec<String>>,
}

#[utoipa::path(get, path = "/v1/auth/me", tag = "access",
    description = "The caller: its name in the audit log, its role, its tenant (none: every tenant) and the \
devices it is limited to, if any.",
    responses((status = 200, body = Me)),
    security(("api_key" = [])))]
pub async fn me(Caller(caller): Caller) -> Json<Me> {
    Json(Me {
        actor: caller.actor.clone(),
        role: caller.role.into(),
        tenant: caller.tenant.clone(),
        devices: caller.devices.clone(),
    })
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(me))
}
