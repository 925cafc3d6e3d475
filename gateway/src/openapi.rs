//! The OpenAPI description of the API, served at `/openapi.json`.

use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "wafleet",
        description = "Run many linked WhatsApp devices behind one API. Authenticate with `Authorization: Bearer KEY` or `x-api-key: KEY`. Errors are `{\"error\": {\"code\", \"message\", \"retryable\"}}`."
    ),
    paths(
        routes::devices::create,
        routes::devices::list,
        routes::devices::get,
        routes::devices::delete,
        routes::devices::start,
        routes::devices::stop,
        routes::devices::restart,
        routes::devices::logout,
        routes::qr::qr,
        routes::pairing::pairing_code,
        routes::messages::send,
        routes::messages::get,
        routes::events::device_events,
        routes::events::all_events,
        routes::limits::limits,
        routes::limits::set_trust_level,
        routes::limits::trust_levels,
        routes::limits::set_trust_levels,
        routes::compat::list,
        routes::compat::create,
        routes::compat::delete,
        routes::compat::qr,
        routes::compat::restart,
    ),
    modifiers(&ApiKeyAuth),
    tags(
        (name = "devices", description = "Linked WhatsApp devices and their lifecycle"),
        (name = "messages", description = "Sending and message status"),
        (name = "events", description = "Server-sent events"),
        (name = "limits", description = "Rate limits and trust levels"),
        (name = "compatibility", description = "Routes of the original product's account management"),
    )
)]
struct ApiDoc;

struct ApiKeyAuth;

impl Modify for ApiKeyAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as JSON (built once).
pub fn document() -> String {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    })
    .clone()
}
