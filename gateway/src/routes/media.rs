//! Media files: uploading one (`POST /v1/media`, streamed into the media storage),
//! reading one back, uploaded or received (`GET /v1/media/{id}`), and deleting one.

use std::io;

use axum::Json;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;
use wafleet_node::clock::rfc3339;
use wafleet_node::media::{ByteStream, MediaOrigin, MediaRecord, MediaType, NewMedia};

use crate::AppState;
use crate::auth::{Caller, tenant_asked};
use crate::dto::Deleted;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};

/// The multipart field that holds the file.
const FILE_FIELD: &str = "file";
/// Multipart fields skipped before `file` is found, at most.
const MAX_OTHER_FIELDS: usize = 8;

/// How an upload is described beside its bytes.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UploadParams {
    /// What the file will be sent as, which sets its size limit; by default guessed from
    /// its MIME type (image/*, video/*, audio/*; anything else is a document).
    #[param(pattern = "^(image|video|audio|voice|document|sticker)$")]
    #[serde(rename = "type")]
    pub media_type: Option<String>,
    /// The file's name (a raw body has none; a multipart field's own name wins).
    #[param(min_length = 1, max_length = 255)]
    pub filename: Option<String>,
    /// The tenant the file belongs to: an admin of every tenant may name one (default
    /// `default`); anyone else's uploads are their own tenant's (naming another is
    /// `404 tenant_not_found`).
    #[param(pattern = "^[a-zA-Z0-9_.@-]{1,64}$")]
    pub tenant: Option<String>,
}

/// A stored file, as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct MediaDto {
    /// `med_` and 32 hex digits: what a message's `media.id` takes.
    pub id: String,
    pub mime: String,
    /// Its size in bytes.
    pub size: u64,
    /// The SHA-256 of its bytes, 64 lowercase hex digits.
    pub sha256: String,
    /// What it is sent as by default, and the type whose size limit it passed.
    #[serde(rename = "type")]
    #[schema(pattern = "^(image|video|audio|voice|document|sticker)$")]
    pub media_type: String,
    pub filename: Option<String>,
    pub created_at: String,
}

impl From<MediaRecord> for MediaDto {
    fn from(record: MediaRecord) -> MediaDto {
        MediaDto {
            id: record.id,
            mime: record.mime,
            size: record.size,
            sha256: record.sha256,
            media_type: record.media_type.as_str().to_owned(),
            filename: record.filename,
            created_at: rfc3339(record.created_at_ms),
        }
    }
}

#[utoipa::path(post, path = "/v1/media", tag = "media",
    description = "Uploads a file, streamed to the media storage and sealed there (never held whole in memory): \
the raw bytes as the body with their Content-Type, or a multipart/form-data body whose field `file` holds them \
(its own Content-Type and file name are used). The file is capped at the size limit of its type (`?type=`, or \
guessed from the MIME type): past it, 413 payload_too_large and nothing is stored, at once when Content-Length \
announces it. Limits by default: image, video, audio and voice 16 MiB, document 2 GiB, sticker 500 KiB.",
    params(UploadParams),
    request_body(content = Vec<u8>, description = "The file's bytes (or multipart/form-data with a field `file`)",
        content_type = "application/octet-stream"),
    responses((status = 201, body = MediaDto), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<UploadParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<MediaDto>), ApiError> {
    let tenant = tenant_asked(&state, &caller, params.tenant).await?;
    let media_type = params
        .media_type
        .as_deref()
        .map(|name| {
            MediaType::parse(name).ok_or_else(|| {
                ApiError::invalid(
                    "invalid_media_type",
                    "type must be image, video, audio, voice, document or sticker",
                )
            })
        })
        .transpose()?;
    let content_type = header_text(&headers, header::CONTENT_TYPE);
    let bytes = body.into_data_stream().map_err(io::Error::other);
    let (mime, filename, announced_size, stream) = match multer::parse_boundary(&content_type) {
        Ok(boundary) => {
            let (mime, name, field) = file_field(bytes, boundary).await?;
            (mime, name.or(params.filename), None, field)
        }
        Err(_) => {
            let announced = header_text(&headers, header::CONTENT_LENGTH).parse().ok();
            (content_type, params.filename, announced, bytes.boxed())
        }
    };
    let new = NewMedia {
        tenant,
        mime,
        media_type,
        filename,
        announced_size,
        origin: MediaOrigin::Upload,
    };
    let record = state.media.put(new, stream).await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// The multipart body's `file` field, as its MIME type, file name and bytes. The
/// fields before it (a few) are skipped; a body without one is 400.
async fn file_field(
    body: impl futures_util::Stream<Item = io::Result<bytes::Bytes>> + Send + 'static,
    boundary: String,
) -> Result<(String, Option<String>, ByteStream), ApiError> {
    let bad = |message: String| ApiError::invalid("invalid_multipart", message);
    let mut multipart = multer::Multipart::new(body, boundary);
    for _ in 0..=MAX_OTHER_FIELDS {
        let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| bad(format!("the multipart body is malformed: {e}")))?
        else {
            break;
        };
        if field.name() != Some(FILE_FIELD) {
            continue;
        }
        let mime = field
            .content_type()
            .map(|m| m.essence_str().to_owned())
            .unwrap_or_default();
        let name = field.file_name().map(str::to_owned);
        return Ok((mime, name, field.map_err(io::Error::other).boxed()));
    }
    Err(bad(format!(
        "the multipart body has no field named {FILE_FIELD:?} among its first {} fields",
        MAX_OTHER_FIELDS + 1
    )))
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

#[utoipa::path(get, path = "/v1/media/{id}", tag = "media",
    description = "The file's bytes, streamed, with its Content-Type and Content-Length: an upload, or media a device \
received (named in message.inbound). Always served as an attachment (Content-Disposition) with \
X-Content-Type-Options: nosniff, so a browser never renders an uploaded page in the API's origin. Another tenant's \
file is 404 media_not_found, as one that does not exist.",
    params(("id" = String, Path, pattern = "^med_[0-9a-f]{32}$")),
    responses((status = 200, description = "The file's bytes", content_type = "application/octet-stream"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let record = state.media.record(&id).await?;
    if !caller.sees_tenant(&record.tenant) {
        return Err(not_found(&id));
    }
    let bytes = state.media.bytes(&record).await?;
    let mut response = Body::from_stream(bytes).into_response();
    let headers = response.headers_mut();
    if let Ok(mime) = HeaderValue::from_str(&record.mime) {
        headers.insert(header::CONTENT_TYPE, mime);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(record.size));
    headers.insert(
        header::CONTENT_DISPOSITION,
        content_disposition(record.filename.as_deref()),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", record.sha256)) {
        headers.insert(header::ETAG, etag);
    }
    Ok(response)
}

/// `attachment`, with the file's name if it has one: plainly when it is printable ASCII
/// without quotes or backslashes, else as RFC 5987 UTF-8 (`filename*=`).
fn content_disposition(filename: Option<&str>) -> HeaderValue {
    let Some(name) = filename else {
        return HeaderValue::from_static("attachment");
    };
    let plain = name
        .bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\');
    let value = if plain {
        format!("attachment; filename=\"{name}\"")
    } else {
        let encoded: String = name
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        format!("attachment; filename*=UTF-8''{encoded}")
    };
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

#[utoipa::path(delete, path = "/v1/media/{id}", tag = "media",
    description = "Deletes a file (its record first, so it is gone at once, then its bytes). Messages that named it \
keep their description; a queued message that still has to send it fails. Another tenant's file is 404 \
media_not_found, as one that does not exist.",
    params(("id" = String, Path, pattern = "^med_[0-9a-f]{32}$")),
    responses((status = 200, body = Deleted), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Deleted>, ApiError> {
    let record = state.media.record(&id).await?;
    if !caller.sees_tenant(&record.tenant) {
        return Err(not_found(&id));
    }
    state.media.delete(&id).await?;
    Ok(Json(Deleted { id, deleted: true }))
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound {
        code: "media_not_found",
        what: format!("media {id}"),
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        // Uploads are capped by their type's limit while they stream, not by the
        // API's body limit.
        .routes(routes!(upload).layer(DefaultBodyLimit::disable()))
        .routes(routes!(download, delete))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_quoted_or_encoded_never_raw() {
        assert_eq!(content_disposition(None), "attachment");
        assert_eq!(
            content_disposition(Some("invoice 7.pdf")),
            "attachment; filename=\"invoice 7.pdf\""
        );
        assert_eq!(
            content_disposition(Some("faktur \"é\".pdf")),
            "attachment; filename*=UTF-8''faktur%20%22%C3%A9%22.pdf"
        );
    }
}
