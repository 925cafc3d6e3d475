//! `/v1/settings/retries`: how failed sends are tried again (seed 004): after
//! `base_delay_ms × fib(n)` (1, 1, 2, 3, 5 …), up to `max_attempts` attempts in all.
//! One setting for the cluster ([`wafleet_node::jobs::retries`]); reading it takes any
//! key, changing it an admin of every tenant.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_node::jobs::retries::RetrySettings;
use wafleet_node::settings::StoredSetting;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;

/// The send retry settings.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrySettingsDto {
    /// The n-th retry waits `base_delay_ms × fib(n)` (1, 1, 2, 3, 5, 8 …), at most a
    /// day; 1 to 86,400,000. Default 1,000.
    #[schema(minimum = 1, maximum = 86_400_000)]
    pub base_delay_ms: u64,
    /// Attempts in all before a send is `failed` for good (1: never retried); 1 to 50.
    /// Default 8.
    #[schema(minimum = 1, maximum = 50)]
    pub max_attempts: u32,
}

impl From<RetrySettings> for RetrySettingsDto {
    fn from(s: RetrySettings) -> RetrySettingsDto {
        RetrySettingsDto {
            base_delay_ms: s.base_delay_ms,
            max_attempts: s.max_attempts,
        }
    }
}

impl From<RetrySettingsDto> for RetrySettings {
    fn from(s: RetrySettingsDto) -> RetrySettings {
        RetrySettings {
            base_delay_ms: s.base_delay_ms,
            max_attempts: s.max_attempts,
        }
    }
}

#[utoipa::path(get, path = "/v1/settings/retries", tag = "jobs",
    description = "How failed sends are tried again.",
    responses((status = 200, body = RetrySettingsDto)),
    security(("api_key" = [])))]
pub async fn retry_settings(
    State(state): State<AppState>,
) -> Result<Json<RetrySettingsDto>, ApiError> {
    Ok(Json(state.catalog.setting::<RetrySettings>().await?.into()))
}

#[utoipa::path(put, path = "/v1/settings/retries", tag = "jobs",
    description = "Replaces the send retry settings (admin of every tenant); both fields are required. A send \
that fails from then on is retried by the new settings.",
    request_body = RetrySettingsDto,
    responses((status = 200, body = RetrySettingsDto), (status = 400, body = ErrorBody),
        (status = 403, description = "not an admin of every tenant", body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn set_retry_settings(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<RetrySettingsDto>,
) -> Result<Json<RetrySettingsDto>, ApiError> {
    caller.require_operator()?;
    let settings = RetrySettings::from(body);
    settings.check().map_err(ApiError::Unprocessable)?;
    let settings = state.catalog.set_setting(settings).await?;
    state.devices.settings_changed().await;
    Ok(Json(settings.into()))
}

/// The routes of this file, each with its OpenAPI path.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(retry_settings, set_retry_settings))
}
