//! Jobs waiting to be published. A job is written here in the transaction
//! of the row it belongs to, so it exists exactly when that row does; the
//! relay publishes it and marks it published.

use crate::schema::outbox;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Jsonb, Text, Uuid as SqlUuid};
use stockflow_domain::{Envelope, Job};
use uuid::Uuid;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = outbox)]
pub struct OutboxMessage {
    pub id: Uuid,
    pub routing_key: String,
    pub message: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub attempts: i32,
}

/// Adds a job; the envelope id becomes the row id, so the message on the
/// broker and its outbox row share one id.
pub fn insert<P: Job>(conn: &mut PgConnection, envelope: &Envelope<P>) -> QueryResult<()> {
    let message =
        serde_json::to_value(envelope).map_err(|error| diesel::result::Error::SerializationError(Box::new(error)))?;
    diesel::insert_into(outbox::table)
        .values((outbox::id.eq(envelope.id), outbox::routing_key.eq(P::TYPE), outbox::message.eq(message)))
        .execute(conn)?;
    Ok(())
}

/// A job whose envelope was built elsewhere (the scheduler sends many at
/// once, of several types).
#[derive(Debug, Clone)]
pub struct RawJob {
    pub id: Uuid,
    pub routing_key: String,
    pub message: serde_json::Value,
}

/// Adds many jobs in one statement of one array per column (a multi-row
/// VALUES of thousands of bound values is slower to plan than to insert).
pub fn insert_raw(conn: &mut PgConnection, jobs: &[RawJob]) -> QueryResult<usize> {
    if jobs.is_empty() {
        return Ok(0);
    }
    diesel::sql_query("INSERT INTO outbox (id, routing_key, message) SELECT * FROM unnest($1, $2, $3)")
        .bind::<Array<SqlUuid>, _>(jobs.iter().map(|job| job.id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(jobs.iter().map(|job| job.routing_key.as_str()).collect::<Vec<_>>())
        .bind::<Array<Jsonb>, _>(jobs.iter().map(|job| &job.message).collect::<Vec<_>>())
        .execute(conn)
}

/// Locks up to `limit` unpublished jobs, oldest first, skipping those
/// another relay holds: several processes can sweep at once, and each job
/// is taken by one of them. Call inside a transaction, which holds the locks
/// until the caller marks what it published.
pub fn claim_unpublished(conn: &mut PgConnection, limit: i64) -> QueryResult<Vec<OutboxMessage>> {
    outbox::table
        .filter(outbox::published_at.is_null())
        .order(outbox::created_at.asc())
        .limit(limit)
        .for_update()
        .skip_locked()
        .select(OutboxMessage::as_select())
        .load(conn)
}

/// Claims the given jobs if they are still unpublished and free: what the
/// relay does right after the commit that wrote them.
pub fn claim_ids(conn: &mut PgConnection, ids: &[Uuid]) -> QueryResult<Vec<OutboxMessage>> {
    outbox::table
        .filter(outbox::id.eq_any(ids).and(outbox::published_at.is_null()))
        .order(outbox::created_at.asc())
        .for_update()
        .skip_locked()
        .select(OutboxMessage::as_select())
        .load(conn)
}

pub fn mark_published(conn: &mut PgConnection, ids: &[Uuid]) -> QueryResult<usize> {
    diesel::update(outbox::table.filter(outbox::id.eq_any(ids)))
        .set((outbox::published_at.eq(diesel::dsl::now), outbox::attempts.eq(outbox::attempts + 1)))
        .execute(conn)
}

pub fn record_failure(conn: &mut PgConnection, id: Uuid, error: &str) -> QueryResult<usize> {
    diesel::update(outbox::table.find(id))
        .set((outbox::attempts.eq(outbox::attempts + 1), outbox::last_error.eq(error)))
        .execute(conn)
}

pub fn unpublished_count(conn: &mut PgConnection) -> QueryResult<i64> {
    outbox::table.filter(outbox::published_at.is_null()).count().get_result(conn)
}

/// Deletes published jobs older than `before`; the broker and the domain
/// rows keep what matters after that.
pub fn delete_published_before(conn: &mut PgConnection, before: DateTime<Utc>) -> QueryResult<usize> {
    diesel::delete(outbox::table.filter(outbox::published_at.lt(before))).execute(conn)
}
