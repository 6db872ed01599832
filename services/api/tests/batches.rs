// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

//! `/v1/batches` over HTTP against a real database.

mod common;

use common::{Method, Value, call, json, spawn_app, token};
use stockflow_testkit::TestApp;

async fn product(app: &TestApp, token: &str, sku: &str) -> String {
    let body = json!({"sku": sku, "name": sku, "unit": "kg"});
    let (status, product) = call(app, token, Method::POST, "/v1/products", Some(body)).await;
    assert_eq!(status, 201, "{product}");
    product["id"].as_str().unwrap().to_owned()
}

fn batch(product_id: &str, code: &str, produced_at: &str) -> Value {
    json!({"product_id": product_id, "code": code, "quantity": "12.500", "produced_at": produced_at})
}

#[tokio::test]
async fn batches_are_created_read_updated_and_deleted() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    let flour = product(&app, &member, "FL").await;
    let mut body = batch(&flour, "B-1", "2026-11-20T08:00:00+01:00");
    body["notes"] = json!("first run\nline two");
    body["metadata"] = json!({"oven": 3});
    let (status, created) = call(&app, &member, Method::POST, "/v1/batches", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["quantity"], "12.5", "quantities come back as exact decimal text");
    assert_eq!(created["status"], "planned");
    assert_eq!(created["produced_at"], "2026-11-20T07:00:00Z");
    assert_eq!(created["notes"], "first run\nline two");
    let path = format!("/v1/batches/{}", created["id"].as_str().unwrap());
    assert_eq!(call(&app, &member, Method::GET, &path, None).await.1, created);

    let patch = json!({"status": "completed", "quantity": 99999999999999.5});
    let (status, patched) = call(&app, &member, Method::PATCH, &path, Some(patch)).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(
        (patched["status"].as_str(), patched["quantity"].as_str()),
        (Some("completed"), Some("99999999999999.5"))
    );
    assert_eq!(patched["code"], "B-1");

    let (status, problem) = call(&app, &member, Method::DELETE, &format!("/v1/products/{flour}"), None).await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("in_use")), "a product with batches stays");
    assert_eq!(call(&app, &member, Method::DELETE, &path, None).await.0, 204);
    assert_eq!(call(&app, &member, Method::GET, &path, None).await.0, 404);
    assert_eq!(call(&app, &member, Method::DELETE, &format!("/v1/products/{flour}"), None).await.0, 204);
}

#[tokio::test]
async fn invalid_batches_get_field_errors_and_codes_conflict_per_org() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    let flour = product(&app, &member, "FL").await;
    let body = json!({"product_id": flour, "code": "", "quantity": "-1", "produced_at": "yesterday", "status": "done", "metadata": "x"});
    let (status, problem) = call(&app, &member, Method::POST, "/v1/batches", Some(body)).await;
    assert_eq!(status, 422, "{problem}");
    let fields: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["code", "quantity", "produced_at", "status", "metadata"]);

    assert_eq!(
        call(&app, &member, Method::POST, "/v1/batches", Some(batch(&flour, "B-1", "2026-11-20T08:00:00Z"))).await.0,
        201
    );
    let (status, problem) =
        call(&app, &member, Method::POST, "/v1/batches", Some(batch(&flour, "B-1", "2026-11-21T08:00:00Z"))).await;
    assert_eq!((status, problem["field"].as_str()), (409, Some("code")));

    let globex = token(&app, "globex", "member");
    let theirs = product(&app, &globex, "FL").await;
    assert_eq!(
        call(&app, &globex, Method::POST, "/v1/batches", Some(batch(&theirs, "B-1", "2026-11-20T08:00:00Z"))).await.0,
        201,
        "codes are per org"
    );
    let (status, problem) =
        call(&app, &member, Method::POST, "/v1/batches", Some(batch(&theirs, "B-2", "2026-11-20T08:00:00Z"))).await;
    assert_eq!(
        (status, problem["code"].as_str(), problem["field"].as_str()),
        (409, Some("missing_reference"), Some("product_id")),
        "another org's product does not exist here: {problem}"
    );
}

#[tokio::test]
async fn another_orgs_batch_is_not_found_and_viewers_cannot_write() {
    let app = spawn_app().await;
    let acme_admin = token(&app, "acme", "admin");
    let acme_viewer = token(&app, "acme", "viewer");
    let globex = token(&app, "globex", "member");
    let theirs = product(&app, &globex, "FL").await;
    let (_, their_batch) =
        call(&app, &globex, Method::POST, "/v1/batches", Some(batch(&theirs, "B-1", "2026-11-20T08:00:00Z"))).await;
    let path = format!("/v1/batches/{}", their_batch["id"].as_str().unwrap());
    for (method, body) in
        [(Method::GET, None), (Method::PATCH, Some(json!({"status": "cancelled"}))), (Method::DELETE, None)]
    {
        let (status, problem) = call(&app, &acme_admin, method.clone(), &path, body).await;
        assert_eq!((status, problem["detail"].as_str()), (404, Some("no such batch")), "{method}");
    }
    let (_, page) = call(&app, &acme_admin, Method::GET, &format!("/v1/batches?product_id={theirs}"), None).await;
    assert_eq!(page["items"], json!([]));
    assert_eq!(call(&app, &globex, Method::GET, &path, None).await.1["status"], "planned", "unchanged");

    let mine = product(&app, &acme_admin, "OWN").await;
    let (status, problem) =
        call(&app, &acme_viewer, Method::POST, "/v1/batches", Some(batch(&mine, "B-9", "2026-11-20T08:00:00Z"))).await;
    assert_eq!((status, problem["code"].as_str()), (403, Some("forbidden")));
    assert_eq!(call(&app, &acme_viewer, Method::GET, "/v1/batches", None).await.0, 200);
}

#[tokio::test]
async fn lists_page_by_production_time_and_filter() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    let flour = product(&app, &member, "FL").await;
    let oats = product(&app, &member, "OT").await;
    for day in 1..=9 {
        let product_id = if day % 3 == 0 { &oats } else { &flour };
        let mut body = batch(product_id, &format!("B-{day}"), &format!("2026-11-0{day}T06:00:00Z"));
        if day >= 7 {
            body["status"] = json!("completed");
        }
        assert_eq!(call(&app, &member, Method::POST, "/v1/batches", Some(body)).await.0, 201);
    }
    let codes = |page: &Value| {
        page["items"].as_array().unwrap().iter().map(|b| b["code"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    let mut seen = Vec::new();
    let mut path = "/v1/batches?limit=4".to_owned();
    loop {
        let (status, page) = call(&app, &member, Method::GET, &path, None).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(codes(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/batches?limit=4&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ["B-9", "B-8", "B-7", "B-6", "B-5", "B-4", "B-3", "B-2", "B-1"]);

    let (_, page) = call(&app, &member, Method::GET, &format!("/v1/batches?product_id={oats}"), None).await;
    assert_eq!(codes(&page), ["B-9", "B-6", "B-3"]);
    let (_, page) = call(&app, &member, Method::GET, "/v1/batches?status=completed", None).await;
    assert_eq!(codes(&page), ["B-9", "B-8", "B-7"]);
    let window = "/v1/batches?produced_from=2026-11-03T06:00:00Z&produced_to=2026-11-05T06:00:00Z";
    let (_, page) = call(&app, &member, Method::GET, window, None).await;
    assert_eq!(codes(&page), ["B-4", "B-3"], "from is inclusive, to exclusive");
    let (_, page) =
        call(&app, &member, Method::GET, &format!("/v1/batches?product_id={flour}&status=completed&limit=1"), None)
            .await;
    assert_eq!(codes(&page), ["B-8"]);
    assert!(page["next_cursor"].is_string());

    for bad in ["/v1/batches?status=done", "/v1/batches?product_id=x", "/v1/batches?produced_from=monday"] {
        assert_eq!(call(&app, &member, Method::GET, bad, None).await.0, 422, "{bad}");
    }
}

/// `notes` is the one field a PATCH may set to null, which clears it; null
/// for any other field is a 422 naming it, and nothing changes.
#[tokio::test]
async fn null_clears_notes_and_is_refused_for_every_other_field() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    let flour = product(&app, &member, "FL").await;
    let mut body = batch(&flour, "B-1", "2026-11-20T08:00:00Z");
    body["notes"] = json!("keep me");
    let (_, created) = call(&app, &member, Method::POST, "/v1/batches", Some(body)).await;
    let path = format!("/v1/batches/{}", created["id"].as_str().unwrap());
    for field in ["product_id", "code", "quantity", "produced_at", "status", "metadata"] {
        let (status, problem) = call(&app, &member, Method::PATCH, &path, Some(json!({field: null}))).await;
        assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some(field)), "{problem}");
    }
    assert_eq!(call(&app, &member, Method::GET, &path, None).await.1, created, "nothing changed");

    let (status, patched) = call(&app, &member, Method::PATCH, &path, Some(json!({"notes": null}))).await;
    assert_eq!((status, patched["notes"].as_str()), (200, Some("")), "{patched}");
    assert_eq!(patched["code"], "B-1");

    for field in ["status", "metadata"] {
        let mut body = batch(&flour, "B-2", "2026-11-20T08:00:00Z");
        body[field] = Value::Null;
        let (status, problem) = call(&app, &member, Method::POST, "/v1/batches", Some(body)).await;
        assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some(field)), "{problem}");
    }
    let mut body = batch(&flour, "B-2", "2026-11-20T08:00:00Z");
    body["notes"] = Value::Null;
    let (status, created) = call(&app, &member, Method::POST, "/v1/batches", Some(body)).await;
    assert_eq!((status, created["notes"].as_str()), (201, Some("")), "null notes are no notes: {created}");
}

#[tokio::test]
async fn nul_characters_in_metadata_or_notes_are_field_errors() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    let flour = product(&app, &member, "FL").await;
    for (field, value) in [
        ("metadata", json!({"\u{0}": 1})),
        ("metadata", json!({"oven": ["hot", {"x": "a\u{0}"}]})),
        ("notes", json!("a\u{0}b")),
    ] {
        let mut body = batch(&flour, "B-1", "2026-11-20T08:00:00Z");
        body[field] = value.clone();
        let (status, problem) = call(&app, &member, Method::POST, "/v1/batches", Some(body)).await;
        assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some(field)), "{value}: {problem}");
    }
}
