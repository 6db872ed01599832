//! Export rows: created with their job in one transaction, at most a few
//! active per organization, run by the worker under a row lock, and
//! streamed out of PostgreSQL with `COPY` (see [`copy`]).

mod copy;

pub use copy::{CopyError, copy_out, copy_script};

use crate::outbox;
use crate::page::{After, WriteError};
use crate::schema::{exports, organizations};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::Bool;
use std::fmt;
use stockflow_domain::{Envelope, ExportFilters, ExportFormat, ExportRequested, ExportStatus};
use uuid::Uuid;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = exports)]
pub struct ExportRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub requested_by: Option<Uuid>,
    pub kind: String,
    pub format: String,
    pub filters: serde_json::Value,
    pub status: String,
    pub attempts: i32,
    pub storage_key: Option<String>,
    pub row_count: Option<i64>,
    pub size_bytes: Option<i64>,
    pub sha256: Option<Vec<u8>>,
    pub error: Option<String>,
    pub idempotency_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl ExportRow {
    /// The status as the domain knows it; the CHECK constraint keeps the
    /// column to these values.
    pub fn status(&self) -> ExportStatus {
        ExportStatus::parse(&self.status).unwrap_or(ExportStatus::Failed)
    }

    /// Why the export failed, as clients may see it. A stored value outside
    /// the closed set (a raw error written by an older build) reads as
    /// [`ExportFailure::Internal`], so no detail ever reaches a client.
    pub fn failure(&self) -> Option<ExportFailure> {
        self.error.as_deref().map(|stored| ExportFailure::parse(stored).unwrap_or(ExportFailure::Internal))
    }
}

/// Why an export failed: the `error` clients read. A small closed set, so
/// no database or storage message reaches them; the worker logs the detail
/// and puts it in the dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFailure {
    /// The file store failed or could not be reached on every attempt.
    Storage,
    /// The database failed while the export ran, on every attempt.
    Database,
    /// The stored request cannot be run (it was not written by this api).
    Invalid,
    /// Anything else.
    Internal,
}

impl ExportFailure {
    pub const ALL: [Self; 4] = [Self::Storage, Self::Database, Self::Invalid, Self::Internal];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Storage => "storage_error",
            Self::Database => "database_error",
            Self::Invalid => "invalid_export",
            Self::Internal => "internal_error",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|failure| failure.as_str() == raw)
    }
}

impl fmt::Display for ExportFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub struct NewExport<'a> {
    pub requested_by: Uuid,
    pub format: ExportFormat,
    pub filters: &'a ExportFilters,
    pub idempotency_key: Option<&'a str>,
    /// The request id, carried by the job so logs of both ends meet.
    pub correlation_id: &'a str,
}

pub enum Created {
    /// A new export, with the id of its job in the outbox.
    New { export: ExportRow, job: Uuid },
    /// The export an earlier request with the same idempotency key made.
    Existing(ExportRow),
    /// Nothing written: the organization already has `active` exports queued
    /// or running, the most it may have.
    LimitReached { active: i64 },
}

/// Writes the export and its job in one transaction, so there is never an
/// export without a job or a job without an export; refuses when the
/// organization already has `max_active` exports queued or running.
pub fn create(conn: &mut PgConnection, org: Uuid, new: &NewExport<'_>, max_active: u32) -> Result<Created, WriteError> {
    let attempt = conn.transaction(|conn| {
        // Requests of one organization take turns from here to the commit,
        // so two of them cannot both count one free place. NO KEY UPDATE
        // leaves alone the KEY SHARE locks that inserts referencing the
        // organization (products, batches) take.
        organizations::table.find(org).select(organizations::id).for_no_key_update().first::<Uuid>(conn)?;
        if let Some(existing) = find_by_idempotency_key(conn, org, new.idempotency_key)? {
            return Ok(Created::Existing(existing));
        }
        let active = count_active(conn, org)?;
        if active >= i64::from(max_active) {
            return Ok(Created::LimitReached { active });
        }
        let export: ExportRow = diesel::insert_into(exports::table)
            .values((
                exports::org_id.eq(org),
                exports::requested_by.eq(new.requested_by),
                exports::kind.eq(new.filters.kind().as_str()),
                exports::format.eq(new.format.as_str()),
                exports::filters.eq(new.filters.to_json()),
                exports::idempotency_key.eq(new.idempotency_key),
            ))
            .returning(ExportRow::as_returning())
            .get_result(conn)?;
        let envelope = Envelope::new(ExportRequested { export_id: export.id, org_id: org }, new.correlation_id);
        outbox::insert(conn, &envelope)?;
        Ok(Created::New { export, job: envelope.id })
    });
    match attempt {
        // Two requests with one key raced; the loser returns the winner's.
        Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, info))
            if info.constraint_name() == Some("exports_org_idempotency_key") =>
        {
            find_by_idempotency_key(conn, org, new.idempotency_key)?
                .map(Created::Existing)
                .ok_or(WriteError::Taken { field: "idempotency_key" })
        }
        other => Ok(other?),
    }
}

/// Exports of the organization that are queued or running.
pub fn count_active(conn: &mut PgConnection, org: Uuid) -> QueryResult<i64> {
    let active = [ExportStatus::Queued.as_str(), ExportStatus::Running.as_str()];
    exports::table.filter(exports::org_id.eq(org).and(exports::status.eq_any(active))).count().get_result(conn)
}

fn find_by_idempotency_key(conn: &mut PgConnection, org: Uuid, key: Option<&str>) -> QueryResult<Option<ExportRow>> {
    let Some(key) = key else { return Ok(None) };
    let row = exports::table
        .filter(exports::org_id.eq(org).and(exports::idempotency_key.eq(key)))
        .select(as_read_now())
        .first(conn)
        .optional()?;
    Ok(row.map(as_of_now))
}

/// The export as clients see it: one past its `expires_at` (by the
/// database's clock) reads as `expired` even before the sweep removed its
/// file, so a download never depends on when the sweep last ran.
pub fn find(conn: &mut PgConnection, org: Uuid, id: Uuid) -> QueryResult<Option<ExportRow>> {
    let row = exports::table
        .filter(exports::org_id.eq(org).and(exports::id.eq(id)))
        .select(as_read_now())
        .first(conn)
        .optional()?;
    Ok(row.map(as_of_now))
}

/// The row and whether it is past its expiry now.
type ReadNow = (diesel::helper_types::AsSelect<ExportRow, diesel::pg::Pg>, diesel::expression::SqlLiteral<Bool>);

fn as_read_now() -> ReadNow {
    (ExportRow::as_select(), diesel::dsl::sql::<Bool>("(exports.status = 'succeeded' AND exports.expires_at <= now())"))
}

fn as_of_now((mut row, past_expiry): (ExportRow, bool)) -> ExportRow {
    if past_expiry {
        row.status = ExportStatus::Expired.as_str().to_owned();
    }
    row
}

/// Newest first, as [`find`] reads them; `after` is the last row of the
/// previous page.
pub fn list(conn: &mut PgConnection, org: Uuid, after: Option<&After>, limit: i64) -> QueryResult<Vec<ExportRow>> {
    let mut query = exports::table.filter(exports::org_id.eq(org)).into_boxed();
    if let Some(after) = after {
        query = query.filter(
            exports::created_at.lt(after.at).or(exports::created_at.eq(after.at).and(exports::id.lt(after.id))),
        );
    }
    let rows =
        query.order((exports::created_at.desc(), exports::id.desc())).limit(limit).select(as_read_now()).load(conn)?;
    Ok(rows.into_iter().map(as_of_now).collect())
}

/// The organization an export belongs to, whichever it is: only to say
/// why a job naming it under another organization is refused.
pub fn owner(conn: &mut PgConnection, id: Uuid) -> QueryResult<Option<Uuid>> {
    exports::table.find(id).select(exports::org_id).first(conn).optional()
}

/// Records that a worker took the export: `running`, one more attempt.
/// Returns the row as it is now; a finished export is left as it is.
pub fn start_attempt(conn: &mut PgConnection, org: Uuid, id: Uuid) -> QueryResult<Option<ExportRow>> {
    conn.transaction(|conn| {
        let Some(row) = lock(conn, org, id)? else { return Ok(None) };
        if row.status().is_finished() {
            return Ok(Some(row));
        }
        diesel::update(of(org, id))
            .set((
                exports::status.eq(ExportStatus::Running.as_str()),
                exports::attempts.eq(exports::attempts + 1),
                exports::started_at.eq(diesel::dsl::now),
            ))
            .returning(ExportRow::as_returning())
            .get_result(conn)
            .optional()
    })
}

/// `SELECT ... FOR UPDATE`: held until the caller's transaction ends, so
/// two deliveries of one job never run it at once. The lock is held for a
/// whole export, so another delivery may wait on it that long, but never
/// on a holder that is gone: the server ends a silent holder's session.
pub fn lock(conn: &mut PgConnection, org: Uuid, id: Uuid) -> QueryResult<Option<ExportRow>> {
    crate::pool::end_session_if_client_goes_silent(conn)?;
    of(org, id).for_update().select(ExportRow::as_select()).first(conn).optional()
}

/// The export `id` of `org`: every change the worker makes names both, so a
/// job that names the wrong organization changes nothing.
#[diesel::dsl::auto_type]
fn of(org: Uuid, id: Uuid) -> _ {
    exports::table.filter(exports::org_id.eq(org).and(exports::id.eq(id)))
}

/// What a finished run measured.
pub struct Produced<'a> {
    pub storage_key: &'a str,
    pub row_count: u64,
    pub size_bytes: u64,
    pub sha256: [u8; 32],
    pub retention: chrono::Duration,
}

pub fn mark_succeeded(conn: &mut PgConnection, org: Uuid, id: Uuid, produced: &Produced<'_>) -> QueryResult<usize> {
    let now = Utc::now();
    diesel::update(of(org, id))
        .set((
            exports::status.eq(ExportStatus::Succeeded.as_str()),
            exports::storage_key.eq(produced.storage_key),
            exports::row_count.eq(i64::try_from(produced.row_count).unwrap_or(i64::MAX)),
            exports::size_bytes.eq(i64::try_from(produced.size_bytes).unwrap_or(i64::MAX)),
            exports::sha256.eq(produced.sha256.as_slice()),
            exports::error.eq(None::<String>),
            exports::finished_at.eq(now),
            exports::expires_at.eq(now + produced.retention),
        ))
        .execute(conn)
}

/// Gives up on an export, unless it finished meanwhile.
pub fn mark_failed(conn: &mut PgConnection, org: Uuid, id: Uuid, failure: ExportFailure) -> QueryResult<usize> {
    let unfinished = [ExportStatus::Queued.as_str(), ExportStatus::Running.as_str()];
    diesel::update(of(org, id).filter(exports::status.eq_any(unfinished)))
        .set((
            exports::status.eq(ExportStatus::Failed.as_str()),
            exports::error.eq(failure.as_str()),
            exports::finished_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
}

/// A succeeded export whose file is due for removal.
#[derive(Debug, Clone, Queryable)]
pub struct DueExport {
    pub id: Uuid,
    pub org_id: Uuid,
    pub storage_key: Option<String>,
}

/// Up to `limit` succeeded exports past their `expires_at` by the
/// database's clock, soonest expired first (`exports_expiry_idx`).
pub fn due_for_expiry(conn: &mut PgConnection, limit: i64) -> QueryResult<Vec<DueExport>> {
    exports::table
        .filter(exports::status.eq(ExportStatus::Succeeded.as_str()))
        .filter(exports::expires_at.le(diesel::dsl::now))
        .order(exports::expires_at)
        .limit(limit)
        .select((exports::id, exports::org_id, exports::storage_key))
        .load(conn)
}

/// Marks `expired` those of `ids` still succeeded and past expiry, once
/// their files are gone; returns how many changed.
pub fn mark_expired(conn: &mut PgConnection, ids: &[Uuid]) -> QueryResult<usize> {
    diesel::update(
        exports::table
            .filter(exports::id.eq_any(ids))
            .filter(exports::status.eq(ExportStatus::Succeeded.as_str()))
            .filter(exports::expires_at.le(diesel::dsl::now)),
    )
    .set(exports::status.eq(ExportStatus::Expired.as_str()))
    .execute(conn)
}

/// What the reconciliation compares with an organization's export objects:
/// each export that has, or is about to have, a file.
#[derive(Debug, Clone, Queryable)]
pub struct ExportFile {
    pub id: Uuid,
    pub status: String,
    pub format: String,
    pub storage_key: Option<String>,
    /// Past `expires_at`: the expiry sweep, not the reconciliation, deals with it.
    pub past_expiry: bool,
}

/// The organization's exports that are queued, running (their file may be
/// being written) or succeeded; failed, expired and missing ones name no
/// file that should exist.
pub fn files_of(conn: &mut PgConnection, org: Uuid) -> QueryResult<Vec<ExportFile>> {
    let live = [ExportStatus::Queued.as_str(), ExportStatus::Running.as_str(), ExportStatus::Succeeded.as_str()];
    exports::table
        .filter(exports::org_id.eq(org).and(exports::status.eq_any(live)))
        .select((
            exports::id,
            exports::status,
            exports::format,
            exports::storage_key,
            diesel::dsl::sql::<Bool>("coalesce(exports.expires_at <= now(), false)"),
        ))
        .load(conn)
}

/// Marks `missing` those of `ids` still succeeded; returns how many changed.
pub fn mark_missing(conn: &mut PgConnection, ids: &[Uuid]) -> QueryResult<usize> {
    diesel::update(
        exports::table.filter(exports::id.eq_any(ids)).filter(exports::status.eq(ExportStatus::Succeeded.as_str())),
    )
    .set(exports::status.eq(ExportStatus::Missing.as_str()))
    .execute(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_read_back_and_anything_else_reads_as_internal() {
        for failure in ExportFailure::ALL {
            assert_eq!(ExportFailure::parse(failure.as_str()), Some(failure));
        }
        assert_eq!(ExportFailure::parse("storage: connection refused (os error 111)"), None);
    }
}
