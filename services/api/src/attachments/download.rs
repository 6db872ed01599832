//! `GET /v1/attachments/{id}/content`, delivered as `ATTACHMENT_DELIVERY`
//! says: streamed with Range support, handed to nginx with
//! `X-Accel-Redirect`, or redirected to a presigned URL.

use super::{Uploads, find};
use crate::auth::Caller;
use crate::delivery::{Download, deliver};
use crate::openapi::problems;
use crate::problem::ApiError;
use actix_web::{HttpRequest, HttpResponse, web};
use stockflow_db::Database;
use stockflow_storage::Key;
use uuid::Uuid;

#[utoipa::path(
    get,
    path = "/v1/attachments/{id}/content",
    tag = "attachments",
    operation_id = "download_attachment",
    description = "How the bytes come depends on `ATTACHMENT_DELIVERY`: streamed by the api (with \
        `Range` support), handed to nginx with `X-Accel-Redirect`, or a redirect to a presigned URL. \
        410 `content_missing` when the storage reconciliation found the file gone.",
    params(
        ("id" = Uuid, Path, description = "The attachment's id"),
        ("Range" = Option<String>, Header, description = "One `bytes=` range: `a-b`, `a-` or `-n`; others are ignored"),
    ),
    responses(
        // The content types are those uploads are sniffed as, set by `openapi::DownloadTypes`.
        (status = 200, description = "The whole file, with the attachment's content type",
            content_type = "application/octet-stream", body = inline(crate::openapi::Binary),
            headers(
                ("Content-Disposition" = String, description = "`attachment` with the filename: always saved, never rendered"),
                ("X-Content-Type-Options" = String, description = "`nosniff`"),
                ("Cache-Control" = String, description = "`private, no-store`"),
                ("Accept-Ranges" = String, description = "`bytes` when streamed"),
                ("X-Accel-Redirect" = String, description = "Under nginx delivery only: the internal location nginx serves the body from"),
            )),
        (status = 206, description = "The requested range", content_type = "application/octet-stream",
            body = inline(crate::openapi::Binary),
            headers(
                ("Content-Range" = String, description = "`bytes start-end/size`"),
                ("Content-Disposition" = String),
                ("X-Content-Type-Options" = String),
            )),
        (status = 302, description = "Under redirect delivery: fetch the file from the presigned URL before it expires",
            headers(
                ("Location" = String, description = "A presigned URL of the file store"),
                ("Content-Disposition" = String),
                ("X-Content-Type-Options" = String),
            )),
        (status = 404, response = problems::NotFound),
        (status = 410, response = problems::ContentMissing),
        (status = 416, description = "The range starts past the end of the file; no body",
            headers(("Content-Range" = String, description = "`bytes */size`"))),
        (status = 503, response = problems::ServiceUnavailable),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug, attachment = %id), err(level = "info"))]
pub(crate) async fn content(
    caller: Caller,
    request: HttpRequest,
    database: web::Data<Database>,
    uploads: web::Data<Uploads>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let attachment = find(&caller, &database, id.into_inner()).await?;
    if attachment.state == "missing" {
        return Err(ApiError::ContentMissing("attachment"));
    }
    let key = Key::parse(&attachment.storage_key).map_err(|error| {
        tracing::error!(%error, "attachment row holds an invalid storage key");
        ApiError::NotFound("attachment")
    })?;
    let download = Download {
        key,
        filename: &attachment.filename,
        content_type: &attachment.content_type,
        size: attachment.size_bytes,
        what: "attachment",
    };
    deliver(&request, &*uploads.storage, &uploads.settings.delivery, download).await
}
