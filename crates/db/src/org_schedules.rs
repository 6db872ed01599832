//! Schedules as the API manages them: an organization's export schedules,
//! and the system schedules it may read. Every query names the
//! organization; a system schedule (`org_id` NULL) is visible to all and
//! changed by none of these.

use crate::page::{After, WriteError};
use crate::schedules::{self, ScheduleRow};
use crate::schema::schedules as table;
use diesel::prelude::*;
use stockflow_domain::{
    CatchupWindow, ExportRequested, ExportSpec, Jitter, Job, MisfirePolicy, OverlapPolicy, ScheduleName, Timing,
    rescheduled,
};
use uuid::Uuid;

/// The per-owner unique name, as the API names the field.
const UNIQUE: &[(&str, &str)] = &[("schedules_owner_name", "name")];

pub struct NewSchedule {
    pub name: ScheduleName,
    pub timing: Timing,
    pub export: ExportSpec,
    pub misfire: MisfirePolicy,
    pub catchup: CatchupWindow,
    pub overlap: OverlapPolicy,
    pub jitter: Jitter,
    pub created_by: Uuid,
}

/// Creates an export schedule; its first slot is the first after now.
pub fn insert(conn: &mut PgConnection, org: Uuid, new: &NewSchedule) -> Result<ScheduleRow, WriteError> {
    conn.transaction(|conn| {
        let now = schedules::now(conn)?;
        let next_run_at = new.timing.next_after(now).unwrap_or(now);
        diesel::insert_into(table::table)
            .values((
                table::org_id.eq(org),
                table::created_by.eq(new.created_by),
                table::name.eq(new.name.as_str()),
                table::cron.eq(new.timing.cron.as_str()),
                table::timezone.eq(new.timing.zone.name()),
                table::routing_key.eq(ExportRequested::TYPE),
                table::payload.eq(new.export.to_json()),
                table::misfire_policy.eq(new.misfire.as_str()),
                table::catchup_window_secs.eq(secs(new.catchup.secs())),
                table::overlap_policy.eq(new.overlap.as_str()),
                table::jitter_secs.eq(secs(new.jitter.secs())),
                table::next_run_at.eq(next_run_at),
            ))
            .returning(ScheduleRow::as_returning())
            .get_result(conn)
            .map_err(|error| WriteError::classify(error, UNIQUE))
    })
}

fn secs(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// The organization's schedule `id`, or a system schedule; `lock` takes
/// the row for a change in the caller's transaction.
pub fn find_visible(conn: &mut PgConnection, org: Uuid, id: Uuid, lock: bool) -> QueryResult<Option<ScheduleRow>> {
    let query = table::table
        .filter(table::id.eq(id).and(table::org_id.eq(org).or(table::org_id.is_null())))
        .select(ScheduleRow::as_select());
    if lock { query.for_no_key_update().first(conn).optional() } else { query.first(conn).optional() }
}

/// The organization's schedules and the system's, newest first; `after`
/// is the last row of the previous page.
pub fn list_visible(
    conn: &mut PgConnection,
    org: Uuid,
    after: Option<&After>,
    limit: i64,
) -> QueryResult<Vec<ScheduleRow>> {
    let mut query = table::table.filter(table::org_id.eq(org).or(table::org_id.is_null())).into_boxed();
    if let Some(after) = after {
        query =
            query.filter(table::created_at.lt(after.at).or(table::created_at.eq(after.at).and(table::id.lt(after.id))));
    }
    query.order((table::created_at.desc(), table::id.desc())).limit(limit).select(ScheduleRow::as_select()).load(conn)
}

/// What a PATCH changes; `None` keeps the value.
#[derive(Default)]
pub struct Changes {
    pub name: Option<ScheduleName>,
    /// The whole new timing: the API merges a changed pattern or zone with
    /// the one kept.
    pub timing: Option<Timing>,
    pub export: Option<ExportSpec>,
    pub misfire: Option<MisfirePolicy>,
    pub catchup: Option<CatchupWindow>,
    pub overlap: Option<OverlapPolicy>,
    pub jitter: Option<Jitter>,
}

#[derive(AsChangeset)]
#[diesel(table_name = table)]
struct Changeset {
    name: Option<String>,
    cron: Option<String>,
    timezone: Option<String>,
    payload: Option<serde_json::Value>,
    misfire_policy: Option<&'static str>,
    catchup_window_secs: Option<i32>,
    overlap_policy: Option<&'static str>,
    jitter_secs: Option<i32>,
    next_run_at: Option<chrono::DateTime<chrono::Utc>>,
    updated_at: chrono::DateTime<chrono::Utc>,
}

/// Applies `changes` to the organization schedule `row` (locked by the
/// caller). A changed pattern or zone counts the next slot from now, so
/// slots the old pattern passed are not fired in a flood.
pub fn update(conn: &mut PgConnection, row: &ScheduleRow, changes: Changes) -> Result<ScheduleRow, WriteError> {
    let now = schedules::now(conn)?;
    let next_run_at = match (&changes.timing, row.timing()) {
        (Some(new), Ok(old)) => rescheduled(&old, new, row.next_run_at, now),
        (Some(new), Err(_)) => new.next_after(now),
        (None, _) => None,
    };
    let changeset = Changeset {
        name: changes.name.map(|name| name.as_str().to_owned()),
        cron: changes.timing.as_ref().map(|timing| timing.cron.as_str().to_owned()),
        timezone: changes.timing.as_ref().map(|timing| timing.zone.name().to_owned()),
        payload: changes.export.map(|export| export.to_json()),
        misfire_policy: changes.misfire.map(MisfirePolicy::as_str),
        catchup_window_secs: changes.catchup.map(|window| secs(window.secs())),
        overlap_policy: changes.overlap.map(OverlapPolicy::as_str),
        jitter_secs: changes.jitter.map(|jitter| secs(jitter.secs())),
        next_run_at,
        updated_at: now,
    };
    diesel::update(table::table.find(row.id))
        .set(changeset)
        .returning(ScheduleRow::as_returning())
        .get_result(conn)
        .map_err(|error| WriteError::classify(error, UNIQUE))
}

/// Pauses the schedule `row` with an optional note (a second pause
/// replaces the note).
pub fn pause(conn: &mut PgConnection, row: &ScheduleRow, note: Option<&str>) -> QueryResult<ScheduleRow> {
    diesel::update(table::table.find(row.id))
        .set((table::paused.eq(true), table::pause_note.eq(note), table::updated_at.eq(diesel::dsl::now)))
        .returning(ScheduleRow::as_returning())
        .get_result(conn)
}

/// Resumes the schedule `row`. The slots passed while it was paused were
/// left out on purpose, not missed: its next slot counts from now. A
/// schedule that was not paused keeps its next slot.
pub fn resume(conn: &mut PgConnection, row: &ScheduleRow) -> QueryResult<ScheduleRow> {
    let now = schedules::now(conn)?;
    let next_run_at = if row.paused {
        row.timing().ok().and_then(|timing| timing.next_after(now)).unwrap_or(row.next_run_at)
    } else {
        row.next_run_at
    };
    diesel::update(table::table.find(row.id))
        .set((
            table::paused.eq(false),
            table::pause_note.eq(None::<String>),
            table::next_run_at.eq(next_run_at),
            table::updated_at.eq(now),
        ))
        .returning(ScheduleRow::as_returning())
        .get_result(conn)
}

/// Deletes the organization's schedule `id` with its runs; the exports
/// they made stay. Returns whether there was one.
pub fn delete(conn: &mut PgConnection, org: Uuid, id: Uuid) -> QueryResult<bool> {
    let deleted = diesel::delete(table::table.filter(table::id.eq(id).and(table::org_id.eq(org)))).execute(conn)?;
    Ok(deleted > 0)
}

/// The export a schedule makes, read back from its payload; `None` for a
/// system schedule or a payload this code did not write.
pub fn export_of(row: &ScheduleRow) -> Option<ExportSpec> {
    (row.org_id.is_some() && row.routing_key == ExportRequested::TYPE)
        .then(|| ExportSpec::from_json(&row.payload).ok())
        .flatten()
}
