//! The API's errors, as `application/problem+json` (RFC 9457) with a stable
//! `code` that clients can match on.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use stockflow_db::page::WriteError;
use stockflow_domain::Role;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("this needs the {0} role or higher")]
    Forbidden(Role),
    /// Also what a row of another organization answers, so ids leak nothing.
    #[error("no such {0}")]
    NotFound(&'static str),
    /// The body parsed but its values are wrong; one entry per field.
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    #[error("{field} is already taken")]
    Conflict { field: &'static str },
    /// A reference in the body to a record the organization does not have.
    #[error("{field} refers to no record of this organization")]
    MissingReference { field: &'static str },
    #[error("{0}")]
    InUse(String),
    /// The user a token is asked for already exists with another role.
    #[error("{0}")]
    RoleMismatch(String),
    /// The record exists but cannot do this yet (an export still running).
    #[error("{0}")]
    NotReady(String),
    /// The record belongs to the installation, not to the organization:
    /// a system schedule, which only the scheduler's settings change.
    #[error("{0}")]
    ReadOnly(String),
    /// The record's file is gone for good (an expired export).
    #[error("{0}")]
    Gone(String),
    /// The record's file should exist but the storage reconciliation found
    /// it gone; `{0}` names the record.
    #[error("the {0}'s file is missing from storage; it cannot be downloaded")]
    ContentMissing(&'static str),
    #[error("this Idempotency-Key was used with another request body")]
    IdempotencyKeyReused,
    /// The organization has as many exports queued or running as it may
    /// (`EXPORTS_MAX_ACTIVE_PER_ORG`).
    #[error(
        "the organization already has {0} exports queued or running, the most it may have; retry when one finishes"
    )]
    TooManyExports(i64),
    /// Malformed JSON, query string or path.
    #[error("{0}")]
    BadRequest(String),
    /// `allow` lists the methods the path serves, for the `Allow` header.
    #[error("this method is not allowed on this resource; it serves {allow}")]
    MethodNotAllowed { allow: String },
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error(
        "the file's content is not one of the allowed types (ALLOWED_MIME_TYPES); the type is judged from the bytes, not the name or Content-Type"
    )]
    UnsupportedType,
    #[error("the file store is unavailable; retry shortly")]
    Storage(#[source] stockflow_storage::StorageError),
    #[error("the database is unavailable; retry shortly")]
    Unavailable(#[source] stockflow_db::DbError),
    #[error("internal error")]
    Internal(#[source] stockflow_db::DbError),
}

/// Every `code` with its status and title, for the OpenAPI document. The
/// test below matches `ApiError` without a wildcard, so a new variant stops
/// it compiling until it is added there, and then fails it until listed here.
pub(crate) const CODES: [(&str, u16, &str); 21] = [
    ("bad_request", 400, "Malformed request"),
    ("unauthorized", 401, "Authentication required"),
    ("forbidden", 403, "Not allowed"),
    ("not_found", 404, "Not found"),
    ("method_not_allowed", 405, "Method not allowed"),
    ("conflict", 409, "Already exists"),
    ("idempotency_key_reused", 409, "Idempotency key reused"),
    ("in_use", 409, "Still in use"),
    ("missing_reference", 409, "No such record"),
    ("not_ready", 409, "Not ready"),
    ("read_only", 409, "Read-only"),
    ("role_mismatch", 409, "Role mismatch"),
    ("content_missing", 410, "Content missing"),
    ("expired", 410, "Expired"),
    ("payload_too_large", 413, "Request too large"),
    ("unsupported_media_type", 415, "Unsupported file type"),
    ("validation_failed", 422, "Invalid request"),
    ("too_many_exports", 429, "Too many exports"),
    ("internal_error", 500, "Internal server error"),
    ("service_unavailable", 503, "Service unavailable"),
    ("storage_unavailable", 503, "Storage unavailable"),
];

/// One rejected field, as `errors[]` of a validation problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    #[schema(example = "sku")]
    pub field: String,
    #[schema(example = "1 to 64 of letters, digits, '.', '_', '/', '-'")]
    pub message: String,
    /// Only where a field's error has a name clients match on:
    /// `invalid_cron` or `unknown_timezone`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::openapi::field_error_code, required = false)]
    pub code: Option<&'static str>,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into(), code: None }
    }
}

impl From<stockflow_domain::ParseError> for FieldError {
    fn from(error: stockflow_domain::ParseError) -> Self {
        Self::new(error.field, error.reason)
    }
}

/// An error, as RFC 9457 problem details. Match on `code`, never on
/// `title` or `detail`, which are for people.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Problem<'a> {
    /// `https://stockflow.dev/problems/{code}`.
    #[serde(rename = "type")]
    #[schema(format = "uri", example = "https://stockflow.dev/problems/not_found")]
    kind: String,
    #[schema(example = "Not found")]
    title: &'a str,
    /// The HTTP status, repeated.
    #[schema(example = 404)]
    status: u16,
    #[schema(example = "no such product")]
    detail: String,
    #[schema(schema_with = crate::openapi::error_code)]
    code: &'a str,
    /// `validation_failed` only: every rejected field at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    errors: Option<&'a [FieldError]>,
    /// `conflict` and `missing_reference` only: the field whose value is
    /// taken, or refers to nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, example = "sku")]
    field: Option<&'a str>,
}

impl ApiError {
    /// Stable: clients match on it. A new one goes into [`CODES`] too.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Validation(_) => "validation_failed",
            Self::Conflict { .. } => "conflict",
            Self::MissingReference { .. } => "missing_reference",
            Self::InUse(_) => "in_use",
            Self::NotReady(_) => "not_ready",
            Self::ReadOnly(_) => "read_only",
            Self::RoleMismatch(_) => "role_mismatch",
            Self::Gone(_) => "expired",
            Self::ContentMissing(_) => "content_missing",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::TooManyExports(_) => "too_many_exports",
            Self::BadRequest(_) => "bad_request",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedType => "unsupported_media_type",
            Self::Storage(_) => "storage_unavailable",
            Self::Unavailable(_) => "service_unavailable",
            Self::Internal(_) => "internal_error",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "Authentication required",
            Self::Forbidden(_) => "Not allowed",
            Self::NotFound(_) => "Not found",
            Self::Validation(_) => "Invalid request",
            Self::Conflict { .. } => "Already exists",
            Self::MissingReference { .. } => "No such record",
            Self::InUse(_) => "Still in use",
            Self::NotReady(_) => "Not ready",
            Self::ReadOnly(_) => "Read-only",
            Self::RoleMismatch(_) => "Role mismatch",
            Self::Gone(_) => "Expired",
            Self::ContentMissing(_) => "Content missing",
            Self::IdempotencyKeyReused => "Idempotency key reused",
            Self::TooManyExports(_) => "Too many exports",
            Self::BadRequest(_) => "Malformed request",
            Self::MethodNotAllowed { .. } => "Method not allowed",
            Self::PayloadTooLarge(_) => "Request too large",
            Self::UnsupportedType => "Unsupported file type",
            Self::Storage(_) => "Storage unavailable",
            Self::Unavailable(_) => "Service unavailable",
            Self::Internal(_) => "Internal server error",
        }
    }

    /// A single invalid field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }
}

impl From<stockflow_db::DbError> for ApiError {
    fn from(error: stockflow_db::DbError) -> Self {
        if error.is_unavailable() { Self::Unavailable(error) } else { Self::Internal(error) }
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(error: diesel::result::Error) -> Self {
        stockflow_db::DbError::from(error).into()
    }
}

impl From<WriteError> for ApiError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::Taken { field } => Self::Conflict { field },
            WriteError::InUse(_) => Self::InUse("it is still referenced by other records".to_owned()),
            WriteError::MissingReference(_) => Self::MissingReference { field: "body" },
            WriteError::Query(error) => error.into(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Conflict { .. }
            | Self::MissingReference { .. }
            | Self::InUse(_)
            | Self::NotReady(_)
            | Self::ReadOnly(_)
            | Self::RoleMismatch(_)
            | Self::IdempotencyKeyReused => StatusCode::CONFLICT,
            Self::Gone(_) | Self::ContentMissing(_) => StatusCode::GONE,
            Self::TooManyExports(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Storage(_) | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(error = ?self, "request failed");
        }
        let problem = Problem {
            kind: format!("https://stockflow.dev/problems/{}", self.code()),
            title: self.title(),
            status: status.as_u16(),
            detail: self.to_string(),
            code: self.code(),
            errors: match self {
                Self::Validation(errors) => Some(errors),
                _ => None,
            },
            field: match self {
                Self::Conflict { field } | Self::MissingReference { field } => Some(field),
                _ => None,
            },
        };
        let mut response = HttpResponse::build(status);
        response.content_type("application/problem+json");
        if let Self::Unauthorized(_) = self {
            response.insert_header(("WWW-Authenticate", r#"Bearer realm="stockflow", error="invalid_token""#));
        }
        if let Self::MethodNotAllowed { allow } = self {
            response.insert_header((actix_web::http::header::ALLOW, allow.as_str()));
        }
        if let Self::Unavailable(_) | Self::Storage(_) = self {
            response.insert_header(("Retry-After", "5"));
        }
        if let Self::TooManyExports(_) = self {
            // About what a large export takes.
            response.insert_header(("Retry-After", "30"));
        }
        response.json(problem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed_with_its_status() {
        let storage = || stockflow_storage::StorageError::Unavailable("down".to_owned());
        let database = || stockflow_db::DbError::Migration("down".to_owned());
        let every_variant = [
            ApiError::Unauthorized("no token"),
            ApiError::Forbidden(Role::Admin),
            ApiError::NotFound("product"),
            ApiError::invalid("sku", "bad"),
            ApiError::Conflict { field: "sku" },
            ApiError::MissingReference { field: "product_id" },
            ApiError::InUse("referenced".to_owned()),
            ApiError::NotReady("running".to_owned()),
            ApiError::ReadOnly("system".to_owned()),
            ApiError::RoleMismatch("admin".to_owned()),
            ApiError::Gone("expired".to_owned()),
            ApiError::ContentMissing("export"),
            ApiError::IdempotencyKeyReused,
            ApiError::TooManyExports(10),
            ApiError::BadRequest("bad".to_owned()),
            ApiError::MethodNotAllowed { allow: "GET".to_owned() },
            ApiError::PayloadTooLarge("big".to_owned()),
            ApiError::UnsupportedType,
            ApiError::Storage(storage()),
            ApiError::Unavailable(database()),
            ApiError::Internal(database()),
        ];
        for error in &every_variant {
            match error {
                ApiError::Unauthorized(_)
                | ApiError::Forbidden(_)
                | ApiError::NotFound(_)
                | ApiError::Validation(_)
                | ApiError::Conflict { .. }
                | ApiError::MissingReference { .. }
                | ApiError::InUse(_)
                | ApiError::NotReady(_)
                | ApiError::ReadOnly(_)
                | ApiError::RoleMismatch(_)
                | ApiError::Gone(_)
                | ApiError::ContentMissing(_)
                | ApiError::IdempotencyKeyReused
                | ApiError::TooManyExports(_)
                | ApiError::BadRequest(_)
                | ApiError::MethodNotAllowed { .. }
                | ApiError::PayloadTooLarge(_)
                | ApiError::UnsupportedType
                | ApiError::Storage(_)
                | ApiError::Unavailable(_)
                | ApiError::Internal(_) => {}
            }
        }
        let mut listed: Vec<(&str, u16, &str)> =
            every_variant.iter().map(|error| (error.code(), error.status_code().as_u16(), error.title())).collect();
        listed.sort_by_key(|&(code, status, _)| (status, code));
        assert_eq!(listed, CODES);
    }

    #[test]
    fn a_lost_connection_is_unavailable_and_a_query_fault_is_internal() {
        use diesel::result::{DatabaseErrorKind, Error};
        for kind in [DatabaseErrorKind::ClosedConnection, DatabaseErrorKind::UnableToSendCommand] {
            let lost = Error::DatabaseError(kind, Box::new("server closed the connection unexpectedly".to_owned()));
            assert_eq!(ApiError::from(lost).status_code(), StatusCode::SERVICE_UNAVAILABLE);
        }
        let fault = Error::DatabaseError(DatabaseErrorKind::Unknown, Box::new("syntax error".to_owned()));
        assert_eq!(ApiError::from(fault).status_code(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
