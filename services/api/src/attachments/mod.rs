//! Files attached to batches: `/v1/batches/{id}/attachments` and
//! `/v1/attachments/{id}`. Viewers read and download; members upload and
//! delete.

mod download;
mod upload;

use crate::auth::Caller;
use crate::pagination::{Page, PageRequest};
use crate::problem::ApiError;
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

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    let not_allowed = || web::to(crate::routes::method_not_allowed);
    cfg.service(
        web::resource("/batches/{id}/attachments")
            .route(web::get().to(list))
            .route(web::post().to(upload::upload))
            .default_service(not_allowed()),
    )
    .service(
        web::resource("/attachments/{id}")
            .route(web::get().to(get))
            .route(web::delete().to(delete))
            .default_service(not_allowed()),
    )
    .service(
        web::resource("/attachments/{id}/content")
            .route(web::get().to(download::content))
            .default_service(not_allowed()),
    );
}

#[derive(Debug, Serialize)]
pub(crate) struct AttachmentView {
    id: Uuid,
    batch_id: Uuid,
    /// Sanitized for display; never a path.
    filename: String,
    /// Sniffed from the content, not taken from the client.
    content_type: String,
    size_bytes: i64,
    sha256: Option<String>,
    created_at: DateTime<Utc>,
    content_url: String,
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

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

#[tracing::instrument(skip_all, fields(org = %caller.org.slug, batch = %batch), err(level = "info"))]
async fn list(
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

#[tracing::instrument(skip_all, fields(org = %caller.org.slug, attachment = %id), err(level = "info"))]
async fn get(caller: Caller, database: web::Data<Database>, id: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let attachment = find(&caller, &database, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(AttachmentView::from(attachment)))
}

/// The row goes first; the object after the delete commits, so a failure in
/// between leaves an orphan object for the sweep, never a row whose object
/// is gone.
#[tracing::instrument(skip_all, fields(org = %caller.org.slug, attachment = %id), err(level = "info"))]
async fn delete(
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
