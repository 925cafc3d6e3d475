//! Which phone numbers have a WhatsApp account, asked of the network through one of
//! the tenant's READY devices.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_node::api::{CheckNumbers, DeviceCommand, NumberCheck};

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath};
use crate::validate;

/// The most numbers one request may check (WhatsApp answers them in one query).
pub const MAX_PHONES: usize = 50;

/// A phone number as given, checked by the route ([`validate::phone`]).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, pattern = r"^\+?[0-9]{8,15}$", example = "6281234567890")]
pub struct PhoneNumber(pub(crate) String);

/// `POST /v1/devices/{id}/contacts/check`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// 1 to 50 numbers with the country code: 8 to 15 digits, a leading `+` allowed.
    #[schema(min_items = 1, max_items = 50)]
    pub phones: Vec<PhoneNumber>,
}

/// Whether one number is on WhatsApp.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckResult {
    /// The number as asked, digits only.
    #[schema(example = "6281234567890")]
    pub phone: String,
    pub on_whatsapp: bool,
    /// Its account's JID; null when it is not on WhatsApp.
    #[schema(example = "6281234567890@s.whatsapp.net")]
    pub jid: Option<String>,
}

/// One result per number asked, in the order asked.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckResults {
    pub results: Vec<CheckResult>,
}

impl From<NumberCheck> for CheckResult {
    fn from(check: NumberCheck) -> CheckResult {
        CheckResult {
            phone: check.phone,
            on_whatsapp: check.on_whatsapp,
            jid: check.jid,
        }
    }
}

#[utoipa::path(post, path = "/v1/devices/{id}/contacts/check", tag = "contacts",
    description = "Which of these phone numbers have a WhatsApp account, asked of WhatsApp through the device, \
which must be READY (otherwise 409 device_not_ready). 1 to 50 numbers per request (otherwise 400 invalid_phones); \
a number that is not 8 to 15 digits is 400 invalid_phone. The results come in the order asked. \
504 when WhatsApp did not answer in time (safe to retry).",
    params(("id" = String, Path)),
    request_body = CheckRequest,
    responses((status = 200, body = CheckResults), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "the device is not READY, or its link could not ask", body = ErrorBody),
        (status = 504, description = "WhatsApp did not answer in time", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn check_numbers(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<CheckRequest>,
) -> Result<Json<CheckResults>, ApiError> {
    validate::device_id(&id)?;
    let phones = phones(&body.phones)?;
    let command = DeviceCommand::CheckNumbers(CheckNumbers { phones });
    let checks = state
        .devices
        .execute(&id, command)
        .await?
        .into_number_checks()?;
    Ok(Json(CheckResults {
        results: checks.into_iter().map(CheckResult::from).collect(),
    }))
}

/// The digits of each number, if there are 1 to [`MAX_PHONES`] of them and each is a
/// phone number.
fn phones(given: &[PhoneNumber]) -> Result<Vec<String>, ApiError> {
    if given.is_empty() || given.len() > MAX_PHONES {
        return Err(ApiError::invalid(
            "invalid_phones",
            format!(
                "check 1 to {MAX_PHONES} numbers per request, not {}",
                given.len()
            ),
        ));
    }
    given
        .iter()
        .map(|phone| validate::phone(&phone.0))
        .collect()
}

/// The routes of this file, each with its OpenAPI path.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(check_numbers))
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn numbers(given: &[&str]) -> Vec<PhoneNumber> {
        given.iter().map(|p| PhoneNumber(p.to_string())).collect()
    }

    #[test]
    fn one_to_fifty_phone_numbers_are_taken_as_digits() {
        let given = numbers(&["+6281234567890", "6289876543210"]);
        assert_eq!(
            phones(&given).expect("valid"),
            ["6281234567890", "6289876543210"]
        );
        let code = |given: &[PhoneNumber]| match phones(given) {
            Err(ApiError::Invalid { code, .. }) => code,
            other => panic!("expected invalid, got {other:?}"),
        };
        assert_eq!(code(&[]), "invalid_phones");
        assert_eq!(code(&numbers(&["6281234567890"; 51])), "invalid_phones");
        assert_eq!(code(&numbers(&["6281234567890", "12"])), "invalid_phone");
        assert!(phones(&numbers(&["6281234567890"; 50])).is_ok());
    }

    /// What the OpenAPI document promises is what the route checks.
    #[test]
    fn the_openapi_document_states_the_limits() {
        let doc: Value = serde_json::from_str(&crate::openapi::document()).unwrap();
        let schemas = &doc["components"]["schemas"];
        let phones = &schemas["CheckRequest"]["properties"]["phones"];
        assert_eq!(
            (phones["minItems"].as_u64(), phones["maxItems"].as_u64()),
            (Some(1), Some(MAX_PHONES as u64))
        );
        assert_eq!(schemas["PhoneNumber"]["pattern"], r"^\+?[0-9]{8,15}$");
        let body: CheckRequest =
            serde_json::from_value(serde_json::json!({"phones": ["6281234567890"]})).unwrap();
        assert_eq!(phones_of(&body), ["6281234567890"]);
        for path in [
            "/v1/devices/{id}/contacts/check",
            "/v1/devices/{id}/chats/{chat_id}/read",
        ] {
            let responses = &doc["paths"][path]["post"]["responses"];
            for status in ["200", "400", "404", "409", "504"] {
                assert!(responses.get(status).is_some(), "{path}: {status}");
            }
        }
    }

    fn phones_of(body: &CheckRequest) -> Vec<&str> {
        body.phones.iter().map(|p| p.0.as_str()).collect()
    }
}
