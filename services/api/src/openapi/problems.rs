//! The error responses operations share, as `components/responses`: each
//! is `application/problem+json` with the `Problem` schema and an example
//! of the `code` it carries.

use crate::problem::CODES;
use utoipa::PartialSchema;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};

pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// A named problem response: `$name` answers `$status` with one of `$codes`.
macro_rules! problem {
    ($(#[doc = $doc:literal])+ $name:ident, $status:literal, [$($code:literal),+] $(, $header:literal: $meaning:literal)*) => {
        $(#[doc = $doc])+
        pub(crate) struct $name;

        impl<'r> utoipa::ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                let description = concat!($($doc),+).trim();
                let response = build(description, $status, &[$($code),+], &[$(($header, $meaning)),*]);
                (stringify!($name), response.into())
            }
        }
    };
}

problem!(
    /// Malformed JSON, a wrong `Content-Type`, an unreadable query string or multipart body.
    BadRequest, 400, ["bad_request"]
);
problem!(
    /// No token, or one that is malformed, unknown, revoked or expired.
    Unauthorized, 401, ["unauthorized"],
    "WWW-Authenticate": "`Bearer realm=\"stockflow\", error=\"invalid_token\"`"
);
problem!(
    /// The token's role is below what the operation needs.
    Forbidden, 403, ["forbidden"]
);
problem!(
    /// No such record in the caller's organization (also a record of another organization, or a path id that is not a UUID).
    NotFound, 404, ["not_found"]
);
problem!(
    /// A known path with a method it does not serve.
    MethodNotAllowed, 405, ["method_not_allowed"],
    "Allow": "The methods the path serves, such as `GET, PATCH, DELETE` (RFC 9110)."
);
problem!(
    /// A value unique per organization is taken; `field` names it.
    Conflict, 409, ["conflict"]
);
problem!(
    /// A value unique per organization is taken (`conflict`), or `product_id` names no product of the organization (`missing_reference`); `field` names it.
    BatchConflict, 409, ["conflict", "missing_reference"]
);
problem!(
    /// The schedule is the installation's own (`system: true`): only the scheduler's settings change it.
    ReadOnly, 409, ["read_only"]
);
problem!(
    /// The name is taken by another of the organization's schedules (`conflict`, `field` names it), or the schedule is the installation's own (`read_only`).
    ScheduleConflict, 409, ["conflict", "read_only"]
);
problem!(
    /// The `Idempotency-Key` was used before with another request body.
    IdempotencyKeyReused, 409, ["idempotency_key_reused"]
);
problem!(
    /// The record is still referenced by others and cannot be deleted.
    InUse, 409, ["in_use"]
);
problem!(
    /// The user the token is for already exists with another role; ask for that role or another email.
    RoleMismatch, 409, ["role_mismatch"]
);
problem!(
    /// The export has not succeeded (yet): it is queued, running or failed; `detail` says which.
    NotReady, 409, ["not_ready"]
);
problem!(
    /// The export's file was removed after `EXPORT_RETENTION_DAYS` (`expired`; request a new export), or the storage reconciliation found it gone (`content_missing`).
    Expired, 410, ["expired", "content_missing"]
);
problem!(
    /// The storage reconciliation found the file gone; the record stays, its content cannot be downloaded.
    ContentMissing, 410, ["content_missing"]
);
problem!(
    /// The organization already has `EXPORTS_MAX_ACTIVE_PER_ORG` exports queued or running; retry after the delay.
    TooManyExports, 429, ["too_many_exports"],
    "Retry-After": "Seconds to wait before retrying."
);
problem!(
    /// The body is over its limit: 64 KiB of JSON, or `MAX_UPLOAD_BYTES` of file.
    PayloadTooLarge, 413, ["payload_too_large"]
);
problem!(
    /// The file's content, sniffed from its bytes, is not in `ALLOWED_MIME_TYPES`.
    UnsupportedMediaType, 415, ["unsupported_media_type"]
);
problem!(
    /// Fields with invalid values, or unknown fields; `errors` lists every one.
    ValidationFailed, 422, ["validation_failed"]
);
problem!(
    /// An unexpected failure, logged; never detailed to the client.
    InternalError, 500, ["internal_error"]
);
problem!(
    /// The database or the file store is unreachable; retry after the delay.
    ServiceUnavailable, 503, ["service_unavailable", "storage_unavailable"],
    "Retry-After": "Seconds to wait before retrying."
);

fn build(description: &str, status: u16, codes: &[&str], headers: &[(&str, &str)]) -> ResponseBuilder {
    // The example is the first code's problem as the api renders it.
    let (code, title) = codes
        .iter()
        .find_map(|wanted| CODES.iter().find(|(code, answers, _)| code == wanted && *answers == status))
        .map_or(("internal_error", "Internal server error"), |&(code, _, title)| (code, title));
    let example = serde_json::json!({
        "type": format!("https://stockflow.dev/problems/{code}"),
        "title": title,
        "status": status,
        "detail": description,
        "code": code,
    });
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).example(Some(example)).build();
    let mut response = ResponseBuilder::new()
        .description(format!("{description} `code`: {}.", codes.join(" or ")))
        .content(PROBLEM_JSON, content);
    for (name, meaning) in headers {
        let header = HeaderBuilder::new().schema(String::schema()).description(Some(*meaning)).build();
        response = response.header(*name, header);
    }
    response
}
