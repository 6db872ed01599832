//! The API's errors, as `application/problem+json` (RFC 9457) with a stable
//! `code` that clients can match on.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("the database is unavailable; retry shortly")]
    Unavailable(#[source] stockflow_db::DbError),
    #[error("internal error")]
    Internal(#[source] stockflow_db::DbError),
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    code: &'a str,
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::Unavailable(_) => "service_unavailable",
            Self::Internal(_) => "internal_error",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "Authentication required",
            Self::Unavailable(_) => "Service unavailable",
            Self::Internal(_) => "Internal server error",
        }
    }
}

impl From<stockflow_db::DbError> for ApiError {
    fn from(error: stockflow_db::DbError) -> Self {
        match error {
            stockflow_db::DbError::Unavailable(_) | stockflow_db::DbError::Connect(_) => Self::Unavailable(error),
            other => Self::Internal(other),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
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
        };
        let mut response = HttpResponse::build(status);
        response.content_type("application/problem+json");
        if let Self::Unauthorized(_) = self {
            response.insert_header(("WWW-Authenticate", r#"Bearer realm="stockflow", error="invalid_token""#));
        }
        if let Self::Unavailable(_) = self {
            response.insert_header(("Retry-After", "5"));
        }
        response.json(problem)
    }
}
