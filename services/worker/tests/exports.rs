// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

//! Exports through the real broker: a job written to the outbox next to its
//! export row (as the api does), relayed, consumed by the worker, and the
//! file and figures it leaves.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use lapin::Channel;
use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use stockflow_config::{BrokerSettings, DatabaseSettings, Env};
use stockflow_db::exports::{self, Created, ExportRow, NewExport};
use stockflow_db::{Database, PgConnection};
use stockflow_domain::{BatchFilters, BatchStatus, ExportFilters, ExportFormat, ProductFilters, SkuPrefix};
use stockflow_queue::{Broker, Outgoing, Publisher};
use stockflow_runtime::OutboxRelay;
use stockflow_telemetry::Shutdown;
use stockflow_testkit::{ProcessEnv, ServiceProcess, TestApp, eventually};
use stockflow_worker::{Application, HEALTH_BIND_VAR, Settings};
use uuid::Uuid;

const BINARY: &str = env!("CARGO_BIN_EXE_stockflow-worker");

async fn spawn_worker(builder: stockflow_testkit::TestAppBuilder) -> TestApp {
    builder
        .env("JOB_RETRY_BASE_MS", "50")
        .env("JOB_RETRY_MAX_MS", "200")
        .spawn(|env, shutdown| async move {
            let app = Application::build(Settings::from_env(&env)?, shutdown).await?;
            let address = app.address();
            Ok((address, Box::pin(async move { Ok(app.run_until_stopped().await?) }) as _))
        })
        .await
}

/// What the api runs: the relay that publishes the outbox.
struct Relay {
    relay: OutboxRelay,
    publisher: Arc<Publisher>,
    shutdown: Shutdown,
}

impl Relay {
    fn start(env: &Env) -> Self {
        let database = Database::connect_lazy(&DatabaseSettings::from_env(env).unwrap());
        let broker = Broker::start(&BrokerSettings::from_env(env).unwrap(), "test-relay").unwrap();
        let publisher = Arc::new(Publisher::new(broker));
        let shutdown = Shutdown::new();
        let (relay, _task) =
            OutboxRelay::start(database, Arc::clone(&publisher), Duration::from_millis(200), shutdown.clone());
        Self { relay, publisher, shutdown }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

struct Tenant {
    org: Uuid,
    user: Uuid,
    products: Vec<Uuid>,
}

/// One organization with two products and `batches` batches; every fifth
/// note holds a newline and quotes, as real notes do.
fn seed(conn: &mut PgConnection, batches: i64) -> Tenant {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: Uuid,
    }
    let slug = format!("org-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let org = diesel::sql_query("INSERT INTO organizations (slug, name) VALUES ($1, 'Test') RETURNING id")
        .bind::<Text, _>(&slug)
        .get_result::<Id>(conn)
        .unwrap()
        .id;
    let user =
        diesel::sql_query("INSERT INTO users (org_id, email, role) VALUES ($1, 'a@example.com', 'admin') RETURNING id")
            .bind::<diesel::sql_types::Uuid, _>(org)
            .get_result::<Id>(conn)
            .unwrap()
            .id;
    let products = ["A_1", "AB-2"]
        .into_iter()
        .map(|sku| {
            diesel::sql_query(
                "INSERT INTO products (org_id, sku, name, unit) VALUES ($1, $2, 'Flour ' || $2, 'kg') RETURNING id",
            )
            .bind::<diesel::sql_types::Uuid, _>(org)
            .bind::<Text, _>(sku)
            .get_result::<Id>(conn)
            .unwrap()
            .id
        })
        .collect::<Vec<_>>();
    diesel::sql_query(
        "INSERT INTO batches (org_id, product_id, code, quantity, produced_at, status, notes) \
         SELECT $1, (ARRAY[$2, $3]::uuid[])[1 + g % 2], 'LOT-' || g, (g % 1000) * 1.25, \
                timestamptz '2026-01-01' + g * interval '1 minute', \
                (ARRAY['planned', 'in_progress', 'completed', 'cancelled'])[1 + g % 4], \
                CASE WHEN g % 5 = 0 THEN E'checked, \"ok\"\\nsecond line' ELSE '' END \
         FROM generate_series(1, $4) g",
    )
    .bind::<diesel::sql_types::Uuid, _>(org)
    .bind::<diesel::sql_types::Uuid, _>(products[0])
    .bind::<diesel::sql_types::Uuid, _>(products[1])
    .bind::<BigInt, _>(batches)
    .execute(conn)
    .unwrap();
    Tenant { org, user, products }
}

fn request(conn: &mut PgConnection, tenant: &Tenant, format: ExportFormat, filters: ExportFilters) -> Uuid {
    let new = NewExport {
        requested_by: tenant.user,
        format,
        filters: &filters,
        idempotency_key: None,
        correlation_id: "test",
    };
    match exports::create(conn, tenant.org, &new).unwrap() {
        Created::New { export, .. } => export.id,
        Created::Existing(_) => panic!("no idempotency key, so always new"),
    }
}

fn row(app: &TestApp, tenant: &Tenant, id: Uuid) -> ExportRow {
    exports::find(&mut app.database.connect(), tenant.org, id).unwrap().expect("the export exists")
}

async fn wait_status(app: &TestApp, tenant: &Tenant, id: Uuid, status: &str, within: Duration) -> ExportRow {
    eventually(&format!("export {id} {status}"), within, || async {
        let row = row(app, tenant, id);
        assert!(row.status != "failed" || status == "failed", "the export failed: {:?}", row.error);
        (row.status == status).then_some(row)
    })
    .await
}

fn media_root(env: &Env) -> PathBuf {
    PathBuf::from(env.get("MEDIA_ROOT").unwrap())
}

/// Every entry of the organization's exports directory, temp files included.
fn export_dir_entries(media_root: &Path, org: Uuid) -> Vec<String> {
    match std::fs::read_dir(media_root.join(org.to_string()).join("exports")) {
        Ok(entries) => {
            let mut names: Vec<String> =
                entries.map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned()).collect();
            names.sort();
            names
        }
        Err(_) => Vec::new(),
    }
}

/// The file behind a succeeded export, checked against the row's figures.
fn file_of(media_root: &Path, row: &ExportRow) -> Vec<u8> {
    let key = row.storage_key.as_ref().expect("a succeeded export has a key");
    let bytes = std::fs::read(media_root.join(key)).expect("the export's file exists");
    assert_eq!(row.size_bytes, Some(bytes.len() as i64), "size_bytes matches the file");
    assert_eq!(row.sha256.as_deref(), Some(Sha256::digest(&bytes).as_slice()), "sha256 matches the file");
    bytes
}

fn count(conn: &mut PgConnection, sql: &str, org: Uuid) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    diesel::sql_query(sql).bind::<diesel::sql_types::Uuid, _>(org).get_result::<Count>(conn).unwrap().n
}

async fn metrics(app: &TestApp) -> String {
    app.get("/metrics").await.text().await.unwrap()
}

fn metric(text: &str, series: &str) -> u64 {
    text.lines().find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0)
}

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

fn outbox_message(conn: &mut PgConnection, export: Uuid) -> Vec<u8> {
    use stockflow_db::schema::outbox;
    let messages: Vec<serde_json::Value> = outbox::table.select(outbox::message).load(conn).unwrap();
    let message = messages
        .into_iter()
        .find(|message| message["payload"]["export_id"] == export.to_string())
        .expect("the export's job is in the outbox");
    serde_json::to_vec(&message).unwrap()
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
    assert!(failed.error.as_deref().unwrap().contains("storage"), "{:?}", failed.error);

    let channel = channel().await;
    eventually("two dead letters", Duration::from_secs(30), || async {
        (depth(&channel, &topology.dead_queue()).await == 2).then_some(())
    })
    .await;
    let mut reasons = Vec::new();
    for _ in 0..2 {
        let message = channel
            .basic_get(topology.dead_queue().as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .expect("a dead letter");
        let headers = message.delivery.properties.headers().clone().unwrap_or_default();
        let reason = match headers.inner().get("x-stockflow-error") {
            Some(AMQPValue::LongString(reason)) => reason.to_string(),
            other => panic!("a dead letter without its reason: {other:?}"),
        };
        reasons.push(reason);
    }
    reasons.sort();
    assert!(reasons.iter().any(|r| r.contains("not JSON")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("storage")), "{reasons:?}");
    assert_eq!(depth(&channel, &topology.queue(stockflow_queue::topology::EXPORTS)).await, 0, "the queue drained");
    for tier in 1..=stockflow_queue::topology::RETRY_TIERS {
        assert_eq!(depth(&channel, &topology.retry_queue(tier)).await, 0, "retry tier {tier} drained");
    }
    let text = metrics(&app).await;
    assert_eq!(metric(&text, "stockflow_jobs_retried_total{type=\"export.requested\"}"), 2, "{text}");
    assert_eq!(metric(&text, "stockflow_jobs_dead_lettered_total{type=\"export.requested\"}"), 1, "{text}");
    assert_eq!(metric(&text, "stockflow_jobs_dead_lettered_total{type=\"unknown\"}"), 1, "{text}");
}

async fn channel() -> Channel {
    stockflow_testkit::broker::connect().await.create_channel().await.unwrap()
}

async fn depth(channel: &Channel, queue: &str) -> u32 {
    let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
    channel.queue_declare(queue.into(), passive, FieldTable::default()).await.unwrap().message_count()
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
