//! Server-sent events: one device, or every device (optionally filtered), resumable
//! with `Last-Event-ID`.

use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use wafleet_node::events::{DeviceEvent, EventBus, EventFilter};

use crate::AppState;
use crate::dto::rfc3339;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};
use crate::validate;

/// A comment line at least this often keeps proxies from closing an idle stream.
const HEARTBEAT: Duration = Duration::from_secs(15);

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
each with an id to resume from with Last-Event-ID; a heartbeat comment at least every 15 s.",
    params(("id" = String, Path), ("Last-Event-ID" = Option<String>, Header)),
    responses((status = 200, description = "text/event-stream"), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn device_events(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<EventsQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
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
    stream(&state.bus, filter, after).await
}

#[utoipa::path(get, path = "/v1/events", tag = "events",
    description = "SSE stream of every device (or those in ?devices=a,b), resumable with Last-Event-ID.",
    params(("devices" = Option<String>, Query), ("Last-Event-ID" = Option<String>, Header)),
    responses((status = 200, description = "text/event-stream"), (status = 400, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn all_events(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<EventsQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let filter = match query.devices.as_deref() {
        None | Some("") => EventFilter::All,
        Some(list) => {
            let ids: HashSet<String> = list.split(',').map(|s| s.trim().to_owned()).collect();
            for id in &ids {
                validate::device_id(id)?;
            }
            EventFilter::Devices(ids)
        }
    };
    let after = last_event_id(&headers, query.last_event_id.as_deref())?;
    stream(&state.bus, filter, after).await
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
    bus: &EventBus,
    filter: EventFilter,
    after: Option<u64>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>> + use<>>, ApiError> {
    let subscription = bus
        .subscribe(filter, after)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let gauge = crate::metrics::SseClient::connect();
    let events = futures_util::stream::unfold(
        (subscription, gauge),
        |(mut subscription, gauge)| async move {
            let event = subscription.next().await?;
            Some((Ok(to_sse(&event)), (subscription, gauge)))
        },
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat")))
}

fn to_sse(event: &DeviceEvent) -> Event {
    let mut data = event.data.clone();
    if let Some(map) = data.as_object_mut() {
        map.insert("at".into(), rfc3339(event.at_ms).into());
    }
    Event::default()
        .id(event.id.to_string())
        .event(event.kind.as_str())
        .data(data.to_string())
}

/// The routes of this file, each with its OpenAPI path (one declaration: the handler's
/// `#[utoipa::path]`).
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(device_events))
        .routes(routes!(all_events))
}
