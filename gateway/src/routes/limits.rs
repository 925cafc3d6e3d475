//! Rate limits and trust levels: a device's quota use, its trust level, and the quota
//! table per level.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_cluster_config::{Quota, QuotaTable};
use wafleet_node::api::{DeviceCommand, Empty, LimitsView, Window};
use wafleet_node::store::TrustLevel;

use crate::AppState;
use crate::auth::Caller;
use crate::dto::{Device, TrustLevelDto, rfc3339};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath};
use crate::validate;

/// One window of a device's quota.
#[derive(Debug, Serialize, ToSchema)]
pub struct WindowDto {
    /// Sends allowed in the window.
    pub limit: u32,
    /// Sends whose slot came in the window ending now (not those queued for later).
    pub spent: u32,
    /// `limit - spent - queued`, at least 0: queued sends count against every window.
    pub remaining: u32,
}

impl From<Window> for WindowDto {
    fn from(w: Window) -> WindowDto {
        WindowDto {
            limit: w.limit,
            spent: w.spent,
            remaining: w.remaining,
        }
    }
}

/// `GET /v1/devices/{id}/limits`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Limits {
    pub device_id: String,
    /// newcomer, trusted or verified.
    pub trust_level: String,
    /// The quota of that level now.
    pub quota: QuotaDto,
    /// The last 60 s, the last hour and the last 24 h (sliding windows).
    pub minute: WindowDto,
    pub hour: WindowDto,
    pub day: WindowDto,
    /// Sends queued for a later slot.
    pub queued: u32,
    /// Sends accepted and not sent yet.
    pub in_flight: u32,
    /// When a send asked now would go (RFC 3339), before jitter.
    pub next_send_at: String,
    /// Sending is paused until then, after a ban.
    pub paused_until: Option<String>,
    /// When the current link was made, if known (TRUSTED comes 7 days later).
    pub linked_at: Option<String>,
}

impl From<LimitsView> for Limits {
    fn from(v: LimitsView) -> Limits {
        Limits {
            device_id: v.device_id,
            trust_level: v.trust_level.as_str().to_owned(),
            quota: v.quota.into(),
            minute: v.minute.into(),
            hour: v.hour.into(),
            day: v.day.into(),
            queued: v.queued,
            in_flight: v.in_flight,
            next_send_at: rfc3339(v.next_send_ms),
            paused_until: v.paused_until_ms.map(rfc3339),
            linked_at: v.linked_at_ms.map(rfc3339),
        }
    }
}

/// The pace of one trust level.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaDto {
    /// Sends in any 60 s: 1 to `per_hour`, and `per_minute × min_gap_ms` at most 60 s.
    #[schema(minimum = 1, maximum = 10_000)]
    pub per_minute: u32,
    /// Sends in any hour: `per_minute` to `per_day`, at most `60 × per_minute`.
    #[schema(minimum = 1, maximum = 10_000)]
    pub per_hour: u32,
    /// Sends in any 24 h (at most 10,000 and `24 × per_hour`); beyond it a send is
    /// refused with 429.
    #[schema(minimum = 1, maximum = 10_000)]
    pub per_day: u32,
    /// The least time between two sends, in milliseconds (at most an hour).
    #[schema(minimum = 0, maximum = 3_600_000)]
    pub min_gap_ms: u64,
    /// Up to this many random milliseconds are added to each gap (at most 600,000).
    #[schema(minimum = 0, maximum = 600_000)]
    pub jitter_ms: u64,
    /// Sends accepted and not yet sent; beyond it a send is refused with 429 (default 50,
    /// at most 10,000).
    #[serde(default = "default_max_in_flight")]
    #[schema(minimum = 1, maximum = 10_000)]
    pub max_in_flight: u32,
}

fn default_max_in_flight() -> u32 {
    wafleet_cluster_config::quota::DEFAULT_MAX_IN_FLIGHT
}

impl From<Quota> for QuotaDto {
    fn from(q: Quota) -> QuotaDto {
        QuotaDto {
            per_minute: q.per_minute,
            per_hour: q.per_hour,
            per_day: q.per_day,
            min_gap_ms: q.min_gap_ms,
            jitter_ms: q.jitter_ms,
            max_in_flight: q.max_in_flight,
        }
    }
}

impl From<QuotaDto> for Quota {
    fn from(q: QuotaDto) -> Quota {
        Quota {
            per_minute: q.per_minute,
            per_hour: q.per_hour,
            per_day: q.per_day,
            min_gap_ms: q.min_gap_ms,
            jitter_ms: q.jitter_ms,
            max_in_flight: q.max_in_flight,
        }
    }
}

/// The quota table: every level is required.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustLevels {
    pub newcomer: QuotaDto,
    pub trusted: QuotaDto,
    pub verified: QuotaDto,
}

impl From<QuotaTable> for TrustLevels {
    fn from(t: QuotaTable) -> TrustLevels {
        TrustLevels {
            newcomer: t.newcomer.into(),
            trusted: t.trusted.into(),
            verified: t.verified.into(),
        }
    }
}

impl From<TrustLevels> for QuotaTable {
    fn from(t: TrustLevels) -> QuotaTable {
        QuotaTable {
            newcomer: t.newcomer.into(),
            trusted: t.trusted.into(),
            verified: t.verified.into(),
        }
    }
}

/// `PUT /v1/devices/{id}/trust-level`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetTrustLevel {
    #[schema(example = "verified")]
    pub level: TrustLevelDto,
}

#[utoipa::path(get, path = "/v1/devices/{id}/limits", tag = "limits",
    description = "The device's trust level, the quota of that level, spent and remaining sends per sliding window, \
and when a send asked now would go.",
    params(("id" = String, Path)),
    responses((status = 200, body = Limits), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn limits(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Limits>, ApiError> {
    validate::device_id(&id)?;
    let command = DeviceCommand::Limits(Empty {});
    let view = state.devices.execute(&id, command).await?.into_limits()?;
    Ok(Json(view.into()))
}

#[utoipa::path(put, path = "/v1/devices/{id}/trust-level", tag = "limits",
    description = "Sets the device's trust level (admin). VERIFIED is only ever set here; NEWCOMER becomes TRUSTED by itself \
after 7 days linked and active; a ban sets NEWCOMER again. Applies from the device's next send.",
    params(("id" = String, Path)), request_body = SetTrustLevel,
    responses((status = 200, body = Device), (status = 400, body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn set_trust_level(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<SetTrustLevel>,
) -> Result<Json<Device>, ApiError> {
    caller.require_admin()?;
    validate::device_id(&id)?;
    let level: TrustLevel = body.level.into();
    let command = DeviceCommand::SetTrustLevel(level.into());
    let record = state.devices.execute(&id, command).await?.into_device()?;
    Ok(Json(state.device(record)))
}

#[utoipa::path(get, path = "/v1/settings/trust-levels", tag = "limits",
    description = "The quota of each trust level.",
    responses((status = 200, body = TrustLevels)),
    security(("api_key" = [])))]
pub async fn trust_levels(State(state): State<AppState>) -> Result<Json<TrustLevels>, ApiError> {
    Ok(Json(state.catalog.quota_table().await?.into()))
}

#[utoipa::path(put, path = "/v1/settings/trust-levels", tag = "limits",
    description = "Replaces the quota table (admin). Every level is required; a table that cannot hold together \
(per_minute > per_hour, a gap that makes per_minute unreachable, ...) is 422 with the key at fault. \
Applies live to every running device on every node (within a second on other nodes).",
    request_body = TrustLevels,
    responses((status = 200, body = TrustLevels), (status = 400, body = ErrorBody),
        (status = 403, description = "not an admin of every tenant", body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn set_trust_levels(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<TrustLevels>,
) -> Result<Json<TrustLevels>, ApiError> {
    caller.require_operator()?;
    let table = QuotaTable::from(body);
    table
        .check()
        .map_err(|error| ApiError::Unprocessable(error.to_string()))?;
    let table = state.catalog.set_quota_table(table).await?;
    state.devices.settings_changed().await;
    Ok(Json(table.into()))
}

/// The routes of this file, each with its OpenAPI path (one declaration: the handler's
/// `#[utoipa::path]`).
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(limits))
        .routes(routes!(set_trust_level))
        .routes(routes!(trust_levels, set_trust_levels))
}
