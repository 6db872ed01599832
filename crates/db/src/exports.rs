//! Export rows: created with their job in one transaction, run by the
//! worker under a row lock, and streamed out of PostgreSQL with `COPY`.

use crate::outbox;
use crate::page::{After, WriteError, escape_like};
use crate::schema::exports;
use chrono::{DateTime, Utc};
use diesel::pg::{CopyFormat, CopyTarget, Pg};
use diesel::prelude::*;
use diesel::query_builder::AstPass;
use diesel::sql_types::{Bool, Text};
use std::io::BufRead;
use stockflow_domain::{Envelope, ExportFilters, ExportFormat, ExportKind, ExportRequested, ExportStatus};
use uuid::Uuid;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = exports)]
pub struct ExportRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub requested_by: Option<Uuid>,
    pub kind: String,
    pub format: String,
    pub filters: serde_json::Value,
    pub status: String,
    pub attempts: i32,
    pub storage_key: Option<String>,
    pub row_count: Option<i64>,
    pub size_bytes: Option<i64>,
    pub sha256: Option<Vec<u8>>,
    pub error: Option<String>,
    pub idempotency_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl ExportRow {
    /// The status as the domain knows it; the CHECK constraint keeps the
    /// column to these values.
    pub fn status(&self) -> ExportStatus {
        ExportStatus::parse(&self.status).unwrap_or(ExportStatus::Failed)
    }
}

pub struct NewExport<'a> {
    pub requested_by: Uuid,
    pub format: ExportFormat,
    pub filters: &'a ExportFilters,
    pub idempotency_key: Option<&'a str>,
    /// The request id, carried by the job so logs of both ends meet.
    pub correlation_id: &'a str,
}

pub enum Created {
    /// A new export, with the id of its job in the outbox.
    New { export: ExportRow, job: Uuid },
    /// The export an earlier request with the same idempotency key made.
    Existing(ExportRow),
}

/// Writes the export and its job in one transaction, so there is never an
/// export without a job or a job without an export.
pub fn create(conn: &mut PgConnection, org: Uuid, new: &NewExport<'_>) -> Result<Created, WriteError> {
    let attempt = conn.transaction(|conn| {
        if let Some(existing) = find_by_idempotency_key(conn, org, new.idempotency_key)? {
            return Ok(Created::Existing(existing));
        }
        let export: ExportRow = diesel::insert_into(exports::table)
            .values((
                exports::org_id.eq(org),
                exports::requested_by.eq(new.requested_by),
                exports::kind.eq(new.filters.kind().as_str()),
                exports::format.eq(new.format.as_str()),
                exports::filters.eq(new.filters.to_json()),
                exports::idempotency_key.eq(new.idempotency_key),
            ))
            .returning(ExportRow::as_returning())
            .get_result(conn)?;
        let envelope = Envelope::new(ExportRequested { export_id: export.id, org_id: org }, new.correlation_id);
        outbox::insert(conn, &envelope)?;
        Ok(Created::New { export, job: envelope.id })
    });
    match attempt {
        // Two requests with one key raced; the loser returns the winner's.
        Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, info))
            if info.constraint_name() == Some("exports_org_idempotency_key") =>
        {
            find_by_idempotency_key(conn, org, new.idempotency_key)?
                .map(Created::Existing)
                .ok_or(WriteError::Taken { field: "idempotency_key" })
        }
        other => Ok(other?),
    }
}

fn find_by_idempotency_key(conn: &mut PgConnection, org: Uuid, key: Option<&str>) -> QueryResult<Option<ExportRow>> {
    let Some(key) = key else { return Ok(None) };
    exports::table
        .filter(exports::org_id.eq(org).and(exports::idempotency_key.eq(key)))
        .select(ExportRow::as_select())
        .first(conn)
        .optional()
}

pub fn find(conn: &mut PgConnection, org: Uuid, id: Uuid) -> QueryResult<Option<ExportRow>> {
    exports::table
        .filter(exports::org_id.eq(org).and(exports::id.eq(id)))
        .select(ExportRow::as_select())
        .first(conn)
        .optional()
}

/// Newest first; `after` is the last row of the previous page.
pub fn list(conn: &mut PgConnection, org: Uuid, after: Option<&After>, limit: i64) -> QueryResult<Vec<ExportRow>> {
    let mut query = exports::table.filter(exports::org_id.eq(org)).into_boxed();
    if let Some(after) = after {
        query = query.filter(
            exports::created_at.lt(after.at).or(exports::created_at.eq(after.at).and(exports::id.lt(after.id))),
        );
    }
    query.order((exports::created_at.desc(), exports::id.desc())).limit(limit).select(ExportRow::as_select()).load(conn)
}

/// Records that a worker took the export: `running`, one more attempt.
/// Returns the row as it is now; a finished export is left as it is.
pub fn start_attempt(conn: &mut PgConnection, id: Uuid) -> QueryResult<Option<ExportRow>> {
    conn.transaction(|conn| {
        let Some(row) = lock(conn, id)? else { return Ok(None) };
        if row.status().is_finished() {
            return Ok(Some(row));
        }
        diesel::update(exports::table.find(id))
            .set((
                exports::status.eq(ExportStatus::Running.as_str()),
                exports::attempts.eq(exports::attempts + 1),
                exports::started_at.eq(diesel::dsl::now),
            ))
            .returning(ExportRow::as_returning())
            .get_result(conn)
            .optional()
    })
}

/// `SELECT ... FOR UPDATE`: held until the caller's transaction ends, so
/// two deliveries of one job never run it at once.
pub fn lock(conn: &mut PgConnection, id: Uuid) -> QueryResult<Option<ExportRow>> {
    exports::table.find(id).for_update().select(ExportRow::as_select()).first(conn).optional()
}

/// What a finished run measured.
pub struct Produced<'a> {
    pub storage_key: &'a str,
    pub row_count: u64,
    pub size_bytes: u64,
    pub sha256: [u8; 32],
    pub retention: chrono::Duration,
}

pub fn mark_succeeded(conn: &mut PgConnection, id: Uuid, produced: &Produced<'_>) -> QueryResult<usize> {
    let now = Utc::now();
    diesel::update(exports::table.find(id))
        .set((
            exports::status.eq(ExportStatus::Succeeded.as_str()),
            exports::storage_key.eq(produced.storage_key),
            exports::row_count.eq(i64::try_from(produced.row_count).unwrap_or(i64::MAX)),
            exports::size_bytes.eq(i64::try_from(produced.size_bytes).unwrap_or(i64::MAX)),
            exports::sha256.eq(produced.sha256.as_slice()),
            exports::error.eq(None::<String>),
            exports::finished_at.eq(now),
            exports::expires_at.eq(now + produced.retention),
        ))
        .execute(conn)
}

/// Gives up on an export, unless it finished meanwhile.
pub fn mark_failed(conn: &mut PgConnection, id: Uuid, error: &str) -> QueryResult<usize> {
    let unfinished = [ExportStatus::Queued.as_str(), ExportStatus::Running.as_str()];
    diesel::update(exports::table.find(id).filter(exports::status.eq_any(unfinished)))
        .set((
            exports::status.eq(ExportStatus::Failed.as_str()),
            exports::error.eq(error),
            exports::finished_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
}

/// One JSON document per line, untouched: CSV mode with a quote and a
/// delimiter that JSON text never contains, so nothing gets quoted or
/// escaped (text mode would double every backslash).
macro_rules! raw_lines {
    ($target:expr) => {
        diesel::copy_to($target)
            .with_format(CopyFormat::Csv)
            .with_quote(NEVER_IN_JSON.0)
            .with_delimiter(NEVER_IN_JSON.1)
    };
}

/// JSON escapes every control character inside strings and has none outside.
const NEVER_IN_JSON: (char, char) = ('\u{1}', '\u{2}');

/// Streams the export's rows out of PostgreSQL into `sink`, a chunk at a
/// time, and returns how many rows it wrote. Runs inside the caller's
/// transaction: the filters are transaction-local settings, read by the
/// statement below as bound values never spliced into SQL.
pub fn copy_out(
    conn: &mut PgConnection,
    org: Uuid,
    format: ExportFormat,
    filters: &ExportFilters,
    mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<u64, CopyError> {
    set_local(conn, "TimeZone", "UTC")?;
    set_local(conn, "DateStyle", "ISO, YMD")?;
    set_local(conn, "stockflow.export_org_id", &org.to_string())?;
    match filters {
        ExportFilters::Batches(f) => {
            let text = |value: Option<String>| value.unwrap_or_default();
            set_local(conn, "stockflow.export_product_id", &text(f.product_id.map(|id| id.to_string())))?;
            set_local(conn, "stockflow.export_status", &text(f.status.map(|s| s.as_str().to_owned())))?;
            set_local(conn, "stockflow.export_produced_from", &text(f.produced_from.map(|at| at.to_rfc3339())))?;
            set_local(conn, "stockflow.export_produced_to", &text(f.produced_to.map(|at| at.to_rfc3339())))?;
        }
        ExportFilters::Products(f) => {
            let prefix = f.sku_prefix.as_ref().map(|p| format!("{}%", escape_like(p.as_str()))).unwrap_or_default();
            let name = f.q.as_deref().map(|q| format!("%{}%", escape_like(q))).unwrap_or_default();
            set_local(conn, "stockflow.export_sku_like", &prefix)?;
            set_local(conn, "stockflow.export_name_like", &name)?;
        }
    }
    let mut counter = RowCounter::new(format);
    let mut pump = |mut reader: Box<dyn BufRead + '_>| -> Result<(), CopyError> {
        loop {
            let chunk = reader.fill_buf().map_err(CopyError::Read)?;
            if chunk.is_empty() {
                return Ok(());
            }
            counter.feed(chunk);
            sink(chunk).map_err(CopyError::Sink)?;
            let len = chunk.len();
            reader.consume(len);
        }
    };
    match (filters.kind(), format) {
        (ExportKind::Batches, ExportFormat::Csv) => {
            pump(Box::new(diesel::copy_to(BatchRows).with_format(CopyFormat::Csv).with_header(true).load_raw(conn)?))?
        }
        (ExportKind::Batches, ExportFormat::Jsonl) => pump(Box::new(raw_lines!(BatchJson).load_raw(conn)?))?,
        (ExportKind::Products, ExportFormat::Csv) => {
            pump(Box::new(diesel::copy_to(ProductRows).with_format(CopyFormat::Csv).with_header(true).load_raw(conn)?))?
        }
        (ExportKind::Products, ExportFormat::Jsonl) => pump(Box::new(raw_lines!(ProductJson).load_raw(conn)?))?,
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

/// Counts rows as the bytes go by: CSV rows end at a newline outside
/// quotes (notes may hold newlines), less the header; JSON lines at every
/// newline, since JSON escapes its own.
struct RowCounter {
    format: ExportFormat,
    newlines: u64,
    in_quotes: bool,
}

impl RowCounter {
    fn new(format: ExportFormat) -> Self {
        Self { format, newlines: 0, in_quotes: false }
    }

    fn feed(&mut self, chunk: &[u8]) {
        match self.format {
            ExportFormat::Jsonl => self.newlines += chunk.iter().filter(|&&byte| byte == b'\n').count() as u64,
            ExportFormat::Csv => {
                for &byte in chunk {
                    match byte {
                        // A doubled quote inside a field toggles twice.
                        b'"' => self.in_quotes = !self.in_quotes,
                        b'\n' if !self.in_quotes => self.newlines += 1,
                        _ => {}
                    }
                }
            }
        }
    }

    fn rows(&self) -> u64 {
        match self.format {
            ExportFormat::Jsonl => self.newlines,
            ExportFormat::Csv => self.newlines.saturating_sub(1),
        }
    }
}

/// The columns of a batch export, shared by both formats. Quantities are
/// text, as the API serves them, so no float ever rounds them. The product's
/// SKU and unit come from scalar subqueries, not a join: the filters below
/// hide their selectivity from the planner, which then estimates one batch
/// and joins by scanning products once per batch (12 s instead of 8.7 s for
/// a million rows, measured with `psql \copy`).
const BATCH_SELECT: &str = "SELECT b.id, b.code, b.product_id, \
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

const PRODUCT_SELECT: &str = "SELECT p.id, p.sku, p.name, p.unit, p.custom_fields, p.created_at, p.updated_at \
     FROM products p \
     WHERE p.org_id = current_setting('stockflow.export_org_id')::uuid \
     AND (current_setting('stockflow.export_sku_like') = '' OR p.sku LIKE current_setting('stockflow.export_sku_like')) \
     AND (current_setting('stockflow.export_name_like') = '' \
          OR p.name ILIKE current_setting('stockflow.export_name_like')) \
     ORDER BY p.sku, p.id";

/// The SQL of an export, for the benchmark's `psql \copy` baseline and
/// for operators who want to run it by hand (after the same `set_config`s).
pub fn export_query(kind: ExportKind, format: ExportFormat) -> String {
    let select = match kind {
        ExportKind::Batches => BATCH_SELECT,
        ExportKind::Products => PRODUCT_SELECT,
    };
    match format {
        ExportFormat::Csv => select.to_owned(),
        ExportFormat::Jsonl => format!("SELECT row_to_json(r)::text FROM ({select}) r"),
    }
}

macro_rules! copy_query {
    ($name:ident, $kind:expr, $format:expr) => {
        /// `COPY (<export query>) TO STDOUT`: Diesel's `copy_to` takes a
        /// table or columns, so the query comes in as the copy target.
        struct $name;

        impl CopyTarget for $name {
            type Table = exports::table;
            type SqlType = Text;

            fn walk_target(mut pass: AstPass<'_, '_, Pg>) -> QueryResult<()> {
                pass.push_sql("(");
                pass.push_sql(&export_query($kind, $format));
                pass.push_sql(")");
                Ok(())
            }
        }
    };
}

copy_query!(BatchRows, ExportKind::Batches, ExportFormat::Csv);
copy_query!(BatchJson, ExportKind::Batches, ExportFormat::Jsonl);
copy_query!(ProductRows, ExportKind::Products, ExportFormat::Csv);
copy_query!(ProductJson, ExportKind::Products, ExportFormat::Jsonl);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_are_counted_outside_quotes_and_across_chunks() {
        let mut counter = RowCounter::new(ExportFormat::Csv);
        for chunk in ["id,notes\n1,\"two\nlines\"\n2,", "\"a \"\"quoted\"\"", " word\"\n3,plain\n"] {
            counter.feed(chunk.as_bytes());
        }
        assert_eq!(counter.rows(), 3);
    }

    #[test]
    fn json_lines_count_every_line() {
        let mut counter = RowCounter::new(ExportFormat::Jsonl);
        counter.feed(b"{\"notes\":\"a\\nb\"}\n{}\n");
        assert_eq!(counter.rows(), 2);
    }

    #[test]
    fn an_empty_csv_export_has_no_rows() {
        assert_eq!(RowCounter::new(ExportFormat::Csv).rows(), 0);
    }
}
