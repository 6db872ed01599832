//! The `products` table. Every function takes the caller's organization, so
//! a product of another organization is simply not found.

use crate::page::{After, WriteError};
use crate::schema::products;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use stockflow_domain::{ProductFilters, ProductName, Sku, Unit};
use uuid::Uuid;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = products)]
pub struct Product {
    pub id: Uuid,
    pub org_id: Uuid,
    pub sku: String,
    pub name: String,
    pub unit: String,
    pub custom_fields: crate::JsonText,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub struct NewProduct {
    pub sku: Sku,
    pub name: ProductName,
    pub unit: Unit,
    pub custom_fields: serde_json::Value,
}

/// A PATCH: `None` leaves the column as it is.
#[derive(Default)]
pub struct ProductChanges {
    pub sku: Option<Sku>,
    pub name: Option<ProductName>,
    pub unit: Option<Unit>,
    pub custom_fields: Option<serde_json::Value>,
}

#[derive(AsChangeset)]
#[diesel(table_name = products)]
struct Changeset<'a> {
    sku: Option<&'a str>,
    name: Option<&'a str>,
    unit: Option<&'a str>,
    custom_fields: Option<&'a serde_json::Value>,
    updated_at: DateTime<Utc>,
}

const UNIQUE_FIELDS: &[(&str, &str)] = &[("products_org_sku_key", "sku")];

pub fn insert(conn: &mut PgConnection, org: Uuid, new: &NewProduct) -> Result<Product, WriteError> {
    diesel::insert_into(products::table)
        .values((
            products::org_id.eq(org),
            products::sku.eq(new.sku.as_str()),
            products::name.eq(new.name.as_str()),
            products::unit.eq(new.unit.as_str()),
            products::custom_fields.eq(&new.custom_fields),
        ))
        .returning(Product::as_returning())
        .get_result(conn)
        .map_err(|error| WriteError::classify(error, UNIQUE_FIELDS))
}

pub fn find(conn: &mut PgConnection, org: Uuid, id: Uuid) -> QueryResult<Option<Product>> {
    products::table
        .filter(products::org_id.eq(org).and(products::id.eq(id)))
        .select(Product::as_select())
        .first(conn)
        .optional()
}

/// The organization's products among `ids`, in no order: one query for
/// a page's worth of references.
pub fn find_many(conn: &mut PgConnection, org: Uuid, ids: &[Uuid]) -> QueryResult<Vec<Product>> {
    products::table
        .filter(products::org_id.eq(org).and(products::id.eq_any(ids)))
        .select(Product::as_select())
        .load(conn)
}

/// Newest first; `after` is the last row of the previous page.
pub fn list(
    conn: &mut PgConnection,
    org: Uuid,
    filter: &ProductFilters,
    after: Option<&After>,
    limit: i64,
) -> QueryResult<Vec<Product>> {
    let mut query = products::table.filter(products::org_id.eq(org)).into_boxed();
    if let Some(prefix) = &filter.sku_prefix {
        // `_` is allowed in SKUs and is a LIKE wildcard: escaped.
        query = query.filter(products::sku.like(format!("{}%", crate::page::escape_like(prefix.as_str()))));
    }
    if let Some(needle) = &filter.q {
        query = query.filter(products::name.ilike(format!("%{}%", crate::page::escape_like(needle))));
    }
    if let Some(after) = after {
        query = query.filter(
            products::created_at.lt(after.at).or(products::created_at.eq(after.at).and(products::id.lt(after.id))),
        );
    }
    query.order((products::created_at.desc(), products::id.desc())).limit(limit).select(Product::as_select()).load(conn)
}

pub fn update(
    conn: &mut PgConnection,
    org: Uuid,
    id: Uuid,
    changes: &ProductChanges,
) -> Result<Option<Product>, WriteError> {
    let changeset = Changeset {
        sku: changes.sku.as_ref().map(Sku::as_str),
        name: changes.name.as_ref().map(ProductName::as_str),
        unit: changes.unit.as_ref().map(Unit::as_str),
        custom_fields: changes.custom_fields.as_ref(),
        updated_at: Utc::now(),
    };
    diesel::update(products::table.filter(products::org_id.eq(org).and(products::id.eq(id))))
        .set(&changeset)
        .returning(Product::as_returning())
        .get_result(conn)
        .optional()
        .map_err(|error| WriteError::classify(error, UNIQUE_FIELDS))
}

/// `Ok(false)` when there was no such product. A product with batches
/// cannot be deleted (`WriteError::InUse`).
pub fn delete(conn: &mut PgConnection, org: Uuid, id: Uuid) -> Result<bool, WriteError> {
    diesel::delete(products::table.filter(products::org_id.eq(org).and(products::id.eq(id))))
        .execute(conn)
        .map(|deleted| deleted > 0)
        .map_err(|error| WriteError::classify(error, UNIQUE_FIELDS))
}
