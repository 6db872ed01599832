//! The exports organizations' schedules make. A slot of an export schedule
//! makes exactly what `POST /v1/exports` makes: an export row (`queued`)
//! and its `export.requested` job in the outbox, counted against the
//! organization's limit of active exports under the same lock; the run
//! names both (`export_id`, and `job_id` = the envelope's id, by which the
//! worker reports the outcome). The scheduler does this for thousands of
//! slots in one transaction, so each step is one statement for all of them.

use crate::outbox::{self, RawJob};
use crate::schedule_runs::{self, NewRun};
use crate::schedules::{self, ScheduleRow};
use crate::schema::{exports, organizations, schedules as schedules_table};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use std::collections::HashMap;
use stockflow_domain::{Envelope, ExportRequested, ExportSpec, ExportStatus, Job, RunOutcome, RunTrigger};
use uuid::Uuid;

/// An export row to insert; its id is chosen here so that the run and the
/// job can name it in the same round of statements.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = exports)]
pub struct NewScheduledExport {
    pub id: Uuid,
    pub org_id: Uuid,
    pub requested_by: Option<Uuid>,
    pub kind: &'static str,
    pub format: &'static str,
    pub filters: serde_json::Value,
}

/// What firing one slot of an export schedule makes.
#[derive(Debug, Clone)]
pub struct Made {
    pub export: NewScheduledExport,
    pub job: RawJob,
}

/// The export and job of one run, as `POST /v1/exports` would write them.
pub fn make(org: Uuid, requested_by: Option<Uuid>, spec: &ExportSpec, correlation: String, now: DateTime<Utc>) -> Made {
    let export_id = Uuid::new_v4();
    let mut envelope = Envelope::new(ExportRequested { export_id, org_id: org }, correlation);
    envelope.occurred_at = now;
    // An envelope of plain ids and strings always serializes.
    let message = serde_json::to_value(&envelope).unwrap_or_default();
    Made {
        export: NewScheduledExport {
            id: export_id,
            org_id: org,
            requested_by,
            kind: spec.kind().as_str(),
            format: spec.format.as_str(),
            filters: spec.filters.to_json(),
        },
        job: RawJob { id: envelope.id, routing_key: ExportRequested::TYPE.to_owned(), message },
    }
}

/// Locks the organizations' rows as `POST /v1/exports` does (`FOR NO KEY
/// UPDATE`, in id order so two lockers never wait on each other in a
/// cycle) and counts each one's exports queued or running. Held until the
/// caller's transaction ends, so a request and a tick take turns and
/// cannot both take an organization's last free place.
pub fn lock_active_counts(conn: &mut PgConnection, orgs: &[Uuid]) -> QueryResult<HashMap<Uuid, i64>> {
    if orgs.is_empty() {
        return Ok(HashMap::new());
    }
    organizations::table
        .filter(organizations::id.eq_any(orgs))
        .order(organizations::id.asc())
        .for_no_key_update()
        .select(organizations::id)
        .load::<Uuid>(conn)?;
    let active = [ExportStatus::Queued.as_str(), ExportStatus::Running.as_str()];
    let counts: Vec<(Uuid, i64)> = exports::table
        .filter(exports::org_id.eq_any(orgs).and(exports::status.eq_any(active)))
        .group_by(exports::org_id)
        .select((exports::org_id, diesel::dsl::count_star()))
        .load(conn)?;
    Ok(counts.into_iter().collect())
}

/// Rows per INSERT of exports: six bound values each, under PostgreSQL's
/// 65535.
const EXPORT_CHUNK: usize = 10_000;

/// Writes runs, and for each run that fired its job (`jobs`, by run id)
/// and export (`made`, by run id), in the caller's transaction. A run whose
/// slot is already recorded is not written, and neither is its export nor
/// its job: there is never an export without its job. Returns the ids of
/// the jobs written.
pub fn record(
    conn: &mut PgConnection,
    runs: &[NewRun],
    mut jobs: HashMap<Uuid, RawJob>,
    made: HashMap<Uuid, Made>,
) -> QueryResult<Vec<Uuid>> {
    // Exports first: the runs refer to them.
    let mut exports_by_run = HashMap::with_capacity(made.len());
    let mut new_exports = Vec::with_capacity(made.len());
    for (run, Made { export, job }) in made {
        exports_by_run.insert(run, export.id);
        jobs.insert(run, job);
        new_exports.push(export);
    }
    for chunk in new_exports.chunks(EXPORT_CHUNK) {
        diesel::insert_into(exports::table).values(chunk).execute(conn)?;
    }
    let written = schedule_runs::insert_many(conn, runs)?;
    let orphans: Vec<Uuid> =
        exports_by_run.iter().filter(|(run, _)| !written.contains(*run)).map(|(_, export)| *export).collect();
    if !orphans.is_empty() {
        diesel::delete(exports::table.filter(exports::id.eq_any(&orphans))).execute(conn)?;
    }
    let jobs: Vec<RawJob> = jobs.into_iter().filter(|(run, _)| written.contains(run)).map(|(_, job)| job).collect();
    outbox::insert_raw(conn, &jobs)?;
    Ok(jobs.into_iter().map(|job| job.id).collect())
}

/// What "run now" did.
#[derive(Debug)]
pub enum RunNow {
    /// The run, its export and its job are written.
    Started(NewRun),
    /// Nothing written: the organization already has `active` exports
    /// queued or running, the most it may have.
    LimitReached { active: i64 },
}

/// A manual run of the organization's export schedule `row` (locked by the
/// caller): an export requested by `user` at once, whatever the pattern
/// says, paused or not. The run's slot is the database's `now()`.
pub fn run_now(
    conn: &mut PgConnection,
    row: &ScheduleRow,
    spec: &ExportSpec,
    user: Uuid,
    correlation: &str,
    max_active: u32,
) -> QueryResult<RunNow> {
    let Some(org) = row.org_id else { return Err(diesel::result::Error::NotFound) };
    let active = lock_active_counts(conn, &[org])?.get(&org).copied().unwrap_or(0);
    if active >= i64::from(max_active) {
        return Ok(RunNow::LimitReached { active });
    }
    let now = schedules::now(conn)?;
    let made = make(org, Some(user), spec, correlation.to_owned(), now);
    let run = NewRun::sent(row.id, now, RunTrigger::Manual, made.job.id, now);
    let run = NewRun { export_id: Some(made.export.id), ..run };
    record(conn, std::slice::from_ref(&run), HashMap::new(), HashMap::from([(run.id, made)]))?;
    diesel::update(schedules_table::table.find(row.id))
        .set((schedules_table::last_run_at.eq(now), schedules_table::last_status.eq(RunOutcome::Enqueued.as_str())))
        .execute(conn)?;
    Ok(RunNow::Started(run))
}
