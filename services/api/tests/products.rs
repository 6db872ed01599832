// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

//! `/v1/products` over HTTP against a real database: validation, conflicts,
//! roles, pagination, filters and isolation between organizations.

mod common;

use common::{Method, Value, call, json, spawn_app, token};

fn flour() -> Value {
    json!({"sku": "FL-00", "name": "Rye flour", "unit": "kg", "custom_fields": {"mill": "North"}})
}

#[tokio::test]
async fn products_are_created_read_updated_and_deleted() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    let (status, created) = call(&app, &member, Method::POST, "/v1/products", Some(flour())).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!((created["sku"].as_str(), created["unit"].as_str()), (Some("FL-00"), Some("kg")));
    assert_eq!(created["custom_fields"], json!({"mill": "North"}));
    let path = format!("/v1/products/{}", created["id"].as_str().unwrap());

    let (status, fetched) = call(&app, &member, Method::GET, &path, None).await;
    assert_eq!((status, &fetched), (200, &created));

    let (status, patched) =
        call(&app, &member, Method::PATCH, &path, Some(json!({"name": "  Rye flour T1150 "}))).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["name"], "Rye flour T1150");
    assert_eq!(patched["sku"], "FL-00", "fields not sent stay as they were");
    let time = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    assert!(time(&patched["updated_at"]) > time(&created["updated_at"]));

    assert_eq!(call(&app, &member, Method::DELETE, &path, None).await.0, 204);
    let (status, problem) = call(&app, &member, Method::GET, &path, None).await;
    assert_eq!((status, problem["code"].as_str()), (404, Some("not_found")));
    assert_eq!(call(&app, &member, Method::DELETE, &path, None).await.0, 404);
}

#[tokio::test]
async fn invalid_fields_are_all_reported_at_once() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    let body = json!({"sku": "-bad", "name": "", "unit": "kg", "custom_fields": [1, 2]});
    let (status, problem) = call(&app, &member, Method::POST, "/v1/products", Some(body)).await;
    assert_eq!((status, problem["code"].as_str()), (422, Some("validation_failed")));
    let fields: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["sku", "name", "custom_fields"]);

    let huge = json!({"sku": "A", "name": "a", "unit": "kg", "custom_fields": {"blob": "x".repeat(17 * 1024)}});
    let (status, problem) = call(&app, &member, Method::POST, "/v1/products", Some(huge)).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "custom_fields");

    let unknown = json!({"sku": "A", "name": "a", "unit": "kg", "colour": "red"});
    let (status, problem) = call(&app, &member, Method::POST, "/v1/products", Some(unknown)).await;
    assert_eq!(status, 422, "{problem}");
    assert!(problem["errors"][0]["message"].as_str().unwrap().contains("colour"), "{problem}");
}

#[tokio::test]
async fn malformed_and_oversized_json_are_problems_not_500s() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    let send = |body: String, content_type: &'static str| {
        app.http
            .post(app.url("/v1/products"))
            .bearer_auth(&member)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let broken = send("{\"sku\": ".to_owned(), "application/json").await.unwrap();
    assert_eq!(broken.status(), 400);
    let problem: Value = broken.json().await.unwrap();
    assert_eq!(problem["code"], "bad_request");
    let oversized = send(format!("{{\"sku\":\"{}\"}}", "x".repeat(70 * 1024)), "application/json").await.unwrap();
    assert_eq!(oversized.status(), 413);
    let problem: Value = oversized.json().await.unwrap();
    assert_eq!(problem["code"], "payload_too_large");
    let wrong_type = send(flour().to_string(), "text/plain").await.unwrap();
    assert_eq!(wrong_type.status(), 400);
}

#[tokio::test]
async fn a_taken_sku_is_a_conflict_naming_the_field_but_only_within_an_org() {
    let app = spawn_app().await;
    let acme = token(&app, "acme", "member");
    let globex = token(&app, "globex", "member");
    assert_eq!(call(&app, &acme, Method::POST, "/v1/products", Some(flour())).await.0, 201);
    let (status, problem) = call(&app, &acme, Method::POST, "/v1/products", Some(flour())).await;
    assert_eq!((status, problem["code"].as_str(), problem["field"].as_str()), (409, Some("conflict"), Some("sku")));
    assert_eq!(call(&app, &globex, Method::POST, "/v1/products", Some(flour())).await.0, 201, "SKUs are per org");

    let other = json!({"sku": "OTHER", "name": "Other", "unit": "pcs"});
    let (_, other) = call(&app, &acme, Method::POST, "/v1/products", Some(other)).await;
    let path = format!("/v1/products/{}", other["id"].as_str().unwrap());
    let (status, problem) = call(&app, &acme, Method::PATCH, &path, Some(json!({"sku": "FL-00"}))).await;
    assert_eq!((status, problem["field"].as_str()), (409, Some("sku")));
}

#[tokio::test]
async fn viewers_read_but_cannot_write() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    let viewer = token(&app, "acme", "viewer");
    let (_, created) = call(&app, &member, Method::POST, "/v1/products", Some(flour())).await;
    let path = format!("/v1/products/{}", created["id"].as_str().unwrap());
    assert_eq!(call(&app, &viewer, Method::GET, &path, None).await.0, 200);
    assert_eq!(call(&app, &viewer, Method::GET, "/v1/products", None).await.0, 200);
    let other = json!({"sku": "B", "name": "b", "unit": "kg"});
    for (method, path, body) in [
        (Method::POST, "/v1/products", Some(other)),
        (Method::PATCH, path.as_str(), Some(json!({"name": "x"}))),
        (Method::DELETE, path.as_str(), None),
    ] {
        let (status, problem) = call(&app, &viewer, method.clone(), path, body).await;
        assert_eq!((status, problem["code"].as_str()), (403, Some("forbidden")), "{method} {path}");
    }
    assert_eq!(call(&app, &viewer, Method::GET, &path, None).await.1["name"], "Rye flour", "nothing changed");
}

#[tokio::test]
async fn another_orgs_product_is_not_found_whatever_the_method() {
    let app = spawn_app().await;
    let acme = token(&app, "acme", "admin");
    let globex = token(&app, "globex", "admin");
    let (_, theirs) = call(&app, &globex, Method::POST, "/v1/products", Some(flour())).await;
    let path = format!("/v1/products/{}", theirs["id"].as_str().unwrap());
    let missing = format!("/v1/products/{}", uuid::Uuid::new_v4());
    for path in [&path, &missing] {
        for (method, body) in
            [(Method::GET, None), (Method::PATCH, Some(json!({"name": "mine now"}))), (Method::DELETE, None)]
        {
            let (status, problem) = call(&app, &acme, method.clone(), path, body).await;
            assert_eq!(status, 404, "{method} {path}");
            assert_eq!(problem["detail"], "no such product", "the answer must not depend on who owns the id");
        }
    }
    let (_, page) = call(&app, &acme, Method::GET, "/v1/products", None).await;
    assert_eq!(page["items"], json!([]));
    assert_eq!(call(&app, &globex, Method::GET, &path, None).await.1["name"], "Rye flour", "still theirs, unchanged");
    assert_eq!(call(&app, &acme, Method::GET, "/v1/products/not-a-uuid", None).await.0, 404);
}

#[tokio::test]
async fn lists_page_newest_first_and_filter_by_sku_prefix_and_name() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    for i in 0..7 {
        let name = if i % 2 == 0 { format!("Rye flour {i}") } else { format!("Oat 50%_off {i}") };
        let body = json!({"sku": format!("{}-{i}", if i < 4 { "FL" } else { "OT" }), "name": name, "unit": "kg"});
        assert_eq!(call(&app, &member, Method::POST, "/v1/products", Some(body)).await.0, 201);
    }
    let mut seen = Vec::new();
    let mut path = "/v1/products?limit=3".to_owned();
    loop {
        let (status, page) = call(&app, &member, Method::GET, &path, None).await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|p| p["sku"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/products?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ["OT-6", "OT-5", "OT-4", "FL-3", "FL-2", "FL-1", "FL-0"], "newest first, each once");

    let skus = |page: &Value| {
        page["items"].as_array().unwrap().iter().map(|p| p["sku"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    let (_, page) = call(&app, &member, Method::GET, "/v1/products?sku_prefix=OT", None).await;
    assert_eq!(skus(&page), ["OT-6", "OT-5", "OT-4"]);
    let (_, page) = call(&app, &member, Method::GET, "/v1/products?q=RYE", None).await;
    assert_eq!(skus(&page), ["OT-6", "OT-4", "FL-2", "FL-0"]);
    let (_, page) = call(&app, &member, Method::GET, "/v1/products?q=50%25_", None).await;
    assert_eq!(skus(&page), ["OT-5", "FL-3", "FL-1"], "LIKE wildcards in q match literally");

    for bad in ["/v1/products?limit=0", "/v1/products?limit=201", "/v1/products?sku_prefix=%25"] {
        let (status, problem) = call(&app, &member, Method::GET, bad, None).await;
        assert_eq!((status, problem["code"].as_str()), (422, Some("validation_failed")), "{bad}");
    }
}

/// Any cursor of the documented form is a position a list can start from,
/// down to PostgreSQL's earliest timestamp; anything else, such as a time
/// before it (a forged cursor of the old form), is a 400, never a 500.
#[tokio::test]
async fn forged_cursors_are_bad_requests_and_documented_ones_all_work() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    call(&app, &member, Method::POST, "/v1/products", Some(flour())).await;
    let id = "0".repeat(32);
    for path in ["/v1/products", "/v1/batches", "/v1/exports"] {
        for good in
            [format!("{}{id}", "0".repeat(16)), format!("6{}{id}", "f".repeat(15)), format!("{}{id}", "3".repeat(16))]
        {
            let (status, page) = call(&app, &member, Method::GET, &format!("{path}?cursor={good}"), None).await;
            assert_eq!(status, 200, "{path} {good}: {page}");
        }
        // 10,000 BC as microseconds since 1970, the form cursors had before.
        let before_postgres = format!("{:016x}{id}", -377_705_116_800_000_000_i64);
        for bad in [before_postgres, format!("7{}{id}", "0".repeat(15)), "".to_owned(), "zz".to_owned(), id.clone()] {
            let (status, problem) = call(&app, &member, Method::GET, &format!("{path}?cursor={bad}"), None).await;
            assert_eq!((status, problem["code"].as_str()), (400, Some("bad_request")), "{path} {bad:?}: {problem}");
        }
    }
}

/// PostgreSQL cannot store NUL in text or jsonb: every way it can arrive is
/// a 422 naming the field, never a 500.
#[tokio::test]
async fn nul_characters_are_field_errors_wherever_they_come() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    for custom_fields in [json!({"a\u{0}": 1}), json!({"a": "x\u{0}"}), json!({"a": [{"b": {"c": ["\u{0}"]}}]})] {
        let mut body = flour();
        body["custom_fields"] = custom_fields.clone();
        let (status, problem) = call(&app, &member, Method::POST, "/v1/products", Some(body)).await;
        assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some("custom_fields")), "{custom_fields}");
    }
    let (status, created) = call(&app, &member, Method::POST, "/v1/products", Some(flour())).await;
    assert_eq!(status, 201);
    let path = format!("/v1/products/{}", created["id"].as_str().unwrap());
    let patch = json!({"custom_fields": {"deep": {"\u{0}": true}}});
    let (status, problem) = call(&app, &member, Method::PATCH, &path, Some(patch)).await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some("custom_fields")), "{problem}");
    for name in ["Rye\u{0}", "\u{0}"] {
        let (status, problem) = call(&app, &member, Method::PATCH, &path, Some(json!({"name": name}))).await;
        assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some("name")), "{problem}");
    }
    let (status, problem) = call(&app, &member, Method::GET, "/v1/products?q=%00", None).await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some("q")), "{problem}");
    let (status, problem) = call(&app, &member, Method::GET, "/v1/products?q=rye%00", None).await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some("q")), "{problem}");
}

/// In a PATCH a field left out keeps its value; `null` would say "no
/// value", which no product field may have: 422 naming each such field.
#[tokio::test]
async fn null_is_refused_for_every_product_field() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    let (_, created) = call(&app, &member, Method::POST, "/v1/products", Some(flour())).await;
    let path = format!("/v1/products/{}", created["id"].as_str().unwrap());
    for field in ["sku", "name", "unit", "custom_fields"] {
        let (status, problem) = call(&app, &member, Method::PATCH, &path, Some(json!({field: null}))).await;
        assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some(field)), "{problem}");
    }
    let all_null = json!({"sku": null, "name": null, "unit": null, "custom_fields": null});
    let (status, problem) = call(&app, &member, Method::PATCH, &path, Some(all_null)).await;
    assert_eq!((status, problem["errors"].as_array().map(Vec::len)), (422, Some(4)), "{problem}");
    let (_, unchanged) = call(&app, &member, Method::GET, &path, None).await;
    assert_eq!(unchanged, created, "nothing changed");

    let mut body = flour();
    body["sku"] = json!("FL-01");
    body["custom_fields"] = Value::Null;
    let (status, problem) = call(&app, &member, Method::POST, "/v1/products", Some(body)).await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some("custom_fields")), "{problem}");
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_are_problems() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    let (status, problem) = call(&app, &member, Method::GET, "/v1/nothing-here", None).await;
    assert_eq!((status, problem["code"].as_str()), (404, Some("not_found")));
    let (status, problem) = call(&app, &member, Method::PUT, "/v1/products", None).await;
    assert_eq!((status, problem["code"].as_str()), (405, Some("method_not_allowed")));
    for (method, path, allow) in [
        (Method::TRACE, "/v1/products", "GET, POST"),
        (Method::PUT, "/v1/products/00000000-0000-0000-0000-000000000000", "GET, PATCH, DELETE"),
        (Method::POST, "/healthz", "GET"),
    ] {
        let response = app.http.request(method.clone(), app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
    }
}
