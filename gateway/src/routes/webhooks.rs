//! Webhooks: a device's webhook (set, read, remove), its delivery log and replays, and
//! the retry settings. Setting a webhook and replaying go to the device's owner (it
//! checks the URL's target and seals the secret); the rest is read from the store.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_node::api::{DeviceCommand, Empty, ReplayWebhook, WebhookSpec, WebhookView};
use wafleet_node::store::{DeliveryRecord, DeliveryStatus};
use wafleet_node::webhooks::settings::WebhookSettings;

use crate::AppState;
use crate::auth::Caller;
use crate::dto::{Deleted, rfc3339};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::validate;

/// A webhook URL: `http://` or `https://`, a host, no white space, at most 2,048
/// characters (what `validate::webhook` takes).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(
    value_type = String,
    pattern = r"^https?://[^/\t\n\x0B\x0C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\t\n\x0B\x0C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$",
    max_length = 2048,
    example = "https://example.com/wafleet"
)]
pub struct WebhookUrl(pub String);

/// The events a webhook can ask for (documentation only: `events` stays strings, which
/// the owner checks, so that a node that knows more events than this gateway takes them).
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub enum WebhookEventName {
    #[serde(rename = "status")]
    Status,
    #[serde(rename = "qr")]
    Qr,
    #[serde(rename = "message.status")]
    MessageStatus,
    #[serde(rename = "message.inbound")]
    MessageInbound,
    #[serde(rename = "job.progress")]
    JobProgress,
}

/// A webhook to set (`PUT /v1/devices/{id}/webhook`, or `"webhook"` when creating a
/// device).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutWebhook {
    /// Where deliveries are POSTed: http or https, at most 2,048 characters. A target
    /// that is (or resolves to) a loopback, private, link-local or metadata address is
    /// refused (422 `webhook_url_not_allowed`) unless `webhooks.allow_private_targets`.
    #[schema(
        example = "https://example.com/wafleet",
        pattern = r"^https?://[^/\t\n\x0B\x0C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\t\n\x0B\x0C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$",
        max_length = 2048
    )]
    pub url: String,
    /// Deliveries are signed with it (`X-Wafleet-Signature`); 1 to 512 bytes. Stored
    /// sealed, never shown again. Absent: deliveries are not signed.
    #[schema(min_length = 1, max_length = 512)]
    pub secret: Option<String>,
    /// The events sent (`status`, `qr`, `message.status`, `message.inbound`,
    /// `job.progress`). Absent: every event.
    #[schema(value_type = Option<Vec<WebhookEventName>>, min_items = 1)]
    pub events: Option<Vec<String>>,
}

impl From<PutWebhook> for WebhookSpec {
    fn from(put: PutWebhook) -> WebhookSpec {
        WebhookSpec {
            url: put.url,
            secret: put.secret,
            events: put.events,
        }
    }
}

/// A device's webhook as shown: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct Webhook {
    pub url: String,
    /// Whether deliveries are signed.
    pub secret_set: bool,
    /// The events sent; null: every event.
    pub events: Option<Vec<String>>,
}

impl From<WebhookView> for Webhook {
    fn from(view: WebhookView) -> Webhook {
        Webhook {
            url: view.url,
            secret_set: view.secret_set,
            events: view.events,
        }
    }
}

/// One recorded event and its delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct Delivery {
    /// The event's id: the same on every attempt, what a receiver deduplicates on.
    pub event_id: String,
    /// `status`, `qr`, `message.status`, `message.inbound` or `job.progress`.
    pub event: String,
    /// `pending` (not attempted yet), `failed` (attempted, retried at
    /// `next_attempt_at`), `delivered` or `dead` (every attempt failed).
    pub status: String,
    /// Attempts made since it was recorded or last replayed.
    pub attempts: u32,
    /// The HTTP status of the last attempt, if the receiver answered.
    pub last_status_code: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When a failed delivery is tried again.
    pub next_attempt_at: Option<String>,
    pub delivered_at: Option<String>,
    /// When the event happened (was recorded).
    pub created_at: String,
}

impl From<DeliveryRecord> for Delivery {
    fn from(d: DeliveryRecord) -> Delivery {
        Delivery {
            event_id: d.event_id,
            event: d.event,
            status: d.status.as_str().to_owned(),
            attempts: d.attempts,
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            next_attempt_at: d
                .next_attempt_ms
                .filter(|_| d.status == DeliveryStatus::Failed)
                .map(rfc3339),
            delivered_at: d.delivered_at_ms.map(rfc3339),
            created_at: rfc3339(d.created_at_ms),
        }
    }
}

/// `GET /v1/devices/{id}/webhook/deliveries`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    /// Newest first.
    pub deliveries: Vec<Delivery>,
    /// Pass as `?cursor=` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

/// `?status=&limit=&cursor=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    pub status: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// `POST /v1/devices/{id}/webhook/replay`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    /// Only `dead` (every dead delivery is queued again, in event order).
    #[schema(example = "dead", pattern = "^dead$")]
    pub status: String,
}

/// How many deliveries were queued again.
#[derive(Debug, Serialize, ToSchema)]
pub struct Replayed {
    pub replayed: u64,
}

/// The webhook retry settings (`GET`/`PUT /v1/settings/webhooks`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettingsDto {
    /// The n-th retry waits `base_delay_ms × fib(n)` (1, 1, 2, 3, 5, 8 …); 1 to 604,800,000.
    #[schema(minimum = 1, maximum = 604_800_000)]
    pub base_delay_ms: u64,
    /// No retry waits longer; at least `base_delay_ms`, at most 604,800,000.
    #[schema(minimum = 1, maximum = 604_800_000)]
    pub max_delay_ms: u64,
    /// Attempts in all before a delivery is `dead`; 1 to 100.
    #[schema(minimum = 1, maximum = 100)]
    pub max_attempts: u32,
    /// How long one attempt may take; 100 to 60,000.
    #[schema(minimum = 100, maximum = 60_000)]
    pub timeout_ms: u64,
}

impl From<WebhookSettings> for WebhookSettingsDto {
    fn from(s: WebhookSettings) -> WebhookSettingsDto {
        WebhookSettingsDto {
            base_delay_ms: s.base_delay_ms,
            max_delay_ms: s.max_delay_ms,
            max_attempts: s.max_attempts,
            timeout_ms: s.timeout_ms,
        }
    }
}

impl From<WebhookSettingsDto> for WebhookSettings {
    fn from(s: WebhookSettingsDto) -> WebhookSettings {
        WebhookSettings {
            base_delay_ms: s.base_delay_ms,
            max_delay_ms: s.max_delay_ms,
            max_attempts: s.max_attempts,
            timeout_ms: s.timeout_ms,
        }
    }
}

/// Sets the device's webhook through its owner (shared by the create route).
pub(crate) async fn set(state: &AppState, id: &str, put: PutWebhook) -> Result<Webhook, ApiError> {
    validate::webhook(&put.url)?;
    let command = DeviceCommand::SetWebhook(WebhookSpec::from(put).into());
    Ok(state
        .devices
        .execute(id, command)
        .await?
        .into_webhook()?
        .into())
}

#[utoipa::path(put, path = "/v1/devices/{id}/webhook", tag = "webhooks",
    description = "Sets the device's webhook. Every event it wants is recorded before it counts as emitted and is \
delivered by the device's node, signed, in event order, at least once, retried on a Fibonacci schedule until \
delivered or `dead`.",
    params(("id" = String, Path)), request_body = PutWebhook,
    responses((status = 200, body = Webhook), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, description = "webhook_url_not_allowed, or an invalid secret or event", body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn put_webhook(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PutWebhook>,
) -> Result<Json<Webhook>, ApiError> {
    validate::device_id(&id)?;
    Ok(Json(set(&state, &id, body).await?))
}

#[utoipa::path(get, path = "/v1/devices/{id}/webhook", tag = "webhooks",
    params(("id" = String, Path)),
    responses((status = 200, body = Webhook),
        (status = 404, description = "no such device, or it has no webhook (`webhook_not_found`)", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_webhook(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Webhook>, ApiError> {
    validate::device_id(&id)?;
    match state.catalog.webhook(&id).await? {
        Some(view) => Ok(Json(view.into())),
        None => Err(ApiError::NotFound {
            code: "webhook_not_found",
            what: format!("a webhook of device {id}"),
        }),
    }
}

#[utoipa::path(delete, path = "/v1/devices/{id}/webhook", tag = "webhooks",
    description = "Removes the device's webhook. Its recorded deliveries stay listed; those still due become `dead` \
when their turn comes (replay them after setting a webhook again).",
    params(("id" = String, Path)),
    responses((status = 200, body = Deleted), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Deleted>, ApiError> {
    validate::device_id(&id)?;
    state
        .devices
        .execute(&id, DeviceCommand::DeleteWebhook(Empty {}))
        .await?
        .into_deleted()?;
    Ok(Json(Deleted { id, deleted: true }))
}

#[utoipa::path(get, path = "/v1/devices/{id}/webhook/deliveries", tag = "webhooks",
    params(("id" = String, Path),
        ("status" = Option<String>, Query, description = "pending, failed, delivered or dead",
            pattern = "^(pending|failed|delivered|dead)$"),
        ("limit" = Option<u32>, Query, description = "1 to 500, default 50", minimum = 1, maximum = 500),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page",
            pattern = "^[1-9][0-9]{0,17}$")),
    responses((status = 200, body = DeliveryList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn deliveries(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<DeliveryQuery>,
) -> Result<Json<DeliveryList>, ApiError> {
    validate::device_id(&id)?;
    let status = match &query.status {
        None => None,
        Some(s) => Some(DeliveryStatus::parse(s).ok_or_else(|| {
            ApiError::invalid(
                "invalid_status",
                format!("unknown status {s:?}; use pending, failed, delivered or dead"),
            )
        })?),
    };
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("invalid_limit", "limit is 1 to 500"));
    }
    let before = match &query.cursor {
        None => None,
        Some(cursor) => Some(
            cursor
                .parse::<i64>()
                .ok()
                .filter(|seq| *seq > 0)
                .ok_or_else(|| {
                    ApiError::invalid("invalid_cursor", "cursor is not one this API gave")
                })?,
        ),
    };
    let page = state.catalog.deliveries(&id, status, before, limit).await?;
    let next_cursor = (page.len() == limit as usize)
        .then(|| page.last().map(|d| d.seq.to_string()))
        .flatten();
    Ok(Json(DeliveryList {
        deliveries: page.into_iter().map(Delivery::from).collect(),
        next_cursor,
    }))
}

#[utoipa::path(post, path = "/v1/devices/{id}/webhook/deliveries/{event_id}/replay", tag = "webhooks",
    description = "Delivers that event again, whatever its status: it becomes `pending` with no attempts, in its place \
in event order (so it is delivered before the device's later events still due).",
    params(("id" = String, Path), ("event_id" = String, Path, min_length = 1, max_length = 64)),
    responses((status = 202, body = Replayed),
        (status = 404, description = "no such device or event (`delivery_not_found`)", body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn replay_one(
    State(state): State<AppState>,
    ApiPath((id, event_id)): ApiPath<(String, String)>,
) -> Result<(axum::http::StatusCode, Json<Replayed>), ApiError> {
    validate::device_id(&id)?;
    if event_id.is_empty() || event_id.len() > 64 {
        return Err(ApiError::NotFound {
            code: "delivery_not_found",
            what: format!("webhook delivery {event_id}"),
        });
    }
    replay(&state, &id, Some(event_id)).await
}

/// Queues one event (`Some`) or every dead one again through the device's owner.
async fn replay(
    state: &AppState,
    id: &str,
    event_id: Option<String>,
) -> Result<(axum::http::StatusCode, Json<Replayed>), ApiError> {
    let command = DeviceCommand::ReplayWebhook(ReplayWebhook { event_id });
    let replayed = state.devices.execute(id, command).await?.into_replayed()?;
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(Replayed { replayed }),
    ))
}

#[utoipa::path(post, path = "/v1/devices/{id}/webhook/replay", tag = "webhooks",
    description = "Queues every dead delivery of the device again, in event order.",
    params(("id" = String, Path)), request_body = ReplayBody,
    responses((status = 202, body = Replayed), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn replay_dead(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ReplayBody>,
) -> Result<(axum::http::StatusCode, Json<Replayed>), ApiError> {
    validate::device_id(&id)?;
    if body.status != "dead" {
        return Err(ApiError::invalid(
            "invalid_status",
            "only {\"status\": \"dead\"} can be replayed in bulk; replay one event by its id",
        ));
    }
    replay(&state, &id, None).await
}

#[utoipa::path(get, path = "/v1/settings/webhooks", tag = "webhooks",
    description = "How webhook deliveries are retried.",
    responses((status = 200, body = WebhookSettingsDto)),
    security(("api_key" = [])))]
pub async fn settings(State(state): State<AppState>) -> Result<Json<WebhookSettingsDto>, ApiError> {
    Ok(Json(state.catalog.webhook_settings().await?.into()))
}

#[utoipa::path(put, path = "/v1/settings/webhooks", tag = "webhooks",
    description = "Replaces the retry settings (admin); every field is required. Applies live on every node (within \
a second), from each delivery's next attempt.",
    request_body = WebhookSettingsDto,
    responses((status = 200, body = WebhookSettingsDto), (status = 400, body = ErrorBody),
        (status = 403, description = "not an admin of every tenant", body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn set_settings(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<WebhookSettingsDto>,
) -> Result<Json<WebhookSettingsDto>, ApiError> {
    caller.require_operator()?;
    let settings = WebhookSettings::from(body);
    settings.check().map_err(ApiError::Unprocessable)?;
    let settings = state.catalog.set_webhook_settings(settings).await?;
    state.devices.settings_changed().await;
    Ok(Json(settings.into()))
}

/// The routes of this file, each with its OpenAPI path.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_webhook, get_webhook, delete_webhook))
        .routes(routes!(deliveries))
        .routes(routes!(replay_one))
        .routes(routes!(replay_dead))
        .routes(routes!(settings, set_settings))
}
