//! The runs of schedules: one row per slot dealt with (fired or skipped)
//! and per manual run. `UNIQUE (schedule_id, slot)` makes a second firing
//! of one slot impossible, even for a replica that wrongly thinks it leads.
//!
//! A run is open (`enqueued`) until its job reports an outcome. A job that
//! never reports (its consumer died with it, or there is no consumer yet)
//! would hold back an `overlap: skip` schedule for ever, so a run open for
//! longer than the schedule's `run_timeout_secs` is marked `lost` and no
//! longer counts.

use crate::schema::{schedule_runs, schedules};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use std::collections::HashSet;
use stockflow_domain::{RunOutcome, RunTrigger};
use uuid::Uuid;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = schedule_runs)]
pub struct RunRow {
    pub id: Uuid,
    pub schedule_id: Uuid,
    pub slot: DateTime<Utc>,
    pub trigger: String,
    pub fired_at: DateTime<Utc>,
    pub job_id: Option<Uuid>,
    pub export_id: Option<Uuid>,
    pub outcome: String,
    pub finished_at: Option<DateTime<Utc>>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = schedule_runs)]
pub struct NewRun {
    pub id: Uuid,
    pub schedule_id: Uuid,
    pub slot: DateTime<Utc>,
    pub trigger: &'static str,
    pub fired_at: DateTime<Utc>,
    pub job_id: Option<Uuid>,
    pub export_id: Option<Uuid>,
    pub outcome: &'static str,
    pub finished_at: Option<DateTime<Utc>>,
    pub detail: Option<String>,
}

impl NewRun {
    /// A run whose job was sent, with the job's id.
    pub fn sent(schedule_id: Uuid, slot: DateTime<Utc>, trigger: RunTrigger, job_id: Uuid, at: DateTime<Utc>) -> Self {
        Self {
            id: Uuid::new_v4(),
            schedule_id,
            slot,
            trigger: trigger.as_str(),
            fired_at: at,
            job_id: Some(job_id),
            export_id: None,
            outcome: RunOutcome::Enqueued.as_str(),
            finished_at: None,
            detail: None,
        }
    }

    /// A slot skipped because the previous run had not finished.
    pub fn skipped(schedule_id: Uuid, slot: DateTime<Utc>, at: DateTime<Utc>) -> Self {
        Self {
            id: Uuid::new_v4(),
            schedule_id,
            slot,
            trigger: RunTrigger::Scheduled.as_str(),
            fired_at: at,
            job_id: None,
            export_id: None,
            outcome: RunOutcome::Skipped.as_str(),
            finished_at: Some(at),
            detail: Some("the previous run had not finished (overlap: skip)".to_owned()),
        }
    }
}

#[derive(QueryableByName)]
struct Written {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// Records runs; a slot already recorded is left alone. Returns the ids of
/// the rows written, so the caller sends jobs only for those.
///
/// One array per column: a statement with ten parameters is planned at
/// once, where a multi-row VALUES of ten thousand bound values takes longer
/// to bind and plan than to insert (a tick writes thousands of runs).
pub fn insert_many(conn: &mut PgConnection, runs: &[NewRun]) -> QueryResult<HashSet<Uuid>> {
    if runs.is_empty() {
        return Ok(HashSet::new());
    }
    let written: Vec<Written> = diesel::sql_query(
        "INSERT INTO schedule_runs (id, schedule_id, slot, trigger, fired_at, job_id, export_id, outcome, finished_at, detail) \
         SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (schedule_id, slot) DO NOTHING RETURNING id",
    )
    .bind::<Array<SqlUuid>, _>(runs.iter().map(|run| run.id).collect::<Vec<_>>())
    .bind::<Array<SqlUuid>, _>(runs.iter().map(|run| run.schedule_id).collect::<Vec<_>>())
    .bind::<Array<Timestamptz>, _>(runs.iter().map(|run| run.slot).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(runs.iter().map(|run| run.trigger).collect::<Vec<_>>())
    .bind::<Array<Timestamptz>, _>(runs.iter().map(|run| run.fired_at).collect::<Vec<_>>())
    .bind::<Array<Nullable<SqlUuid>>, _>(runs.iter().map(|run| run.job_id).collect::<Vec<_>>())
    .bind::<Array<Nullable<SqlUuid>>, _>(runs.iter().map(|run| run.export_id).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(runs.iter().map(|run| run.outcome).collect::<Vec<_>>())
    .bind::<Array<Nullable<Timestamptz>>, _>(runs.iter().map(|run| run.finished_at).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(runs.iter().map(|run| run.detail.as_deref()).collect::<Vec<_>>())
    .load(conn)?;
    Ok(written.into_iter().map(|row| row.id).collect())
}

/// Marks `lost` the open runs of these schedules that outlived their
/// schedule's run timeout at `now`; returns how many.
pub fn mark_lost(conn: &mut PgConnection, schedule_ids: &[Uuid], now: DateTime<Utc>) -> QueryResult<usize> {
    diesel::sql_query(
        "UPDATE schedule_runs r SET outcome = 'lost', finished_at = $2, \
         detail = 'no outcome reported within the run timeout' \
         FROM schedules s WHERE r.schedule_id = s.id AND r.schedule_id = ANY($1) AND r.finished_at IS NULL \
         AND r.fired_at <= $2 - make_interval(secs => s.run_timeout_secs)",
    )
    .bind::<Array<SqlUuid>, _>(schedule_ids)
    .bind::<Timestamptz, _>(now)
    .execute(conn)
}

/// Which of these schedules have a run still open (call `mark_lost` first).
pub fn with_open_runs(conn: &mut PgConnection, schedule_ids: &[Uuid]) -> QueryResult<HashSet<Uuid>> {
    let open: Vec<Uuid> = schedule_runs::table
        .filter(schedule_runs::schedule_id.eq_any(schedule_ids).and(schedule_runs::finished_at.is_null()))
        .select(schedule_runs::schedule_id)
        .distinct()
        .load(conn)?;
    Ok(open.into_iter().collect())
}

/// What a consumer calls once the job with `job_id` is done (or given up
/// on): the run gets its outcome, the schedule its `last_status`. A job
/// that no schedule sent changes nothing; a run already finished (`lost`
/// meanwhile, or reported before by a redelivery) keeps its first outcome.
pub fn record_outcome(
    conn: &mut PgConnection,
    job_id: Uuid,
    outcome: RunOutcome,
    detail: Option<&str>,
) -> QueryResult<bool> {
    let detail = detail.map(|text| text.chars().take(1000).collect::<String>());
    conn.transaction(|conn| {
        let updated: Option<Uuid> = diesel::update(
            schedule_runs::table.filter(schedule_runs::job_id.eq(job_id).and(schedule_runs::finished_at.is_null())),
        )
        .set((
            schedule_runs::outcome.eq(outcome.as_str()),
            schedule_runs::finished_at.eq(diesel::dsl::now),
            schedule_runs::detail.eq(detail),
        ))
        .returning(schedule_runs::schedule_id)
        .get_result(conn)
        .optional()?;
        let Some(schedule_id) = updated else { return Ok(false) };
        diesel::update(schedules::table.find(schedule_id))
            .set(schedules::last_status.eq(outcome.as_str()))
            .execute(conn)?;
        Ok(true)
    })
}

/// A schedule's runs, newest first; `before` is the `fired_at`/id of the
/// last row of the previous page.
pub fn list(
    conn: &mut PgConnection,
    schedule_id: Uuid,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> QueryResult<Vec<RunRow>> {
    let mut query = schedule_runs::table.filter(schedule_runs::schedule_id.eq(schedule_id)).into_boxed();
    if let Some((at, id)) = before {
        query = query
            .filter(schedule_runs::fired_at.lt(at).or(schedule_runs::fired_at.eq(at).and(schedule_runs::id.lt(id))));
    }
    query
        .order((schedule_runs::fired_at.desc(), schedule_runs::id.desc()))
        .limit(limit)
        .select(RunRow::as_select())
        .load(conn)
}

#[derive(QueryableByName)]
struct SinceSuccess {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
    #[diesel(sql_type = diesel::sql_types::Double)]
    seconds: f64,
}

/// Seconds since each system schedule's last run that reported success.
pub fn system_seconds_since_success(conn: &mut PgConnection) -> QueryResult<Vec<(String, f64)>> {
    let rows: Vec<SinceSuccess> = diesel::sql_query(
        "SELECT s.name, extract(epoch FROM now() - max(r.finished_at))::float8 AS seconds \
         FROM schedules s JOIN schedule_runs r ON r.schedule_id = s.id \
         WHERE s.org_id IS NULL AND r.outcome = 'succeeded' GROUP BY s.name",
    )
    .load(conn)?;
    Ok(rows.into_iter().map(|row| (row.name, row.seconds)).collect())
}
