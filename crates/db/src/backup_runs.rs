//! Runs of the backup service: one row per run asked for, with the key,
//! size and sha256 of every artifact it stored, so a run can be verified
//! and restored from the row alone.
//!
//! One run at a time per installation: a run holds a session advisory lock
//! for as long as it works. A session lock (not a row lock) because a run
//! lasts minutes to hours across many statements, and a crashed backup
//! process releases it when its connection closes.

use crate::schema::backup_runs;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool};
use uuid::Uuid;

pub const RUNNING: &str = "running";
pub const SUCCEEDED: &str = "succeeded";
pub const FAILED: &str = "failed";

/// The key of the backup advisory lock ("StBackup"), distinct from the
/// scheduler's leader lock and the migration lock.
const LOCK_KEY: i64 = 0x5374_4261_636b_7570;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = backup_runs)]
pub struct BackupRun {
    pub id: Uuid,
    pub trigger: String,
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub db_key: Option<String>,
    pub db_bytes: Option<i64>,
    pub db_sha256: Option<Vec<u8>>,
    pub table_counts: Option<serde_json::Value>,
    pub media_manifest_key: Option<String>,
    pub media_objects: Option<i64>,
    pub media_bytes: Option<i64>,
    pub media_new_bytes: Option<i64>,
    pub verified_at: Option<DateTime<Utc>>,
    pub verify_method: Option<String>,
    pub retention_class: Option<String>,
    pub error: Option<String>,
}

/// What the database dump stored.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseArtifact {
    pub key: String,
    pub bytes: i64,
    pub sha256: [u8; 32],
    /// Table name -> exact row count in the dump's snapshot.
    pub table_counts: serde_json::Value,
}

/// What the media copy stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaArtifact<'a> {
    pub manifest_key: &'a str,
    pub objects: i64,
    pub bytes: i64,
    /// Bytes copied by this run; 0 when every object was already there.
    pub new_bytes: i64,
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

/// Takes the installation's backup lock for this session; false when
/// another session holds it. Only on a connection that stays with the run.
pub fn try_lock(conn: &mut PgConnection) -> QueryResult<bool> {
    let answer: Locked =
        diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked").bind::<BigInt, _>(LOCK_KEY).get_result(conn)?;
    Ok(answer.locked)
}

/// Releases the lock at once, rather than when the session ends, which
/// the next run may not wait for.
pub fn unlock(conn: &mut PgConnection) -> QueryResult<()> {
    diesel::sql_query("SELECT pg_advisory_unlock($1) AS locked").bind::<BigInt, _>(LOCK_KEY).execute(conn).map(drop)
}

/// A new run, `running`.
pub fn start(conn: &mut PgConnection, trigger: &str) -> QueryResult<BackupRun> {
    diesel::insert_into(backup_runs::table)
        .values((backup_runs::trigger.eq(trigger), backup_runs::status.eq(RUNNING)))
        .returning(BackupRun::as_returning())
        .get_result(conn)
}

/// Records a run asked for while `running` held the lock: it is answered
/// (a failed row saying why) rather than run twice.
pub fn refuse(conn: &mut PgConnection, trigger: &str, running: Option<Uuid>) -> QueryResult<BackupRun> {
    let holder = running.map_or_else(|| "unknown".to_owned(), |id| id.to_string());
    diesel::insert_into(backup_runs::table)
        .values((
            backup_runs::trigger.eq(trigger),
            backup_runs::status.eq(FAILED),
            backup_runs::finished_at.eq(diesel::dsl::now),
            backup_runs::error.eq(format!("another backup run was in progress: {holder}")),
        ))
        .returning(BackupRun::as_returning())
        .get_result(conn)
}

/// The run that is `running` now, newest first (a crashed run stays
/// `running` until `abandon` marks it).
pub fn running(conn: &mut PgConnection) -> QueryResult<Option<Uuid>> {
    backup_runs::table
        .filter(backup_runs::status.eq(RUNNING))
        .order(backup_runs::started_at.desc())
        .select(backup_runs::id)
        .first(conn)
        .optional()
}

/// Marks failed the runs left `running` by a process that died: only call
/// it while holding the lock, when no run can really be running.
pub fn abandon(conn: &mut PgConnection) -> QueryResult<usize> {
    diesel::update(backup_runs::table.filter(backup_runs::status.eq(RUNNING)))
        .set((
            backup_runs::status.eq(FAILED),
            backup_runs::finished_at.eq(diesel::dsl::now),
            backup_runs::error.eq("the backup process stopped before the run finished"),
        ))
        .execute(conn)
}

pub fn record_database(conn: &mut PgConnection, id: Uuid, artifact: &DatabaseArtifact) -> QueryResult<()> {
    diesel::update(backup_runs::table.find(id))
        .set((
            backup_runs::db_key.eq(&artifact.key),
            backup_runs::db_bytes.eq(artifact.bytes),
            backup_runs::db_sha256.eq(artifact.sha256.as_slice()),
            backup_runs::table_counts.eq(&artifact.table_counts),
        ))
        .execute(conn)
        .map(drop)
}

pub fn record_media(conn: &mut PgConnection, id: Uuid, artifact: MediaArtifact<'_>) -> QueryResult<()> {
    diesel::update(backup_runs::table.find(id))
        .set((
            backup_runs::media_manifest_key.eq(artifact.manifest_key),
            backup_runs::media_objects.eq(artifact.objects),
            backup_runs::media_bytes.eq(artifact.bytes),
            backup_runs::media_new_bytes.eq(artifact.new_bytes),
        ))
        .execute(conn)
        .map(drop)
}

pub fn succeed(conn: &mut PgConnection, id: Uuid) -> QueryResult<()> {
    diesel::update(backup_runs::table.find(id))
        .set((backup_runs::status.eq(SUCCEEDED), backup_runs::finished_at.eq(diesel::dsl::now)))
        .execute(conn)
        .map(drop)
}

/// Fails a run, also one that had succeeded (a verify that failed): its
/// verification is withdrawn, as the CHECK requires. The first finish time stays.
pub fn fail(conn: &mut PgConnection, id: Uuid, error: &str) -> QueryResult<()> {
    diesel::update(backup_runs::table.find(id))
        .set((
            backup_runs::status.eq(FAILED),
            backup_runs::error.eq(error),
            backup_runs::verified_at.eq(None::<DateTime<Utc>>),
            backup_runs::verify_method.eq(None::<String>),
            backup_runs::finished_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .map(drop)
}

/// Records a passed verification of a succeeded run; false when the run is
/// not (or no longer) succeeded.
pub fn mark_verified(conn: &mut PgConnection, id: Uuid, method: &str) -> QueryResult<bool> {
    let updated = diesel::update(backup_runs::table.find(id).filter(backup_runs::status.eq(SUCCEEDED)))
        .set((backup_runs::verified_at.eq(diesel::dsl::now), backup_runs::verify_method.eq(method)))
        .execute(conn)?;
    Ok(updated == 1)
}

/// Newest first.
pub fn list(conn: &mut PgConnection, limit: i64) -> QueryResult<Vec<BackupRun>> {
    backup_runs::table
        .order((backup_runs::started_at.desc(), backup_runs::id.desc()))
        .limit(limit)
        .select(BackupRun::as_select())
        .load(conn)
}

pub fn get(conn: &mut PgConnection, id: Uuid) -> QueryResult<Option<BackupRun>> {
    backup_runs::table.find(id).select(BackupRun::as_select()).first(conn).optional()
}

/// The newest succeeded run: what "latest" means to verify and restore.
pub fn latest_succeeded(conn: &mut PgConnection) -> QueryResult<Option<BackupRun>> {
    backup_runs::table
        .filter(backup_runs::status.eq(SUCCEEDED))
        .order((backup_runs::started_at.desc(), backup_runs::id.desc()))
        .select(BackupRun::as_select())
        .first(conn)
        .optional()
}

/// A page of runs, newest first, after the keyset position `after`.
pub fn page(conn: &mut PgConnection, after: Option<&crate::page::After>, limit: i64) -> QueryResult<Vec<BackupRun>> {
    let mut query = backup_runs::table.into_boxed();
    if let Some(after) = after {
        query = query.filter(
            backup_runs::started_at
                .lt(after.at)
                .or(backup_runs::started_at.eq(after.at).and(backup_runs::id.lt(after.id))),
        );
    }
    query
        .order((backup_runs::started_at.desc(), backup_runs::id.desc()))
        .limit(limit)
        .select(BackupRun::as_select())
        .load(conn)
}

/// Every run, newest first: what retention decides over.
pub fn all(conn: &mut PgConnection) -> QueryResult<Vec<BackupRun>> {
    backup_runs::table
        .order((backup_runs::started_at.desc(), backup_runs::id.desc()))
        .select(BackupRun::as_select())
        .load(conn)
}

/// Forgets a run whose artifacts are gone.
pub fn delete(conn: &mut PgConnection, id: Uuid) -> QueryResult<usize> {
    diesel::delete(backup_runs::table.find(id)).execute(conn)
}

/// How recent the installation's backups are, for alerts and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Freshness {
    /// When the newest succeeded run finished.
    pub last_success: Option<DateTime<Utc>>,
    /// The newest `verified_at` of a run still succeeded.
    pub last_verified: Option<DateTime<Utc>>,
    /// When the first run on record started.
    pub first_started: Option<DateTime<Utc>>,
}

pub fn freshness(conn: &mut PgConnection) -> QueryResult<Freshness> {
    use diesel::dsl::{max, min};
    let last_success = backup_runs::table
        .filter(backup_runs::status.eq(SUCCEEDED))
        .select(max(backup_runs::finished_at))
        .first(conn)?;
    let last_verified = backup_runs::table
        .filter(backup_runs::status.eq(SUCCEEDED))
        .select(max(backup_runs::verified_at))
        .first(conn)?;
    let first_started = backup_runs::table.select(min(backup_runs::started_at)).first(conn)?;
    Ok(Freshness { last_success, last_verified, first_started })
}
