//! The audit log: every change made through the API, filterable, as JSON pages or a
//! streamed CSV export.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_node::clock::rfc3339;
use wafleet_node::store::{AuditEntry, AuditQuery};

use crate::AppState;
use crate::auth::Caller;
use crate::dto::{next_cursor, page_limit, time_param};
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiQuery;

/// Entries read from the store per page of a CSV export.
const EXPORT_PAGE: u32 = 500;

/// Query of `GET /v1/audit`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// `bootstrap`, `key:<id>` or `user:<name>`.
    pub actor: Option<String>,
    /// The operation, e.g. `create_device`, `revoke_key`, `login`.
    pub action: Option<String>,
    /// The request path, e.g. `/v1/devices/shop-1/start`.
    pub target: Option<String>,
    /// RFC 3339 in UTC: entries at or after (its pattern: `openapi::complete`).
    pub since: Option<String>,
    /// RFC 3339 in UTC: entries before.
    pub until: Option<String>,
    /// `json` (default: a page) or `csv` (every matching entry, streamed).
    #[param(pattern = "^(json|csv)$")]
    pub format: Option<String>,
    /// 1 to 500, default 50 (JSON pages).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// One audit entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryDto {
    pub id: String,
    pub at: String,
    pub actor: String,
    pub tenant: Option<String>,
    pub action: String,
    pub target: String,
    pub source: String,
    pub status: u16,
    /// `ok`, or the error code answered.
    pub outcome: String,
}

impl From<AuditEntry> for AuditEntryDto {
    fn from(e: AuditEntry) -> AuditEntryDto {
        AuditEntryDto {
            at: rfc3339(e.at_ms),
            id: e.id,
            actor: e.actor,
            tenant: e.tenant,
            action: e.action,
            target: e.target,
            source: e.source,
            status: e.status,
            outcome: e.outcome,
        }
    }
}

/// A page of audit entries, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub entries: Vec<AuditEntryDto>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/audit", tag = "access", params(AuditParams),
    description = "Every change made through the API (who, tenant, action, target, when, source address, outcome), \
oldest first; an admin of a tenant sees its tenant's. `format=csv` streams every matching entry as CSV. Entries are \
written within about 100 ms of their request.",
    responses((status = 200, description = "A page of entries (JSON), or every matching entry (format=csv)",
            content((AuditList = "application/json"), (String = "text/csv"))),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let mut query = AuditQuery {
        actor: params.actor,
        action: params.action,
        target: params.target,
        tenant: caller.tenant.clone(),
        since_ms: time_param(params.since.as_deref(), "since")?,
        until_ms: time_param(params.until.as_deref(), "until")?,
        after: params.cursor,
        limit: page_limit(params.limit)?,
    };
    match params.format.as_deref() {
        None | Some("json") => {
            let entries: Vec<AuditEntryDto> = state
                .catalog
                .store()
                .list_audit(&query)
                .await
                .map_err(wafleet_node::FleetError::Store)?
                .into_iter()
                .map(AuditEntryDto::from)
                .collect();
            Ok(Json(AuditList {
                next_cursor: next_cursor(&entries, query.limit, |e| e.id.clone()),
                entries,
            })
            .into_response())
        }
        Some("csv") => {
            query.limit = EXPORT_PAGE;
            Ok(csv_export(state, query))
        }
        Some(other) => Err(ApiError::invalid(
            "invalid_format",
            format!("format {other:?}: use json or csv"),
        )),
    }
}

/// The CSV export: a header line, then one page of entries at a time as the client
/// reads, so that memory does not grow with the log.
fn csv_export(state: AppState, query: AuditQuery) -> Response {
    let header_line = "id,at,actor,tenant,action,target,source,status,outcome\n".to_owned();
    let pages = futures_util::stream::unfold(Some(query), move |query| {
        let store = state.catalog.store().clone();
        async move {
            let mut query = query?;
            match store.list_audit(&query).await {
                Ok(entries) => {
                    let next = (entries.len() == query.limit as usize).then(|| {
                        query.after = entries.last().map(|e| e.id.clone());
                        query
                    });
                    let text: String = entries.into_iter().map(csv_line).collect();
                    Some((Ok::<_, std::io::Error>(text), next))
                }
                Err(error) => {
                    tracing::warn!(%error, "the audit export stopped: the store failed");
                    Some((Err(std::io::Error::other("the store failed")), None))
                }
            }
        }
    });
    let body =
        futures_util::stream::once(async { Ok::<_, std::io::Error>(header_line) }).chain(pages);
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"audit.csv\"",
            ),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

fn csv_line(e: AuditEntry) -> String {
    let fields = [
        e.id,
        rfc3339(e.at_ms),
        e.actor,
        e.tenant.unwrap_or_default(),
        e.action,
        e.target,
        e.source,
        e.status.to_string(),
        e.outcome,
    ];
    let mut line = fields.map(|f| csv_field(&f)).join(",");
    line.push('\n');
    line
}

/// A CSV field (RFC 4180): quoted when it holds a comma, quote or line break. A
/// leading `=`, `+`, `-` or `@` is prefixed with `'` so that a spreadsheet does not
/// run it as a formula.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// The routes of this file, each with its OpenAPI path.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(audit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=SUM(A1)"), "'=SUM(A1)");
    }
}
