//! What the worker's export tests share: a worker on a fresh database, the
//! api's outbox relay, a seeded organization, and readers of the rows,
//! files, metrics and queues the exports leave.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

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
use stockflow_domain::{ExportFilters, ExportFormat};
use stockflow_queue::{Broker, Publisher};
use stockflow_runtime::OutboxRelay;
use stockflow_telemetry::Shutdown;
use stockflow_testkit::{TestApp, eventually};
use stockflow_worker::{Application, Settings};
use uuid::Uuid;

pub(crate) const BINARY: &str = env!("CARGO_BIN_EXE_stockflow-worker");

pub(crate) async fn spawn_worker(builder: stockflow_testkit::TestAppBuilder) -> TestApp {
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
pub(crate) struct Relay {
    pub(crate) relay: OutboxRelay,
    pub(crate) publisher: Arc<Publisher>,
    pub(crate) shutdown: Shutdown,
}

impl Relay {
    pub(crate) fn start(env: &Env) -> Self {
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

pub(crate) struct Tenant {
    pub(crate) org: Uuid,
    pub(crate) user: Uuid,
    pub(crate) products: Vec<Uuid>,
}

/// One organization with two products and `batches` batches; every fifth
/// note holds a newline and quotes, as real notes do.
pub(crate) fn seed(conn: &mut PgConnection, batches: i64) -> Tenant {
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

pub(crate) fn request(conn: &mut PgConnection, tenant: &Tenant, format: ExportFormat, filters: ExportFilters) -> Uuid {
    let new = NewExport {
        requested_by: tenant.user,
        format,
        filters: &filters,
        idempotency_key: None,
        correlation_id: "test",
    };
    // The api's limit of active exports is not what these tests are about.
    match exports::create(conn, tenant.org, &new, u32::MAX).unwrap() {
        Created::New { export, .. } => export.id,
        Created::Existing(_) | Created::LimitReached { .. } => panic!("no idempotency key and no limit: always new"),
    }
}

pub(crate) fn row(app: &TestApp, tenant: &Tenant, id: Uuid) -> ExportRow {
    exports::find(&mut app.database.connect(), tenant.org, id).unwrap().expect("the export exists")
}

pub(crate) async fn wait_status(app: &TestApp, tenant: &Tenant, id: Uuid, status: &str, within: Duration) -> ExportRow {
    eventually(&format!("export {id} {status}"), within, || async {
        let row = row(app, tenant, id);
        assert!(row.status != "failed" || status == "failed", "the export failed: {:?}", row.error);
        (row.status == status).then_some(row)
    })
    .await
}

pub(crate) fn media_root(env: &Env) -> PathBuf {
    PathBuf::from(env.get("MEDIA_ROOT").unwrap())
}

/// Every entry of the organization's exports directory, temp files included.
pub(crate) fn export_dir_entries(media_root: &Path, org: Uuid) -> Vec<String> {
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
pub(crate) fn file_of(media_root: &Path, row: &ExportRow) -> Vec<u8> {
    let key = row.storage_key.as_ref().expect("a succeeded export has a key");
    let bytes = std::fs::read(media_root.join(key)).expect("the export's file exists");
    assert_eq!(row.size_bytes, Some(bytes.len() as i64), "size_bytes matches the file");
    assert_eq!(row.sha256.as_deref(), Some(Sha256::digest(&bytes).as_slice()), "sha256 matches the file");
    bytes
}

pub(crate) fn count(conn: &mut PgConnection, sql: &str, org: Uuid) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    diesel::sql_query(sql).bind::<diesel::sql_types::Uuid, _>(org).get_result::<Count>(conn).unwrap().n
}

pub(crate) async fn metrics(app: &TestApp) -> String {
    app.get("/metrics").await.text().await.unwrap()
}

pub(crate) fn metric(text: &str, series: &str) -> u64 {
    text.lines().find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0)
}

pub(crate) fn outbox_message(conn: &mut PgConnection, export: Uuid) -> Vec<u8> {
    use stockflow_db::schema::outbox;
    let messages: Vec<serde_json::Value> = outbox::table.select(outbox::message).load(conn).unwrap();
    let message = messages
        .into_iter()
        .find(|message| message["payload"]["export_id"] == export.to_string())
        .expect("the export's job is in the outbox");
    serde_json::to_vec(&message).unwrap()
}

pub(crate) async fn channel() -> Channel {
    stockflow_testkit::broker::connect().await.create_channel().await.unwrap()
}

pub(crate) async fn depth(channel: &Channel, queue: &str) -> u32 {
    let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
    channel.queue_declare(queue.into(), passive, FieldTable::default()).await.unwrap().message_count()
}

/// Takes the dead letters of the namespace, `count` of them, and returns
/// the reason each carries.
pub(crate) async fn dead_letter_reasons(
    channel: &Channel,
    topology: &stockflow_queue::Topology,
    count: usize,
) -> Vec<String> {
    eventually(&format!("{count} dead letters"), Duration::from_secs(30), || async {
        (depth(channel, &topology.dead_queue()).await as usize == count).then_some(())
    })
    .await;
    let mut reasons = Vec::new();
    for _ in 0..count {
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
    reasons
}
