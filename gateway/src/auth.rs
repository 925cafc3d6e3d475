//! The one guard every API route passes: who is calling, whether they may touch the
//! device the route names, and the audit entry of every change.
//!
//! [`guard`] runs as a route layer on every authenticated route (see `crate::routes`):
//! 1. the key (`Authorization: Bearer KEY` or `x-api-key: KEY`) or login token is
//!    checked by [`Directory::authenticate`]: 401 without a valid one;
//! 2. on a route under `/v1/devices/{id}` or `/whatsapp/sessions/{id}`, a caller that
//!    does not see every device has the device read and checked: another tenant's
//!    device (or one outside a key's `devices`) is `404 device_not_found`, exactly as
//!    a device that does not exist, so a new device route cannot forget the check;
//! 3. the caller is handed to the handler as [`Caller`] (a handler without it cannot
//!    learn who calls; a route outside the guard that asks for it gets 401);
//! 4. every request that is not a read (`GET`, `HEAD`) is written to the audit log with
//!    its outcome.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use wafleet_node::access::Principal;
use wafleet_node::access::audit::entry_id;
use wafleet_node::clock::now_ms;
use wafleet_node::store::AuditEntry;

use crate::AppState;
use crate::error::{ApiError, ErrorCode};

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<Principal>);

impl std::ops::Deref for Caller {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or(ApiError::Unauthorized)
    }
}

/// The tenant a tenant-level request works on (a contact book, an upload): the
/// caller's own, or, for an admin of every tenant, the one `?tenant=` names (default
/// `default`). A tenant that does not exist, or that a tenant's key names for another
/// tenant, is `404 tenant_not_found`.
pub async fn tenant_asked(
    state: &AppState,
    caller: &Caller,
    asked: Option<String>,
) -> Result<String, ApiError> {
    match asked {
        None => Ok(caller
            .tenant
            .clone()
            .unwrap_or_else(|| wafleet_node::access::DEFAULT_TENANT.to_owned())),
        Some(asked) => Ok(state.access.tenant(caller, &asked).await?.id),
    }
}

/// The key presented as `Authorization: Bearer KEY` or `x-api-key: KEY`.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
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

/// The route prefixes whose `{id}` is a device.
pub(crate) const DEVICE_ROUTES: [&str; 2] = ["/v1/devices/{id}", "/whatsapp/sessions/{id}"];

/// The middleware: authenticate, check the device, run, audit.
pub async fn guard(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    params: RawPathParams,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = presented_key(request.headers()).ok_or(ApiError::Unauthorized)?;
    let caller = Arc::new(state.access.authenticate(presented, now_ms()).await?);
    let route = matched.as_ref().map(MatchedPath::as_str).unwrap_or("");
    let audited = !matches!(*request.method(), Method::GET | Method::HEAD);
    let entry = audited.then(|| Pending {
        action: state.action_of(request.method(), route),
        target: request.uri().path().to_owned(),
        source: source_of(&request),
    });
    let device = DEVICE_ROUTES
        .iter()
        .any(|prefix| route.starts_with(prefix))
        .then(|| params.iter().find(|(name, _)| *name == "id"))
        .flatten();
    let allowed = match device {
        Some((_, id)) => check_device(&state, &caller, id).await,
        None => Ok(()),
    };
    let response = match allowed {
        Ok(()) => {
            request.extensions_mut().insert(Caller(caller.clone()));
            next.run(request).await
        }
        Err(refused) => refused.into_response(),
    };
    if let Some(entry) = entry {
        state.audit.record(entry.done(&caller, &response));
    }
    Ok(response)
}

/// 404 unless `caller` sees device `id` (a device that does not exist is 404 as well;
/// the handler would say the same).
pub async fn check_device(state: &AppState, caller: &Principal, id: &str) -> Result<(), ApiError> {
    if caller.sees_all_devices() {
        return Ok(());
    }
    let device = state.catalog.device(id).await?;
    if caller.sees_device(&device) {
        Ok(())
    } else {
        Err(wafleet_node::FleetError::DeviceNotFound(id.to_owned()).into())
    }
}

/// The client's address, as the listener accepted it (the HTTP edge hands every request
/// its connection's peer as `ConnectInfo`).
pub fn source_of(request: &Request) -> String {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// An audit entry waiting for its response.
struct Pending {
    action: String,
    target: String,
    source: String,
}

impl Pending {
    fn done(self, caller: &Principal, response: &Response) -> AuditEntry {
        let at_ms = now_ms();
        let status = response.status();
        let outcome = match response.extensions().get::<ErrorCode>() {
            Some(ErrorCode(code)) => (*code).to_owned(),
            None if status.is_success() => "ok".to_owned(),
            None => format!("status_{}", status.as_u16()),
        };
        AuditEntry {
            id: entry_id(at_ms),
            at_ms,
            actor: caller.actor.clone(),
            tenant: caller.tenant.clone(),
            action: self.action,
            target: self.target,
            source: self.source,
            status: status.as_u16(),
            outcome,
        }
    }
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
        headers.remove("x-api-key");
        headers.insert("authorization", "Basic k1".parse().unwrap());
        assert_eq!(presented_key(&headers), None);
    }
}
