//! The one error type of the HTTP API, and the one place that maps it to a status.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use wafleet_node::FleetError;
use wafleet_node::access::Denied;
use wafleet_node::access::directory::AccessError;
use wafleet_node::media::MediaError;
use wafleet_node::store::StoreError;

/// Every failure an API client can see.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A value is malformed (bad id, phone, limit...): 400.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// The body is not JSON: 400.
    #[error("{0}")]
    MalformedJson(String),
    /// The body is JSON but not the expected shape (missing/unknown field, wrong type): 422.
    #[error("{0}")]
    Unprocessable(String),
    /// Well-formed, and refused by a rule the code names (422).
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("missing or invalid API key")]
    Unauthorized,
    /// The caller is known, and its role or tenant does not allow this: 403.
    #[error("{0}")]
    Forbidden(String),
    #[error("this method is not allowed on this route")]
    MethodNotAllowed,
    #[error("{what} not found")]
    NotFound { code: &'static str, what: String },
    /// The resource is not in a state that allows this: 409.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// A body with more items than one request takes: 413.
    #[error("{message}")]
    TooMany { code: &'static str, message: String },
    #[error("{0}")]
    Unavailable(String),
    #[error("the device did not answer in time")]
    Timeout,
    /// The device's rate limiter refused the send: 429 with `Retry-After`.
    #[error("{message}")]
    RateLimited {
        code: &'static str,
        message: String,
        retry_after_ms: i64,
    },
    #[error("internal error")]
    Internal(String),
}

/// The code of the error a response carries (in its extensions).
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// What a client is told when the store fails: never the store's own error text.
pub const STORE_UNAVAILABLE: &str = "the store is unavailable; retry later";

/// The JSON body of every error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong and whether retrying may help.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code to branch on.
    pub code: String,
    /// A human sentence.
    pub message: String,
    /// Whether the same request may succeed later.
    pub retryable: bool,
}

impl ApiError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::Invalid {
            code,
            message: message.into(),
        }
    }

    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Invalid { .. } | ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable(_) | ApiError::Refused { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::TooMany { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Invalid { code, .. }
            | ApiError::NotFound { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::Refused { code, .. }
            | ApiError::TooMany { code, .. }
            | ApiError::RateLimited { code, .. } => code,
            ApiError::MalformedJson(_) => "invalid_json",
            ApiError::Unprocessable(_) => "invalid_body",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Timeout => "timeout",
            ApiError::Internal(_) => "internal",
        }
    }

    /// Whether the same request may succeed later.
    fn retryable(&self) -> bool {
        matches!(
            self,
            ApiError::Unavailable(_)
                | ApiError::Timeout
                | ApiError::Internal(_)
                | ApiError::RateLimited { .. }
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
                retryable: self.retryable(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        // For the audit log, which sees responses, not errors.
        response.extensions_mut().insert(ErrorCode(self.code()));
        if let ApiError::RateLimited { retry_after_ms, .. } = &self {
            // Whole seconds, rounded up, so a client that waits that long is not early.
            let seconds = (retry_after_ms.max(&1) + 999) / 1000;
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<Denied> for ApiError {
    fn from(denied: Denied) -> ApiError {
        match denied {
            // Another tenant's thing: as if it did not exist.
            Denied::Hidden => ApiError::NotFound {
                code: "not_found",
                what: "resource".into(),
            },
            Denied::Forbidden(message) => ApiError::Forbidden(message),
        }
    }
}

impl From<AccessError> for ApiError {
    fn from(error: AccessError) -> ApiError {
        match error {
            AccessError::Unauthorized => ApiError::Unauthorized,
            AccessError::Denied(denied) => denied.into(),
            AccessError::NotFound { code, what } => ApiError::NotFound { code, what },
            AccessError::Conflict { code, message } => ApiError::Conflict { code, message },
            AccessError::Invalid { code, message } => ApiError::Refused { code, message },
            AccessError::TooManyAttempts { retry_after } => ApiError::RateLimited {
                code: "too_many_attempts",
                message: "too many failed logins; try again later".into(),
                retry_after_ms: retry_after.as_millis().max(1) as i64,
            },
            AccessError::Store(error) => FleetError::Store(error).into(),
        }
    }
}

impl From<wafleet_node::contacts::ContactError> for ApiError {
    fn from(error: wafleet_node::contacts::ContactError) -> ApiError {
        use wafleet_node::contacts::ContactError;
        match error {
            ContactError::Invalid { code, message } => ApiError::Invalid { code, message },
            too_many @ ContactError::TooMany { .. } => ApiError::TooMany {
                code: "too_many_contacts",
                message: too_many.to_string(),
            },
            ContactError::NotFound(phone) => ApiError::NotFound {
                code: "contact_not_found",
                what: format!("contact {phone}"),
            },
            ContactError::Store(error) => FleetError::Store(error).into(),
        }
    }
}

impl From<FleetError> for ApiError {
    fn from(error: FleetError) -> ApiError {
        match error {
            FleetError::DeviceNotFound(id) => ApiError::NotFound {
                code: "device_not_found",
                what: format!("device {id}"),
            },
            FleetError::MessageNotFound(id) => ApiError::NotFound {
                code: "message_not_found",
                what: format!("message {id}"),
            },
            FleetError::ReplyToNotFound(_) => ApiError::Refused {
                code: "reply_to_not_found",
                message: error.to_string(),
            },
            FleetError::DeviceExists(id) => ApiError::Conflict {
                code: "device_exists",
                message: format!("a device with id {id} already exists"),
            },
            FleetError::WrongState { code, message } => ApiError::Conflict { code, message },
            FleetError::IdempotencyKeyReused => ApiError::Conflict {
                code: "idempotency_key_reused",
                message: FleetError::IdempotencyKeyReused.to_string(),
            },
            FleetError::Timeout => ApiError::Timeout,
            // The detail (a path, a driver's error text, host names) is for the log only.
            FleetError::Store(StoreError::Unavailable(detail)) => {
                tracing::warn!(%detail, "store unavailable");
                ApiError::Unavailable(STORE_UNAVAILABLE.to_owned())
            }
            // The device moved to another node while this one handled the call.
            FleetError::Store(StoreError::Fenced { .. }) => {
                ApiError::Unavailable("this node no longer owns the device; retry".to_owned())
            }
            FleetError::Store(other) => ApiError::Internal(other.to_string()),
            FleetError::Internal(detail) => ApiError::Internal(detail),
            // The device's node cannot be reached (cluster): nothing ran, or it died.
            FleetError::Unavailable(reason) => ApiError::Unavailable(reason),
            FleetError::RateLimited {
                code,
                message,
                retry_after_ms,
            } => ApiError::RateLimited {
                code,
                message,
                retry_after_ms,
            },
            FleetError::Invalid(message) => ApiError::Unprocessable(message),
            FleetError::WebhookUrlNotAllowed(message) => ApiError::Refused {
                code: "webhook_url_not_allowed",
                message,
            },
            FleetError::DeliveryNotFound(id) => ApiError::NotFound {
                code: "delivery_not_found",
                what: format!("webhook delivery {id}"),
            },
            FleetError::GroupNotFound(id) => ApiError::NotFound {
                code: "group_not_found",
                what: format!("group {id} (or the device's number is not in it)"),
            },
            FleetError::GroupRefused { code, message } => ApiError::Refused { code, message },
        }
    }
}

impl From<MediaError> for ApiError {
    fn from(error: MediaError) -> ApiError {
        match error {
            MediaError::NotFound(key) => ApiError::NotFound {
                code: "media_not_found",
                what: format!("media {}", key.as_str().trim_end_matches(".meta")),
            },
            MediaError::TooLarge { limit } => ApiError::PayloadTooLarge { limit },
            MediaError::Invalid(message) => ApiError::invalid("invalid_media", message),
            MediaError::Fetch(message) => ApiError::Refused {
                code: "media_url_failed",
                message,
            },
            MediaError::Body(error) => ApiError::invalid(
                "upload_failed",
                format!("the upload's body failed; nothing was stored: {error}"),
            ),
            // The detail (paths, the object store's answer) is for the log only.
            MediaError::Storage(detail) => {
                tracing::warn!(%detail, "media storage unavailable");
                ApiError::Unavailable("the media storage is unavailable; retry later".to_owned())
            }
            MediaError::AlreadyExists(_) | MediaError::Unreadable(_) => {
                ApiError::Internal(error.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_send_is_a_429_with_retry_after_in_whole_seconds() {
        let error = ApiError::from(FleetError::RateLimited {
            code: "daily_quota_exceeded",
            message: "spent".into(),
            retry_after_ms: 1_001,
        });
        assert_eq!(error.status_code(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(error.code(), "daily_quota_exceeded");
        let response = error.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }

    #[tokio::test]
    async fn a_store_failure_says_unavailable_and_not_its_detail() {
        let detail = "unable to open database file: /var/lib/wafleet/wafleet.db";
        let error = ApiError::from(FleetError::Store(StoreError::Unavailable(detail.into())));
        assert_eq!(error.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(error.into_response().into_body(), 4096)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains(STORE_UNAVAILABLE), "{text}");
        assert!(!text.contains("wafleet.db"), "{text}");
        let internal = ApiError::from(FleetError::Store(StoreError::Corrupt(detail.into())));
        let body = axum::body::to_bytes(internal.into_response().into_body(), 4096)
            .await
            .unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("wafleet.db"));
    }

    #[test]
    fn a_fenced_write_is_a_retryable_503() {
        let error = ApiError::from(FleetError::Store(StoreError::Fenced {
            shard: 3,
            epoch: 1,
            current: Some(2),
        }));
        assert_eq!(error.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(error.retryable());
    }

    #[test]
    fn an_unreachable_owner_is_a_retryable_503_and_a_silent_one_a_504() {
        let unreachable = ApiError::from(FleetError::Unavailable("node-a is gone".into()));
        assert_eq!(unreachable.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(unreachable.code(), "unavailable");
        assert!(unreachable.retryable());
        let silent = ApiError::from(FleetError::Timeout);
        assert_eq!(silent.status_code(), StatusCode::GATEWAY_TIMEOUT);
        assert!(silent.retryable());
    }
}
