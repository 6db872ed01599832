//! `GET /v1/attachments/{id}/content`, delivered as `ATTACHMENT_DELIVERY`
//! says: streamed with Range support, handed to nginx with
//! `X-Accel-Redirect`, or redirected to a presigned URL.

use super::{Uploads, find};
use crate::auth::Caller;
use crate::openapi::problems;
use crate::problem::ApiError;
use crate::settings::Delivery;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use std::time::Duration;
use stockflow_db::Database;
use stockflow_storage::{ByteRange, Key, StorageError, content_disposition};
use uuid::Uuid;

#[utoipa::path(
    get,
    path = "/v1/attachments/{id}/content",
    tag = "attachments",
    operation_id = "download_attachment",
    description = "How the bytes come depends on `ATTACHMENT_DELIVERY`: streamed by the api (with \
        `Range` support), handed to nginx with `X-Accel-Redirect`, or a redirect to a presigned URL.",
    params(
        ("id" = Uuid, Path, description = "The attachment's id"),
        ("Range" = Option<String>, Header, description = "One `bytes=` range: `a-b`, `a-` or `-n`; others are ignored"),
    ),
    responses(
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
    let key = Key::parse(&attachment.storage_key).map_err(|error| {
        tracing::error!(%error, "attachment row holds an invalid storage key");
        ApiError::NotFound("attachment")
    })?;
    let disposition = content_disposition(&attachment.filename);
    // Whoever serves the bytes, the browser must save them, not render them.
    let response = |status| {
        let mut builder = HttpResponse::build(status);
        builder
            .insert_header((header::CONTENT_DISPOSITION, disposition.clone()))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((header::CACHE_CONTROL, "private, no-store"));
        builder
    };
    match &uploads.settings.delivery {
        Delivery::XAccel { prefix } => Ok(response(actix_web::http::StatusCode::OK)
            .insert_header(("X-Accel-Redirect", format!("{prefix}{key}")))
            .insert_header((header::CONTENT_TYPE, attachment.content_type))
            .finish()),
        Delivery::Redirect { ttl_secs } => {
            let url = uploads
                .storage
                .presign_get(&key, Duration::from_secs(*ttl_secs), &attachment.filename)
                .await
                .map_err(ApiError::Storage)?
                .ok_or_else(|| ApiError::Storage(StorageError::Unavailable("the store cannot presign".to_owned())))?;
            Ok(response(actix_web::http::StatusCode::FOUND).insert_header((header::LOCATION, url.as_str())).finish())
        }
        Delivery::Stream => {
            let range = match request.headers().get(header::RANGE) {
                None => None,
                Some(value) => parse_range(value.to_str().unwrap_or_default(), attachment.size_bytes),
            };
            let object = match uploads.storage.get(&key, range.flatten()).await {
                Ok(object) => object,
                Err(StorageError::InvalidRange { size }) => {
                    return Ok(response(actix_web::http::StatusCode::RANGE_NOT_SATISFIABLE)
                        .insert_header((header::CONTENT_RANGE, format!("bytes */{size}")))
                        .finish());
                }
                Err(StorageError::NotFound(_)) => {
                    tracing::error!(%key, "a stored attachment's object is missing");
                    return Err(ApiError::NotFound("attachment"));
                }
                Err(error) => return Err(ApiError::Storage(error)),
            };
            let size = object.meta.size;
            let mut builder: HttpResponseBuilder;
            let length = match range.flatten().map(|range| range.resolve(size)) {
                Some(Ok(span)) => {
                    builder = response(actix_web::http::StatusCode::PARTIAL_CONTENT);
                    builder.insert_header((
                        header::CONTENT_RANGE,
                        format!("bytes {}-{}/{size}", span.start(), span.end()),
                    ));
                    span.end() - span.start() + 1
                }
                _ => {
                    builder = response(actix_web::http::StatusCode::OK);
                    size
                }
            };
            Ok(builder
                .insert_header((header::CONTENT_TYPE, attachment.content_type))
                .insert_header((header::ACCEPT_RANGES, "bytes"))
                .no_chunking(length)
                .streaming(object.body))
        }
    }
}

/// One `bytes=` range (`a-b`, `a-` or the suffix `-n`); `Some(None)` for a
/// header we ignore (several ranges, another unit), as HTTP allows.
fn parse_range(raw: &str, size: i64) -> Option<Option<ByteRange>> {
    let spec = raw.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return Some(None);
    }
    let (start, end) = spec.split_once('-')?;
    let size = u64::try_from(size).unwrap_or(0);
    let range = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let suffix: u64 = suffix.parse().ok()?;
            if suffix == 0 {
                // "the last 0 bytes" selects nothing: unsatisfiable.
                return Some(Some(ByteRange::starting_at(size)));
            }
            ByteRange::starting_at(size.saturating_sub(suffix))
        }
        (start, "") => ByteRange::starting_at(start.parse().ok()?),
        (start, end) => ByteRange::inclusive(start.parse().ok()?, end.parse().ok()?),
    };
    Some(Some(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_like_http() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(Some(ByteRange::inclusive(0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Some(Some(ByteRange::starting_at(90))));
        assert_eq!(parse_range("bytes=-10", 100), Some(Some(ByteRange::starting_at(90))));
        assert_eq!(parse_range("bytes=-500", 100), Some(Some(ByteRange::starting_at(0))));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Some(None));
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=x-1", 100), None);
    }
}
