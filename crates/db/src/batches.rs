//! The `batches` table. Every function takes the caller's organization, and
//! the composite foreign key keeps a batch to products of its own org.

use crate::page::{After, WriteError};
use crate::products::Product;
use crate::schema::{batches, products};
use bigdecimal::BigDecimal;
use chrono::{DateTime, Utc};
use diesel::connection::DefaultLoadingMode;
use diesel::prelude::*;
use std::str::FromStr;
use stockflow_domain::{BatchCode, BatchFilters, BatchStatus, Notes, Quantity};
use uuid::Uuid;

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = batches)]
pub struct BatchRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub product_id: Uuid,
    pub code: String,
    pub quantity: crate::DecimalText,
    pub produced_at: DateTime<Utc>,
    pub status: String,
    pub notes: String,
    pub metadata: crate::JsonText,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub struct NewBatch {
    pub product_id: Uuid,
    pub code: BatchCode,
    pub quantity: Quantity,
    pub produced_at: DateTime<Utc>,
    pub status: BatchStatus,
    pub notes: Notes,
    pub metadata: serde_json::Value,
}

/// A PATCH: `None` leaves the column as it is.
#[derive(Default)]
pub struct BatchChanges {
    pub product_id: Option<Uuid>,
    pub code: Option<BatchCode>,
    pub quantity: Option<Quantity>,
    pub produced_at: Option<DateTime<Utc>>,
    pub status: Option<BatchStatus>,
    pub notes: Option<Notes>,
    pub metadata: Option<serde_json::Value>,
}

#[derive(AsChangeset)]
#[diesel(table_name = batches)]
struct Changeset<'a> {
    product_id: Option<Uuid>,
    code: Option<&'a str>,
    quantity: Option<BigDecimal>,
    produced_at: Option<DateTime<Utc>>,
    status: Option<&'a str>,
    notes: Option<&'a str>,
    metadata: Option<&'a serde_json::Value>,
    updated_at: DateTime<Utc>,
}

const UNIQUE_FIELDS: &[(&str, &str)] = &[("batches_org_code_key", "code")];

fn decimal(quantity: &Quantity) -> Result<BigDecimal, WriteError> {
    // Quantity only holds plain decimals, which always parse.
    BigDecimal::from_str(quantity.as_str())
        .map_err(|error| WriteError::Query(diesel::result::Error::SerializationError(Box::new(error))))
}

pub fn insert(conn: &mut PgConnection, org: Uuid, new: &NewBatch) -> Result<BatchRow, WriteError> {
    diesel::insert_into(batches::table)
        .values((
            batches::org_id.eq(org),
            batches::product_id.eq(new.product_id),
            batches::code.eq(new.code.as_str()),
            batches::quantity.eq(decimal(&new.quantity)?),
            batches::produced_at.eq(new.produced_at),
            batches::status.eq(new.status.as_str()),
            batches::notes.eq(new.notes.as_str()),
            batches::metadata.eq(&new.metadata),
        ))
        .returning(BatchRow::as_returning())
        .get_result(conn)
        .map_err(|error| WriteError::classify(error, UNIQUE_FIELDS))
}

pub fn find(conn: &mut PgConnection, org: Uuid, id: Uuid) -> QueryResult<Option<BatchRow>> {
    batches::table
        .filter(batches::org_id.eq(org).and(batches::id.eq(id)))
        .select(BatchRow::as_select())
        .first(conn)
        .optional()
}

/// The filters and keyset of a batch list, ordered, on a boxed query over
/// `batches` alone or joined to `products`: one definition of what a page
/// holds.
macro_rules! page_of_batches {
    ($query:expr, $org:expr, $filter:expr, $after:expr) => {{
        let mut query = $query.filter(batches::org_id.eq($org));
        if let Some(product) = $filter.product_id {
            query = query.filter(batches::product_id.eq(product));
        }
        if let Some(status) = $filter.status {
            query = query.filter(batches::status.eq(status.as_str()));
        }
        if let Some(from) = $filter.produced_from {
            query = query.filter(batches::produced_at.ge(from));
        }
        if let Some(to) = $filter.produced_to {
            query = query.filter(batches::produced_at.lt(to));
        }
        if let Some(after) = $after {
            query = query.filter(
                batches::produced_at.lt(after.at).or(batches::produced_at.eq(after.at).and(batches::id.lt(after.id))),
            );
        }
        query.order((batches::produced_at.desc(), batches::id.desc()))
    }};
}

/// Most recently produced first; `after` is the last row of the previous page.
pub fn list(
    conn: &mut PgConnection,
    org: Uuid,
    filter: &BatchFilters,
    after: Option<&After>,
    limit: i64,
) -> QueryResult<Vec<BatchRow>> {
    page_of_batches!(batches::table.into_boxed(), org, filter, after)
        .limit(limit)
        .select(BatchRow::as_select())
        .load(conn)
}

/// [`list`], each batch with its product, in one statement whose LIMIT is
/// written in its text. With the LIMIT a bound parameter, PostgreSQL costs
/// a generic plan of the join for a tenth of the organization's rows, finds
/// it dearer than a plan for the actual limit, and planned the join again
/// on every execution (0.3 to 0.5 ms, more than running it). Written in,
/// the generic plan is the custom one and is kept; a connection prepares
/// one such statement per page size asked for (at most 200).
pub fn list_with_products(
    conn: &mut PgConnection,
    org: Uuid,
    filter: &BatchFilters,
    after: Option<&After>,
    limit: i64,
) -> QueryResult<Vec<(BatchRow, Product)>> {
    let page = page_of_batches!(batches::table.inner_join(products::table).into_boxed(), org, filter, after)
        .select((BatchRow::as_select(), Product::as_select()));
    // Sized once: growing a vector of these wide rows copied them over and
    // over.
    let mut rows = Vec::with_capacity(usize::try_from(limit).unwrap_or_default());
    for row in crate::page::LiteralLimit::new(page, limit).load_iter::<(BatchRow, Product), DefaultLoadingMode>(conn)? {
        rows.push(row?);
    }
    Ok(rows)
}

/// The first `limit` batches of each of `products` after `after`, most
/// recently produced first: a page of products' batches in one statement,
/// each product's read from its own range of the (org, product,
/// produced_at, id) index. Rows come grouped by product.
pub fn list_for_products(
    conn: &mut PgConnection,
    org: Uuid,
    products: &[Uuid],
    after: Option<&After>,
    limit: i64,
) -> QueryResult<Vec<BatchRow>> {
    use diesel::sql_types::{Array, BigInt, Timestamptz, Uuid as SqlUuid};
    let keyset = if after.is_some() { "AND (batch.produced_at, batch.id) < ($4, $5)" } else { "" };
    let query = diesel::sql_query(format!(
        "SELECT page.* FROM unnest($2::uuid[]) AS product(id) CROSS JOIN LATERAL \
         (SELECT * FROM batches batch WHERE batch.org_id = $1 AND batch.product_id = product.id {keyset} \
         ORDER BY batch.produced_at DESC, batch.id DESC LIMIT $3) page"
    ))
    .bind::<SqlUuid, _>(org)
    .bind::<Array<SqlUuid>, _>(products)
    .bind::<BigInt, _>(limit);
    match after {
        Some(after) => query.bind::<Timestamptz, _>(after.at).bind::<SqlUuid, _>(after.id).load(conn),
        None => query.load(conn),
    }
}

pub fn update(
    conn: &mut PgConnection,
    org: Uuid,
    id: Uuid,
    changes: &BatchChanges,
) -> Result<Option<BatchRow>, WriteError> {
    let changeset = Changeset {
        product_id: changes.product_id,
        code: changes.code.as_ref().map(BatchCode::as_str),
        quantity: changes.quantity.as_ref().map(decimal).transpose()?,
        produced_at: changes.produced_at,
        status: changes.status.map(BatchStatus::as_str),
        notes: changes.notes.as_ref().map(Notes::as_str),
        metadata: changes.metadata.as_ref(),
        updated_at: Utc::now(),
    };
    diesel::update(batches::table.filter(batches::org_id.eq(org).and(batches::id.eq(id))))
        .set(&changeset)
        .returning(BatchRow::as_returning())
        .get_result(conn)
        .optional()
        .map_err(|error| WriteError::classify(error, UNIQUE_FIELDS))
}

/// `Ok(false)` when there was no such batch. A batch with attachments
/// cannot be deleted (`WriteError::InUse`).
pub fn delete(conn: &mut PgConnection, org: Uuid, id: Uuid) -> Result<bool, WriteError> {
    diesel::delete(batches::table.filter(batches::org_id.eq(org).and(batches::id.eq(id))))
        .execute(conn)
        .map(|deleted| deleted > 0)
        .map_err(|error| WriteError::classify(error, UNIQUE_FIELDS))
}
