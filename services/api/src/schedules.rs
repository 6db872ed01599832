//! `/v1/schedules`: an organization's scheduled exports, for admins. Each
//! slot of a schedule makes an export exactly as `POST /v1/exports` does
//! (the scheduler fires them; "run now" fires one at once). The system's
//! own schedules (backups, maintenance) are listed too, read-only: the
//! scheduler writes them from its settings.

use crate::auth::Caller;
use crate::exports::{ExportSettings, parse_filters};
use crate::openapi::problems;
use crate::pagination::{Page, PageQuery, PageRequest};
use crate::problem::ApiError;
use crate::routes::Endpoint;
use crate::validation::{Fields, distinguish_null};
use actix_web::http::header;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use chrono::{DateTime, SecondsFormat, Utc};
use diesel::Connection;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use stockflow_db::Database;
use stockflow_db::org_schedules::{self, Changes, NewSchedule};
use stockflow_db::page::After;
use stockflow_db::schedule_exports::{self, RunNow};
use stockflow_db::schedule_runs::{self, NewRun, RunRow};
use stockflow_db::schedules::ScheduleRow;
use stockflow_domain::{
    CatchupWindow, CronExpr, ExportFormat, ExportKind, ExportSpec, Jitter, MisfirePolicy, OverlapPolicy, PauseNote,
    Role, ScheduleName, Timezone, Timing,
};
use stockflow_runtime::OutboxRelay;
use uuid::Uuid;

/// Fire times a schedule shows ahead.
const UPCOMING: usize = 5;

pub(crate) fn endpoints() -> [Endpoint; 6] {
    [
        Endpoint::new("/v1/schedules").get(list).post(create),
        Endpoint::new("/v1/schedules/{id}").get(get).patch(update).delete(delete),
        Endpoint::new("/v1/schedules/{id}/run").post(run),
        Endpoint::new("/v1/schedules/{id}/pause").post(pause),
        Endpoint::new("/v1/schedules/{id}/resume").post(resume),
        Endpoint::new("/v1/schedules/{id}/runs").get(runs),
    ]
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Schedule)]
pub(crate) struct ScheduleView {
    pub(crate) id: Uuid,
    #[schema(example = "nightly batches")]
    pub(crate) name: String,
    /// The installation's own schedule (backups, maintenance): read-only,
    /// changed through the scheduler's settings.
    pub(crate) system: bool,
    /// False only for a system schedule switched off in the settings.
    pub(crate) enabled: bool,
    #[schema(example = "0 2 * * *")]
    pub(crate) cron: String,
    #[schema(example = "Europe/Berlin")]
    pub(crate) timezone: String,
    /// The job each run sends: `export.requested` for an organization's
    /// schedule.
    #[schema(example = "export.requested")]
    pub(crate) job: String,
    /// What each run exports (the body of `POST /v1/exports`); null for a
    /// system schedule.
    #[schema(value_type = Option<Object>, example = json!({"kind": "batches", "format": "csv", "filters": {}}))]
    pub(crate) export: Option<Value>,
    pub(crate) paused: bool,
    pub(crate) pause_note: Option<String>,
    #[schema(schema_with = crate::openapi::misfire_policy)]
    pub(crate) misfire_policy: String,
    pub(crate) catchup_window_secs: i32,
    #[schema(schema_with = crate::openapi::overlap_policy)]
    pub(crate) overlap_policy: String,
    pub(crate) jitter_secs: i32,
    /// A run whose export has not finished after this long is `lost`.
    pub(crate) run_timeout_secs: i32,
    /// The next fire times, on the schedule's clock (RFC 3339 with the
    /// zone's offset); empty while paused or switched off. The first may
    /// be past while the scheduler catches up.
    #[schema(example = json!(["2026-12-01T02:00:00+01:00", "2026-12-02T02:00:00+01:00"]))]
    pub(crate) next_runs: Vec<String>,
    #[serde(serialize_with = "crate::rfc3339::optional")]
    pub(crate) last_run_at: Option<DateTime<Utc>>,
    #[schema(schema_with = crate::openapi::last_status)]
    pub(crate) last_status: Option<String>,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub(crate) created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub(crate) updated_at: DateTime<Utc>,
}

impl From<ScheduleRow> for ScheduleView {
    fn from(row: ScheduleRow) -> Self {
        let timing = row.timing().ok();
        let next_runs = match timing {
            Some(timing) if row.enabled && !row.paused => {
                let first = row.next_run_at.with_timezone(&timing.zone.tz());
                std::iter::once(first)
                    .chain(timing.upcoming(row.next_run_at, UPCOMING - 1))
                    .map(|at| at.to_rfc3339_opts(SecondsFormat::Secs, true))
                    .collect()
            }
            _ => Vec::new(),
        };
        Self {
            system: row.is_system(),
            export: org_schedules::export_of(&row).map(|spec| spec.to_json()),
            id: row.id,
            name: row.name,
            enabled: row.enabled,
            cron: row.cron,
            timezone: row.timezone,
            job: row.routing_key,
            paused: row.paused,
            pause_note: row.pause_note,
            misfire_policy: row.misfire_policy,
            catchup_window_secs: row.catchup_window_secs,
            overlap_policy: row.overlap_policy,
            jitter_secs: row.jitter_secs,
            run_timeout_secs: row.run_timeout_secs,
            next_runs,
            last_run_at: row.last_run_at,
            last_status: row.last_status,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ScheduleRun)]
pub(crate) struct RunView {
    id: Uuid,
    schedule_id: Uuid,
    /// The slot of the pattern this run is for; the moment it was asked
    /// for, for a manual run.
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    slot: DateTime<Utc>,
    #[schema(schema_with = crate::openapi::run_trigger)]
    trigger: String,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    fired_at: DateTime<Utc>,
    /// `enqueued` until the export finishes (`succeeded`, `failed`);
    /// `skipped` when the slot sent nothing (`detail` says why); `lost`
    /// when no outcome came within the run timeout.
    #[schema(schema_with = crate::openapi::run_outcome)]
    outcome: String,
    #[serde(serialize_with = "crate::rfc3339::optional")]
    finished_at: Option<DateTime<Utc>>,
    detail: Option<String>,
    /// The export the run made (`GET /v1/exports/{id}`).
    export_id: Option<Uuid>,
    /// The id of the job sent.
    job_id: Option<Uuid>,
}

impl From<RunRow> for RunView {
    fn from(run: RunRow) -> Self {
        Self {
            id: run.id,
            schedule_id: run.schedule_id,
            slot: run.slot,
            trigger: run.trigger,
            fired_at: run.fired_at,
            outcome: run.outcome,
            finished_at: run.finished_at,
            detail: run.detail,
            export_id: run.export_id,
            job_id: run.job_id,
        }
    }
}

impl From<NewRun> for RunView {
    fn from(run: NewRun) -> Self {
        Self {
            id: run.id,
            schedule_id: run.schedule_id,
            slot: run.slot,
            trigger: run.trigger.to_owned(),
            fired_at: run.fired_at,
            outcome: run.outcome.to_owned(),
            finished_at: run.finished_at,
            detail: run.detail,
            export_id: run.export_id,
            job_id: run.job_id,
        }
    }
}

/// The export of a schedule: the body of `POST /v1/exports`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportBody {
    kind: String,
    format: String,
    filters: Option<Value>,
}

/// Unknown fields are rejected (422).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateSchedule {
    #[schema(schema_with = crate::openapi::schedule_name)]
    name: String,
    #[schema(schema_with = crate::openapi::cron)]
    cron: String,
    #[schema(schema_with = crate::openapi::timezone)]
    timezone: String,
    #[schema(schema_with = crate::openapi::schedule_export)]
    export: ExportBody,
    /// `coalesce` when left out.
    #[schema(schema_with = crate::openapi::misfire_policy, required = false)]
    misfire_policy: Option<String>,
    /// How far back `fire_all` catches up, 1 to 604800; 3600 when left out.
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 604800, required = false)]
    catchup_window_secs: Option<i64>,
    /// `skip` when left out.
    #[schema(schema_with = crate::openapi::overlap_policy, required = false)]
    overlap_policy: Option<String>,
    /// The most each slot's export is held back, 0 to 3600; 0 when left out.
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 3600, required = false)]
    jitter_secs: Option<i64>,
}

/// Fields left out stay as they are; none may be null (422 naming it).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateSchedule {
    #[serde(default, deserialize_with = "distinguish_null")]
    #[schema(schema_with = crate::openapi::schedule_name, required = false)]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "distinguish_null")]
    #[schema(schema_with = crate::openapi::cron, required = false)]
    cron: Option<Option<String>>,
    #[serde(default, deserialize_with = "distinguish_null")]
    #[schema(schema_with = crate::openapi::timezone, required = false)]
    timezone: Option<Option<String>>,
    #[serde(default, deserialize_with = "distinguish_null")]
    #[schema(schema_with = crate::openapi::schedule_export, required = false)]
    export: Option<Option<ExportBody>>,
    #[serde(default, deserialize_with = "distinguish_null")]
    #[schema(schema_with = crate::openapi::misfire_policy, required = false)]
    misfire_policy: Option<Option<String>>,
    #[serde(default, deserialize_with = "distinguish_null")]
    #[schema(value_type = i64, minimum = 1, maximum = 604800, required = false)]
    catchup_window_secs: Option<Option<i64>>,
    #[serde(default, deserialize_with = "distinguish_null")]
    #[schema(schema_with = crate::openapi::overlap_policy, required = false)]
    overlap_policy: Option<Option<String>>,
    #[serde(default, deserialize_with = "distinguish_null")]
    #[schema(value_type = i64, minimum = 0, maximum = 3600, required = false)]
    jitter_secs: Option<Option<i64>>,
}

/// Optional; an empty body pauses without a note.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PauseSchedule {
    /// Why, for whoever finds it paused; none when left out or null.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::pause_note, required = false)]
    note: Option<String>,
}

// --- Checking what was sent ------------------------------------------------

/// A pattern, with the parser's reason as an `invalid_cron` field error.
fn parse_cron(fields: &mut Fields, raw: &str) -> Option<CronExpr> {
    CronExpr::parse(raw).map_err(|error| fields.push_coded("cron", error.code(), error.to_string())).ok()
}

/// An IANA zone name exactly as the document lists it.
fn parse_zone(fields: &mut Fields, raw: &str) -> Option<Timezone> {
    match Timezone::parse(raw) {
        Ok(zone) if zone.name() == raw => Some(zone),
        Ok(_) => {
            let error = stockflow_domain::ScheduleError::UnknownTimezone(raw.to_owned());
            fields.push_coded("timezone", error.code(), error.to_string());
            None
        }
        Err(error) => {
            fields.push_coded("timezone", error.code(), error.to_string());
            None
        }
    }
}

/// The export, checked by the code of `POST /v1/exports`, its errors
/// named under `export.`.
fn parse_export(fields: &mut Fields, body: ExportBody) -> Option<ExportSpec> {
    let mut nested = Fields::default();
    let kind = nested.take(ExportKind::parse(&body.kind));
    let format = nested.take(ExportFormat::parse(&body.format));
    let filters = kind.and_then(|kind| parse_filters(&mut nested, kind, body.filters.unwrap_or(Value::Null)));
    fields.absorb("export.", nested);
    Some(ExportSpec { format: format?, filters: filters? })
}

fn parse_misfire(fields: &mut Fields, raw: &str) -> Option<MisfirePolicy> {
    let parsed = MisfirePolicy::parse(raw);
    if parsed.is_none() {
        fields.push("misfire_policy", MisfirePolicy::EXPECTED);
    }
    parsed
}

fn parse_overlap(fields: &mut Fields, raw: &str) -> Option<OverlapPolicy> {
    let parsed = OverlapPolicy::parse(raw);
    if parsed.is_none() {
        fields.push("overlap_policy", OverlapPolicy::EXPECTED);
    }
    parsed
}

// --- Handlers --------------------------------------------------------------

#[utoipa::path(
    get,
    path = "/v1/schedules",
    tag = "schedules",
    operation_id = "list_schedules",
    description = "Needs the admin role. The organization's schedules and the installation's own \
        (`system: true`, read-only), newest first.",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of schedules, newest first", body = Page<ScheduleView>),
        (status = 400, response = problems::BadRequest),
        (status = 403, response = problems::Forbidden),
        (status = 422, response = problems::ValidationFailed),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug), err(level = "info"))]
pub(crate) async fn list(
    caller: Caller,
    database: web::Data<Database>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<Page<ScheduleView>>, ApiError> {
    caller.require(Role::Admin)?;
    let page = PageRequest::parse(query.limit(), query.cursor())?;
    let (org, after, fetch) = (caller.org.id, page.after, page.fetch());
    let rows = database
        .run(move |conn| org_schedules::list_visible(conn, org, after.as_ref(), fetch).map_err(ApiError::from))
        .await?;
    Ok(web::Json(page.page(rows, |s| After { at: s.created_at, id: s.id }, ScheduleView::from)))
}

#[utoipa::path(
    post,
    path = "/v1/schedules",
    tag = "schedules",
    operation_id = "create_schedule",
    description = "Needs the admin role. Each slot of `cron`, read on the wall clock of `timezone`, makes \
        the export `export` describes, exactly as `POST /v1/exports` would (it counts against \
        `EXPORTS_MAX_ACTIVE_PER_ORG`; a slot that finds the organization at that limit is recorded as \
        `skipped` and sends nothing). A pattern the parser refuses is a 422 whose error has `code` \
        `invalid_cron`, an unknown zone one with `unknown_timezone`; both carry the reason.",
    request_body = CreateSchedule,
    responses(
        (status = 201, description = "Created", body = ScheduleView,
            headers(("Location" = String, description = "The schedule's path"))),
        (status = 400, response = problems::BadRequest),
        (status = 403, response = problems::Forbidden),
        (status = 409, response = problems::Conflict),
        (status = 413, response = problems::PayloadTooLarge),
        (status = 422, response = problems::ValidationFailed),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug), err(level = "info"))]
pub(crate) async fn create(
    caller: Caller,
    database: web::Data<Database>,
    body: web::Json<CreateSchedule>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    let body = body.into_inner();
    let mut fields = Fields::default();
    let name = fields.take(ScheduleName::parse(&body.name));
    let cron = parse_cron(&mut fields, &body.cron);
    let zone = parse_zone(&mut fields, &body.timezone);
    let export = parse_export(&mut fields, body.export);
    let misfire = body.misfire_policy.map_or(Some(MisfirePolicy::Coalesce), |raw| parse_misfire(&mut fields, &raw));
    let catchup = body
        .catchup_window_secs
        .map_or(Some(CatchupWindow::DEFAULT), |secs| fields.take(CatchupWindow::from_secs(secs)));
    let overlap = body.overlap_policy.map_or(Some(OverlapPolicy::Skip), |raw| parse_overlap(&mut fields, &raw));
    let jitter = body.jitter_secs.map_or(Some(Jitter::DEFAULT), |secs| fields.take(Jitter::from_secs(secs)));
    fields.finish()?;
    let (Some(name), Some(cron), Some(zone), Some(export), Some(misfire), Some(catchup), Some(overlap), Some(jitter)) =
        (name, cron, zone, export, misfire, catchup, overlap, jitter)
    else {
        return Err(ApiError::invalid("body", "invalid fields"));
    };
    let new = NewSchedule {
        name,
        timing: Timing::new(cron, zone),
        export,
        misfire,
        catchup,
        overlap,
        jitter,
        created_by: caller.user.id,
    };
    let org = caller.org.id;
    let row = database.run(move |conn| org_schedules::insert(conn, org, &new).map_err(ApiError::from)).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/schedules/{}", row.id)))
        .json(ScheduleView::from(row)))
}

#[utoipa::path(
    get,
    path = "/v1/schedules/{id}",
    tag = "schedules",
    operation_id = "get_schedule",
    description = "Needs the admin role.",
    params(("id" = Uuid, Path, description = "The schedule's id")),
    responses(
        (status = 200, description = "The schedule, with its next fire times", body = ScheduleView),
        (status = 403, response = problems::Forbidden),
        (status = 404, response = problems::NotFound),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug, schedule = %id), err(level = "info"))]
pub(crate) async fn get(
    caller: Caller,
    database: web::Data<Database>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    let (org, id) = (caller.org.id, id.into_inner());
    let row = database.run(move |conn| find(conn, org, id, false)).await?;
    Ok(HttpResponse::Ok().json(ScheduleView::from(row)))
}

#[utoipa::path(
    patch,
    path = "/v1/schedules/{id}",
    tag = "schedules",
    operation_id = "update_schedule",
    description = "Needs the admin role. Fields left out keep their value; `null` is refused for every \
        field. A changed `cron` or `timezone` counts the next slot from now. A system schedule answers \
        409 `read_only`.",
    params(("id" = Uuid, Path, description = "The schedule's id")),
    request_body = UpdateSchedule,
    responses(
        (status = 200, description = "The updated schedule", body = ScheduleView),
        (status = 400, response = problems::BadRequest),
        (status = 403, response = problems::Forbidden),
        (status = 404, response = problems::NotFound),
        (status = 409, response = problems::ScheduleConflict),
        (status = 413, response = problems::PayloadTooLarge),
        (status = 422, response = problems::ValidationFailed),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug, schedule = %id), err(level = "info"))]
pub(crate) async fn update(
    caller: Caller,
    database: web::Data<Database>,
    id: web::Path<Uuid>,
    body: web::Json<UpdateSchedule>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    let body = body.into_inner();
    let mut fields = Fields::default();
    let name = fields.not_null("name", body.name).and_then(|raw| fields.take(ScheduleName::parse(&raw)));
    let cron = fields.not_null("cron", body.cron).and_then(|raw| parse_cron(&mut fields, &raw));
    let zone = fields.not_null("timezone", body.timezone).and_then(|raw| parse_zone(&mut fields, &raw));
    let export = fields.not_null("export", body.export).and_then(|raw| parse_export(&mut fields, raw));
    let misfire =
        fields.not_null("misfire_policy", body.misfire_policy).and_then(|raw| parse_misfire(&mut fields, &raw));
    let catchup = fields
        .not_null("catchup_window_secs", body.catchup_window_secs)
        .and_then(|secs| fields.take(CatchupWindow::from_secs(secs)));
    let overlap =
        fields.not_null("overlap_policy", body.overlap_policy).and_then(|raw| parse_overlap(&mut fields, &raw));
    let jitter = fields.not_null("jitter_secs", body.jitter_secs).and_then(|secs| fields.take(Jitter::from_secs(secs)));
    fields.finish()?;
    let (org, id) = (caller.org.id, id.into_inner());
    let row = database
        .run(move |conn| {
            conn.transaction(|conn| {
                let row = find_own(conn, org, id)?;
                // A change of either half of the timing keeps the other.
                let timing = match (cron, zone) {
                    (None, None) => None,
                    (cron, zone) => {
                        let old = row.timing().map_err(|_| {
                            ApiError::invalid("cron", "the stored pattern is unreadable; send cron and timezone")
                        });
                        match (cron, zone) {
                            (Some(cron), Some(zone)) => Some(Timing::new(cron, zone)),
                            (Some(cron), None) => Some(Timing::new(cron, old?.zone)),
                            (None, zone) => {
                                let old = old?;
                                Some(Timing::new(old.cron, zone.unwrap_or(old.zone)))
                            }
                        }
                    }
                };
                let changes = Changes { name, timing, export, misfire, catchup, overlap, jitter };
                org_schedules::update(conn, &row, changes).map_err(ApiError::from)
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(ScheduleView::from(row)))
}

#[utoipa::path(
    delete,
    path = "/v1/schedules/{id}",
    tag = "schedules",
    operation_id = "delete_schedule",
    description = "Needs the admin role. The schedule goes with its runs; the exports it made stay. A \
        system schedule answers 409 `read_only`.",
    params(("id" = Uuid, Path, description = "The schedule's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, response = problems::Forbidden),
        (status = 404, response = problems::NotFound),
        (status = 409, response = problems::ReadOnly),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug, schedule = %id), err(level = "info"))]
pub(crate) async fn delete(
    caller: Caller,
    database: web::Data<Database>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    let (org, id) = (caller.org.id, id.into_inner());
    database
        .run(move |conn| {
            conn.transaction(|conn| {
                find_own(conn, org, id)?;
                org_schedules::delete(conn, org, id).map_err(ApiError::from)
            })
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    post,
    path = "/v1/schedules/{id}/run",
    tag = "schedules",
    operation_id = "run_schedule",
    description = "Needs the admin role. Runs the schedule now, paused or not: its export is made as \
        `POST /v1/exports` would make it, for the caller, and the run is recorded with trigger `manual`. \
        Refused with 429 when the organization already has `EXPORTS_MAX_ACTIVE_PER_ORG` exports queued \
        or running. A system schedule answers 409 `read_only`.",
    params(("id" = Uuid, Path, description = "The schedule's id")),
    responses(
        (status = 202, description = "Accepted: the run, whose export is queued", body = RunView,
            headers(("Location" = String, description = "The export's path"))),
        (status = 403, response = problems::Forbidden),
        (status = 404, response = problems::NotFound),
        (status = 409, response = problems::ReadOnly),
        (status = 429, response = problems::TooManyExports),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug, schedule = %id), err(level = "info"))]
pub(crate) async fn run(
    caller: Caller,
    request: HttpRequest,
    database: web::Data<Database>,
    relay: web::Data<OutboxRelay>,
    settings: web::Data<ExportSettings>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    let correlation_id =
        request.extensions().get::<crate::observability::RequestId>().map(ToString::to_string).unwrap_or_default();
    let (org, user, id) = (caller.org.id, caller.user.id, id.into_inner());
    let max_active = settings.max_active_per_org.get();
    let started = database
        .run(move |conn| {
            conn.transaction(|conn| {
                let row = find_own(conn, org, id)?;
                let Some(spec) = org_schedules::export_of(&row) else {
                    tracing::error!(schedule = %row.id, "an organization's schedule without a readable export");
                    return Err(ApiError::ReadOnly("this schedule makes no export this version can run".to_owned()));
                };
                schedule_exports::run_now(conn, &row, &spec, user, &correlation_id, max_active).map_err(ApiError::from)
            })
        })
        .await?;
    let run = match started {
        RunNow::Started(run) => run,
        RunNow::LimitReached { active } => return Err(ApiError::TooManyExports(active)),
    };
    tracing::info!(run = %run.id, export = ?run.export_id, "schedule run now");
    relay.kick();
    let location = run.export_id.map(|export| format!("/v1/exports/{export}")).unwrap_or_default();
    Ok(HttpResponse::Accepted().insert_header((header::LOCATION, location)).json(RunView::from(run)))
}

#[utoipa::path(
    post,
    path = "/v1/schedules/{id}/pause",
    tag = "schedules",
    operation_id = "pause_schedule",
    description = "Needs the admin role. Its slots no longer fire until it is resumed; a second pause \
        replaces the note. The body is optional. A system schedule answers 409 `read_only`.",
    params(("id" = Uuid, Path, description = "The schedule's id")),
    request_body(content = Option<PauseSchedule>, content_type = "application/json"),
    responses(
        (status = 200, description = "The paused schedule", body = ScheduleView),
        (status = 400, response = problems::BadRequest),
        (status = 403, response = problems::Forbidden),
        (status = 404, response = problems::NotFound),
        (status = 409, response = problems::ReadOnly),
        (status = 413, response = problems::PayloadTooLarge),
        (status = 422, response = problems::ValidationFailed),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug, schedule = %id), err(level = "info"))]
pub(crate) async fn pause(
    caller: Caller,
    request: HttpRequest,
    database: web::Data<Database>,
    id: web::Path<Uuid>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    let body = pause_body(&request, &body)?;
    let mut fields = Fields::default();
    let note = body.note.and_then(|raw| fields.take(PauseNote::parse(&raw)));
    fields.finish()?;
    let (org, id) = (caller.org.id, id.into_inner());
    let row = database
        .run(move |conn| {
            conn.transaction(|conn| {
                let row = find_own(conn, org, id)?;
                org_schedules::pause(conn, &row, note.as_ref().map(PauseNote::as_str)).map_err(ApiError::from)
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(ScheduleView::from(row)))
}

/// The optional body of a pause: empty, `null`, or JSON read as the app
/// reads any JSON body (`extract.rs`).
fn pause_body(request: &HttpRequest, body: &[u8]) -> Result<PauseSchedule, ApiError> {
    if body.is_empty() {
        return Ok(PauseSchedule { note: None });
    }
    if body.len() > crate::extract::MAX_JSON_BYTES {
        return Err(ApiError::PayloadTooLarge("the JSON body is larger than 64 KiB".to_owned()));
    }
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|essence| essence.trim().to_ascii_lowercase())
        .is_some_and(|essence| essence == "application/json" || essence.ends_with("+json"));
    if !json {
        return Err(ApiError::BadRequest("send Content-Type: application/json".to_owned()));
    }
    // `null`, as the document's optional body allows, is no note.
    let parsed: Option<PauseSchedule> = serde_json::from_slice(body).map_err(|error| {
        if error.is_data() {
            ApiError::invalid("body", error.to_string())
        } else {
            ApiError::BadRequest(format!("the body is not valid JSON: {error}"))
        }
    })?;
    Ok(parsed.unwrap_or(PauseSchedule { note: None }))
}

#[utoipa::path(
    post,
    path = "/v1/schedules/{id}/resume",
    tag = "schedules",
    operation_id = "resume_schedule",
    description = "Needs the admin role. The slots passed while it was paused are left out: its next \
        slot counts from now. Resuming a schedule that is not paused changes nothing. A system schedule \
        answers 409 `read_only`.",
    params(("id" = Uuid, Path, description = "The schedule's id")),
    responses(
        (status = 200, description = "The resumed schedule", body = ScheduleView),
        (status = 403, response = problems::Forbidden),
        (status = 404, response = problems::NotFound),
        (status = 409, response = problems::ReadOnly),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug, schedule = %id), err(level = "info"))]
pub(crate) async fn resume(
    caller: Caller,
    database: web::Data<Database>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    let (org, id) = (caller.org.id, id.into_inner());
    let row = database
        .run(move |conn| {
            conn.transaction(|conn| {
                let row = find_own(conn, org, id)?;
                org_schedules::resume(conn, &row).map_err(ApiError::from)
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(ScheduleView::from(row)))
}

#[utoipa::path(
    get,
    path = "/v1/schedules/{id}/runs",
    tag = "schedules",
    operation_id = "list_schedule_runs",
    description = "Needs the admin role. Every slot the schedule dealt with (fired or skipped) and every \
        manual run, newest first.",
    params(("id" = Uuid, Path, description = "The schedule's id"), PageQuery),
    responses(
        (status = 200, description = "A page of runs, newest first", body = Page<RunView>),
        (status = 400, response = problems::BadRequest),
        (status = 403, response = problems::Forbidden),
        (status = 404, response = problems::NotFound),
        (status = 422, response = problems::ValidationFailed),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug, schedule = %id), err(level = "info"))]
pub(crate) async fn runs(
    caller: Caller,
    database: web::Data<Database>,
    id: web::Path<Uuid>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<Page<RunView>>, ApiError> {
    caller.require(Role::Admin)?;
    let page = PageRequest::parse(query.limit(), query.cursor())?;
    let (org, id, after, fetch) = (caller.org.id, id.into_inner(), page.after, page.fetch());
    let rows = database
        .run(move |conn| {
            let row = find(conn, org, id, false)?;
            let before = after.map(|after| (after.at, after.id));
            schedule_runs::list(conn, row.id, before, fetch).map_err(ApiError::from)
        })
        .await?;
    Ok(web::Json(page.page(rows, |r| After { at: r.fired_at, id: r.id }, RunView::from)))
}

/// The organization's schedule `id` or a system schedule; another
/// organization's answers as one that does not exist.
fn find(conn: &mut diesel::PgConnection, org: Uuid, id: Uuid, lock: bool) -> Result<ScheduleRow, ApiError> {
    org_schedules::find_visible(conn, org, id, lock)?.ok_or(ApiError::NotFound("schedule"))
}

/// As [`find`], locked for a change, which a system schedule refuses.
fn find_own(conn: &mut diesel::PgConnection, org: Uuid, id: Uuid) -> Result<ScheduleRow, ApiError> {
    let row = find(conn, org, id, true)?;
    if row.is_system() {
        return Err(ApiError::ReadOnly(format!(
            "{} is a system schedule: it follows the scheduler's settings, which change it",
            row.name
        )));
    }
    Ok(row)
}
