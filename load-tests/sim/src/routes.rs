//! The control API under `/sim/`: what a person does with a phone, as HTTP. Every
//! failure is a [`SimError`], turned into a status and a JSON body in one place.

use std::time::Duration;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State, rejection::PathRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};

use base64::Engine;
use futures_util::TryStreamExt;

use super::SentMessage;
use super::{Blob, InboxMessage, NewLink, SimError, SimStats, phone, server::AppState};

/// The longest ban a request may ask for (ten years).
const MAX_BAN_SECONDS: u64 = 10 * 365 * 24 * 3600;

/// The `/sim/...` routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/sim/scan", post(scan))
        .route("/sim/pair-code", post(pair_code))
        .route("/sim/phones/{phone}/sent", get(sent))
        .route("/sim/phones/{phone}/absent", post(absent).delete(present))
        .route("/sim/phones/{phone}/fail", post(fail).get(failing))
        .route("/sim/stats", get(stats))
        .route("/sim/phones/{phone}/inbox", get(inbox))
        .route(
            "/sim/phones/{phone}/send",
            post(send).layer(axum::extract::DefaultBodyLimit::max(SEND_BODY_LIMIT)),
        )
        .route("/sim/phones/{phone}/read", post(read))
        .route("/sim/phones/{phone}/unlink", post(unlink))
        .route("/sim/phones/{phone}/ban", post(ban))
        .route("/sim/groups/{id}", get(group))
        .route("/sim/media", post(put_media))
        .route("/sim/media/{handle}", get(get_media))
}

/// `POST /sim/media`: the raw body, with its `Content-Type`, stored under a new handle
/// → 201 [`Blob`]. Not capped: the simulator trusts its devices.
async fn put_media(
    State(app): State<AppState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<(StatusCode, Json<Blob>), SimError> {
    let mime = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let blob = app
        .network
        .put_media(&mime, Box::pin(stream))
        .await
        .map_err(|e| SimError::Storage(e.to_string()))?;
    Ok((StatusCode::CREATED, Json(blob)))
}

/// `GET /sim/media/{handle}`: the bytes, with their `Content-Type`; 404
/// `media_not_found`.
async fn get_media(
    State(app): State<AppState>,
    Path(handle): Path<String>,
) -> Result<Response, SimError> {
    let (blob, file) = app
        .network
        .media_file(&handle)
        .await
        .ok_or(SimError::MediaNotFound)?;
    let body = axum::body::Body::from_stream(tokio_util_stream(file));
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, blob.mime),
            (axum::http::header::CONTENT_LENGTH, blob.size.to_string()),
        ],
        body,
    )
        .into_response())
}

/// A file as a stream of chunks.
fn tokio_util_stream(
    file: tokio::fs::File,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    futures_util::stream::try_unfold(file, |mut file| async move {
        let mut chunk = vec![0u8; 64 * 1024];
        let n = tokio::io::AsyncReadExt::read(&mut file, &mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        chunk.truncate(n);
        Ok(Some((Bytes::from(chunk), file)))
    })
}

#[derive(Debug, Deserialize)]
struct ScanRequest {
    /// The raw content of the QR code.
    qr: String,
    phone: String,
}

async fn scan(State(app): State<AppState>, body: Bytes) -> Result<Json<NewLink>, SimError> {
    let request: ScanRequest = parse(&body)?;
    Ok(Json(app.network.scan(&request.qr, &request.phone)?))
}

#[derive(Debug, Deserialize)]
struct PairCodeEntry {
    phone: String,
    code: String,
}

async fn pair_code(State(app): State<AppState>, body: Bytes) -> Result<Json<NewLink>, SimError> {
    let entry: PairCodeEntry = parse(&body)?;
    Ok(Json(
        app.network.enter_pair_code(&entry.phone, &entry.code)?,
    ))
}

async fn stats(State(app): State<AppState>) -> Json<SimStats> {
    Json(app.network.stats())
}

async fn inbox(
    State(app): State<AppState>,
    phone: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<InboxMessage>>, SimError> {
    let phone = path_phone(phone)?;
    Ok(Json(app.network.inbox(&phone)?))
}

/// The largest `POST /sim/phones/{phone}/send` body (its media travels as base64).
const SEND_BODY_LIMIT: usize = 64 << 20;

/// `GET /sim/groups/{id}`: the group, or 404 `group_not_found`.
async fn group(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<super::GroupView>, SimError> {
    Ok(Json(app.network.group(&id)?))
}

#[derive(Debug, Deserialize)]
struct PhoneMessage {
    /// The number written to; or `group`.
    to_phone: Option<String>,
    /// The group written in (`120363…@g.us`), instead of `to_phone`.
    group: Option<String>,
    /// The text; with media, its caption (optional then).
    #[serde(default)]
    text: Option<String>,
    media: Option<PhoneMedia>,
    /// The message it replies to: the id of a message the phone received or sent.
    reply_to: Option<String>,
}

/// A file a phone sends.
#[derive(Debug, Deserialize)]
struct PhoneMedia {
    /// image, video, audio, voice, document or sticker.
    #[serde(rename = "type")]
    kind: String,
    mime: String,
    data_base64: String,
    /// The caption (instead of `text`).
    caption: Option<String>,
    filename: Option<String>,
}

const MEDIA_TYPES: [&str; 6] = ["image", "video", "audio", "voice", "document", "sticker"];

async fn send(
    State(app): State<AppState>,
    phone: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), SimError> {
    let phone = path_phone(phone)?;
    phone::validate(&phone)?;
    let message: PhoneMessage = parse(&body)?;
    let to = match (message.to_phone, message.group) {
        (Some(to), None) => {
            phone::validate(&to)?;
            to
        }
        (None, Some(group)) => group,
        _ => {
            return Err(SimError::InvalidRequest(
                "give exactly one of to_phone and group".into(),
            ));
        }
    };
    let (text, media) = match message.media {
        None => {
            let text = message
                .text
                .ok_or_else(|| SimError::InvalidRequest("text or media is required".into()))?;
            (text, None)
        }
        Some(media) => {
            if !MEDIA_TYPES.contains(&media.kind.as_str()) {
                return Err(SimError::InvalidRequest(format!(
                    "media.type must be one of {MEDIA_TYPES:?}"
                )));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(media.data_base64.as_bytes())
                .map_err(|e| SimError::InvalidRequest(format!("media.data_base64: {e}")))?;
            let body = futures_util::stream::iter([Ok(Bytes::from(bytes))]);
            let blob = app
                .network
                .put_media(&media.mime, body)
                .await
                .map_err(|e| SimError::Storage(e.to_string()))?;
            let info = wafleet_protocol::sim::MediaInfo {
                r#type: media.kind,
                mime: blob.mime,
                handle: blob.handle,
                size: blob.size,
                sha256: blob.sha256,
                filename: media.filename,
            };
            let caption = media.caption.or(message.text).unwrap_or_default();
            (caption, Some(info))
        }
    };
    let message_id = match (message.reply_to, media) {
        (Some(reply_to), media) => app
            .network
            .reply_from_phone(&phone, &to, &text, media, &reply_to)?,
        (None, None) => app.network.send_from_phone(&phone, &to, &text)?,
        (None, Some(info)) => app
            .network
            .send_media_from_phone(&phone, &to, &text, info)?,
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "message_id": message_id })),
    ))
}

async fn read(
    State(app): State<AppState>,
    phone: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, SimError> {
    let phone = path_phone(phone)?;
    let read = app.network.read(&phone)?;
    Ok(Json(json!({ "read": read })))
}

async fn unlink(
    State(app): State<AppState>,
    phone: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, SimError> {
    let phone = path_phone(phone)?;
    let unlinked = app.network.unlink(&phone)?;
    Ok(Json(json!({ "unlinked": unlinked })))
}

#[derive(Debug, Default, Deserialize)]
struct BanRequest {
    /// How long; the network's `ban_duration` when absent.
    seconds: Option<u64>,
}

async fn ban(
    State(app): State<AppState>,
    phone: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Json<Value>, SimError> {
    let phone = path_phone(phone)?;
    phone::validate(&phone)?;
    let request: BanRequest = if body.iter().all(u8::is_ascii_whitespace) {
        BanRequest::default()
    } else {
        parse(&body)?
    };
    let duration = match request.seconds {
        Some(seconds) if seconds > MAX_BAN_SECONDS => {
            let detail = format!("seconds must be at most {MAX_BAN_SECONDS}");
            return Err(SimError::InvalidRequest(detail));
        }
        seconds => seconds.map(Duration::from_secs),
    };
    let until = app.network.ban(&phone, duration)?;
    Ok(Json(json!({
        "phone": phone,
        "until": humantime::format_rfc3339_millis(until).to_string(),
    })))
}

async fn sent(
    State(app): State<AppState>,
    phone: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<SentMessage>>, SimError> {
    let phone = path_phone(phone)?;
    Ok(Json(app.network.sent(&phone)?))
}

#[derive(Debug, Deserialize)]
struct AbsentRequest {
    /// `false` puts the number back on WhatsApp.
    absent: bool,
}

async fn absent(
    State(app): State<AppState>,
    phone: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Json<Value>, SimError> {
    let phone = path_phone(phone)?;
    phone::validate(&phone)?;
    let absent = if body.iter().all(u8::is_ascii_whitespace) {
        true
    } else {
        parse::<AbsentRequest>(&body)?.absent
    };
    app.network.set_absent(&phone, absent)?;
    Ok(Json(json!({ "phone": phone, "absent": absent })))
}

async fn present(
    State(app): State<AppState>,
    phone: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, SimError> {
    let phone = path_phone(phone)?;
    app.network.set_absent(&phone, false)?;
    Ok(Json(json!({ "phone": phone, "absent": false })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailRequest {
    /// How many of the next sends to the number fail (0: none from now).
    times: u32,
    /// Their receipts' error; `unavailable` when absent.
    error: Option<String>,
}

/// `POST /sim/phones/{phone}/fail`: the next `times` sends to the number fail.
async fn fail(
    State(app): State<AppState>,
    phone: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Json<Value>, SimError> {
    let phone = path_phone(phone)?;
    let request: FailRequest = parse(&body)?;
    let error = request
        .error
        .unwrap_or_else(|| super::failing::DEFAULT_ERROR.to_owned());
    if error.is_empty() {
        return Err(SimError::InvalidRequest("error must not be empty".into()));
    }
    app.network.fail(&phone, request.times, &error)?;
    Ok(Json(
        json!({ "phone": phone, "times": request.times, "error": error }),
    ))
}

/// `GET /sim/phones/{phone}/fail`: the refusals still to make, and those made.
async fn failing(
    State(app): State<AppState>,
    phone: Result<Path<String>, PathRejection>,
) -> Result<Json<super::FailingView>, SimError> {
    let phone = path_phone(phone)?;
    Ok(Json(app.network.failing(&phone)?))
}

/// The `{phone}` of the path; a path that cannot be read is an invalid phone too.
fn path_phone(phone: Result<Path<String>, PathRejection>) -> Result<String, SimError> {
    match phone {
        Ok(Path(phone)) => Ok(phone),
        Err(rejection) => Err(SimError::invalid_phone(&rejection.body_text())),
    }
}

/// Read a JSON body whatever its content type: syntax errors are 400, wrong or
/// missing fields 422.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, SimError> {
    serde_json::from_slice(body).map_err(|error| match error.classify() {
        serde_json::error::Category::Data => SimError::InvalidRequest(error.to_string()),
        _ => SimError::InvalidJson(error.to_string()),
    })
}

impl SimError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            SimError::InvalidPhone(_) | SimError::InvalidJson(_) => StatusCode::BAD_REQUEST,
            SimError::QrNotFound
            | SimError::PairCodeNotFound
            | SimError::NoLinkedDevice(_)
            | SimError::MediaNotFound
            | SimError::GroupNotFound(_)
            | SimError::MessageNotFound(_) => StatusCode::NOT_FOUND,
            SimError::NotInGroup(_) => StatusCode::FORBIDDEN,
            SimError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
            SimError::QrExpired | SimError::PairCodeExpired => StatusCode::GONE,
            SimError::InvalidRequest(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }
}

impl IntoResponse for SimError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": { "code": self.code(), "message": self.to_string(), "retryable": false }
        });
        (self.status(), Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_errors_split_into_400_and_422() {
        #[derive(Debug, Deserialize)]
        struct Body {
            #[allow(dead_code)]
            phone: String,
        }
        let syntax = parse::<Body>(b"{nope").unwrap_err();
        assert_eq!(syntax.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            parse::<Body>(b"").unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
        let data = parse::<Body>(br#"{"phone": 5}"#).unwrap_err();
        assert_eq!(data.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(data.code(), "invalid_request");
    }

    #[test]
    fn every_error_maps_to_a_client_status() {
        let errors = [
            SimError::invalid_phone("x"),
            SimError::QrNotFound,
            SimError::QrExpired,
            SimError::PairCodeNotFound,
            SimError::PairCodeExpired,
            SimError::NoLinkedDevice("62811111111".into()),
            SimError::InvalidJson("x".into()),
            SimError::InvalidRequest("x".into()),
            SimError::MessageNotFound("m-1".into()),
        ];
        for error in errors {
            assert!(error.status().is_client_error(), "{error:?}");
        }
    }
}
