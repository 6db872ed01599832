// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

//! Schedules and their runs against a real PostgreSQL: names unique per
//! owner, one row per slot, system schedules written from settings, the
//! leader lock, runs that never report.

use chrono::{Duration, SubsecRound as _, Utc};
use diesel::prelude::*;
use diesel_migrations::MigrationHarness;
use stockflow_db::schedule_runs::{self, NewRun};
use stockflow_db::schedules::{self, SystemSchedule, Upserted};
use stockflow_db::schema::{organizations, schedules as table};
use stockflow_domain::{RunOutcome, RunTimeout, RunTrigger, Timing};
use stockflow_testkit::TestDatabase;
use uuid::Uuid;

fn org(conn: &mut PgConnection, slug: &str) -> Uuid {
    diesel::insert_into(organizations::table)
        .values((organizations::slug.eq(slug), organizations::name.eq(slug)))
        .returning(organizations::id)
        .get_result(conn)
        .unwrap()
}

fn insert(conn: &mut PgConnection, org: Option<Uuid>, name: &str) -> QueryResult<Uuid> {
    diesel::insert_into(table::table)
        .values((
            table::org_id.eq(org),
            table::name.eq(name),
            table::cron.eq("0 * * * *"),
            table::routing_key.eq("maintenance.ping"),
            table::payload.eq(serde_json::json!({"note": ""})),
            table::next_run_at.eq(Utc::now()),
        ))
        .returning(table::id)
        .get_result(conn)
}

fn system(cron: &str) -> SystemSchedule {
    SystemSchedule {
        name: "expire-exports",
        timing: Timing::parse(cron, "UTC").unwrap(),
        routing_key: "maintenance.expire_exports",
        payload: serde_json::json!({}),
        run_timeout: RunTimeout::DEFAULT,
    }
}

#[test]
fn names_are_unique_per_owner() {
    let database = TestDatabase::create();
    let conn = &mut database.connect();
    let (a, b) = (org(conn, "a"), org(conn, "b"));
    insert(conn, Some(a), "nightly").unwrap();
    insert(conn, Some(b), "nightly").unwrap();
    insert(conn, None, "nightly").unwrap();
    for owner in [Some(a), None] {
        let error = insert(conn, owner, "nightly").unwrap_err();
        assert!(error.to_string().contains("schedules_owner_name"), "{error}");
    }
}

#[test]
fn a_slot_is_recorded_once_whoever_tries_again() {
    let database = TestDatabase::create();
    let conn = &mut database.connect();
    let id = insert(conn, None, "s").unwrap();
    let slot = Utc::now();
    let first = NewRun::sent(id, slot, RunTrigger::Scheduled, Uuid::new_v4(), slot);
    assert_eq!(schedule_runs::insert_many(conn, std::slice::from_ref(&first)).unwrap().len(), 1);
    let again = NewRun::sent(id, slot, RunTrigger::Scheduled, Uuid::new_v4(), slot);
    assert!(schedule_runs::insert_many(conn, &[again]).unwrap().is_empty(), "the slot was taken");
    let direct = diesel::insert_into(stockflow_db::schema::schedule_runs::table).values(&first).execute(conn);
    assert!(direct.unwrap_err().to_string().contains("schedule_runs"), "even without ON CONFLICT");
}

#[test]
fn system_schedules_follow_their_settings_and_a_new_pattern_counts_from_now() {
    let database = TestDatabase::create();
    let conn = &mut database.connect();
    assert_eq!(schedules::upsert_system(conn, &system("0 3 * * *")).unwrap(), Upserted::Created);
    let row = schedules::find_by_name(conn, None, "expire-exports").unwrap().unwrap();
    let now = Utc::now();
    assert!(row.next_run_at > now && row.next_run_at <= now + Duration::days(1), "{}", row.next_run_at);

    // Pretend it has been due since yesterday (the scheduler was down).
    let stale = (now - Duration::days(1)).trunc_subsecs(6);
    diesel::update(table::table.find(row.id)).set(table::next_run_at.eq(stale)).execute(conn).unwrap();
    assert_eq!(schedules::upsert_system(conn, &system("0 3 * * *")).unwrap(), Upserted::Kept);
    let kept = schedules::find_by_name(conn, None, "expire-exports").unwrap().unwrap();
    assert_eq!(kept.next_run_at, stale, "the same pattern keeps its slot (the misfire policy decides)");

    assert_eq!(schedules::upsert_system(conn, &system("*/5 * * * *")).unwrap(), Upserted::Rescheduled);
    let changed = schedules::find_by_name(conn, None, "expire-exports").unwrap().unwrap();
    assert_eq!(changed.cron, "*/5 * * * *");
    assert!(changed.next_run_at > now && changed.next_run_at <= Utc::now() + Duration::minutes(5));

    assert!(schedules::disable_system(conn, "expire-exports").unwrap());
    assert!(!schedules::disable_system(conn, "expire-exports").unwrap(), "already off");
    assert!(!schedules::find_by_name(conn, None, "expire-exports").unwrap().unwrap().enabled);
    assert_eq!(schedules::upsert_system(conn, &system("*/5 * * * *")).unwrap(), Upserted::Enabled);
    assert!(schedules::find_by_name(conn, None, "expire-exports").unwrap().unwrap().enabled);
}

#[test]
fn one_session_leads_until_it_ends() {
    let database = TestDatabase::create();
    let (mut first, mut second) = (database.connect(), database.connect());
    assert!(schedules::try_lead(&mut first).unwrap());
    assert!(schedules::holds_lead(&mut first).unwrap());
    assert!(!schedules::try_lead(&mut second).unwrap());
    assert!(!schedules::holds_lead(&mut second).unwrap());
    drop(first);
    let took_over = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        schedules::try_lead(&mut second).unwrap()
    });
    assert!(took_over, "the lock is free once its session is gone");
    assert!(schedules::holds_lead(&mut second).unwrap());
}

#[test]
fn a_run_that_never_reports_is_lost_after_its_timeout() {
    let database = TestDatabase::create();
    let conn = &mut database.connect();
    let id = insert(conn, None, "s").unwrap();
    let now = schedules::now(conn).unwrap();
    let job = Uuid::new_v4();
    let fired = now - Duration::seconds(3599);
    schedule_runs::insert_many(conn, &[NewRun::sent(id, fired, RunTrigger::Scheduled, job, fired)]).unwrap();
    assert_eq!(schedule_runs::mark_lost(conn, &[id], now).unwrap(), 0, "within the hour");
    assert!(schedule_runs::with_open_runs(conn, &[id]).unwrap().contains(&id));
    assert_eq!(schedule_runs::mark_lost(conn, &[id], now + Duration::seconds(2)).unwrap(), 1);
    assert!(schedule_runs::with_open_runs(conn, &[id]).unwrap().is_empty());
    assert!(!schedule_runs::record_outcome(conn, job, RunOutcome::Succeeded, None).unwrap(), "lost stays lost");

    let second = Uuid::new_v4();
    schedule_runs::insert_many(conn, &[NewRun::sent(id, now, RunTrigger::Manual, second, now)]).unwrap();
    assert!(schedule_runs::record_outcome(conn, second, RunOutcome::Failed, Some("disk full")).unwrap());
    let runs = schedule_runs::list(conn, id, None, 10).unwrap();
    assert_eq!(runs[0].outcome, "failed");
    assert_eq!(runs[0].detail.as_deref(), Some("disk full"));
    assert_eq!(runs[1].outcome, "lost");
    let row = schedules::find_by_name(conn, None, "s").unwrap().unwrap();
    assert_eq!(row.last_status.as_deref(), Some("failed"));
}

/// The down.sql of the schedules migration copes with what the new schema
/// allows and the old one does not: an alias pattern, organization
/// schedules with one name in two organizations, runs.
#[test]
fn the_schedule_migration_goes_down_with_rows_in_place() {
    let database = TestDatabase::create();
    let conn = &mut database.connect();
    let (a, b) = (org(conn, "a"), org(conn, "b"));
    let kept = insert(conn, None, "kept").unwrap();
    insert(conn, Some(a), "nightly").unwrap();
    insert(conn, Some(b), "nightly").unwrap();
    let alias = insert(conn, None, "alias").unwrap();
    diesel::update(table::table.find(alias)).set(table::cron.eq("@daily")).execute(conn).unwrap();
    let slot = Utc::now();
    schedule_runs::insert_many(conn, &[NewRun::sent(kept, slot, RunTrigger::Scheduled, Uuid::new_v4(), slot)]).unwrap();

    // Newer migrations go down first, down to the schedules one.
    let mut reverted = Vec::new();
    while reverted.last().is_none_or(|version: &String| version != "20261130000001") {
        reverted.push(conn.revert_last_migration(stockflow_db::MIGRATIONS).unwrap().to_string());
        assert!(reverted.len() < 10, "the schedules migration was never reverted: {reverted:?}");
    }
    let names: Vec<String> = diesel::sql_query("SELECT name FROM schedules ORDER BY name")
        .load::<Name>(conn)
        .unwrap()
        .into_iter()
        .map(|row| row.name)
        .collect();
    assert_eq!(names, ["kept"]);
    assert_eq!(stockflow_db::run_pending(conn).unwrap().len(), reverted.len());
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
}
