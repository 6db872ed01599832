// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

//! `/graphql` against REST: the same records, values, cursors and scoping,
//! and limits refused with stable codes.

mod common;

use common::{Method, Value, call, json, spawn_app, token};
use stockflow_testkit::TestApp;

const BATCH_FIELDS: &str = "id productId code quantity producedAt status notes metadata createdAt updatedAt \
                            product { id sku name unit customFields createdAt updatedAt }";

/// POSTs `query` with `variables`; returns the HTTP status and the body.
async fn graphql(app: &TestApp, token: &str, query: &str, variables: Value) -> (u16, Value) {
    let (status, text) = graphql_text(app, token, query, variables).await;
    (status, serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}: {text}")))
}

/// The same, the body as the api wrote it, its keys in their order.
async fn graphql_text(app: &TestApp, token: &str, query: &str, variables: Value) -> (u16, String) {
    let response = app
        .http
        .post(app.url("/graphql"))
        .bearer_auth(token)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The one error of a refused operation, and its `extensions.code`.
fn refusal(body: &Value) -> (&str, &str) {
    let errors = body["errors"].as_array().unwrap_or_else(|| panic!("errors expected: {body}"));
    assert_eq!(errors.len(), 1, "{body}");
    (
        errors[0]["extensions"]["code"].as_str().unwrap_or_else(|| panic!("a code: {body}")),
        errors[0]["message"].as_str().unwrap(),
    )
}

/// REST's snake_case body, with GraphQL's field names.
fn camel(rest: &Value) -> Value {
    let object = rest.as_object().unwrap();
    Value::Object(
        object
            .iter()
            .map(|(key, value)| {
                let mut name = String::new();
                let mut upper = false;
                for c in key.chars() {
                    if c == '_' {
                        upper = true;
                    } else if upper {
                        name.extend(c.to_uppercase());
                        upper = false;
                    } else {
                        name.push(c);
                    }
                }
                (name, value.clone())
            })
            .collect(),
    )
}

async fn seed(app: &TestApp, member: &str, sku: &str, batches: usize) -> Value {
    let (status, product) = call(
        app,
        member,
        Method::POST,
        "/v1/products",
        Some(json!({"sku": sku, "name": "Rye flour", "unit": "kg", "custom_fields": {"origin": "north", "grade": 2}})),
    )
    .await;
    assert_eq!(status, 201);
    for n in 0..batches {
        let body = json!({
            "product_id": product["id"],
            "code": format!("{sku}-B{n}"),
            "quantity": "12.500",
            "produced_at": format!("2026-11-2{n}T08:00:00.123456Z"),
            "notes": "first \"run\"\nsecond line",
            "metadata": {"line": n, "ok": true},
        });
        assert_eq!(call(app, member, Method::POST, "/v1/batches", Some(body)).await.0, 201);
    }
    product
}

#[tokio::test]
async fn graphql_answers_what_rest_answers_field_for_field() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    let product = seed(&app, &member, "FL-1", 3).await;

    let (_, rest_first) = call(&app, &member, Method::GET, "/v1/batches?limit=2", None).await;
    let query = format!(
        "query Page($after: String) {{ batches(first: 2, after: $after) {{ edges {{ cursor node {{ {BATCH_FIELDS} }} }} \
         pageInfo {{ hasNextPage hasPreviousPage endCursor }} }} }}"
    );
    let (status, first) = graphql(&app, &member, &query, json!({})).await;
    assert_eq!(status, 200);
    assert!(first.get("errors").is_none(), "{first}");
    let connection = &first["data"]["batches"];
    let edges = connection["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 2);
    for (edge, rest) in edges.iter().zip(rest_first["items"].as_array().unwrap()) {
        let mut node = edge["node"].clone();
        let nested = node.as_object_mut().unwrap().remove("product").unwrap();
        assert_eq!(node, camel(rest), "the batch as REST has it");
        assert_eq!(nested, camel(&product), "its product as REST has it");
    }
    assert_eq!(connection["pageInfo"]["hasNextPage"], true);
    assert_eq!(connection["pageInfo"]["hasPreviousPage"], false);
    assert_eq!(connection["pageInfo"]["endCursor"], rest_first["next_cursor"], "REST's cursor, as is");
    assert_eq!(edges[1]["cursor"], rest_first["next_cursor"]);

    let (_, rest_second) = call(
        &app,
        &member,
        Method::GET,
        &format!("/v1/batches?limit=2&cursor={}", rest_first["next_cursor"].as_str().unwrap()),
        None,
    )
    .await;
    let (_, second) = graphql(&app, &member, &query, json!({"after": connection["pageInfo"]["endCursor"]})).await;
    let edges = second["data"]["batches"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1);
    assert_eq!(edges[0]["node"]["id"], rest_second["items"][0]["id"]);
    assert_eq!(second["data"]["batches"]["pageInfo"]["hasNextPage"], false);
    assert_eq!(second["data"]["batches"]["pageInfo"]["hasPreviousPage"], true);

    let (_, rest_products) = call(&app, &member, Method::GET, "/v1/products?sku_prefix=FL", None).await;
    let (_, products) = graphql(
        &app,
        &member,
        "{ products(skuPrefix: \"FL\") { edges { node { id sku name unit customFields createdAt updatedAt } } } }",
        json!({}),
    )
    .await;
    assert_eq!(products["data"]["products"]["edges"][0]["node"], camel(&rest_products["items"][0]));

    let (_, me) = call(&app, &member, Method::GET, "/v1/me", None).await;
    let (_, ours) = graphql(
        &app,
        &member,
        "{ me { organization { id slug name } user { id email role } token { id name expiresAt } } }",
        json!({}),
    )
    .await;
    assert_eq!(ours["data"]["me"]["organization"], me["organization"]);
    assert_eq!(ours["data"]["me"]["user"], me["user"]);
    assert_eq!(ours["data"]["me"]["token"], camel(&me["token"]));

    // GET serves queries too, with REST's URL conventions.
    let response = app
        .http
        .get(app.url("/graphql"))
        .query(&[("query", "query One($id: ID!) { product(id: $id) { sku } }"), ("operationName", "One")])
        .query(&[("variables", json!({"id": product["id"]}).to_string())])
        .bearer_auth(&member)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["data"]["product"]["sku"], "FL-1");

    let metrics = app.get("/metrics").await.text().await.unwrap();
    for line in [
        r#"stockflow_graphql_operations_total{operation="Page",outcome="ok"} 2"#,
        r#"stockflow_graphql_operations_total{operation="One",outcome="ok"} 1"#,
        r#"stockflow_graphql_operations_total{operation="anonymous",outcome="ok"} 2"#,
        r#"stockflow_graphql_operation_duration_seconds_count{operation="Page",outcome="ok"} 2"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in /metrics");
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn another_organizations_records_are_as_missing_as_records_that_never_were() {
    let app = spawn_app().await;
    let theirs = token(&app, "globex", "member");
    let ours = token(&app, "acme", "viewer");
    let product = seed(&app, &theirs, "SECRET", 1).await;
    let (_, batches) = call(&app, &theirs, Method::GET, "/v1/batches", None).await;
    let batch = batches["items"][0]["id"].clone();

    let query = "query Both($product: ID!, $batch: ID!) { product(id: $product) { sku } batch(id: $batch) { code } \
                 products { edges { node { id } } } batches(productId: $product) { edges { node { id } } } }";
    let (_, other) = graphql(&app, &ours, query, json!({"product": product["id"], "batch": batch})).await;
    let missing = json!({"product": uuid_never_made(), "batch": uuid_never_made()});
    let (_, never) = graphql(&app, &ours, query, missing).await;
    for body in [&other, &never] {
        assert!(body.get("errors").is_none(), "{body}");
        assert_eq!(body["data"]["product"], Value::Null);
        assert_eq!(body["data"]["batch"], Value::Null);
        assert_eq!(body["data"]["products"]["edges"], json!([]));
        assert_eq!(body["data"]["batches"]["edges"], json!([]));
    }
    let (_, not_an_id) =
        graphql(&app, &ours, "{ product(id: \"1\") { sku } batch(id: \"x\") { code } }", json!({})).await;
    assert_eq!(not_an_id, json!({"data": {"product": null, "batch": null}}));
    // As a filter, it is refused as REST refuses it, under GraphQL's name.
    let (_, filter) = graphql(&app, &ours, "{ batches(productId: \"1\") { edges { node { id } } } }", json!({})).await;
    assert_eq!(refusal(&filter).0, "validation_failed");
    assert_eq!(
        filter["errors"][0]["extensions"]["fields"],
        json!([{"field": "productId", "message": "a product id (UUID)"}])
    );

    // And the owner sees them.
    let (_, own) = graphql(&app, &theirs, query, json!({"product": product["id"], "batch": batch})).await;
    assert_eq!(own["data"]["product"]["sku"], "SECRET");
    assert_eq!(own["data"]["batch"]["code"], "SECRET-B0");
    app.stop().await.unwrap();
}

/// The statements the api has sent to PostgreSQL so far, from /metrics.
async fn queries(app: &TestApp) -> u64 {
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let line = metrics.lines().find_map(|l| l.strip_prefix("stockflow_database_queries_total ")).expect("the counter");
    line.parse().unwrap()
}

/// A page of 50 batches with their products is one statement, the page
/// joined to its products; not one more per batch.
#[tokio::test]
async fn a_page_with_its_products_is_one_statement() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    let mut products = Vec::new();
    for n in 0..5 {
        products.push(seed(&app, &member, &format!("P-{n}"), 0).await);
    }
    for n in 0..50 {
        let body = json!({
            "product_id": products[n % 5]["id"],
            "code": format!("B-{n}"),
            "quantity": 1,
            "produced_at": "2026-11-20T08:00:00Z",
        });
        assert_eq!(call(&app, &member, Method::POST, "/v1/batches", Some(body)).await.0, 201);
    }
    // Settles what the writes left behind (the token's last use).
    graphql(&app, &member, "{ me { user { id } } }", json!({})).await;

    let before = queries(&app).await;
    let (_, page) =
        graphql(&app, &member, "{ batches(first: 50) { edges { node { code product { sku } } } } }", json!({})).await;
    let spent = queries(&app).await - before;
    let edges = page["data"]["batches"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 50, "{page}");
    let skus: std::collections::HashSet<_> =
        edges.iter().map(|e| e["node"]["product"]["sku"].as_str().unwrap()).collect();
    assert_eq!(skus.len(), 5);
    // The token lookup and the page joined to its products; the relay and
    // the token's last-use write may add one or two of their own. One query
    // per batch would be over fifty, one more for the products three.
    assert!((2..=4).contains(&spent), "{spent} statements for the page");
    app.stop().await.unwrap();
}

fn uuid_never_made() -> String {
    "00000000-0000-4000-8000-000000000000".to_owned()
}

#[tokio::test]
async fn costly_or_malformed_operations_are_refused_with_stable_codes() {
    let app = spawn_app().await;
    let viewer = token(&app, "acme", "viewer");

    let (status, body) = graphql(&app, &viewer, "{ batches(first: 201) { edges { node { id } } } }", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(refusal(&body).0, "page_too_large");
    let (_, body) = graphql(&app, &viewer, "{ batches(first: 0) { edges { node { id } } } }", json!({})).await;
    assert_eq!(refusal(&body).0, "validation_failed");
    let (_, body) = graphql(&app, &viewer, "{ batches(after: \"nope\") { edges { node { id } } } }", json!({})).await;
    assert_eq!(refusal(&body).0, "bad_request");
    let (_, body) = graphql(&app, &viewer, "{ batches(status: \"lost\") { edges { node { id } } } }", json!({})).await;
    let (code, _) = refusal(&body);
    assert_eq!(code, "validation_failed");
    assert_eq!(body["errors"][0]["extensions"]["fields"][0]["field"], "status", "{body}");

    // Four full pages of batches with their products: past the budget.
    let page = "batches(first: 200) { edges { node { id code product { sku name } } } }";
    let costly = format!("{{ a: {page} b: {page} c: {page} d: {page} }}");
    let (_, body) = graphql(&app, &viewer, &costly, json!({})).await;
    assert_eq!(refusal(&body).0, "query_too_complex");
    assert!(body["data"].is_null(), "nothing was run: {body}");
    let affordable = format!("{{ a: {page} b: {page} }}");
    let (_, body) = graphql(&app, &viewer, &affordable, json!({})).await;
    assert!(body.get("errors").is_none(), "two pages are within the budget: {body}");

    let deep = "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } } }";
    let (_, body) = graphql(&app, &viewer, deep, json!({})).await;
    assert_eq!(refusal(&body).0, "query_too_deep");
    let (_, body) = graphql(&app, &viewer, "{ batches { ", json!({})).await;
    assert_eq!(refusal(&body).0, "graphql_parse_failed");
    let (_, body) = graphql(&app, &viewer, "{ batches { secret } }", json!({})).await;
    assert_eq!(refusal(&body).0, "graphql_validation_failed");

    // A query past REST's body limit is a 413 problem, as REST's are.
    let huge = format!("{{ me {{ user {{ id }} }} }} #{}", "x".repeat(64 * 1024));
    let (status, body) = graphql(&app, &viewer, &huge, json!({})).await;
    assert_eq!(status, 413);
    assert_eq!(body["code"], "payload_too_large");

    // No token: REST's 401 problem, before anything is parsed.
    let response =
        app.http.post(app.url("/graphql")).json(&json!({"query": "{ me { user { id } } }"})).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.json::<Value>().await.unwrap()["code"], "unauthorized");

    // A GET never changes anything: a mutation is refused before it runs.
    let response = app
        .http
        .get(app.url("/graphql"))
        .query(&[("query", "mutation { anything }")])
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    app.stop().await.unwrap();
}

const PRODUCT_PAYLOAD: &str = "product { id sku name unit customFields } userErrors { field code message }";
const BATCH_PAYLOAD: &str = "batch { id code quantity producedAt status notes metadata product { sku } } \
                             userErrors { field code message }";

/// `userErrors` as (field, code) pairs.
fn user_errors(payload: &Value) -> Vec<(Value, String)> {
    payload["userErrors"]
        .as_array()
        .unwrap_or_else(|| panic!("userErrors expected: {payload}"))
        .iter()
        .map(|e| (e["field"].clone(), e["code"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn mutations_apply_rests_rules_and_answer_what_the_client_can_fix_as_user_errors() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    let viewer = token(&app, "acme", "viewer");
    let theirs = token(&app, "globex", "member");
    let foreign = seed(&app, &theirs, "THEIRS", 1).await;

    let create_product =
        format!("mutation($input: CreateProductInput!) {{ createProduct(input: $input) {{ {PRODUCT_PAYLOAD} }} }}");
    let input = json!({"input": {"sku": "FL-9", "name": "Rye", "unit": "kg", "customFields": {"grade": 1}}});
    let (_, created) = graphql(&app, &member, &create_product, input.clone()).await;
    let product = created["data"]["createProduct"]["product"].clone();
    assert_eq!(user_errors(&created["data"]["createProduct"]), vec![]);
    let (status, rest) =
        call(&app, &member, Method::GET, &format!("/v1/products/{}", product["id"].as_str().unwrap()), None).await;
    assert_eq!(status, 200);
    assert_eq!(rest["custom_fields"], json!({"grade": 1}));

    let (_, again) = graphql(&app, &member, &create_product, input).await;
    assert_eq!(again["data"]["createProduct"]["product"], Value::Null);
    assert_eq!(user_errors(&again["data"]["createProduct"]), vec![(json!("sku"), "conflict".to_owned())]);
    let bad = json!({"input": {"sku": "bad sku!", "name": "Rye", "unit": "kg", "customFields": [1]}});
    let (_, refused) = graphql(&app, &member, &create_product, bad).await;
    assert!(refused.get("errors").is_none(), "validation is not a top-level error: {refused}");
    assert_eq!(
        user_errors(&refused["data"]["createProduct"]),
        vec![(json!("sku"), "validation_failed".to_owned()), (json!("customFields"), "validation_failed".to_owned())]
    );

    let create_batch =
        format!("mutation($input: CreateBatchInput!) {{ createBatch(input: $input) {{ {BATCH_PAYLOAD} }} }}");
    let batch_input = |product: &Value| json!({"input": {"productId": product, "code": "B-1", "quantity": "12.50", "producedAt": "2026-11-20T09:00:00+01:00"}});
    let (_, foreign_ref) = graphql(&app, &member, &create_batch, batch_input(&foreign["id"])).await;
    assert_eq!(
        user_errors(&foreign_ref["data"]["createBatch"]),
        vec![(json!("productId"), "missing_reference".to_owned())]
    );
    // Told with GraphQL's name for the field, as `field` gives it.
    assert_eq!(
        foreign_ref["data"]["createBatch"]["userErrors"][0]["message"],
        "productId refers to no record of this organization"
    );
    let (_, made) = graphql(&app, &member, &create_batch, batch_input(&product["id"])).await;
    let batch = made["data"]["createBatch"]["batch"].clone();
    assert_eq!(user_errors(&made["data"]["createBatch"]), vec![], "{made}");
    assert_eq!(batch["quantity"], "12.5", "normalized as REST normalizes it");
    assert_eq!(batch["producedAt"], "2026-11-20T08:00:00Z");
    assert_eq!(batch["status"], "planned");
    assert_eq!(batch["metadata"], json!({}));
    assert_eq!(batch["product"]["sku"], "FL-9");

    let update_batch =
        format!("mutation($input: UpdateBatchInput!) {{ updateBatch(input: $input) {{ {BATCH_PAYLOAD} }} }}");
    let (_, updated) = graphql(
        &app,
        &member,
        &update_batch,
        json!({"input": {"id": batch["id"], "status": "completed", "notes": null}}),
    )
    .await;
    assert_eq!(updated["data"]["updateBatch"]["batch"]["status"], "completed");
    assert_eq!(updated["data"]["updateBatch"]["batch"]["code"], "B-1", "left out, kept");
    let (_, nulled) = graphql(&app, &member, &update_batch, json!({"input": {"id": batch["id"], "code": null}})).await;
    assert_eq!(user_errors(&nulled["data"]["updateBatch"]), vec![(json!("code"), "validation_failed".to_owned())]);

    let update_product =
        format!("mutation($input: UpdateProductInput!) {{ updateProduct(input: $input) {{ {PRODUCT_PAYLOAD} }} }}");
    let (_, takeover) =
        graphql(&app, &member, &update_product, json!({"input": {"id": foreign["id"], "name": "mine"}})).await;
    assert_eq!(user_errors(&takeover["data"]["updateProduct"]), vec![(json!("id"), "not_found".to_owned())]);
    let (_, rest_foreign) =
        call(&app, &theirs, Method::GET, &format!("/v1/products/{}", foreign["id"].as_str().unwrap()), None).await;
    assert_eq!(rest_foreign["name"], "Rye flour", "unchanged");

    let delete_product =
        "mutation($id: ID!) { deleteProduct(input: {id: $id}) { deletedId userErrors { field code message } } }";
    let delete_batch =
        "mutation($id: ID!) { deleteBatch(input: {id: $id}) { deletedId userErrors { field code message } } }";
    let (_, in_use) = graphql(&app, &member, delete_product, json!({"id": product["id"]})).await;
    assert_eq!(user_errors(&in_use["data"]["deleteProduct"]), vec![(Value::Null, "in_use".to_owned())]);
    let (_, gone) = graphql(&app, &member, delete_batch, json!({"id": batch["id"]})).await;
    assert_eq!(gone["data"]["deleteBatch"]["deletedId"], batch["id"]);
    let (_, gone) = graphql(&app, &member, delete_product, json!({"id": product["id"]})).await;
    assert_eq!(gone["data"]["deleteProduct"]["deletedId"], product["id"]);
    let (_, twice) = graphql(&app, &member, delete_product, json!({"id": product["id"]})).await;
    assert_eq!(user_errors(&twice["data"]["deleteProduct"]), vec![(json!("id"), "not_found".to_owned())]);

    // A viewer reads only: a top-level `forbidden`, and nothing written.
    let viewer_input = json!({"input": {"sku": "V-1", "name": "Rye", "unit": "kg"}});
    let (_, forbidden) = graphql(&app, &viewer, &create_product, viewer_input).await;
    assert_eq!(refusal(&forbidden).0, "forbidden");
    let (_, listed) = call(&app, &member, Method::GET, "/v1/products?sku_prefix=V-", None).await;
    assert_eq!(listed["items"], json!([]));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn request_export_is_rests_post_with_its_idempotency_key_in_the_input() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    let theirs = token(&app, "globex", "member");
    let request = "mutation($input: RequestExportInput!) { requestExport(input: $input) { \
                   export { id kind format filters status attempts rowCount sizeBytes sha256 error createdAt startedAt \
                   finishedAt expiresAt contentUrl } userErrors { field code message } } }";
    let input = |format: &str, key: &str| json!({"input": {"kind": "batches", "format": format, "filters": {"status": "completed"}, "idempotencyKey": key}});
    let (_, first) = graphql(&app, &member, request, input("csv", "nightly-1")).await;
    let export = first["data"]["requestExport"]["export"].clone();
    assert_eq!(user_errors(&first["data"]["requestExport"]), vec![], "{first}");
    let id = export["id"].as_str().unwrap().to_owned();
    let (status, rest) = call(&app, &member, Method::GET, &format!("/v1/exports/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(export, camel(&rest), "the export as REST has it");
    assert_eq!(export["status"], "queued");

    let (_, repeat) = graphql(&app, &member, request, input("csv", "nightly-1")).await;
    assert_eq!(repeat["data"]["requestExport"]["export"]["id"], id.as_str(), "the same export, not a second");
    let (_, reused) = graphql(&app, &member, request, input("jsonl", "nightly-1")).await;
    assert_eq!(
        user_errors(&reused["data"]["requestExport"]),
        vec![(json!("idempotencyKey"), "idempotency_key_reused".to_owned())]
    );
    let (_, bad_key) = graphql(&app, &member, request, input("csv", "")).await;
    assert_eq!(
        user_errors(&bad_key["data"]["requestExport"]),
        vec![(json!("idempotencyKey"), "validation_failed".to_owned())]
    );
    let bad_filter = json!({"input": {"kind": "batches", "format": "csv", "filters": {"status": "lost"}}});
    let (_, refused) = graphql(&app, &member, request, bad_filter).await;
    assert_eq!(
        user_errors(&refused["data"]["requestExport"]),
        vec![(json!("filters.status"), "validation_failed".to_owned())]
    );

    let list = "query($id: ID!) { exports { edges { node { id } } } export(id: $id) { id status } }";
    let (_, ours) = graphql(&app, &member, list, json!({"id": id})).await;
    assert_eq!(ours["data"]["exports"]["edges"], json!([{"node": {"id": id}}]));
    assert_eq!(ours["data"]["export"]["status"], "queued");
    let (_, other) = graphql(&app, &theirs, list, json!({"id": id})).await;
    assert_eq!(other["data"], json!({"exports": {"edges": []}, "export": null}));
    common::wait_for_outbox(&app).await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn introspection_is_answered_unless_switched_off() {
    let introspect = "{ __schema { queryType { name } } }";
    let app = spawn_app().await;
    let viewer = token(&app, "acme", "viewer");
    let (_, open) = graphql(&app, &viewer, introspect, json!({})).await;
    assert_eq!(open["data"]["__schema"]["queryType"]["name"], "Query", "{open}");
    app.stop().await.unwrap();

    let closed = common::spawn_api(TestApp::builder().env("GRAPHQL_INTROSPECTION", "false")).await;
    let viewer = token(&closed, "acme", "viewer");
    let (_, refused) = graphql(&closed, &viewer, introspect, json!({})).await;
    assert_eq!(refusal(&refused).0, "introspection_disabled");
    let (_, typed) = graphql(&closed, &viewer, "{ __type(name: \"Batch\") { name } }", json!({})).await;
    assert_eq!(refusal(&typed).0, "introspection_disabled");
    let hidden = "query { ...F } fragment F on Query { __schema { queryType { name } } }";
    let (_, fragment) = graphql(&closed, &viewer, hidden, json!({})).await;
    assert_eq!(refusal(&fragment).0, "introspection_disabled", "a fragment does not hide it");
    let (_, unknown) = graphql(&closed, &viewer, "{ secrets }", json!({})).await;
    assert_eq!(refusal(&unknown).0, "graphql_validation_failed", "other mistakes keep their code");
    let (_, works) = graphql(&closed, &viewer, "{ me { user { role } } }", json!({})).await;
    assert_eq!(works["data"]["me"]["user"]["role"], "viewer");
    closed.stop().await.unwrap();
}

#[tokio::test]
async fn node_finds_any_record_of_the_organization_by_rests_id() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    let theirs = token(&app, "globex", "member");
    let product = seed(&app, &member, "N-1", 1).await;
    let (_, batches) = call(&app, &member, Method::GET, "/v1/batches", None).await;
    let (_, export) =
        call(&app, &member, Method::POST, "/v1/exports", Some(json!({"kind": "products", "format": "csv"}))).await;
    let query = "query($id: ID!) { node(id: $id) { __typename id ... on Product { sku } ... on Batch { code } \
                 ... on Export { status } } }";
    for (id, typename, field, value) in [
        (&product["id"], "Product", "sku", "N-1"),
        (&batches["items"][0]["id"], "Batch", "code", "N-1-B0"),
        (&export["id"], "Export", "status", "queued"),
    ] {
        let (_, found) = graphql(&app, &member, query, json!({"id": id})).await;
        assert_eq!(found["data"]["node"]["__typename"], typename, "{found}");
        assert_eq!(found["data"]["node"]["id"], *id);
        assert_eq!(found["data"]["node"][field], value);
        let (_, hidden) = graphql(&app, &theirs, query, json!({"id": id})).await;
        assert_eq!(hidden, json!({"data": {"node": null}}), "another organization's {typename} is not found");
    }
    common::wait_for_outbox(&app).await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn schedules_are_rests_for_admins_only() {
    let app = spawn_app().await;
    let admin = token(&app, "acme", "admin");
    let member = token(&app, "acme", "member");
    let theirs = token(&app, "globex", "admin");
    let body = json!({"name": "nightly", "cron": "0 2 * * *", "timezone": "Europe/Berlin",
                      "export": {"kind": "batches", "format": "csv"}});
    let (status, made) = call(&app, &admin, Method::POST, "/v1/schedules", Some(body)).await;
    assert_eq!(status, 201);
    let fields = "id name system enabled cron timezone job export paused pauseNote misfirePolicy catchupWindowSecs \
                  overlapPolicy jitterSecs runTimeoutSecs nextRuns lastRunAt lastStatus createdAt updatedAt";
    let query =
        format!("query($id: ID!) {{ schedule(id: $id) {{ {fields} }} schedules {{ edges {{ node {{ id }} }} }} }}");
    let (_, found) = graphql(&app, &admin, &query, json!({"id": made["id"]})).await;
    let (_, rest) =
        call(&app, &admin, Method::GET, &format!("/v1/schedules/{}", made["id"].as_str().unwrap()), None).await;
    assert_eq!(found["data"]["schedule"], camel(&rest), "{found}");
    let listed: Vec<&Value> =
        found["data"]["schedules"]["edges"].as_array().unwrap().iter().map(|e| &e["node"]["id"]).collect();
    assert!(listed.contains(&&made["id"]), "{found}");

    let (_, other) = graphql(&app, &theirs, &query, json!({"id": made["id"]})).await;
    assert_eq!(other["data"]["schedule"], Value::Null);
    assert!(!other["data"]["schedules"]["edges"].as_array().unwrap().iter().any(|e| e["node"]["id"] == made["id"]));
    let (_, refused) = graphql(&app, &member, &query, json!({"id": made["id"]})).await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "forbidden", "{refused}");
    app.stop().await.unwrap();
}

async fn attach(app: &TestApp, token: &str, batch: &str, filename: &str) -> Value {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend(filename.bytes());
    let part = reqwest::multipart::Part::bytes(bytes).file_name(filename.to_owned()).mime_str("image/png").unwrap();
    let response = app
        .http
        .post(app.url(&format!("/v1/batches/{batch}/attachments")))
        .bearer_auth(token)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

/// Products with their batches with their attachments: REST's pages at
/// each level, the nested cursors REST's too, and one statement per
/// level whatever the number of parents.
#[tokio::test]
async fn products_batches_and_attachments_nest_at_one_query_per_level() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    let mut products = Vec::new();
    for n in 0..4 {
        products.push(seed(&app, &member, &format!("N-{n}"), 3).await);
    }
    let (_, first_batches) = call(
        &app,
        &member,
        Method::GET,
        &format!("/v1/batches?product_id={}", products[0]["id"].as_str().unwrap()),
        None,
    )
    .await;
    let mut attached = Vec::new();
    for (n, batch) in first_batches["items"].as_array().unwrap().iter().enumerate() {
        for m in 0..=n {
            attached.push(attach(&app, &member, batch["id"].as_str().unwrap(), &format!("scan-{n}-{m}.png")).await);
        }
    }
    // Another organization's batches and files never appear.
    let other = token(&app, "globex", "member");
    let theirs = seed(&app, &other, "N-0", 2).await;
    let (_, their_batches) =
        call(&app, &other, Method::GET, &format!("/v1/batches?product_id={}", theirs["id"].as_str().unwrap()), None)
            .await;
    attach(&app, &other, their_batches["items"][0]["id"].as_str().unwrap(), "theirs.png").await;
    graphql(&app, &member, "{ me { user { id } } }", json!({})).await;

    let query = "{ products(first: 10) { edges { node { id sku batches(first: 2) { \
                 pageInfo { hasNextPage endCursor } edges { cursor node { id code product { sku } attachments(first: 2) { \
                 pageInfo { hasNextPage endCursor } edges { node { id batchId filename contentType sizeBytes sha256 \
                 createdAt contentUrl } } } } } } } } } }";
    let before = queries(&app).await;
    let (status, nested) = graphql(&app, &member, query, json!({})).await;
    let spent = queries(&app).await - before;
    assert_eq!(status, 200);
    assert!(nested.get("errors").is_none(), "{nested}");
    // The token, the products, their batches, the batches' attachments and
    // the batches' products (loaded, not joined, below a product); the
    // token's last-use write and the relay may add one or two.
    assert!((5..=7).contains(&spent), "{spent} statements for four levels");

    let edges = nested["data"]["products"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 4);
    for product in edges {
        let id = product["node"]["id"].as_str().unwrap();
        let (_, rest) = call(&app, &member, Method::GET, &format!("/v1/batches?product_id={id}&limit=2"), None).await;
        let batches = &product["node"]["batches"];
        let ids: Vec<&Value> = batches["edges"].as_array().unwrap().iter().map(|e| &e["node"]["id"]).collect();
        let rest_ids: Vec<&Value> = rest["items"].as_array().unwrap().iter().map(|b| &b["id"]).collect();
        assert_eq!(ids, rest_ids, "product {id}'s first page");
        assert_eq!(batches["pageInfo"], json!({"hasNextPage": true, "endCursor": rest["next_cursor"]}));
        for batch in batches["edges"].as_array().unwrap() {
            let batch_id = batch["node"]["id"].as_str().unwrap();
            assert_eq!(batch["node"]["product"]["sku"], product["node"]["sku"]);
            let (_, files) =
                call(&app, &member, Method::GET, &format!("/v1/batches/{batch_id}/attachments?limit=2"), None).await;
            let attachments = &batch["node"]["attachments"];
            let ours: Vec<Value> = attachments["edges"].as_array().unwrap().iter().map(|e| e["node"].clone()).collect();
            let rests: Vec<Value> = files["items"].as_array().unwrap().iter().map(camel).collect();
            assert_eq!(ours, rests, "batch {batch_id}'s attachments");
            // Relay's endCursor is the last edge's even on the last page,
            // where REST has no next cursor.
            let more = attachments["pageInfo"]["hasNextPage"].as_bool().unwrap();
            assert_eq!(more, !files["next_cursor"].is_null());
            if more {
                assert_eq!(attachments["pageInfo"]["endCursor"], files["next_cursor"]);
            }
        }
    }
    let shown: usize = edges
        .iter()
        .flat_map(|p| p["node"]["batches"]["edges"].as_array().unwrap())
        .map(|b| b["node"]["attachments"]["edges"].as_array().unwrap().len())
        .sum();
    assert_eq!(shown, 1 + 2, "the first two batches of N-0 hold one and two of {} files", attached.len());

    // A nested endCursor pages on, nested or from the top, as REST's cursor does.
    let first = &edges[0]["node"];
    let cursor = first["batches"]["pageInfo"]["endCursor"].as_str().unwrap();
    let (_, rest_next) = call(
        &app,
        &member,
        Method::GET,
        &format!("/v1/batches?product_id={}&limit=2&cursor={cursor}", first["id"].as_str().unwrap()),
        None,
    )
    .await;
    let (_, next) = graphql(
        &app,
        &member,
        "query($id: ID!, $after: String!) { product(id: $id) { batches(first: 2, after: $after) { edges { node { id } } } } \
         batches(productId: $id, first: 2, after: $after) { edges { node { id } } } }",
        json!({"id": first["id"], "after": cursor}),
    )
    .await;
    let rest_ids: Vec<&Value> = rest_next["items"].as_array().unwrap().iter().map(|b| &b["id"]).collect();
    for list in [&next["data"]["product"]["batches"], &next["data"]["batches"]] {
        let ids: Vec<&Value> = list["edges"].as_array().unwrap().iter().map(|e| &e["node"]["id"]).collect();
        assert_eq!(ids, rest_ids, "{next}");
    }
    app.stop().await.unwrap();
}

/// A page whose selection is all at hand is written in one pass, not by
/// the engine; a field only the engine resolves (a nested connection)
/// sends the whole page back to it. Every shape of selection a client may
/// write (aliases, fragments on the type and on `Node`, `__typename`,
/// fields selected twice, `@skip`/`@include`) must come out the same
/// both ways.
#[tokio::test]
async fn a_page_written_in_one_pass_is_what_the_engine_writes() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    for n in 0..3 {
        seed(&app, &member, &format!("W-{n}"), 2).await;
    }
    // Stored JSON whose numbers, key order and characters a writer could
    // get wrong.
    let custom_fields =
        json!({"zeta": 1.50, "alpha": {"b": [1, 2.0, 1e3, -0.0, 12345678901234567890u64]}, "é\u{1}\"": "tab\t<>&"});
    let (status, _) = call(
        &app,
        &member,
        Method::POST,
        "/v1/products",
        Some(json!({"sku": "W-JSON", "name": "Odd \u{2028} name", "unit": "kg", "custom_fields": custom_fields})),
    )
    .await;
    assert_eq!(status, 201);
    let all_batch_fields = format!("{BATCH_FIELDS} __typename");
    let batch_selections = [
        format!("edges {{ cursor node {{ {all_batch_fields} }} }} pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }}"),
        format!("__typename nodes {{ id code }} edges {{ __typename node {{ {all_batch_fields} }} }} pageInfo {{ __typename endCursor }}"),
        "page: pageInfo { more: hasNextPage } rows: edges { at: cursor batch: node { __typename key: id ...Produced \
         ... on Batch { code product { ... on Product { sku } } } ... on Node { id } ... { status } } }"
            .to_owned(),
        "edges { node { product { sku } id } } edges { node { product { name } code } cursor }".to_owned(),
        "edges { node { id @include(if: $yes) code @skip(if: $yes) notes @include(if: false) product @skip(if: $no) { sku } } }"
            .to_owned(),
        "edges { node { id @skip(if: true) } cursor }".to_owned(),
    ];
    let product_selections = [
        "edges { cursor node { id sku name unit customFields createdAt updatedAt __typename } } pageInfo { hasNextPage endCursor }",
        "nodes { ... on Node { id } ...Named } edges { node { sku } } edges { node { name } }",
    ];
    let fragments = [
        ("...Produced", "fragment Produced on Batch { quantity producedAt product { name unit } }"),
        ("...Named", "fragment Named on Product { name }"),
    ];
    let cases = batch_selections
        .iter()
        .map(|selection| ("batches", selection.as_str(), "attachments"))
        .chain(product_selections.iter().map(|selection| ("products", *selection, "batches")));
    for (list, selection, engine_only) in cases {
        // A fragment defined and not spread is an error.
        let fragments: String =
            fragments.iter().filter(|(spread, _)| selection.contains(spread)).map(|(_, fragment)| *fragment).collect();
        // So are a variable declared and not used.
        let operation = if selection.contains('$') { "query($yes: Boolean!, $no: Boolean!)" } else { "query" };
        let written = format!("{operation} {{ {list}(first: 4) {{ {selection} }} }} {fragments}");
        // The same selection and one field only the engine resolves, under
        // an alias taken out again before comparing.
        let resolved = format!(
            "{operation} {{ {list}(first: 4) {{ {selection} \
             engineOnly: edges {{ node {{ {engine_only}(first: 1) {{ edges {{ cursor }} }} }} }} }} }} {fragments}"
        );
        let variables = json!({"yes": true, "no": false});
        let (status, one_pass) = graphql_text(&app, &member, &written, variables.clone()).await;
        assert_eq!(status, 200);
        let (_, engine) = graphql_text(&app, &member, &resolved, variables).await;
        // Byte for byte, keys in their order: the page's last key is the
        // engine's only, and its value (a list of objects holding cursors)
        // has no bracket or brace inside a string.
        let engine_only = engine.find(r#","engineOnly":"#).unwrap_or_else(|| panic!("{selection}: {engine}"));
        let (before, after) = engine.split_at(engine_only);
        let mut depth = 0;
        let end = after
            .char_indices()
            .find(|(_, c)| {
                match c {
                    '{' | '[' => depth += 1,
                    '}' | ']' => depth -= 1,
                    _ => return false,
                }
                depth == 0
            })
            .unwrap()
            .0;
        assert_eq!(one_pass, format!("{before}{}", &after[end + 1..]), "{selection}");
        let one_pass: Value = serde_json::from_str(&one_pass).unwrap();
        assert!(one_pass.get("errors").is_none(), "{selection}: {one_pass}");
        assert_ne!(one_pass["data"][list], json!({}), "{selection}");
    }
    let (_, products) =
        graphql(&app, &member, "{ products(first: 1) { nodes { name customFields } } }", json!({})).await;
    assert_eq!(
        products["data"]["products"]["nodes"][0],
        json!({"name": "Odd \u{2028} name", "customFields": custom_fields})
    );

    // A page selected twice under one key is one page with both selections,
    // as the engine merges them.
    let twice = "{ batches(first: 2) { edges { cursor } } batches(first: 2) { pageInfo { hasNextPage } edges { node { code } } } }";
    let (_, merged) = graphql(&app, &member, twice, json!({})).await;
    let (_, whole) = graphql(
        &app,
        &member,
        "{ batches(first: 2) { edges { cursor node { code } } pageInfo { hasNextPage } } }",
        json!({}),
    )
    .await;
    assert!(whole.get("errors").is_none(), "{whole}");
    assert_eq!(merged, whole);
    app.stop().await.unwrap();
}

/// The api keeps each document it parsed, and remembers which passed every
/// validation rule with which operation and variables, for the next request
/// that sends them. What a request answers never depends on that: a
/// document refused is refused again, the same document with other
/// variables is checked again (its budget included), and one that ran runs
/// again with the same answer.
#[tokio::test]
async fn a_document_sent_again_answers_as_it_did_the_first_time() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    seed(&app, &member, "K-1", 3).await;

    let nested = "query($n: Int) { batches(first: $n) { edges { node { id product { \
                  batches(first: $n) { edges { node { id code } } } } } } } }";
    let cases = [
        ("{ batches { secret } }", json!({}), Some("graphql_validation_failed")),
        ("{ batches { ", json!({}), Some("graphql_parse_failed")),
        (nested, json!({"n": 2}), None),
        (nested, json!({"n": "two"}), Some("graphql_validation_failed")),
        (nested, json!({"n": 200}), Some("query_too_complex")),
        (nested, json!({"n": 3}), None),
    ];
    for (query, variables, refused) in cases {
        let (_, first) = graphql(&app, &member, query, variables.clone()).await;
        let (_, again) = graphql(&app, &member, query, variables.clone()).await;
        match refused {
            Some(code) => {
                let errors = first["errors"].as_array().unwrap_or_else(|| panic!("{query} {variables}: {first}"));
                assert!(
                    !errors.is_empty() && errors.iter().all(|error| error["extensions"]["code"] == code),
                    "{query} {variables}: {first}"
                );
            }
            None => assert!(first.get("errors").is_none() && !first["data"].is_null(), "{query} {variables}: {first}"),
        }
        assert_eq!(again, first, "{query} {variables}");
    }
    app.stop().await.unwrap();
}
