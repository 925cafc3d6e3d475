//! The HTTP routes, one file per resource. Each file's `router()` declares its routes
//! with their OpenAPI paths; [`api`] gathers them, so the router and `/openapi.json`
//! cannot disagree.

pub mod audit;
pub mod chat_read;
pub mod chats;
pub mod cluster;
pub mod compat;
pub mod contacts;
pub mod devices;
pub mod events;
pub mod groups;
pub mod jobs;
pub mod keys;
pub mod limits;
pub mod me;
pub mod media;
pub mod message_log;
pub mod messages;
pub mod number_checks;
pub mod ops;
pub mod pairing;
pub mod qr;
pub mod retries;
pub mod templates;
pub mod tenants;
pub mod users;
pub mod webhooks;

use utoipa_axum::router::OpenApiRouter;

use crate::AppState;

/// Every authenticated route of the API, with its OpenAPI description.
pub(crate) fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(devices::router())
        .merge(qr::router())
        .merge(pairing::router())
        .merge(messages::router())
        .merge(media::router())
        .merge(chats::router())
        .merge(chat_read::router())
        .merge(number_checks::router())
        .merge(groups::router())
        .merge(events::router())
        .merge(limits::router())
        .merge(webhooks::router())
        .merge(compat::router())
        .merge(tenants::router())
        .merge(keys::router())
        .merge(users::router())
        .merge(me::router())
        .merge(audit::router())
        .merge(contacts::router())
        .merge(templates::router())
        .merge(retries::router())
        .merge(jobs::router())
        .merge(cluster::router())
}

/// The documented routes that need no key (login).
pub(crate) fn open_api() -> OpenApiRouter<AppState> {
    users::open_router()
}
