//! How a stored file reaches the client, as `ATTACHMENT_DELIVERY` says:
//! streamed with Range support, handed to nginx with `X-Accel-Redirect`, or
//! redirected to a presigned URL. Attachments and exports share it.

use crate::problem::ApiError;
use crate::settings::Delivery;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use std::time::Duration;
use stockflow_storage::{ByteRange, Key, Storage, StorageError, content_disposition};

/// The file to hand out.
pub(crate) struct Download<'a> {
    pub(crate) key: Key,
    /// Offered to the browser to save as; never a path.
    pub(crate) filename: &'a str,
    pub(crate) content_type: &'a str,
    pub(crate) size: i64,
    /// What a missing object is reported as (`no such <what>`).
    pub(crate) what: &'static str,
}

pub(crate) async fn deliver(
    request: &HttpRequest,
    storage: &dyn Storage,
    delivery: &Delivery,
    download: Download<'_>,
) -> Result<HttpResponse, ApiError> {
    let key = &download.key;
    let disposition = content_disposition(download.filename);
    // Whoever serves the bytes, the browser must save them, not render them.
    let response = |status| {
        let mut builder = HttpResponse::build(status);
        builder
            .insert_header((header::CONTENT_DISPOSITION, disposition.clone()))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((header::CACHE_CONTROL, "private, no-store"));
        builder
    };
    match delivery {
        Delivery::XAccel { prefix } => Ok(response(actix_web::http::StatusCode::OK)
            .insert_header(("X-Accel-Redirect", format!("{prefix}{key}")))
            .insert_header((header::CONTENT_TYPE, download.content_type))
            .finish()),
        Delivery::Redirect { ttl_secs } => {
            let url = storage
                .presign_get(key, Duration::from_secs(*ttl_secs), download.filename)
                .await
                .map_err(ApiError::Storage)?
                .ok_or_else(|| ApiError::Storage(StorageError::Unavailable("the store cannot presign".to_owned())))?;
            Ok(response(actix_web::http::StatusCode::FOUND).insert_header((header::LOCATION, url.as_str())).finish())
        }
        Delivery::Stream => {
            let range = match request.headers().get(header::RANGE) {
                None => None,
                Some(value) => parse_range(value.to_str().unwrap_or_default(), download.size),
            };
            let object = match storage.get(key, range.flatten()).await {
                Ok(object) => object,
                Err(StorageError::InvalidRange { size }) => {
                    return Ok(response(actix_web::http::StatusCode::RANGE_NOT_SATISFIABLE)
                        .insert_header((header::CONTENT_RANGE, format!("bytes */{size}")))
                        .finish());
                }
                Err(StorageError::NotFound(_)) => {
                    tracing::error!(%key, "a finished file's object is missing");
                    return Err(ApiError::NotFound(download.what));
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
                .insert_header((header::CONTENT_TYPE, download.content_type))
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
