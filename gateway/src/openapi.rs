//! The OpenAPI description of the API, served at `/openapi.json`: the title, tags and
//! security scheme here, the paths from the routes themselves ([`crate::routes::api`]).

use std::sync::OnceLock;

use serde_json::{Value, json};
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
        (name = "messages", description = "Sending, message status and the message log"),
        (name = "chats", description = "Conversations: one per phone number or group, newest first"),
        (name = "groups", description = "The device's WhatsApp groups: participants and admins"),
        (name = "events", description = "Server-sent events"),
        (name = "limits", description = "Rate limits and trust levels"),
        (name = "compatibility", description = "Routes of the original product's account management"),
        (name = "access", description = "Tenants, API keys, users, login and the audit log"),
        (name = "contacts", description = "Which phone numbers are on WhatsApp, and the tenant's contact book: saved contacts and their tags"),
        (name = "templates", description = "The tenant's message templates, with `{{var}}` placeholders"),
        (name = "jobs", description = "Campaigns: bulk jobs, their progress, and how failed sends are retried"),
        (name = "cluster", description = "The nodes, the shards they hold and the recoveries under way (admin)"),
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
        serde_json::to_value(&doc)
            .map(|mut doc| {
                complete(&mut doc);
                doc
            })
            .and_then(|doc| serde_json::to_string_pretty(&doc))
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    })
    .clone()
}

/// Adds to every operation what the layers in front of its handler may answer, so that
/// no route can forget them:
/// - [`crate::auth::guard`] (operations with a security requirement): 401 without a
///   valid key, 503 when the access directory's store cannot be read; and on a device
///   route (`{id}` under [`crate::auth::DEVICE_ROUTES`]) the device id's pattern, which
///   every device handler checks first ([`crate::validate::device_id`], 400);
/// - [`crate::extract::ApiJson`] (a required JSON body): 400 malformed, 413 too large,
///   415 not sent as JSON, 422 not the expected shape;
/// - [`crate::extract::ApiPath`] and [`crate::extract::ApiQuery`] (path or query
///   parameters): 400.
///
/// A status an operation documents itself (with its own description) is kept.
///
/// An optional request body (`request_body = Option<T>`, which utoipa spells as "`T` or
/// `null`") is left out by sending none: the body `null` is not one the handlers take,
/// so the `null` branch is dropped.
fn complete(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let device_route = crate::auth::DEVICE_ROUTES
            .iter()
            .any(|prefix| path.starts_with(prefix));
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for operation in item.values_mut().filter_map(Value::as_object_mut) {
            let secured = operation
                .get("security")
                .and_then(Value::as_array)
                .is_some_and(|s| !s.is_empty());
            let json_body = operation.get("requestBody").is_some_and(|body| {
                body["required"] == Value::Bool(true)
                    && body["content"].get("application/json").is_some()
            });
            if let Some(body) = operation.get_mut("requestBody")
                && body["required"] != Value::Bool(true)
            {
                for media in body["content"].as_object_mut().into_iter().flatten() {
                    drop_null_branch(&mut media.1["schema"]);
                }
            }
            let mut has_parameters = false;
            for parameter in operation
                .get_mut("parameters")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                let place = parameter["in"].as_str().unwrap_or("").to_owned();
                let place = place.as_str();
                has_parameters |= matches!(place, "path" | "query");
                let name = parameter["name"].as_str().unwrap_or("").to_owned();
                match (place, name.as_str()) {
                    ("query", "since" | "until") => {
                        parameter["schema"]["pattern"] = json!(crate::dto::RFC3339_UTC_PATTERN);
                    }
                    ("query", "peer") | ("path", "chat_id") => {
                        parameter["schema"]["pattern"] = json!(crate::dto::PHONE_PATTERN);
                    }
                    _ => {}
                }
                if device_route && place == "path" && parameter["name"] == "id" {
                    parameter["schema"] = json!({
                        "type": "string",
                        "pattern": crate::dto::DEVICE_ID_PATTERN,
                        "minLength": 1,
                        "maxLength": 64,
                    });
                    parameter["description"] =
                        json!("The device id: 1 to 64 of a-z, A-Z, 0-9, _ and -");
                }
            }
            let mut added: Vec<(&str, &str)> = Vec::new();
            if secured {
                added.push(("401", "No valid API key or login token (`unauthorized`)"));
                added.push((
                    "503",
                    "The store or the device's node is unreachable (`unavailable`, retryable)",
                ));
            }
            if json_body || has_parameters || device_route {
                added.push(("400", "A malformed parameter or body"));
            }
            if json_body {
                added.push(("413", "The body is larger than 1 MiB (`payload_too_large`)"));
                added.push((
                    "415",
                    "The body is not sent as `Content-Type: application/json` (`unsupported_media_type`)",
                ));
                added.push((
                    "422",
                    "The body is JSON, not of the expected shape (`invalid_body`), or refused by a rule",
                ));
            }
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            for (status, description) in added {
                responses.entry(status).or_insert_with(|| {
                    json!({
                        "description": description,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
                    })
                });
            }
        }
    }
}

/// `{"oneOf": [S, {"type": "null"}]}` → `S`.
fn drop_null_branch(schema: &mut Value) {
    let Some(branches) = schema.get("oneOf").and_then(Value::as_array) else {
        return;
    };
    let kept: Vec<&Value> = branches
        .iter()
        .filter(|branch| **branch != json!({"type": "null"}))
        .collect();
    if let [only] = kept[..] {
        *schema = only.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_documents_what_the_guard_and_the_extractors_answer() {
        let doc: Value = serde_json::from_str(&document()).unwrap();
        let mut device_routes = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let responses = &operation["responses"];
                let has = |status: &str| responses.get(status).is_some();
                let secured = operation["security"]
                    .as_array()
                    .is_some_and(|s| !s.is_empty());
                assert_eq!(
                    secured,
                    path != "/v1/auth/login",
                    "{method} {path}: security"
                );
                if secured {
                    assert!(has("401") && has("503"), "{method} {path}: 401, 503");
                }
                let body = &operation["requestBody"];
                if body["required"] == true && body["content"].get("application/json").is_some() {
                    for status in ["400", "413", "415", "422"] {
                        assert!(has(status), "{method} {path}: {status}");
                    }
                }
                if path.starts_with("/v1/devices/{id}")
                    || path.starts_with("/whatsapp/sessions/{id}")
                {
                    device_routes += 1;
                    let id = operation["parameters"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|p| p["name"] == "id")
                        .unwrap();
                    assert_eq!(id["schema"]["pattern"], crate::dto::DEVICE_ID_PATTERN);
                    assert!(has("400"), "{method} {path}: 400");
                }
            }
        }
        assert!(device_routes > 20, "device routes found: {device_routes}");
    }

    #[test]
    fn an_optional_body_is_left_out_rather_than_null() {
        let doc: Value = serde_json::from_str(&document()).unwrap();
        let body = &doc["paths"]["/v1/keys/{id}/rotate"]["post"]["requestBody"];
        assert_ne!(body["required"], true);
        assert_eq!(
            body["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/RotateKey"
        );
    }
}
