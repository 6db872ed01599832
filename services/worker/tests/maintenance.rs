// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

//! The maintenance jobs against a real PostgreSQL and both backends (LocalFs
//! in a temporary directory, a private s3s-fs): through the library, where
//! the state before and after each run can be set exactly, then through the
//! broker as the scheduler sends them, and `stockflow-worker reconcile`.

mod common;

use common::*;
use diesel::prelude::*;
use diesel::sql_types::{Bytea, Text, Uuid as SqlUuid};
use futures_util::StreamExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use stockflow_config::{Env, StorageBackendKind, StorageSettings};
use stockflow_db::schedule_runs::{self, NewRun};
use stockflow_db::{Database, PgConnection, exports, outbox};
use stockflow_domain::{Envelope, ExpireExports, ExportRequested, RunTrigger};
use stockflow_storage::{ByteStream, Key, LocalFs, PutMode, S3, Storage};
use stockflow_testkit::{ProcessEnv, S3Server, TestApp, eventually};
use stockflow_worker::maintenance::{
    CleanupReport, ExpiryReport, Grace, Maintenance, MaintenanceMetrics, ReconcileReport,
};
use uuid::Uuid;

const TWO_HOURS: Duration = Duration::from_secs(2 * 3600);

#[derive(Clone, Copy, Debug)]
enum Backend {
    Local,
    S3,
}

/// A database with one organization, a media store, and where the store
/// keeps each object as a file (both backends do), to age or remove it.
struct Fixture {
    env: ProcessEnv,
    tenant: Tenant,
    storage: Arc<dyn Storage>,
    files: PathBuf,
    maintenance: Maintenance,
    _s3: Option<S3Server>,
}

async fn fixture(backend: Backend) -> Fixture {
    let env = ProcessEnv::new();
    let tenant = seed(&mut env.database.connect(), 4);
    let (storage, files, s3): (Arc<dyn Storage>, PathBuf, _) = match backend {
        Backend::Local => {
            let root = media_root(&env.env);
            (Arc::new(LocalFs::new(root.clone()).unwrap()), root, None)
        }
        Backend::S3 => {
            let server = S3Server::start().await;
            server.create_bucket("media");
            let settings =
                StorageSettings::from_env(&Env::from_pairs(server.env("S3_", "media")).with("STORAGE_BACKEND", "s3"))
                    .unwrap();
            let StorageBackendKind::S3(settings) = settings.backend else { panic!("not S3") };
            (Arc::new(S3::new(&settings).unwrap()), server.data_dir().join("media"), Some(server))
        }
    };
    let maintenance = Maintenance {
        database: Database::connect_lazy(&stockflow_config::DatabaseSettings::from_env(&env.env).unwrap()),
        storage: Arc::clone(&storage),
        grace: Grace::DEFAULT,
        metrics: Arc::new(MaintenanceMetrics::default()),
    };
    Fixture { env, tenant, storage, files, maintenance, _s3: s3 }
}

impl Fixture {
    fn conn(&self) -> PgConnection {
        self.env.database.connect()
    }

    fn batches(&self) -> Vec<Uuid> {
        use stockflow_db::schema::batches;
        batches::table
            .filter(batches::org_id.eq(self.tenant.org))
            .order(batches::id)
            .select(batches::id)
            .load(&mut self.conn())
            .unwrap()
    }

    async fn put(&self, key: &Key, age: Duration) {
        let body: ByteStream = futures_util::stream::iter([Ok(bytes::Bytes::from_static(b"abc"))]).boxed();
        self.storage.put(key, body, PutMode::Overwrite).await.unwrap();
        if !age.is_zero() {
            let file = std::fs::File::options().write(true).open(self.files.join(key.as_str())).unwrap();
            file.set_modified(SystemTime::now() - age).unwrap();
        }
    }

    async fn exists(&self, key: &Key) -> bool {
        self.storage.head(key).await.unwrap().is_some()
    }

    /// An attachment row in `state`, started `age_minutes` ago.
    fn attachment(&self, batch: Uuid, state: &str, age_minutes: i32) -> (Uuid, Key) {
        let id = Uuid::new_v4();
        let key = Key::attachment(self.tenant.org, id);
        diesel::sql_query(
            "INSERT INTO attachments (id, org_id, batch_id, storage_key, filename, content_type, size_bytes, sha256, \
             state, created_at) VALUES ($1, $2, $3, $4, 'a.txt', 'text/plain', 3, \
             CASE WHEN $5 = 'pending' THEN NULL ELSE $6 END, $5, now() - make_interval(mins => $7))",
        )
        .bind::<SqlUuid, _>(id)
        .bind::<SqlUuid, _>(self.tenant.org)
        .bind::<SqlUuid, _>(batch)
        .bind::<Text, _>(key.as_str())
        .bind::<Text, _>(state)
        .bind::<Bytea, _>(vec![0u8; 32])
        .bind::<diesel::sql_types::Integer, _>(age_minutes)
        .execute(&mut self.conn())
        .unwrap();
        (id, key)
    }

    /// A succeeded export whose `expires_at` is `expires_in` from now.
    fn export(&self, expires_in: &str) -> (Uuid, Key) {
        let id = Uuid::new_v4();
        let key = Key::export(self.tenant.org, id, stockflow_storage::ExportExt::Csv);
        diesel::sql_query(
            "INSERT INTO exports (id, org_id, kind, format, status, storage_key, row_count, size_bytes, sha256, \
             finished_at, expires_at) VALUES ($1, $2, 'batches', 'csv', 'succeeded', $3, 1, 3, $4, now(), \
             now() + $5::interval)",
        )
        .bind::<SqlUuid, _>(id)
        .bind::<SqlUuid, _>(self.tenant.org)
        .bind::<Text, _>(key.as_str())
        .bind::<Bytea, _>(vec![0u8; 32])
        .bind::<Text, _>(expires_in)
        .execute(&mut self.conn())
        .unwrap();
        (id, key)
    }

    fn attachment_state(&self, id: Uuid) -> Option<String> {
        use stockflow_db::schema::attachments;
        attachments::table.find(id).select(attachments::state).first(&mut self.conn()).optional().unwrap()
    }

    fn export_status(&self, id: Uuid) -> String {
        use stockflow_db::schema::exports;
        exports::table.find(id).select(exports::status).first(&mut self.conn()).unwrap()
    }

    fn delete_batch(&self, id: Uuid) -> QueryResult<usize> {
        use stockflow_db::schema::batches;
        diesel::delete(batches::table.find(id)).execute(&mut self.conn())
    }

    /// The temp files LocalFs keeps next to the organization's attachments.
    fn temp_files(&self) -> Vec<String> {
        let dir = self.files.join(self.tenant.org.to_string()).join("attachments");
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                    .filter(|name| name.starts_with(".tmp-"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Some bytes, then nothing ever again: held (not dropped, which would
/// clean up), the put looks to the store like one whose process died.
fn stalled_body() -> ByteStream {
    futures_util::stream::iter([Ok(bytes::Bytes::from(vec![7u8; 64 * 1024]))])
        .chain(futures_util::stream::pending())
        .boxed()
}

async fn stale_uploads_go_after_the_grace_period_and_free_their_batch(backend: Backend) {
    let f = fixture(backend).await;
    let batches = f.batches();
    let (crashed_batch, busy_batch) = (batches[0], batches[1]);
    // Died after its object was complete but before the row said so.
    let (whole, whole_key) = f.attachment(crashed_batch, "pending", 90);
    f.put(&whole_key, Duration::ZERO).await;
    // Died mid-put: on LocalFs a temp file is left.
    let (partial, partial_key) = f.attachment(crashed_batch, "pending", 61);
    let mut stalled = f.storage.put(&partial_key, stalled_body(), PutMode::CreateNew);
    if matches!(backend, Backend::Local) {
        // The put must be polled to write; it never finishes.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while f.temp_files().is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "the stalled put left no temp file");
            assert!(tokio::time::timeout(Duration::from_millis(50), &mut stalled).await.is_err(), "it finished");
        }
    }
    // Still within the grace period: may be streaming right now.
    let (young, young_key) = f.attachment(busy_batch, "pending", 5);
    f.put(&young_key, Duration::ZERO).await;
    assert!(f.delete_batch(crashed_batch).is_err(), "pending rows hold the batch");

    let report = f.maintenance.cleanup_uploads().await.unwrap();
    assert_eq!(report.removed, 2, "{report}");
    if matches!(backend, Backend::Local) {
        assert_eq!(report.partials, 1, "{report}");
        assert!(f.temp_files().is_empty(), "the temp file went: {:?}", f.temp_files());
    }
    assert_eq!((f.attachment_state(whole), f.attachment_state(partial)), (None, None));
    assert!(!f.exists(&whole_key).await, "the complete object of a dead upload went");
    assert_eq!(f.attachment_state(young).as_deref(), Some("pending"));
    assert!(f.exists(&young_key).await, "a young upload is kept");
    assert_eq!(f.delete_batch(crashed_batch).unwrap(), 1, "the batch can be deleted now");
    assert!(f.delete_batch(busy_batch).is_err(), "the young upload still holds its batch");

    assert_eq!(f.maintenance.cleanup_uploads().await.unwrap(), CleanupReport::default(), "nothing left to do");
    drop(stalled);
}

async fn reconciliation_deletes_old_orphans_and_marks_rows_without_objects(backend: Backend) {
    let f = fixture(backend).await;
    let batch = f.batches()[0];
    let (kept, kept_key) = f.attachment(batch, "stored", 300);
    f.put(&kept_key, TWO_HOURS).await;
    let (lost, lost_key) = f.attachment(batch, "stored", 300);
    let (pending, _) = f.attachment(batch, "pending", 1);
    let (export, export_key) = f.export("1 day");
    f.put(&export_key, TWO_HOURS).await;
    let (lost_export, lost_export_key) = f.export("1 day");
    // Past expiry without its file: the expiry sweep's, not missing.
    let (expiring, _) = f.export("-1 minute");
    let old_orphan = Key::attachment(f.tenant.org, Uuid::new_v4());
    f.put(&old_orphan, TWO_HOURS).await;
    let young_orphan = Key::attachment(f.tenant.org, Uuid::new_v4());
    f.put(&young_orphan, Duration::ZERO).await;
    let old_export_orphan = Key::export(f.tenant.org, Uuid::new_v4(), stockflow_storage::ExportExt::Jsonl);
    f.put(&old_export_orphan, TWO_HOURS).await;
    let all = [&kept_key, &export_key, &old_orphan, &young_orphan, &old_export_orphan];

    let dry = f.maintenance.reconcile(true, |_| {}).await.unwrap();
    let expected = ReconcileReport {
        dry_run: true,
        objects: 5,
        orphans: 3,
        orphans_past_grace: 2,
        orphans_deleted: 0,
        attachments_missing: 1,
        exports_missing: 1,
    };
    assert_eq!(dry, expected);
    for key in all {
        assert!(f.exists(key).await, "a dry run deletes nothing: {key}");
    }
    assert_eq!(f.attachment_state(lost).as_deref(), Some("stored"), "a dry run marks nothing");
    assert_eq!(f.export_status(lost_export), "succeeded");

    let done = f.maintenance.reconcile(false, |_| {}).await.unwrap();
    assert_eq!(done, ReconcileReport { dry_run: false, orphans_deleted: 2, ..expected });
    assert!(!f.exists(&old_orphan).await && !f.exists(&old_export_orphan).await, "old orphans went");
    for key in [&kept_key, &export_key, &young_orphan] {
        assert!(f.exists(key).await, "{key} is kept");
    }
    assert_eq!(f.attachment_state(lost).as_deref(), Some("missing"));
    assert_eq!(f.export_status(lost_export), "missing");
    assert_eq!(f.attachment_state(kept).as_deref(), Some("stored"));
    assert_eq!(f.attachment_state(pending).as_deref(), Some("pending"), "pending rows are the upload sweep's");
    assert_eq!(f.export_status(export), "succeeded");
    assert_eq!(f.export_status(expiring), "succeeded");
    assert!(!lost_key.as_str().is_empty() && !lost_export_key.as_str().is_empty());

    let again = f.maintenance.reconcile(false, |_| {}).await.unwrap();
    assert_eq!(
        again,
        ReconcileReport { dry_run: false, objects: 3, orphans: 1, ..ReconcileReport::default() },
        "the young orphan is still counted, nothing else is left"
    );
}

async fn expired_exports_lose_their_file_and_read_expired_before_and_after(backend: Backend) {
    let f = fixture(backend).await;
    let (due, due_key) = f.export("-1 second");
    f.put(&due_key, Duration::ZERO).await;
    let (fresh, fresh_key) = f.export("1 day");
    f.put(&fresh_key, Duration::ZERO).await;
    // Its file was already gone (a sweep that died after the delete).
    let (half_done, _) = f.export("-1 hour");

    let before = exports::find(&mut f.conn(), f.tenant.org, due).unwrap().unwrap();
    assert_eq!(before.status, "expired", "past expires_at it reads expired before any sweep");
    assert_eq!(f.export_status(due), "succeeded", "though the row is not changed yet");

    assert_eq!(f.maintenance.expire_exports().await.unwrap(), ExpiryReport { expired: 2 });
    assert_eq!((f.export_status(due), f.export_status(half_done)), ("expired".into(), "expired".into()));
    assert!(!f.exists(&due_key).await, "the file went");
    assert_eq!(f.export_status(fresh), "succeeded");
    assert!(f.exists(&fresh_key).await);
    assert_eq!(exports::find(&mut f.conn(), f.tenant.org, due).unwrap().unwrap().status, "expired");

    assert_eq!(f.maintenance.expire_exports().await.unwrap(), ExpiryReport::default(), "nothing left to do");
}

#[tokio::test]
async fn local_stale_uploads_go_after_the_grace_period_and_free_their_batch() {
    stale_uploads_go_after_the_grace_period_and_free_their_batch(Backend::Local).await;
}

#[tokio::test]
async fn s3_stale_uploads_go_after_the_grace_period_and_free_their_batch() {
    stale_uploads_go_after_the_grace_period_and_free_their_batch(Backend::S3).await;
}

#[tokio::test]
async fn local_reconciliation_deletes_old_orphans_and_marks_rows_without_objects() {
    reconciliation_deletes_old_orphans_and_marks_rows_without_objects(Backend::Local).await;
}

#[tokio::test]
async fn s3_reconciliation_deletes_old_orphans_and_marks_rows_without_objects() {
    reconciliation_deletes_old_orphans_and_marks_rows_without_objects(Backend::S3).await;
}

#[tokio::test]
async fn local_expired_exports_lose_their_file_and_read_expired_before_and_after() {
    expired_exports_lose_their_file_and_read_expired_before_and_after(Backend::Local).await;
}

#[tokio::test]
async fn s3_expired_exports_lose_their_file_and_read_expired_before_and_after() {
    expired_exports_lose_their_file_and_read_expired_before_and_after(Backend::S3).await;
}

/// A schedule and a run that sent `envelope`, as the scheduler writes them,
/// with the job in the outbox for the relay.
fn schedule<J: stockflow_domain::Job>(conn: &mut PgConnection, envelope: &Envelope<J>) -> Uuid {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
    }
    let schedule = diesel::sql_query(
        "INSERT INTO schedules (name, cron, routing_key, next_run_at) \
         VALUES ($1, '0 3 * * *', $2, now() + interval '1 day') RETURNING id",
    )
    .bind::<Text, _>(format!("test-{}", envelope.id))
    .bind::<Text, _>(J::TYPE)
    .get_result::<Id>(conn)
    .unwrap()
    .id;
    let now = chrono::Utc::now();
    let run = NewRun::sent(schedule, now, RunTrigger::Scheduled, envelope.id, now);
    assert_eq!(schedule_runs::insert_many(conn, &[run]).unwrap().len(), 1);
    outbox::insert(conn, envelope).unwrap();
    schedule
}

async fn run_outcome(app: &TestApp, schedule: Uuid) -> (String, Option<String>) {
    eventually("the run's outcome", Duration::from_secs(30), || async {
        let runs = schedule_runs::list(&mut app.database.connect(), schedule, None, 10).unwrap();
        let run = runs.into_iter().next().expect("one run");
        (run.outcome != "enqueued").then_some((run.outcome, run.detail))
    })
    .await
}

#[tokio::test]
async fn jobs_sent_for_a_schedule_record_their_outcome_and_count_in_metrics() {
    let app = spawn_worker(TestApp::builder()).await;
    let relay = Relay::start(&app.env);
    let mut conn = app.database.connect();
    let tenant = seed(&mut conn, 1);
    let root = media_root(&app.env);
    let id = Uuid::new_v4();
    let key = format!("{}/exports/{id}.csv", tenant.org);
    std::fs::create_dir_all(root.join(key.rsplit_once('/').unwrap().0)).unwrap();
    std::fs::write(root.join(&key), b"id\n").unwrap();
    diesel::sql_query(
        "INSERT INTO exports (id, org_id, kind, format, status, storage_key, row_count, size_bytes, sha256, \
         finished_at, expires_at) VALUES ($1, $2, 'batches', 'csv', 'succeeded', $3, 0, 3, $4, now(), now())",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<SqlUuid, _>(tenant.org)
    .bind::<Text, _>(&key)
    .bind::<Bytea, _>(vec![0u8; 32])
    .execute(&mut conn)
    .unwrap();

    let expiry = schedule(&mut conn, &Envelope::new(ExpireExports {}, "test"));
    // An export job that cannot succeed: its export does not exist.
    let doomed = Envelope::new(ExportRequested { export_id: Uuid::new_v4(), org_id: tenant.org }, "test");
    let export = schedule(&mut conn, &doomed);
    relay.relay.kick();

    assert_eq!(run_outcome(&app, expiry).await, ("succeeded".to_owned(), None));
    let status: String = stockflow_db::schema::exports::table
        .find(id)
        .select(stockflow_db::schema::exports::status)
        .first(&mut conn)
        .unwrap();
    assert_eq!(status, "expired", "the row itself, not only as read past its expiry");
    assert!(!root.join(&key).exists(), "the file went");
    let (outcome, detail) = run_outcome(&app, export).await;
    assert_eq!(outcome, "failed");
    assert_eq!(detail.as_deref(), Some("internal_error"), "the organization sees the stable reason only");
    let text = metrics(&app).await;
    assert_eq!(metric(&text, "stockflow_maintenance_exports_expired_total"), 1, "{text}");
    assert_eq!(metric(&text, "stockflow_jobs_succeeded_total{type=\"maintenance.expire_exports\"}"), 1, "{text}");
    use stockflow_db::schema::schedules;
    let statuses: Vec<Option<String>> = schedules::table
        .filter(schedules::id.eq_any([expiry, export]))
        .order(schedules::name)
        .select(schedules::last_status)
        .load(&mut conn)
        .unwrap();
    assert_eq!(statuses.len(), 2);
    assert!(statuses.contains(&Some("succeeded".to_owned())) && statuses.contains(&Some("failed".to_owned())));
}

#[tokio::test]
async fn the_reconcile_command_reports_on_a_dry_run_and_deletes_on_a_real_one() {
    let env = ProcessEnv::new().with("LOG_LEVEL", "warn");
    let tenant = seed(&mut env.database.connect(), 1);
    let root = media_root(&env.env);
    let orphan = root.join(Key::attachment(tenant.org, Uuid::new_v4()).as_str());
    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    std::fs::write(&orphan, b"left behind").unwrap();
    std::fs::File::options().write(true).open(&orphan).unwrap().set_modified(SystemTime::now() - TWO_HOURS).unwrap();

    let dry = env.run(BINARY, &["reconcile", "--dry-run"]);
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert!(dry.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&dry.stderr));
    assert!(stdout.contains("past the grace period:     1 (would delete 1)"), "{stdout}");
    assert!(stdout.contains("dry run: nothing was changed"), "{stdout}");
    assert!(orphan.exists(), "a dry run deletes nothing");

    let real = env.run(BINARY, &["reconcile"]);
    let stdout = String::from_utf8_lossy(&real.stdout);
    assert!(real.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&real.stderr));
    assert!(stdout.contains("past the grace period:     1 (deleted 1)"), "{stdout}");
    assert!(!orphan.exists(), "the old orphan went");

    let bad = env.command(BINARY).arg("reconcile").env("MAINTENANCE_GRACE_MINUTES", "0").output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("MAINTENANCE_GRACE_MINUTES"), "one line naming it");
}
