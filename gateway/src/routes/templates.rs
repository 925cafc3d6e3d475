//! The tenant's message templates: a name and a text with `{{var}}` placeholders, filled
//! per recipient when a job is made (from the recipient's `vars` and the contact's
//! `name`). The rules are [`wafleet_node::jobs::templates`] and
//! [`wafleet_node::jobs::placeholders`]; like the contact book, every route works on
//! one tenant's templates (the caller's, or for an admin of every tenant the one
//! `?tenant=` names, default `default`), and another tenant's template is 404.

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_node::clock::rfc3339;
use wafleet_node::jobs::templates::{Template, TemplateError};

use crate::AppState;
use crate::auth::{Caller, tenant_asked};
use crate::dto::{Deleted, next_cursor, page_limit};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};

/// A template to save.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateIn {
    /// 1 to 100 characters, not only spaces.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"[^\t\n\x0B\x0C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    pub name: String,
    /// 1 to 65,536 characters, not only spaces. `{{name}}` placeholders (a name is 1 to
    /// 64 letters, digits, `_`, `.` or `-`, starting with a letter or `_`; spaces inside
    /// the braces are allowed); every `{{` must open one (422 `invalid_template`).
    #[schema(
        min_length = 1,
        max_length = 65536,
        pattern = r"[^\t\n\x0B\x0C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]",
        example = "Halo {{name}}, pesanan {{order}} sudah dikirim."
    )]
    pub text: String,
}

/// A saved template.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateDto {
    /// `tpl_` and 32 hex digits.
    pub id: String,
    pub name: String,
    pub text: String,
    /// Its placeholders' names, each once, sorted: what every recipient needs (`name`
    /// may come from the contact book).
    pub variables: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Template> for TemplateDto {
    fn from(t: Template) -> TemplateDto {
        let variables = t
            .parsed()
            .map(|text| text.variables().into_iter().map(str::to_owned).collect())
            .unwrap_or_default();
        TemplateDto {
            id: t.id,
            name: t.name,
            text: t.text,
            variables,
            created_at: rfc3339(t.created_at_ms),
            updated_at: rfc3339(t.updated_at_ms),
        }
    }
}

/// A page of templates, in id order.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateList {
    pub templates: Vec<TemplateDto>,
    pub next_cursor: Option<String>,
}

/// `?tenant=`: whose templates.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TenantParam {
    /// The tenant whose templates (an admin of every tenant; default `default`).
    /// Others work on their own tenant's, which they may name.
    #[param(pattern = "^[a-zA-Z0-9_.@-]{1,64}$")]
    pub tenant: Option<String>,
}

/// Query of `GET /v1/templates`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TemplatesQuery {
    /// The tenant whose templates (an admin of every tenant; default `default`).
    /// Others work on their own tenant's, which they may name.
    #[param(pattern = "^[a-zA-Z0-9_.@-]{1,64}$")]
    pub tenant: Option<String>,
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page (a template id).
    #[param(pattern = "^tpl_[0-9a-f]{32}$")]
    pub cursor: Option<String>,
}

impl From<TemplateError> for ApiError {
    fn from(error: TemplateError) -> ApiError {
        match error {
            TemplateError::Invalid {
                code: code @ "invalid_template",
                message,
            } => ApiError::Refused { code, message },
            TemplateError::Invalid { code, message } => ApiError::Invalid { code, message },
            TemplateError::NotFound(id) => ApiError::NotFound {
                code: "template_not_found",
                what: format!("template {id}"),
            },
            TemplateError::Store(error) => wafleet_node::api::FleetError::Store(error).into(),
        }
    }
}

const NOT_FOUND: &str = "no such template of the tenant (`template_not_found`), or `tenant` is not one the \
caller sees (`tenant_not_found`)";

#[utoipa::path(get, path = "/v1/templates", tag = "templates", params(TemplatesQuery),
    description = "The tenant's message templates, in id order, page by page.",
    responses((status = 200, body = TemplateList),
        (status = 400, description = "a malformed `limit` or `cursor`", body = ErrorBody),
        (status = 404, description = "`tenant` is not one the caller sees (`tenant_not_found`)", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_templates(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<TemplatesQuery>,
) -> Result<Json<TemplateList>, ApiError> {
    let limit = page_limit(query.limit)?;
    if let Some(cursor) = &query.cursor {
        crate::routes::jobs::check_id(cursor, "tpl_", "invalid_cursor")?;
    }
    let tenant = tenant_asked(&state, &caller, query.tenant).await?;
    let templates: Vec<TemplateDto> = state
        .catalog
        .templates()
        .list(&tenant, query.cursor.as_deref(), limit)
        .await?
        .into_iter()
        .map(TemplateDto::from)
        .collect();
    Ok(Json(TemplateList {
        next_cursor: next_cursor(&templates, limit, |t| t.id.clone()),
        templates,
    }))
}

#[utoipa::path(post, path = "/v1/templates", tag = "templates", params(TenantParam),
    request_body = TemplateIn,
    description = "Saves a new template; its text is stored sealed, like message texts. A job fills it when the \
job is made: changing or deleting the template later does not change a job already made.",
    responses((status = 201, body = TemplateDto),
        (status = 400, description = "a name or text out of bounds (`invalid_name`, `invalid_text`)", body = ErrorBody),
        (status = 404, description = "`tenant` is not one the caller sees (`tenant_not_found`)", body = ErrorBody),
        (status = 422, description = "a `{{` that opens no placeholder, or a malformed variable name \
(`invalid_template`, the message names the character)", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create_template(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<TenantParam>,
    ApiJson(body): ApiJson<TemplateIn>,
) -> Result<(StatusCode, Json<TemplateDto>), ApiError> {
    let tenant = tenant_asked(&state, &caller, query.tenant).await?;
    let template = state
        .catalog
        .templates()
        .create(&tenant, &body.name, &body.text)
        .await?;
    Ok((StatusCode::CREATED, Json(template.into())))
}

#[utoipa::path(get, path = "/v1/templates/{id}", tag = "templates",
    params(("id" = String, Path, description = "The template's id"), TenantParam),
    responses((status = 200, body = TemplateDto), (status = 404, description = NOT_FOUND, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_template(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<TenantParam>,
) -> Result<Json<TemplateDto>, ApiError> {
    let tenant = tenant_asked(&state, &caller, query.tenant).await?;
    Ok(Json(
        state.catalog.templates().get(&tenant, &id).await?.into(),
    ))
}

#[utoipa::path(put, path = "/v1/templates/{id}", tag = "templates",
    params(("id" = String, Path, description = "The template's id"), TenantParam),
    request_body = TemplateIn,
    description = "Replaces the template's name and text (jobs already made keep the text they were made with). \
The template is looked up before the body is read: an unknown one is 404 whatever the body.",
    responses((status = 200, body = TemplateDto),
        (status = 400, description = "a name or text out of bounds (`invalid_name`, `invalid_text`)", body = ErrorBody),
        (status = 404, description = NOT_FOUND, body = ErrorBody),
        (status = 422, description = "a `{{` that opens no placeholder, or a malformed variable name \
(`invalid_template`)", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn put_template(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<TenantParam>,
    request: Request,
) -> Result<Json<TemplateDto>, ApiError> {
    let tenant = tenant_asked(&state, &caller, query.tenant).await?;
    let book = state.catalog.templates();
    // Another tenant's template is 404 whatever the body.
    book.get(&tenant, &id).await?;
    let ApiJson(body) = ApiJson::<TemplateIn>::from_request(request, &state).await?;
    let template = book.update(&tenant, &id, &body.name, &body.text).await?;
    Ok(Json(template.into()))
}

#[utoipa::path(delete, path = "/v1/templates/{id}", tag = "templates",
    params(("id" = String, Path, description = "The template's id"), TenantParam),
    responses((status = 200, body = Deleted), (status = 404, description = NOT_FOUND, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete_template(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<TenantParam>,
) -> Result<Json<Deleted>, ApiError> {
    let tenant = tenant_asked(&state, &caller, query.tenant).await?;
    if !state.catalog.templates().delete(&tenant, &id).await? {
        return Err(TemplateError::NotFound(id).into());
    }
    Ok(Json(Deleted { id, deleted: true }))
}

/// The routes of this file, each with its OpenAPI path.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_templates, create_template))
        .routes(routes!(get_template, put_template, delete_template))
}
