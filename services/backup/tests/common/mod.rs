//! What the backup tests share: a database with rows and media, the run
//! machinery over LocalFs (or S3) stores, and readers of what a run left.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bytea, Text, Uuid as SqlUuid};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use stockflow_backup::{Backup, BackupSettings, TableCounts};
use stockflow_config::{DatabaseSettings, Env};
use stockflow_db::Database;
use stockflow_storage::{ByteStream, Key, LocalFs, PutMode, Storage};
use stockflow_testkit::ProcessEnv;
use uuid::Uuid;

pub(crate) struct Fixture {
    pub env: ProcessEnv,
    pub backup: Backup,
    pub media_root: PathBuf,
    pub backup_root: PathBuf,
}

pub(crate) fn fixture_with(vars: &[(&str, &str)]) -> Fixture {
    let mut env = ProcessEnv::new();
    for (var, value) in vars {
        env = env.with(var, value);
    }
    let media_root = PathBuf::from(env.env.get("MEDIA_ROOT").unwrap());
    let backup_root = PathBuf::from(env.env.get("BACKUP_ROOT").unwrap());
    let backups: Arc<dyn Storage> = Arc::new(LocalFs::new(backup_root.clone()).unwrap());
    let backup = backup_over(&env.env, backups);
    Fixture { env, backup, media_root, backup_root }
}

pub(crate) fn fixture() -> Fixture {
    fixture_with(&[])
}

pub(crate) fn backup_over(env: &Env, backups: Arc<dyn Storage>) -> Backup {
    let database_settings = DatabaseSettings::from_env(env).unwrap();
    let media: Arc<dyn Storage> = Arc::new(LocalFs::new(env.get("MEDIA_ROOT").unwrap()).unwrap());
    Backup {
        database: Database::connect_lazy(&database_settings),
        database_settings,
        media,
        backups,
        settings: BackupSettings::from_env(env).unwrap(),
    }
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

pub(crate) struct Tenant {
    pub org: Uuid,
    pub product: Uuid,
    pub batch: Uuid,
}

/// One organization, a product and `batches` batches.
pub(crate) fn seed(conn: &mut PgConnection, batches: i64) -> Tenant {
    let slug = format!("org-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let org = diesel::sql_query("INSERT INTO organizations (slug, name) VALUES ($1, 'Test') RETURNING id")
        .bind::<Text, _>(&slug)
        .get_result::<Id>(conn)
        .unwrap()
        .id;
    let product = diesel::sql_query(
        "INSERT INTO products (org_id, sku, name, unit) VALUES ($1, 'F-1', 'Flour', 'kg') RETURNING id",
    )
    .bind::<SqlUuid, _>(org)
    .get_result::<Id>(conn)
    .unwrap()
    .id;
    add_batches(conn, org, product, 0, batches);
    let batch = diesel::sql_query("SELECT id FROM batches WHERE org_id = $1 LIMIT 1")
        .bind::<SqlUuid, _>(org)
        .get_result::<Id>(conn)
        .unwrap()
        .id;
    Tenant { org, product, batch }
}

pub(crate) fn add_batches(conn: &mut PgConnection, org: Uuid, product: Uuid, from: i64, count: i64) {
    diesel::sql_query(
        "INSERT INTO batches (org_id, product_id, code, quantity, produced_at, status, notes) \
         SELECT $1, $2, 'LOT-' || g, (g % 1000) * 1.25, timestamptz '2026-01-01' + g * interval '1 minute', \
                'completed', 'note ' || g \
         FROM generate_series($3 + 1, $3 + $4) g",
    )
    .bind::<SqlUuid, _>(org)
    .bind::<SqlUuid, _>(product)
    .bind::<BigInt, _>(from)
    .bind::<BigInt, _>(count)
    .execute(conn)
    .unwrap();
}

/// Stores `body` in media storage and records a stored attachment for it.
pub(crate) async fn attach(fixture: &Fixture, tenant: &Tenant, body: &[u8]) -> (Key, [u8; 32]) {
    let id = Uuid::new_v4();
    let key = Key::attachment(tenant.org, id);
    let stored = fixture.backup.media.put(&key, stream(body.to_vec()), PutMode::CreateNew).await.unwrap();
    diesel::sql_query(
        "INSERT INTO attachments (id, org_id, batch_id, storage_key, filename, content_type, size_bytes, sha256, state) \
         VALUES ($1, $2, $3, $4, 'f.bin', 'application/octet-stream', $5, $6, 'stored')",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<SqlUuid, _>(tenant.org)
    .bind::<SqlUuid, _>(tenant.batch)
    .bind::<Text, _>(key.as_str())
    .bind::<BigInt, _>(i64::try_from(body.len()).unwrap())
    .bind::<Bytea, _>(stored.sha256.to_vec())
    .execute(&mut fixture.env.database.connect())
    .unwrap();
    (key, stored.sha256)
}

pub(crate) fn stream(bytes: Vec<u8>) -> ByteStream {
    futures_util::stream::once(async move { Ok(bytes::Bytes::from(bytes)) }).boxed()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) async fn sha256_of(storage: &dyn Storage, key: &Key) -> Option<String> {
    let mut body = match storage.get(key, None).await {
        Ok(object) => object.body,
        Err(stockflow_storage::StorageError::NotFound(_)) => return None,
        Err(other) => panic!("{other}"),
    };
    let mut hasher = Sha256::new();
    while let Some(chunk) = body.next().await {
        hasher.update(chunk.unwrap());
    }
    Some(hex(&hasher.finalize()))
}

/// A new empty database on the test server, dropped by the caller's guard.
pub(crate) struct EmptyDatabase {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl EmptyDatabase {
    pub(crate) fn create(like: &str) -> Self {
        let name = format!("stockflow_restore_{}", &Uuid::new_v4().simple().to_string()[..12]);
        let mut url = url::Url::parse(like).unwrap();
        let admin_url = url.to_string();
        url.set_path(&format!("/{name}"));
        let mut admin = PgConnection::establish(&admin_url).unwrap();
        diesel::sql_query(format!("CREATE DATABASE \"{name}\" TEMPLATE template0")).execute(&mut admin).unwrap();
        Self { name, url: url.to_string(), admin_url }
    }

    pub(crate) fn counts(&self) -> TableCounts {
        stockflow_backup::count_tables(&mut PgConnection::establish(&self.url).unwrap()).unwrap()
    }
}

impl Drop for EmptyDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&self.admin_url) {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name))
                .execute(&mut admin);
        }
    }
}

/// pg_restore of a stored dump file into `target`, as an operator would.
pub(crate) fn pg_restore(dump: &std::path::Path, target: &str) {
    let output = std::process::Command::new("pg_restore")
        .args(["--no-owner", "--exit-on-error", &format!("--dbname={target}")])
        .arg(dump)
        .output()
        .unwrap();
    assert!(output.status.success(), "pg_restore: {}", String::from_utf8_lossy(&output.stderr));
}

pub(crate) fn recorded_counts(run: &stockflow_db::backup_runs::BackupRun) -> TableCounts {
    serde_json::from_value(run.table_counts.clone().expect("counts recorded")).unwrap()
}
