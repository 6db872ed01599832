//! `/v1/products`: the catalog. Viewers read; members write.

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
use stockflow_db::page::After;
use stockflow_db::products::{self, NewProduct, Product, ProductChanges};
use stockflow_domain::{NameSearch, ProductFilters, ProductName, Role, Sku, SkuPrefix, Unit};
use uuid::Uuid;

/// Serialized size limit of `custom_fields`.
pub(crate) const MAX_CUSTOM_FIELDS_BYTES: usize = 16 * 1024;

pub(crate) fn endpoints() -> [Endpoint; 2] {
    [
        Endpoint::new("/v1/products").get(list).post(create),
        Endpoint::new("/v1/products/{id}").get(get).patch(update).delete(delete),
    ]
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Product)]
pub(crate) struct ProductView {
    id: Uuid,
    #[schema(example = "FL-00")]
    pub(crate) sku: String,
    #[schema(example = "Rye flour")]
    pub(crate) name: String,
    #[schema(example = "kg")]
    pub(crate) unit: String,
    #[schema(schema_with = crate::openapi::json_object)]
    custom_fields: stockflow_db::JsonText,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    updated_at: DateTime<Utc>,
}

impl From<Product> for ProductView {
    fn from(p: Product) -> Self {
        Self {
            id: p.id,
            sku: p.sku,
            name: p.name,
            unit: p.unit,
            custom_fields: p.custom_fields,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// Unknown fields are rejected (422).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateProduct {
    #[schema(schema_with = crate::openapi::sku)]
    pub(crate) sku: String,
    #[schema(schema_with = crate::openapi::product_name)]
    pub(crate) name: String,
    #[schema(schema_with = crate::openapi::unit)]
    pub(crate) unit: String,
    /// `{}` when left out; never null.
    #[serde(default, deserialize_with = "distinguish_null")]
    #[schema(schema_with = crate::openapi::json_object, required = false)]
    pub(crate) custom_fields: Option<Option<serde_json::Value>>,
}

/// Fields left out stay as they are; `custom_fields` is replaced whole.
/// No field may be null (422 naming it).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateProduct {
    #[serde(default, deserialize_with = "distinguish_null")]
    #[schema(schema_with = crate::openapi::sku, required = false)]
    pub(crate) sku: Option<Option<String>>,
    #[serde(default, deserialize_with = "distinguish_null")]
    #[schema(schema_with = crate::openapi::product_name, required = false)]
    pub(crate) name: Option<Option<String>>,
    #[serde(default, deserialize_with = "distinguish_null")]
    #[schema(schema_with = crate::openapi::unit, required = false)]
    pub(crate) unit: Option<Option<String>>,
    #[serde(default, deserialize_with = "distinguish_null")]
    #[schema(schema_with = crate::openapi::json_object, required = false)]
    pub(crate) custom_fields: Option<Option<serde_json::Value>>,
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
    /// Only SKUs starting with this.
    #[param(schema_with = crate::openapi::sku_prefix)]
    sku_prefix: Option<String>,
    /// Only names containing this, case-insensitively; blank searches nothing.
    #[param(schema_with = crate::openapi::name_search)]
    q: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/products",
    tag = "products",
    operation_id = "create_product",
    description = "Needs the member role.",
    request_body = CreateProduct,
    responses(
        (status = 201, description = "Created", body = ProductView,
            headers(("Location" = String, description = "The product's path"))),
        (status = 400, response = problems::BadRequest),
        (status = 403, response = problems::Forbidden),
        (status = 409, response = problems::Conflict),
        (status = 413, response = problems::PayloadTooLarge),
        (status = 422, response = problems::ValidationFailed),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug), err(level = "info"))]
pub(crate) async fn create(
    caller: Caller,
    database: web::Data<Database>,
    body: web::Json<CreateProduct>,
) -> Result<HttpResponse, ApiError> {
    let product = create_product(&caller, &database, body.into_inner()).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/v1/products/{}", product.id)))
        .json(ProductView::from(product)))
}

/// `POST /v1/products` and GraphQL's `createProduct`.
pub(crate) async fn create_product(
    caller: &Caller,
    database: &Database,
    body: CreateProduct,
) -> Result<Product, ApiError> {
    caller.require(Role::Member)?;
    let mut fields = Fields::default();
    let sku = fields.take(Sku::parse(&body.sku));
    let name = fields.take(ProductName::parse(&body.name));
    let unit = fields.take(Unit::parse(&body.unit));
    let custom_fields = match fields.not_null("custom_fields", body.custom_fields) {
        Some(value) => json_object(&mut fields, "custom_fields", value, MAX_CUSTOM_FIELDS_BYTES),
        None => Some(serde_json::json!({})),
    };
    fields.finish()?;
    let (Some(sku), Some(name), Some(unit), Some(custom_fields)) = (sku, name, unit, custom_fields) else {
        return Err(ApiError::invalid("body", "invalid fields"));
    };
    let org = caller.org.id;
    let new = NewProduct { sku, name, unit, custom_fields };
    database.run(move |conn| products::insert(conn, org, &new).map_err(ApiError::from)).await
}

#[utoipa::path(
    get,
    path = "/v1/products/{id}",
    tag = "products",
    operation_id = "get_product",
    params(("id" = Uuid, Path, description = "The product's id")),
    responses(
        (status = 200, description = "The product", body = ProductView),
        (status = 404, response = problems::NotFound),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug, product = %id), err(level = "info"))]
pub(crate) async fn get(
    caller: Caller,
    database: web::Data<Database>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let (org, id) = (caller.org.id, id.into_inner());
    let product = database.run(move |conn| products::find(conn, org, id).map_err(ApiError::from)).await?;
    let product = product.ok_or(ApiError::NotFound("product"))?;
    Ok(HttpResponse::Ok().json(ProductView::from(product)))
}

#[utoipa::path(
    get,
    path = "/v1/products",
    tag = "products",
    operation_id = "list_products",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of products, newest first", body = Page<ProductView>),
        (status = 400, response = problems::BadRequest),
        (status = 422, response = problems::ValidationFailed),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug), err(level = "info"))]
pub(crate) async fn list(
    caller: Caller,
    database: web::Data<Database>,
    query: web::Query<ListQuery>,
) -> Result<web::Json<Page<ProductView>>, ApiError> {
    let query = query.into_inner();
    let page = PageRequest::parse(query.limit.as_deref(), query.cursor.as_deref())?;
    let mut fields = Fields::default();
    let filter = parse_filters(&mut fields, "", query.sku_prefix.as_deref(), query.q.as_deref());
    fields.finish()?;
    let (org, after, fetch) = (caller.org.id, page.after, page.fetch());
    let rows = database
        .run(move |conn| products::list(conn, org, &filter, after.as_ref(), fetch).map_err(ApiError::from))
        .await?;
    Ok(web::Json(page.page(rows, |p| After { at: p.created_at, id: p.id }, ProductView::from)))
}

/// The list's filters, also those of an export of products; each bad one
/// is reported under `prefix` + its name.
pub(crate) fn parse_filters(
    fields: &mut Fields,
    prefix: &str,
    sku_prefix: Option<&str>,
    q: Option<&str>,
) -> ProductFilters {
    let sku_prefix = sku_prefix.and_then(|raw| fields.take_in(prefix, SkuPrefix::parse(raw)));
    let q = q.and_then(|raw| fields.take_in(prefix, NameSearch::parse(raw))).flatten();
    ProductFilters { sku_prefix, q }
}

#[utoipa::path(
    patch,
    path = "/v1/products/{id}",
    tag = "products",
    operation_id = "update_product",
    description = "Needs the member role. Fields left out keep their value; `null` is refused for every field (422 naming it).",
    params(("id" = Uuid, Path, description = "The product's id")),
    request_body = UpdateProduct,
    responses(
        (status = 200, description = "The updated product", body = ProductView),
        (status = 400, response = problems::BadRequest),
        (status = 403, response = problems::Forbidden),
        (status = 404, response = problems::NotFound),
        (status = 409, response = problems::Conflict),
        (status = 413, response = problems::PayloadTooLarge),
        (status = 422, response = problems::ValidationFailed),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug, product = %id), err(level = "info"))]
pub(crate) async fn update(
    caller: Caller,
    database: web::Data<Database>,
    id: web::Path<Uuid>,
    body: web::Json<UpdateProduct>,
) -> Result<HttpResponse, ApiError> {
    let product = update_product(&caller, &database, id.into_inner(), body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(ProductView::from(product)))
}

/// `PATCH /v1/products/{id}` and GraphQL's `updateProduct`.
pub(crate) async fn update_product(
    caller: &Caller,
    database: &Database,
    id: Uuid,
    body: UpdateProduct,
) -> Result<Product, ApiError> {
    caller.require(Role::Member)?;
    let mut fields = Fields::default();
    let sku = fields.not_null("sku", body.sku);
    let name = fields.not_null("name", body.name);
    let unit = fields.not_null("unit", body.unit);
    let custom_fields = fields.not_null("custom_fields", body.custom_fields);
    let changes = ProductChanges {
        sku: sku.and_then(|raw| fields.take(Sku::parse(&raw))),
        name: name.and_then(|raw| fields.take(ProductName::parse(&raw))),
        unit: unit.and_then(|raw| fields.take(Unit::parse(&raw))),
        custom_fields: custom_fields
            .and_then(|value| json_object(&mut fields, "custom_fields", value, MAX_CUSTOM_FIELDS_BYTES)),
    };
    fields.finish()?;
    let org = caller.org.id;
    let product = database.run(move |conn| products::update(conn, org, id, &changes).map_err(ApiError::from)).await?;
    product.ok_or(ApiError::NotFound("product"))
}

#[utoipa::path(
    delete,
    path = "/v1/products/{id}",
    tag = "products",
    operation_id = "delete_product",
    description = "Needs the member role. A product that batches refer to cannot be deleted.",
    params(("id" = Uuid, Path, description = "The product's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, response = problems::Forbidden),
        (status = 404, response = problems::NotFound),
        (status = 409, response = problems::InUse),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug, product = %id), err(level = "info"))]
pub(crate) async fn delete(
    caller: Caller,
    database: web::Data<Database>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    delete_product(&caller, &database, id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `DELETE /v1/products/{id}` and GraphQL's `deleteProduct`.
pub(crate) async fn delete_product(caller: &Caller, database: &Database, id: Uuid) -> Result<(), ApiError> {
    caller.require(Role::Member)?;
    let org = caller.org.id;
    let deleted = database.run(move |conn| products::delete(conn, org, id).map_err(ApiError::from)).await?;
    if deleted { Ok(()) } else { Err(ApiError::NotFound("product")) }
}
