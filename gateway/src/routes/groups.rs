//! A device's WhatsApp groups: list and create them, read one, add and remove
//! participants, promote and demote admins. Each is one group command
//! ([`DeviceCommand::Group`]) asked of WhatsApp through the device, which must be READY;
//! the device's own number acts.
//!
//! Errors: 400 for an invalid group id, phone number, subject or list; 404
//! `group_not_found` for a group that does not exist or that the device's number is not
//! in; 409 `device_not_ready`; 422 `not_group_admin` when the device's number is not an
//! admin of the group it changes (the request is understood, WhatsApp refuses it), and
//! 422 `not_on_whatsapp`, `not_group_participant` or `groups_unsupported` likewise.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_node::api::{
    CreateGroup, DeviceCommand, Empty, Group, GroupChange, GroupCommand, GroupOp, GroupRef,
};
use wafleet_node::clock::rfc3339;
use wafleet_node::group::{self, MAX_PARTICIPANTS};

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath};
use crate::routes::number_checks::PhoneNumber;
use crate::validate;

/// `POST /v1/devices/{id}/groups`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroupRequest {
    /// The group's name: 1 to 100 characters, not only spaces.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"[^\t\n\x0B\x0C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]",
        example = "Tim Jakarta"
    )]
    pub subject: String,
    /// 1 to 256 numbers to add besides the device's own (which becomes the admin).
    #[schema(min_items = 1, max_items = 256)]
    pub participants: Vec<PhoneNumber>,
}

/// `POST /v1/devices/{id}/groups/{group_id}/participants`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddParticipants {
    /// 1 to 256 numbers to add.
    #[schema(min_items = 1, max_items = 256)]
    pub phones: Vec<PhoneNumber>,
}

/// `POST /v1/devices/{id}/groups/{group_id}/admins`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteAdmin {
    /// A participant to make an admin.
    pub phone: PhoneNumber,
}

/// A group as WhatsApp holds it.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupDto {
    /// `120363…@g.us`: what `to` of a message and the `{group_id}` paths take.
    #[schema(example = "120363041234567890@g.us")]
    pub id: String,
    pub subject: String,
    /// The number that created it, when WhatsApp says.
    pub creator: Option<String>,
    /// When it was created, when WhatsApp says.
    pub created_at: Option<String>,
    /// Every participant, with whether it is an admin.
    pub participants: Vec<ParticipantDto>,
}

/// A participant of a group.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParticipantDto {
    /// Digits with the country code.
    pub phone: String,
    /// Admins may change the group.
    pub admin: bool,
}

/// The device's groups.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupList {
    pub groups: Vec<GroupDto>,
}

impl From<Group> for GroupDto {
    fn from(group: Group) -> GroupDto {
        GroupDto {
            id: group.id,
            subject: group.subject,
            creator: (!group.creator.is_empty()).then_some(group.creator),
            created_at: (group.created_at_ms > 0).then(|| rfc3339(group.created_at_ms)),
            participants: group
                .participants
                .into_iter()
                .map(|p| ParticipantDto {
                    phone: p.phone,
                    admin: p.admin,
                })
                .collect(),
        }
    }
}

#[utoipa::path(get, path = "/v1/devices/{id}/groups", tag = "groups",
    description = "The groups the device's number is in, as WhatsApp lists them. The device must be READY \
(otherwise 409 device_not_ready); 504 when WhatsApp did not answer in time (safe to retry).",
    params(("id" = String, Path)),
    responses((status = 200, body = GroupList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 504, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<GroupList>, ApiError> {
    validate::device_id(&id)?;
    let groups = run(&state, &id, GroupOp::List(Empty {}))
        .await?
        .into_groups()?;
    Ok(Json(GroupList {
        groups: groups.into_iter().map(GroupDto::from).collect(),
    }))
}

#[utoipa::path(post, path = "/v1/devices/{id}/groups", tag = "groups",
    description = "Creates a group of the device's number (its admin) and the participants, who must be on WhatsApp \
(otherwise 422 not_on_whatsapp). The device must be READY (otherwise 409 device_not_ready). Not idempotent: \
a repeat creates another group.",
    params(("id" = String, Path)),
    request_body = CreateGroupRequest,
    responses((status = 201, body = GroupDto), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 504, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<CreateGroupRequest>,
) -> Result<(StatusCode, Json<GroupDto>), ApiError> {
    validate::device_id(&id)?;
    group::check_subject(&body.subject).map_err(|e| ApiError::invalid("invalid_subject", e))?;
    let participants = phones(&body.participants)?;
    let op = GroupOp::Create(CreateGroup {
        subject: body.subject,
        participants,
    });
    let group = run(&state, &id, op).await?.into_group()?;
    Ok((StatusCode::CREATED, Json(group.into())))
}

#[utoipa::path(get, path = "/v1/devices/{id}/groups/{group_id}", tag = "groups",
    description = "One group: its subject and participants with their admin flags. 404 group_not_found when there \
is no such group or the device's number is not in it; the device must be READY (otherwise 409 device_not_ready).",
    params(("id" = String, Path), ("group_id" = String, Path, pattern = r"^[0-9]{5,24}(-[0-9]{5,24})?@g\.us$")),
    responses((status = 200, body = GroupDto), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 504, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get(
    State(state): State<AppState>,
    ApiPath((id, group_id)): ApiPath<(String, String)>,
) -> Result<Json<GroupDto>, ApiError> {
    validate::device_id(&id)?;
    let group_id = validate::group_id(&group_id)?;
    let op = GroupOp::Info(GroupRef { group_id });
    Ok(Json(run(&state, &id, op).await?.into_group()?.into()))
}

#[utoipa::path(post, path = "/v1/devices/{id}/groups/{group_id}/participants", tag = "groups",
    description = "Adds numbers to the group (the device's number must be an admin: otherwise 422 not_group_admin). \
Numbers already in it stay as they are. Answers the group afterwards.",
    params(("id" = String, Path), ("group_id" = String, Path, pattern = r"^[0-9]{5,24}(-[0-9]{5,24})?@g\.us$")),
    request_body = AddParticipants,
    responses((status = 200, body = GroupDto), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 504, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn add_participants(
    State(state): State<AppState>,
    ApiPath((id, group_id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<AddParticipants>,
) -> Result<Json<GroupDto>, ApiError> {
    validate::device_id(&id)?;
    let change = GroupChange {
        group_id: validate::group_id(&group_id)?,
        phones: phones(&body.phones)?,
    };
    let group = run(&state, &id, GroupOp::AddParticipants(change)).await?;
    Ok(Json(group.into_group()?.into()))
}

#[utoipa::path(delete, path = "/v1/devices/{id}/groups/{group_id}/participants/{phone}", tag = "groups",
    description = "Removes a participant (the device's number must be an admin: otherwise 422 not_group_admin; \
422 not_group_participant when the number is not in the group). Answers the group afterwards.",
    params(("id" = String, Path), ("group_id" = String, Path, pattern = r"^[0-9]{5,24}(-[0-9]{5,24})?@g\.us$"),
        ("phone" = String, Path, pattern = r"^\+?[0-9]{8,15}$")),
    responses((status = 200, body = GroupDto), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 504, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn remove_participant(
    State(state): State<AppState>,
    ApiPath((id, group_id, phone)): ApiPath<(String, String, String)>,
) -> Result<Json<GroupDto>, ApiError> {
    let change = one_change(&id, &group_id, &phone)?;
    let group = run(&state, &id, GroupOp::RemoveParticipants(change)).await?;
    Ok(Json(group.into_group()?.into()))
}

#[utoipa::path(post, path = "/v1/devices/{id}/groups/{group_id}/admins", tag = "groups",
    description = "Makes a participant an admin (the device's number must be an admin: otherwise 422 \
not_group_admin). Answers the group afterwards.",
    params(("id" = String, Path), ("group_id" = String, Path, pattern = r"^[0-9]{5,24}(-[0-9]{5,24})?@g\.us$")),
    request_body = PromoteAdmin,
    responses((status = 200, body = GroupDto), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 504, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn promote(
    State(state): State<AppState>,
    ApiPath((id, group_id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<PromoteAdmin>,
) -> Result<Json<GroupDto>, ApiError> {
    let change = one_change(&id, &group_id, &body.phone.0)?;
    let group = run(&state, &id, GroupOp::Promote(change)).await?;
    Ok(Json(group.into_group()?.into()))
}

#[utoipa::path(delete, path = "/v1/devices/{id}/groups/{group_id}/admins/{phone}", tag = "groups",
    description = "Makes an admin a plain participant (the device's number must be an admin: otherwise 422 \
not_group_admin). Answers the group afterwards.",
    params(("id" = String, Path), ("group_id" = String, Path, pattern = r"^[0-9]{5,24}(-[0-9]{5,24})?@g\.us$"),
        ("phone" = String, Path, pattern = r"^\+?[0-9]{8,15}$")),
    responses((status = 200, body = GroupDto), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 504, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn demote(
    State(state): State<AppState>,
    ApiPath((id, group_id, phone)): ApiPath<(String, String, String)>,
) -> Result<Json<GroupDto>, ApiError> {
    let change = one_change(&id, &group_id, &phone)?;
    let group = run(&state, &id, GroupOp::Demote(change)).await?;
    Ok(Json(group.into_group()?.into()))
}

/// Runs one group operation on device `id`.
async fn run(
    state: &AppState,
    id: &str,
    op: GroupOp,
) -> Result<wafleet_node::api::Reply, ApiError> {
    let command = DeviceCommand::Group(GroupCommand { op: Some(op) });
    Ok(state.devices.execute(id, command).await?)
}

/// A change that concerns one number of one group, checked.
fn one_change(id: &str, group_id: &str, phone: &str) -> Result<GroupChange, ApiError> {
    validate::device_id(id)?;
    Ok(GroupChange {
        group_id: validate::group_id(group_id)?,
        phones: vec![validate::phone(phone)?],
    })
}

/// The digits of 1 to [`MAX_PARTICIPANTS`] numbers, each once.
fn phones(given: &[PhoneNumber]) -> Result<Vec<String>, ApiError> {
    if given.is_empty() || given.len() > MAX_PARTICIPANTS {
        return Err(ApiError::invalid(
            "invalid_phones",
            format!("give 1 to {MAX_PARTICIPANTS} numbers, not {}", given.len()),
        ));
    }
    let mut digits: Vec<String> = Vec::with_capacity(given.len());
    for phone in given {
        let phone = validate::phone(&phone.0)?;
        if !digits.contains(&phone) {
            digits.push(phone);
        }
    }
    Ok(digits)
}

/// The routes of this file, each with its OpenAPI path.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get))
        .routes(routes!(add_participants))
        .routes(routes!(remove_participant))
        .routes(routes!(promote))
        .routes(routes!(demote))
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    /// The group-id rule the path parameters state (written out in each attribute).
    const GROUP_ID: &str = r"^[0-9]{5,24}(-[0-9]{5,24})?@g\.us$";
    /// The phone-number rule the path parameters state.
    const PHONE: &str = r"^\+?[0-9]{8,15}$";

    /// What the OpenAPI document promises is what the routes check.
    #[test]
    fn the_openapi_document_states_the_rules() {
        assert_eq!(GROUP_ID, group::ID_PATTERN);
        let doc: Value = serde_json::from_str(&crate::openapi::document()).unwrap();
        let schemas = &doc["components"]["schemas"];
        let create = &schemas["CreateGroupRequest"]["properties"];
        assert_eq!(create["subject"]["maxLength"], group::MAX_SUBJECT_CHARS);
        assert_eq!(create["participants"]["maxItems"], MAX_PARTICIPANTS);
        assert_eq!(
            schemas["SendMessage"]["properties"]["mentions"]["maxItems"],
            group::MAX_MENTIONS
        );
        let path = "/v1/devices/{id}/groups/{group_id}/admins/{phone}";
        let params = doc["paths"][path]["delete"]["parameters"]
            .as_array()
            .unwrap();
        let pattern = |name: &str| {
            params
                .iter()
                .find(|p| p["name"] == name)
                .map(|p| p["schema"]["pattern"].clone())
        };
        assert_eq!(pattern("group_id"), Some(Value::from(GROUP_ID)));
        assert_eq!(pattern("phone"), Some(Value::from(PHONE)));
    }

    #[test]
    fn participant_lists_are_1_to_256_numbers_each_once() {
        let numbers = |n: usize| vec![PhoneNumber("6281234567890".into()); n];
        assert_eq!(phones(&numbers(3)).unwrap(), ["6281234567890"]);
        assert!(phones(&numbers(0)).is_err());
        assert!(phones(&numbers(MAX_PARTICIPANTS + 1)).is_err());
        assert!(phones(&[PhoneNumber("12".into())]).is_err());
    }
}
