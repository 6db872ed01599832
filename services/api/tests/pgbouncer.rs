// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

//! The api and the worker behind PgBouncer in transaction mode (the one
//! `make services` runs), as an operator who pools connections deploys
//! them: DATABASE_URL through the pooler with DATABASE_STATEMENT_CACHE=false,
//! DATABASE_DIRECT_URL to PostgreSQL for what needs a session.

mod common;

use common::*;
use diesel::{Connection, PgConnection, RunQueryDsl};
use futures_util::future::join_all;
use reqwest::multipart::{Form, Part};
use std::time::Duration;
use stockflow_telemetry::Shutdown;
use stockflow_testkit::{TestApp, eventually};

async fn spawn_app_through_pgbouncer() -> TestApp {
    TestApp::builder()
        .through_pgbouncer()
        .spawn(|env, shutdown| async move {
            let app = stockflow_api::Application::build(stockflow_api::Settings::from_env(&env)?, shutdown).await?;
            let address = app.address();
            Ok((address, Box::pin(async move { Ok(app.run_until_stopped().await?) }) as _))
        })
        .await
}

/// The worker in-process, on the api's environment: same pooler, database,
/// namespace and media.
async fn start_worker(app: &TestApp) -> (Shutdown, tokio::task::JoinHandle<()>) {
    let shutdown = Shutdown::new();
    let settings = stockflow_worker::Settings::from_env(&app.env).expect("worker settings");
    let worker = stockflow_worker::Application::build(settings, shutdown.clone()).await.expect("worker starts");
    let task = tokio::spawn(async move { worker.run_until_stopped().await.expect("worker runs") });
    (shutdown, task)
}

#[derive(diesel::QueryableByName)]
struct Backend {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

fn backend_pid(conn: &mut PgConnection) -> i32 {
    diesel::sql_query("SELECT pg_backend_pid() AS pid").get_result::<Backend>(conn).unwrap().pid
}

/// What the other test relies on: the pooler really hands a client's next
/// transaction to whichever server connection is free. A session pooler
/// would keep each client on its own server connection.
#[tokio::test]
async fn the_pooler_moves_a_client_between_server_connections() {
    let app = spawn_app_through_pgbouncer().await;
    let url = app.env.get("DATABASE_URL").unwrap().to_owned();
    tokio::task::spawn_blocking(move || {
        let mut first = PgConnection::establish(&url).unwrap();
        let mut second = PgConnection::establish(&url).unwrap();
        // A database of its own: the pooler has no server connection to it
        // but those this test makes. The first client's query leaves one
        // idle; the second client's transaction takes that very one.
        let server = backend_pid(&mut first);
        second
            .transaction::<_, diesel::result::Error, _>(|second| {
                assert_eq!(backend_pid(second), server, "the idle server connection goes to the next transaction");
                assert_ne!(backend_pid(&mut first), server, "the first client moved to another server connection");
                Ok(())
            })
            .unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn tokens_records_uploads_and_an_export_work_through_a_transaction_pooler() {
    let app = spawn_app_through_pgbouncer().await;
    let (worker_shutdown, worker) = start_worker(&app).await;
    let admin = token(&app, "acme", "admin");

    let (status, me) = call(&app, &admin, Method::GET, "/v1/me", None).await;
    assert_eq!(status, 200, "{me}");
    // A token made over HTTP, then used.
    let (status, made) =
        call(&app, &admin, Method::POST, "/v1/tokens", Some(json!({"name": "pooled", "role": "member"}))).await;
    assert_eq!(status, 201, "{made}");
    let member = made["token"].as_str().expect("the new token").to_owned();

    let (status, product) = call(
        &app,
        &member,
        Method::POST,
        "/v1/products",
        Some(json!({"sku": "POOL-1", "name": "Pooled flour", "unit": "kg"})),
    )
    .await;
    assert_eq!(status, 201, "{product}");
    let product_id = product["id"].as_str().unwrap().to_owned();

    // Many requests at once over the api's four pooled connections, of
    // several statement shapes: with named statements, a statement
    // prepared on one server connection would be looked for on another.
    let creates = (0..40).map(|n| {
        let body = json!({"product_id": product_id, "code": format!("B-{n:03}"), "quantity": "2.500",
                          "produced_at": "2026-11-20T08:00:00Z"});
        let (app, member) = (&app, &member);
        async move { call(app, member, Method::POST, "/v1/batches", Some(body)).await }
    });
    for (status, body) in join_all(creates).await {
        assert_eq!(status, 201, "{body}");
    }
    let reads = (0..60).map(|n| {
        let path = match n % 4 {
            0 => "/v1/batches?limit=50".to_owned(),
            1 => format!("/v1/batches?product_id={product_id}&limit=10"),
            2 => "/v1/products?sku_prefix=POOL".to_owned(),
            _ => format!("/v1/products/{product_id}"),
        };
        let (app, member) = (&app, &member);
        async move { (path.clone(), call(app, member, Method::GET, &path, None).await) }
    });
    for (path, (status, body)) in join_all(reads).await {
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (_, page) = call(&app, &member, Method::GET, "/v1/batches?limit=50", None).await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(40), "{page}");

    // An upload and its download.
    let batch_id = page["items"][0]["id"].as_str().unwrap().to_owned();
    let bytes = b"lot report, pooled\n".repeat(1000);
    let part = Part::bytes(bytes.clone()).file_name("report.txt").mime_str("text/plain").unwrap();
    let response = app
        .http
        .post(app.url(&format!("/v1/batches/{batch_id}/attachments")))
        .bearer_auth(&member)
        .multipart(Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let attachment: Value = response.json().await.unwrap();
    let download = app
        .http
        .get(app.url(&format!("/v1/attachments/{}/content", attachment["id"].as_str().unwrap())))
        .bearer_auth(&member)
        .send()
        .await
        .unwrap();
    assert_eq!(download.status().as_u16(), 200);
    assert_eq!(download.bytes().await.unwrap().as_ref(), bytes.as_slice());

    // An export: the api's relay publishes it, the worker writes its file.
    let (status, export) =
        call(&app, &member, Method::POST, "/v1/exports", Some(json!({"kind": "batches", "format": "csv"}))).await;
    assert_eq!(status, 202, "{export}");
    let export_path = format!("/v1/exports/{}", export["id"].as_str().unwrap());
    let done = eventually("the export to succeed", Duration::from_secs(30), || async {
        let (_, export) = call(&app, &member, Method::GET, &export_path, None).await;
        match export["status"].as_str() {
            Some("succeeded") => Some(export),
            Some("failed") => panic!("the export failed: {export}"),
            _ => None,
        }
    })
    .await;
    assert_eq!(done["row_count"], 40, "{done}");
    let csv = app.http.get(app.url(&format!("{export_path}/content"))).bearer_auth(&member).send().await.unwrap();
    assert_eq!(csv.status().as_u16(), 200);
    let csv = csv.text().await.unwrap();
    assert_eq!(csv.lines().count(), 41, "a header and 40 batches");
    assert!(csv.contains(",B-039,"), "{csv}");
    wait_for_outbox(&app).await;

    worker_shutdown.trigger();
    worker.await.unwrap();
}
