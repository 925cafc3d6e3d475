//! The OpenAPI description of the API, served at `/openapi.json`: the title, tags and
//! security scheme here, the paths from the routes themselves ([`crate::routes::api`]).

use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "wafleet",
        description = "Run many linked WhatsApp devices behind one API. Authenticate with `Authorization: Bearer KEY` or `x-api-key: KEY`. Errors are `{\"error\": {\"code\", \"message\", \"retryable\"}}`."
    ),
    modifiers(&ApiKeyAuth),
    tags(
        (name = "devices", description = "Linked WhatsApp devices and their lifecycle"),
        (name = "messages", description = "Sending and message status"),
        (name = "events", description = "Server-sent events"),
        (name = "limits", description = "Rate limits and trust levels"),
        (name = "compatibility", description = "Routes of the original product's account management"),
        (name = "access", description = "Tenants, API keys, users, login and the audit log"),
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
        let (_, paths) = crate::routes::api().split_for_parts();
        let mut doc = ApiDoc::openapi();
        doc.merge(paths);
        doc.merge(crate::routes::open_api().split_for_parts().1);
        doc.to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    })
    .clone()
}
