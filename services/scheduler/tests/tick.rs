// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

//! The leader's tick against a real PostgreSQL, on a session that holds
//! the leader lock (or does not).

use chrono::{Duration, Utc};
use diesel::prelude::*;
use stockflow_db::schedules;
use stockflow_db::schema::{outbox, schedule_runs, schedules as table};
use stockflow_scheduler::tick::{self, TickError};
use stockflow_testkit::TestDatabase;
use uuid::Uuid;

const GRACE: Duration = Duration::seconds(5);

/// A schedule due half a second ago, whose pattern (once a year) has no
/// other slot near: a tick, however late, finds exactly one slot due.
fn schedule(conn: &mut PgConnection, name: &str, routing_key: &str, payload: serde_json::Value) -> Uuid {
    let now = schedules::now(conn).unwrap();
    diesel::insert_into(table::table)
        .values((
            table::name.eq(name),
            table::cron.eq("0 0 1 1 *"),
            table::routing_key.eq(routing_key),
            table::payload.eq(payload),
            table::next_run_at.eq(now - Duration::milliseconds(500)),
            table::overlap_policy.eq("allow"),
        ))
        .returning(table::id)
        .get_result(conn)
        .unwrap()
}

fn leader(database: &TestDatabase) -> PgConnection {
    let mut conn = database.connect();
    assert!(schedules::try_lead(&mut conn).unwrap());
    conn
}

#[test]
fn a_due_schedule_records_its_run_enqueues_its_job_and_moves_on() {
    let database = TestDatabase::create();
    let conn = &mut leader(&database);
    let id = schedule(conn, "ping", "maintenance.ping", serde_json::json!({"note": "hello"}));
    let due_at: chrono::DateTime<Utc> = table::table.find(id).select(table::next_run_at).first(conn).unwrap();

    let report = tick::tick(conn, GRACE, 10).unwrap();
    assert_eq!((report.claimed, report.jobs.len()), (1, 1));
    assert_eq!(report.fired.get("ping"), Some(&1));

    let (slot, job, outcome): (chrono::DateTime<Utc>, Option<Uuid>, String) = schedule_runs::table
        .filter(schedule_runs::schedule_id.eq(id))
        .select((schedule_runs::slot, schedule_runs::job_id, schedule_runs::outcome))
        .first(conn)
        .unwrap();
    assert_eq!((slot, job, outcome.as_str()), (due_at, Some(report.jobs[0]), "enqueued"));
    let message: serde_json::Value = outbox::table.find(report.jobs[0]).select(outbox::message).first(conn).unwrap();
    assert_eq!(message["type"], "maintenance.ping");
    assert_eq!(message["payload"]["note"], "hello");
    let correlation = message["correlation_id"].as_str().unwrap();
    assert!(correlation.starts_with(&format!("schedule:{id}:")), "{correlation}");

    let (next, status): (chrono::DateTime<Utc>, Option<String>) =
        table::table.find(id).select((table::next_run_at, table::last_status)).first(conn).unwrap();
    assert!(next > due_at, "advanced past the fired slot");
    assert_eq!(status.as_deref(), Some("enqueued"));

    // A replica that wrongly fires the same slot again (its next_run_at
    // set back) finds the slot taken: no second run, no second job.
    diesel::update(table::table.find(id)).set(table::next_run_at.eq(due_at)).execute(conn).unwrap();
    let again = tick::tick(conn, GRACE, 10).unwrap();
    assert_eq!((again.claimed, again.jobs.len()), (1, 0), "{again:?}");
    let runs: i64 = schedule_runs::table.filter(schedule_runs::slot.eq(due_at)).count().get_result(conn).unwrap();
    let jobs: i64 = outbox::table.count().get_result(conn).unwrap();
    assert_eq!((runs, jobs), (1, 1));
}

#[test]
fn a_session_without_the_leader_lock_fires_nothing() {
    let database = TestDatabase::create();
    let _leader = leader(&database);
    let conn = &mut database.connect();
    schedule(conn, "ping", "maintenance.ping", serde_json::json!({"note": ""}));
    assert!(matches!(tick::tick(conn, GRACE, 10), Err(TickError::NotLeader)));
    let runs: i64 = schedule_runs::table.count().get_result(conn).unwrap();
    let jobs: i64 = outbox::table.count().get_result(conn).unwrap();
    assert_eq!((runs, jobs), (0, 0));
}

#[test]
fn a_schedule_whose_job_cannot_be_made_is_paused_with_the_reason() {
    let database = TestDatabase::create();
    let conn = &mut leader(&database);
    let unknown = schedule(conn, "unknown", "maintenance.defrag", serde_json::json!({}));
    let bad_payload = schedule(conn, "bad", "maintenance.ping", serde_json::json!({"note": 5}));
    let fine = schedule(conn, "fine", "maintenance.ping", serde_json::json!({"note": ""}));

    let report = tick::tick(conn, GRACE, 10).unwrap();
    assert_eq!((report.broken, report.jobs.len()), (2, 1));
    for (id, reason) in [(unknown, "maintenance.defrag"), (bad_payload, "not a valid maintenance.ping")] {
        let (paused, note): (bool, Option<String>) =
            table::table.find(id).select((table::paused, table::pause_note)).first(conn).unwrap();
        assert!(paused);
        assert!(note.as_deref().unwrap_or_default().contains(reason), "{note:?}");
    }
    let fired: i64 = schedule_runs::table.filter(schedule_runs::schedule_id.eq(fine)).count().get_result(conn).unwrap();
    assert_eq!(fired, 1, "one broken schedule does not hold back the others");
}

#[test]
fn overlap_skip_records_the_slot_while_the_previous_run_is_open() {
    let database = TestDatabase::create();
    let conn = &mut leader(&database);
    let id = schedule(conn, "ping", "maintenance.ping", serde_json::json!({"note": ""}));
    diesel::update(table::table.find(id))
        .set((table::overlap_policy.eq("skip"), table::cron.eq("* * * * * *")))
        .execute(conn)
        .unwrap();
    assert_eq!(tick::tick(conn, GRACE, 10).unwrap().jobs.len(), 1);

    // The next second's slot finds the first run still open.
    let next: chrono::DateTime<Utc> = table::table.find(id).select(table::next_run_at).first(conn).unwrap();
    diesel::update(table::table.find(id))
        .set(table::next_run_at.eq(next.min(schedules::now(conn).unwrap())))
        .execute(conn)
        .unwrap();
    let report = tick::tick(conn, GRACE, 10).unwrap();
    assert!(report.jobs.is_empty());
    assert!(report.skipped.get("ping").is_some_and(|n| *n >= 1), "{report:?}");
    let outcomes: Vec<String> = schedule_runs::table
        .filter(schedule_runs::schedule_id.eq(id))
        .order(schedule_runs::slot)
        .select(schedule_runs::outcome)
        .load(conn)
        .unwrap();
    // The tick's clock may have passed another whole second meanwhile:
    // every slot after the first is skipped, however many.
    assert_eq!(outcomes[0], "enqueued");
    assert!(outcomes.len() >= 2 && outcomes[1..].iter().all(|o| o == "skipped"), "{outcomes:?}");
}

/// An organization's export schedule, due now (yearly pattern, as above),
/// whose runs do not hold back its next slots.
fn export_schedule(conn: &mut PgConnection) -> (Uuid, Uuid) {
    use stockflow_domain::{Email, OrgSlug, Role};
    let org = stockflow_db::organizations::find_or_create(conn, &OrgSlug::parse("acme").unwrap()).unwrap();
    let user = stockflow_db::users::find_or_create(conn, org.id, &Email::parse("a@example.com").unwrap(), Role::Admin)
        .unwrap();
    let now = schedules::now(conn).unwrap();
    let id = diesel::insert_into(table::table)
        .values((
            table::org_id.eq(org.id),
            table::created_by.eq(user.id),
            table::name.eq("yearly"),
            table::cron.eq("0 0 1 1 *"),
            table::routing_key.eq("export.requested"),
            table::payload.eq(serde_json::json!({"kind": "products", "format": "csv", "filters": {"q": "rye"}})),
            table::next_run_at.eq(now - Duration::milliseconds(500)),
            table::overlap_policy.eq("allow"),
        ))
        .returning(table::id)
        .get_result(conn)
        .unwrap();
    (org.id, id)
}

#[test]
fn an_export_schedule_makes_its_export_and_job_with_the_run() {
    use stockflow_db::schema::exports;
    let database = TestDatabase::create();
    let conn = &mut leader(&database);
    let (org, id) = export_schedule(conn);

    let report = tick::tick(conn, GRACE, 10).unwrap();
    assert_eq!(report.fired.get("org"), Some(&1), "{report:?}");
    let (export_id, job_id): (Option<Uuid>, Option<Uuid>) = schedule_runs::table
        .filter(schedule_runs::schedule_id.eq(id))
        .select((schedule_runs::export_id, schedule_runs::job_id))
        .first(conn)
        .unwrap();
    assert_eq!(job_id, Some(report.jobs[0]));
    let (export_org, kind, filters, status): (Uuid, String, serde_json::Value, String) = exports::table
        .find(export_id.unwrap())
        .select((exports::org_id, exports::kind, exports::filters, exports::status))
        .first(conn)
        .unwrap();
    assert_eq!((export_org, kind.as_str(), status.as_str()), (org, "products", "queued"));
    assert_eq!(filters, serde_json::json!({"q": "rye"}));
    let message: serde_json::Value = outbox::table.find(report.jobs[0]).select(outbox::message).first(conn).unwrap();
    assert_eq!(message["payload"]["export_id"], export_id.unwrap().to_string());
    assert!(message["correlation_id"].as_str().unwrap().starts_with(&format!("schedule:{id}:")));

    // The slot fired again by a replica gone wrong: no second run, and no
    // export left without its job.
    let slot: chrono::DateTime<Utc> = schedule_runs::table.select(schedule_runs::slot).first(conn).unwrap();
    diesel::update(table::table.find(id)).set(table::next_run_at.eq(slot)).execute(conn).unwrap();
    assert!(tick::tick(conn, GRACE, 10).unwrap().jobs.is_empty());
    let made: i64 = exports::table.count().get_result(conn).unwrap();
    assert_eq!(made, 1);
}

#[test]
fn a_slot_that_finds_the_organization_at_its_limit_sends_nothing_and_says_why() {
    use stockflow_db::schema::exports;
    let database = TestDatabase::create();
    let conn = &mut leader(&database);
    let (org, id) = export_schedule(conn);
    // One export queued already, by a request.
    diesel::insert_into(exports::table)
        .values((exports::org_id.eq(org), exports::kind.eq("batches"), exports::format.eq("csv")))
        .execute(conn)
        .unwrap();

    let report = tick::tick(conn, GRACE, 1).unwrap();
    assert!(report.jobs.is_empty(), "{report:?}");
    assert_eq!(report.skipped.get("org"), Some(&1));
    let (outcome, detail, export_id): (String, Option<String>, Option<Uuid>) = schedule_runs::table
        .filter(schedule_runs::schedule_id.eq(id))
        .select((schedule_runs::outcome, schedule_runs::detail, schedule_runs::export_id))
        .first(conn)
        .unwrap();
    assert_eq!((outcome.as_str(), export_id), ("skipped", None));
    assert!(detail.unwrap().contains("EXPORTS_MAX_ACTIVE_PER_ORG"));
    let made: i64 = exports::table.count().get_result(conn).unwrap();
    assert_eq!(made, 1, "only the request's");
    let (next, status): (chrono::DateTime<Utc>, Option<String>) =
        table::table.find(id).select((table::next_run_at, table::last_status)).first(conn).unwrap();
    assert!(next > Utc::now(), "goes on with its next slot");
    assert_eq!(status.as_deref(), Some("skipped"));
}
