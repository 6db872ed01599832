//! The export's `COPY ... TO STDOUT`: a statement that names only the
//! filters present, with every value quoted by PostgreSQL itself, streamed
//! out a chunk at a time.

use diesel::pg::{CopyFormat, CopyTarget, Pg};
use diesel::prelude::*;
use diesel::query_builder::AstPass;
use diesel::sql_types::{Array, Bool, Text};
use std::cell::RefCell;
use std::io::BufRead;
use stockflow_domain::{ExportFilters, ExportFormat};
use uuid::Uuid;

use crate::page::escape_like;
use crate::schema::exports;

/// The session settings the statement's output depends on (how timestamps
/// are written), set for the export's transaction only.
const SESSION: [(&str, &str); 2] = [("TimeZone", "UTC"), ("DateStyle", "ISO, YMD")];

/// One JSON document per line, untouched: CSV mode with a quote and a
/// delimiter that JSON text never contains, so nothing gets quoted or
/// escaped (text mode would double every backslash). JSON escapes every
/// control character inside strings and has none outside.
const NEVER_IN_JSON: (char, char) = ('\u{1}', '\u{2}');

/// The options Diesel writes after `TO STDOUT` for each format, as the
/// builders in [`copy_out`] set them (a test of `export-query` in
/// services/worker/tests/export_files.rs checks they agree).
fn copy_options(format: ExportFormat) -> String {
    match format {
        ExportFormat::Csv => " WITH (FORMAT csv, HEADER 1)".to_owned(),
        ExportFormat::Jsonl => {
            format!(" WITH (FORMAT csv, DELIMITER '{}', QUOTE '{}')", NEVER_IN_JSON.1, NEVER_IN_JSON.0)
        }
    }
}

/// The whole statement the worker sends for this export, preceded by the
/// session settings it runs under: what `stockflow-worker export-query`
/// prints, to run by hand with `psql`.
pub fn copy_script(
    conn: &mut PgConnection,
    org: Uuid,
    format: ExportFormat,
    filters: &ExportFilters,
) -> QueryResult<String> {
    let query = select_statement(conn, org, format, filters)?;
    let mut script: String = SESSION.iter().map(|(name, value)| format!("SET {name} = '{value}';\n")).collect();
    script.push_str(&copy_statement(&query, format));
    script.push_str(";\n");
    Ok(script)
}

fn copy_statement(query: &str, format: ExportFormat) -> String {
    format!("COPY ({query}) TO STDOUT{}", copy_options(format))
}

/// Streams the export's rows out of PostgreSQL into `sink`, a chunk at a
/// time, and returns how many rows it wrote. Runs inside the caller's
/// transaction, whose settings it changes (see [`SESSION`]).
pub fn copy_out(
    conn: &mut PgConnection,
    org: Uuid,
    format: ExportFormat,
    filters: &ExportFilters,
    mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<u64, CopyError> {
    for (name, value) in SESSION {
        set_local(conn, name, value)?;
    }
    let query = select_statement(conn, org, format, filters)?;
    let mut counter = RowCounter::new(format);
    let mut pump = |mut reader: Box<dyn BufRead + '_>| -> Result<(), CopyError> {
        loop {
            let chunk = reader.fill_buf().map_err(CopyError::Read)?;
            if chunk.is_empty() {
                return Ok(());
            }
            counter.row(chunk).map_err(CopyError::Read)?;
            sink(chunk).map_err(CopyError::Sink)?;
            let len = chunk.len();
            reader.consume(len);
        }
    };
    {
        let _pending = PendingQuery::set(query);
        match format {
            ExportFormat::Csv => {
                let copy = diesel::copy_to(ExportQuery).with_format(CopyFormat::Csv).with_header(true);
                pump(Box::new(copy.load_raw(conn)?))?
            }
            ExportFormat::Jsonl => {
                let copy = diesel::copy_to(ExportQuery)
                    .with_format(CopyFormat::Csv)
                    .with_quote(NEVER_IN_JSON.0)
                    .with_delimiter(NEVER_IN_JSON.1);
                pump(Box::new(copy.load_raw(conn)?))?
            }
        }
    }
    // Diesel's `load_raw` leaves the COPY's closing result unread, and the
    // next prepared statement would fail with "another command is already
    // in progress". A simple-protocol statement (libpq's PQexec) reads and
    // discards it first.
    diesel::connection::SimpleConnection::batch_execute(conn, "SELECT 1")?;
    Ok(counter.rows())
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("the export query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("reading the COPY stream failed: {0}")]
    Read(std::io::Error),
    /// Whoever took the bytes stopped taking them (e.g. storage failed).
    #[error("the export's destination stopped taking data: {0}")]
    Sink(std::io::Error),
}

fn set_local(conn: &mut PgConnection, name: &str, value: &str) -> QueryResult<()> {
    diesel::select(
        diesel::dsl::sql::<Bool>("set_config(")
            .bind::<Text, _>(name)
            .sql(", ")
            .bind::<Text, _>(value)
            .sql(", true) IS NOT NULL"),
    )
    .execute(conn)?;
    Ok(())
}

/// The export's query with its values in place, as PostgreSQL's `format()`
/// writes them: the template is ours and holds only `%L` placeholders, each
/// value is a bound parameter that `%L` quotes as a literal. The statement
/// carries real values, so the planner sees each filter's selectivity.
fn select_statement(
    conn: &mut PgConnection,
    org: Uuid,
    format: ExportFormat,
    filters: &ExportFilters,
) -> QueryResult<String> {
    #[derive(QueryableByName)]
    struct Statement {
        #[diesel(sql_type = Text)]
        statement: String,
    }
    let template = Template::of(org, format, filters);
    diesel::sql_query("SELECT format($1, VARIADIC $2) AS statement")
        .bind::<Text, _>(&template.sql)
        .bind::<Array<Text>, _>(&template.values)
        .get_result::<Statement>(conn)
        .map(|row| row.statement)
}

/// An export's SELECT with `%L` where each value goes, and the values.
#[derive(Debug, PartialEq, Eq)]
struct Template {
    sql: String,
    values: Vec<String>,
}

impl Template {
    fn of(org: Uuid, format: ExportFormat, filters: &ExportFilters) -> Self {
        let mut template = Self { sql: String::with_capacity(1024), values: Vec::new() };
        let text = |column: &str| match format {
            ExportFormat::Csv => csv_text(column),
            ExportFormat::Jsonl => column.to_owned(),
        };
        match filters {
            ExportFilters::Batches(f) => {
                template.push(&format!(
                    "SELECT b.id, b.code, b.product_id, p.sku AS product_sku, b.quantity::text AS quantity, \
                     {} AS unit, b.status, b.produced_at, {} AS notes, b.metadata, b.created_at, b.updated_at \
                     FROM batches b JOIN products p ON (p.org_id, p.id) = (b.org_id, b.product_id) \
                     WHERE b.org_id = ",
                    text("p.unit"),
                    text("b.notes"),
                ));
                template.value(org.to_string(), "::uuid");
                if let Some(product) = f.product_id {
                    template.push(" AND b.product_id = ");
                    template.value(product.to_string(), "::uuid");
                }
                if let Some(status) = f.status {
                    template.push(" AND b.status = ");
                    template.value(status.as_str().to_owned(), "");
                }
                if let Some(from) = f.produced_from {
                    template.push(" AND b.produced_at >= ");
                    template.value(from.to_rfc3339(), "::timestamptz");
                }
                if let Some(to) = f.produced_to {
                    template.push(" AND b.produced_at < ");
                    template.value(to.to_rfc3339(), "::timestamptz");
                }
                template.push(" ORDER BY b.produced_at, b.id");
            }
            ExportFilters::Products(f) => {
                template.push(&format!(
                    "SELECT p.id, p.sku, {} AS name, {} AS unit, p.custom_fields, p.created_at, p.updated_at \
                     FROM products p WHERE p.org_id = ",
                    text("p.name"),
                    text("p.unit"),
                ));
                template.value(org.to_string(), "::uuid");
                if let Some(prefix) = &f.sku_prefix {
                    template.push(" AND p.sku LIKE ");
                    template.value(format!("{}%", escape_like(prefix.as_str())), "");
                }
                if let Some(q) = &f.q {
                    template.push(" AND p.name ILIKE ");
                    template.value(format!("%{}%", escape_like(q)), "");
                }
                template.push(" ORDER BY p.sku, p.id");
            }
        }
        if format == ExportFormat::Jsonl {
            template.sql = format!("SELECT row_to_json(r)::text FROM ({}) r", template.sql);
        }
        template
    }

    /// SQL of ours; `format()` reads `%` as the start of a placeholder,
    /// and no fragment here has one.
    fn push(&mut self, sql: &str) {
        debug_assert!(!sql.contains('%'), "a literal % in the template: {sql}");
        self.sql.push_str(sql);
    }

    fn value(&mut self, value: String, cast: &str) {
        self.sql.push_str("%L");
        self.sql.push_str(cast);
        self.values.push(value);
    }
}

/// A column of user text as a CSV cell. A cell starting with `=`, `+`, `-`,
/// `@`, a tab or a carriage return is run as a formula by spreadsheets
/// (OWASP "CSV injection"); a leading `'` makes it text. Only the columns
/// people type freely need it: SKUs and batch codes start with a letter or
/// a digit (a CHECK), quantities are numbers >= 0, the rest are ids,
/// statuses, timestamps and JSON objects.
fn csv_text(column: &str) -> String {
    format!(
        "CASE WHEN left({column}, 1) IN ('=', '+', '-', '@', chr(9), chr(13)) \
         THEN '''' || {column} ELSE {column} END"
    )
}

thread_local! {
    /// The query of the `COPY` this thread is about to send. Diesel writes a
    /// `COPY` target from its type alone (`CopyTarget::walk_target` takes no
    /// value), so a query built per export reaches it through here.
    static PENDING_QUERY: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Holds the pending query while Diesel builds and sends the statement;
/// clears it when dropped, so no later `COPY` can pick it up by mistake.
struct PendingQuery;

impl PendingQuery {
    fn set(query: String) -> Self {
        PENDING_QUERY.with_borrow_mut(|pending| *pending = Some(query));
        Self
    }
}

impl Drop for PendingQuery {
    fn drop(&mut self) {
        PENDING_QUERY.with_borrow_mut(|pending| *pending = None);
    }
}

/// `COPY (<the pending query>) TO STDOUT`.
struct ExportQuery;

impl CopyTarget for ExportQuery {
    type Table = exports::table;
    type SqlType = Text;

    fn walk_target(mut pass: AstPass<'_, '_, Pg>) -> QueryResult<()> {
        PENDING_QUERY.with_borrow(|pending| {
            let query = pending.as_deref().ok_or_else(|| {
                diesel::result::Error::QueryBuilderError("no export query is pending on this thread".into())
            })?;
            pass.push_sql("(");
            pass.push_sql(query);
            pass.push_sql(")");
            Ok(())
        })
    }
}

/// Counts rows as they are read. libpq hands over a `COPY` one whole row
/// per call ("data is always returned one data row at a time"), and
/// Diesel's reader passes each on as it is, so a chunk is a row. A row
/// always ends with a newline: a chunk that does not means rows arrive
/// split, and the export fails rather than report a wrong count. (Scanning
/// the bytes for newlines outside quotes instead cost the worker as much
/// CPU as hashing the file.)
struct RowCounter {
    format: ExportFormat,
    lines: u64,
}

impl RowCounter {
    fn new(format: ExportFormat) -> Self {
        Self { format, lines: 0 }
    }

    fn row(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        if chunk.last() != Some(&b'\n') {
            return Err(std::io::Error::other("a COPY row arrived split across reads"));
        }
        self.lines += 1;
        Ok(())
    }

    /// Data rows: CSV's first line is its header.
    fn rows(&self) -> u64 {
        match self.format {
            ExportFormat::Jsonl => self.lines,
            ExportFormat::Csv => self.lines.saturating_sub(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use stockflow_domain::{BatchFilters, BatchStatus, NameSearch, ProductFilters, SkuPrefix};

    #[test]
    fn a_csv_row_is_one_read_whatever_lines_its_fields_hold_and_the_header_is_not_a_row() {
        let mut counter = RowCounter::new(ExportFormat::Csv);
        for row in ["id,notes\n", "1,\"two\nlines\"\n", "2,\"a \"\"quoted\"\" word\"\n", "3,plain\n"] {
            counter.row(row.as_bytes()).unwrap();
        }
        assert_eq!(counter.rows(), 3);
    }

    #[test]
    fn every_json_line_is_a_row() {
        let mut counter = RowCounter::new(ExportFormat::Jsonl);
        counter.row(b"{\"notes\":\"a\\nb\"}\n").unwrap();
        counter.row(b"{}\n").unwrap();
        assert_eq!(counter.rows(), 2);
    }

    #[test]
    fn a_row_split_across_reads_is_an_error_not_a_wrong_count() {
        let mut counter = RowCounter::new(ExportFormat::Jsonl);
        assert!(counter.row(b"{\"notes\":").is_err());
    }

    #[test]
    fn an_empty_csv_export_has_no_rows() {
        assert_eq!(RowCounter::new(ExportFormat::Csv).rows(), 0);
    }

    #[test]
    fn the_template_names_only_the_filters_present_and_never_holds_a_value() {
        let org = Uuid::from_u128(1);
        let bare = Template::of(org, ExportFormat::Csv, &ExportFilters::Batches(BatchFilters::default()));
        assert_eq!(bare.values, [org.to_string()]);
        assert!(bare.sql.contains("WHERE b.org_id = %L::uuid ORDER BY b.produced_at, b.id"), "{}", bare.sql);
        assert!(bare.sql.contains("JOIN products p ON (p.org_id, p.id) = (b.org_id, b.product_id)"));
        assert!(!bare.sql.contains("current_setting"));

        let from: DateTime<Utc> = DateTime::UNIX_EPOCH;
        let all = BatchFilters {
            product_id: Some(Uuid::from_u128(2)),
            status: Some(BatchStatus::InProgress),
            produced_from: Some(from),
            produced_to: Some(from + chrono::Duration::days(1)),
        };
        let full = Template::of(org, ExportFormat::Jsonl, &ExportFilters::Batches(all));
        assert_eq!(full.values.len(), 5);
        assert_eq!(full.values[2], "in_progress");
        assert_eq!(full.sql.matches("%L").count(), 5);
        assert!(full.sql.starts_with("SELECT row_to_json(r)::text FROM (SELECT "));
        assert!(full.sql.contains("AND b.produced_at >= %L::timestamptz AND b.produced_at < %L::timestamptz"));

        let text = "50%_o'k\\";
        let filters =
            ProductFilters { sku_prefix: Some(SkuPrefix::parse("A_").unwrap()), q: NameSearch::parse(text).unwrap() };
        let products = Template::of(org, ExportFormat::Csv, &ExportFilters::Products(filters));
        assert_eq!(products.values, [org.to_string(), "A\\_%".to_owned(), "%50\\%\\_o'k\\\\%".to_owned()]);
        assert!(!products.sql.contains(text) && !products.sql.contains("o'k"), "user text stays out of the SQL");
    }

    #[test]
    fn only_free_text_columns_are_neutralised_and_only_in_csv() {
        let org = Uuid::from_u128(1);
        let batches = ExportFilters::Batches(BatchFilters::default());
        let csv = Template::of(org, ExportFormat::Csv, &batches).sql;
        assert!(csv.contains(&format!("{} AS notes", csv_text("b.notes"))), "{csv}");
        assert!(csv.contains(&format!("{} AS unit", csv_text("p.unit"))), "{csv}");
        assert_eq!(csv.matches("CASE WHEN").count(), 2);
        let products = Template::of(org, ExportFormat::Csv, &ExportFilters::Products(ProductFilters::default())).sql;
        assert!(products.contains(&format!("{} AS name", csv_text("p.name"))), "{products}");
        assert_eq!(products.matches("CASE WHEN").count(), 2);
        assert!(!Template::of(org, ExportFormat::Jsonl, &batches).sql.contains("CASE"));
    }
}
