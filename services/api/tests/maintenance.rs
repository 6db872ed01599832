// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

//! What clients see of the worker's maintenance jobs: the jobs run here
//! through the worker's library, against the app's own database and media
//! store, between requests.

mod common;

use common::{Method, Value, call, json, spawn_app, token};
use diesel::prelude::*;
use diesel::sql_types::{Text, Uuid as SqlUuid};
use std::path::PathBuf;
use std::sync::Arc;
use stockflow_config::DatabaseSettings;
use stockflow_db::Database;
use stockflow_db::schema::{batches, exports};
use stockflow_storage::LocalFs;
use stockflow_testkit::TestApp;
use stockflow_worker::maintenance::{Grace, Maintenance, MaintenanceMetrics};
use uuid::Uuid;

fn media(app: &TestApp) -> PathBuf {
    app.storage_root.path().join("media")
}

fn maintenance(app: &TestApp) -> Maintenance {
    std::fs::create_dir_all(media(app)).unwrap();
    Maintenance {
        database: Database::connect_lazy(&DatabaseSettings::from_env(&app.env).unwrap()),
        storage: Arc::new(LocalFs::new(media(app)).unwrap()),
        grace: Grace::DEFAULT,
        metrics: Arc::new(MaintenanceMetrics::default()),
    }
}

async fn batch(app: &TestApp, token: &str) -> Uuid {
    let (_, product) =
        call(app, token, Method::POST, "/v1/products", Some(json!({"sku": "P", "name": "p", "unit": "kg"}))).await;
    let body =
        json!({"product_id": product["id"], "code": "B-1", "quantity": 1, "produced_at": "2026-11-20T08:00:00Z"});
    let (status, batch) = call(app, token, Method::POST, "/v1/batches", Some(body)).await;
    assert_eq!(status, 201, "{batch}");
    batch["id"].as_str().unwrap().parse().unwrap()
}

async fn content(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    call(app, token, Method::GET, path, None).await
}

/// A succeeded export with its file, as the worker leaves one.
async fn finished_export(app: &TestApp, token: &str) -> (Uuid, PathBuf) {
    let body = json!({"kind": "products", "format": "csv"});
    let (status, export) = call(app, token, Method::POST, "/v1/exports", Some(body)).await;
    assert_eq!(status, 202, "{export}");
    let id: Uuid = export["id"].as_str().unwrap().parse().unwrap();
    let org: Uuid = exports::table.find(id).select(exports::org_id).first(&mut app.database.connect()).unwrap();
    let key = format!("{org}/exports/{id}.csv");
    let path = media(app).join(&key);
    let bytes = b"id,sku\n".to_vec();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let produced = stockflow_db::exports::Produced {
        storage_key: &key,
        row_count: 0,
        size_bytes: bytes.len() as u64,
        sha256: <sha2::Sha256 as sha2::Digest>::digest(&bytes).into(),
        retention: chrono::Duration::days(7),
    };
    stockflow_db::exports::mark_succeeded(&mut app.database.connect(), org, id, &produced).unwrap();
    (id, path)
}

#[tokio::test]
async fn a_crashed_upload_holds_its_batch_only_until_the_sweep() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    let batch = batch(&app, &member).await;
    let org: Uuid = batches::table.find(batch).select(batches::org_id).first(&mut app.database.connect()).unwrap();
    // What an api process killed mid-upload leaves: a pending row, and here
    // the object it had finished writing.
    let id = Uuid::new_v4();
    let key = format!("{org}/attachments/{id}");
    diesel::sql_query(
        "INSERT INTO attachments (id, org_id, batch_id, storage_key, filename, content_type, created_at) \
         VALUES ($1, $2, $3, $4, 'scan.png', 'image/png', now() - interval '2 hours')",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<SqlUuid, _>(org)
    .bind::<SqlUuid, _>(batch)
    .bind::<Text, _>(&key)
    .execute(&mut app.database.connect())
    .unwrap();
    std::fs::create_dir_all(media(&app).join(&key).parent().unwrap()).unwrap();
    std::fs::write(media(&app).join(&key), b"\x89PNG").unwrap();

    let (status, problem) = call(&app, &member, Method::DELETE, &format!("/v1/batches/{batch}"), None).await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("in_use")), "{problem}");
    let report = maintenance(&app).cleanup_uploads().await.unwrap();
    assert_eq!(report.removed, 1, "{report}");
    assert!(!media(&app).join(&key).exists(), "the object went with the row");
    assert_eq!(call(&app, &member, Method::DELETE, &format!("/v1/batches/{batch}"), None).await.0, 204);
}

#[tokio::test]
async fn an_export_past_its_expiry_is_gone_before_and_after_the_sweep() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    let (id, file) = finished_export(&app, &member).await;
    let url = app.url(&format!("/v1/exports/{id}/content"));
    let response = app.http.get(url).bearer_auth(&member).send().await.unwrap();
    assert_eq!(response.status(), 200, "downloadable before expires_at");

    diesel::update(exports::table.find(id))
        .set(exports::expires_at.eq(chrono::Utc::now() - chrono::Duration::seconds(1)))
        .execute(&mut app.database.connect())
        .unwrap();
    let (status, problem) = content(&app, &member, &format!("/v1/exports/{id}/content")).await;
    assert_eq!((status, problem["code"].as_str()), (410, Some("expired")), "before the sweep: {problem}");
    let (_, export) = call(&app, &member, Method::GET, &format!("/v1/exports/{id}"), None).await;
    assert_eq!(export["status"], "expired");
    let (_, page) = call(&app, &member, Method::GET, "/v1/exports", None).await;
    assert_eq!(page["items"][0]["status"], "expired");
    assert!(file.exists(), "the file is still there until the sweep");

    assert_eq!(maintenance(&app).expire_exports().await.unwrap().expired, 1);
    assert!(!file.exists(), "the sweep removed the file");
    let (status, problem) = content(&app, &member, &format!("/v1/exports/{id}/content")).await;
    assert_eq!((status, problem["code"].as_str()), (410, Some("expired")), "after the sweep: {problem}");
    let (_, export) = call(&app, &member, Method::GET, &format!("/v1/exports/{id}"), None).await;
    assert_eq!(export["status"], "expired");
    common::wait_for_outbox(&app).await;
}

#[tokio::test]
async fn files_found_gone_answer_content_missing() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    let batch = batch(&app, &member).await;
    let part = reqwest::multipart::Part::bytes(b"\x89PNG\r\n\x1a\nrest".to_vec()).file_name("scan.png");
    let response = app
        .http
        .post(app.url(&format!("/v1/batches/{batch}/attachments")))
        .bearer_auth(&member)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let attachment: Value = response.json().await.unwrap();
    let attachment = attachment["id"].as_str().unwrap().to_owned();
    let org: Uuid = batches::table.find(batch).select(batches::org_id).first(&mut app.database.connect()).unwrap();
    std::fs::remove_file(media(&app).join(format!("{org}/attachments/{attachment}"))).unwrap();
    let (export, file) = finished_export(&app, &member).await;
    std::fs::remove_file(&file).unwrap();

    let report = maintenance(&app).reconcile(false, |_| {}).await.unwrap();
    assert_eq!((report.attachments_missing, report.exports_missing), (1, 1), "{report}");
    for path in [format!("/v1/attachments/{attachment}/content"), format!("/v1/exports/{export}/content")] {
        let (status, problem) = content(&app, &member, &path).await;
        assert_eq!((status, problem["code"].as_str()), (410, Some("content_missing")), "{path}: {problem}");
    }
    assert_eq!(call(&app, &member, Method::GET, &format!("/v1/attachments/{attachment}"), None).await.0, 200);
    let (_, got) = call(&app, &member, Method::GET, &format!("/v1/exports/{export}"), None).await;
    assert_eq!(got["status"], "missing");
    common::wait_for_outbox(&app).await;
}
