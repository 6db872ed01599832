// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

//! `/v1/backups` from the operator's side: runs with their artifacts,
//! starting a run and a verify through the outbox, and nothing at all for
//! tokens without the operator scope. Taking the backups is the backup
//! service's part (services/backup/tests).

mod common;

use common::{Method, call, json, spawn_app, token};
use diesel::prelude::*;
use lapin::options::BasicGetOptions;
use std::time::Duration;
use stockflow_api::commands::{TokenRequest, create_token};
use stockflow_db::schema::{backup_runs, outbox};
use stockflow_testkit::{TestApp, eventually};
use uuid::Uuid;

fn operator_token(app: &TestApp, org: &str) -> String {
    let request = TokenRequest {
        org: org.into(),
        role: "viewer".into(),
        name: "ops".into(),
        email: Some(format!("ops@{org}.example")),
        expires_in: None,
        operator: true,
    };
    create_token(&mut app.database.connect(), request).unwrap().expose().to_owned()
}

/// A succeeded, verified run and a failed one, as the backup service
/// records them.
fn seed_runs(app: &TestApp) -> (Uuid, Uuid) {
    let conn = &mut app.database.connect();
    let succeeded: Uuid = diesel::insert_into(backup_runs::table)
        .values((
            backup_runs::trigger.eq("scheduled"),
            backup_runs::status.eq("succeeded"),
            backup_runs::started_at.eq(diesel::dsl::sql("now() - interval '1 hour'")),
            backup_runs::finished_at.eq(diesel::dsl::sql("now() - interval '50 minutes'")),
            backup_runs::db_key.eq("backups/run/database.dump"),
            backup_runs::db_bytes.eq(4096_i64),
            backup_runs::db_sha256.eq(vec![0xab_u8; 32]),
            backup_runs::table_counts.eq(json!({"batches": 12, "products": 3})),
            backup_runs::media_manifest_key.eq("backups/run/media.json"),
            backup_runs::media_objects.eq(2_i64),
            backup_runs::media_bytes.eq(2048_i64),
            backup_runs::media_new_bytes.eq(0_i64),
            backup_runs::verified_at.eq(diesel::dsl::sql("now() - interval '45 minutes'")),
            backup_runs::verify_method.eq("restore"),
        ))
        .returning(backup_runs::id)
        .get_result(conn)
        .unwrap();
    let failed: Uuid = diesel::insert_into(backup_runs::table)
        .values((
            backup_runs::trigger.eq("manual"),
            backup_runs::status.eq("failed"),
            backup_runs::finished_at.eq(diesel::dsl::now),
            backup_runs::error.eq("pg_dump 9.6 cannot dump a PostgreSQL 15 server"),
        ))
        .returning(backup_runs::id)
        .get_result(conn)
        .unwrap();
    (succeeded, failed)
}

#[tokio::test]
async fn an_operator_lists_runs_newest_first_with_their_artifacts() {
    let app = spawn_app().await;
    let operator = operator_token(&app, "acme");
    let (succeeded, failed) = seed_runs(&app);

    let (status, page) = call(&app, &operator, Method::GET, "/v1/backups?limit=1", None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"][0]["id"], failed.to_string(), "newest first");
    assert_eq!(page["items"][0]["status"], "failed");
    assert_eq!(page["items"][0]["error"], "pg_dump 9.6 cannot dump a PostgreSQL 15 server");
    assert_eq!(page["items"][0]["database"], serde_json::Value::Null);
    let cursor = page["next_cursor"].as_str().expect("a second page");
    let (status, page) =
        call(&app, &operator, Method::GET, &format!("/v1/backups?limit=1&cursor={cursor}"), None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"][0]["id"], succeeded.to_string());
    assert_eq!(page["next_cursor"], serde_json::Value::Null);

    let (status, run) = call(&app, &operator, Method::GET, &format!("/v1/backups/{succeeded}"), None).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["database"]["key"], "backups/run/database.dump");
    assert_eq!(run["database"]["bytes"], 4096);
    assert_eq!(run["database"]["sha256"], "ab".repeat(32));
    assert_eq!(run["database"]["table_counts"], json!({"batches": 12, "products": 3}));
    assert_eq!(
        run["media"],
        json!({"manifest_key": "backups/run/media.json", "objects": 2, "bytes": 2048, "new_bytes": 0})
    );
    assert_eq!(run["verify_method"], "restore");
    assert!(run["verified_at"].as_str().is_some_and(|at| at.ends_with('Z')), "{run}");

    let (status, problem) = call(&app, &operator, Method::GET, &format!("/v1/backups/{}", Uuid::new_v4()), None).await;
    assert_eq!((status, problem["code"].as_str()), (404, Some("not_found")));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn starting_a_run_and_a_verify_queue_their_jobs() {
    let app = spawn_app().await;
    let operator = operator_token(&app, "acme");
    let (succeeded, failed) = seed_runs(&app);

    let (status, queued) = call(&app, &operator, Method::POST, "/v1/backups", None).await;
    assert_eq!(status, 202, "{queued}");
    assert_eq!(queued["job"], "backup.database");
    let (status, verify) = call(&app, &operator, Method::POST, &format!("/v1/backups/{succeeded}/verify"), None).await;
    assert_eq!(status, 202, "{verify}");
    assert_eq!(verify["job"], "backup.verify");

    let conn = &mut app.database.connect();
    let mut job = |id: &serde_json::Value| -> (String, serde_json::Value) {
        let id: Uuid = id.as_str().unwrap().parse().unwrap();
        outbox::table.find(id).select((outbox::routing_key, outbox::message)).first(conn).unwrap()
    };
    let (key, message) = job(&queued["job_id"]);
    assert_eq!(key, "backup.database");
    assert_eq!(message["payload"], json!({"trigger": "manual"}));
    let (key, message) = job(&verify["job_id"]);
    assert_eq!(key, "backup.verify");
    assert_eq!(message["payload"], json!({"run": succeeded.to_string()}));

    // Both reach the backup service's queue, published by the api's relay.
    app.wait_for_readyz(200, Duration::from_secs(15)).await;
    let channel = stockflow_testkit::broker::connect().await.create_channel().await.unwrap();
    let queue = format!("{}.backups", app.namespace);
    let mut delivered = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while delivered.len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "only {delivered:?} of 2 jobs reached {queue}");
        match channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap() {
            Some(message) => {
                let envelope: serde_json::Value = serde_json::from_slice(&message.delivery.data).unwrap();
                delivered.push(envelope["id"].as_str().unwrap().to_owned());
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    delivered.sort();
    let mut expected =
        vec![queued["job_id"].as_str().unwrap().to_owned(), verify["job_id"].as_str().unwrap().to_owned()];
    expected.sort();
    assert_eq!(delivered, expected);
    eventually("both outbox rows marked published", Duration::from_secs(10), || async {
        let unpublished: i64 = outbox::table
            .filter(outbox::published_at.is_null())
            .count()
            .get_result(&mut app.database.connect())
            .unwrap();
        (unpublished == 0).then_some(())
    })
    .await;

    // Only a succeeded run can be proved restorable.
    let (status, problem) = call(&app, &operator, Method::POST, &format!("/v1/backups/{failed}/verify"), None).await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("not_ready")), "{problem}");
    let (status, _) =
        call(&app, &operator, Method::POST, &format!("/v1/backups/{}/verify", Uuid::new_v4()), None).await;
    assert_eq!(status, 404);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn backups_do_not_exist_for_tokens_without_the_operator_scope() {
    let app = spawn_app().await;
    let (succeeded, _) = seed_runs(&app);
    let admin = token(&app, "acme", "admin");
    for (method, path) in [
        (Method::GET, "/v1/backups".to_owned()),
        (Method::POST, "/v1/backups".to_owned()),
        (Method::GET, format!("/v1/backups/{succeeded}")),
        (Method::POST, format!("/v1/backups/{succeeded}/verify")),
    ] {
        let (status, problem) = call(&app, &admin, method.clone(), &path, None).await;
        assert_eq!((status, problem["code"].as_str()), (404, Some("not_found")), "{method} {path}: {problem}");
    }
    let queued: i64 = outbox::table
        .filter(outbox::routing_key.like("backup.%"))
        .count()
        .get_result(&mut app.database.connect())
        .unwrap();
    assert_eq!(queued, 0, "nothing was queued for a token without the scope");
    // No token at all is still 401, before any scope is looked at.
    let response = app.http.get(app.url("/v1/backups")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    app.stop().await.unwrap();
}
