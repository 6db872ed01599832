// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

//! The scheduler in-process: system schedules follow the environment at
//! each start, `/readyz` names the role, `/metrics` counts what fired.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use std::time::Duration;
use stockflow_config::Env;
use stockflow_db::schedule_runs;
use stockflow_db::schema::{schedule_runs as runs, schedules};
use stockflow_domain::RunOutcome;
use stockflow_scheduler::{Application, Settings};
use stockflow_telemetry::Shutdown;
use stockflow_testkit::{TestApp, eventually};

async fn spawn_app(vars: &[(&str, &str)]) -> TestApp {
    let builder =
        vars.iter().fold(TestApp::builder().env("SCHEDULER_TICK_MS", "200"), |b, (var, value)| b.env(var, value));
    builder
        .spawn(|env, shutdown| async move {
            let app = Application::build(Settings::from_env(&env)?, shutdown).await?;
            let address = app.address();
            Ok((address, Box::pin(async move { Ok(app.run_until_stopped().await?) }) as _))
        })
        .await
}

/// Starts the scheduler once more on `env` (another deploy, same database)
/// until its system schedules are written, then stops it.
async fn start_again(env: Env) {
    let shutdown = Shutdown::new();
    let app = Application::build(Settings::from_env(&env).unwrap(), shutdown.clone()).await.unwrap();
    let running = tokio::spawn(app.run_until_stopped());
    shutdown.trigger();
    running.await.unwrap().unwrap();
}

fn system_row(conn: &mut PgConnection, name: &str) -> (String, String, bool, DateTime<Utc>) {
    schedules::table
        .filter(schedules::org_id.is_null().and(schedules::name.eq(name)))
        .select((schedules::cron, schedules::timezone, schedules::enabled, schedules::next_run_at))
        .first(conn)
        .unwrap()
}

#[tokio::test]
async fn system_schedules_follow_the_environment_at_each_start() {
    let mut app = spawn_app(&[("DB_BACKUP_CRON", "0 1 * * *"), ("SCHEDULER_TIMEZONE", "Europe/Berlin")]).await;
    let conn = &mut app.database.connect();
    let (cron, zone, enabled, _) = system_row(conn, "db-backup");
    assert_eq!((cron.as_str(), zone.as_str(), enabled), ("0 1 * * *", "Europe/Berlin", true));
    for (name, cron) in [
        ("media-backup", "30 2 * * *"),
        ("cleanup-uploads", "0 */6 * * *"),
        ("expire-exports", "15 * * * *"),
        ("reconcile-storage", "45 3 * * *"),
    ] {
        assert_eq!(system_row(conn, name).0, cron, "{name}'s default");
    }
    app.stop_service().await.unwrap();

    let before = Utc::now();
    start_again(app.env.clone().with("DB_BACKUP_CRON", "*/5 * * * *").with("MEDIA_BACKUP_CRON", "off")).await;
    let (cron, _, enabled, next) = system_row(conn, "db-backup");
    assert_eq!((cron.as_str(), enabled), ("*/5 * * * *", true));
    assert!(next > before && next <= Utc::now() + chrono::Duration::minutes(5), "counted from now: {next}");
    assert!(!system_row(conn, "media-backup").2, "off switches it off");
    assert_eq!(system_row(conn, "expire-exports").0, "15 * * * *", "the others as they were");
}

#[tokio::test]
async fn readyz_names_the_role_and_metrics_count_what_fired() {
    let app = spawn_app(&[]).await;
    let body = app.wait_for_readyz(200, Duration::from_secs(15)).await;
    eventually("the role leader on /readyz", Duration::from_secs(10), || async {
        let (status, body) = app.readyz().await;
        (status == 200 && body["role"] == "leader").then_some(())
    })
    .await;
    assert!(body.get("role").is_some(), "{body}");

    let conn = &mut app.database.connect();
    let id: uuid::Uuid = diesel::insert_into(schedules::table)
        .values((
            schedules::name.eq("heartbeat"),
            schedules::cron.eq("* * * * * *"),
            schedules::routing_key.eq("maintenance.ping"),
            schedules::payload.eq(serde_json::json!({"note": ""})),
            schedules::next_run_at.eq(Utc::now()),
            schedules::overlap_policy.eq("allow"),
        ))
        .returning(schedules::id)
        .get_result(conn)
        .unwrap();
    let job: uuid::Uuid = eventually("a run of heartbeat", Duration::from_secs(10), || {
        let job = runs::table
            .filter(runs::schedule_id.eq(id))
            .select(runs::job_id)
            .first::<Option<uuid::Uuid>>(conn)
            .optional()
            .unwrap()
            .flatten();
        std::future::ready(job)
    })
    .await;
    // What a consumer does once the job is done.
    assert!(schedule_runs::record_outcome(conn, job, RunOutcome::Succeeded, None).unwrap());

    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("stockflow_scheduler_leader 1"), "{metrics}");
    assert!(
        metrics.lines().any(|l| l.starts_with(r#"stockflow_scheduler_runs_fired_total{schedule="heartbeat",trigger="scheduled"}"#)),
        "{metrics}"
    );
    assert!(metrics.contains("stockflow_scheduler_tick_duration_seconds_count"), "{metrics}");
    let age = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"stockflow_scheduler_since_last_success_seconds{schedule="heartbeat"} "#))
        .unwrap_or_else(|| panic!("no age for heartbeat: {metrics}"));
    let age: f64 = age.parse().unwrap();
    assert!((0.0..60.0).contains(&age), "{age}");

    // Pause it and let the relay publish what fired, before stopping.
    diesel::update(schedules::table.find(id)).set(schedules::paused.eq(true)).execute(conn).unwrap();
    eventually("every job published", Duration::from_secs(10), || {
        use stockflow_db::schema::outbox;
        let left: i64 = outbox::table.filter(outbox::published_at.is_null()).count().get_result(conn).unwrap();
        std::future::ready((left == 0).then_some(()))
    })
    .await;
    app.stop().await.unwrap();
}
