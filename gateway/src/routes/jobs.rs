//! Campaigns: bulk jobs over a pool of the tenant's devices (`/v1/jobs`). The rules are
//! [`wafleet_node::jobs`]; the sending is done by the nodes that run the job's devices.
//!
//! A job belongs to a tenant: the caller's, or for an admin of every tenant the one
//! `?tenant=` names (by default the tenant of the job's first device). A key limited to
//! some devices makes jobs of those devices only, and sees only the jobs whose devices
//! it all sees.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;
use wafleet_node::clock::{parse_rfc3339, rfc3339};
use wafleet_node::jobs::window::{Window, WindowSpec};
use wafleet_node::jobs::{Audience, JobError, JobView, NewJob, NewRecipient};
use wafleet_node::store::{RecipientRecord, RecipientStatus};

use crate::AppState;
use crate::auth::{Caller, check_device, tenant_asked};
use crate::dto::{SendMedia, next_cursor, page_limit};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::routes::contacts::TagIn;
use crate::routes::messages::message_media;
use crate::validate;

/// The largest body `POST /v1/jobs` reads: 100,000 recipients with a few variables.
const JOB_BODY_LIMIT: usize = 32 * 1024 * 1024;

/// A device of the tenant, by id.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, pattern = "^[a-zA-Z0-9_-]{1,64}$", min_length = 1, max_length = 64)]
pub struct DeviceIdIn(pub String);

/// One recipient of a job.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecipientIn {
    /// A phone number (digits with the country code, a leading `+` allowed) or a group
    /// id (`120363041234567890@g.us`).
    #[schema(
        example = "6281234567890",
        pattern = r"^(\+?[0-9]{8,15}|[0-9]{5,24}(-[0-9]{5,24})?@g\.us)$"
    )]
    pub to: String,
    /// Values of the template's `{{variables}}` (at most 50). `name` defaults to the
    /// contact's saved name, `phone` to `to`.
    pub vars: Option<BTreeMap<String, String>>,
}

/// A sending window: the hours of the day (its zone's wall clock) a job may hand off
/// messages. `start` included, `end` excluded; an `end` before `start` spans midnight.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowDto {
    #[schema(pattern = "^[0-2][0-9]:[0-5][0-9]$", example = "08:00")]
    pub start: String,
    #[schema(pattern = "^[0-2][0-9]:[0-5][0-9]$", example = "21:00")]
    pub end: String,
    /// An IANA time zone.
    #[schema(min_length = 1, max_length = 64, example = "Asia/Jakarta")]
    pub tz: String,
}

/// A job to make.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    /// 1 to 100 characters, not only spaces.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"[^\t\n\x0B\x0C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    pub name: String,
    /// The pool of devices that send it (1 to 50, each once): recipients go to them as
    /// their paces allow, so a faster device takes more.
    #[schema(min_items = 1, max_items = 50)]
    pub devices: Vec<DeviceIdIn>,
    /// Who it goes to, in order (at most 100,000; a number given twice gets one
    /// message). Exactly one of `recipients` and `contacts_tag`.
    #[schema(max_items = 100000)]
    pub recipients: Option<Vec<RecipientIn>>,
    /// Every contact of the tenant's book with this tag.
    pub contacts_tag: Option<TagIn>,
    /// The text (with `media`, its caption). Or `template_id`.
    #[schema(max_length = 65536)]
    pub text: Option<String>,
    /// A template of the tenant, filled per recipient when the job is made (a variable
    /// a recipient lacks is 422 `missing_variables`).
    #[schema(pattern = "^tpl_[0-9a-f]{32}$")]
    pub template_id: Option<String>,
    /// A file every recipient gets (checked and, for a URL, fetched once now).
    pub media: Option<SendMedia>,
    /// RFC 3339: not started before (the job is `scheduled` until then); a time that
    /// does not read is 422 `invalid_time`.
    #[schema(example = "2026-12-24T09:00:00+07:00")]
    pub send_at: Option<String>,
    pub window: Option<WindowDto>,
}

/// A job and where its recipients stand. Counts are cumulative: `sent` counts every
/// message that left (also those since delivered or read), `delivered` also those read.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobDto {
    /// `job_` and 32 hex digits.
    pub id: String,
    pub name: String,
    /// `scheduled`, `running`, `paused`, `completed` or `cancelled`.
    pub status: String,
    pub total: u64,
    /// Not left yet (waiting for a device, or in a device's outbox).
    pub pending: u64,
    pub sent: u64,
    pub delivered: u64,
    pub read: u64,
    /// Failed for good, after their retries.
    pub failed: u64,
    /// Never left: the job was cancelled first.
    pub cancelled: u64,
    pub devices: Vec<String>,
    pub window: Option<WindowDto>,
    pub template_id: Option<String>,
    pub send_at: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

impl JobDto {
    fn of(view: JobView) -> JobDto {
        let spec = wafleet_node::jobs::JobSpec::of(&view.job).ok();
        let (window, template_id) = match spec {
            Some(spec) => (
                spec.window.map(|w| {
                    let spec = WindowSpec::from(w);
                    WindowDto {
                        start: spec.start,
                        end: spec.end,
                        tz: spec.tz,
                    }
                }),
                spec.template_id,
            ),
            None => (None, None),
        };
        let (job, p) = (view.job, view.progress);
        JobDto {
            id: job.id,
            name: job.name,
            status: job.status.as_str().to_owned(),
            total: p.total,
            pending: p.pending,
            sent: p.sent,
            delivered: p.delivered,
            read: p.read,
            failed: p.failed,
            cancelled: p.cancelled,
            devices: job.devices,
            window,
            template_id,
            send_at: job.start_at_ms.map(rfc3339),
            created_at: rfc3339(job.created_at_ms),
            started_at: job.started_at_ms.map(rfc3339),
            finished_at: job.finished_at_ms.map(rfc3339),
        }
    }
}

/// A page of jobs, in id order.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobDto>,
    pub next_cursor: Option<String>,
}

/// One recipient and where its send stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecipientDto {
    /// Its place in the job, from 0.
    pub seq: u64,
    pub to: String,
    /// The device that took it.
    pub device_id: Option<String>,
    /// Its message in that device's log.
    pub message_id: Option<String>,
    /// `pending`, `queued`, `sent`, `delivered`, `read`, `failed` or `cancelled`.
    pub status: String,
    /// Sends tried (a retry is one more).
    pub attempts: u32,
    /// Why the last send failed.
    pub error: Option<String>,
    pub updated_at: String,
}

impl From<RecipientRecord> for RecipientDto {
    fn from(r: RecipientRecord) -> RecipientDto {
        RecipientDto {
            seq: r.seq,
            to: r.to,
            device_id: r.device_id,
            message_id: r.message_id,
            status: r.status.as_str().to_owned(),
            attempts: r.attempts,
            error: r.error,
            updated_at: rfc3339(r.updated_at_ms),
        }
    }
}

/// A page of recipients, in `seq` order.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecipientList {
    pub recipients: Vec<RecipientDto>,
    pub next_cursor: Option<String>,
}

/// What `retry` did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Retried {
    /// Failed recipients queued again.
    pub retried: u64,
    pub job: JobDto,
}

/// `?tenant=`: whose jobs.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TenantParam {
    /// The tenant (an admin of every tenant; default: the tenant of the job's first
    /// device when making one, `default` otherwise). Others use their own tenant's.
    #[param(pattern = "^[a-zA-Z0-9_.@-]{1,64}$")]
    pub tenant: Option<String>,
}

/// Query of `GET /v1/jobs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// The tenant whose jobs (an admin of every tenant; default `default`).
    #[param(pattern = "^[a-zA-Z0-9_.@-]{1,64}$")]
    pub tenant: Option<String>,
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page (a job id).
    #[param(pattern = "^job_[0-9a-f]{32}$")]
    pub cursor: Option<String>,
}

/// Query of `GET /v1/jobs/{id}/recipients`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RecipientsQuery {
    #[param(pattern = "^[a-zA-Z0-9_.@-]{1,64}$")]
    pub tenant: Option<String>,
    /// Only recipients in this status.
    #[param(pattern = "^(pending|queued|sent|delivered|read|failed|cancelled)$")]
    pub status: Option<String>,
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page (a `seq`).
    #[param(pattern = "^[0-9]{1,19}$")]
    pub cursor: Option<String>,
}

impl From<JobError> for ApiError {
    fn from(error: JobError) -> ApiError {
        match error {
            JobError::Invalid { code, message } => ApiError::Invalid { code, message },
            JobError::Refused { code, message } => ApiError::Refused { code, message },
            JobError::TooMany { message } => ApiError::TooMany {
                code: "too_many_recipients",
                message,
            },
            JobError::NotFound { code, what } => ApiError::NotFound { code, what },
            JobError::Conflict { code, message } => ApiError::Conflict { code, message },
            JobError::Store(error) => wafleet_node::api::FleetError::Store(error).into(),
        }
    }
}

/// 404 unless the caller sees every device of the job (a key limited to some devices).
async fn check_job_devices(
    state: &AppState,
    caller: &Caller,
    view: &JobView,
) -> Result<(), ApiError> {
    for device in &view.job.devices {
        if check_device(state, caller, device).await.is_err() {
            return Err(JobError::job_not_found_for(&view.job.id).into());
        }
    }
    Ok(())
}

/// `id` is `prefix` and 32 lowercase hex digits (a job's or a template's id); `code`
/// (400) otherwise.
pub(crate) fn check_id(id: &str, prefix: &str, code: &'static str) -> Result<(), ApiError> {
    let ok = id.strip_prefix(prefix).is_some_and(|hex| {
        hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            code,
            format!("{id:?} is not {prefix} and 32 hex digits"),
        ))
    }
}

const NOT_FOUND: &str =
    "no such job of the tenant (`job_not_found`), or `tenant` is not one the caller sees";

#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", params(TenantParam), request_body = CreateJob,
    description = "Makes a job: every rule is checked and every recipient stored before the answer (a template \
is filled per recipient now: a variable one lacks is 422 `missing_variables`, and nothing is stored). It runs at \
once (`running`) or at `send_at` (`scheduled`), within `window` if given. Recipients go to the job's devices as \
each device's pace allows (its rate limiter, by trust level): a faster device takes more; each recipient gets one \
message. A failed send is retried after `base_delay_ms × fib(n)` (`/v1/settings/retries`) by whichever device \
takes it next, unless the failure is one no retry mends (not on WhatsApp). Progress: `GET /v1/jobs/{id}` and the \
`job.progress` event (SSE, and the webhook of the job's lead device: the first of its pool that is wanted running), at most once per half second and on every \
status change.",
    responses((status = 201, body = JobDto),
        (status = 400, description = "a value breaks a rule the schema states (`invalid_name`, `invalid_text`, \
`invalid_phone`, `invalid_group_id`, `invalid_device_id`)", body = ErrorBody),
        (status = 404, description = "a device, template or media file that is not the tenant's", body = ErrorBody),
        (status = 413, description = "more than 100,000 recipients (`too_many_recipients`), or a file over its \
type's limit", body = ErrorBody),
        (status = 422, description = "`missing_variables`, `no_recipients`, `no_content`, `invalid_template`, \
`invalid_time`, `invalid_window`, `invalid_devices` (a device named twice), `invalid_vars` (more than 50), or not \
exactly one of `recipients` and `contacts_tag`", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create_job(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<TenantParam>,
    ApiJson(body): ApiJson<CreateJob>,
) -> Result<(StatusCode, Json<JobDto>), ApiError> {
    let devices: Vec<String> = body.devices.into_iter().map(|d| d.0).collect();
    for device in &devices {
        validate::device_id(device)?;
        check_device(&state, &caller, device).await?;
    }
    let tenant = match (&query.tenant, &caller.tenant, devices.first()) {
        (None, None, Some(first)) => state.catalog.device(first).await?.tenant,
        _ => tenant_asked(&state, &caller, query.tenant).await?,
    };
    let audience = match (body.recipients, body.contacts_tag) {
        (Some(recipients), None) => {
            let mut given = Vec::with_capacity(recipients.len());
            for r in recipients {
                given.push(NewRecipient {
                    to: validate::recipient(&r.to)?,
                    vars: r.vars.unwrap_or_default(),
                });
            }
            Audience::Given(given)
        }
        (None, Some(tag)) => Audience::Tag(tag.0.to_lowercase()),
        _ => {
            return Err(ApiError::Unprocessable(
                "give exactly one of recipients and contacts_tag".into(),
            ));
        }
    };
    let start_at_ms = body
        .send_at
        .as_deref()
        .map(|at| {
            parse_rfc3339(at).ok_or_else(|| ApiError::Refused {
                code: "invalid_time",
                message: "send_at is an RFC 3339 time, like 2026-12-24T09:00:00+07:00".into(),
            })
        })
        .transpose()?;
    let window = body
        .window
        .map(|w| {
            Window::try_from(WindowSpec {
                start: w.start,
                end: w.end,
                tz: w.tz,
            })
            .map_err(|e| ApiError::Refused {
                code: "invalid_window",
                message: e.to_string(),
            })
        })
        .transpose()?;
    let media = match body.media {
        Some(media) => Some(message_media(&state, &tenant, media).await?),
        None => None,
    };
    let job = state
        .catalog
        .jobs()
        .create(NewJob {
            tenant,
            name: body.name,
            devices,
            audience,
            text: body.text,
            template_id: body.template_id,
            media,
            start_at_ms,
            window,
        })
        .await?;
    let view = state.catalog.jobs().view(job).await?;
    Ok((StatusCode::CREATED, Json(JobDto::of(view))))
}

#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(JobsQuery),
    description = "The tenant's jobs, in id order, each with its progress.",
    responses((status = 200, body = JobList),
        (status = 400, description = "a malformed `limit` or `cursor`", body = ErrorBody),
        (status = 404, description = "`tenant` is not one the caller sees", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_jobs(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<JobsQuery>,
) -> Result<Json<JobList>, ApiError> {
    let limit = page_limit(query.limit)?;
    if let Some(cursor) = &query.cursor {
        check_id(cursor, "job_", "invalid_cursor")?;
    }
    let tenant = tenant_asked(&state, &caller, query.tenant).await?;
    let views = state
        .catalog
        .jobs()
        .list(&tenant, query.cursor.as_deref(), limit)
        .await?;
    let cursor = next_cursor(&views, limit, |v| v.job.id.clone());
    let mut jobs = Vec::with_capacity(views.len());
    for view in views {
        if check_job_devices(&state, &caller, &view).await.is_ok() {
            jobs.push(JobDto::of(view));
        }
    }
    Ok(Json(JobList {
        jobs,
        next_cursor: cursor,
    }))
}

/// The tenant's job `id` as the caller may see it.
async fn visible(
    state: &AppState,
    caller: &Caller,
    id: &str,
    tenant: Option<String>,
) -> Result<JobView, ApiError> {
    let tenant = tenant_asked(state, caller, tenant).await?;
    let view = state.catalog.jobs().get(&tenant, id).await?;
    check_job_devices(state, caller, &view).await?;
    Ok(view)
}

#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The job's id"), TenantParam),
    responses((status = 200, body = JobDto), (status = 404, description = NOT_FOUND, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_job(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<TenantParam>,
) -> Result<Json<JobDto>, ApiError> {
    Ok(Json(JobDto::of(
        visible(&state, &caller, &id, query.tenant).await?,
    )))
}

#[utoipa::path(get, path = "/v1/jobs/{id}/recipients", tag = "jobs",
    params(("id" = String, Path, description = "The job's id"), RecipientsQuery),
    description = "The job's recipients in order, with where each send stands; `?status=` keeps one status.",
    responses((status = 200, body = RecipientList),
        (status = 400, description = "a malformed `status`, `limit` or `cursor`", body = ErrorBody),
        (status = 404, description = NOT_FOUND, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn job_recipients(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<RecipientsQuery>,
) -> Result<Json<RecipientList>, ApiError> {
    let limit = page_limit(query.limit)?;
    let status = query
        .status
        .as_deref()
        .map(|s| {
            RecipientStatus::parse(s).ok_or_else(|| {
                ApiError::invalid(
                    "invalid_status",
                    "status is pending, queued, sent, delivered, read, failed or cancelled",
                )
            })
        })
        .transpose()?;
    let after = query
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<u64>()
                .map_err(|_| ApiError::invalid("invalid_cursor", "the cursor is a seq"))
        })
        .transpose()?;
    let view = visible(&state, &caller, &id, query.tenant).await?;
    let recipients: Vec<RecipientDto> = state
        .catalog
        .jobs()
        .recipients(&view.job.tenant, &id, status, after, limit)
        .await?
        .into_iter()
        .map(RecipientDto::from)
        .collect();
    Ok(Json(RecipientList {
        next_cursor: next_cursor(&recipients, limit, |r| r.seq.to_string()),
        recipients,
    }))
}

#[utoipa::path(post, path = "/v1/jobs/{id}/pause", tag = "jobs",
    params(("id" = String, Path, description = "The job's id"), TenantParam),
    description = "Stops new hand-offs within a second; what devices already queued goes on at their pace.",
    responses((status = 200, body = JobDto), (status = 404, description = NOT_FOUND, body = ErrorBody),
        (status = 409, description = "not scheduled or running (`job_paused`, `job_finished`)", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn pause_job(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<TenantParam>,
) -> Result<Json<JobDto>, ApiError> {
    let view = visible(&state, &caller, &id, query.tenant).await?;
    Ok(Json(JobDto::of(
        state.catalog.jobs().pause(&view.job.tenant, &id).await?,
    )))
}

#[utoipa::path(post, path = "/v1/jobs/{id}/resume", tag = "jobs",
    params(("id" = String, Path, description = "The job's id"), TenantParam),
    description = "Hands off again (`running`, or `scheduled` if its start is still ahead).",
    responses((status = 200, body = JobDto), (status = 404, description = NOT_FOUND, body = ErrorBody),
        (status = 409, description = "not paused (`job_not_paused`, `job_finished`)", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn resume_job(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<TenantParam>,
) -> Result<Json<JobDto>, ApiError> {
    let view = visible(&state, &caller, &id, query.tenant).await?;
    Ok(Json(JobDto::of(
        state.catalog.jobs().resume(&view.job.tenant, &id).await?,
    )))
}

#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = String, Path, description = "The job's id"), TenantParam),
    description = "Stops the job for good: recipients not yet handed to a device are `cancelled`.",
    responses((status = 200, body = JobDto), (status = 404, description = NOT_FOUND, body = ErrorBody),
        (status = 409, description = "completed or cancelled already (`job_finished`)", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn cancel_job(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<TenantParam>,
) -> Result<Json<JobDto>, ApiError> {
    let view = visible(&state, &caller, &id, query.tenant).await?;
    Ok(Json(JobDto::of(
        state.catalog.jobs().cancel(&view.job.tenant, &id).await?,
    )))
}

#[utoipa::path(post, path = "/v1/jobs/{id}/retry", tag = "jobs",
    params(("id" = String, Path, description = "The job's id"), TenantParam),
    description = "Queues the failed recipients again, each with its attempts afresh; a completed job runs again.",
    responses((status = 200, body = Retried), (status = 404, description = NOT_FOUND, body = ErrorBody),
        (status = 409, description = "the job was cancelled (`job_finished`)", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn retry_job(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<TenantParam>,
) -> Result<Json<Retried>, ApiError> {
    let view = visible(&state, &caller, &id, query.tenant).await?;
    let (retried, view) = state.catalog.jobs().retry(&view.job.tenant, &id).await?;
    Ok(Json(Retried {
        retried,
        job: JobDto::of(view),
    }))
}

/// The routes of this file, each with its OpenAPI path.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_job, list_jobs).layer(DefaultBodyLimit::max(JOB_BODY_LIMIT)))
        .routes(routes!(get_job))
        .routes(routes!(job_recipients))
        .routes(routes!(pause_job))
        .routes(routes!(resume_job))
        .routes(routes!(cancel_job))
        .routes(routes!(retry_job))
}
