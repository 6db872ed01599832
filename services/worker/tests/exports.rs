// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

//! Exports through the real broker: a job written to the outbox next to its
//! export row (as the api does), relayed, consumed by the worker, and the
//! file and figures it leaves.

mod common;

use common::*;
use diesel::prelude::*;
use std::time::Duration;
use stockflow_db::exports;
use stockflow_domain::{
    BatchFilters, BatchStatus, Envelope, ExportFilters, ExportFormat, ExportRequested, ProductFilters, SkuPrefix,
};
use stockflow_queue::Outgoing;
use stockflow_telemetry::Shutdown;
use stockflow_testkit::{ProcessEnv, ServiceProcess, TestApp, eventually};
use stockflow_worker::{Application, HEALTH_BIND_VAR, Settings};
use uuid::Uuid;

#[tokio::test]
async fn exports_write_every_matching_row_once_with_figures_that_match_the_file() {
    let app = spawn_worker(TestApp::builder()).await;
    let relay = Relay::start(&app.env);
    let mut conn = app.database.connect();
    let tenant = seed(&mut conn, 1000);
    let everything = request(&mut conn, &tenant, ExportFormat::Csv, ExportFilters::Batches(Default::default()));
    let completed = BatchFilters {
        status: Some(BatchStatus::Completed),
        product_id: Some(tenant.products[0]),
        ..Default::default()
    };
    let filtered = request(&mut conn, &tenant, ExportFormat::Jsonl, ExportFilters::Batches(completed));
    let products = ProductFilters { sku_prefix: Some(SkuPrefix::parse("A_").unwrap()), q: None };
    let by_prefix = request(&mut conn, &tenant, ExportFormat::Csv, ExportFilters::Products(products));
    relay.relay.kick();
    let root = media_root(&app.env);

    let csv = wait_status(&app, &tenant, everything, "succeeded", Duration::from_secs(30)).await;
    assert_eq!(csv.row_count, Some(1000));
    assert_eq!(csv.attempts, 1);
    assert!(csv.expires_at.unwrap() > csv.finished_at.unwrap() + chrono::Duration::days(6));
    let text = String::from_utf8(file_of(&root, &csv)).unwrap();
    assert!(text.starts_with("id,code,product_id,product_sku,quantity,unit,status,produced_at,notes,metadata,"));
    // Notes with newlines stay inside quoted fields.
    assert!(text.contains("\"checked, \"\"ok\"\"\nsecond line\""), "CSV quoting: {}", &text[..400]);
    assert!(text.contains(",LOT-1,"), "first batch present");

    let jsonl = wait_status(&app, &tenant, filtered, "succeeded", Duration::from_secs(30)).await;
    let expected = count(
        &mut conn,
        &format!(
            "SELECT count(*) AS n FROM batches WHERE org_id = $1 AND status = 'completed' AND product_id = '{}'",
            tenant.products[0]
        ),
        tenant.org,
    );
    assert!(expected > 0);
    assert_eq!(jsonl.row_count, Some(expected));
    let lines: Vec<serde_json::Value> = String::from_utf8(file_of(&root, &jsonl))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
        .collect();
    assert_eq!(lines.len() as i64, expected);
    for line in &lines {
        assert_eq!(line["status"], "completed");
        assert_eq!(line["product_id"], tenant.products[0].to_string());
        assert!(line["quantity"].is_string(), "quantities stay exact text: {line}");
    }

    let products = wait_status(&app, &tenant, by_prefix, "succeeded", Duration::from_secs(30)).await;
    assert_eq!(products.row_count, Some(1), "'_' in a SKU prefix is literal, not a wildcard");
    assert!(String::from_utf8(file_of(&root, &products)).unwrap().contains(",A_1,"));

    let names = export_dir_entries(&root, tenant.org);
    assert_eq!(names.len(), 3, "one file per export and nothing else: {names:?}");
    let text = metrics(&app).await;
    assert_eq!(metric(&text, "stockflow_jobs_succeeded_total{type=\"export.requested\"}"), 3, "{text}");
    assert!(text.contains("stockflow_queue_ready_messages{queue=\""), "{text}");
    assert!(text.contains("stockflow_job_duration_seconds_count{type=\"export.requested\"} 3"), "{text}");
}

#[tokio::test]
async fn the_same_message_delivered_twice_makes_one_file_and_one_success() {
    let app = spawn_worker(TestApp::builder()).await;
    let relay = Relay::start(&app.env);
    let mut conn = app.database.connect();
    let tenant = seed(&mut conn, 20_000);
    let id = request(&mut conn, &tenant, ExportFormat::Csv, ExportFilters::Batches(Default::default()));
    // Publish the job's own envelope a second time, as a broker redelivery
    // or a relay that died between confirm and commit would.
    let message = outbox_message(&mut conn, id);
    relay.relay.kick();
    let topology = relay.publisher.topology();
    let duplicate = Outgoing::raw_job(&topology, "export.requested", Uuid::new_v4().to_string(), message);
    eventually("the relay's broker link", Duration::from_secs(10), || async {
        relay.publisher.publish(&duplicate).await.ok()
    })
    .await;

    let done = wait_status(&app, &tenant, id, "succeeded", Duration::from_secs(60)).await;
    eventually("both deliveries settled", Duration::from_secs(30), || async {
        let text = metrics(&app).await;
        (metric(&text, "stockflow_jobs_consumed_total{type=\"export.requested\"}") == 2
            && metric(&text, "stockflow_jobs_succeeded_total{type=\"export.requested\"}") == 2)
            .then_some(())
    })
    .await;
    let after = row(&app, &tenant, id);
    assert_eq!(after.finished_at, done.finished_at, "the second delivery changed nothing");
    assert_eq!(after.sha256, done.sha256);
    let root = media_root(&app.env);
    assert_eq!(export_dir_entries(&root, tenant.org).len(), 1, "exactly one file");
    file_of(&root, &after);
}

#[tokio::test]
async fn a_malformed_message_and_a_job_that_always_fails_are_dead_lettered_with_their_reasons() {
    let app = spawn_worker(TestApp::builder().env("JOB_MAX_ATTEMPTS", "3")).await;
    let relay = Relay::start(&app.env);
    let mut conn = app.database.connect();
    let tenant = seed(&mut conn, 10);
    // The export's directory is a plain file: every put fails, every attempt.
    let root = media_root(&app.env);
    std::fs::create_dir_all(root.join(tenant.org.to_string())).unwrap();
    std::fs::write(root.join(tenant.org.to_string()).join("exports"), b"in the way").unwrap();
    let failing = request(&mut conn, &tenant, ExportFormat::Csv, ExportFilters::Batches(Default::default()));
    relay.relay.kick();
    let topology = relay.publisher.topology();
    let garbage = Outgoing::raw_job(&topology, "export.requested", "garbage".to_owned(), b"{not json".to_vec());
    eventually("the relay's broker link", Duration::from_secs(10), || async {
        relay.publisher.publish(&garbage).await.ok()
    })
    .await;

    let failed = wait_status(&app, &tenant, failing, "failed", Duration::from_secs(30)).await;
    assert_eq!(failed.attempts, 3, "tried JOB_MAX_ATTEMPTS times");
    // The client learns the kind of failure, never the store's own words.
    assert_eq!(failed.error.as_deref(), Some("storage_error"));

    let channel = channel().await;
    let reasons = dead_letter_reasons(&channel, &topology, 2).await;
    assert!(reasons.iter().any(|r| r.contains("not JSON")), "{reasons:?}");
    // Operators get the detail: the dead letter names the path in the way.
    let storage = reasons.iter().find(|r| r.starts_with("storage_error: storage: ")).expect("the storage failure");
    assert!(storage.contains(&tenant.org.to_string()), "{storage}");
    assert_eq!(depth(&channel, &topology.queue(stockflow_queue::topology::EXPORTS)).await, 0, "the queue drained");
    for tier in 1..=stockflow_queue::topology::RETRY_TIERS {
        assert_eq!(depth(&channel, &topology.retry_queue(tier)).await, 0, "retry tier {tier} drained");
    }
    let text = metrics(&app).await;
    assert_eq!(metric(&text, "stockflow_jobs_retried_total{type=\"export.requested\"}"), 2, "{text}");
    assert_eq!(metric(&text, "stockflow_jobs_dead_lettered_total{type=\"export.requested\"}"), 1, "{text}");
    assert_eq!(metric(&text, "stockflow_jobs_dead_lettered_total{type=\"unknown\"}"), 1, "{text}");
}

#[tokio::test]
async fn the_broker_going_away_loses_no_job_and_the_worker_comes_back_by_itself() {
    let app = spawn_worker(TestApp::builder()).await;
    app.wait_for_readyz(200, Duration::from_secs(10)).await;
    let relay = Relay::start(&app.env);
    let mut conn = app.database.connect();
    let tenant = seed(&mut conn, 30_000);
    let all = || ExportFilters::Batches(Default::default());
    let mut ids: Vec<Uuid> = (0..4).map(|_| request(&mut conn, &tenant, ExportFormat::Csv, all())).collect();
    relay.relay.kick();
    // Cut the link while those run, and ask for more while it is down.
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.broker_proxy.sever();
    app.wait_until_down("broker", Duration::from_secs(15)).await;
    ids.extend((0..3).map(|_| request(&mut conn, &tenant, ExportFormat::Jsonl, all())));
    relay.relay.kick();
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.broker_proxy.restore();
    app.wait_for_readyz(200, Duration::from_secs(30)).await;

    let root = media_root(&app.env);
    for id in &ids {
        let done = wait_status(&app, &tenant, *id, "succeeded", Duration::from_secs(60)).await;
        assert_eq!(done.row_count, Some(30_000));
        file_of(&root, &done);
    }
    assert_eq!(export_dir_entries(&root, tenant.org).len(), ids.len(), "one file per export, no temp file");
}

#[tokio::test]
async fn a_worker_killed_midway_leaves_no_trace_and_the_export_succeeds_once() {
    let env = ProcessEnv::new().with("LOG_LEVEL", "warn");
    let mut conn = env.database.connect();
    let tenant = seed(&mut conn, 400_000);
    let root = media_root(&env.env);
    let mut worker = ServiceProcess::spawn(&env, BINARY, HEALTH_BIND_VAR);
    worker.wait_ready(Duration::from_secs(20)).await;
    let relay = Relay::start(&env.env);
    let id = request(&mut conn, &tenant, ExportFormat::Csv, ExportFilters::Batches(Default::default()));
    relay.relay.kick();

    // Kill it while the file is half written: a temp file exists.
    let partial = eventually("a half-written export", Duration::from_secs(60), || async {
        let names = export_dir_entries(&root, tenant.org);
        names.iter().find(|name| name.starts_with(".tmp-")).cloned()
    })
    .await;
    let status = worker.kill();
    assert!(!status.success());
    let killed = exports::find(&mut conn, tenant.org, id).unwrap().unwrap();
    assert_eq!(killed.status, "running", "killed before it finished");
    assert!(export_dir_entries(&root, tenant.org).contains(&partial), "the crash left its temp file");

    let replacement = ServiceProcess::spawn(&env, BINARY, HEALTH_BIND_VAR);
    replacement.wait_ready(Duration::from_secs(20)).await;
    let done = eventually("the export to succeed after redelivery", Duration::from_secs(120), || async {
        let row = exports::find(&mut env.database.connect(), tenant.org, id).unwrap().unwrap();
        (row.status == "succeeded").then_some(row)
    })
    .await;
    assert_eq!(done.attempts, 2, "the killed attempt and the one that finished");
    assert_eq!(done.row_count, Some(400_000));
    let bytes = file_of(&root, &done);
    let lines = bytes.iter().filter(|&&b| b == b'\n').count();
    assert!(lines > 400_000, "header + rows (+ note lines): {lines}");
    assert_eq!(export_dir_entries(&root, tenant.org), vec![format!("{id}.csv")], "exactly one file, no temp file");
    drop(relay);
}

#[tokio::test]
async fn a_worker_told_to_stop_mid_export_exits_in_time_and_the_job_is_not_lost() {
    let mut app = spawn_worker(TestApp::builder()).await;
    let relay = Relay::start(&app.env);
    let mut conn = app.database.connect();
    let tenant = seed(&mut conn, 200_000);
    let id = request(&mut conn, &tenant, ExportFormat::Jsonl, ExportFilters::Batches(Default::default()));
    relay.relay.kick();
    wait_status(&app, &tenant, id, "running", Duration::from_secs(30)).await;
    let env = app.env.clone();
    let started = std::time::Instant::now();
    app.stop_service().await.expect("a clean stop");
    assert!(started.elapsed() < Duration::from_secs(10), "stopped in {:?}", started.elapsed());

    // Finished within the drain, or returned to the queue: either way the
    // next worker leaves it succeeded, once.
    let shutdown = Shutdown::new();
    let next = Application::build(Settings::from_env(&env).unwrap(), shutdown.clone()).await.unwrap();
    let running = tokio::spawn(next.run_until_stopped());
    let done = eventually("the export to succeed", Duration::from_secs(60), || async {
        let row = exports::find(&mut app.database.connect(), tenant.org, id).unwrap().unwrap();
        assert_ne!(row.status, "failed", "{:?}", row.error);
        (row.status == "succeeded").then_some(row)
    })
    .await;
    assert_eq!(done.row_count, Some(200_000));
    let root = media_root(&env);
    file_of(&root, &done);
    assert_eq!(export_dir_entries(&root, tenant.org), vec![format!("{id}.jsonl")], "one file, no temp file");
    shutdown.trigger();
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_job_naming_an_export_of_another_organization_or_none_is_dead_lettered_and_changes_no_row() {
    let app = spawn_worker(TestApp::builder()).await;
    let relay = Relay::start(&app.env);
    let mut conn = app.database.connect();
    let victim = seed(&mut conn, 10);
    let intruder = seed(&mut conn, 10);
    // The victim's export, whose own job is never published.
    let export = request(&mut conn, &victim, ExportFormat::Csv, ExportFilters::Batches(Default::default()));
    diesel::delete(stockflow_db::schema::outbox::table).execute(&mut conn).unwrap();
    let before = row(&app, &victim, export);

    let topology = relay.publisher.topology();
    for (export_id, org_id) in [(export, intruder.org), (Uuid::new_v4(), victim.org)] {
        let envelope = Envelope::new(ExportRequested { export_id, org_id }, "forged");
        let body = serde_json::to_vec(&envelope).unwrap();
        let forged = Outgoing::raw_job(&topology, "export.requested", envelope.id.to_string(), body);
        eventually("the relay's broker link", Duration::from_secs(10), || async {
            relay.publisher.publish(&forged).await.ok()
        })
        .await;
    }

    let reasons = dead_letter_reasons(&channel().await, &topology, 2).await;
    let expected =
        [format!("export {export} belongs to another organization than {}", intruder.org), "does not exist".to_owned()];
    for reason in &expected {
        assert!(reasons.iter().any(|r| r.contains(reason.as_str())), "{reason:?} not in {reasons:?}");
    }
    // Dead-lettered after giving up, so any change to the row is made by now.
    let after = row(&app, &victim, export);
    assert_eq!(
        (after.status.as_str(), after.attempts, after.started_at, after.finished_at, after.error),
        ("queued", 0, None, None, None),
        "the victim's export was touched"
    );
    assert_eq!(after.created_at, before.created_at);
    let text = metrics(&app).await;
    assert_eq!(metric(&text, "stockflow_jobs_dead_lettered_total{type=\"export.requested\"}"), 2, "{text}");
    assert_eq!(metric(&text, "stockflow_jobs_succeeded_total{type=\"export.requested\"}"), 0, "{text}");
}

#[tokio::test]
async fn one_organizations_backlog_does_not_keep_another_waiting() {
    // One export at a time, so the order in which they start is the order
    // in which the worker hands out its turns.
    let app = spawn_worker(TestApp::builder().env("WORKER_CONCURRENCY", "1")).await;
    let relay = Relay::start(&app.env);
    let mut conn = app.database.connect();
    let busy = seed(&mut conn, 100_000);
    let other = seed(&mut conn, 10);
    let all = || ExportFilters::Batches(Default::default());
    let backlog: Vec<Uuid> = (0..6).map(|_| request(&mut conn, &busy, ExportFormat::Csv, all())).collect();
    relay.relay.kick();
    // Whichever of the six took the slot first: the handlers check their
    // jobs concurrently before queueing for a turn, so it need not be the
    // first one published (waiting for that one failed when it came fifth).
    eventually("one of the backlog to start", Duration::from_secs(30), || async {
        backlog.iter().any(|id| row(&app, &busy, *id).started_at.is_some()).then_some(())
    })
    .await;
    let late = request(&mut conn, &other, ExportFormat::Csv, all());
    relay.relay.kick();

    let late = wait_status(&app, &other, late, "succeeded", Duration::from_secs(120)).await;
    let mut started_before = 0;
    for id in &backlog {
        let done = wait_status(&app, &busy, *id, "succeeded", Duration::from_secs(120)).await;
        if done.started_at < late.started_at {
            started_before += 1;
        }
    }
    // In arrival order it would have started last, after all six.
    assert!(started_before <= 2, "{started_before} of the backlog's six started before the newcomer's export");
}
