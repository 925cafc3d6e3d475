//! Sending messages (now or scheduled), cancelling them, reading their status, and
//! the message log.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_node::api::{CancelMessage, DeviceCommand, SendText};
use wafleet_node::content::MediaPart;
use wafleet_node::media::MediaType;

use crate::AppState;
use crate::dto::{Accepted, Message, SendMedia, SendMessage, rfc3339, time_param};
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
429, a Retry-After header in seconds and the code daily_quota_exceeded, too_many_in_flight or sending_paused. \
With send_at (RFC 3339) ahead, the message is scheduled: stored at once and answered 202 with status scheduled, \
listed by ?status=scheduled, sent at that time (or as soon after as the device's rate limiter allows); it holds up \
none of the device's other messages and spends no quota before it is due, and it is sent by whichever node owns the \
device then (it survives restarts and moves). send_at now or past sends at once; more than a year ahead is 422; not \
RFC 3339 is 400 invalid_time. A scheduled or queued message can be cancelled until it leaves (POST .../cancel).",
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header,
        description = "1 to 255 visible ASCII characters, not starting with `job:` (the campaigns' own keys)",
        pattern = "^[!-~]{1,255}$")),
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
    let send_at_ms = time_param(body.send_at.as_deref(), "send_at")?;
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
        send_at_ms,
        reply_to: body.reply_to,
    };
    let command = DeviceCommand::SendText(send);
    let sent = state.devices.execute(&id, command).await?.into_sent()?;
    let not_before = crate::dto::later_than_created(&sent.message).map(rfc3339);
    let body = Accepted {
        id: sent.message.id,
        status: sent.message.status.as_str().to_owned(),
        send_at: sent.message.send_at_ms.map(rfc3339),
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
pub(crate) async fn message_media(
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

#[utoipa::path(post, path = "/v1/devices/{id}/messages/{message_id}/cancel", tag = "messages",
    description = "Cancels an outbound message that has not left: a scheduled one, or a queued one the device has \
not handed to WhatsApp yet. It becomes cancelled (final): it is never sent, its rate-limit slot is given back, and a \
message.status event says cancelled. The device's owner decides, as it alone knows what it has handed to WhatsApp, \
so a cancel never races its sending. 200 with the message; again on a cancelled message (safe to repeat). \
409 message_not_cancellable (the message says its status) once it has left or is being sent, or for a received \
message. 404 for an unknown device or message.",
    params(("id" = String, Path), ("message_id" = String, Path, min_length = 1, max_length = 128)),
    responses((status = 200, body = Message), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "the message has left (or is being sent), or was received", body = ErrorBody),
        (status = 503, description = "the device's node cannot be reached; safe to retry", body = ErrorBody),
        (status = 504, description = "the device did not answer in time; safe to retry", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    ApiPath((id, message_id)): ApiPath<(String, String)>,
) -> Result<Json<Message>, ApiError> {
    validate::device_id(&id)?;
    if message_id.is_empty() || message_id.len() > 128 {
        return Err(ApiError::NotFound {
            code: "message_not_found",
            what: format!("message {message_id}"),
        });
    }
    let command = DeviceCommand::CancelMessage(CancelMessage { message_id });
    let message = state.devices.execute(&id, command).await?.into_message()?;
    Ok(Json(message.into()))
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
        .routes(routes!(cancel))
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// The OpenAPI document has `send_at` on a send, in a message and in the answer,
    /// and the cancel route with every status it answers.
    #[test]
    fn the_openapi_document_states_scheduling_and_cancelling() {
        let doc: Value = serde_json::from_str(&crate::openapi::document()).unwrap();
        let schemas = &doc["components"]["schemas"];
        for schema in ["SendMessage", "Message", "Accepted"] {
            assert!(
                schemas[schema]["properties"]["send_at"].is_object(),
                "{schema} has no send_at"
            );
        }
        let cancel = &doc["paths"]["/v1/devices/{id}/messages/{message_id}/cancel"]["post"];
        for status in ["200", "400", "404", "409", "503", "504"] {
            assert!(
                cancel["responses"].get(status).is_some(),
                "cancel: {status}"
            );
        }
        assert!(
            cancel["description"]
                .as_str()
                .unwrap()
                .contains("message_not_cancellable")
        );
        let status = doc["paths"]["/v1/devices/{id}/messages"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "status")
            .unwrap()
            .clone();
        let pattern = status["schema"]["pattern"].as_str().unwrap();
        assert!(pattern.contains("scheduled") && pattern.contains("cancelled"));
    }
}
