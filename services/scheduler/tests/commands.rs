// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

//! `stockflow-scheduler schedules list` and `next` as an operator runs them.

use chrono::Utc;
use diesel::prelude::*;
use stockflow_db::schema::{organizations, schedules};
use stockflow_testkit::ProcessEnv;

const BINARY: &str = env!("CARGO_BIN_EXE_stockflow-scheduler");

fn schedule(conn: &mut PgConnection, org: Option<uuid::Uuid>, name: &str, cron: &str, zone: &str) {
    diesel::insert_into(schedules::table)
        .values((
            schedules::org_id.eq(org),
            schedules::name.eq(name),
            schedules::cron.eq(cron),
            schedules::timezone.eq(zone),
            schedules::routing_key.eq("maintenance.ping"),
            schedules::payload.eq(serde_json::json!({"note": ""})),
            schedules::next_run_at.eq(Utc::now()),
        ))
        .execute(conn)
        .unwrap();
}

fn stdout(output: &std::process::Output) -> String {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn next_prints_fire_times_on_the_schedules_own_clock() {
    let env = ProcessEnv::new();
    let conn = &mut env.database.connect();
    schedule(conn, None, "nightly", "30 2 * * *", "Europe/Berlin");
    let out = stdout(&env.run(BINARY, &["next", "nightly", "-n", "3"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    for line in &lines {
        let berlin = line.ends_with("02:30:00 CET (+01:00)") || line.ends_with("02:30:00 CEST (+02:00)");
        assert!(berlin, "{line}");
    }
    assert_eq!(stdout(&env.run(BINARY, &["next", "nightly"])).lines().count(), 10, "ten by default");
}

#[test]
fn next_finds_an_organizations_schedule_by_slug() {
    let env = ProcessEnv::new();
    let conn = &mut env.database.connect();
    let org: uuid::Uuid = diesel::insert_into(organizations::table)
        .values((organizations::slug.eq("acme"), organizations::name.eq("Acme")))
        .returning(organizations::id)
        .get_result(conn)
        .unwrap();
    schedule(conn, Some(org), "weekly", "0 9 * * MON", "America/New_York");
    let out = stdout(&env.run(BINARY, &["next", "weekly", "--org", "acme", "-n", "2"]));
    assert!(out.lines().all(|l| l.contains(" 09:00:00 E")), "{out}");

    let missing = env.run(BINARY, &["next", "weekly"]);
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("no schedule named \"weekly\" among system schedules"), "{stderr}");
}

#[test]
fn schedules_list_shows_owner_state_and_next_run_in_zone() {
    let env = ProcessEnv::new();
    let conn = &mut env.database.connect();
    schedule(conn, None, "nightly", "30 2 * * *", "Asia/Tokyo");
    schedule(conn, None, "held", "0 * * * *", "UTC");
    diesel::update(schedules::table.filter(schedules::name.eq("held")))
        .set((schedules::paused.eq(true), schedules::pause_note.eq("disk swap")))
        .execute(conn)
        .unwrap();
    let out = stdout(&env.run(BINARY, &["schedules", "list"]));
    let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines[0][0], "NAME");
    let held = lines.iter().find(|l| l[0] == "held").unwrap();
    assert_eq!((held[1], held[4]), ("system", "paused: disk swap"));
    let nightly = lines.iter().find(|l| l[0] == "nightly").unwrap();
    assert_eq!((nightly[3], nightly[4]), ("Asia/Tokyo", "active"));
    assert!(nightly[5].ends_with("JST (+09:00)"), "{:?}", nightly[5]);
}
