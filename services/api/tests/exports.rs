// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

//! `/v1/exports` from the client's side: what is accepted, what is refused,
//! idempotency, and that a request made while the broker is down still
//! reaches the broker once it is back. Running exports is the worker's part
//! (`services/worker/tests/exports.rs`).

mod common;

use common::{Method, Value, call, json, spawn_app, token};
use diesel::prelude::*;
use lapin::options::BasicGetOptions;
use std::time::Duration;
use stockflow_db::schema::{exports, outbox};
use stockflow_testkit::{TestApp, eventually};

async fn post(app: &TestApp, token: &str, body: Value, key: Option<&str>) -> (u16, Value, Option<String>) {
    let mut request = app.http.post(app.url("/v1/exports")).bearer_auth(token).json(&body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let location = response.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
    (status, response.json().await.unwrap(), location)
}

fn unpublished(app: &TestApp) -> i64 {
    outbox::table.filter(outbox::published_at.is_null()).count().get_result(&mut app.database.connect()).unwrap()
}

/// Jobs the api published, read back from the namespace's exports queue.
async fn published_export_ids(app: &TestApp, expected: usize) -> Vec<String> {
    // The queue exists once the api has declared its topology.
    app.wait_for_readyz(200, Duration::from_secs(15)).await;
    let channel = stockflow_testkit::broker::connect().await.create_channel().await.unwrap();
    let queue = format!("{}.exports", app.namespace);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut ids = Vec::new();
    while ids.len() < expected {
        assert!(tokio::time::Instant::now() < deadline, "only {ids:?} of {expected} jobs reached {queue}");
        match channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap() {
            Some(message) => {
                let envelope: Value = serde_json::from_slice(&message.delivery.data).unwrap();
                assert_eq!(envelope["type"], "export.requested");
                assert_eq!(message.delivery.properties.delivery_mode(), &Some(2), "persistent");
                ids.push(envelope["payload"]["export_id"].as_str().unwrap().to_owned());
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    ids
}

#[tokio::test]
async fn a_request_is_accepted_at_once_and_its_job_published() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    let body = json!({"kind": "batches", "format": "csv", "filters": {"status": "completed"}});
    let (status, export, location) = post(&app, &member, body, None).await;
    assert_eq!(status, 202, "{export}");
    let id = export["id"].as_str().unwrap();
    assert_eq!(location.as_deref(), Some(format!("/v1/exports/{id}").as_str()));
    assert_eq!(export["status"], "queued");
    assert_eq!(export["filters"], json!({"status": "completed"}));
    assert_eq!(export["content_url"], format!("/v1/exports/{id}/content"));
    assert_eq!(published_export_ids(&app, 1).await, vec![id.to_owned()]);
    eventually("the outbox row marked published", Duration::from_secs(10), || async {
        (unpublished(&app) == 0).then_some(())
    })
    .await;

    let (status, got) = call(&app, &member, Method::GET, &format!("/v1/exports/{id}"), None).await;
    assert_eq!((status, &got["id"]), (200, &export["id"]));
    let (status, list) = call(&app, &member, Method::GET, "/v1/exports", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["items"][0]["id"], export["id"]);
    let (status, problem) = call(&app, &member, Method::GET, &format!("/v1/exports/{id}/content"), None).await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("not_ready")), "{problem}");
}

#[tokio::test]
async fn a_request_made_while_the_broker_is_down_is_published_when_it_returns() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    app.wait_for_readyz(200, Duration::from_secs(10)).await;
    app.broker_proxy.sever();
    app.wait_until_down("broker", Duration::from_secs(15)).await;
    let (status, export, _) = post(&app, &member, json!({"kind": "products", "format": "jsonl"}), None).await;
    assert_eq!(status, 202, "accepted with the broker down: {export}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(unpublished(&app), 1, "kept in the outbox while the broker is away");
    app.broker_proxy.restore();
    let ids = published_export_ids(&app, 1).await;
    assert_eq!(ids, vec![export["id"].as_str().unwrap().to_owned()]);
    eventually("the outbox drained", Duration::from_secs(15), || async { (unpublished(&app) == 0).then_some(()) })
        .await;
}

#[tokio::test]
async fn an_idempotency_key_returns_the_same_export_and_refuses_another_body() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    let body = json!({"kind": "batches", "format": "jsonl", "filters": {"produced_from": "2026-11-01T00:00:00Z"}});
    let (first_status, first, _) = post(&app, &member, body.clone(), Some("report-2026-11")).await;
    let (again_status, again, _) = post(&app, &member, body, Some("report-2026-11")).await;
    assert_eq!((first_status, again_status), (202, 202));
    assert_eq!(first["id"], again["id"], "the same export");
    let other = json!({"kind": "batches", "format": "csv"});
    let (status, problem, _) = post(&app, &member, other, Some("report-2026-11")).await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("idempotency_key_reused")), "{problem}");
    // Keys are per organization.
    let theirs = token(&app, "globex", "member");
    let (status, their_export, _) =
        post(&app, &theirs, json!({"kind": "batches", "format": "csv"}), Some("report-2026-11")).await;
    assert_eq!(status, 202);
    assert_ne!(their_export["id"], first["id"]);
    let rows: i64 = exports::table.count().get_result(&mut app.database.connect()).unwrap();
    assert_eq!(rows, 2, "one export per organization and key");
    let (status, problem, _) = post(&app, &member, json!({"kind": "batches", "format": "csv"}), Some("")).await;
    assert_eq!((status, problem["code"].as_str()), (400, Some("bad_request")), "{problem}");
    published_export_ids(&app, 2).await;
    common::wait_for_outbox(&app).await;
}

#[tokio::test]
async fn bad_requests_name_every_bad_field_and_viewers_cannot_export() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    let body = json!({"kind": "orders", "format": "xlsx"});
    let (status, problem) = call(&app, &member, Method::POST, "/v1/exports", Some(body)).await;
    assert_eq!(status, 422);
    let fields: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["kind", "format"], "{problem}");

    let filters = json!({"status": "lost", "product_id": "nope", "produced_to": "yesterday", "colour": "red"});
    let body = json!({"kind": "batches", "format": "csv", "filters": filters});
    let (status, problem) = call(&app, &member, Method::POST, "/v1/exports", Some(body)).await;
    assert_eq!(status, 422);
    let mut fields: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["filters.colour", "filters.produced_to", "filters.product_id", "filters.status"]);

    let body = json!({"kind": "products", "format": "csv", "filters": {"status": "completed"}});
    let (status, problem) = call(&app, &member, Method::POST, "/v1/exports", Some(body)).await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some("filters.status")), "{problem}");

    // PostgreSQL refuses NUL in text: a field error, not a 500 from the worker or the insert.
    for q in ["\u{0}", "rye\u{0}", &"q".repeat(201)] {
        let body = json!({"kind": "products", "format": "csv", "filters": {"q": q}});
        let (status, problem) = call(&app, &member, Method::POST, "/v1/exports", Some(body)).await;
        assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some("filters.q")), "{problem}");
    }

    let viewer = token(&app, "acme", "viewer");
    let body = json!({"kind": "products", "format": "csv"});
    let (status, problem) = call(&app, &viewer, Method::POST, "/v1/exports", Some(body)).await;
    assert_eq!((status, problem["code"].as_str()), (403, Some("forbidden")));
    let rows: i64 = exports::table.count().get_result(&mut app.database.connect()).unwrap();
    assert_eq!(rows, 0, "nothing kept from refused requests");
}

#[tokio::test]
async fn a_finished_export_downloads_and_an_expired_one_is_gone() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    let (_, export, _) = post(&app, &member, json!({"kind": "products", "format": "csv"}), None).await;
    let id: uuid::Uuid = export["id"].as_str().unwrap().parse().unwrap();
    published_export_ids(&app, 1).await;
    // Stand in for the worker: the file in the media store, the row's figures.
    let row: stockflow_db::exports::ExportRow = exports::table
        .find(id)
        .select(stockflow_db::exports::ExportRow::as_select())
        .first(&mut app.database.connect())
        .unwrap();
    let key = format!("{}/exports/{id}.csv", row.org_id);
    let content = b"id,sku\n1,A\n".to_vec();
    let path = app.storage_root.path().join("media").join(&key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &content).unwrap();
    let produced = stockflow_db::exports::Produced {
        storage_key: &key,
        row_count: 1,
        size_bytes: content.len() as u64,
        sha256: <sha2::Sha256 as sha2::Digest>::digest(&content).into(),
        retention: chrono::Duration::days(7),
    };
    stockflow_db::exports::mark_succeeded(&mut app.database.connect(), row.org_id, id, &produced).unwrap();

    let response =
        app.http.get(app.url(&format!("/v1/exports/{id}/content"))).bearer_auth(&member).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let disposition = response.headers()["content-disposition"].to_str().unwrap().to_owned();
    assert!(disposition.starts_with("attachment;") && disposition.contains(".csv"), "{disposition}");
    assert_eq!(response.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(response.bytes().await.unwrap().as_ref(), content.as_slice());
    let (_, got) = call(&app, &member, Method::GET, &format!("/v1/exports/{id}"), None).await;
    assert_eq!(got["status"], "succeeded");
    assert_eq!(got["row_count"], 1);
    assert_eq!(got["sha256"].as_str().unwrap().len(), 64);

    diesel::update(exports::table.find(id))
        .set(exports::status.eq("expired"))
        .execute(&mut app.database.connect())
        .unwrap();
    let (status, problem) = call(&app, &member, Method::GET, &format!("/v1/exports/{id}/content"), None).await;
    assert_eq!((status, problem["code"].as_str()), (410, Some("expired")), "{problem}");
    common::wait_for_outbox(&app).await;
}

#[tokio::test]
async fn an_organization_gets_only_so_many_active_exports_however_many_requests_race() {
    let app = TestApp::builder()
        .env("EXPORTS_MAX_ACTIVE_PER_ORG", "3")
        .spawn(|env, shutdown| async move {
            let app = stockflow_api::Application::build(stockflow_api::Settings::from_env(&env)?, shutdown).await?;
            let address = app.address();
            Ok((address, Box::pin(async move { Ok(app.run_until_stopped().await?) }) as _))
        })
        .await;
    let member = token(&app, "acme", "member");
    let body = json!({"kind": "products", "format": "csv"});
    let requests: Vec<_> = (0..12)
        .map(|_| {
            let request = app.http.post(app.url("/v1/exports")).bearer_auth(&member).json(&body);
            tokio::spawn(async move { request.send().await.unwrap() })
        })
        .collect();
    let (mut accepted, mut refused) = (0, 0);
    for request in requests {
        let response = request.await.unwrap();
        match response.status().as_u16() {
            202 => accepted += 1,
            429 => {
                assert_eq!(response.headers()["retry-after"], "30");
                assert_eq!(response.headers()["content-type"], "application/problem+json");
                let problem: Value = response.json().await.unwrap();
                assert_eq!(
                    (problem["code"].as_str(), problem["status"].as_u64()),
                    (Some("too_many_exports"), Some(429))
                );
                refused += 1;
            }
            other => panic!("answered {other}"),
        }
    }
    assert_eq!((accepted, refused), (3, 9));
    let rows: i64 = exports::table.count().get_result(&mut app.database.connect()).unwrap();
    assert_eq!(rows, 3, "nothing kept from refused requests");

    // Another organization has its own allowance.
    let theirs = token(&app, "globex", "member");
    assert_eq!(post(&app, &theirs, body.clone(), None).await.0, 202);
    // Once one finishes, there is room for one more.
    let done = exports::table
        .filter(exports::status.eq("queued"))
        .select(exports::id)
        .first::<uuid::Uuid>(&mut app.database.connect())
        .unwrap();
    diesel::update(exports::table.find(done))
        .set((exports::status.eq("failed"), exports::error.eq("internal_error")))
        .execute(&mut app.database.connect())
        .unwrap();
    let (status, again, _) = post(&app, &member, body.clone(), Some("after-one-failed")).await;
    assert_eq!(status, 202);
    assert_eq!(post(&app, &member, body.clone(), None).await.0, 429);
    // A repeat of an accepted request still answers with its export.
    let (status, repeat, _) = post(&app, &member, body.clone(), Some("after-one-failed")).await;
    assert_eq!((status, &repeat["id"]), (202, &again["id"]));
    common::wait_for_outbox(&app).await;
}

#[tokio::test]
async fn a_failed_export_tells_a_stable_reason_and_never_the_raw_error() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, export, _) = post(&app, &member, json!({"kind": "products", "format": "csv"}), None).await;
        ids.push(export["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap());
    }
    // As the worker leaves them, and as an older build did, with the raw error.
    let stored = [
        "storage_error",
        "database_error",
        "storage: cannot write /var/lib/stockflow/media/3f2a/exports: Permission denied (os error 13)",
    ];
    for (id, error) in ids.iter().zip(stored) {
        diesel::update(exports::table.find(id))
            .set((exports::status.eq("failed"), exports::error.eq(error)))
            .execute(&mut app.database.connect())
            .unwrap();
    }
    let mut seen = Vec::new();
    for id in &ids {
        let (status, export) = call(&app, &member, Method::GET, &format!("/v1/exports/{id}"), None).await;
        assert_eq!(status, 200);
        seen.push(export["error"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, ["storage_error", "database_error", "internal_error"]);
    let (_, page) = call(&app, &member, Method::GET, "/v1/exports", None).await;
    let listed = page["items"].to_string();
    assert!(!listed.contains("Permission denied") && !listed.contains("/var/lib"), "{listed}");
    common::wait_for_outbox(&app).await;
}
