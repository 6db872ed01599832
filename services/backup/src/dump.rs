//! The database dump: pg_dump of a snapshot whose exact row counts are
//! recorded with it, streamed from pg_dump's stdout straight into backup
//! storage (no whole dump in memory, no copy on local disk).

use crate::BackupError;
use crate::tools::{ClientTarget, collect_stderr};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::process::Stdio;
use stockflow_storage::{Key, PutMode, Storage, Stored};

/// Table name -> exact row count, in name order.
pub type TableCounts = BTreeMap<String, i64>;

/// Starts the snapshot transaction on the session and exports it; the
/// snapshot lives until the transaction ends, so pg_dump must be done first.
pub(crate) fn begin_snapshot(conn: &mut PgConnection) -> Result<String, BackupError> {
    #[derive(QueryableByName)]
    struct Snapshot {
        #[diesel(sql_type = Text)]
        id: String,
    }
    diesel::sql_query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(conn)?;
    let snapshot: Snapshot = diesel::sql_query("SELECT pg_export_snapshot() AS id").get_result(conn)?;
    Ok(snapshot.id)
}

pub(crate) fn end_snapshot(conn: &mut PgConnection) -> Result<(), BackupError> {
    diesel::sql_query("COMMIT").execute(conn)?;
    Ok(())
}

/// Counts every table of the public schema (migrations' bookkeeping
/// included) exactly, in the current transaction's snapshot.
pub fn count_tables(conn: &mut PgConnection) -> Result<TableCounts, BackupError> {
    #[derive(QueryableByName)]
    struct Table {
        #[diesel(sql_type = Text)]
        name: String,
    }
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let tables: Vec<Table> = diesel::sql_query(
        "SELECT c.relname::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1",
    )
    .load(conn)?;
    let mut counts = TableCounts::new();
    for table in tables {
        let quoted = table.name.replace('"', "\"\"");
        let count: Count =
            diesel::sql_query(format!("SELECT count(*) AS n FROM public.\"{quoted}\"")).get_result(conn)?;
        counts.insert(table.name, count.n);
    }
    Ok(counts)
}

/// What pg_dump needs besides the snapshot.
pub(crate) struct DumpCommand<'a> {
    pub program: &'a str,
    pub compress: u8,
    pub database_url: &'a str,
}

/// Runs pg_dump on `snapshot`, its stdout piped into `storage` at `key`.
/// A pg_dump that fails leaves nothing at `key`.
#[tracing::instrument(skip_all, fields(key = %key.as_str()), err)]
pub(crate) async fn dump(
    command: DumpCommand<'_>,
    snapshot: &str,
    storage: &dyn Storage,
    key: &Key,
) -> Result<Stored, BackupError> {
    let mut pg_dump = tokio::process::Command::new(command.program);
    pg_dump
        .arg("--format=custom")
        .arg(format!("--compress={}", command.compress))
        .arg(format!("--snapshot={snapshot}"))
        .arg("--no-password");
    ClientTarget::new(command.database_url).apply(&mut pg_dump);
    let mut child = pg_dump
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| BackupError::Tool(format!("cannot run {}: {error}", command.program)))?;
    let stderr = collect_stderr(child.stderr.take());
    let stdout = child.stdout.take().ok_or_else(|| BackupError::Dump("pg_dump has no stdout".to_owned()))?;
    let body = tokio_util::io::ReaderStream::with_capacity(stdout, 256 * 1024).boxed();
    let stored = storage.put(key, body, PutMode::Overwrite).await;
    if stored.is_err() {
        // Nothing reads its output any more; do not wait for it to notice.
        let _ = child.start_kill();
    }
    let status = child.wait().await.map_err(|error| BackupError::Dump(error.to_string()));
    let stderr = stderr.await.unwrap_or_default();
    let failure = match (&stored, &status) {
        (Err(_), _) => None,
        (Ok(_), Ok(status)) if status.success() => None,
        (Ok(_), Ok(status)) => Some(BackupError::Dump(format!("{status}: {stderr}"))),
        (Ok(_), Err(error)) => Some(BackupError::Dump(error.to_string())),
    };
    if let Some(failure) = failure {
        storage.delete(key).await?;
        return Err(failure);
    }
    Ok(stored?)
}
