// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

//! The two-organization matrix: an admin of one organization, against every
//! operation of `/openapi.json` (so a new route is covered the day it is
//! documented), with the other organization's ids, gets the same 404 as for
//! an id that does not exist, and no list shows the other's records.

mod common;

use common::{Method, Value, call, json, spawn_app, token};

use reqwest::multipart::{Form, Part};
use std::collections::HashMap;
use stockflow_testkit::TestApp;

/// One record of each kind, owned by `org`; returns the id of each, keyed by
/// the path prefix whose `{id}` it fills.
async fn records(app: &TestApp, admin: &str) -> HashMap<&'static str, String> {
    let (_, product) = call(
        app,
        admin,
        Method::POST,
        "/v1/products",
        Some(json!({"sku": "SECRET-SKU", "name": "Secret", "unit": "kg"})),
    )
    .await;
    let body =
        json!({"product_id": product["id"], "code": "SECRET-B", "quantity": 1, "produced_at": "2026-11-20T08:00:00Z"});
    let (_, batch) = call(app, admin, Method::POST, "/v1/batches", Some(body)).await;
    let form = Form::new().part("file", Part::bytes(b"secret notes\n".to_vec()).file_name("secret.txt"));
    let attachment: Value = app
        .http
        .post(app.url(&format!("/v1/batches/{}/attachments", batch["id"].as_str().unwrap())))
        .bearer_auth(admin)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (_, tokens) = call(app, admin, Method::GET, "/v1/tokens", None).await;
    let (_, export) =
        call(app, admin, Method::POST, "/v1/exports", Some(json!({"kind": "batches", "format": "csv"}))).await;
    let schedule = json!({
        "name": "SECRET schedule",
        "cron": "0 2 * * *",
        "timezone": "UTC",
        "export": {"kind": "products", "format": "csv"},
    });
    let (_, schedule) = call(app, admin, Method::POST, "/v1/schedules", Some(schedule)).await;
    let id = |v: &Value| v["id"].as_str().unwrap().to_owned();
    HashMap::from([
        ("/v1/products/", id(&product)),
        ("/v1/batches/", id(&batch)),
        ("/v1/attachments/", id(&attachment)),
        ("/v1/tokens/", id(&tokens["items"][0])),
        ("/v1/exports/", id(&export)),
        ("/v1/schedules/", id(&schedule)),
    ])
}

/// A body a write of this path would accept if the id were the caller's.
fn body_for(path: &str, method: &Method) -> Option<Value> {
    match (method.as_str(), path) {
        ("PATCH", p) if p.starts_with("/v1/products/") => Some(json!({"name": "taken over"})),
        ("PATCH", p) if p.starts_with("/v1/batches/") => Some(json!({"status": "cancelled"})),
        ("PATCH", p) if p.starts_with("/v1/schedules/") => Some(json!({"name": "taken over"})),
        ("POST", p) if p.ends_with("/pause") => Some(json!({"note": "taken over"})),
        _ => None,
    }
}

#[tokio::test]
async fn one_org_cannot_reach_another_orgs_records_through_any_route() {
    let app = spawn_app().await;
    let theirs_admin = token(&app, "globex", "admin");
    let ours_admin = token(&app, "acme", "admin");
    let theirs = records(&app, &theirs_admin).await;
    let ours = records(&app, &ours_admin).await;

    let document: Value = app.get("/openapi.json").await.json().await.unwrap();
    let mut probed = 0;
    for (template, operations) in document["paths"].as_object().unwrap() {
        if !template.contains("{id}") {
            continue;
        }
        // Backups are the installation's, no organization's: tests/backups.rs
        // checks that a token without the operator scope finds nothing there.
        if template.starts_with("/v1/backups/") {
            continue;
        }
        let (prefix, their_id) = theirs.iter().find(|(prefix, _)| template.starts_with(*prefix)).unwrap_or_else(|| {
            panic!("{template} takes an id this test cannot make yet: add a record of its kind to records()")
        });
        let our_id = &ours[prefix];
        for method in operations.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let missing = template.replace("{id}", &uuid::Uuid::new_v4().to_string());
            let foreign = template.replace("{id}", their_id);
            let (missing_status, missing_body) =
                raw(&app, &ours_admin, &method, &missing, body_for(template, &method)).await;
            let (status, body) = raw(&app, &ours_admin, &method, &foreign, body_for(template, &method)).await;
            assert_eq!(status, 404, "{method} {foreign} with another org's id: {body}");
            assert_eq!(
                (status, &body),
                (missing_status, &missing_body),
                "{method} {template}: foreign and missing ids differ"
            );
            assert!(!body.contains("SECRET"), "{method} {foreign} leaked: {body}");
            probed += 1;
            // Our own id works, so the 404 above is about ownership.
            let own = template.replace("{id}", our_id);
            if method == Method::GET {
                let status = raw(&app, &ours_admin, &method, &own, None).await.0;
                // An export's file is not ready until the worker wrote it.
                let not_ready = template == "/v1/exports/{id}/content" && status == 409;
                assert!(status / 100 == 2 || not_ready, "GET {own}: {status}");
            }
        }
    }
    assert!(probed >= 17, "only {probed} operations with an id were probed");

    for list in [
        "/v1/products",
        "/v1/batches",
        "/v1/tokens",
        "/v1/exports",
        "/v1/schedules",
        &format!("/v1/batches/{}/attachments", ours["/v1/batches/"]),
    ] {
        let (status, body) = raw(&app, &ours_admin, &Method::GET, list, None).await;
        assert_eq!(status, 200, "{list}");
        assert!(!theirs.values().any(|id| body.contains(id.as_str())), "{list} lists another org's record: {body}");
    }
    // Still all there for their owner.
    for (prefix, id) in &theirs {
        if *prefix != "/v1/tokens/" {
            assert_eq!(raw(&app, &theirs_admin, &Method::GET, &format!("{prefix}{id}"), None).await.0, 200);
        }
    }
    common::wait_for_outbox(&app).await;
}

async fn raw(app: &TestApp, token: &str, method: &Method, path: &str, body: Option<Value>) -> (u16, String) {
    let mut request = app.http.request(method.clone(), app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}
