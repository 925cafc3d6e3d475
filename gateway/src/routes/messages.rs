//! Sending messages, reading their status, and the message log.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_node::api::{DeviceCommand, SendText};
use wafleet_node::content::MediaPart;
use wafleet_node::media::MediaType;

use crate::AppState;
use crate::dto::{Accepted, Message, SendMedia, SendMessage, rfc3339};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::routes::message_log::{LogParams, MessagePage, message_page};
use crate::validate;

#[utoipa::path(post, path = "/v1/devices/{id}/messages", tag = "messages",
    description = "Accepts a text message: stored as queued before the answer, sent when the device is READY. \
`to` is a phone number or a group id the device's number is in (a group send is one message: it passes the rate \
limiter once; a device not in the group sees the message fail). `mentions` names up to 50 numbers the text mentions \
(400 invalid_mentions beyond). \
`reply_to` makes it a reply quoting a message of the device's log (the id from GET /v1/devices/{id}/messages, \
an outbound or an inbound message, of this chat or another one); the recipient sees the quoted message above it. \
A reply_to the log does not have is 422 reply_to_not_found (nothing is stored). \
Accepted while the device is linked and running (READY, STARTING, DISCONNECTED); otherwise 409 device_not_ready. \
With an Idempotency-Key header, a repeat returns the first message (header Idempotent-Replayed: true); \
the same key with a different message is 409 idempotency_key_reused. \
Every send passes the device's rate limiter (the quota of its trust level): within the pace it is sent at once; \
ahead of the pace but within the day's quota it is queued and the answer carries not_before, the time of its slot; \
beyond the day's quota (or with too many sends waiting, or while sending is paused after a ban) it is refused with \
429, a Retry-After header in seconds and the code daily_quota_exceeded, too_many_in_flight or sending_paused.",
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header,
        description = "1 to 255 visible ASCII characters", pattern = "^[!-~]{1,255}$")),
    request_body = SendMessage,
    responses((status = 202, body = Accepted), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn send(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SendMessage>,
) -> Result<Response, ApiError> {
    validate::device_id(&id)?;
    let to_phone = validate::recipient(&body.to)?;
    let mentions = match &body.mentions {
        Some(given) => validate::mentions(given.iter().map(|p| p.0.as_str()))?,
        None => Vec::new(),
    };
    let (text, media) = match body.media {
        None => {
            let text = body.text.ok_or_else(|| {
                ApiError::Unprocessable("text is required (or media, with a caption)".into())
            })?;
            validate::text(&text)?;
            (text, None)
        }
        Some(media) => {
            let caption = media.caption.clone().or(body.text).unwrap_or_default();
            if !caption.is_empty() {
                validate::text(&caption)?;
            }
            let tenant = state.catalog.device(&id).await?.tenant;
            (caption, Some(message_media(&state, &tenant, media).await?))
        }
    };
    let idempotency_key = match headers.get("idempotency-key") {
        Some(value) => {
            let key = value.to_str().map_err(|_| {
                ApiError::invalid(
                    "invalid_idempotency_key",
                    "the Idempotency-Key is not ASCII",
                )
            })?;
            validate::idempotency_key(key)?;
            Some(key.to_owned())
        }
        None => None,
    };
    let send = SendText {
        to_phone,
        text,
        idempotency_key,
        media: media.map(Into::into),
        mentions,
        reply_to: body.reply_to,
    };
    let command = DeviceCommand::SendText(send);
    let sent = state.devices.execute(&id, command).await?.into_sent()?;
    let not_before = crate::dto::later_than_created(&sent.message).map(rfc3339);
    let body = Accepted {
        id: sent.message.id,
        status: sent.message.status.as_str().to_owned(),
        not_before,
    };
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if sent.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// The file a send names, checked for the device's `tenant` by the media library's
/// rule: an upload (`id`), or a URL fetched and stored as one first.
async fn message_media(
    state: &AppState,
    tenant: &str,
    media: SendMedia,
) -> Result<MediaPart, ApiError> {
    let media_type = MediaType::parse(&media.media_type).ok_or_else(|| {
        ApiError::invalid(
            "invalid_media_type",
            "media.type must be image, video, audio, voice, document or sticker",
        )
    })?;
    let id = match (media.id, media.url) {
        (Some(id), None) => id,
        (None, Some(url)) => {
            state
                .media
                .fetch(tenant, &url, media_type, media.filename.clone())
                .await?
                .id
        }
        _ => {
            return Err(ApiError::Unprocessable(
                "media needs exactly one of id and url".into(),
            ));
        }
    };
    let mut part = state.media.for_send(tenant, &id, media_type).await?;
    if media.filename.is_some() {
        part.filename = media.filename;
    }
    Ok(part)
}

#[utoipa::path(get, path = "/v1/devices/{id}/messages/{message_id}", tag = "messages",
    params(("id" = String, Path), ("message_id" = String, Path, min_length = 1, max_length = 128)),
    responses((status = 200, body = Message), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get(
    State(state): State<AppState>,
    ApiPath((id, message_id)): ApiPath<(String, String)>,
) -> Result<Json<Message>, ApiError> {
    validate::device_id(&id)?;
    state.catalog.device(&id).await?;
    if message_id.is_empty() || message_id.len() > 128 {
        return Err(ApiError::NotFound {
            code: "message_not_found",
            what: format!("message {message_id}"),
        });
    }
    Ok(Json(state.catalog.message(&id, &message_id).await?.into()))
}

#[utoipa::path(get, path = "/v1/devices/{id}/messages", tag = "messages",
    description = "The message log: messages of both directions, newest first (by creation time, then id). \
Filters: direction (in or out), status, peer (a phone number: messages to or from it), since (at or after) and \
until (before), RFC 3339. Pages of `limit` (1 to 500, default 50); a full page has a next_cursor.",
    params(("id" = String, Path), LogParams),
    responses((status = 200, body = MessagePage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<LogParams>,
) -> Result<Json<MessagePage>, ApiError> {
    validate::device_id(&id)?;
    let query = params.query()?;
    let messages = state.catalog.messages(&id, &query).await?;
    Ok(Json(message_page(messages, query.limit)))
}

/// The routes of this file, each with its OpenAPI path (one declaration: the handler's
/// `#[utoipa::path]`).
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(send, list))
        .routes(routes!(get))
}
