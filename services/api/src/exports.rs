//! `/v1/exports`: reports of batches or products, written by the worker.
//! A request stores the export and its job in one transaction and answers
//! 202 at once, broker or not; the outbox relay publishes the job.

use crate::attachments::Uploads;
use crate::auth::Caller;
use crate::batches::RawFilters;
use crate::delivery::{Download, deliver};
use crate::openapi::problems;
use crate::pagination::{Page, PageQuery, PageRequest};
use crate::problem::ApiError;
use crate::routes::Endpoint;
use crate::validation::Fields;
use actix_web::http::header;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::num::NonZeroU32;
use stockflow_config::{ConfigError, Env};
use stockflow_db::Database;
use stockflow_db::exports::{self, Created, ExportFailure, ExportRow, NewExport};
use stockflow_db::page::After;
use stockflow_domain::{ExportFilters, ExportFormat, ExportKind, ExportStatus, Role};
use stockflow_runtime::OutboxRelay;
use stockflow_storage::Key;
use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};
use uuid::Uuid;

pub(crate) const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
const MAX_IDEMPOTENCY_KEY: usize = 255;

pub(crate) fn endpoints() -> [Endpoint; 3] {
    [
        Endpoint::new("/v1/exports").get(list).post(create),
        Endpoint::new("/v1/exports/{id}").get(get),
        Endpoint::new("/v1/exports/{id}/content").get(content),
    ]
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Export)]
pub(crate) struct ExportView {
    pub(crate) id: Uuid,
    /// `batches` or `products`.
    #[schema(value_type = String, example = "batches")]
    pub(crate) kind: ExportKind,
    /// `csv` or `jsonl`.
    #[schema(value_type = String, example = "csv")]
    pub(crate) format: ExportFormat,
    /// The filters as given, after validation.
    #[schema(value_type = Object, example = json!({"status": "completed"}))]
    pub(crate) filters: Value,
    /// `queued` -> `running` -> `succeeded` or `failed`; `expired` once
    /// `expires_at` has passed (`EXPORT_RETENTION_DAYS`), whether or not the
    /// file was removed yet; `missing` when the storage reconciliation found
    /// the file of a succeeded export gone.
    #[schema(value_type = String, example = "queued")]
    pub(crate) status: ExportStatus,
    /// Runs started, retries included.
    pub(crate) attempts: i32,
    /// Data rows in the file (CSV: not counting the header).
    pub(crate) row_count: Option<i64>,
    pub(crate) size_bytes: Option<i64>,
    /// Hex digest of the file.
    pub(crate) sha256: Option<String>,
    /// Why the export failed, when it did: `storage_error` (the file store
    /// failed on every attempt), `database_error` (the database did),
    /// `invalid_export` (the request cannot be run) or `internal_error`.
    /// The details stay in the worker's logs.
    #[schema(schema_with = export_failure)]
    pub(crate) error: Option<&'static str>,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub(crate) created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::rfc3339::optional")]
    pub(crate) started_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::rfc3339::optional")]
    pub(crate) finished_at: Option<DateTime<Utc>>,
    /// When the file will be removed.
    #[serde(serialize_with = "crate::rfc3339::optional")]
    pub(crate) expires_at: Option<DateTime<Utc>>,
    /// Where `GET` downloads the file once `status` is `succeeded`.
    #[schema(example = "/v1/exports/0b0c6a46-6f43-4a36-9a0e-6b0f0d4b1c2e/content")]
    pub(crate) content_url: String,
}

impl From<ExportRow> for ExportView {
    fn from(row: ExportRow) -> Self {
        Self {
            content_url: format!("/v1/exports/{}/content", row.id),
            kind: ExportKind::parse(&row.kind).unwrap_or(ExportKind::Batches),
            format: ExportFormat::parse(&row.format).unwrap_or(ExportFormat::Csv),
            status: row.status(),
            error: row.failure().map(ExportFailure::as_str),
            sha256: row.sha256.map(|digest| digest.iter().map(|b| format!("{b:02x}")).collect()),
            id: row.id,
            filters: row.filters,
            attempts: row.attempts,
            row_count: row.row_count,
            size_bytes: row.size_bytes,
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            expires_at: row.expires_at,
        }
    }
}

/// `error`: one of the closed set of failures, or null.
fn export_failure() -> Object {
    let values = ExportFailure::ALL.iter().map(|failure| Value::from(failure.as_str())).chain([Value::Null]);
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .enum_values(Some(values))
        .examples([json!("storage_error")])
        .build()
}

/// How many exports an organization may have queued or running at once.
#[derive(Debug, Clone, Copy)]
pub struct ExportSettings {
    /// `EXPORTS_MAX_ACTIVE_PER_ORG`.
    pub max_active_per_org: NonZeroU32,
}

impl ExportSettings {
    pub const DEFAULT_MAX_ACTIVE_PER_ORG: u32 = 10;

    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let default = NonZeroU32::new(Self::DEFAULT_MAX_ACTIVE_PER_ORG).unwrap_or(NonZeroU32::MIN);
        Ok(Self { max_active_per_org: env.or("EXPORTS_MAX_ACTIVE_PER_ORG", default)? })
    }
}

/// Unknown fields are rejected (422).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateExport {
    /// `batches` or `products`.
    #[schema(example = "batches")]
    pub(crate) kind: String,
    /// `csv` (with a header row) or `jsonl` (one JSON object per line).
    #[schema(example = "csv")]
    pub(crate) format: String,
    /// The filters of the matching list endpoint. Batches: `product_id`,
    /// `status`, `produced_from` (inclusive), `produced_to` (exclusive).
    /// Products: `sku_prefix`, `q`.
    #[schema(value_type = Option<Object>, example = json!({"status": "completed", "produced_from": "2026-11-01T00:00:00Z"}))]
    pub(crate) filters: Option<Value>,
}

#[utoipa::path(
    post,
    path = "/v1/exports",
    tag = "exports",
    operation_id = "create_export",
    description = "Needs the member role. The export runs in the background: poll its `Location` until \
        `status` is `succeeded`, then download `content_url`. With an `Idempotency-Key`, a repeat of the \
        same request returns the export the first one made instead of a new one. An organization may have \
        `EXPORTS_MAX_ACTIVE_PER_ORG` exports (10 by default) queued or running at once; beyond that the \
        request is refused with 429 until one finishes.",
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters, \
        spaces allowed inside, unique per request you mean to make once", pattern = r"^[ \t]*[!-~]([ -~]{0,253}[!-~])?[ \t]*$")),
    request_body = crate::openapi::ExportRequest,
    responses(
        (status = 202, description = "Accepted: the export, queued (or as it is now, for a repeated key)",
            body = ExportView,
            headers(("Location" = String, description = "The export's path"))),
        (status = 400, response = problems::BadRequest),
        (status = 403, response = problems::Forbidden),
        (status = 409, response = problems::IdempotencyKeyReused),
        (status = 413, response = problems::PayloadTooLarge),
        (status = 422, response = problems::ValidationFailed),
        (status = 429, response = problems::TooManyExports),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug), err(level = "info"))]
pub(crate) async fn create(
    caller: Caller,
    request: HttpRequest,
    database: web::Data<Database>,
    relay: web::Data<OutboxRelay>,
    settings: web::Data<ExportSettings>,
    body: web::Json<CreateExport>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Member)?;
    let idempotency_key = idempotency_key(&request)?;
    let correlation_id =
        request.extensions().get::<crate::observability::RequestId>().map(ToString::to_string).unwrap_or_default();
    let export =
        request_export(&caller, &database, &relay, &settings, &correlation_id, idempotency_key, body.into_inner())
            .await?;
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/v1/exports/{}", export.id)))
        .json(ExportView::from(export)))
}

/// `POST /v1/exports` and GraphQL's `requestExport`, once the
/// idempotency key is known to be well-formed.
pub(crate) async fn request_export(
    caller: &Caller,
    database: &Database,
    relay: &OutboxRelay,
    settings: &ExportSettings,
    correlation_id: &str,
    idempotency_key: Option<String>,
    body: CreateExport,
) -> Result<ExportRow, ApiError> {
    caller.require(Role::Member)?;
    let mut fields = Fields::default();
    let kind = fields.take(ExportKind::parse(&body.kind));
    let format = fields.take(ExportFormat::parse(&body.format));
    let filters = kind.and_then(|kind| parse_filters(&mut fields, kind, body.filters.unwrap_or(Value::Null)));
    fields.finish()?;
    let (Some(format), Some(filters)) = (format, filters) else {
        return Err(ApiError::invalid("body", "invalid export request"));
    };
    let correlation_id = correlation_id.to_owned();
    let (org, user) = (caller.org.id, caller.user.id);
    let max_active = settings.max_active_per_org.get();
    let created = {
        let (filters, idempotency_key) = (filters.clone(), idempotency_key.clone());
        database
            .run(move |conn| {
                let new = NewExport {
                    requested_by: user,
                    format,
                    filters: &filters,
                    idempotency_key: idempotency_key.as_deref(),
                    correlation_id: &correlation_id,
                };
                exports::create(conn, org, &new, max_active).map_err(ApiError::from)
            })
            .await?
    };
    let export = match created {
        Created::New { export, job } => {
            tracing::info!(export = %export.id, %job, "export queued");
            relay.kick();
            export
        }
        Created::Existing(export) => {
            let same = export.kind == filters.kind().as_str()
                && export.format == format.as_str()
                && export.filters == filters.to_json();
            if !same {
                return Err(ApiError::IdempotencyKeyReused);
            }
            export
        }
        Created::LimitReached { active } => return Err(ApiError::TooManyExports(active)),
    };
    Ok(export)
}

fn idempotency_key(request: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = request.headers().get(IDEMPOTENCY_KEY) else { return Ok(None) };
    let key = value.to_str().unwrap_or_default();
    if !well_formed_idempotency_key(key) {
        return Err(ApiError::BadRequest(format!("{IDEMPOTENCY_KEY} must be {IDEMPOTENCY_KEY_RULE}")));
    }
    Ok(Some(key.to_owned()))
}

pub(crate) const IDEMPOTENCY_KEY_RULE: &str = "1 to 255 visible ASCII characters";

pub(crate) fn well_formed_idempotency_key(key: &str) -> bool {
    let visible = |c: char| c.is_ascii_graphic() || c == ' ';
    !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY && key.chars().all(visible)
}

/// The filters of `kind`'s list endpoint, checked by the same code as
/// there; an unknown filter is an error, not silently ignored.
pub(crate) fn parse_filters(fields: &mut Fields, kind: ExportKind, raw: Value) -> Option<ExportFilters> {
    const PREFIX: &str = "filters.";
    let object = match raw {
        Value::Null => serde_json::Map::new(),
        Value::Object(object) => object,
        _ => {
            fields.push("filters", "an object of filters");
            return None;
        }
    };
    let known: &[&str] = match kind {
        ExportKind::Batches => &["product_id", "status", "produced_from", "produced_to"],
        ExportKind::Products => &["sku_prefix", "q"],
    };
    let before = fields.len();
    for (name, value) in &object {
        if !known.contains(&name.as_str()) {
            fields.push(&format!("{PREFIX}{name}"), format!("unknown filter for {}", kind.as_str()));
        } else if !value.is_string() {
            fields.push(&format!("{PREFIX}{name}"), "a string");
        }
    }
    let text = |name: &str| object.get(name).and_then(Value::as_str);
    let filters = match kind {
        ExportKind::Batches => {
            let raw = RawFilters {
                product_id: text("product_id"),
                status: text("status"),
                produced_from: text("produced_from"),
                produced_to: text("produced_to"),
            };
            ExportFilters::Batches(crate::batches::parse_filters(fields, PREFIX, &raw))
        }
        ExportKind::Products => {
            ExportFilters::Products(crate::products::parse_filters(fields, PREFIX, text("sku_prefix"), text("q")))
        }
    };
    (fields.len() == before).then_some(filters)
}

#[utoipa::path(
    get,
    path = "/v1/exports",
    tag = "exports",
    operation_id = "list_exports",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of the organization's exports, newest first", body = Page<ExportView>),
        (status = 400, response = problems::BadRequest),
        (status = 422, response = problems::ValidationFailed),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug), err(level = "info"))]
pub(crate) async fn list(
    caller: Caller,
    database: web::Data<Database>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<Page<ExportView>>, ApiError> {
    let page = PageRequest::parse(query.limit(), query.cursor())?;
    let (org, after, fetch) = (caller.org.id, page.after, page.fetch());
    let rows =
        database.run(move |conn| exports::list(conn, org, after.as_ref(), fetch).map_err(ApiError::from)).await?;
    Ok(web::Json(page.page(rows, |e| After { at: e.created_at, id: e.id }, ExportView::from)))
}

#[utoipa::path(
    get,
    path = "/v1/exports/{id}",
    tag = "exports",
    operation_id = "get_export",
    params(("id" = Uuid, Path, description = "The export's id")),
    responses(
        (status = 200, description = "The export and how far it got", body = ExportView),
        (status = 404, response = problems::NotFound),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug, export = %id), err(level = "info"))]
pub(crate) async fn get(
    caller: Caller,
    database: web::Data<Database>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let export = find(&caller, &database, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(ExportView::from(export)))
}

#[utoipa::path(
    get,
    path = "/v1/exports/{id}/content",
    tag = "exports",
    operation_id = "download_export",
    description = "The file of a succeeded export, delivered as attachments are (`ATTACHMENT_DELIVERY`). \
        410 `expired` as soon as `expires_at` has passed; 410 `content_missing` when the file was found gone.",
    params(
        ("id" = Uuid, Path, description = "The export's id"),
        ("Range" = Option<String>, Header, description = "One `bytes=` range, when streamed"),
    ),
    responses(
        (status = 200, description = "The file: CSV with a header row, or JSON lines",
            content_type = "application/octet-stream", body = inline(crate::openapi::Binary),
            headers(
                ("Content-Disposition" = String, description = "`attachment` with a filename such as `batches-2026-11-23-0b0c6a46.csv`"),
                ("X-Content-Type-Options" = String, description = "`nosniff`"),
                ("X-Accel-Redirect" = String, description = "Under nginx delivery only"),
            )),
        (status = 206, description = "The requested range", content_type = "application/octet-stream",
            body = inline(crate::openapi::Binary),
            headers(("Content-Range" = String, description = "`bytes start-end/size`"))),
        (status = 302, description = "Under redirect delivery: the presigned URL of the file",
            headers(("Location" = String, description = "A presigned URL of the file store"))),
        (status = 404, response = problems::NotFound),
        (status = 409, response = problems::NotReady),
        (status = 410, response = problems::Expired),
        (status = 416, description = "The range starts past the end of the file; no body",
            headers(("Content-Range" = String, description = "`bytes */size`"))),
        (status = 503, response = problems::ServiceUnavailable),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug, export = %id), err(level = "info"))]
pub(crate) async fn content(
    caller: Caller,
    request: HttpRequest,
    database: web::Data<Database>,
    uploads: web::Data<Uploads>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let export = find(&caller, &database, id.into_inner()).await?;
    match export.status() {
        ExportStatus::Succeeded => {}
        ExportStatus::Expired => return Err(ApiError::Gone("the export's file has expired".to_owned())),
        ExportStatus::Missing => return Err(ApiError::ContentMissing("export")),
        status => return Err(ApiError::NotReady(format!("the export is {}", status.as_str()))),
    }
    let key = export.storage_key.as_deref().and_then(|key| Key::parse(key).ok()).ok_or_else(|| {
        tracing::error!(export = %export.id, "succeeded export without a valid storage key");
        ApiError::NotFound("export")
    })?;
    let format = ExportFormat::parse(&export.format).unwrap_or(ExportFormat::Csv);
    let filename = format!(
        "{}-{}-{}.{}",
        export.kind,
        export.created_at.format("%Y-%m-%d"),
        &export.id.simple().to_string()[..8],
        format.extension()
    );
    let download = Download {
        key,
        filename: &filename,
        content_type: format.content_type(),
        size: export.size_bytes.unwrap_or_default(),
        what: "export",
    };
    deliver(&request, &*uploads.storage, &uploads.settings.delivery, download).await
}

async fn find(caller: &Caller, database: &Database, id: Uuid) -> Result<ExportRow, ApiError> {
    let org = caller.org.id;
    database
        .run(move |conn| exports::find(conn, org, id).map_err(ApiError::from))
        .await?
        .ok_or(ApiError::NotFound("export"))
}
