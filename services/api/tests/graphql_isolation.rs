// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

//! GraphQL's two-organization matrix, generated from the served schema as
//! REST's is from `/openapi.json`, so a field or mutation is covered the day
//! it exists: every query field that takes an id answers another
//! organization's id exactly as an id of nothing (null), every other query
//! field shows none of the other's records, and every mutation given
//! another organization's id in any `ID` field of its input answers exactly
//! as for an id of nothing and changes nothing of theirs.

mod common;

use common::{Method, Value, call, json, spawn_app, token};
use std::collections::HashMap;
use stockflow_testkit::TestApp;

const SCHEMA: &str = "{ __schema { queryType { name } mutationType { name } types { name kind \
    fields { name type { ...T } args { name type { ...T } } } inputFields { name type { ...T } } } } } \
    fragment T on __Type { kind name ofType { kind name ofType { kind name ofType { kind name } } } }";

/// Levels of fields below a root field: with the root, within the
/// schema's depth limit of 10.
const MAX_NESTING: usize = 8;

async fn graphql(app: &TestApp, token: &str, query: &str, variables: Value) -> Value {
    let response = app
        .http
        .post(app.url("/graphql"))
        .bearer_auth(token)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// The schema's types by name, as introspection tells them.
struct Types(HashMap<String, Value>);

impl Types {
    fn get(&self, name: &str) -> &Value {
        self.0.get(name).unwrap_or_else(|| panic!("no type {name}"))
    }

    fn fields<'a>(&'a self, name: &str) -> &'a [Value] {
        self.get(name)["fields"].as_array().unwrap()
    }

    fn input_fields<'a>(&'a self, name: &str) -> &'a [Value] {
        self.get(name)["inputFields"].as_array().unwrap()
    }

    /// A selection of every field reachable without a required argument,
    /// each type once per path (no product -> batches -> product), and
    /// nested connections two records deep.
    fn selection(&self, name: &str, path: &mut Vec<String>) -> Option<String> {
        let ty = self.get(name);
        if !matches!(ty["kind"].as_str(), Some("OBJECT" | "INTERFACE")) {
            return None;
        }
        path.push(name.to_owned());
        let mut parts = vec!["__typename".to_owned()];
        for field in self.fields(name) {
            let field_name = field["name"].as_str().unwrap();
            let args = field["args"].as_array().unwrap();
            // A connection's `nodes` are its `edges`' nodes again.
            if args.iter().any(|arg| required(&arg["type"])) || (field_name == "nodes" && name.ends_with("Connection"))
            {
                continue;
            }
            let target = named(&field["type"]);
            let arguments = if args.iter().any(|arg| arg["name"] == "first") { "(first: 2)" } else { "" };
            match self.get(target)["kind"].as_str() {
                Some("SCALAR" | "ENUM") => parts.push(field_name.to_owned()),
                _ if path.len() >= MAX_NESTING || path.iter().any(|seen| seen == target) => {}
                _ => {
                    if let Some(inner) = self.selection(target, path) {
                        parts.push(format!("{field_name}{arguments} {inner}"));
                    }
                }
            }
        }
        path.pop();
        Some(format!("{{ {} }}", parts.join(" ")))
    }
}

/// The type's name under its NON_NULL and LIST wrappers.
fn named(ty: &Value) -> &str {
    match ty["name"].as_str() {
        Some(name) => name,
        None => named(&ty["ofType"]),
    }
}

fn required(ty: &Value) -> bool {
    ty["kind"] == "NON_NULL"
}

/// One record of each kind owned by the caller's organization, named with
/// `label` so a response that shows another's is caught by its text.
async fn records(app: &TestApp, admin: &str, label: &str) -> HashMap<&'static str, String> {
    let product = json!({"sku": format!("{label}-SKU"), "name": label, "unit": "kg"});
    let (_, product) = call(app, admin, Method::POST, "/v1/products", Some(product)).await;
    let batch = json!({"product_id": product["id"], "code": format!("{label}-B"), "quantity": 1,
                       "produced_at": "2026-11-20T08:00:00Z", "notes": label});
    let (_, batch) = call(app, admin, Method::POST, "/v1/batches", Some(batch)).await;
    let part = reqwest::multipart::Part::bytes(b"notes\n".to_vec()).file_name(format!("{label}.txt"));
    let attachment: Value = app
        .http
        .post(app.url(&format!("/v1/batches/{}/attachments", batch["id"].as_str().unwrap())))
        .bearer_auth(admin)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (_, export) =
        call(app, admin, Method::POST, "/v1/exports", Some(json!({"kind": "batches", "format": "csv"}))).await;
    let schedule = json!({"name": format!("{label} schedule"), "cron": "0 2 * * *", "timezone": "UTC",
                          "export": {"kind": "products", "format": "csv"}});
    let (_, schedule) = call(app, admin, Method::POST, "/v1/schedules", Some(schedule)).await;
    let id = |v: &Value| v["id"].as_str().unwrap_or_else(|| panic!("no id: {v}")).to_owned();
    HashMap::from([
        ("product", id(&product)),
        ("batch", id(&batch)),
        ("attachment", id(&attachment)),
        ("export", id(&export)),
        ("schedule", id(&schedule)),
    ])
}

/// The kind of record an id names: a field's own (`product(id:)`,
/// `updateBatch`'s `id`) or the one it refers to (`productId`).
fn kind_of(field: &str, owner: &str) -> &'static str {
    let name = if field == "id" { owner } else { field.trim_end_matches("Id") }.to_lowercase();
    ["product", "batch", "attachment", "export", "schedule"]
        .into_iter()
        .find(|kind| name.ends_with(kind) || name == "node")
        .map(|kind| if name == "node" { "product" } else { kind })
        .unwrap_or_else(|| panic!("{owner}.{field}: which record does it name? teach kind_of()"))
}

/// A valid value for an input field that is not an id, by its name.
fn value_for(field: &str) -> Option<Value> {
    Some(match field {
        "sku" => json!("TAKEN-OVER"),
        "name" => json!("taken over"),
        "unit" => json!("kg"),
        "code" => json!("TAKEN-OVER-B"),
        "quantity" => json!("7"),
        "producedAt" => json!("2026-11-21T08:00:00Z"),
        "status" => json!("cancelled"),
        "notes" => json!("taken over"),
        "kind" => json!("batches"),
        "format" => json!("csv"),
        _ => return None,
    })
}

/// The body with `id` written as `<id>`: a foreign and a missing id's
/// answers must then be the same text.
fn masked(body: &Value, id: &str) -> String {
    body.to_string().replace(id, "<id>")
}

#[tokio::test]
async fn one_org_cannot_reach_another_orgs_records_through_any_field() {
    let app = spawn_app().await;
    let theirs_admin = token(&app, "globex", "admin");
    let ours_admin = token(&app, "acme", "admin");
    let theirs = records(&app, &theirs_admin, "SECRET").await;
    let ours = records(&app, &ours_admin, "OURS").await;

    let schema = graphql(&app, &ours_admin, SCHEMA, json!({})).await;
    let types = Types(
        schema["data"]["__schema"]["types"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ty| (ty["name"].as_str().unwrap().to_owned(), ty.clone()))
            .collect(),
    );
    // What a response shows beyond the id the caller gave it.
    let leaks = |text: &str| text.contains("SECRET") || theirs.values().any(|id| text.contains(id.as_str()));

    let mut probed = 0;
    let query_type = schema["data"]["__schema"]["queryType"]["name"].as_str().unwrap();
    for field in types.fields(query_type) {
        let name = field["name"].as_str().unwrap();
        let selection = types.selection(named(&field["type"]), &mut Vec::new()).unwrap_or_default();
        let args = field["args"].as_array().unwrap();
        if let Some(arg) = args.iter().find(|arg| required(&arg["type"]) && arg["name"] != "id") {
            panic!("{name}({}:) is required: teach this test what to give it", arg["name"]);
        }
        if args.iter().any(|arg| arg["name"] == "id") {
            let kind = kind_of("id", name);
            let query = format!("query($id: ID!) {{ {name}(id: $id) {selection} }}");
            let missing = uuid::Uuid::new_v4().to_string();
            let foreign = graphql(&app, &ours_admin, &query, json!({"id": theirs[kind]})).await;
            let nothing = graphql(&app, &ours_admin, &query, json!({"id": missing})).await;
            assert_eq!(foreign["data"][name], Value::Null, "{name} with another org's id: {foreign}");
            let foreign = masked(&foreign, &theirs[kind]);
            assert!(!leaks(&foreign), "{name} leaked: {foreign}");
            assert_eq!(foreign, masked(&nothing, &missing), "{name}: foreign and missing differ");
            // Our own id is found, so the null above is about ownership.
            let own = graphql(&app, &ours_admin, &query, json!({"id": ours[kind]})).await;
            assert!(own["data"][name].is_object(), "{name} with our id: {own}");
        } else {
            let arguments = if args.iter().any(|arg| arg["name"] == "first") { "(first: 10)" } else { "" };
            let query = format!("{{ {name}{arguments} {selection} }}");
            let listed = graphql(&app, &ours_admin, &query, json!({})).await;
            assert!(listed.get("errors").is_none(), "{query}: {listed}");
            assert!(!leaks(&listed.to_string()), "{name} shows another org's record: {listed}");
            if named(&field["type"]).ends_with("Connection") {
                let text = listed.to_string();
                assert!(ours.values().any(|id| text.contains(id.as_str())), "{name} shows none of ours: {listed}");
            }
        }
        probed += 1;
    }

    let mutation_type = schema["data"]["__schema"]["mutationType"]["name"].as_str().unwrap();
    for field in types.fields(mutation_type) {
        let name = field["name"].as_str().unwrap();
        let args = field["args"].as_array().unwrap();
        assert!(args.len() == 1 && args[0]["name"] == "input", "{name}: one `input`, by convention");
        let input_type = named(&args[0]["type"]);
        let payload = types.selection(named(&field["type"]), &mut Vec::new()).unwrap();
        let query = format!("mutation($input: {input_type}!) {{ {name}(input: $input) {payload} }}");
        let inputs = types.input_fields(input_type);
        let ids: Vec<&str> =
            inputs.iter().filter(|f| named(&f["type"]) == "ID").map(|f| f["name"].as_str().unwrap()).collect();
        for probe in &ids {
            let mut input = serde_json::Map::new();
            for other in inputs {
                let other_name = other["name"].as_str().unwrap();
                if other_name == *probe {
                    continue;
                }
                let value = if named(&other["type"]) == "ID" {
                    required(&other["type"]).then(|| json!(ours[kind_of(other_name, name)]))
                } else {
                    value_for(other_name)
                };
                match value {
                    Some(value) => {
                        input.insert(other_name.to_owned(), value);
                    }
                    None if required(&other["type"]) => {
                        panic!("{name}: teach value_for() a value for `{other_name}`")
                    }
                    None => {}
                }
            }
            let kind = kind_of(probe, name);
            let missing = uuid::Uuid::new_v4().to_string();
            let mut answers = Vec::new();
            for id in [&theirs[kind], &missing] {
                input.insert((*probe).to_owned(), json!(id));
                let answer = masked(&graphql(&app, &ours_admin, &query, json!({"input": input})).await, id);
                assert!(!leaks(&answer), "{name} leaked with their {probe}: {answer}");
                answers.push(answer);
            }
            assert_eq!(answers[0], answers[1], "{name} with another org's {probe} and with a missing one");
            assert!(answers[1].contains("not_found") || answers[1].contains("missing_reference"), "{}", answers[1]);
            probed += 1;
        }
    }
    assert!(probed >= 16, "only {probed} fields and inputs were probed");

    // Theirs are untouched, and still theirs.
    let check = "query($product: ID!, $batch: ID!) { product(id: $product) { sku name } \
                 batch(id: $batch) { code status notes attachments { edges { node { id } } } } }";
    let after =
        graphql(&app, &theirs_admin, check, json!({"product": theirs["product"], "batch": theirs["batch"]})).await;
    assert_eq!(after["data"]["product"], json!({"sku": "SECRET-SKU", "name": "SECRET"}), "{after}");
    assert_eq!(after["data"]["batch"]["code"], "SECRET-B");
    assert_eq!(after["data"]["batch"]["status"], "planned");
    assert_eq!(after["data"]["batch"]["notes"], "SECRET");
    assert_eq!(after["data"]["batch"]["attachments"]["edges"][0]["node"]["id"], json!(theirs["attachment"]));
    common::wait_for_outbox(&app).await;
}
