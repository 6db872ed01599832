// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

//! `/v1/schedules` from the client's side: what is accepted and refused,
//! fire times on the schedule's clock, pause and resume, "run now" making
//! an export as `POST /v1/exports` does, and system schedules read-only.
//! Firing on the pattern is the scheduler's part
//! (`services/scheduler/tests/org_exports.rs`).

mod common;

use common::{Method, Value, call, json, spawn_app, token};
use diesel::prelude::*;
use stockflow_db::schedules::{SystemSchedule, upsert_system};
use stockflow_db::schema::{outbox, schedule_runs, schedules};
use stockflow_domain::{RunTimeout, Timing};
use stockflow_testkit::TestApp;

fn nightly() -> Value {
    json!({
        "name": "nightly batches",
        "cron": "0 2 * * *",
        "timezone": "Europe/Berlin",
        "export": {"kind": "batches", "format": "csv", "filters": {"status": "completed"}},
    })
}

async fn create(app: &TestApp, admin: &str, body: Value) -> Value {
    let (status, schedule) = call(app, admin, Method::POST, "/v1/schedules", Some(body)).await;
    assert_eq!(status, 201, "{schedule}");
    schedule
}

fn path(schedule: &Value, tail: &str) -> String {
    format!("/v1/schedules/{}{tail}", schedule["id"].as_str().unwrap())
}

/// What the scheduler writes at start, for the read-only checks.
fn system_schedule(app: &TestApp) -> String {
    let schedule = SystemSchedule {
        name: "db-backup",
        timing: Timing::parse("0 3 * * *", "UTC").unwrap(),
        routing_key: "backup.database",
        payload: json!({"trigger": "scheduled"}),
        run_timeout: RunTimeout::DEFAULT,
    };
    let conn = &mut app.database.connect();
    upsert_system(conn, &schedule).unwrap();
    let id: uuid::Uuid =
        schedules::table.filter(schedules::org_id.is_null()).select(schedules::id).first(conn).unwrap();
    id.to_string()
}

#[tokio::test]
async fn a_schedule_is_created_with_its_next_fire_times_on_its_own_clock() {
    let app = spawn_app().await;
    let admin = token(&app, "acme", "admin");
    let response = app.http.post(app.url("/v1/schedules")).bearer_auth(&admin).json(&nightly()).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let location = response.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
    let created: Value = response.json().await.unwrap();
    assert_eq!(location, Some(path(&created, "")));
    assert_eq!(created["name"], "nightly batches");
    assert_eq!((created["system"].as_bool(), created["paused"].as_bool()), (Some(false), Some(false)));
    assert_eq!(created["job"], "export.requested");
    assert_eq!(created["export"], json!({"kind": "batches", "format": "csv", "filters": {"status": "completed"}}));
    assert_eq!(
        (
            &created["misfire_policy"],
            &created["overlap_policy"],
            &created["catchup_window_secs"],
            &created["jitter_secs"]
        ),
        (&json!("coalesce"), &json!("skip"), &json!(3600), &json!(0)),
        "the defaults"
    );
    assert_eq!((&created["last_run_at"], &created["last_status"]), (&Value::Null, &Value::Null));
    let next: Vec<chrono::DateTime<chrono::FixedOffset>> = created["next_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|at| chrono::DateTime::parse_from_rfc3339(at.as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(next.len(), 5);
    let now = chrono::Utc::now();
    for (i, at) in next.iter().enumerate() {
        // 02:00 in Berlin, written with Berlin's offset of that day.
        assert_eq!(at.format("%H:%M").to_string(), "02:00", "{at}");
        let offset = at.offset().local_minus_utc();
        assert!(offset == 3600 || offset == 7200, "{at}");
        assert!(at.with_timezone(&chrono::Utc) > now);
        if i > 0 {
            assert_eq!(*at - next[i - 1], chrono::Duration::days(1), "{at}");
        }
    }

    let (status, got) = call(&app, &admin, Method::GET, &path(&created, ""), None).await;
    assert_eq!((status, &got), (200, &created));
    let (status, list) = call(&app, &admin, Method::GET, "/v1/schedules", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["items"], json!([created]));

    // Names are unique per organization.
    let (status, problem) = call(&app, &admin, Method::POST, "/v1/schedules", Some(nightly())).await;
    assert_eq!((status, problem["code"].as_str(), problem["field"].as_str()), (409, Some("conflict"), Some("name")));
    let theirs = token(&app, "globex", "admin");
    create(&app, &theirs, nightly()).await;
}

#[tokio::test]
async fn every_bad_field_is_reported_at_once_with_the_parsers_reason() {
    let app = spawn_app().await;
    let admin = token(&app, "acme", "admin");
    let body = json!({
        "name": " ",
        "cron": "61 * * * *",
        "timezone": "Mars/Olympus",
        "export": {"kind": "batches", "format": "xml", "filters": {"status": "lost", "sku_prefix": "A"}},
        "misfire_policy": "sometimes",
        "catchup_window_secs": 0,
        "overlap_policy": "never",
        "jitter_secs": 3601,
    });
    let (status, problem) = call(&app, &admin, Method::POST, "/v1/schedules", Some(body)).await;
    assert_eq!((status, problem["code"].as_str()), (422, Some("validation_failed")), "{problem}");
    let errors = problem["errors"].as_array().unwrap();
    let fields: Vec<&str> = errors.iter().map(|e| e["field"].as_str().unwrap()).collect();
    for field in [
        "name",
        "cron",
        "timezone",
        "export.format",
        "export.filters.status",
        "export.filters.sku_prefix",
        "misfire_policy",
        "catchup_window_secs",
        "overlap_policy",
        "jitter_secs",
    ] {
        assert!(fields.contains(&field), "{field} in {fields:?}");
    }
    let error = |field: &str| errors.iter().find(|e| e["field"] == field).unwrap();
    assert_eq!(error("cron")["code"], "invalid_cron");
    assert_eq!(error("cron")["message"], "invalid cron expression: Component error: Number out of bounds.");
    assert_eq!(error("timezone")["code"], "unknown_timezone");
    assert!(error("timezone")["message"].as_str().unwrap().contains("Mars/Olympus"));
    assert!(error("name").get("code").is_none(), "only the parsers' errors carry a code");

    // A pattern that never matches a date, and a zone not written as its
    // IANA name.
    let mut body = nightly();
    body["cron"] = json!("0 0 30 2 *");
    body["timezone"] = json!(" europe/berlin");
    let (status, problem) = call(&app, &admin, Method::POST, "/v1/schedules", Some(body)).await;
    assert_eq!(status, 422);
    let codes: Vec<&str> = problem["errors"].as_array().unwrap().iter().map(|e| e["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["invalid_cron", "unknown_timezone"], "{problem}");

    let mut body = nightly();
    body["owner"] = json!("someone");
    assert_eq!(call(&app, &admin, Method::POST, "/v1/schedules", Some(body)).await.0, 422, "unknown fields");
    let member = token(&app, "acme", "member");
    let (status, problem) = call(&app, &member, Method::POST, "/v1/schedules", Some(nightly())).await;
    assert_eq!((status, problem["code"].as_str()), (403, Some("forbidden")));
    assert_eq!(call(&app, &member, Method::GET, "/v1/schedules", None).await.0, 403, "admins only, reads too");
    let left: i64 = schedules::table.count().get_result(&mut app.database.connect()).unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn a_change_of_pattern_or_zone_counts_the_next_slot_from_now() {
    let app = spawn_app().await;
    let admin = token(&app, "acme", "admin");
    let created = create(&app, &admin, nightly()).await;

    let change = json!({"name": "hourly batches", "cron": "0 * * * *", "jitter_secs": 60});
    let (status, changed) = call(&app, &admin, Method::PATCH, &path(&created, ""), Some(change)).await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        (&changed["name"], &changed["cron"], &changed["timezone"]),
        (&json!("hourly batches"), &json!("0 * * * *"), &json!("Europe/Berlin"))
    );
    assert_eq!(changed["jitter_secs"], 60);
    let first = chrono::DateTime::parse_from_rfc3339(changed["next_runs"][0].as_str().unwrap()).unwrap();
    let until = first.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(until > chrono::Duration::zero() && until <= chrono::Duration::hours(1), "the next full hour: {first}");

    let (status, kolkata) =
        call(&app, &admin, Method::PATCH, &path(&created, ""), Some(json!({"timezone": "Asia/Kolkata"}))).await;
    assert_eq!(status, 200);
    assert!(kolkata["next_runs"][0].as_str().unwrap().ends_with("+05:30"), "{kolkata}");

    let export = json!({"kind": "products", "format": "jsonl"});
    let (status, changed) =
        call(&app, &admin, Method::PATCH, &path(&created, ""), Some(json!({"export": export}))).await;
    assert_eq!(status, 200);
    assert_eq!(changed["export"], json!({"kind": "products", "format": "jsonl", "filters": {}}));
    assert_eq!(changed["next_runs"], kolkata["next_runs"], "the timing kept, and its next slot");

    for (body, field) in [
        (json!({"cron": null}), "cron"),
        (json!({"cron": "* *"}), "cron"),
        (json!({"export": {"kind": "products", "format": "csv", "filters": {"status": "x"}}}), "export.filters.status"),
    ] {
        let (status, problem) = call(&app, &admin, Method::PATCH, &path(&created, ""), Some(body)).await;
        assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some(field)), "{problem}");
    }
    let other = create(&app, &admin, nightly()).await;
    let (status, problem) =
        call(&app, &admin, Method::PATCH, &path(&other, ""), Some(json!({"name": "hourly batches"}))).await;
    assert_eq!((status, problem["field"].as_str()), (409, Some("name")));

    assert_eq!(call(&app, &admin, Method::DELETE, &path(&other, ""), None).await.0, 204);
    assert_eq!(call(&app, &admin, Method::GET, &path(&other, ""), None).await.0, 404);
    assert_eq!(call(&app, &admin, Method::DELETE, &path(&other, ""), None).await.0, 404);
}

#[tokio::test]
async fn a_paused_schedule_shows_no_fire_times_and_resumes_from_now() {
    let app = spawn_app().await;
    let admin = token(&app, "acme", "admin");
    let mut body = nightly();
    body["cron"] = json!("*/10 * * * * *");
    let created = create(&app, &admin, body).await;

    let note = json!({"note": " stock count this week "});
    let (status, paused) = call(&app, &admin, Method::POST, &path(&created, "/pause"), Some(note)).await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!((&paused["paused"], &paused["pause_note"]), (&json!(true), &json!("stock count this week")));
    assert_eq!(paused["next_runs"], json!([]));
    // Without a body: still paused, the note replaced by none.
    let response = app.http.post(app.url(&path(&created, "/pause"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let paused: Value = response.json().await.unwrap();
    assert_eq!((&paused["paused"], &paused["pause_note"]), (&json!(true), &Value::Null));

    let response = app
        .http
        .post(app.url(&path(&created, "/pause")))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("null")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "null is no note");

    // Bad bodies are refused as every JSON body is.
    let bad = app
        .http
        .post(app.url(&path(&created, "/pause")))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{\"note\":")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    for body in [json!({"note": "a\u{0007}b"}), json!({"reason": "x"}), json!({"note": 5})] {
        let (status, problem) = call(&app, &admin, Method::POST, &path(&created, "/pause"), Some(body)).await;
        assert_eq!((status, problem["code"].as_str()), (422, Some("validation_failed")), "{problem}");
    }

    // Slots passed while paused are not made up for.
    let conn = &mut app.database.connect();
    let long_ago = chrono::Utc::now() - chrono::Duration::days(3);
    diesel::update(schedules::table).set(schedules::next_run_at.eq(long_ago)).execute(conn).unwrap();
    let (status, resumed) = call(&app, &admin, Method::POST, &path(&created, "/resume"), None).await;
    assert_eq!(status, 200);
    assert_eq!((&resumed["paused"], &resumed["pause_note"]), (&json!(false), &Value::Null));
    let first = chrono::DateTime::parse_from_rfc3339(resumed["next_runs"][0].as_str().unwrap()).unwrap();
    let until = first.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(until > chrono::Duration::seconds(-2) && until <= chrono::Duration::seconds(10), "{first}");
    assert_eq!(resumed["next_runs"].as_array().unwrap().len(), 5);
    // Resuming again changes nothing.
    let (_, again) = call(&app, &admin, Method::POST, &path(&created, "/resume"), None).await;
    assert_eq!(again["next_runs"], resumed["next_runs"]);
}

#[tokio::test]
async fn run_now_makes_an_export_as_post_exports_does_and_records_a_manual_run() {
    let app = spawn_app().await;
    let admin = token(&app, "acme", "admin");
    let created = create(&app, &admin, nightly()).await;
    // Paused or not.
    call(&app, &admin, Method::POST, &path(&created, "/pause"), None).await;

    let response = app.http.post(app.url(&path(&created, "/run"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(response.status(), 202);
    let location = response.headers().get("location").unwrap().to_str().unwrap().to_owned();
    let run: Value = response.json().await.unwrap();
    assert_eq!((&run["trigger"], &run["outcome"]), (&json!("manual"), &json!("enqueued")));
    let export_id = run["export_id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/exports/{export_id}"));

    let (status, export) = call(&app, &admin, Method::GET, &location, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (&export["kind"], &export["format"], &export["status"]),
        (&json!("batches"), &json!("csv"), &json!("queued"))
    );
    assert_eq!(export["filters"], json!({"status": "completed"}));
    let (_, exports) = call(&app, &admin, Method::GET, "/v1/exports", None).await;
    assert_eq!(exports["items"][0]["id"], export["id"]);
    // The run's job is the export's job, by the envelope's id.
    let conn = &mut app.database.connect();
    let job: uuid::Uuid = run["job_id"].as_str().unwrap().parse().unwrap();
    let message: Value = outbox::table.find(job).select(outbox::message).first(conn).unwrap();
    assert_eq!(
        (message["type"].as_str(), message["payload"]["export_id"].as_str()),
        (Some("export.requested"), Some(export_id))
    );

    // A second run, then both on the runs list, newest first, in pages.
    let (status, second) = call(&app, &admin, Method::POST, &path(&created, "/run"), None).await;
    assert_eq!(status, 202);
    let (status, page) = call(&app, &admin, Method::GET, &path(&created, "/runs?limit=1"), None).await;
    assert_eq!(status, 200);
    assert_eq!(page["items"], json!([second]));
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) =
        call(&app, &admin, Method::GET, &path(&created, &format!("/runs?limit=1&cursor={cursor}")), None).await;
    assert_eq!(rest["items"], json!([run]));
    assert_eq!(rest["next_cursor"], Value::Null);
    let (_, schedule) = call(&app, &admin, Method::GET, &path(&created, ""), None).await;
    assert_eq!(schedule["last_status"], "enqueued");
    assert_eq!(schedule["last_run_at"], second["fired_at"]);

    // Counted against the organization's limit (10 by default), as
    // POST /v1/exports is.
    for _ in 0..8 {
        let (status, _) =
            call(&app, &admin, Method::POST, "/v1/exports", Some(json!({"kind": "products", "format": "csv"}))).await;
        assert_eq!(status, 202);
    }
    let (status, problem) = call(&app, &admin, Method::POST, &path(&created, "/run"), None).await;
    assert_eq!((status, problem["code"].as_str()), (429, Some("too_many_exports")), "{problem}");
    let runs: i64 = schedule_runs::table.count().get_result(conn).unwrap();
    assert_eq!(runs, 2, "nothing recorded for a refused run");
    common::wait_for_outbox(&app).await;
}

#[tokio::test]
async fn system_schedules_are_listed_and_read_only() {
    let app = spawn_app().await;
    let admin = token(&app, "acme", "admin");
    let system = system_schedule(&app);
    let own = create(&app, &admin, nightly()).await;

    let (status, list) = call(&app, &admin, Method::GET, "/v1/schedules", None).await;
    assert_eq!(status, 200);
    let listed: Vec<(&str, bool)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["system"].as_bool().unwrap()))
        .collect();
    assert_eq!(listed, [("nightly batches", false), ("db-backup", true)]);
    let theirs = token(&app, "globex", "admin");
    let (_, their_list) = call(&app, &theirs, Method::GET, "/v1/schedules", None).await;
    let names: Vec<&str> =
        their_list["items"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["db-backup"], "another organization sees the system's, not ours");

    let at = format!("/v1/schedules/{system}");
    let (status, got) = call(&app, &admin, Method::GET, &at, None).await;
    assert_eq!(status, 200);
    assert_eq!((&got["system"], &got["job"], &got["export"]), (&json!(true), &json!("backup.database"), &Value::Null));
    assert_eq!(got["next_runs"].as_array().unwrap().len(), 5);
    assert_eq!(call(&app, &admin, Method::GET, &format!("{at}/runs"), None).await.0, 200);
    for (method, tail, body) in [
        (Method::PATCH, "", Some(json!({"name": "mine now"}))),
        (Method::DELETE, "", None),
        (Method::POST, "/run", None),
        (Method::POST, "/pause", None),
        (Method::POST, "/resume", None),
    ] {
        let (status, problem) = call(&app, &admin, method.clone(), &format!("{at}{tail}"), body).await;
        assert_eq!((status, problem["code"].as_str()), (409, Some("read_only")), "{method} {tail}: {problem}");
        assert!(problem["detail"].as_str().unwrap().contains("system schedule"), "{problem}");
    }
    let (_, unchanged) = call(&app, &admin, Method::GET, &at, None).await;
    assert_eq!(unchanged, got);
    // Another organization's schedule is not there at all.
    assert_eq!(call(&app, &theirs, Method::GET, &path(&own, ""), None).await.0, 404);
    assert_eq!(call(&app, &theirs, Method::POST, &path(&own, "/run"), None).await.0, 404);
}
