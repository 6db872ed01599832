//! `export.requested`: stream an export's rows out of PostgreSQL into the
//! media store and record what was written, exactly once however often the
//! job is delivered.

use crate::turns::Turns;
use bytes::{Bytes, BytesMut};
use diesel::Connection;
use std::sync::Arc;
use std::time::Instant;
use stockflow_db::exports::{self, CopyError, ExportFailure, Produced};
use stockflow_db::{Database, DbError};
use stockflow_domain::{Envelope, ExportFilters, ExportFormat, ExportKind, ExportRequested};
use stockflow_queue::{Handler, HandlerError};
use stockflow_storage::{ExportExt, Key, PutMode, Storage, StorageError};
use uuid::Uuid;

/// Bytes handed to storage at a time, and how many such chunks may wait:
/// bounds the memory an export uses, whatever its size.
const CHUNK_BYTES: usize = 256 * 1024;
const CHUNKS_IN_FLIGHT: usize = 4;

pub(crate) struct ExportHandler {
    pub(crate) database: Database,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) retention: chrono::Duration,
    /// Exports that run at once, taken in turn by organization.
    pub(crate) turns: Turns,
}

#[derive(Debug, thiserror::Error)]
enum ExportError {
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
    #[error(transparent)]
    Pool(#[from] DbError),
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The row cannot be exported as it is; retrying will not help.
    #[error("{0}")]
    Invalid(String),
    #[error("the export task stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl ExportError {
    /// What the export's client is told if this error ends it.
    fn failure(&self) -> ExportFailure {
        match self {
            Self::Database(_) | Self::Pool(_) | Self::Copy(CopyError::Query(_) | CopyError::Read(_)) => {
                ExportFailure::Database
            }
            Self::Storage(_) | Self::Copy(CopyError::Sink(_)) => ExportFailure::Storage,
            Self::Invalid(_) => ExportFailure::Invalid,
            Self::Task(_) => ExportFailure::Internal,
        }
    }
}

/// The reason a job carries (into logs and its dead letter) starts with
/// what the client will be told, then the detail, which only operators see:
/// `storage_error: storage: ...`.
impl From<ExportError> for HandlerError {
    fn from(error: ExportError) -> Self {
        let reason = format!("{}: {error}", error.failure());
        match error {
            ExportError::Invalid(_) => Self::Fail(reason),
            _ => Self::Retry(reason),
        }
    }
}

/// The client's part of a reason made as above; anything else is internal.
pub(crate) fn failure_of(reason: &str) -> ExportFailure {
    reason.split_once(':').and_then(|(failure, _)| ExportFailure::parse(failure)).unwrap_or(ExportFailure::Internal)
}

enum Ran {
    Produced { rows: u64, bytes: u64 },
    AlreadyFinished,
    Gone,
}

impl Handler<ExportRequested> for ExportHandler {
    async fn handle(&self, envelope: Envelope<ExportRequested>) -> Result<(), HandlerError> {
        let ExportRequested { export_id, org_id } = envelope.payload;
        let retry = |error: DbError| HandlerError::Retry(format!("{}: {error}", ExportFailure::Database));
        // A job must name an export of its own organization; anything else
        // is refused before any row is touched.
        let named = self.database.run(move |conn| Ok::<_, DbError>(exports::find(conn, org_id, export_id)?)).await;
        if named.map_err(retry)?.is_none() {
            let owner = self.database.run(move |conn| Ok::<_, DbError>(exports::owner(conn, export_id)?)).await;
            return Err(HandlerError::Fail(match owner.map_err(retry)? {
                Some(_) => format!("export {export_id} belongs to another organization than {org_id}"),
                None => format!("export {export_id} does not exist"),
            }));
        }
        let Some(_slot) = self.turns.take(org_id).await else {
            return Err(HandlerError::Retry("the worker is stopping".to_owned()));
        };
        let started = Instant::now();
        let row = self
            .database
            .run(move |conn| Ok::<_, DbError>(exports::start_attempt(conn, org_id, export_id)?))
            .await
            .map_err(retry)?;
        match row {
            None => {
                tracing::warn!(%export_id, "the export was deleted before it started; nothing to do");
                return Ok(());
            }
            Some(row) if row.status().is_finished() => {
                tracing::info!(%export_id, status = %row.status, "the export already finished; skipping");
                return Ok(());
            }
            Some(_) => {}
        }
        let database = self.database.clone();
        let storage = Arc::clone(&self.storage);
        let retention = self.retention;
        let runtime = tokio::runtime::Handle::current();
        let ran =
            tokio::task::spawn_blocking(move || produce(&database, &storage, &runtime, org_id, export_id, retention))
                .await
                .map_err(ExportError::from)??;
        match ran {
            Ran::Produced { rows, bytes } => {
                tracing::info!(%export_id, rows, bytes, seconds = started.elapsed().as_secs_f64(), "export written")
            }
            Ran::AlreadyFinished => tracing::info!(%export_id, "another delivery finished the export first"),
            Ran::Gone => tracing::warn!(%export_id, "the export was deleted while it ran"),
        }
        Ok(())
    }

    /// Marks the export failed with the client's part of the reason only.
    async fn give_up(&self, envelope: &Envelope<ExportRequested>, reason: &str) -> Result<(), String> {
        let ExportRequested { export_id, org_id } = envelope.payload;
        let failure = failure_of(reason);
        self.database
            .run(move |conn| Ok::<_, DbError>(exports::mark_failed(conn, org_id, export_id, failure)?))
            .await
            .map(drop)
            .map_err(|error| error.to_string())
    }
}

/// The whole export in one transaction that holds the row lock: a second
/// delivery waits on the lock, then finds the export finished. The file is
/// written with Overwrite, so a run that died after its put but before its
/// commit is simply redone.
fn produce(
    database: &Database,
    storage: &Arc<dyn Storage>,
    runtime: &tokio::runtime::Handle,
    org: Uuid,
    export_id: Uuid,
    retention: chrono::Duration,
) -> Result<Ran, ExportError> {
    let mut conn = database.get()?;
    conn.transaction(|conn| {
        let Some(row) = exports::lock(conn, org, export_id)? else { return Ok(Ran::Gone) };
        if row.status().is_finished() {
            return Ok(Ran::AlreadyFinished);
        }
        let invalid = |what: &str| ExportError::Invalid(format!("export {export_id} has an invalid {what}"));
        let kind = ExportKind::parse(&row.kind).map_err(|_| invalid("kind"))?;
        let format = ExportFormat::parse(&row.format).map_err(|_| invalid("format"))?;
        let filters = ExportFilters::from_json(kind, row.filters.clone()).map_err(|_| invalid("filters"))?;
        let ext = match format {
            ExportFormat::Csv => ExportExt::Csv,
            ExportFormat::Jsonl => ExportExt::Jsonl,
        };
        let key = Key::export(org, export_id, ext);
        // We hold the row lock, so no other put of this key is running:
        // whatever is there was left by a run that died.
        let discarded = runtime.block_on(storage.discard_incomplete(&key))?;
        if discarded > 0 {
            tracing::info!(%export_id, discarded, "removed what an interrupted run left");
        }

        let (chunks, receiver) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(CHUNKS_IN_FLIGHT);
        let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|chunk| (chunk, receiver))
        });
        let put = runtime.spawn({
            let (storage, key) = (Arc::clone(storage), key.clone());
            async move { storage.put(&key, Box::pin(body), PutMode::Overwrite).await }
        });
        let mut buffer = BytesMut::with_capacity(CHUNK_BYTES);
        let copied = exports::copy_out(conn, org, format, &filters, |bytes| {
            buffer.extend_from_slice(bytes);
            if buffer.len() >= CHUNK_BYTES {
                let chunk = buffer.split().freeze();
                chunks.blocking_send(Ok(chunk)).map_err(|_| std::io::Error::other("the storage put stopped"))?;
            }
            Ok(())
        });
        let rows = match copied {
            Ok(rows) => rows,
            Err(error) => {
                // Fail the put rather than end its body: an ended body would
                // store a truncated file.
                let _ = chunks.blocking_send(Err(std::io::Error::other("the export query failed")));
                drop(chunks);
                let put = runtime.block_on(put);
                return Err(match (error, put) {
                    // The store stopped taking bytes: its own error says why.
                    (CopyError::Sink(_), Ok(Err(storage))) => storage.into(),
                    (error, _) => error.into(),
                });
            }
        };
        if !buffer.is_empty() && chunks.blocking_send(Ok(buffer.split().freeze())).is_err() {
            tracing::debug!("the put ended before the last chunk; its error follows");
        }
        drop(chunks);
        let stored = runtime.block_on(put)??;
        let produced = Produced {
            storage_key: key.as_str(),
            row_count: rows,
            size_bytes: stored.size,
            sha256: stored.sha256,
            retention,
        };
        exports::mark_succeeded(conn, org, export_id, &produced)?;
        Ok(Ran::Produced { rows, bytes: stored.size })
    })
}

/// What a schedule's run shows of a give-up reason: the client's part only.
pub(crate) fn public_detail(reason: &str) -> String {
    failure_of(reason).as_str().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_learns_the_kind_of_failure_and_never_its_detail() {
        let storage = ExportError::Storage(StorageError::Unavailable("connection refused to 10.0.0.7".to_owned()));
        let HandlerError::Retry(reason) = HandlerError::from(storage) else { panic!("storage errors are retried") };
        assert!(reason.starts_with("storage_error: storage: ") && reason.contains("10.0.0.7"), "{reason}");
        assert_eq!(failure_of(&reason), ExportFailure::Storage);
        let invalid = ExportError::Invalid("export 1 has an invalid kind".to_owned());
        let HandlerError::Fail(reason) = HandlerError::from(invalid) else { panic!("invalid exports fail at once") };
        assert_eq!(failure_of(&reason), ExportFailure::Invalid);
        assert_eq!(failure_of("database_error: relation \"batches\" does not exist"), ExportFailure::Database);
        assert_eq!(failure_of("cannot connect: storage_error"), ExportFailure::Internal);
        assert_eq!(failure_of("no reason at all"), ExportFailure::Internal);
    }
}
