// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

//! The bytes of export files: the same as the statement of earlier builds
//! wrote for every combination of filters, cells a spreadsheet would run
//! made inert in CSV, and `export-query` printing what the worker sends.

mod common;

use chrono::{DateTime, Utc};
use common::*;
use diesel::connection::Instrumentation;
use diesel::connection::InstrumentationEvent;
use diesel::pg::{CopyFormat, CopyTarget, Pg};
use diesel::prelude::*;
use diesel::query_builder::AstPass;
use diesel::sql_types::{Bool, Text};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stockflow_db::PgConnection;
use stockflow_db::exports;
use stockflow_domain::{BatchFilters, BatchStatus, ExportFilters, ExportFormat, NameSearch, ProductFilters, SkuPrefix};
use stockflow_testkit::{TestApp, TestDatabase};
use uuid::Uuid;

/// A name with every character that needs care inside a SQL literal or a
/// LIKE pattern: a quote, `%`, `_` and a backslash.
const AWKWARD_NAME: &str = r"Flour O'Brien 50% _fine_ \ special";
const AWKWARD_Q: &str = r"o'brien 50% _fine_ \";

/// Three products and 90 batches whose text holds what CSV and JSON must
/// quote or escape (commas, quotes, line breaks, backslashes, tabs inside,
/// non-ASCII), timestamps with microseconds and quantities with decimals,
/// but no cell a spreadsheet would run.
fn seed_awkward(conn: &mut PgConnection) -> Tenant {
    let mut tenant = seed(conn, 0);
    diesel::sql_query("DELETE FROM products WHERE org_id = $1")
        .bind::<diesel::sql_types::Uuid, _>(tenant.org)
        .execute(conn)
        .unwrap();
    tenant.products =
        [("A_1", AWKWARD_NAME, "kg"), ("AB-2", r#"Sugar "fine", white"#, r#"bag "big""#), ("a_3", "Ünïcödé salt", "g")]
            .into_iter()
            .map(|(sku, name, unit)| {
                #[derive(QueryableByName)]
                struct Id {
                    #[diesel(sql_type = diesel::sql_types::Uuid)]
                    id: Uuid,
                }
                diesel::sql_query(
                    "INSERT INTO products (org_id, sku, name, unit, custom_fields) \
                 VALUES ($1, $2, $3, $4, jsonb_build_object('origin', $3, 'grade', 2)) RETURNING id",
                )
                .bind::<diesel::sql_types::Uuid, _>(tenant.org)
                .bind::<Text, _>(sku)
                .bind::<Text, _>(name)
                .bind::<Text, _>(unit)
                .get_result::<Id>(conn)
                .unwrap()
                .id
            })
            .collect();
    diesel::sql_query(
        "INSERT INTO batches (org_id, product_id, code, quantity, produced_at, status, notes, metadata) \
         SELECT $1, (ARRAY[$2, $3, $4]::uuid[])[1 + g % 3], 'LOT/' || g, g * 1.125, \
                timestamptz '2026-01-01 00:00:00+00' + g * interval '1 hour 0.000123 second', \
                (ARRAY['planned', 'in_progress', 'completed', 'cancelled'])[1 + g % 4], \
                n.note, jsonb_build_object('note', n.note, 'n', g) \
         FROM generate_series(1, 90) g \
         CROSS JOIN LATERAL (SELECT (ARRAY['', 'plain', 'comma, and \"quotes\"', E'line 1\\nline 2', \
                                           E'back\\\\slash', E'tab\\tinside', 'ünï €', 'x = 1'])[1 + g % 8] AS note) n",
    )
    .bind::<diesel::sql_types::Uuid, _>(tenant.org)
    .bind::<diesel::sql_types::Uuid, _>(tenant.products[0])
    .bind::<diesel::sql_types::Uuid, _>(tenant.products[1])
    .bind::<diesel::sql_types::Uuid, _>(tenant.products[2])
    .execute(conn)
    .unwrap();
    tenant
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

/// Every combination of the filters, each with a value that matches some
/// rows and not others.
fn every_filter_combination(tenant: &Tenant) -> Vec<ExportFilters> {
    let mut combinations = Vec::new();
    for mask in 0..16u8 {
        combinations.push(ExportFilters::Batches(BatchFilters {
            product_id: (mask & 1 != 0).then_some(tenant.products[0]),
            status: (mask & 2 != 0).then_some(BatchStatus::Completed),
            produced_from: (mask & 4 != 0).then(|| at("2026-01-01T20:00:00.5Z")),
            produced_to: (mask & 8 != 0).then(|| at("2026-01-03T10:00:00Z")),
        }));
    }
    for mask in 0..4u8 {
        combinations.push(ExportFilters::Products(ProductFilters {
            sku_prefix: (mask & 1 != 0).then(|| SkuPrefix::parse("A_").unwrap()),
            q: (mask & 2 != 0).then(|| NameSearch::parse(AWKWARD_Q).unwrap().unwrap()),
        }));
    }
    combinations
}

// The statements of earlier builds, verbatim: the filters were settings,
// '' for none, read by the statement. Kept here as the reference the
// output must not drift from.
const EARLIER_BATCHES: &str = "SELECT b.id, b.code, b.product_id, \
     (SELECT p.sku FROM products p WHERE p.org_id = b.org_id AND p.id = b.product_id) AS product_sku, \
     b.quantity::text AS quantity, \
     (SELECT p.unit FROM products p WHERE p.org_id = b.org_id AND p.id = b.product_id) AS unit, \
     b.status, b.produced_at, b.notes, b.metadata, b.created_at, b.updated_at \
     FROM batches b \
     WHERE b.org_id = current_setting('stockflow.export_org_id')::uuid \
     AND (current_setting('stockflow.export_product_id') = '' \
          OR b.product_id = nullif(current_setting('stockflow.export_product_id'), '')::uuid) \
     AND (current_setting('stockflow.export_status') = '' OR b.status = current_setting('stockflow.export_status')) \
     AND (current_setting('stockflow.export_produced_from') = '' \
          OR b.produced_at >= nullif(current_setting('stockflow.export_produced_from'), '')::timestamptz) \
     AND (current_setting('stockflow.export_produced_to') = '' \
          OR b.produced_at < nullif(current_setting('stockflow.export_produced_to'), '')::timestamptz) \
     ORDER BY b.produced_at, b.id";

const EARLIER_PRODUCTS: &str = "SELECT p.id, p.sku, p.name, p.unit, p.custom_fields, p.created_at, p.updated_at \
     FROM products p \
     WHERE p.org_id = current_setting('stockflow.export_org_id')::uuid \
     AND (current_setting('stockflow.export_sku_like') = '' OR p.sku LIKE current_setting('stockflow.export_sku_like')) \
     AND (current_setting('stockflow.export_name_like') = '' \
          OR p.name ILIKE current_setting('stockflow.export_name_like')) \
     ORDER BY p.sku, p.id";

macro_rules! earlier {
    ($name:ident, $select:expr, $json:expr) => {
        struct $name;

        impl CopyTarget for $name {
            type Table = stockflow_db::schema::exports::table;
            type SqlType = Text;

            fn walk_target(mut pass: AstPass<'_, '_, Pg>) -> QueryResult<()> {
                if $json {
                    pass.push_sql(&format!("(SELECT row_to_json(r)::text FROM ({}) r)", $select));
                } else {
                    pass.push_sql(&format!("({})", $select));
                }
                Ok(())
            }
        }
    };
}

earlier!(EarlierBatchCsv, EARLIER_BATCHES, false);
earlier!(EarlierBatchJson, EARLIER_BATCHES, true);
earlier!(EarlierProductCsv, EARLIER_PRODUCTS, false);
earlier!(EarlierProductJson, EARLIER_PRODUCTS, true);

/// What an earlier build wrote for this export.
fn earlier_bytes(conn: &mut PgConnection, org: Uuid, format: ExportFormat, filters: &ExportFilters) -> Vec<u8> {
    let like = |value: &str| stockflow_db::page::escape_like(value);
    let mut settings = vec![
        ("TimeZone", "UTC".to_owned()),
        ("DateStyle", "ISO, YMD".to_owned()),
        ("stockflow.export_org_id", org.to_string()),
    ];
    match filters {
        ExportFilters::Batches(f) => settings.extend([
            ("stockflow.export_product_id", f.product_id.map(|id| id.to_string()).unwrap_or_default()),
            ("stockflow.export_status", f.status.map(|s| s.as_str().to_owned()).unwrap_or_default()),
            ("stockflow.export_produced_from", f.produced_from.map(|t| t.to_rfc3339()).unwrap_or_default()),
            ("stockflow.export_produced_to", f.produced_to.map(|t| t.to_rfc3339()).unwrap_or_default()),
        ]),
        ExportFilters::Products(f) => settings.extend([
            (
                "stockflow.export_sku_like",
                f.sku_prefix.as_ref().map(|p| format!("{}%", like(p.as_str()))).unwrap_or_default(),
            ),
            ("stockflow.export_name_like", f.q.as_deref().map(|q| format!("%{}%", like(q))).unwrap_or_default()),
        ]),
    }
    conn.transaction(|conn| {
        for (name, value) in &settings {
            diesel::select(
                diesel::dsl::sql::<Bool>("set_config(")
                    .bind::<Text, _>(*name)
                    .sql(", ")
                    .bind::<Text, _>(value)
                    .sql(", true) IS NOT NULL"),
            )
            .execute(conn)?;
        }
        let mut bytes = Vec::new();
        match (filters, format) {
            (ExportFilters::Batches(_), ExportFormat::Csv) => diesel::copy_to(EarlierBatchCsv)
                .with_format(CopyFormat::Csv)
                .with_header(true)
                .load_raw(conn)?
                .read_to_end(&mut bytes),
            (ExportFilters::Batches(_), ExportFormat::Jsonl) => diesel::copy_to(EarlierBatchJson)
                .with_format(CopyFormat::Csv)
                .with_quote('\u{1}')
                .with_delimiter('\u{2}')
                .load_raw(conn)?
                .read_to_end(&mut bytes),
            (ExportFilters::Products(_), ExportFormat::Csv) => diesel::copy_to(EarlierProductCsv)
                .with_format(CopyFormat::Csv)
                .with_header(true)
                .load_raw(conn)?
                .read_to_end(&mut bytes),
            (ExportFilters::Products(_), ExportFormat::Jsonl) => diesel::copy_to(EarlierProductJson)
                .with_format(CopyFormat::Csv)
                .with_quote('\u{1}')
                .with_delimiter('\u{2}')
                .load_raw(conn)?
                .read_to_end(&mut bytes),
        }
        .unwrap();
        diesel::connection::SimpleConnection::batch_execute(conn, "SELECT 1")?;
        Ok::<_, diesel::result::Error>(bytes)
    })
    .unwrap()
}

#[tokio::test]
async fn every_combination_of_filters_writes_the_bytes_earlier_builds_wrote() {
    let app = spawn_worker(TestApp::builder()).await;
    let relay = Relay::start(&app.env);
    let mut conn = app.database.connect();
    let tenant = seed_awkward(&mut conn);
    let mut requested = Vec::new();
    for filters in every_filter_combination(&tenant) {
        for format in [ExportFormat::Csv, ExportFormat::Jsonl] {
            requested.push((request(&mut conn, &tenant, format, filters.clone()), format, filters.clone()));
        }
    }
    relay.relay.kick();
    let root = media_root(&app.env);
    for (id, format, filters) in &requested {
        let done = wait_status(&app, &tenant, *id, "succeeded", Duration::from_secs(60)).await;
        assert!(done.row_count > Some(0), "{filters:?} matches no row: the data does not exercise it");
        let expected = earlier_bytes(&mut conn, tenant.org, *format, filters);
        let file = file_of(&root, &done);
        assert!(
            file == expected,
            "{format:?} {filters:?} differs:\n--- now\n{}\n--- earlier\n{}",
            String::from_utf8_lossy(&file),
            String::from_utf8_lossy(&expected)
        );
    }
    // The name filter's quote, `%`, `_` and backslash are matched literally.
    let by_name =
        ExportFilters::Products(ProductFilters { sku_prefix: None, q: NameSearch::parse(AWKWARD_Q).unwrap() });
    let (id, _, _) =
        requested.iter().find(|(_, format, filters)| *format == ExportFormat::Jsonl && *filters == by_name).unwrap();
    let file = file_of(&root, &row(&app, &tenant, *id));
    let line: serde_json::Value = serde_json::from_slice(file.strip_suffix(b"\n").unwrap()).unwrap();
    assert_eq!(line["name"], AWKWARD_NAME);
}

#[tokio::test]
async fn csv_cells_a_spreadsheet_would_run_start_with_a_quote_and_json_lines_stay_exact() {
    let app = spawn_worker(TestApp::builder()).await;
    let relay = Relay::start(&app.env);
    let mut conn = app.database.connect();
    let tenant = seed(&mut conn, 0);
    let notes = ["=1+2", "+3", "-4", "@SUM(A1)", "\tTabbed", "\rCR", "safe = text", "'quoted already", ""];
    diesel::sql_query(
        "UPDATE products SET name = CASE sku WHEN 'A_1' THEN '=HYPERLINK(\"http://evil\")' ELSE '+Plus' END, \
                             unit = CASE sku WHEN 'A_1' THEN '@kg' ELSE '-' END \
         WHERE org_id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(tenant.org)
    .execute(&mut conn)
    .unwrap();
    for (n, note) in notes.iter().enumerate() {
        diesel::sql_query(
            "INSERT INTO batches (org_id, product_id, code, quantity, produced_at, notes) \
             VALUES ($1, $2, 'LOT-' || $3, 1, timestamptz '2026-01-01' + $3 * interval '1 hour', $4)",
        )
        .bind::<diesel::sql_types::Uuid, _>(tenant.org)
        .bind::<diesel::sql_types::Uuid, _>(tenant.products[0])
        .bind::<diesel::sql_types::Integer, _>(n as i32)
        .bind::<Text, _>(*note)
        .execute(&mut conn)
        .unwrap();
    }
    let batches = || ExportFilters::Batches(Default::default());
    let products = || ExportFilters::Products(Default::default());
    let ids = [
        request(&mut conn, &tenant, ExportFormat::Csv, batches()),
        request(&mut conn, &tenant, ExportFormat::Csv, products()),
        request(&mut conn, &tenant, ExportFormat::Jsonl, batches()),
        request(&mut conn, &tenant, ExportFormat::Jsonl, products()),
    ];
    relay.relay.kick();
    let root = media_root(&app.env);
    let mut files = Vec::new();
    for id in ids {
        let done = wait_status(&app, &tenant, id, "succeeded", Duration::from_secs(30)).await;
        files.push(String::from_utf8(file_of(&root, &done)).unwrap());
    }

    let batch_csv = &files[0];
    for cell in [",'=1+2,{}", ",'+3,{}", ",'-4,{}", ",'@SUM(A1),{}", ",'\tTabbed,{}", ",\"'\rCR\",{}"] {
        assert!(batch_csv.contains(cell), "{cell:?} not in\n{batch_csv}");
    }
    // COPY quotes an empty string to tell it from NULL.
    for untouched in [",safe = text,{}", ",'quoted already,{}", ",\"\",{}"] {
        assert!(batch_csv.contains(untouched), "{untouched:?} not in\n{batch_csv}");
    }
    assert_eq!(batch_csv.matches(",'@kg,").count(), notes.len(), "the product's unit, on every batch");
    let product_csv = &files[1];
    for cell in [",\"'=HYPERLINK(\"\"http://evil\"\")\",'@kg,", ",'+Plus,'-,"] {
        assert!(product_csv.contains(cell), "{cell:?} not in\n{product_csv}");
    }

    let lines =
        |text: &str| -> Vec<serde_json::Value> { text.lines().map(|l| serde_json::from_str(l).unwrap()).collect() };
    let mut written: Vec<String> = lines(&files[2]).iter().map(|b| b["notes"].as_str().unwrap().to_owned()).collect();
    let mut expected: Vec<String> = notes.iter().map(|note| (*note).to_owned()).collect();
    written.sort();
    expected.sort();
    assert_eq!(written, expected, "JSON lines keep every note exactly");
    assert!(lines(&files[2]).iter().all(|b| b["unit"] == "@kg"));
    let mut names: Vec<(String, String)> = lines(&files[3])
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_owned(), p["unit"].as_str().unwrap().to_owned()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [("+Plus".to_owned(), "-".to_owned()), ("=HYPERLINK(\"http://evil\")".to_owned(), "@kg".to_owned())]
    );
}

/// Every statement a connection sends, as Diesel renders it.
#[derive(Clone, Default)]
struct Sent(Arc<Mutex<Vec<String>>>);

impl Instrumentation for Sent {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            self.0.lock().unwrap().push(query.to_string());
        }
    }
}

#[tokio::test]
async fn export_query_prints_the_statement_the_worker_sends_with_postgresql_quoting_the_values() {
    let database = TestDatabase::create();
    let mut conn = database.connect();
    let tenant = seed_awkward(&mut conn);
    let cases = [
        (
            ExportFormat::Csv,
            r#"{"status":"completed","produced_from":"2026-01-01T20:00:00.5Z"}"#,
            vec!["b.status = 'completed'", "b.produced_at >= '2026-01-01T20:00:00.500+00:00'::timestamptz"],
        ),
        (ExportFormat::Jsonl, r#"{"product_id":"PRODUCT"}"#, vec!["b.product_id = 'PRODUCT'::uuid"]),
        (
            ExportFormat::Csv,
            &format!(r#"{{"q":{}}}"#, serde_json::json!(AWKWARD_Q)),
            vec![r"ILIKE E'%o''brien 50\\% \\_fine\\_ \\\\%'"],
        ),
    ];
    for (format, filters, fragments) in cases {
        let filters = filters.replace("PRODUCT", &tenant.products[0].to_string());
        let kind = if filters.contains("\"q\"") { "products" } else { "batches" };
        let output = std::process::Command::new(BINARY)
            .env_clear()
            .env("DATABASE_URL", database.url())
            .args(["export-query", "--org", &tenant.org.to_string(), "--kind", kind, "--format", format.as_str()])
            .args(["--filters", &filters])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let script = String::from_utf8(output.stdout).unwrap();
        let org_literal = format!("'{}'::uuid", tenant.org);
        for fragment in
            fragments.iter().map(|f| f.replace("PRODUCT", &tenant.products[0].to_string())).chain([org_literal])
        {
            assert!(script.contains(&fragment), "{fragment:?} not in\n{script}");
        }
        assert!(!script.contains("current_setting"), "{script}");

        // The COPY line is exactly what the worker's code sends.
        let stored = ExportFilters::from_json(
            stockflow_domain::ExportKind::parse(kind).unwrap(),
            serde_json::from_str(&filters).unwrap(),
        )
        .unwrap();
        let sent = Sent::default();
        let mut watched = database.connect();
        watched.set_instrumentation(sent.clone());
        let rows =
            watched.transaction(|conn| exports::copy_out(conn, tenant.org, format, &stored, |_| Ok(()))).unwrap();
        assert!(rows > 0, "the filters {filters} match nothing");
        let copy = sent.0.lock().unwrap().iter().find(|sql| sql.starts_with("COPY")).cloned().unwrap();
        let (copy, binds) = copy.split_once(" -- binds: ").unwrap();
        assert_eq!(binds, "[]", "a COPY takes no parameters");
        let printed = script.lines().last().unwrap();
        assert_eq!(printed.strip_suffix(';'), Some(copy));
        assert_eq!(
            script.lines().take(2).collect::<Vec<_>>(),
            ["SET TimeZone = 'UTC';", "SET DateStyle = 'ISO, YMD';"]
        );
    }
}
