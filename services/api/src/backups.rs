//! `/v1/backups`: the installation's backup runs, for operators. Backups
//! are no organization's, so only a token issued by the CLI with
//! `--operator` sees them; to any other token these paths do not exist
//! (404, as a row of another organization). Starting a run or a verify
//! writes its job to the outbox and answers 202: the backup service takes
//! one run at a time, and records a request that finds one running.

use crate::auth::Caller;
use crate::openapi::problems;
use crate::pagination::{Page, PageRequest};
use crate::problem::ApiError;
use crate::routes::Endpoint;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use stockflow_db::Database;
use stockflow_db::backup_runs::{self, BackupRun};
use stockflow_db::outbox;
use stockflow_db::page::After;
use stockflow_domain::{BackupDatabase, BackupRunRef, BackupTrigger, BackupVerify, Envelope, Job};
use stockflow_runtime::OutboxRelay;
use uuid::Uuid;

pub(crate) fn endpoints() -> [Endpoint; 3] {
    [
        Endpoint::new("/v1/backups").get(list).post(start),
        Endpoint::new("/v1/backups/{id}").get(get),
        Endpoint::new("/v1/backups/{id}/verify").post(verify),
    ]
}

/// The database dump of a run.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DatabaseArtifactView {
    /// Its key in backup storage.
    key: String,
    bytes: i64,
    /// Lowercase hex.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    sha256: String,
    /// Every table's exact row count in the dump's snapshot.
    #[schema(value_type = Object)]
    table_counts: Value,
}

/// The media of a run: the manifest naming every object, and what the run
/// copied (objects already in backup storage are not copied again).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct MediaArtifactView {
    manifest_key: String,
    objects: i64,
    bytes: i64,
    new_bytes: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Backup)]
pub(crate) struct BackupView {
    id: Uuid,
    /// `scheduled` or `manual`.
    #[schema(example = "scheduled")]
    trigger: String,
    /// `running`, then `succeeded` or `failed`; a verify that fails marks
    /// a succeeded run `failed`.
    #[schema(example = "succeeded")]
    status: String,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    started_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::rfc3339::optional")]
    finished_at: Option<DateTime<Utc>>,
    database: Option<DatabaseArtifactView>,
    media: Option<MediaArtifactView>,
    /// When the run was last proved restorable.
    #[serde(serialize_with = "crate::rfc3339::optional")]
    verified_at: Option<DateTime<Utc>>,
    /// `restore` (restored into a scratch database, row counts compared,
    /// every media object re-read) or `checksum`.
    verify_method: Option<String>,
    /// Why the run failed.
    error: Option<String>,
}

impl From<BackupRun> for BackupView {
    fn from(run: BackupRun) -> Self {
        let database = match (run.db_key, run.db_bytes, run.db_sha256, run.table_counts) {
            (Some(key), Some(bytes), Some(sha256), Some(table_counts)) => Some(DatabaseArtifactView {
                key,
                bytes,
                sha256: sha256.iter().map(|byte| format!("{byte:02x}")).collect(),
                table_counts,
            }),
            _ => None,
        };
        let media = match (run.media_manifest_key, run.media_objects, run.media_bytes, run.media_new_bytes) {
            (Some(manifest_key), Some(objects), Some(bytes), Some(new_bytes)) => {
                Some(MediaArtifactView { manifest_key, objects, bytes, new_bytes })
            }
            _ => None,
        };
        Self {
            id: run.id,
            trigger: run.trigger,
            status: run.status,
            started_at: run.started_at,
            finished_at: run.finished_at,
            database,
            media,
            verified_at: run.verified_at,
            verify_method: run.verify_method,
            error: run.error,
        }
    }
}

/// What a start or verify request queued.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct QueuedJob {
    /// The job's id, which the backup service logs.
    job_id: Uuid,
    /// `backup.database` or `backup.verify`.
    #[schema(example = "backup.database")]
    job: &'static str,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Items per page, 1 to 200; 50 when left out.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(schema_with = crate::pagination::cursor_schema)]
    cursor: Option<String>,
}

/// Backups are the operator's: any other token finds nothing here.
fn require_operator(caller: &Caller) -> Result<(), ApiError> {
    if caller.token.operator { Ok(()) } else { Err(ApiError::NotFound("resource")) }
}

#[utoipa::path(
    get,
    path = "/v1/backups",
    tag = "backups",
    operation_id = "list_backups",
    description = "Needs an operator token (`stockflow-api token create --operator`); any other token gets 404.",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of the installation's backup runs, newest first", body = Page<BackupView>),
        (status = 400, response = problems::BadRequest),
        (status = 404, response = problems::NotFound),
        (status = 422, response = problems::ValidationFailed),
    ),
)]
#[tracing::instrument(skip_all, fields(token = %caller.token.id), err(level = "info"))]
pub(crate) async fn list(
    caller: Caller,
    database: web::Data<Database>,
    query: web::Query<ListQuery>,
) -> Result<web::Json<Page<BackupView>>, ApiError> {
    require_operator(&caller)?;
    let page = PageRequest::parse(query.limit.as_deref(), query.cursor.as_deref())?;
    let (after, fetch) = (page.after, page.fetch());
    let rows = database.run(move |conn| backup_runs::page(conn, after.as_ref(), fetch).map_err(ApiError::from)).await?;
    Ok(web::Json(page.page(rows, |run| After { at: run.started_at, id: run.id }, BackupView::from)))
}

#[utoipa::path(
    get,
    path = "/v1/backups/{id}",
    tag = "backups",
    operation_id = "get_backup",
    description = "Needs an operator token; any other token gets 404.",
    params(("id" = Uuid, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run: its artifacts, counts and verify result", body = BackupView),
        (status = 404, response = problems::NotFound),
    ),
)]
#[tracing::instrument(skip_all, fields(token = %caller.token.id, run = %id), err(level = "info"))]
pub(crate) async fn get(
    caller: Caller,
    database: web::Data<Database>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    require_operator(&caller)?;
    let run = find(&database, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(BackupView::from(run)))
}

async fn find(database: &Database, id: Uuid) -> Result<BackupRun, ApiError> {
    database
        .run(move |conn| backup_runs::get(conn, id).map_err(ApiError::from))
        .await?
        .ok_or(ApiError::NotFound("backup run"))
}

#[utoipa::path(
    post,
    path = "/v1/backups",
    tag = "backups",
    operation_id = "start_backup",
    description = "Needs an operator token; any other token gets 404. Queues a whole run (database, media, \
        then verify) for the backup service. One run at a time: a request that finds a run in progress is \
        recorded as a failed run naming it.",
    responses(
        (status = 202, description = "Queued", body = QueuedJob),
        (status = 404, response = problems::NotFound),
    ),
)]
#[tracing::instrument(skip_all, fields(token = %caller.token.id), err(level = "info"))]
pub(crate) async fn start(
    caller: Caller,
    request: HttpRequest,
    database: web::Data<Database>,
    relay: web::Data<OutboxRelay>,
) -> Result<HttpResponse, ApiError> {
    require_operator(&caller)?;
    let envelope = Envelope::new(BackupDatabase { trigger: BackupTrigger::Manual }, correlation(&request));
    queue(&database, &relay, envelope).await
}

#[utoipa::path(
    post,
    path = "/v1/backups/{id}/verify",
    tag = "backups",
    operation_id = "verify_backup",
    description = "Needs an operator token; any other token gets 404. Queues a verify of a succeeded run: \
        its dump restored into a scratch database and every table's row count compared with the snapshot's, \
        every media object re-read and its sha256 checked. A verify that fails marks the run failed and \
        sends an alert.",
    params(("id" = Uuid, Path, description = "The run's id")),
    responses(
        (status = 202, description = "Queued", body = QueuedJob),
        (status = 404, response = problems::NotFound),
        (status = 409, response = problems::NotReady),
    ),
)]
#[tracing::instrument(skip_all, fields(token = %caller.token.id, run = %id), err(level = "info"))]
pub(crate) async fn verify(
    caller: Caller,
    request: HttpRequest,
    database: web::Data<Database>,
    relay: web::Data<OutboxRelay>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    require_operator(&caller)?;
    let run = find(&database, id.into_inner()).await?;
    if run.status != backup_runs::SUCCEEDED {
        return Err(ApiError::NotReady(format!("only a succeeded run can be verified; this one is {}", run.status)));
    }
    let envelope = Envelope::new(BackupVerify { run: BackupRunRef::Id(run.id) }, correlation(&request));
    queue(&database, &relay, envelope).await
}

fn correlation(request: &HttpRequest) -> String {
    request.extensions().get::<crate::observability::RequestId>().map(ToString::to_string).unwrap_or_default()
}

async fn queue<P: Job + Send + 'static>(
    database: &Database,
    relay: &OutboxRelay,
    envelope: Envelope<P>,
) -> Result<HttpResponse, ApiError> {
    let job_id = envelope.id;
    database.run(move |conn| outbox::insert(conn, &envelope).map_err(ApiError::from)).await?;
    tracing::info!(job = %job_id, kind = P::TYPE, "backup job queued");
    relay.kick();
    Ok(HttpResponse::Accepted().json(QueuedJob { job_id, job: P::TYPE }))
}
