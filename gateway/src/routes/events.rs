//! Server-sent events: one device, or every device (optionally filtered), resumable
//! with `Last-Event-ID`.
//!
//! When the bus no longer holds every event after the id a client resumes from (or
//! after the last one it got, when it fell behind), the client gets an `event: reset`
//! (no `id:`, so its position stays where it was) naming its id and the oldest id the
//! bus still holds, then, for a stream of named devices, each device's current status
//! as a `status` event without an id, read from the store, then the events the bus
//! holds. A client of `/v1/events` without `devices=` reads the devices again with
//! `GET /v1/devices`. Without this a gap would look like a quiet period.

use std::collections::{HashSet, VecDeque};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value};
use wafleet_node::catalog::Catalog;
use wafleet_node::events::{Delivery, EventFilter, Reset};
use wafleet_node::store::DeviceRecord;

use crate::AppState;
use crate::auth::{Caller, check_device};
use crate::dto::rfc3339;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};
use crate::{sse, validate};

/// Query of the SSE routes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// `/v1/events` only: comma-separated device ids.
    pub devices: Option<String>,
    /// Alternative to the `Last-Event-ID` header (for clients that cannot set it).
    pub last_event_id: Option<String>,
}

#[utoipa::path(get, path = "/v1/devices/{id}/events", tag = "events",
    description = "SSE stream of one device: events status, qr, message.status, message.inbound, job.progress; \
each with an id to resume from with Last-Event-ID; a heartbeat comment at least every 15 s. \
Resuming from before what the server still holds gives a reset event, then the device's current status.",
    params(("id" = String, Path), ("Last-Event-ID" = Option<String>, Header)),
    responses((status = 200, description = "The device's events", content_type = "text/event-stream", body = String),
        (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn device_events(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<EventsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    validate::device_id(&id)?;
    if query.devices.is_some() {
        return Err(ApiError::invalid(
            "invalid_query",
            "devices= filters /v1/events; this stream is one device's",
        ));
    }
    state.catalog.device(&id).await?;
    let after = last_event_id(&headers, query.last_event_id.as_deref())?;
    let filter = EventFilter::Devices(HashSet::from([id]));
    stream(&state, filter, after).await
}

#[utoipa::path(get, path = "/v1/events", tag = "events",
    description = "SSE stream of every device (or those in ?devices=a,b), resumable with Last-Event-ID; \
resuming from before what the server still holds gives a reset event first.",
    params(("devices" = Option<String>, Query), ("Last-Event-ID" = Option<String>, Header)),
    responses((status = 200, description = "The events", content_type = "text/event-stream", body = String),
        (status = 400, body = ErrorBody), (status = 404, description = "a device of ?devices= the caller does not see", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn all_events(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<EventsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let filter = match query.devices.as_deref() {
        // Every device the caller sees: all, its tenant's, or its key's list.
        None | Some("") => match (&caller.tenant, &caller.devices) {
            (Some(tenant), Some(ids)) => {
                EventFilter::TenantDevices(tenant.clone(), ids.iter().cloned().collect())
            }
            (None, Some(ids)) => EventFilter::Devices(ids.iter().cloned().collect()),
            (Some(tenant), None) => EventFilter::Tenant(tenant.clone()),
            (None, None) => EventFilter::All,
        },
        Some(list) => {
            let ids: HashSet<String> = list.split(',').map(|s| s.trim().to_owned()).collect();
            for id in &ids {
                validate::device_id(id)?;
                check_device(&state, &caller, id).await?;
            }
            // Checked now; the tenant keeps a device deleted and made again by another
            // tenant under the same id out of the stream.
            match &caller.tenant {
                Some(tenant) => EventFilter::TenantDevices(tenant.clone(), ids),
                None => EventFilter::Devices(ids),
            }
        }
    };
    let after = last_event_id(&headers, query.last_event_id.as_deref())?;
    stream(&state, filter, after).await
}

fn last_event_id(headers: &HeaderMap, query: Option<&str>) -> Result<Option<u64>, ApiError> {
    let raw = match headers.get("last-event-id") {
        Some(value) => Some(value.to_str().unwrap_or("")),
        None => query,
    };
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(id) => id.parse().map(Some).map_err(|_| {
            ApiError::invalid(
                "invalid_last_event_id",
                format!("{id:?} is not an event id this API gave"),
            )
        }),
    }
}

async fn stream(
    state: &AppState,
    filter: EventFilter,
    after: Option<u64>,
) -> Result<Response, ApiError> {
    let mut named: Vec<String> = filter.devices().into_iter().flatten().cloned().collect();
    named.sort();
    let tenant = match &filter {
        EventFilter::TenantDevices(tenant, _) => Some(tenant.clone()),
        _ => None,
    };
    let subscription = state.bus.subscribe(filter, after).await.map_err(|error| {
        // The detail (the bus's address, its driver's error text) is for the log.
        tracing::warn!(%error, "cannot subscribe to the event bus");
        ApiError::Unavailable("the event stream is unavailable; retry later".to_owned())
    })?;
    let reader = Reader {
        subscription,
        catalog: state.catalog.clone(),
        named,
        tenant,
        queued: VecDeque::new(),
        _gauge: crate::metrics::SseClient::connect(),
    };
    let frames = futures_util::stream::unfold(reader, |mut reader| async move {
        let frame = reader.next().await?;
        Some((frame, reader))
    });
    Ok(sse::response(frames))
}

/// One client's stream: the subscription, and what a reset queued before it.
struct Reader {
    subscription: wafleet_node::events::Subscription,
    catalog: Catalog,
    /// The devices the stream names, in order (none: every device).
    named: Vec<String>,
    /// The tenant the named devices must belong to, when the stream is a tenant's.
    tenant: Option<String>,
    /// Frames of a reset, to send before the next event.
    queued: VecDeque<Bytes>,
    _gauge: crate::metrics::SseClient,
}

impl Reader {
    /// The next frame. What waits here is the stream's state at rest, held by every
    /// stream: the rare reset (store reads) is boxed so that its state is not.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(frame) = self.queued.pop_front() {
                return Some(frame);
            }
            match self.subscription.recv().await? {
                Delivery::Event(event) => return Some(sse::event_frame(&event)),
                Delivery::Reset(reset) => Box::pin(self.queue_reset(&reset)).await,
            }
        }
    }

    /// Queues the reset, then the named devices' current status.
    async fn queue_reset(&mut self, reset: &Reset) {
        self.queued.push_back(reset_sse(reset, &self.named));
        for id in &self.named {
            // A device deleted meanwhile has no state to tell.
            if let Ok(device) = self.catalog.device(id).await
                && self.tenant.as_ref().is_none_or(|t| *t == device.tenant)
            {
                self.queued.push_back(status_sse(&device));
            }
        }
    }
}

/// `event: reset`, without an id: ids are strings, as JavaScript cannot hold them as
/// numbers.
fn reset_sse(reset: &Reset, named: &[String]) -> Bytes {
    let mut data = Map::new();
    data.insert("last_event_id".into(), reset.after.to_string().into());
    data.insert(
        "oldest_id".into(),
        reset.oldest.map_or(Value::Null, |id| id.to_string().into()),
    );
    if let [device_id] = named {
        data.insert("device_id".into(), device_id.as_str().into());
    } else if !named.is_empty() {
        data.insert("device_ids".into(), named.to_vec().into());
    }
    sse::frame(None, "reset", &Value::Object(data).to_string())
}

/// A device's current status after a reset, as a `status` event without an id.
fn status_sse(device: &DeviceRecord) -> Bytes {
    let mut data = Map::new();
    data.insert("device_id".into(), device.id.as_str().into());
    data.insert("status".into(), device.status.as_str().into());
    if let Some(reason) = &device.status_reason {
        data.insert("reason".into(), reason.as_str().into());
    }
    if let Some(phone) = &device.phone {
        data.insert("phone".into(), phone.as_str().into());
    }
    data.insert("at".into(), rfc3339(device.updated_at_ms).into());
    sse::frame(None, "status", &Value::Object(data).to_string())
}

/// The routes of this file, each with its OpenAPI path (one declaration: the handler's
/// `#[utoipa::path]`).
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(device_events))
        .routes(routes!(all_events))
}
