//! A device's chats: one per phone or group it wrote to or heard from, newest first,
//! each named (a phone's by the tenant's contact book, a group's by its subject), and
//! each chat's conversation.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_node::api::{DeviceCommand, GroupRefs, Reply};
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
    /// A phone's chat: the name saved for the number in the tenant's contact book
    /// (`/v1/contacts`), if any. A group's chat: the group's subject, as the device's
    /// node knows it (`null` while it cannot know: see the list's description).
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
first, each with its last message, how many received messages are unread, and its name: for a phone, the name saved for \
the number in the tenant's contact book; for a group, its subject. Group subjects come from the device's node, which \
remembers those its group replies named (create, info, changes, lists) and, when a page holds a group it does not know \
and the device is READY, asks WhatsApp for the device's group list, at most once a minute per device: a group's name is \
null until then, while the device is not READY (and knew nothing of it), or when the device's node cannot be reached \
(the page is served anyway).",
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
    // Phones' names from the tenant's contact book (one read per phone chat of the
    // page), groups' from the device's node (one command per page with groups).
    let tenant = state.catalog.device(&id).await?.tenant;
    let (groups, phones): (Vec<String>, Vec<String>) = chats
        .iter()
        .map(|c| c.peer.clone())
        .partition(|peer| is_group_id(peer));
    let mut names = state.catalog.contacts().names_of(&tenant, &phones).await?;
    names.extend(group_subjects(&state, &id, groups).await);
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

/// The subjects of `groups` as the device's node knows them (see
/// `wafleet_node::fleet::group_subjects`), by group id. A node that cannot answer leaves
/// them unnamed: names are not worth failing a page for.
async fn group_subjects(
    state: &AppState,
    id: &str,
    groups: Vec<String>,
) -> HashMap<String, String> {
    if groups.is_empty() {
        return HashMap::new();
    }
    let command = DeviceCommand::GroupSubjects(GroupRefs { group_ids: groups });
    match state
        .devices
        .execute(id, command)
        .await
        .map(Reply::into_groups)
    {
        Ok(Ok(named)) => named.into_iter().map(|g| (g.id, g.subject)).collect(),
        Ok(Err(error)) | Err(error) => {
            tracing::debug!(device_id = id, %error, "group chats left unnamed");
            HashMap::new()
        }
    }
}

/// The routes of this file, each with its OpenAPI path.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(messages))
}
