// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

//! An organization's export schedule, fired by the running scheduler: each
//! slot makes an export as `POST /v1/exports` does, linked to its run, and
//! a slot that finds the organization at its limit sends nothing.

use diesel::prelude::*;
use std::time::Duration;
use stockflow_db::org_schedules::{self, NewSchedule};
use stockflow_db::schema::{exports, outbox, schedule_runs as runs, schedules};
use stockflow_db::{organizations, users};
use stockflow_domain::{
    BatchFilters, BatchStatus, CatchupWindow, Email, ExportFilters, ExportFormat, ExportSpec, Jitter, MisfirePolicy,
    OrgSlug, OverlapPolicy, Role, ScheduleName, Timing,
};
use stockflow_scheduler::{Application, Settings};
use stockflow_testkit::{TestApp, eventually};
use uuid::Uuid;

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

type Run = (Uuid, Option<Uuid>, Option<Uuid>, String, Option<String>);

fn runs_of(conn: &mut PgConnection, id: Uuid) -> Vec<Run> {
    runs::table
        .filter(runs::schedule_id.eq(id))
        .order(runs::slot.asc())
        .select((runs::id, runs::export_id, runs::job_id, runs::outcome, runs::detail))
        .load(conn)
        .unwrap()
}

#[tokio::test]
async fn an_every_second_export_schedule_fires_exports_up_to_the_organizations_limit() {
    let app = spawn_app(&[("EXPORTS_MAX_ACTIVE_PER_ORG", "3")]).await;
    let conn = &mut app.database.connect();
    let org = organizations::find_or_create(conn, &OrgSlug::parse("acme").unwrap()).unwrap();
    let user = users::find_or_create(conn, org.id, &Email::parse("ann@example.com").unwrap(), Role::Admin).unwrap();
    let spec = ExportSpec {
        format: ExportFormat::Jsonl,
        filters: ExportFilters::Batches(BatchFilters { status: Some(BatchStatus::Completed), ..Default::default() }),
    };
    let new = NewSchedule {
        name: ScheduleName::parse("every second").unwrap(),
        timing: Timing::parse("* * * * * *", "Europe/Berlin").unwrap(),
        export: spec.clone(),
        misfire: MisfirePolicy::Coalesce,
        catchup: CatchupWindow::DEFAULT,
        // No worker runs here: each export stays queued, so every slot
        // after the third finds the organization at its limit.
        overlap: OverlapPolicy::Allow,
        jitter: Jitter::DEFAULT,
        created_by: user.id,
    };
    let id = org_schedules::insert(conn, org.id, &new).unwrap().id;

    // Three exports, then at least two slots skipped for the limit.
    let fired = eventually("three exports and two slots over the limit", Duration::from_secs(20), || {
        let fired = runs_of(conn, id);
        let skipped = fired.iter().filter(|run| run.3 == "skipped").count();
        std::future::ready((skipped >= 2).then_some(fired))
    })
    .await;
    diesel::update(schedules::table.find(id)).set(schedules::paused.eq(true)).execute(conn).unwrap();

    let (sent, skipped): (Vec<&Run>, Vec<&Run>) = fired.iter().partition(|run| run.3 == "enqueued");
    assert_eq!(sent.len(), 3, "{fired:?}");
    for (_, export_id, job_id, _, _) in &sent {
        let export_id = export_id.expect("a sent run names its export");
        let (org_id, requested_by, kind, format, filters, status): (
            Uuid,
            Option<Uuid>,
            String,
            String,
            serde_json::Value,
            String,
        ) = exports::table
            .find(export_id)
            .select((
                exports::org_id,
                exports::requested_by,
                exports::kind,
                exports::format,
                exports::filters,
                exports::status,
            ))
            .first(conn)
            .unwrap();
        assert_eq!((org_id, requested_by), (org.id, Some(user.id)));
        assert_eq!((kind.as_str(), format.as_str(), status.as_str()), ("batches", "jsonl", "queued"));
        assert_eq!(filters, serde_json::json!({"status": "completed"}));
        // The run's job is the export's job, as POST /v1/exports writes it.
        let message: serde_json::Value =
            outbox::table.find(job_id.unwrap()).select(outbox::message).first(conn).unwrap();
        assert_eq!(message["type"], "export.requested");
        assert_eq!(message["payload"], serde_json::json!({"export_id": export_id, "org_id": org.id}));
    }
    for (_, export_id, job_id, _, detail) in &skipped {
        assert_eq!((export_id, job_id), (&None, &None));
        let detail = detail.as_deref().unwrap_or_default();
        assert!(detail.contains("3 exports queued or running"), "{detail}");
    }
    let made: i64 = exports::table.filter(exports::org_id.eq(org.id)).count().get_result(conn).unwrap();
    assert_eq!(made, 3, "no export without its run");
    let status: Option<String> = schedules::table.find(id).select(schedules::last_status).first(conn).unwrap();
    assert_eq!(status.as_deref(), Some("skipped"));

    eventually("every job published", Duration::from_secs(10), || {
        let left: i64 = outbox::table.filter(outbox::published_at.is_null()).count().get_result(conn).unwrap();
        std::future::ready((left == 0).then_some(()))
    })
    .await;
    app.stop().await.unwrap();
}
