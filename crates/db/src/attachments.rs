//! The `attachments` table. A row is `pending` while its object streams into
//! storage and `stored` once the object is complete; a pending row left by
//! a crash is how the maintenance sweep finds an upload that never finished.

use crate::schema::attachments;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Bool, Integer};
use uuid::Uuid;

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = attachments)]
pub struct Attachment {
    pub id: Uuid,
    pub org_id: Uuid,
    pub batch_id: Uuid,
    pub storage_key: String,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: Option<Vec<u8>>,
    pub state: String,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

pub struct NewAttachment<'a> {
    pub id: Uuid,
    pub org_id: Uuid,
    pub batch_id: Uuid,
    pub storage_key: &'a str,
    pub filename: &'a str,
    pub content_type: &'a str,
    pub created_by: Uuid,
}

pub fn insert_pending(conn: &mut PgConnection, new: &NewAttachment<'_>) -> QueryResult<Attachment> {
    diesel::insert_into(attachments::table)
        .values((
            attachments::id.eq(new.id),
            attachments::org_id.eq(new.org_id),
            attachments::batch_id.eq(new.batch_id),
            attachments::storage_key.eq(new.storage_key),
            attachments::filename.eq(new.filename),
            attachments::content_type.eq(new.content_type),
            attachments::created_by.eq(new.created_by),
        ))
        .returning(Attachment::as_returning())
        .get_result(conn)
}

/// The object is complete: record what was stored.
pub fn mark_stored(conn: &mut PgConnection, id: Uuid, size: u64, sha256: &[u8; 32]) -> QueryResult<Attachment> {
    diesel::update(attachments::table.find(id))
        .set((
            attachments::state.eq("stored"),
            attachments::size_bytes.eq(i64::try_from(size).unwrap_or(i64::MAX)),
            attachments::sha256.eq(sha256.as_slice()),
        ))
        .returning(Attachment::as_returning())
        .get_result(conn)
}

/// Drops the row of an upload that failed before its object was stored.
pub fn delete_pending(conn: &mut PgConnection, id: Uuid) -> QueryResult<usize> {
    diesel::delete(attachments::table.find(id).filter(attachments::state.eq("pending"))).execute(conn)
}

/// A stored attachment of the organization (pending uploads are invisible).
pub fn find(conn: &mut PgConnection, org: Uuid, id: Uuid) -> QueryResult<Option<Attachment>> {
    attachments::table
        .filter(attachments::org_id.eq(org).and(attachments::id.eq(id)))
        .filter(attachments::state.ne("pending"))
        .select(Attachment::as_select())
        .first(conn)
        .optional()
}

/// A batch's attachments, newest first; at most `limit` after `after`.
pub fn list_for_batch(
    conn: &mut PgConnection,
    org: Uuid,
    batch: Uuid,
    after: Option<&crate::page::After>,
    limit: i64,
) -> QueryResult<Vec<Attachment>> {
    let mut query = attachments::table
        .filter(attachments::org_id.eq(org).and(attachments::batch_id.eq(batch)))
        .filter(attachments::state.ne("pending"))
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(
            attachments::created_at
                .lt(after.at)
                .or(attachments::created_at.eq(after.at).and(attachments::id.lt(after.id))),
        );
    }
    query
        .order((attachments::created_at.desc(), attachments::id.desc()))
        .limit(limit)
        .select(Attachment::as_select())
        .load(conn)
}

/// The first `limit` stored attachments of each of `batches` after
/// `after`, newest first: a page of batches' attachments in one statement,
/// each batch's read from its own range of the (org, batch, created_at,
/// id) index. Rows come grouped by batch.
pub fn list_for_batches(
    conn: &mut PgConnection,
    org: Uuid,
    batches: &[Uuid],
    after: Option<&crate::page::After>,
    limit: i64,
) -> QueryResult<Vec<Attachment>> {
    use diesel::sql_types::{Array, BigInt, Timestamptz, Uuid as SqlUuid};
    let keyset = if after.is_some() { "AND (attachment.created_at, attachment.id) < ($4, $5)" } else { "" };
    let query = diesel::sql_query(format!(
        "SELECT page.* FROM unnest($2::uuid[]) AS batch(id) CROSS JOIN LATERAL \
         (SELECT * FROM attachments attachment WHERE attachment.org_id = $1 AND attachment.batch_id = batch.id \
         AND attachment.state <> 'pending' {keyset} \
         ORDER BY attachment.created_at DESC, attachment.id DESC LIMIT $3) page"
    ))
    .bind::<SqlUuid, _>(org)
    .bind::<Array<SqlUuid>, _>(batches)
    .bind::<BigInt, _>(limit);
    match after {
        Some(after) => query.bind::<Timestamptz, _>(after.at).bind::<SqlUuid, _>(after.id).load(conn),
        None => query.load(conn),
    }
}

/// Deletes the row and returns its storage key, for the caller to delete the
/// object once this commits: a crash in between leaves an orphan object
/// (found by the sweep), never a row without its object.
pub fn delete(conn: &mut PgConnection, org: Uuid, id: Uuid) -> QueryResult<Option<String>> {
    diesel::delete(attachments::table.filter(attachments::org_id.eq(org).and(attachments::id.eq(id))))
        .returning(attachments::storage_key)
        .get_result(conn)
        .optional()
}

/// Up to `limit` uploads still pending `grace_minutes` after they started
/// (by the database's clock), oldest first (`attachments_pending_idx`):
/// their upload died with its process.
pub fn stale_pending(conn: &mut PgConnection, grace_minutes: i32, limit: i64) -> QueryResult<Vec<Attachment>> {
    attachments::table
        .filter(attachments::state.eq("pending"))
        .filter(
            diesel::dsl::sql::<Bool>("attachments.created_at <= now() - make_interval(mins => ")
                .bind::<Integer, _>(grace_minutes)
                .sql(")"),
        )
        .order(attachments::created_at)
        .limit(limit)
        .select(Attachment::as_select())
        .load(conn)
}

/// What the reconciliation compares with an organization's attachment
/// objects: every row, in any state, and its key.
pub fn keys_of(conn: &mut PgConnection, org: Uuid) -> QueryResult<Vec<(Uuid, String, String)>> {
    attachments::table
        .filter(attachments::org_id.eq(org))
        .select((attachments::id, attachments::storage_key, attachments::state))
        .load(conn)
}

/// Marks `missing` those of `ids` still stored; returns how many changed.
pub fn mark_missing(conn: &mut PgConnection, ids: &[Uuid]) -> QueryResult<usize> {
    diesel::update(attachments::table.filter(attachments::id.eq_any(ids)).filter(attachments::state.eq("stored")))
        .set(attachments::state.eq("missing"))
        .execute(conn)
}
