//! Files attached to batches: `/v1/batches/{id}/attachments` and
//! `/v1/attachments/{id}`. Viewers read and download; members upload and
//! delete.

pub(crate) mod download;
pub(crate) mod upload;

use crate::auth::Caller;
use crate::openapi::problems;
use crate::pagination::{Page, PageRequest};
use crate::problem::ApiError;
use crate::routes::Endpoint;
use crate::settings::UploadSettings;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use stockflow_db::attachments::{self, Attachment};
use stockflow_db::page::After;
use stockflow_db::{Database, batches};
use stockflow_domain::Role;
use stockflow_storage::{Key, Storage};
use uuid::Uuid;

/// What the attachment routes need besides the database.
pub(crate) struct Uploads {
    pub(crate) settings: UploadSettings,
    pub(crate) storage: Arc<dyn Storage>,
}

pub(crate) fn endpoints() -> [Endpoint; 3] {
    [
        Endpoint::new("/v1/batches/{id}/attachments").get(list).post(upload::upload),
        Endpoint::new("/v1/attachments/{id}").get(get).delete(delete),
        Endpoint::new("/v1/attachments/{id}/content").get(download::content),
    ]
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Attachment)]
pub(crate) struct AttachmentView {
    pub(crate) id: Uuid,
    pub(crate) batch_id: Uuid,
    /// Sanitized for display; never a path.
    #[schema(example = "scan.png")]
    pub(crate) filename: String,
    /// Sniffed from the content, not taken from the client.
    #[schema(example = "image/png")]
    pub(crate) content_type: String,
    pub(crate) size_bytes: i64,
    /// Hex digest of the content.
    pub(crate) sha256: Option<String>,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub(crate) created_at: DateTime<Utc>,
    /// Where `GET` downloads the file.
    #[schema(example = "/v1/attachments/0b0c6a46-6f43-4a36-9a0e-6b0f0d4b1c2e/content")]
    pub(crate) content_url: String,
}

impl From<Attachment> for AttachmentView {
    fn from(a: Attachment) -> Self {
        Self {
            content_url: format!("/v1/attachments/{}/content", a.id),
            sha256: a.sha256.map(|digest| digest.iter().map(|b| format!("{b:02x}")).collect()),
            id: a.id,
            batch_id: a.batch_id,
            filename: a.filename,
            content_type: a.content_type,
            size_bytes: a.size_bytes,
            created_at: a.created_at,
        }
    }
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

#[utoipa::path(
    get,
    path = "/v1/batches/{id}/attachments",
    tag = "attachments",
    operation_id = "list_attachments",
    params(("id" = Uuid, Path, description = "The batch's id"), ListQuery),
    responses(
        (status = 200, description = "A page of the batch's attachments, newest first", body = Page<AttachmentView>),
        (status = 400, response = problems::BadRequest),
        (status = 404, response = problems::NotFound),
        (status = 422, response = problems::ValidationFailed),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug, batch = %batch), err(level = "info"))]
pub(crate) async fn list(
    caller: Caller,
    database: web::Data<Database>,
    batch: web::Path<Uuid>,
    query: web::Query<ListQuery>,
) -> Result<web::Json<Page<AttachmentView>>, ApiError> {
    let page = PageRequest::parse(query.limit.as_deref(), query.cursor.as_deref())?;
    let (org, batch, after, fetch) = (caller.org.id, batch.into_inner(), page.after, page.fetch());
    let rows = database
        .run(move |conn| {
            {
                if batches::find(conn, org, batch)?.is_none() {
                    return Ok(None);
                }
                attachments::list_for_batch(conn, org, batch, after.as_ref(), fetch).map(Some)
            }
            .map_err(ApiError::from)
        })
        .await?
        .ok_or(ApiError::NotFound("batch"))?;
    Ok(web::Json(page.page(rows, |a| After { at: a.created_at, id: a.id }, AttachmentView::from)))
}

#[utoipa::path(
    get,
    path = "/v1/attachments/{id}",
    tag = "attachments",
    operation_id = "get_attachment",
    params(("id" = Uuid, Path, description = "The attachment's id")),
    responses(
        (status = 200, description = "The attachment's record", body = AttachmentView),
        (status = 404, response = problems::NotFound),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug, attachment = %id), err(level = "info"))]
pub(crate) async fn get(
    caller: Caller,
    database: web::Data<Database>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let attachment = find(&caller, &database, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(AttachmentView::from(attachment)))
}

/// The row goes first; the object after the delete commits, so a failure in
/// between leaves an orphan object for the sweep, never a row whose object
/// is gone.
#[utoipa::path(
    delete,
    path = "/v1/attachments/{id}",
    tag = "attachments",
    operation_id = "delete_attachment",
    description = "Needs the member role. The file is removed after the record.",
    params(("id" = Uuid, Path, description = "The attachment's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, response = problems::Forbidden),
        (status = 404, response = problems::NotFound),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug, attachment = %id), err(level = "info"))]
pub(crate) async fn delete(
    caller: Caller,
    database: web::Data<Database>,
    uploads: web::Data<Uploads>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Member)?;
    let (org, id) = (caller.org.id, id.into_inner());
    let key = database.run(move |conn| attachments::delete(conn, org, id).map_err(ApiError::from)).await?;
    let key = key.ok_or(ApiError::NotFound("attachment"))?;
    match Key::parse(&key) {
        Ok(key) => {
            if let Err(error) = uploads.storage.delete(&key).await {
                tracing::warn!(%key, %error, "attachment row deleted but its object remains; the sweep will remove it");
            }
        }
        Err(error) => tracing::error!(%error, "attachment row held an invalid storage key"),
    }
    Ok(HttpResponse::NoContent().finish())
}

async fn find(caller: &Caller, database: &Database, id: Uuid) -> Result<Attachment, ApiError> {
    let org = caller.org.id;
    database
        .run(move |conn| attachments::find(conn, org, id).map_err(ApiError::from))
        .await?
        .ok_or(ApiError::NotFound("attachment"))
}
