//! A device's chats: one per phone it wrote to or heard from, newest first, and each
//! chat's conversation.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_node::clock::rfc3339;
use wafleet_node::group::is_group_id;
use wafleet_node::store::{Chat, ChatQuery};

use crate::AppState;
use crate::dto::{Message, next_cursor, page_limit};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};
use crate::routes::message_log::{MessagePage, PageParams, chat_cursor, cursor, message_page};
use crate::validate;

/// One chat.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatDto {
    /// The other side's phone number, or the group's id (what `…/chats/{chat_id}/messages`
    /// takes).
    pub id: String,
    /// The name saved for this number in the tenant's contact book (`/v1/contacts`), if
    /// any. A group's subject is not shown here: `GET /v1/devices/{id}/groups/{group_id}`
    /// has it.
    pub name: Option<String>,
    /// The chat is a group's (`id` is then a group id).
    pub is_group: bool,
    pub last_message_at: String,
    pub last_message: Message,
    /// Received messages not yet read.
    pub unread: u32,
}

/// A page of chats, the one with the newest message first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatPage {
    pub chats: Vec<ChatDto>,
    pub next_cursor: Option<String>,
}

impl From<Chat> for ChatDto {
    fn from(chat: Chat) -> ChatDto {
        ChatDto {
            last_message_at: rfc3339(chat.last.created_at_ms),
            is_group: is_group_id(&chat.peer),
            id: chat.peer,
            name: None,
            last_message: chat.last.into(),
            unread: chat.unread,
        }
    }
}

#[utoipa::path(get, path = "/v1/devices/{id}/chats", tag = "chats",
    description = "The device's chats, one per phone number or group it wrote to or heard from, the one with the newest message \
first, each with its last message, how many received messages are unread, and the name saved for the number in the \
tenant's contact book.",
    params(("id" = String, Path), PageParams),
    responses((status = 200, body = ChatPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<ChatPage>, ApiError> {
    validate::device_id(&id)?;
    let query = ChatQuery {
        before: params.cursor.as_deref().map(chat_cursor).transpose()?,
        limit: page_limit(params.limit)?,
    };
    let chats = state.catalog.chats(&id, &query).await?;
    let next_cursor = next_cursor(&chats, query.limit, |c| {
        cursor(c.last.created_at_ms, &c.peer)
    });
    // Names from the tenant's contact book (one read per chat of the page).
    let tenant = state.catalog.device(&id).await?.tenant;
    let peers: Vec<String> = chats.iter().map(|c| c.peer.clone()).collect();
    let mut names = state.catalog.contacts().names_of(&tenant, &peers).await?;
    Ok(Json(ChatPage {
        chats: chats
            .into_iter()
            .map(|chat| {
                let name = names.remove(&chat.peer);
                ChatDto {
                    name,
                    ..ChatDto::from(chat)
                }
            })
            .collect(),
        next_cursor,
    }))
}

#[utoipa::path(get, path = "/v1/devices/{id}/chats/{chat_id}/messages", tag = "chats",
    description = "One conversation: the messages to and from that phone number (or in that group), both directions, newest first.",
    params(("id" = String, Path), ("chat_id" = String, Path, description = "the phone number or group id",
        pattern = r"^(\+?[0-9]{8,15}|[0-9]{5,24}(-[0-9]{5,24})?@g\.us)$"), PageParams),
    responses((status = 200, body = MessagePage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn messages(
    State(state): State<AppState>,
    ApiPath((id, chat_id)): ApiPath<(String, String)>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<MessagePage>, ApiError> {
    validate::device_id(&id)?;
    let peer = validate::recipient(&chat_id)?;
    let query = params.query(peer)?;
    let messages = state.catalog.messages(&id, &query).await?;
    Ok(Json(message_page(messages, query.limit)))
}

/// The routes of this file, each with its OpenAPI path.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(messages))
}
