//! How malformed input becomes a problem instead of actix's plain-text
//! errors: JSON bodies, query strings and path ids.

use crate::problem::ApiError;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::{HttpRequest, web};

/// Large enough for any record with its `custom_fields`/`metadata`.
pub(crate) const MAX_JSON_BYTES: usize = 64 * 1024;

pub(crate) fn json_config() -> web::JsonConfig {
    web::JsonConfig::default().limit(MAX_JSON_BYTES).error_handler(|error, _: &HttpRequest| {
        let problem = match &error {
            JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
                ApiError::PayloadTooLarge(format!("the JSON body is larger than {} KiB", MAX_JSON_BYTES / 1024))
            }
            JsonPayloadError::ContentType => ApiError::BadRequest("send Content-Type: application/json".to_owned()),
            JsonPayloadError::Deserialize(error) if error.is_data() => ApiError::invalid("body", error.to_string()),
            JsonPayloadError::Deserialize(error) => {
                ApiError::BadRequest(format!("the body is not valid JSON: {error}"))
            }
            other => ApiError::BadRequest(format!("the body could not be read: {other}")),
        };
        problem.into()
    })
}

pub(crate) fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error: QueryPayloadError, _: &HttpRequest| {
        ApiError::BadRequest(format!("invalid query string: {error}")).into()
    })
}

/// A path id that is not a UUID names nothing: 404, as an unknown id would.
pub(crate) fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_: PathError, _: &HttpRequest| ApiError::NotFound("resource").into())
}
