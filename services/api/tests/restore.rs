// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

//! A backup restored into another installation serves what the first one
//! served: the same records through the API, and every attachment and
//! export downloads with the same bytes. The backup and the restore are
//! the backup service's own code (`stockflow_backup::Backup`).

mod common;

use common::{Method, Value, call, json, spawn_app, token};
use diesel::prelude::*;
use reqwest::multipart::{Form, Part};
use std::sync::Arc;
use stockflow_backup::restore::RestoreOptions;
use stockflow_backup::{Backup, BackupSettings};
use stockflow_config::DatabaseSettings;
use stockflow_db::Database;
use stockflow_domain::BackupRunRef;
use stockflow_storage::{Key, LocalFs, PutMode, Storage};
use stockflow_testkit::TestApp;

fn backup_of(app: &TestApp, backups: &Arc<dyn Storage>) -> Backup {
    let database_settings = DatabaseSettings::from_env(&app.env).unwrap();
    Backup {
        database: Database::connect_lazy(&database_settings),
        database_settings,
        media: Arc::new(LocalFs::new(app.env.get("MEDIA_ROOT").unwrap()).unwrap()),
        backups: Arc::clone(backups),
        settings: BackupSettings::from_env(&app.env).unwrap(),
    }
}

async fn download(app: &TestApp, token: &str, path: &str) -> Vec<u8> {
    let response = app.http.get(app.url(path)).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status(), 200, "GET {path}");
    response.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn a_restored_installation_serves_the_same_records_and_files() {
    let source = spawn_app().await;
    let admin = token(&source, "acme", "admin");
    let (_, product) =
        call(&source, &admin, Method::POST, "/v1/products", Some(json!({"sku": "F-1", "name": "Flour", "unit": "kg"})))
            .await;
    let body = json!({"product_id": product["id"], "code": "LOT-7", "quantity": "12.5", "produced_at": "2026-11-20T08:00:00Z"});
    let (_, batch) = call(&source, &admin, Method::POST, "/v1/batches", Some(body)).await;
    let batch_id = batch["id"].as_str().unwrap();
    let file = b"certificate of analysis, lot 7\n".to_vec();
    let form = Form::new().part("file", Part::bytes(file.clone()).file_name("coa.txt"));
    let attachment: Value = source
        .http
        .post(source.url(&format!("/v1/batches/{batch_id}/attachments")))
        .bearer_auth(&admin)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // A succeeded export, as the worker leaves one: its file in media
    // storage and its row.
    let org: uuid::Uuid = {
        use stockflow_db::schema::organizations;
        organizations::table
            .filter(organizations::slug.eq("acme"))
            .select(organizations::id)
            .first(&mut source.database.connect())
            .unwrap()
    };
    let export_id = uuid::Uuid::new_v4();
    let csv = b"id,code\n1,LOT-7\n".to_vec();
    let key = Key::parse(&format!("{org}/exports/{export_id}.csv")).unwrap();
    let media = LocalFs::new(source.env.get("MEDIA_ROOT").unwrap()).unwrap();
    let body = futures_util::stream::once({
        let csv = csv.clone();
        async move { Ok(bytes::Bytes::from(csv)) }
    });
    let stored = media.put(&key, Box::pin(body), PutMode::CreateNew).await.unwrap();
    diesel::sql_query(
        "INSERT INTO exports (id, org_id, kind, format, filters, status, attempts, storage_key, row_count, size_bytes, \
         sha256, finished_at, expires_at) VALUES ($1, $2, 'batches', 'csv', '{}', 'succeeded', 1, $3, 1, $4, $5, now(), \
         now() + interval '7 days')",
    )
    .bind::<diesel::sql_types::Uuid, _>(export_id)
    .bind::<diesel::sql_types::Uuid, _>(org)
    .bind::<diesel::sql_types::Text, _>(key.as_str())
    .bind::<diesel::sql_types::BigInt, _>(csv.len() as i64)
    .bind::<diesel::sql_types::Bytea, _>(stored.sha256.to_vec())
    .execute(&mut source.database.connect())
    .unwrap();

    let backups: Arc<dyn Storage> = Arc::new(LocalFs::new(source.env.get("BACKUP_ROOT").unwrap()).unwrap());
    let run = backup_of(&source, &backups).run("manual").await.unwrap();
    assert_eq!(run.status, "succeeded", "{:?}", run.error);

    // Another installation, its database and media replaced by the run's.
    let restored = spawn_app().await;
    let mut restore = backup_of(&source, &backups);
    restore.media = Arc::new(LocalFs::new(restored.env.get("MEDIA_ROOT").unwrap()).unwrap());
    let options = RestoreOptions {
        target_database_url: Some(restored.database.url().to_owned()),
        media: true,
        force_clean: true,
    };
    let report = restore.restore(BackupRunRef::Id(run.id), &options).await.unwrap();
    assert!(report.counts_match(), "{:?}", report.tables);
    assert_eq!(report.media_copied, 2);

    // The token was restored with its organization: it works on the new one.
    for path in [format!("/v1/batches/{batch_id}"), format!("/v1/products/{}", product["id"].as_str().unwrap())] {
        let (status, before) = call(&source, &admin, Method::GET, &path, None).await;
        let (status_after, after) = call(&restored, &admin, Method::GET, &path, None).await;
        assert_eq!((status, status_after), (200, 200), "{path}");
        assert_eq!(before, after, "{path}");
    }
    let attachment_path = format!("/v1/attachments/{}/content", attachment["id"].as_str().unwrap());
    assert_eq!(download(&restored, &admin, &attachment_path).await, file);
    assert_eq!(download(&restored, &admin, &format!("/v1/exports/{export_id}/content")).await, csv);
    source.stop().await.unwrap();
    restored.stop().await.unwrap();
}
