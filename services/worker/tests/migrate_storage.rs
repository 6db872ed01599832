// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

//! `stockflow-worker migrate-storage` against a real PostgreSQL, a private
//! s3s-fs and LocalFs in a temporary directory: mostly through the binary an
//! operator runs, and through the library where a fault must strike at an
//! exact point (a store that breaks, an interruption after N objects).

use diesel::prelude::*;
use futures_util::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use stockflow_config::StorageSettings;
use stockflow_db::schema::{storage_migration_objects as objects, storage_migrations as runs};
use stockflow_storage::{
    ByteRange, ByteStream, Key, LocalFs, Object, ObjectMeta, Prefix, PutMode, S3, Storage, StorageError, Stored,
};
use stockflow_telemetry::Shutdown;
use stockflow_testkit::{ProcessEnv, S3Server};
use stockflow_worker::migrate_storage::{self, Descriptor, Endpoint, MigrateError};

const BINARY: &str = env!("CARGO_BIN_EXE_stockflow-worker");
const ORG: &str = "0f0e0d0c-0b0a-0908-0706-050403020100";

/// A database, a media root and a bucket, as an operator's env names them.
struct Setup {
    env: ProcessEnv,
    _s3: S3Server,
}

async fn setup() -> Setup {
    let s3 = S3Server::start().await;
    s3.create_bucket("media");
    // The smallest part S3 allows, so the 6 MiB object takes the multipart path.
    let mut env = ProcessEnv::new().with("S3_PART_SIZE_BYTES", "5242880");
    for (var, value) in s3.env("S3_", "media") {
        env = env.with(&var, &value);
    }
    std::fs::create_dir_all(env.env.get("MEDIA_ROOT").unwrap()).unwrap();
    Setup { env, _s3: s3 }
}

impl Setup {
    fn media_root(&self) -> PathBuf {
        PathBuf::from(self.env.env.get("MEDIA_ROOT").unwrap())
    }

    fn local_settings(&self) -> StorageSettings {
        StorageSettings::local_from_env(&self.env.env).unwrap()
    }

    fn s3_settings(&self) -> StorageSettings {
        StorageSettings::s3_from_env(&self.env.env).unwrap()
    }

    fn local(&self) -> Arc<dyn Storage> {
        Arc::new(LocalFs::new(self.media_root()).unwrap())
    }

    fn s3(&self) -> Arc<dyn Storage> {
        let stockflow_config::StorageBackendKind::S3(settings) = self.s3_settings().backend else { unreachable!() };
        Arc::new(S3::new(&settings).unwrap())
    }

    fn endpoint(&self, settings: StorageSettings, store: Arc<dyn Storage>) -> Endpoint {
        Endpoint::new(Descriptor::of(&settings), store)
    }

    fn migrate(&self, args: &[&str]) -> Output {
        self.env.run(BINARY, &[&["migrate-storage"][..], args].concat())
    }

    fn conn(&self) -> PgConnection {
        self.env.database.connect()
    }

    /// Run rows, oldest first: (id, status).
    fn runs(&self) -> Vec<(uuid::Uuid, String)> {
        runs::table.order(runs::started_at).select((runs::id, runs::status)).load(&mut self.conn()).unwrap()
    }

    /// Recorded objects by key: (status, sha256).
    fn recorded(&self) -> HashMap<String, (String, Option<Vec<u8>>)> {
        objects::table
            .select((objects::key, objects::status, objects::sha256))
            .load::<(String, String, Option<Vec<u8>>)>(&mut self.conn())
            .unwrap()
            .into_iter()
            .map(|(key, status, sha256)| (key, (status, sha256)))
            .collect()
    }
}

/// Objects of assorted sizes, from empty to past one S3 part, some nested.
fn samples(count: usize, tag: &str) -> Vec<(Key, Vec<u8>)> {
    (0..count)
        .map(|n| {
            let size = match n {
                0 => 0,
                1 => 6 * 1024 * 1024 + 7,
                n => n * 997,
            };
            let body = (0..size).map(|i| (i * 31 + n * 7 + tag.len()) as u8).collect();
            let key = if n % 3 == 0 {
                format!("{ORG}/exports/{tag}-{n}.csv")
            } else {
                format!("{ORG}/attachments/{tag}-{n}")
            };
            (Key::parse(&key).unwrap(), body)
        })
        .collect()
}

async fn put_all(store: &dyn Storage, objects: &[(Key, Vec<u8>)]) {
    for (key, body) in objects {
        let chunk = bytes::Bytes::from(body.clone());
        store.put(key, futures_util::stream::iter([Ok(chunk)]).boxed(), PutMode::CreateNew).await.unwrap();
    }
}

async fn sha256_at(store: &dyn Storage, key: &Key) -> Vec<u8> {
    let object = store.get(key, None).await.unwrap_or_else(|error| panic!("{key}: {error}"));
    let chunks: Vec<bytes::Bytes> = object.body.try_collect().await.unwrap();
    chunks.iter().fold(Sha256::new(), |hash, chunk| hash.chain_update(chunk)).finalize().to_vec()
}

/// Every object is at `target` with its original bytes, and recorded as
/// copied with that digest.
async fn assert_copied(setup: &Setup, target: &dyn Storage, expected: &[(Key, Vec<u8>)]) {
    let recorded = setup.recorded();
    for (key, body) in expected {
        let sha256 = Sha256::digest(body).to_vec();
        assert_eq!(sha256_at(target, key).await, sha256, "{key} at the target");
        assert_eq!(recorded.get(key.as_str()), Some(&("copied".to_owned(), Some(sha256))), "{key} recorded");
    }
}

async fn keys_in(store: &dyn Storage) -> Vec<String> {
    let mut keys: Vec<String> =
        store.list(&Prefix::all()).map_ok(|meta| meta.key.as_str().to_owned()).try_collect().await.unwrap();
    keys.sort();
    keys
}

/// The last stdout line as `name=value` pairs.
fn summary(output: &Output) -> HashMap<String, String> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_else(|| panic!("no summary; stderr: {}", stderr(output)));
    line.split_whitespace().filter_map(|pair| pair.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_counts(output: &Output, expected: &[(&str, u64)]) {
    let summary = summary(output);
    for (name, value) in expected {
        assert_eq!(summary.get(*name), Some(&value.to_string()), "{name} in {summary:?}; stderr: {}", stderr(output));
    }
}

fn total_bytes(objects: &[(Key, Vec<u8>)]) -> u64 {
    objects.iter().map(|(_, body)| body.len() as u64).sum()
}

#[tokio::test]
async fn local_to_s3_copies_every_object_byte_for_byte() {
    let setup = setup().await;
    let objects = samples(12, "a");
    put_all(setup.local().as_ref(), &objects).await;

    let output = setup.migrate(&["--from", "local", "--to", "s3"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let bytes = total_bytes(&objects);
    assert_counts(&output, &[("copied", 12), ("skipped", 0), ("missing", 0), ("failed", 0), ("bytes", bytes)]);
    assert_copied(&setup, setup.s3().as_ref(), &objects).await;
    let runs = setup.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].1, "finished");
    assert_eq!(keys_in(setup.local().as_ref()).await, keys_in(setup.s3().as_ref()).await, "the source is untouched");
}

#[tokio::test]
async fn s3_to_local_copies_every_object_and_a_rerun_copies_only_new_ones() {
    let setup = setup().await;
    let objects = samples(9, "b");
    put_all(setup.s3().as_ref(), &objects).await;

    let output = setup.migrate(&["--from", "s3", "--to", "local", "--jobs", "2"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_counts(&output, &[("copied", 9), ("skipped", 0), ("failed", 0), ("bytes", total_bytes(&objects))]);
    assert_copied(&setup, setup.local().as_ref(), &objects).await;

    // Written to the old store after the first pass, as happens until the
    // services are switched over.
    let late = samples(3, "late")[2..].to_vec();
    put_all(setup.s3().as_ref(), &late).await;
    let output = setup.migrate(&["--from", "s3", "--to", "local"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_counts(&output, &[("copied", 1), ("skipped", 9), ("bytes", total_bytes(&late))]);
    assert_copied(&setup, setup.local().as_ref(), &late).await;
    let runs = setup.runs();
    assert_eq!(runs.iter().map(|(_, status)| status.as_str()).collect::<Vec<_>>(), ["finished", "finished"]);
}

#[tokio::test]
async fn an_interrupted_run_resumes_and_skips_what_it_copied() {
    let setup = setup().await;
    let objects = samples(20, "c");
    put_all(setup.local().as_ref(), &objects).await;
    let shutdown = Shutdown::new();
    let stopping = Faulty::new(setup.local()).stop_after(5, shutdown.clone());
    let source = setup.endpoint(setup.local_settings(), Arc::new(stopping));
    let target = setup.endpoint(setup.s3_settings(), setup.s3());

    let jobs = NonZeroUsize::new(2).unwrap();
    let report = migrate_storage::copy(setup.conn(), &source, &target, false, jobs, &shutdown).await.unwrap();
    assert!(report.interrupted, "{report:?}");
    assert!((5..20).contains(&report.copied), "objects in flight finish, no more start: {report:?}");
    let copied_first = setup.recorded().len() as u64;
    assert_eq!(copied_first, report.copied, "every copy is recorded, nothing else");
    assert!(matches!(report.into_result(), Err(MigrateError::Interrupted)));
    let first_run = setup.runs();
    assert_eq!(first_run[0].1, "in_progress");

    let output = setup.migrate(&["--from", "local", "--to", "s3"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_counts(&output, &[("copied", 20 - copied_first), ("skipped", copied_first), ("failed", 0)]);
    assert_copied(&setup, setup.s3().as_ref(), &objects).await;
    assert_eq!(setup.runs(), [(first_run[0].0, "finished".to_owned())], "the same run, resumed and finished");
}

#[tokio::test]
async fn a_copy_that_reads_back_wrong_is_not_recorded_and_is_retried_next_time() {
    let setup = setup().await;
    let objects = samples(6, "d");
    put_all(setup.local().as_ref(), &objects).await;
    let bad = objects[4].0.clone();
    let source = setup.endpoint(setup.local_settings(), setup.local());
    let corrupting = Faulty::new(setup.s3()).corrupt(bad.clone());
    let target = setup.endpoint(setup.s3_settings(), Arc::new(corrupting));

    let jobs = NonZeroUsize::new(4).unwrap();
    let report = migrate_storage::copy(setup.conn(), &source, &target, false, jobs, &Shutdown::new()).await.unwrap();
    assert_eq!((report.copied, report.failed), (5, 1), "{report:?}");
    assert!(!setup.recorded().contains_key(bad.as_str()));
    assert!(matches!(report.into_result(), Err(MigrateError::Failed(1))));
    assert_eq!(setup.runs()[0].1, "in_progress", "a run with a failure is not finished");

    let output = setup.migrate(&["--from", "local", "--to", "s3"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_counts(&output, &[("copied", 1), ("skipped", 5), ("failed", 0)]);
    assert_copied(&setup, setup.s3().as_ref(), &objects).await;
    assert_eq!(setup.runs()[0].1, "finished");
}

#[tokio::test]
async fn an_object_gone_after_the_listing_fails_the_run_unless_missing_ones_are_skipped() {
    let setup = setup().await;
    let objects = samples(4, "e");
    put_all(setup.local().as_ref(), &objects).await;
    let gone = objects[2].0.clone();
    let jobs = NonZeroUsize::MIN;
    let target = setup.endpoint(setup.s3_settings(), setup.s3());

    let source = setup.endpoint(setup.local_settings(), Arc::new(Faulty::new(setup.local()).gone(gone.clone())));
    let report = migrate_storage::copy(setup.conn(), &source, &target, false, jobs, &Shutdown::new()).await.unwrap();
    assert_eq!((report.copied, report.failed, report.missing), (3, 1, 0), "{report:?}");

    let report = migrate_storage::copy(setup.conn(), &source, &target, true, jobs, &Shutdown::new()).await.unwrap();
    assert_eq!((report.copied, report.skipped, report.missing, report.failed), (0, 3, 1, 0), "{report:?}");
    assert_eq!(report.missing_sample, [gone.as_str()]);
    assert!(report.to_string().starts_with(&format!("missing at the source: 1 objects\n  {gone}\n")), "{report}");
    assert_eq!(setup.recorded()[gone.as_str()], ("missing".to_owned(), None));
    assert_eq!(setup.runs()[0].1, "finished");
}

#[tokio::test]
async fn a_dry_run_counts_what_a_run_would_copy_and_writes_nothing() {
    let setup = setup().await;
    let objects = samples(5, "f");
    put_all(setup.local().as_ref(), &objects).await;
    put_all(setup.s3().as_ref(), &samples(5, "s3")).await;
    let in_bucket = keys_in(setup.s3().as_ref()).await;

    let output = setup.migrate(&["--from", "local", "--to", "s3", "--dry-run"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_counts(&output, &[("to_copy", 5), ("bytes", total_bytes(&objects)), ("skipped", 0), ("missing", 0)]);
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("dry-run: "));
    assert!(setup.runs().is_empty() && setup.recorded().is_empty(), "no progress rows");
    assert_eq!(keys_in(setup.s3().as_ref()).await, in_bucket, "the bucket is untouched");

    // A local target is not even created.
    let absent = setup.media_root().join("not-yet");
    let output = setup
        .env
        .command(BINARY)
        .env("MEDIA_ROOT", &absent)
        .args(["migrate-storage", "--from", "s3", "--to", "local", "--dry-run"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_counts(&output, &[("to_copy", 5)]);
    assert!(!absent.exists());
    assert_eq!(keys_in(setup.s3().as_ref()).await, in_bucket, "the bucket is untouched");

    // After a real run and one new object, only that one is left to copy.
    setup.migrate(&["--from", "local", "--to", "s3"]);
    let late = &samples(4, "late")[3..];
    put_all(setup.local().as_ref(), late).await;
    let recorded = setup.recorded();
    let output = setup.migrate(&["--from", "local", "--to", "s3", "--dry-run"]);
    assert_counts(&output, &[("to_copy", 1), ("bytes", total_bytes(late)), ("skipped", 5)]);
    assert_eq!(setup.recorded(), recorded);
    assert!(!keys_in(setup.s3().as_ref()).await.contains(&late[0].0.as_str().to_owned()));
}

/// Rows that reference objects: `stored`/`succeeded` ones must exist at the
/// source; the others are not expected to.
fn reference(setup: &Setup, present: &Key, missing_attachment: &str, missing_export: &str) {
    let sql = format!(
        "INSERT INTO organizations (id, slug, name) VALUES ('{ORG}', 'acme', 'Acme');
         INSERT INTO products (id, org_id, sku, name, unit) VALUES (gen_random_uuid(), '{ORG}', 'P-1', 'P', 'pcs');
         INSERT INTO batches (id, org_id, product_id, code, quantity, produced_at)
             SELECT gen_random_uuid(), '{ORG}', id, 'B-1', 1, now() FROM products;
         INSERT INTO attachments (org_id, batch_id, storage_key, filename, content_type, sha256, state)
             SELECT '{ORG}', b.id, k.key, 'f.pdf', 'application/pdf', sha256('x'), k.state
             FROM batches b, (VALUES ('{present}', 'stored'), ('{missing_attachment}', 'stored'),
                                     ('{ORG}/attachments/pending', 'pending'),
                                     ('{ORG}/attachments/lost', 'missing')) AS k (key, state);
         INSERT INTO exports (org_id, kind, format, status, storage_key, row_count, size_bytes, sha256, finished_at, error)
             VALUES ('{ORG}', 'batches', 'csv', 'succeeded', '{missing_export}', 1, 1, sha256('x'), now(), NULL),
                    ('{ORG}', 'batches', 'csv', 'expired', '{ORG}/exports/old.csv', 1, 1, sha256('x'), now(), NULL),
                    ('{ORG}', 'batches', 'csv', 'failed', NULL, NULL, NULL, NULL, NULL, 'boom');"
    );
    diesel::connection::SimpleConnection::batch_execute(&mut setup.conn(), &sql).unwrap();
}

#[tokio::test]
async fn referenced_objects_missing_at_the_source_stop_the_run_unless_skipped() {
    let setup = setup().await;
    let objects = samples(3, "g");
    put_all(setup.local().as_ref(), &objects).await;
    let (lost_attachment, lost_export) = (format!("{ORG}/attachments/gone"), format!("{ORG}/exports/gone.csv"));
    reference(&setup, &objects[1].0, &lost_attachment, &lost_export);

    for args in [&["--from", "local", "--to", "s3"][..], &["--from", "local", "--to", "s3", "--dry-run"]] {
        let output = setup.migrate(args);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {}", stderr(&output));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let expected = format!("missing at the source: 2 objects\n  {lost_attachment}\n  {lost_export}\n");
        assert!(stdout.starts_with(&expected), "{stdout}");
        assert!(stderr(&output).contains("error: 2 objects that the database references are missing at the source"));
        assert!(keys_in(setup.s3().as_ref()).await.is_empty(), "nothing copied");
        assert!(setup.runs().is_empty(), "nothing recorded");
    }

    let output = setup.migrate(&["--from", "local", "--to", "s3", "--skip-missing"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("missing at the source: 2 objects\n"));
    assert_counts(&output, &[("copied", 3), ("missing", 2), ("failed", 0)]);
    assert_copied(&setup, setup.s3().as_ref(), &objects).await;
    let recorded = setup.recorded();
    assert_eq!(recorded[&lost_attachment], ("missing".to_owned(), None));
    assert_eq!(recorded[&lost_export], ("missing".to_owned(), None));
    assert_eq!(recorded.len(), 5);
    assert_eq!(setup.runs()[0].1, "finished");
}

#[tokio::test]
async fn one_pair_is_migrated_by_one_process_at_a_time() {
    let setup = setup().await;
    let source = Descriptor::of(&setup.local_settings()).to_string();
    let target = Descriptor::of(&setup.s3_settings()).to_string();
    let mut holder = setup.conn();
    let pair = stockflow_db::storage_migrations::Pair { source: &source, target: &target };
    assert!(stockflow_db::storage_migrations::try_lock(&mut holder, pair).unwrap());

    let output = setup.migrate(&["--from", "local", "--to", "s3"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let busy = format!("another migrate-storage from {source} to {target} is running");
    assert!(stderr(&output).contains(&busy), "{}", stderr(&output));
    // Released by the holder, not by its connection closing, which the
    // server completes only some time later.
    stockflow_db::storage_migrations::unlock(&mut holder, pair).unwrap();
    let output = setup.migrate(&["--from", "local", "--to", "s3"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stockflow_db::storage_migrations::try_lock(&mut holder, pair).unwrap(), "the run released it");
}

#[test]
fn the_same_backend_twice_and_bad_options_are_usage_errors() {
    let env = ProcessEnv::new();
    let cases: [&[&str]; 4] = [
        &["--from", "local", "--to", "local"],
        &["--from", "s3", "--to", "s3", "--dry-run"],
        &["--from", "local", "--to", "s3", "--jobs", "0"],
        &["--from", "ftp", "--to", "s3"],
    ];
    for args in cases {
        let output = env.run(BINARY, &[&["migrate-storage"][..], args].concat());
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
        assert!(output.stdout.is_empty());
        assert!(stderr(&output).starts_with("error: "), "{args:?}: {}", stderr(&output));
    }
    let output = env.run(BINARY, &["migrate-storage", "--from", "local", "--to", "local"]);
    assert!(stderr(&output).contains("--from and --to both name local"), "{}", stderr(&output));
}

#[test]
fn a_bad_variable_stops_it_with_one_line_and_exit_code_2() {
    let env = ProcessEnv::new()
        .with("S3_BUCKET", "media")
        .with("AWS_ACCESS_KEY_ID", "k")
        .with("AWS_SECRET_ACCESS_KEY", "secret");
    std::fs::create_dir_all(env.env.get("MEDIA_ROOT").unwrap()).unwrap();
    let cases = [
        ("S3_BUCKET", None, "S3_BUCKET: required"),
        ("S3_ENDPOINT", Some("minio:9000"), "S3_ENDPOINT: expected an http://"),
        ("MEDIA_ROOT", Some("var/media"), "MEDIA_ROOT: expected an absolute path"),
        ("DATABASE_URL", None, "DATABASE_URL: required"),
        ("LOG_FORMAT", Some("xml"), "LOG_FORMAT: expected json or pretty"),
    ];
    for (var, value, expected) in cases {
        let mut command = env.command(BINARY);
        match value {
            Some(value) => command.env(var, value),
            None => command.env_remove(var),
        };
        let output = command.args(["migrate-storage", "--from", "local", "--to", "s3"]).output().unwrap();
        let stderr = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{var}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{var}: {stderr}");
        assert!(stderr.starts_with(&format!("config error: {expected}")), "{var}: {stderr}");
    }
    // STORAGE_BACKEND names the store the services use; the command ignores it.
    let output = env
        .command(BINARY)
        .env("STORAGE_BACKEND", "ftp")
        .env("S3_ENDPOINT", "http://127.0.0.1:1")
        .args(["migrate-storage", "--from", "local", "--to", "s3", "--dry-run"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
}

/// A store that misbehaves on purpose: loses one object, corrupts one on
/// the way out, or stops the run after a number of reads.
struct Faulty {
    inner: Arc<dyn Storage>,
    gone: Option<Key>,
    corrupt: Option<Key>,
    stop: Option<(AtomicUsize, Shutdown)>,
}

impl Faulty {
    fn new(inner: Arc<dyn Storage>) -> Self {
        Self { inner, gone: None, corrupt: None, stop: None }
    }

    fn gone(self, key: Key) -> Self {
        Self { gone: Some(key), ..self }
    }

    fn corrupt(self, key: Key) -> Self {
        Self { corrupt: Some(key), ..self }
    }

    fn stop_after(self, reads: usize, shutdown: Shutdown) -> Self {
        Self { stop: Some((AtomicUsize::new(reads), shutdown)), ..self }
    }
}

impl std::fmt::Debug for Faulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faulty").field("inner", &self.inner).finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Storage for Faulty {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn put(&self, key: &Key, body: ByteStream, mode: PutMode) -> Result<Stored, StorageError> {
        self.inner.put(key, body, mode).await
    }

    async fn discard_incomplete(&self, key: &Key) -> Result<u64, StorageError> {
        self.inner.discard_incomplete(key).await
    }

    async fn get(&self, key: &Key, range: Option<ByteRange>) -> Result<Object, StorageError> {
        if let Some((left, shutdown)) = &self.stop
            && left.fetch_sub(1, Ordering::SeqCst) == 1
        {
            shutdown.trigger();
        }
        if self.gone.as_ref() == Some(key) {
            return Err(StorageError::NotFound(key.clone()));
        }
        let mut object = self.inner.get(key, range).await?;
        if self.corrupt.as_ref() == Some(key) {
            let mut flipped = false;
            object.body = object
                .body
                .map_ok(move |chunk| {
                    let mut chunk = chunk.to_vec();
                    if let Some(first) = chunk.first_mut().filter(|_| !flipped) {
                        *first ^= 0xff;
                        flipped = true;
                    }
                    bytes::Bytes::from(chunk)
                })
                .boxed();
        }
        Ok(object)
    }

    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>, StorageError> {
        self.inner.head(key).await
    }

    async fn delete(&self, key: &Key) -> Result<(), StorageError> {
        self.inner.delete(key).await
    }

    fn list(&self, prefix: &Prefix) -> futures_util::stream::BoxStream<'static, Result<ObjectMeta, StorageError>> {
        self.inner.list(prefix)
    }

    async fn presign_get(&self, key: &Key, ttl: Duration, filename: &str) -> Result<Option<url::Url>, StorageError> {
        self.inner.presign_get(key, ttl, filename).await
    }

    async fn health_check(&self) -> Result<(), StorageError> {
        self.inner.health_check().await
    }
}
