//! API keys. For now one admin key (`WAFLEET_ADMIN_KEY`); tenants and user keys come
//! with key management.

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;
use crate::error::ApiError;

/// The keys the gateway accepts.
#[derive(Clone)]
pub struct Keys {
    admin: String,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").finish_non_exhaustive()
    }
}

impl Keys {
    pub fn new(admin_key: impl Into<String>) -> Keys {
        Keys {
            admin: admin_key.into(),
        }
    }

    fn accepts(&self, presented: &str) -> bool {
        constant_time_eq(self.admin.as_bytes(), presented.as_bytes())
    }
}

/// The key presented as `Authorization: Bearer KEY` or `x-api-key: KEY`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get("x-api-key") {
        return value.to_str().ok();
    }
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

/// Middleware: 401 unless the request carries a valid key.
pub async fn require_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    match presented_key(request.headers()) {
        Some(key) if state.keys.accepts(key) => Ok(next.run(request).await),
        _ => Err(ApiError::Unauthorized),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_either_header() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer k1".parse().unwrap());
        assert_eq!(presented_key(&headers), Some("k1"));
        headers.insert("x-api-key", "k2".parse().unwrap());
        assert_eq!(presented_key(&headers), Some("k2"));
        let keys = Keys::new("k2");
        assert!(keys.accepts("k2"));
        assert!(!keys.accepts("k1"));
        assert!(!keys.accepts(""));
    }
}
