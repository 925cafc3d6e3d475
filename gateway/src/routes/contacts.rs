//! The tenant's contact book: saved contacts (by phone) and their tags.
//!
//! Every route works on one tenant's book: the caller's own, or, for an admin of every
//! tenant, the one `?tenant=` names (default `default`). A tenant's key that names
//! another tenant gets `404 tenant_not_found`, as `GET /v1/tenants/{id}` answers it:
//! another tenant's book is not there for it. A key limited to some devices works on
//! its tenant's book too (contacts belong to the tenant, not to a device). The rules of
//! the values (phone, name, tags) are [`wafleet_node::contacts::rules`]; every change is
//! audited by the guard, like any other.

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_node::clock::{now_ms, rfc3339};
use wafleet_node::contacts::{Imported, NewContact};
use wafleet_node::store::{ContactRecord, TagCount};

use crate::AppState;
use crate::auth::{Caller, tenant_asked};
use crate::dto::{Deleted, next_cursor, page_limit};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};

/// A tag as a client gives it: 1 to 32 of a-z, A-Z, 0-9, `_` and `-`, kept in lower
/// case (`VIP` and `vip` are one tag).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(
    value_type = String,
    pattern = "^[a-zA-Z0-9_-]{1,32}$",
    min_length = 1,
    max_length = 32,
    example = "vip"
)]
pub struct TagIn(pub String);

fn tag_strings(tags: Vec<TagIn>) -> Vec<String> {
    tags.into_iter().map(|t| t.0).collect()
}

/// A contact to save (create, or update the one with this phone).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactIn {
    /// Digits with the country code, 8 to 15 (a leading `+` is dropped): the contact's id.
    #[schema(pattern = r"^\+?[0-9]{8,15}$", example = "6281234567890")]
    pub phone: String,
    /// 1 to 200 characters, not only spaces.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"[^\t\n\x0B\x0C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    pub name: String,
    /// At most 20 (repeats kept once). Absent or null: a saved contact keeps its tags
    /// (a new one has none).
    #[schema(max_items = 20)]
    pub tags: Option<Vec<TagIn>>,
}

impl From<ContactIn> for NewContact {
    fn from(c: ContactIn) -> NewContact {
        NewContact {
            phone: c.phone,
            name: c.name,
            tags: c.tags.map(tag_strings),
        }
    }
}

/// Many contacts to save at once, in order (a phone given twice: the later wins).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportContacts {
    /// At most 1000 (413 `too_many_contacts` above). Every one is checked before any is
    /// saved.
    #[schema(max_items = 1000)]
    pub contacts: Vec<ContactIn>,
}

/// Body of `POST /v1/contacts`: one contact, or `{"contacts": [...]}`. (The handler
/// tells the two apart by the `contacts` field, so that an error names the fields of
/// the shape meant; this type documents the body.)
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum SaveContacts {
    One(ContactIn),
    Many(ImportContacts),
}

/// Body of `PUT /v1/contacts/{id}/tags`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetTags {
    /// The contact's tags from now on (at most 20; `[]` removes every tag).
    #[schema(max_items = 20)]
    pub tags: Vec<TagIn>,
}

/// A saved contact.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactDto {
    /// Digits with the country code: the contact's id.
    pub phone: String,
    pub name: String,
    /// Sorted, lower case.
    pub tags: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<ContactRecord> for ContactDto {
    fn from(c: ContactRecord) -> ContactDto {
        ContactDto {
            phone: c.phone,
            name: c.name,
            tags: c.tags,
            created_at: rfc3339(c.created_at_ms),
            updated_at: rfc3339(c.updated_at_ms),
        }
    }
}

/// A page of contacts, in phone order.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactList {
    pub contacts: Vec<ContactDto>,
    pub next_cursor: Option<String>,
}

/// What an import did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportResult {
    /// Contacts that were new.
    pub created: u64,
    /// Contacts that were saved already (updated).
    pub updated: u64,
}

impl From<Imported> for ImportResult {
    fn from(i: Imported) -> ImportResult {
        ImportResult {
            created: i.created,
            updated: i.updated,
        }
    }
}

/// The answer of `POST /v1/contacts`: the contact saved (one), or what an import did
/// (many).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum SaveAnswer {
    One(ContactDto),
    Many(ImportResult),
}

/// A tag and how many contacts have it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TagDto {
    pub tag: String,
    pub count: u64,
}

impl From<TagCount> for TagDto {
    fn from(t: TagCount) -> TagDto {
        TagDto {
            tag: t.tag,
            count: t.count,
        }
    }
}

/// A page of tags, in tag order.
#[derive(Debug, Serialize, ToSchema)]
pub struct TagList {
    pub tags: Vec<TagDto>,
    pub next_cursor: Option<String>,
}

/// `?tenant=`: whose book.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BookParams {
    /// The tenant whose book (an admin of every tenant; default `default`). Others
    /// work on their own tenant's, which they may name.
    #[param(pattern = "^[a-zA-Z0-9_.@-]{1,64}$")]
    pub tenant: Option<String>,
}

/// Query of `GET /v1/contacts`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ContactsQuery {
    /// The tenant whose book (an admin of every tenant; default `default`). Others
    /// work on their own tenant's, which they may name.
    #[param(pattern = "^[a-zA-Z0-9_.@-]{1,64}$")]
    pub tenant: Option<String>,
    /// Only the contacts with this tag (any case).
    #[param(pattern = "^[a-zA-Z0-9_-]{1,32}$")]
    pub tag: Option<String>,
    /// Only the contacts whose phone starts with these digits (a leading `+` aside) or
    /// whose name starts with this text (case aside): 1 to 64 characters, not only spaces.
    #[param(
        min_length = 1,
        max_length = 64,
        pattern = r"[^\t\n\x0B\x0C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    pub q: Option<String>,
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page (a phone).
    #[param(pattern = r"^\+?[0-9]{8,15}$")]
    pub cursor: Option<String>,
}

/// Query of `GET /v1/tags`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TagsQuery {
    /// The tenant whose book (an admin of every tenant; default `default`). Others
    /// work on their own tenant's, which they may name.
    #[param(pattern = "^[a-zA-Z0-9_.@-]{1,64}$")]
    pub tenant: Option<String>,
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page (a tag).
    #[param(pattern = "^[a-zA-Z0-9_-]{1,32}$")]
    pub cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/contacts", tag = "contacts", params(ContactsQuery),
    description = "The tenant's contacts in phone order, page by page; `?tag=` keeps those with the tag (a \
campaign's audience, however large, read a page at a time), `?q=` those whose phone or name starts with it.",
    responses((status = 200, body = ContactList),
        (status = 400, description = "a malformed `tag`, `q`, `limit` or `cursor`", body = ErrorBody),
        (status = 404, description = "`tenant` is not one the caller sees (`tenant_not_found`)", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_contacts(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ContactsQuery>,
) -> Result<Json<ContactList>, ApiError> {
    let limit = page_limit(query.limit)?;
    let tenant = tenant_asked(&state, &caller, query.tenant).await?;
    let contacts: Vec<ContactDto> = state
        .catalog
        .contacts()
        .list(
            &tenant,
            query.tag.as_deref(),
            query.q.as_deref(),
            query.cursor.as_deref(),
            limit,
        )
        .await?
        .into_iter()
        .map(ContactDto::from)
        .collect();
    Ok(Json(ContactList {
        next_cursor: next_cursor(&contacts, limit, |c| c.phone.clone()),
        contacts,
    }))
}

#[utoipa::path(post, path = "/v1/contacts", tag = "contacts", params(BookParams),
    request_body = SaveContacts,
    description = "Saves one contact (`{\"phone\", \"name\", \"tags\"?}`): 201 with it when the phone is new, 200 \
with it when the phone was saved already (its name replaced, its tags too when given). Or imports many \
(`{\"contacts\": [...]}`, at most 1000, checked before any is saved): 200 `{\"created\", \"updated\"}`.",
    responses(
        (status = 201, description = "a new contact", body = ContactDto),
        (status = 200, description = "a contact updated (one), or what an import did (many)",
            body = SaveAnswer),
        (status = 400, description = "a value breaks a rule: `invalid_phone`, `invalid_name`, `invalid_tag`, \
`too_many_tags` (the message names the contact of an import)", body = ErrorBody),
        (status = 404, description = "`tenant` is not one the caller sees (`tenant_not_found`)", body = ErrorBody),
        (status = 413, description = "more than 1000 contacts (`too_many_contacts`), or a body over 1 MiB \
(`payload_too_large`)", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn save_contacts(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<BookParams>,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> Result<(StatusCode, Json<SaveAnswer>), ApiError> {
    let tenant = tenant_asked(&state, &caller, query.tenant).await?;
    let book = state.catalog.contacts();
    let shape = |e: serde_json::Error| ApiError::Unprocessable(e.to_string());
    if body.contains_key("contacts") {
        let many: ImportContacts = serde_json::from_value(Value::Object(body)).map_err(shape)?;
        let contacts = many.contacts.into_iter().map(NewContact::from).collect();
        let imported = book.import(&tenant, contacts, now_ms()).await?;
        return Ok((StatusCode::OK, Json(SaveAnswer::Many(imported.into()))));
    }
    let one: ContactIn = serde_json::from_value(Value::Object(body)).map_err(shape)?;
    let saved = book.save(&tenant, one.into(), now_ms()).await?;
    let status = if saved.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(SaveAnswer::One(saved.contact.into()))))
}

#[utoipa::path(get, path = "/v1/contacts/{id}", tag = "contacts",
    params(("id" = String, Path, description = "The contact's phone", pattern = r"^\+?[0-9]{8,15}$"), BookParams),
    responses((status = 200, body = ContactDto),
        (status = 400, description = "`id` is not a phone number (`invalid_phone`)", body = ErrorBody),
        (status = 404, description = "no such contact in the book (`contact_not_found`), or `tenant` is not one \
the caller sees", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_contact(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<BookParams>,
) -> Result<Json<ContactDto>, ApiError> {
    let tenant = tenant_asked(&state, &caller, query.tenant).await?;
    Ok(Json(
        state.catalog.contacts().get(&tenant, &id).await?.into(),
    ))
}

#[utoipa::path(put, path = "/v1/contacts/{id}/tags", tag = "contacts",
    params(("id" = String, Path, description = "The contact's phone", pattern = r"^\+?[0-9]{8,15}$"), BookParams),
    request_body = SetTags,
    description = "Replaces the contact's tags. The contact is looked up before the body is read: an unknown \
one is 404 whatever the body.",
    responses((status = 200, body = ContactDto),
        (status = 400, description = "`id` is not a phone number, or a tag breaks the rules (`invalid_tag`, \
`too_many_tags`)", body = ErrorBody),
        (status = 404, description = "no such contact in the book (`contact_not_found`), or `tenant` is not one \
the caller sees", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn set_contact_tags(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<BookParams>,
    request: Request,
) -> Result<Json<ContactDto>, ApiError> {
    let tenant = tenant_asked(&state, &caller, query.tenant).await?;
    let book = state.catalog.contacts();
    book.get(&tenant, &id).await?;
    let ApiJson(body) = ApiJson::<SetTags>::from_request(request, &state).await?;
    let tags = tag_strings(body.tags);
    Ok(Json(
        book.set_tags(&tenant, &id, &tags, now_ms()).await?.into(),
    ))
}

#[utoipa::path(delete, path = "/v1/contacts/{id}", tag = "contacts",
    params(("id" = String, Path, description = "The contact's phone", pattern = r"^\+?[0-9]{8,15}$"), BookParams),
    responses((status = 200, body = Deleted),
        (status = 400, description = "`id` is not a phone number (`invalid_phone`)", body = ErrorBody),
        (status = 404, description = "no such contact in the book (`contact_not_found`), or `tenant` is not one \
the caller sees", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete_contact(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<BookParams>,
) -> Result<Json<Deleted>, ApiError> {
    let tenant = tenant_asked(&state, &caller, query.tenant).await?;
    state.catalog.contacts().delete(&tenant, &id).await?;
    Ok(Json(Deleted { id, deleted: true }))
}

#[utoipa::path(get, path = "/v1/tags", tag = "contacts", params(TagsQuery),
    description = "The tags of the tenant's contacts, in tag order, with how many contacts have each.",
    responses((status = 200, body = TagList),
        (status = 400, description = "a malformed `limit` or `cursor`", body = ErrorBody),
        (status = 404, description = "`tenant` is not one the caller sees (`tenant_not_found`)", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_tags(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<TagsQuery>,
) -> Result<Json<TagList>, ApiError> {
    let limit = page_limit(query.limit)?;
    let tenant = tenant_asked(&state, &caller, query.tenant).await?;
    let tags: Vec<TagDto> = state
        .catalog
        .contacts()
        .tags(&tenant, query.cursor.as_deref(), limit)
        .await?
        .into_iter()
        .map(TagDto::from)
        .collect();
    Ok(Json(TagList {
        next_cursor: next_cursor(&tags, limit, |t| t.tag.clone()),
        tags,
    }))
}

/// The routes of this file, each with its OpenAPI path.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_contacts, save_contacts))
        .routes(routes!(get_contact, delete_contact))
        .routes(routes!(set_contact_tags))
        .routes(routes!(list_tags))
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use wafleet_node::contacts::rules;

    /// The document states the node's rules (its patterns are literals).
    #[test]
    fn the_document_states_the_contact_rules() {
        let doc: Value = serde_json::from_str(&crate::openapi::document()).unwrap();
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["TagIn"]["pattern"], rules::TAG_PATTERN);
        assert_eq!(schemas["TagIn"]["maxLength"], rules::TAG_MAX_CHARS);
        let contact = &schemas["ContactIn"]["properties"];
        assert_eq!(contact["phone"]["pattern"], crate::dto::PHONE_PATTERN);
        assert_eq!(contact["name"]["maxLength"], rules::NAME_MAX_CHARS);
        assert_eq!(contact["tags"]["maxItems"], rules::MAX_TAGS);
        assert_eq!(
            schemas["ImportContacts"]["properties"]["contacts"]["maxItems"],
            rules::MAX_IMPORT
        );
        assert_eq!(
            schemas["SetTags"]["properties"]["tags"]["maxItems"],
            rules::MAX_TAGS
        );
        let body = &doc["paths"]["/v1/contacts"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"];
        assert_eq!(body["$ref"], "#/components/schemas/SaveContacts");
        for answer in ["SaveContacts", "SaveAnswer"] {
            let one_of = schemas[answer]["oneOf"].as_array().unwrap();
            assert_eq!(one_of.len(), 2, "{}", schemas[answer]);
        }
        let ok = &doc["paths"]["/v1/contacts"]["post"]["responses"]["200"]["content"]["application/json"]
            ["schema"];
        assert_eq!(ok["$ref"], "#/components/schemas/SaveAnswer");
    }
}
