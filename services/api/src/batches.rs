//! `/v1/batches`: production batches. Viewers read; members write.

use crate::auth::Caller;
use crate::openapi::problems;
use crate::pagination::{Page, PageRequest};
use crate::problem::ApiError;
use crate::routes::Endpoint;
use crate::validation::{Fields, distinguish_null, json_object};
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use stockflow_db::Database;
use stockflow_db::batches::{self, BatchChanges, BatchRow, NewBatch};
use stockflow_db::page::{After, WriteError};
use stockflow_domain::{BatchCode, BatchFilters, BatchStatus, Notes, Quantity, Role};
use uuid::Uuid;

/// Serialized size limit of `metadata`.
pub(crate) const MAX_METADATA_BYTES: usize = 16 * 1024;

pub(crate) fn endpoints() -> [Endpoint; 2] {
    [
        Endpoint::new("/v1/batches").get(list).post(create),
        Endpoint::new("/v1/batches/{id}").get(get).patch(update).delete(delete),
    ]
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Batch)]
pub(crate) struct BatchView {
    id: Uuid,
    product_id: Uuid,
    #[schema(example = "B-2026-001")]
    code: String,
    /// Exact decimal text, e.g. "12.5".
    #[schema(example = "12.5")]
    quantity: String,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    produced_at: DateTime<Utc>,
    #[schema(schema_with = crate::openapi::batch_status)]
    status: String,
    notes: String,
    #[schema(schema_with = crate::openapi::json_object)]
    metadata: stockflow_db::JsonText,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    updated_at: DateTime<Utc>,
}

impl From<BatchRow> for BatchView {
    fn from(b: BatchRow) -> Self {
        Self {
            quantity: b.quantity.into_string(),
            id: b.id,
            product_id: b.product_id,
            code: b.code,
            produced_at: b.produced_at,
            status: b.status,
            notes: b.notes,
            metadata: b.metadata,
            created_at: b.created_at,
            updated_at: b.updated_at,
        }
    }
}

/// Unknown fields are rejected (422).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBatch {
    /// A product of the caller's organization.
    pub(crate) product_id: Uuid,
    #[schema(schema_with = crate::openapi::batch_code)]
    pub(crate) code: String,
    /// A decimal as a string ("12.5") or a JSON number.
    #[schema(schema_with = crate::openapi::decimal_input)]
    pub(crate) quantity: serde_json::Value,
    /// RFC 3339; returned in UTC.
    #[schema(format = DateTime, example = "2026-11-23T08:00:00Z")]
    pub(crate) produced_at: String,
    /// `planned` when left out; never null.
    #[serde(default, deserialize_with = "distinguish_null")]
    #[schema(schema_with = crate::openapi::batch_status, required = false)]
    pub(crate) status: Option<Option<String>>,
    #[schema(schema_with = crate::openapi::notes, required = false)]
    pub(crate) notes: Option<String>,
    /// `{}` when left out; never null.
    #[serde(default, deserialize_with = "distinguish_null")]
    #[schema(schema_with = crate::openapi::json_object, required = false)]
    pub(crate) metadata: Option<Option<serde_json::Value>>,
}

/// Fields left out stay as they are; `metadata` is replaced whole. Only
/// `notes` may be null, which clears them; any other null is a 422 naming
/// the field.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateBatch {
    #[serde(default, deserialize_with = "distinguish_null")]
    #[schema(value_type = Uuid, required = false)]
    pub(crate) product_id: Option<Option<Uuid>>,
    #[serde(default, deserialize_with = "distinguish_null")]
    #[schema(schema_with = crate::openapi::batch_code, required = false)]
    pub(crate) code: Option<Option<String>>,
    #[serde(default, deserialize_with = "distinguish_null")]
    #[schema(schema_with = crate::openapi::decimal_input, required = false)]
    pub(crate) quantity: Option<Option<serde_json::Value>>,
    #[serde(default, deserialize_with = "distinguish_null")]
    #[schema(value_type = String, format = DateTime, required = false)]
    pub(crate) produced_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "distinguish_null")]
    #[schema(schema_with = crate::openapi::batch_status, required = false)]
    pub(crate) status: Option<Option<String>>,
    #[serde(default, deserialize_with = "distinguish_null")]
    #[schema(schema_with = crate::openapi::notes_patch, required = false)]
    pub(crate) notes: Option<Option<String>>,
    #[serde(default, deserialize_with = "distinguish_null")]
    #[schema(schema_with = crate::openapi::json_object, required = false)]
    pub(crate) metadata: Option<Option<serde_json::Value>>,
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
    /// Only batches of this product.
    #[param(value_type = Option<Uuid>)]
    product_id: Option<String>,
    /// Only batches in this status.
    #[param(schema_with = crate::openapi::batch_status)]
    status: Option<String>,
    /// Only batches produced at or after this time (RFC 3339).
    #[param(format = DateTime)]
    produced_from: Option<String>,
    /// Only batches produced before this time (RFC 3339).
    #[param(format = DateTime)]
    produced_to: Option<String>,
}

fn quantity(fields: &mut Fields, value: &serde_json::Value) -> Option<Quantity> {
    match value {
        serde_json::Value::String(raw) => fields.take(Quantity::parse(raw)),
        // A float is written out in full (`0.000001`, never `1e-6`), as a
        // client would write it as text.
        serde_json::Value::Number(number) => match number.as_f64().filter(|_| number.is_f64()) {
            Some(float) => fields.take(Quantity::parse(&float.to_string())),
            None => fields.take(Quantity::parse(&number.to_string())),
        },
        _ => {
            fields.push("quantity", "a decimal, as a string such as \"12.5\" or a number");
            None
        }
    }
}

/// The filters of the list, as sent; also those of an export of batches.
pub(crate) struct RawFilters<'a> {
    pub(crate) product_id: Option<&'a str>,
    pub(crate) status: Option<&'a str>,
    pub(crate) produced_from: Option<&'a str>,
    pub(crate) produced_to: Option<&'a str>,
}

/// Checks every filter, reporting each bad one under `prefix` + its name.
pub(crate) fn parse_filters(fields: &mut Fields, prefix: &str, raw: &RawFilters<'_>) -> BatchFilters {
    let product_id = raw.product_id.and_then(|raw| match Uuid::parse_str(raw) {
        Ok(id) => Some(id),
        Err(_) => {
            fields.push(&format!("{prefix}product_id"), "a product id (UUID)");
            None
        }
    });
    BatchFilters {
        product_id,
        status: raw.status.and_then(|raw| fields.take_in(prefix, BatchStatus::parse(raw))),
        produced_from: raw.produced_from.and_then(|raw| timestamp(fields, &format!("{prefix}produced_from"), raw)),
        produced_to: raw.produced_to.and_then(|raw| timestamp(fields, &format!("{prefix}produced_to"), raw)),
    }
}

fn timestamp(fields: &mut Fields, field: &str, raw: &str) -> Option<DateTime<Utc>> {
    match DateTime::parse_from_rfc3339(raw) {
        Ok(at) => Some(at.with_timezone(&Utc)),
        Err(_) => {
            fields.push(field, "an RFC 3339 timestamp such as 2026-11-23T08:00:00Z");
            None
        }
    }
}

/// A product of another organization is as missing as one that never was.
fn write_error(error: WriteError) -> ApiError {
    match error {
        WriteError::MissingReference(_) => ApiError::MissingReference { field: "product_id" },
        other => other.into(),
    }
}

#[utoipa::path(
    post,
    path = "/v1/batches",
    tag = "batches",
    operation_id = "create_batch",
    description = "Needs the member role.",
    request_body = CreateBatch,
    responses(
        (status = 201, description = "Created", body = BatchView,
            headers(("Location" = String, description = "The batch's path"))),
        (status = 400, response = problems::BadRequest),
        (status = 403, response = problems::Forbidden),
        (status = 409, response = problems::BatchConflict),
        (status = 413, response = problems::PayloadTooLarge),
        (status = 422, response = problems::ValidationFailed),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug), err(level = "info"))]
pub(crate) async fn create(
    caller: Caller,
    database: web::Data<Database>,
    body: web::Json<CreateBatch>,
) -> Result<HttpResponse, ApiError> {
    let batch = create_batch(&caller, &database, body.into_inner()).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/v1/batches/{}", batch.id)))
        .json(BatchView::from(batch)))
}

/// `POST /v1/batches` and GraphQL's `createBatch`.
pub(crate) async fn create_batch(
    caller: &Caller,
    database: &Database,
    body: CreateBatch,
) -> Result<BatchRow, ApiError> {
    caller.require(Role::Member)?;
    let mut fields = Fields::default();
    let code = fields.take(BatchCode::parse(&body.code));
    let quantity = quantity(&mut fields, &body.quantity);
    let produced_at = timestamp(&mut fields, "produced_at", &body.produced_at);
    let status = match fields.not_null("status", body.status) {
        None => Some(BatchStatus::Planned),
        Some(raw) => fields.take(BatchStatus::parse(&raw)),
    };
    let notes = fields.take(Notes::parse(body.notes.as_deref().unwrap_or_default()));
    let metadata = match fields.not_null("metadata", body.metadata) {
        Some(value) => json_object(&mut fields, "metadata", value, MAX_METADATA_BYTES),
        None => Some(serde_json::json!({})),
    };
    fields.finish()?;
    let (Some(code), Some(quantity), Some(produced_at), Some(status), Some(notes), Some(metadata)) =
        (code, quantity, produced_at, status, notes, metadata)
    else {
        return Err(ApiError::invalid("body", "invalid fields"));
    };
    let new = NewBatch { product_id: body.product_id, code, quantity, produced_at, status, notes, metadata };
    let org = caller.org.id;
    database.run(move |conn| batches::insert(conn, org, &new).map_err(write_error)).await
}

#[utoipa::path(
    get,
    path = "/v1/batches/{id}",
    tag = "batches",
    operation_id = "get_batch",
    params(("id" = Uuid, Path, description = "The batch's id")),
    responses(
        (status = 200, description = "The batch", body = BatchView),
        (status = 404, response = problems::NotFound),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug, batch = %id), err(level = "info"))]
pub(crate) async fn get(
    caller: Caller,
    database: web::Data<Database>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let (org, id) = (caller.org.id, id.into_inner());
    let batch = database.run(move |conn| batches::find(conn, org, id).map_err(ApiError::from)).await?;
    Ok(HttpResponse::Ok().json(BatchView::from(batch.ok_or(ApiError::NotFound("batch"))?)))
}

#[utoipa::path(
    get,
    path = "/v1/batches",
    tag = "batches",
    operation_id = "list_batches",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of batches, most recently produced first", body = Page<BatchView>),
        (status = 400, response = problems::BadRequest),
        (status = 422, response = problems::ValidationFailed),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug), err(level = "info"))]
pub(crate) async fn list(
    caller: Caller,
    database: web::Data<Database>,
    query: web::Query<ListQuery>,
) -> Result<web::Json<Page<BatchView>>, ApiError> {
    let query = query.into_inner();
    let page = PageRequest::parse(query.limit.as_deref(), query.cursor.as_deref())?;
    let mut fields = Fields::default();
    let raw = RawFilters {
        product_id: query.product_id.as_deref(),
        status: query.status.as_deref(),
        produced_from: query.produced_from.as_deref(),
        produced_to: query.produced_to.as_deref(),
    };
    let filter = parse_filters(&mut fields, "", &raw);
    fields.finish()?;
    let (org, after, fetch) = (caller.org.id, page.after, page.fetch());
    let rows = database
        .run(move |conn| batches::list(conn, org, &filter, after.as_ref(), fetch).map_err(ApiError::from))
        .await?;
    Ok(web::Json(page.page(rows, |b| After { at: b.produced_at, id: b.id }, BatchView::from)))
}

#[utoipa::path(
    patch,
    path = "/v1/batches/{id}",
    tag = "batches",
    operation_id = "update_batch",
    description = "Needs the member role. Fields left out keep their value; `notes: null` clears the notes, \
        and `null` for any other field is refused (422 naming it).",
    params(("id" = Uuid, Path, description = "The batch's id")),
    request_body = UpdateBatch,
    responses(
        (status = 200, description = "The updated batch", body = BatchView),
        (status = 400, response = problems::BadRequest),
        (status = 403, response = problems::Forbidden),
        (status = 404, response = problems::NotFound),
        (status = 409, response = problems::BatchConflict),
        (status = 413, response = problems::PayloadTooLarge),
        (status = 422, response = problems::ValidationFailed),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug, batch = %id), err(level = "info"))]
pub(crate) async fn update(
    caller: Caller,
    database: web::Data<Database>,
    id: web::Path<Uuid>,
    body: web::Json<UpdateBatch>,
) -> Result<HttpResponse, ApiError> {
    let batch = update_batch(&caller, &database, id.into_inner(), body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(BatchView::from(batch)))
}

/// `PATCH /v1/batches/{id}` and GraphQL's `updateBatch`.
pub(crate) async fn update_batch(
    caller: &Caller,
    database: &Database,
    id: Uuid,
    body: UpdateBatch,
) -> Result<BatchRow, ApiError> {
    caller.require(Role::Member)?;
    let mut fields = Fields::default();
    let product_id = fields.not_null("product_id", body.product_id);
    let code = fields.not_null("code", body.code);
    let quantity_value = fields.not_null("quantity", body.quantity);
    let produced_at = fields.not_null("produced_at", body.produced_at);
    let status = fields.not_null("status", body.status);
    let metadata = fields.not_null("metadata", body.metadata);
    let changes = BatchChanges {
        product_id,
        code: code.and_then(|raw| fields.take(BatchCode::parse(&raw))),
        quantity: quantity_value.and_then(|value| quantity(&mut fields, &value)),
        produced_at: produced_at.and_then(|raw| timestamp(&mut fields, "produced_at", &raw)),
        status: status.and_then(|raw| fields.take(BatchStatus::parse(&raw))),
        // `null` clears the notes, as `""` does.
        notes: body.notes.and_then(|raw| fields.take(Notes::parse(raw.as_deref().unwrap_or_default()))),
        metadata: metadata.and_then(|value| json_object(&mut fields, "metadata", value, MAX_METADATA_BYTES)),
    };
    fields.finish()?;
    let org = caller.org.id;
    let batch = database.run(move |conn| batches::update(conn, org, id, &changes).map_err(write_error)).await?;
    batch.ok_or(ApiError::NotFound("batch"))
}

#[utoipa::path(
    delete,
    path = "/v1/batches/{id}",
    tag = "batches",
    operation_id = "delete_batch",
    description = "Needs the member role. A batch with attachments cannot be deleted.",
    params(("id" = Uuid, Path, description = "The batch's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, response = problems::Forbidden),
        (status = 404, response = problems::NotFound),
        (status = 409, response = problems::InUse),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug, batch = %id), err(level = "info"))]
pub(crate) async fn delete(
    caller: Caller,
    database: web::Data<Database>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    delete_batch(&caller, &database, id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `DELETE /v1/batches/{id}` and GraphQL's `deleteBatch`.
pub(crate) async fn delete_batch(caller: &Caller, database: &Database, id: Uuid) -> Result<(), ApiError> {
    caller.require(Role::Member)?;
    let org = caller.org.id;
    let deleted = database.run(move |conn| batches::delete(conn, org, id).map_err(ApiError::from)).await?;
    if deleted { Ok(()) } else { Err(ApiError::NotFound("batch")) }
}
