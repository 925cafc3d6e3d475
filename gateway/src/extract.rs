//! Extractors whose rejections are [`ApiError`]s, so bad input always gets the
//! documented JSON error instead of axum's plain-text one.

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::{DeserializeOwned, IgnoredAny};

use crate::error::ApiError;

/// `axum::Json` with API errors: 400 for malformed JSON, 422 for the wrong shape,
/// 413 for a body over the limit, 415 without a JSON content type.
///
/// Every body of this API is a JSON object: anything else is 422. (serde would also
/// build a struct from an array, its fields in order, so `[null, null]` created a
/// session; no client means that.)
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // The content type first, as `axum::Json` does.
        if !json_content_type(req.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "send the body as JSON with Content-Type: application/json".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| match e.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge {
                    limit: crate::BODY_LIMIT_BYTES as u64,
                },
                _ => ApiError::MalformedJson(e.body_text()),
            })?;
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(match serde_json::from_slice::<IgnoredAny>(&bytes) {
                Err(e) => ApiError::MalformedJson(format!("the body is not JSON: {e}")),
                Ok(_) => ApiError::Unprocessable("the body is a JSON object".into()),
            });
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// `application/json` or `application/*+json`, parameters aside (the rule of
/// `axum::Json`).
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let subtype = subtype.to_ascii_lowercase();
    kind.eq_ignore_ascii_case("application") && (subtype == "json" || subtype.ends_with("+json"))
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => ApiError::Unprocessable(e.body_text()),
        JsonRejection::JsonSyntaxError(e) => ApiError::MalformedJson(e.body_text()),
        other => ApiError::MalformedJson(other.body_text()),
    }
}

/// `axum::extract::Path` with API errors.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e: PathRejection| ApiError::invalid("invalid_path", e.body_text()))
    }
}

/// `axum::extract::Query` with API errors.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| ApiError::invalid("invalid_query", e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Two {
        a: Option<u32>,
        b: Option<u32>,
    }

    async fn status(content_type: Option<&str>, body: &str) -> StatusCode {
        let mut request = Request::builder().method("POST").uri("/");
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let request = request.body(Body::from(body.to_owned())).unwrap();
        match ApiJson::<Two>::from_request(request, &()).await {
            Ok(_) => StatusCode::OK,
            Err(error) => error.status_code(),
        }
    }

    #[tokio::test]
    async fn a_body_is_a_json_object_sent_as_json() {
        let json = Some("application/json");
        assert_eq!(status(json, r#" {"a": 1}"#).await, StatusCode::OK);
        assert_eq!(
            status(Some("application/merge-patch+json; charset=utf-8"), "{}").await,
            StatusCode::OK
        );
        // serde alone would take an array as the fields in order.
        assert_eq!(
            status(json, "[null, null]").await,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(status(json, "null").await, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            status(json, r#"{"a": "x"}"#).await,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(status(json, "nul").await, StatusCode::BAD_REQUEST);
        assert_eq!(status(json, "{").await, StatusCode::BAD_REQUEST);
        assert_eq!(status(json, "").await, StatusCode::BAD_REQUEST);
        assert_eq!(status(None, "{}").await, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(
            status(Some("text/plain"), "{}").await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }
}
