//! Schedules: the system's own (backups, maintenance; `org_id` NULL,
//! written from the environment at start) and organizations' scheduled
//! exports. The scheduler claims due ones with `FOR UPDATE SKIP LOCKED`
//! and, in the same transaction, records their runs, writes their jobs to
//! the outbox and advances `next_run_at` (see `schedule_runs`).

use crate::schema::{organizations, schedules};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use stockflow_domain::{
    CatchupWindow, Jitter, MisfirePolicy, OverlapPolicy, RunTimeout, ScheduleError, Timing, rescheduled,
};
use uuid::Uuid;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = schedules)]
pub struct ScheduleRow {
    pub id: Uuid,
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub routing_key: String,
    pub payload: serde_json::Value,
    pub enabled: bool,
    pub misfire_policy: String,
    pub next_run_at: DateTime<Utc>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_status: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub org_id: Option<Uuid>,
    pub created_by: Option<Uuid>,
    pub paused: bool,
    pub pause_note: Option<String>,
    pub catchup_window_secs: i32,
    pub overlap_policy: String,
    pub jitter_secs: i32,
    pub run_timeout_secs: i32,
}

impl ScheduleRow {
    /// The pattern and zone, as written (both were checked on the way in).
    pub fn timing(&self) -> Result<Timing, ScheduleError> {
        Timing::parse(&self.cron, &self.timezone)
    }

    // The CHECK constraints keep the columns below to valid values; the
    // fallbacks are the column defaults.
    pub fn misfire(&self) -> MisfirePolicy {
        MisfirePolicy::parse(&self.misfire_policy).unwrap_or(MisfirePolicy::Coalesce)
    }

    pub fn overlap(&self) -> OverlapPolicy {
        OverlapPolicy::parse(&self.overlap_policy).unwrap_or(OverlapPolicy::Skip)
    }

    pub fn catchup(&self) -> CatchupWindow {
        CatchupWindow::from_secs(i64::from(self.catchup_window_secs)).unwrap_or_default()
    }

    pub fn jitter(&self) -> Jitter {
        Jitter::from_secs(i64::from(self.jitter_secs)).unwrap_or_default()
    }

    pub fn run_timeout(&self) -> RunTimeout {
        RunTimeout::from_secs(i64::from(self.run_timeout_secs)).unwrap_or_default()
    }

    pub fn is_system(&self) -> bool {
        self.org_id.is_none()
    }
}

/// The database's clock: the start of the current transaction. Every
/// replica reads the same one, whatever its own clock says.
pub fn now(conn: &mut PgConnection) -> QueryResult<DateTime<Utc>> {
    diesel::select(diesel::dsl::now.into_sql::<Timestamptz>()).get_result(conn)
}

// --- Leadership -----------------------------------------------------------

/// The session advisory lock that makes one scheduler replica the leader
/// ("StockSch"; the migration lock is another key).
pub const LEADER_LOCK: i64 = 0x5374_6f63_6b53_6368;

/// Takes the leader lock on this session if it is free (or already ours).
/// It is held until the session ends: a leader that dies or loses its
/// connection frees it for a standby.
pub fn try_lead(conn: &mut PgConnection) -> QueryResult<bool> {
    diesel::select(diesel::dsl::sql::<Bool>(&format!("pg_try_advisory_lock({LEADER_LOCK})"))).get_result(conn)
}

/// Whether this very session holds the leader lock, asked inside the tick's
/// transaction: what commits there commits only while it leads.
pub fn holds_lead(conn: &mut PgConnection) -> QueryResult<bool> {
    diesel::select(diesel::dsl::sql::<Bool>(&format!(
        "EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND pid = pg_backend_pid() AND classid = {} AND objid = {} AND objsubid = 1)",
        (LEADER_LOCK >> 32) & 0xffff_ffff,
        LEADER_LOCK & 0xffff_ffff
    )))
    .get_result(conn)
}

// --- Claiming --------------------------------------------------------------

/// Locks up to `limit` schedules due at `now`, earliest first, skipping rows
/// another transaction holds. Call inside the tick's transaction.
pub fn claim_due(conn: &mut PgConnection, now: DateTime<Utc>, limit: i64) -> QueryResult<Vec<ScheduleRow>> {
    schedules::table
        .filter(schedules::enabled.and(schedules::paused.eq(false)).and(schedules::next_run_at.le(now)))
        .order(schedules::next_run_at.asc())
        .limit(limit)
        .for_update()
        .skip_locked()
        .select(ScheduleRow::as_select())
        .load(conn)
}

/// Where a schedule stands after a tick dealt with it.
#[derive(Debug, Clone)]
pub struct Advance {
    pub id: Uuid,
    pub next_run_at: DateTime<Utc>,
    /// Set when a run was recorded in this tick.
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_status: Option<&'static str>,
}

/// Moves many schedules on in one statement (a tick may deal with
/// thousands); unchanged `last_*` stay as they were.
pub fn advance(conn: &mut PgConnection, moves: &[Advance]) -> QueryResult<usize> {
    if moves.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = moves.iter().map(|m| m.id).collect();
    let next: Vec<DateTime<Utc>> = moves.iter().map(|m| m.next_run_at).collect();
    let last_run: Vec<Option<DateTime<Utc>>> = moves.iter().map(|m| m.last_run_at).collect();
    let status: Vec<Option<String>> = moves.iter().map(|m| m.last_status.map(str::to_owned)).collect();
    diesel::sql_query(
        "UPDATE schedules s SET next_run_at = m.next_run_at, \
         last_run_at = coalesce(m.last_run_at, s.last_run_at), \
         last_status = coalesce(m.last_status, s.last_status) \
         FROM unnest($1, $2, $3, $4) AS m(id, next_run_at, last_run_at, last_status) WHERE s.id = m.id",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .bind::<Array<Timestamptz>, _>(next)
    .bind::<Array<Nullable<Timestamptz>>, _>(last_run)
    .bind::<Array<Nullable<Text>>, _>(status)
    .execute(conn)
}

/// Pauses a schedule the scheduler cannot fire (a pattern with no further
/// slot, a job it does not know), with the reason as its note.
pub fn pause_broken(conn: &mut PgConnection, id: Uuid, reason: &str) -> QueryResult<usize> {
    let note: String = reason.chars().take(500).collect();
    diesel::update(schedules::table.find(id))
        .set((
            schedules::paused.eq(true),
            schedules::pause_note.eq(note),
            schedules::last_status.eq("failed"),
            schedules::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
}

// --- System schedules ------------------------------------------------------

/// A schedule the installation runs, as the environment describes it.
#[derive(Debug, Clone)]
pub struct SystemSchedule {
    pub name: &'static str,
    pub timing: Timing,
    pub routing_key: &'static str,
    pub payload: serde_json::Value,
    pub run_timeout: RunTimeout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    Created,
    /// Its pattern or zone changed: `next_run_at` counts from now.
    Rescheduled,
    /// Switched back on: `next_run_at` counts from now.
    Enabled,
    /// Only its job or timeout changed, or nothing did.
    Kept,
}

/// Writes a system schedule as the environment has it. A changed pattern or
/// zone, or a schedule switched back on, counts its next slot from now: the
/// slots passed meanwhile are not fired in a flood.
pub fn upsert_system(conn: &mut PgConnection, schedule: &SystemSchedule) -> QueryResult<Upserted> {
    conn.transaction(|conn| {
        let now = now(conn)?;
        let existing = schedules::table
            .filter(schedules::org_id.is_null().and(schedules::name.eq(schedule.name)))
            .for_update()
            .select(ScheduleRow::as_select())
            .first(conn)
            .optional()?;
        let fresh_next = schedule.timing.next_after(now).unwrap_or(now);
        let Some(row) = existing else {
            // A concurrent start of another replica may insert first.
            let inserted = diesel::insert_into(schedules::table)
                .values((
                    schedules::name.eq(schedule.name),
                    schedules::cron.eq(schedule.timing.cron.as_str()),
                    schedules::timezone.eq(schedule.timing.zone.name()),
                    schedules::routing_key.eq(schedule.routing_key),
                    schedules::payload.eq(&schedule.payload),
                    schedules::next_run_at.eq(fresh_next),
                    schedules::run_timeout_secs.eq(timeout_secs(schedule.run_timeout)),
                ))
                .on_conflict_do_nothing()
                .execute(conn)?;
            return Ok(if inserted == 1 { Upserted::Created } else { Upserted::Kept });
        };
        let (next_run_at, outcome) = if !row.enabled {
            (fresh_next, Upserted::Enabled)
        } else {
            match row.timing() {
                Ok(old) if old == schedule.timing => (row.next_run_at, Upserted::Kept),
                Ok(old) => {
                    (rescheduled(&old, &schedule.timing, row.next_run_at, now).unwrap_or(now), Upserted::Rescheduled)
                }
                Err(_) => (fresh_next, Upserted::Rescheduled),
            }
        };
        diesel::update(schedules::table.find(row.id))
            .set((
                schedules::cron.eq(schedule.timing.cron.as_str()),
                schedules::timezone.eq(schedule.timing.zone.name()),
                schedules::routing_key.eq(schedule.routing_key),
                schedules::payload.eq(&schedule.payload),
                schedules::enabled.eq(true),
                schedules::next_run_at.eq(next_run_at),
                schedules::run_timeout_secs.eq(timeout_secs(schedule.run_timeout)),
                schedules::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn)?;
        Ok(outcome)
    })
}

fn timeout_secs(timeout: RunTimeout) -> i32 {
    i32::try_from(timeout.secs()).unwrap_or(i32::MAX)
}

/// Switches a system schedule off (its variable says `off`); its runs stay
/// for the record. Returns whether it was on.
pub fn disable_system(conn: &mut PgConnection, name: &str) -> QueryResult<bool> {
    let changed = diesel::update(
        schedules::table.filter(schedules::org_id.is_null().and(schedules::name.eq(name)).and(schedules::enabled)),
    )
    .set((schedules::enabled.eq(false), schedules::updated_at.eq(diesel::dsl::now)))
    .execute(conn)?;
    Ok(changed > 0)
}

// --- Reading ---------------------------------------------------------------

/// Every schedule with its owner's slug (`None` for system schedules):
/// system schedules first, then by organization and name.
pub fn list_all(conn: &mut PgConnection) -> QueryResult<Vec<(ScheduleRow, Option<String>)>> {
    schedules::table
        .left_join(organizations::table)
        .order((schedules::org_id.is_not_null(), organizations::slug.asc(), schedules::name.asc()))
        .select((ScheduleRow::as_select(), organizations::slug.nullable()))
        .load(conn)
}

/// A system schedule (`org` `None`) or an organization's, by name.
pub fn find_by_name(conn: &mut PgConnection, org: Option<Uuid>, name: &str) -> QueryResult<Option<ScheduleRow>> {
    let query = schedules::table.filter(schedules::name.eq(name)).into_boxed();
    let query = match org {
        Some(org) => query.filter(schedules::org_id.eq(org)),
        None => query.filter(schedules::org_id.is_null()),
    };
    query.select(ScheduleRow::as_select()).first(conn).optional()
}
