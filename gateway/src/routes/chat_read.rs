//! Marking a chat read — a phone's or a group's: read receipts to WhatsApp for its
//! unread received messages, and `unread` of the chat back to 0.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_node::api::{DeviceCommand, MarkRead};
use wafleet_node::group::is_group_id;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiPath;
use crate::validate;

/// What marking a chat read did.
#[derive(Debug, Serialize, ToSchema)]
pub struct MarkedRead {
    /// Received messages that were unread and are read now (0 when none were).
    pub read: u64,
}

#[utoipa::path(post, path = "/v1/devices/{id}/chats/{chat_id}/read", tag = "chats",
    description = "Marks the chat read: WhatsApp gets read receipts for its unread received messages (the sender \
sees them read; in a group's chat, each message's receipt names its author, so every author sees their own \
messages read), and they are stored read, so the chat's unread count becomes 0. The device must be READY \
(otherwise 409 device_not_ready). Safe to repeat: a chat with nothing unread answers {\"read\": 0}. \
504 when WhatsApp did not answer in time (nothing was stored read; safe to retry).",
    params(("id" = String, Path), ("chat_id" = String, Path,
        description = "the phone number, or the group's id (as `GET …/chats` lists them)",
        pattern = r"^(\+?[0-9]{8,15}|[0-9]{5,24}(-[0-9]{5,24})?@g\.us)$")),
    responses((status = 200, body = MarkedRead), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "the device is not READY, or its link could not send the receipts", body = ErrorBody),
        (status = 504, description = "WhatsApp did not answer in time", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn mark_chat_read(
    State(state): State<AppState>,
    ApiPath((id, chat_id)): ApiPath<(String, String)>,
) -> Result<Json<MarkedRead>, ApiError> {
    validate::device_id(&id)?;
    let chat = validate::recipient(&chat_id)?;
    let read = if is_group_id(&chat) {
        MarkRead {
            group_id: chat,
            ..MarkRead::default()
        }
    } else {
        MarkRead {
            peer_phone: chat,
            ..MarkRead::default()
        }
    };
    let command = DeviceCommand::MarkRead(read);
    let read = state
        .devices
        .execute(&id, command)
        .await?
        .into_marked_read()?;
    Ok(Json(MarkedRead { read }))
}

/// The routes of this file, each with its OpenAPI path.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(mark_chat_read))
}
