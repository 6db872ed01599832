// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

//! `GET /openapi.json`: a valid OpenAPI 3.1 document that lists exactly
//! the routes the api serves, with the bearer scheme on `/v1` and problem
//! bodies on errors, and whose schemas fit what the api really sends.

mod common;
#[path = "openapi/schema.rs"]
mod schema;

use common::{Method, Value, call, json, spawn_app, token};
use schema::{fits, operations, references, resolve, target};
use std::collections::BTreeSet;
use stockflow_testkit::TestApp;

async fn document(app: &TestApp) -> Value {
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), 200, "served without a token");
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/json"), "{content_type}");
    response.json().await.expect("a JSON document")
}

/// Any `{name}` of a path template, filled with a UUID no record has.
fn concrete(path: &str) -> String {
    let mut filled = String::new();
    let mut rest = path;
    while let Some((before, after)) = rest.split_once('{') {
        let (_, tail) = after.split_once('}').expect("a closed {param}");
        filled.push_str(before);
        filled.push_str(&uuid::Uuid::new_v4().to_string());
        rest = tail;
    }
    filled + rest
}

#[tokio::test]
async fn the_document_is_valid_openapi_3_1() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let spec = oas3::from_json(doc.to_string()).expect("deserializes as OpenAPI 3.1");
    spec.validate_version().expect("an OpenAPI 3.1.x version");

    let mut refs = Vec::new();
    references(&doc, &mut refs);
    assert!(refs.len() > 20, "schemas and responses are shared by reference");
    for reference in &refs {
        assert!(target(&doc, reference).is_some(), "{reference} does not resolve");
    }

    let tags: BTreeSet<&str> = doc["tags"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    let mut ids = BTreeSet::new();
    for (method, path, operation) in operations(&doc) {
        let at = format!("{method} {path}");
        assert!(spec.operation(&method.parse().unwrap(), &path).is_some(), "{at}: oas3 sees it");
        let id = operation["operationId"].as_str().unwrap_or_else(|| panic!("{at}: no operationId"));
        assert!(ids.insert(id.to_owned()), "{at}: operationId {id} is used twice");
        let operation_tags = operation["tags"].as_array().unwrap_or_else(|| panic!("{at}: no tag"));
        assert!(operation_tags.iter().all(|t| tags.contains(t.as_str().unwrap())), "{at}: undeclared tag");

        let statuses: Vec<&String> = operation["responses"].as_object().unwrap().keys().collect();
        assert!(statuses.iter().any(|s| s.starts_with('2') || s.starts_with('3')), "{at}: no success response");
        for status in statuses {
            assert!(
                status.len() == 3 && status.parse::<u16>().is_ok_and(|s| (100..600).contains(&s)),
                "{at}: {status}"
            );
            let response = resolve(&doc, &operation["responses"][status]);
            assert!(response["description"].is_string(), "{at} {status}: a response needs a description");
        }

        let templated: BTreeSet<&str> = path.split('{').skip(1).map(|part| part.split_once('}').unwrap().0).collect();
        let mut declared = BTreeSet::new();
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            let parameter = resolve(&doc, parameter);
            let place = parameter["in"].as_str().unwrap();
            assert!(["path", "query", "header"].contains(&place), "{at}: parameter in {place}");
            if place == "path" {
                assert_eq!(parameter["required"], true, "{at}: path parameters are required");
                declared.insert(parameter["name"].as_str().unwrap());
            }
        }
        assert_eq!(declared, templated, "{at}: path parameters");
    }
}

/// The routes come from the table the app is mounted from, and clippy
/// forbids registering routes anywhere else (services/api/clippy.toml), so
/// a route added without `#[utoipa::path]` fails here.
#[tokio::test]
async fn every_served_route_is_documented_and_every_documented_one_is_served() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let served: BTreeSet<(String, String)> = stockflow_api::served_routes()
        .into_iter()
        .map(|(method, path)| (method.to_string(), path.to_owned()))
        .collect();
    let documented: BTreeSet<(String, String)> =
        operations(&doc).into_iter().map(|(method, path, _)| (method, path)).collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(undocumented.is_empty(), "served but not in /openapi.json: {undocumented:?}");
    assert!(unserved.is_empty(), "in /openapi.json but not served: {unserved:?}");
    assert!(served.len() >= 23, "{served:?}");
}

/// The running app, not only the table: every documented operation is
/// mounted (a `/v1` one answers 401 without a token, where an unknown path
/// would answer 404), and every other method on a documented path is 405.
#[tokio::test]
async fn the_running_app_answers_exactly_the_documented_methods() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    for (method, path, operation) in operations(&doc) {
        let url = app.url(&concrete(&path));
        let response = app.http.request(method.parse().unwrap(), &url).send().await.unwrap();
        let status = response.status().as_u16();
        if path.starts_with("/v1/") {
            assert_eq!(status, 401, "{method} {path} without a token");
            assert!(response.headers().contains_key("www-authenticate"), "{method} {path}");
        } else {
            let documented = operation["responses"].as_object().unwrap();
            assert!(documented.contains_key(&status.to_string()), "{method} {path} answered {status}");
        }
    }
    for (path, item) in doc["paths"].as_object().unwrap() {
        let served: BTreeSet<String> =
            schema::METHODS.iter().filter(|m| item.get(**m).is_some()).map(|m| m.to_uppercase()).collect();
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "TRACE", "OPTIONS"] {
            if served.contains(method) {
                continue;
            }
            let at = format!("{method} {path}");
            let (status, problem) = call(&app, "sf_none", method.parse().unwrap(), &concrete(path), None).await;
            assert_eq!((status, problem["code"].as_str()), (405, Some("method_not_allowed")), "{at}");
            let response = app.http.request(method.parse().unwrap(), app.url(&concrete(path))).send().await.unwrap();
            let allow = response.headers().get("allow").unwrap_or_else(|| panic!("{at}: 405 without Allow"));
            let allowed: BTreeSet<String> = allow.to_str().unwrap().split(',').map(|m| m.trim().to_owned()).collect();
            assert_eq!(allowed, served, "{at}: Allow lists exactly the documented methods");
        }
    }
}

#[tokio::test]
async fn v1_operations_need_the_bearer_token_and_nothing_else_does() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert_eq!(schemes.len(), 1, "{schemes:?}");
    assert_eq!(
        (schemes["bearer"]["type"].as_str(), schemes["bearer"]["scheme"].as_str()),
        (Some("http"), Some("bearer"))
    );
    assert!(doc.get("security").is_none(), "security is per operation, not global");
    for (method, path, operation) in operations(&doc) {
        if path.starts_with("/v1/") {
            assert_eq!(operation["security"], json!([{"bearer": []}]), "{method} {path}");
            assert_eq!(operation["responses"]["401"]["$ref"], "#/components/responses/Unauthorized", "{method} {path}");
        } else {
            assert!(operation.get("security").is_none(), "{method} {path} needs no token");
        }
    }
}

/// Responses that are errors but, by HTTP or by design, not problems.
const NOT_PROBLEMS: [(&str, &str, &str); 3] = [
    ("GET", "/readyz", "503"),
    ("GET", "/v1/attachments/{id}/content", "416"),
    ("GET", "/v1/exports/{id}/content", "416"),
];

#[tokio::test]
async fn every_error_is_a_problem_and_the_problem_lists_every_code() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let problem = &doc["components"]["schemas"]["Problem"];
    let required: BTreeSet<&str> =
        problem["required"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert_eq!(required, BTreeSet::from(["type", "title", "status", "detail", "code"]));
    let codes: Vec<&str> =
        problem["properties"]["code"]["enum"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    for code in ["unauthorized", "not_found", "method_not_allowed", "validation_failed", "storage_unavailable"] {
        assert!(codes.contains(&code), "{code} in {codes:?}");
    }
    assert_eq!(resolve(&doc, &problem["properties"]["errors"]["items"]), &doc["components"]["schemas"]["FieldError"]);
    assert_eq!(codes_in_the_errors_table(), codes.iter().copied().collect::<BTreeSet<_>>(), "docs/architecture.md");

    for (method, path, operation) in operations(&doc) {
        for (status, response) in operation["responses"].as_object().unwrap() {
            if !status.starts_with('4') && !status.starts_with('5') {
                continue;
            }
            if NOT_PROBLEMS.contains(&(method.as_str(), path.as_str(), status.as_str())) {
                continue;
            }
            let at = format!("{method} {path} {status}");
            let content = resolve(&doc, response)["content"].as_object().unwrap();
            assert_eq!(content.keys().collect::<Vec<_>>(), ["application/problem+json"], "{at}");
            let body = &content["application/problem+json"];
            assert_eq!(body["schema"]["$ref"], "#/components/schemas/Problem", "{at}");
            let example = &body["example"];
            fits(&doc, &body["schema"], example, &at).unwrap();
            assert_eq!(example["status"].to_string(), *status, "{at}: the example's status");
        }
    }
}

/// Real answers checked against the document: the status must be listed
/// for the operation, and the body must fit the schema listed for it.
struct Conformance<'a> {
    app: &'a TestApp,
    doc: &'a Value,
    seen: BTreeSet<(String, String, u16)>,
}

impl Conformance<'_> {
    async fn check(&mut self, token: &str, method: Method, template: &str, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = call(self.app, token, method.clone(), path, body).await;
        self.fits(method.as_str(), template, status, &answer);
        answer
    }

    fn fits(&mut self, method: &str, template: &str, status: u16, answer: &Value) {
        let at = format!("{method} {template} {status}");
        let operation = &self.doc["paths"][template][method.to_lowercase()];
        let response = resolve(self.doc, &operation["responses"][status.to_string()]);
        assert!(response.is_object(), "{at} is not documented: {answer}");
        match (response.get("content").and_then(Value::as_object), answer) {
            (None, Value::Null) => {}
            (Some(content), answer) => {
                let media = content.values().next().unwrap();
                fits(self.doc, &media["schema"], answer, &at).unwrap_or_else(|error| panic!("{error}"));
            }
            (None, answer) => panic!("{at}: documented without a body, answered {answer}"),
        }
        self.seen.insert((method.to_owned(), template.to_owned(), status));
    }
}

#[tokio::test]
async fn real_answers_fit_the_documented_schemas() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let (admin, viewer) = (token(&app, "acme", "admin"), token(&app, "acme", "viewer"));
    let mut check = Conformance { app: &app, doc: &doc, seen: BTreeSet::new() };

    for path in ["/healthz", "/readyz"] {
        let response = app.get(path).await;
        let status = response.status().as_u16();
        check.fits("GET", path, status, &response.json().await.unwrap());
    }
    check.check(&viewer, Method::GET, "/v1/me", "/v1/me", None).await;

    let flour = json!({"sku": "FL-00", "name": "Rye flour", "unit": "kg", "custom_fields": {"mill": "North"}});
    let product = check.check(&admin, Method::POST, "/v1/products", "/v1/products", Some(flour.clone())).await;
    let product_path = format!("/v1/products/{}", product["id"].as_str().unwrap());
    check.check(&admin, Method::POST, "/v1/products", "/v1/products", Some(flour)).await;
    check.check(&admin, Method::POST, "/v1/products", "/v1/products", Some(json!({"sku": "-", "name": ""}))).await;
    let rye = json!({"sku": "RY-01", "name": "Rye", "unit": "kg"});
    check.check(&viewer, Method::POST, "/v1/products", "/v1/products", Some(rye)).await;
    check.check(&viewer, Method::GET, "/v1/products", "/v1/products?limit=1", None).await;
    check.check(&viewer, Method::GET, "/v1/products", "/v1/products?limit=0", None).await;
    check.check(&viewer, Method::GET, "/v1/products/{id}", &product_path, None).await;
    check.check(&viewer, Method::GET, "/v1/products/{id}", "/v1/products/not-a-uuid", None).await;
    check.check(&admin, Method::PATCH, "/v1/products/{id}", &product_path, Some(json!({"unit": "t"}))).await;

    let batch =
        json!({"product_id": product["id"], "code": "B-1", "quantity": 12.5, "produced_at": "2026-11-23T08:00:00Z"});
    let batch = check.check(&admin, Method::POST, "/v1/batches", "/v1/batches", Some(batch)).await;
    let batch_path = format!("/v1/batches/{}", batch["id"].as_str().unwrap());
    check.check(&viewer, Method::GET, "/v1/batches", "/v1/batches?status=planned", None).await;
    check.check(&viewer, Method::GET, "/v1/batches/{id}", &batch_path, None).await;
    check.check(&admin, Method::PATCH, "/v1/batches/{id}", &batch_path, Some(json!({"status": "completed"}))).await;
    check.check(&admin, Method::DELETE, "/v1/products/{id}", &product_path, None).await;

    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(b"%PDF-1.7\n%test\n".to_vec()).file_name("scan.pdf"));
    let uploads = format!("{batch_path}/attachments");
    let response = app.http.post(app.url(&uploads)).bearer_auth(&admin).multipart(form).send().await.unwrap();
    let status = response.status().as_u16();
    let attachment: Value = response.json().await.unwrap();
    check.fits("POST", "/v1/batches/{id}/attachments", status, &attachment);
    let attachment_path = format!("/v1/attachments/{}", attachment["id"].as_str().unwrap());
    check.check(&viewer, Method::GET, "/v1/batches/{id}/attachments", &uploads, None).await;
    check.check(&viewer, Method::GET, "/v1/attachments/{id}", &attachment_path, None).await;
    check.check(&admin, Method::DELETE, "/v1/batches/{id}", &batch_path, None).await;
    check.check(&viewer, Method::DELETE, "/v1/attachments/{id}", &attachment_path, None).await;
    check.check(&admin, Method::DELETE, "/v1/attachments/{id}", &attachment_path, None).await;

    let issued = json!({"name": "ci", "role": "member", "expires_in": "30d"});
    let issued = check.check(&admin, Method::POST, "/v1/tokens", "/v1/tokens", Some(issued)).await;
    check.check(&admin, Method::GET, "/v1/tokens", "/v1/tokens", None).await;
    let revoke = format!("/v1/tokens/{}", issued["id"].as_str().unwrap());
    check.check(&admin, Method::DELETE, "/v1/tokens/{id}", &revoke, None).await;
    check.check(&viewer, Method::GET, "/v1/tokens", "/v1/tokens", None).await;

    let schedule = json!({"name": "nightly", "cron": "0 2 * * *", "timezone": "Europe/Berlin",
        "export": {"kind": "batches", "format": "csv", "filters": {"status": "completed"}}});
    let schedule = check.check(&admin, Method::POST, "/v1/schedules", "/v1/schedules", Some(schedule)).await;
    let at = format!("/v1/schedules/{}", schedule["id"].as_str().unwrap());
    check.check(&admin, Method::GET, "/v1/schedules", "/v1/schedules", None).await;
    check.check(&admin, Method::GET, "/v1/schedules/{id}", &at, None).await;
    let bad_cron = check.check(&admin, Method::PATCH, "/v1/schedules/{id}", &at, Some(json!({"cron": "x"}))).await;
    assert_eq!(bad_cron["errors"][0]["code"], "invalid_cron", "{bad_cron}");
    check.check(&admin, Method::PATCH, "/v1/schedules/{id}", &at, Some(json!({"jitter_secs": 5}))).await;
    let pause = format!("{at}/pause");
    check.check(&admin, Method::POST, "/v1/schedules/{id}/pause", &pause, Some(json!({"note": "stock count"}))).await;
    check.check(&admin, Method::POST, "/v1/schedules/{id}/resume", &format!("{at}/resume"), None).await;
    check.check(&admin, Method::POST, "/v1/schedules/{id}/run", &format!("{at}/run"), None).await;
    check.check(&admin, Method::GET, "/v1/schedules/{id}/runs", &format!("{at}/runs"), None).await;
    check.check(&admin, Method::DELETE, "/v1/schedules/{id}", &at, None).await;
    common::wait_for_outbox(&app).await;

    // `/readyz` may be 200 or 503 while the broker namespace comes up.
    let seen: BTreeSet<u16> =
        check.seen.iter().filter(|(_, path, _)| path != "/readyz").map(|(_, _, status)| *status).collect();
    assert_eq!(seen, BTreeSet::from([200, 201, 202, 204, 403, 404, 409, 422]), "{:?}", check.seen);
}

/// Each download is documented with the types it really serves: what an
/// upload can be sniffed as, and each export format's type.
#[tokio::test]
async fn downloads_document_the_types_they_serve() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let exports = ["application/jsonl; charset=utf-8", "text/csv; charset=utf-8"];
    for (path, expected) in [
        ("/v1/attachments/{id}/content", stockflow_domain::SNIFFABLE.to_vec()),
        ("/v1/exports/{id}/content", exports.to_vec()),
    ] {
        for status in ["200", "206"] {
            let content = doc["paths"][path]["get"]["responses"][status]["content"].as_object().unwrap();
            let documented: BTreeSet<&str> = content.keys().map(String::as_str).collect();
            assert_eq!(documented, expected.iter().copied().collect(), "{path} {status}");
        }
    }
}

/// The codes the errors table of docs/architecture.md lists, so that page
/// cannot drift from what the api answers.
fn codes_in_the_errors_table() -> BTreeSet<&'static str> {
    let page = include_str!("../../../docs/architecture.md");
    let table = page.split("## Errors").nth(1).expect("an Errors section").split("\n## ").next().unwrap_or_default();
    table
        .lines()
        .filter_map(|line| {
            let mut cells = line.strip_prefix("| `")?.split(" | ");
            let code = cells.next()?.strip_suffix('`')?;
            cells.next()?.parse::<u16>().ok().map(|_| code)
        })
        .collect()
}
