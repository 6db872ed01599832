//! The OpenAPI 3.1 document, generated from the handlers' annotations and
//! served at `GET /openapi.json`.

pub(crate) mod problems;
mod schemas;

pub(crate) use schemas::{
    Binary, ExportRequest, JsonValue, batch_code, batch_status, cron, decimal_input, email, error_code, expires_in,
    field_error_code, json_object, last_status, misfire_policy, name_search, notes, notes_patch, overlap_policy,
    pause_note, product_name, role, run_outcome, run_trigger, schedule_export, schedule_name, sku, sku_prefix,
    timezone, token_name, unit,
};

use actix_web::HttpResponse;
use std::sync::LazyLock;
use stockflow_domain::{ExportFormat, SNIFFABLE};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Document, Ref, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema, ToResponse};

const DESCRIPTION: &str = "\
Stock and production records of small manufacturers.

Every `/v1` operation needs `Authorization: Bearer <token>` (`sf_` and 40 \
base62 characters). Roles: `viewer` reads, `member` also writes, `admin` \
also manages tokens. Everything is scoped to the token's organization: an \
id of another organization answers 404 exactly as one that does not exist.

Errors are `application/problem+json` with a stable `code` (the `Problem` \
schema lists them). A path not listed here answers 404 `not_found`; a \
listed path with a method it does not list answers 405 `method_not_allowed`.

Lists return `items` newest first and a `next_cursor` to pass back as \
`cursor`, null on the last page.";

#[derive(OpenApi)]
#[openapi(
    info(title = "Stockflow API", description = DESCRIPTION),
    paths(
        crate::health::healthz,
        crate::health::readyz,
        crate::observability::scrape,
        serve,
        crate::me::me,
        crate::products::list,
        crate::products::create,
        crate::products::get,
        crate::products::update,
        crate::products::delete,
        crate::batches::list,
        crate::batches::create,
        crate::batches::get,
        crate::batches::update,
        crate::batches::delete,
        crate::tokens::list,
        crate::tokens::create,
        crate::tokens::revoke,
        crate::attachments::list,
        crate::attachments::upload::upload,
        crate::attachments::get,
        crate::attachments::delete,
        crate::attachments::download::content,
        crate::exports::list,
        crate::exports::create,
        crate::exports::get,
        crate::exports::content,
        crate::schedules::list,
        crate::schedules::create,
        crate::schedules::get,
        crate::schedules::update,
        crate::schedules::delete,
        crate::schedules::run,
        crate::schedules::pause,
        crate::schedules::resume,
        crate::schedules::runs,
        crate::backups::list,
        crate::backups::start,
        crate::backups::get,
        crate::backups::verify,
    ),
    components(
        schemas(crate::problem::Problem, crate::problem::FieldError, JsonValue, ExportRequest),
        responses(
            problems::BadRequest,
            problems::Unauthorized,
            problems::Forbidden,
            problems::NotFound,
            problems::MethodNotAllowed,
            problems::Conflict,
            problems::InUse,
            problems::NotReady,
            problems::RoleMismatch,
            problems::Expired,
            problems::ContentMissing,
            problems::IdempotencyKeyReused,
            problems::ReadOnly,
            problems::ScheduleConflict,
            problems::BatchConflict,
            problems::TooManyExports,
            problems::PayloadTooLarge,
            problems::UnsupportedMediaType,
            problems::ValidationFailed,
            problems::InternalError,
            problems::ServiceUnavailable,
        ),
    ),
    modifiers(&BearerOnV1, &DownloadTypes),
    tags(
        (name = "products", description = "The catalog"),
        (name = "batches", description = "Production batches"),
        (name = "attachments", description = "Files attached to batches"),
        (name = "tokens", description = "API tokens and who holds them"),
        (name = "exports", description = "Reports of batches or products, made in the background"),
        (name = "schedules", description = "Exports made on a cron schedule, and the installation's own schedules (admins)"),
        (name = "backups", description = "The installation's backup runs; operator tokens only"),
        (name = "operations", description = "Health, readiness, metrics and this document; no token"),
    ),
)]
struct ApiDoc;

/// Built once: the document never changes while the process runs.
static DOCUMENT: LazyLock<Document> = LazyLock::new(ApiDoc::openapi);

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)),
)]
pub(crate) async fn serve() -> HttpResponse {
    HttpResponse::Ok().json(&*DOCUMENT)
}

/// Every `/v1` handler takes a `Caller`, which reads the bearer token and
/// looks it up in the database. So every `/v1` operation needs the token and
/// can answer 401, 500 and 503, whatever its own annotation lists.
struct BearerOnV1;

const SCHEME: &str = "bearer";

impl Modify for BearerOnV1 {
    fn modify(&self, document: &mut Document) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("sf_ followed by 40 base62 characters")
            .description(Some("An API token from `stockflow-api token create` or `POST /v1/tokens`."))
            .build();
        if let Some(components) = document.components.as_mut() {
            components.add_security_scheme(SCHEME, SecurityScheme::Http(scheme));
        }
        for (_, item) in document.paths.paths.iter_mut().filter(|(path, _)| path.starts_with("/v1/")) {
            let operations = [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
            for operation in operations.into_iter().flatten() {
                operation.security = Some(vec![SecurityRequirement::new(SCHEME, Vec::<String>::new())]);
                let responses = &mut operation.responses.responses;
                for (status, name) in [
                    ("401", problems::Unauthorized::response().0),
                    ("500", problems::InternalError::response().0),
                    ("503", problems::ServiceUnavailable::response().0),
                ] {
                    responses.entry(status.to_owned()).or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
                }
            }
        }
    }
}

/// The two downloads serve each file with its own type: an attachment with
/// the type sniffed from its bytes (one of `SNIFFABLE`), an export with its
/// format's. Their 200 and 206 list exactly those types, from the same
/// lists the server uses.
struct DownloadTypes;

impl Modify for DownloadTypes {
    fn modify(&self, document: &mut Document) {
        let exports = [ExportFormat::Csv, ExportFormat::Jsonl].map(ExportFormat::content_type);
        for (path, types) in
            [("/v1/attachments/{id}/content", SNIFFABLE), ("/v1/exports/{id}/content", exports.as_slice())]
        {
            let Some(operation) = document.paths.paths.get_mut(path).and_then(|item| item.get.as_mut()) else {
                continue;
            };
            for status in ["200", "206"] {
                if let Some(RefOr::T(response)) = operation.responses.responses.get_mut(status) {
                    response.content =
                        types.iter().map(|media| ((*media).to_owned(), Content::new(Some(Binary::schema())))).collect();
                }
            }
        }
    }
}
