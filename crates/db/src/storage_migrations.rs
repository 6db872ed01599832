//! Progress of `stockflow-worker migrate-storage`: its runs, the objects each
//! run copied or found missing, and a listing of the source kept in a
//! session-private temporary table, so comparing millions of keys with the
//! database costs the database's memory and indexes, not the worker's.
//!
//! Stores are named by descriptors (`local:/srv/media`,
//! `s3:media@http://minio:9000`). What counts as "already copied" is judged
//! per pair of stores, across its runs: a run that starts after a finished
//! one only copies what is new.

use crate::schema::{storage_migration_objects as objects, storage_migrations as runs};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Text, Uuid as SqlUuid};
use uuid::Uuid;

const IN_PROGRESS: &str = "in_progress";
const FINISHED: &str = "finished";
const COPIED: &str = "copied";
const MISSING: &str = "missing";

/// The first key of the two-key advisory locks of this module, so they can
/// never collide with another feature's locks ("SMIG").
const LOCK_CLASS: i32 = 0x534d_4947;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = runs)]
pub struct StorageMigration {
    pub id: Uuid,
    pub source: String,
    pub target: String,
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The stores a migration copies from and to, by descriptor.
#[derive(Clone, Copy, Debug)]
pub struct Pair<'a> {
    pub source: &'a str,
    pub target: &'a str,
}

/// One object of the source listing.
#[derive(Clone, Debug, PartialEq, Eq, QueryableByName)]
pub struct ListedObject {
    #[diesel(sql_type = Text)]
    pub key: String,
    #[diesel(sql_type = BigInt)]
    pub size_bytes: i64,
}

/// What the listing holds, measured against the pair's earlier copies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, QueryableByName)]
pub struct ListingTotals {
    /// Objects not yet copied (or whose size changed since).
    #[diesel(sql_type = BigInt)]
    pub pending: i64,
    #[diesel(sql_type = BigInt)]
    pub pending_bytes: i64,
    /// Objects an earlier run of the pair already copied.
    #[diesel(sql_type = BigInt)]
    pub copied: i64,
}

/// Keys the database references that are neither in the listing nor
/// copied before: `total` of them, the first `sample` by key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MissingReferences {
    pub total: u64,
    pub sample: Vec<String>,
}

/// Takes the pair's lock for the rest of this session (a connection that
/// closes, even by a crash, releases it); false when another session holds it.
pub fn try_lock(conn: &mut PgConnection, pair: Pair<'_>) -> QueryResult<bool> {
    advisory_lock(conn, "pg_try_advisory_lock", pair)
}

/// Releases the pair's lock at once. Closing the connection releases it
/// too, but only once the server has ended the session, which a run
/// started right after may not wait for.
pub fn unlock(conn: &mut PgConnection, pair: Pair<'_>) -> QueryResult<()> {
    advisory_lock(conn, "pg_advisory_unlock", pair).map(drop)
}

fn advisory_lock(conn: &mut PgConnection, function: &str, pair: Pair<'_>) -> QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Answer {
        #[diesel(sql_type = Bool)]
        done: bool,
    }
    let answer: Answer = diesel::sql_query(format!("SELECT {function}($1, hashtext($2)) AS done"))
        .bind::<Integer, _>(LOCK_CLASS)
        .bind::<Text, _>(format!("{} -> {}", pair.source, pair.target))
        .get_result(conn)?;
    Ok(answer.done)
}

pub fn find_unfinished(conn: &mut PgConnection, pair: Pair<'_>) -> QueryResult<Option<StorageMigration>> {
    runs::table
        .filter(runs::source.eq(pair.source))
        .filter(runs::target.eq(pair.target))
        .filter(runs::status.eq(IN_PROGRESS))
        .select(StorageMigration::as_select())
        .first(conn)
        .optional()
}

/// The pair's most recent run, finished or not.
pub fn latest(conn: &mut PgConnection, pair: Pair<'_>) -> QueryResult<Option<StorageMigration>> {
    runs::table
        .filter(runs::source.eq(pair.source))
        .filter(runs::target.eq(pair.target))
        .order(runs::started_at.desc())
        .select(StorageMigration::as_select())
        .first(conn)
        .optional()
}

/// The pair's unfinished run, started now if there is none. Safe against a
/// concurrent starter: the partial unique index lets only one insert win.
pub fn resume_or_start(conn: &mut PgConnection, pair: Pair<'_>) -> QueryResult<StorageMigration> {
    diesel::insert_into(runs::table)
        .values((runs::source.eq(pair.source), runs::target.eq(pair.target)))
        .on_conflict_do_nothing()
        .execute(conn)?;
    find_unfinished(conn, pair)?.ok_or(diesel::result::Error::NotFound)
}

pub fn finish(conn: &mut PgConnection, id: Uuid) -> QueryResult<()> {
    diesel::update(runs::table.find(id))
        .filter(runs::status.eq(IN_PROGRESS))
        .set((runs::status.eq(FINISHED), runs::finished_at.eq(diesel::dsl::now)))
        .execute(conn)
        .map(drop)
}

/// Records a verified copy; a key recorded missing before is copied now.
pub fn record_copied(conn: &mut PgConnection, id: Uuid, key: &str, size: i64, sha256: &[u8; 32]) -> QueryResult<()> {
    use diesel::upsert::excluded;
    diesel::insert_into(objects::table)
        .values((
            objects::migration_id.eq(id),
            objects::key.eq(key),
            objects::size_bytes.eq(size),
            objects::sha256.eq(&sha256[..]),
            objects::status.eq(COPIED),
        ))
        .on_conflict((objects::migration_id, objects::key))
        .do_update()
        .set((
            objects::size_bytes.eq(excluded(objects::size_bytes)),
            objects::sha256.eq(excluded(objects::sha256)),
            objects::status.eq(excluded(objects::status)),
            objects::recorded_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .map(drop)
}

/// Records a key that vanished from the source. A copy this run already
/// made stays recorded: the object is safe at the target.
pub fn record_missing(conn: &mut PgConnection, id: Uuid, key: &str) -> QueryResult<()> {
    diesel::insert_into(objects::table)
        .values((objects::migration_id.eq(id), objects::key.eq(key), objects::status.eq(MISSING)))
        .on_conflict_do_nothing()
        .execute(conn)
        .map(drop)
}

/// Creates this session's empty listing table. It vanishes with the
/// connection and no other session sees it.
pub fn create_listing(conn: &mut PgConnection) -> QueryResult<()> {
    diesel::sql_query(
        "CREATE TEMPORARY TABLE IF NOT EXISTS storage_migration_listing \
         (key text PRIMARY KEY, size_bytes bigint NOT NULL)",
    )
    .execute(conn)?;
    diesel::sql_query("TRUNCATE pg_temp.storage_migration_listing").execute(conn).map(drop)
}

pub fn add_to_listing(conn: &mut PgConnection, batch: &[ListedObject]) -> QueryResult<()> {
    let (keys, sizes): (Vec<&str>, Vec<i64>) = batch.iter().map(|o| (o.key.as_str(), o.size_bytes)).unzip();
    diesel::sql_query(
        "INSERT INTO pg_temp.storage_migration_listing (key, size_bytes) \
         SELECT * FROM unnest($1::text[], $2::bigint[]) ON CONFLICT (key) DO NOTHING",
    )
    .bind::<Array<Text>, _>(keys)
    .bind::<Array<BigInt>, _>(sizes)
    .execute(conn)
    .map(drop)
}

/// True when a run of the pair ($1, $2) copied `l.key` at its listed size:
/// a changed size means the source object changed and is copied again.
const COPIED_AT_SIZE: &str = "EXISTS (SELECT 1 FROM storage_migration_objects o \
     JOIN storage_migrations m ON m.id = o.migration_id \
     WHERE m.source = $1 AND m.target = $2 AND o.key = l.key \
     AND o.status = 'copied' AND o.size_bytes = l.size_bytes)";

pub fn listing_totals(conn: &mut PgConnection, pair: Pair<'_>) -> QueryResult<ListingTotals> {
    diesel::sql_query(format!(
        "SELECT count(*) FILTER (WHERE NOT done) AS pending, \
         coalesce(sum(size_bytes) FILTER (WHERE NOT done), 0)::bigint AS pending_bytes, \
         count(*) FILTER (WHERE done) AS copied \
         FROM (SELECT l.size_bytes, {COPIED_AT_SIZE} AS done FROM pg_temp.storage_migration_listing l) listed"
    ))
    .bind::<Text, _>(pair.source)
    .bind::<Text, _>(pair.target)
    .get_result(conn)
}

/// Up to `limit` listed objects still to copy, by key, after `after` (the
/// last key of the previous page; "" for the first).
pub fn pending_page(
    conn: &mut PgConnection,
    pair: Pair<'_>,
    after: &str,
    limit: i64,
) -> QueryResult<Vec<ListedObject>> {
    diesel::sql_query(format!(
        "SELECT l.key, l.size_bytes FROM pg_temp.storage_migration_listing l \
         WHERE l.key > $3 AND NOT {COPIED_AT_SIZE} ORDER BY l.key LIMIT $4"
    ))
    .bind::<Text, _>(pair.source)
    .bind::<Text, _>(pair.target)
    .bind::<Text, _>(after)
    .bind::<BigInt, _>(limit)
    .load(conn)
}

/// Keys of stored attachments and succeeded exports that are not in the
/// listing and that no run of the pair ($1, $2) copied before.
const MISSING_REFERENCES: &str = "WITH refs AS ( \
         SELECT storage_key AS key FROM attachments WHERE state = 'stored' \
         UNION \
         SELECT storage_key FROM exports WHERE status = 'succeeded' AND storage_key IS NOT NULL) \
     SELECT r.key FROM refs r \
     WHERE NOT EXISTS (SELECT 1 FROM pg_temp.storage_migration_listing l WHERE l.key = r.key) \
     AND NOT EXISTS (SELECT 1 FROM storage_migration_objects o \
         JOIN storage_migrations m ON m.id = o.migration_id \
         WHERE m.source = $1 AND m.target = $2 AND o.key = r.key AND o.status = 'copied')";

pub fn missing_references(conn: &mut PgConnection, pair: Pair<'_>, sample: i64) -> QueryResult<MissingReferences> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        key: String,
        #[diesel(sql_type = BigInt)]
        total: i64,
    }
    let rows: Vec<Row> = diesel::sql_query(format!(
        "SELECT key, count(*) OVER () AS total FROM ({MISSING_REFERENCES}) missing ORDER BY key LIMIT $3"
    ))
    .bind::<Text, _>(pair.source)
    .bind::<Text, _>(pair.target)
    .bind::<BigInt, _>(sample)
    .load(conn)?;
    let total = rows.first().map_or(0, |row| u64::try_from(row.total).unwrap_or(0));
    Ok(MissingReferences { total, sample: rows.into_iter().map(|row| row.key).collect() })
}

/// Records every missing reference as missing in run `id`; returns how many.
pub fn record_missing_references(conn: &mut PgConnection, pair: Pair<'_>, id: Uuid) -> QueryResult<usize> {
    diesel::sql_query(format!(
        "INSERT INTO storage_migration_objects (migration_id, key, status) \
         SELECT $3, key, 'missing' FROM ({MISSING_REFERENCES}) missing \
         ON CONFLICT (migration_id, key) DO NOTHING"
    ))
    .bind::<Text, _>(pair.source)
    .bind::<Text, _>(pair.target)
    .bind::<SqlUuid, _>(id)
    .execute(conn)
}
