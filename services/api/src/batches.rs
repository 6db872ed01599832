//! `/v1/batches`: production batches. Viewers read; members write.

use crate::auth::Caller;
use crate::pagination::{Page, PageRequest};
use crate::problem::ApiError;
use crate::products::{Fields, json_object};
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use stockflow_db::Database;
use stockflow_db::batches::{self, BatchChanges, BatchFilter, BatchRow, NewBatch};
use stockflow_db::page::{After, WriteError};
use stockflow_domain::{BatchCode, BatchStatus, Notes, Quantity, Role};
use uuid::Uuid;

/// Serialized size limit of `metadata`.
pub(crate) const MAX_METADATA_BYTES: usize = 16 * 1024;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/batches")
            .route(web::get().to(list))
            .route(web::post().to(create))
            .default_service(web::to(crate::routes::method_not_allowed)),
    )
    .service(
        web::resource("/batches/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(update))
            .route(web::delete().to(delete))
            .default_service(web::to(crate::routes::method_not_allowed)),
    );
}

#[derive(Debug, Serialize)]
pub(crate) struct BatchView {
    id: Uuid,
    product_id: Uuid,
    code: String,
    /// Exact decimal text, e.g. "12.5".
    quantity: String,
    produced_at: DateTime<Utc>,
    status: String,
    notes: String,
    metadata: serde_json::Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<BatchRow> for BatchView {
    fn from(b: BatchRow) -> Self {
        Self {
            quantity: b.quantity_text(),
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBatch {
    product_id: Uuid,
    code: String,
    /// A decimal as a string ("12.5") or a JSON number.
    quantity: serde_json::Value,
    produced_at: String,
    status: Option<String>,
    notes: Option<String>,
    metadata: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateBatch {
    product_id: Option<Uuid>,
    code: Option<String>,
    quantity: Option<serde_json::Value>,
    produced_at: Option<String>,
    status: Option<String>,
    notes: Option<String>,
    metadata: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
    product_id: Option<String>,
    status: Option<String>,
    produced_from: Option<String>,
    produced_to: Option<String>,
}

fn quantity(fields: &mut Fields, value: &serde_json::Value) -> Option<Quantity> {
    match value {
        serde_json::Value::String(raw) => fields.take(Quantity::parse(raw)),
        serde_json::Value::Number(number) => fields.take(Quantity::parse(&number.to_string())),
        _ => {
            fields.push("quantity", "a decimal, as a string such as \"12.5\" or a number");
            None
        }
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
        WriteError::MissingReference(_) => ApiError::invalid("product_id", "no such product"),
        other => other.into(),
    }
}

#[tracing::instrument(skip_all, fields(org = %caller.org.slug), err(level = "info"))]
async fn create(
    caller: Caller,
    database: web::Data<Database>,
    body: web::Json<CreateBatch>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Member)?;
    let body = body.into_inner();
    let mut fields = Fields::default();
    let code = fields.take(BatchCode::parse(&body.code));
    let quantity = quantity(&mut fields, &body.quantity);
    let produced_at = timestamp(&mut fields, "produced_at", &body.produced_at);
    let status = match body.status.as_deref() {
        None => Some(BatchStatus::Planned),
        Some(raw) => fields.take(BatchStatus::parse(raw)),
    };
    let notes = fields.take(Notes::parse(body.notes.as_deref().unwrap_or_default()));
    let metadata = json_object(
        &mut fields,
        "metadata",
        body.metadata.unwrap_or_else(|| serde_json::json!({})),
        MAX_METADATA_BYTES,
    );
    fields.finish()?;
    let (Some(code), Some(quantity), Some(produced_at), Some(status), Some(notes), Some(metadata)) =
        (code, quantity, produced_at, status, notes, metadata)
    else {
        return Err(ApiError::invalid("body", "invalid fields"));
    };
    let new = NewBatch { product_id: body.product_id, code, quantity, produced_at, status, notes, metadata };
    let org = caller.org.id;
    let batch = database.run(move |conn| batches::insert(conn, org, &new).map_err(write_error)).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/v1/batches/{}", batch.id)))
        .json(BatchView::from(batch)))
}

#[tracing::instrument(skip_all, fields(org = %caller.org.slug, batch = %id), err(level = "info"))]
async fn get(caller: Caller, database: web::Data<Database>, id: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let (org, id) = (caller.org.id, id.into_inner());
    let batch = database.run(move |conn| batches::find(conn, org, id).map_err(ApiError::from)).await?;
    Ok(HttpResponse::Ok().json(BatchView::from(batch.ok_or(ApiError::NotFound("batch"))?)))
}

#[tracing::instrument(skip_all, fields(org = %caller.org.slug), err(level = "info"))]
async fn list(
    caller: Caller,
    database: web::Data<Database>,
    query: web::Query<ListQuery>,
) -> Result<web::Json<Page<BatchView>>, ApiError> {
    let query = query.into_inner();
    let page = PageRequest::parse(query.limit.as_deref(), query.cursor.as_deref())?;
    let mut fields = Fields::default();
    let product_id = query.product_id.as_deref().and_then(|raw| match Uuid::parse_str(raw) {
        Ok(id) => Some(id),
        Err(_) => {
            fields.push("product_id", "a product id (UUID)");
            None
        }
    });
    let filter = BatchFilter {
        product_id,
        status: query.status.as_deref().and_then(|raw| fields.take(BatchStatus::parse(raw))),
        produced_from: query.produced_from.as_deref().and_then(|raw| timestamp(&mut fields, "produced_from", raw)),
        produced_to: query.produced_to.as_deref().and_then(|raw| timestamp(&mut fields, "produced_to", raw)),
    };
    fields.finish()?;
    let (org, after, fetch) = (caller.org.id, page.after, page.fetch());
    let rows = database
        .run(move |conn| batches::list(conn, org, &filter, after.as_ref(), fetch).map_err(ApiError::from))
        .await?;
    Ok(web::Json(page.page(rows, |b| After { at: b.produced_at, id: b.id }, BatchView::from)))
}

#[tracing::instrument(skip_all, fields(org = %caller.org.slug, batch = %id), err(level = "info"))]
async fn update(
    caller: Caller,
    database: web::Data<Database>,
    id: web::Path<Uuid>,
    body: web::Json<UpdateBatch>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Member)?;
    let body = body.into_inner();
    let mut fields = Fields::default();
    let changes = BatchChanges {
        product_id: body.product_id,
        code: body.code.as_deref().and_then(|raw| fields.take(BatchCode::parse(raw))),
        quantity: body.quantity.as_ref().and_then(|value| quantity(&mut fields, value)),
        produced_at: body.produced_at.as_deref().and_then(|raw| timestamp(&mut fields, "produced_at", raw)),
        status: body.status.as_deref().and_then(|raw| fields.take(BatchStatus::parse(raw))),
        notes: body.notes.as_deref().and_then(|raw| fields.take(Notes::parse(raw))),
        metadata: body.metadata.and_then(|value| json_object(&mut fields, "metadata", value, MAX_METADATA_BYTES)),
    };
    fields.finish()?;
    let (org, id) = (caller.org.id, id.into_inner());
    let batch = database.run(move |conn| batches::update(conn, org, id, &changes).map_err(write_error)).await?;
    Ok(HttpResponse::Ok().json(BatchView::from(batch.ok_or(ApiError::NotFound("batch"))?)))
}

#[tracing::instrument(skip_all, fields(org = %caller.org.slug, batch = %id), err(level = "info"))]
async fn delete(caller: Caller, database: web::Data<Database>, id: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Member)?;
    let (org, id) = (caller.org.id, id.into_inner());
    let deleted = database.run(move |conn| batches::delete(conn, org, id).map_err(ApiError::from)).await?;
    if deleted { Ok(HttpResponse::NoContent().finish()) } else { Err(ApiError::NotFound("batch")) }
}
