//! `export.requested`: stream an export's rows out of PostgreSQL into the
//! media store and record what was written, exactly once however often the
//! job is delivered.

use bytes::{Bytes, BytesMut};
use diesel::Connection;
use std::sync::Arc;
use std::time::Instant;
use stockflow_db::exports::{self, CopyError, Produced};
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

impl From<ExportError> for HandlerError {
    fn from(error: ExportError) -> Self {
        match error {
            ExportError::Invalid(reason) => Self::Fail(reason),
            other => Self::Retry(other.to_string()),
        }
    }
}

enum Ran {
    Produced { rows: u64, bytes: u64 },
    AlreadyFinished,
    Gone,
}

impl Handler<ExportRequested> for ExportHandler {
    async fn handle(&self, envelope: Envelope<ExportRequested>) -> Result<(), HandlerError> {
        let ExportRequested { export_id, org_id } = envelope.payload;
        let started = Instant::now();
        let row = self
            .database
            .run(move |conn| Ok::<_, DbError>(exports::start_attempt(conn, export_id)?))
            .await
            .map_err(|error| HandlerError::Retry(error.to_string()))?;
        match row {
            None => {
                tracing::warn!(%export_id, "the export no longer exists; nothing to do");
                return Ok(());
            }
            Some(row) if row.org_id != org_id => {
                return Err(HandlerError::Fail(format!("export {export_id} does not belong to organization {org_id}")));
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
        let ran = tokio::task::spawn_blocking(move || produce(&database, &storage, &runtime, export_id, retention))
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

    async fn give_up(&self, envelope: &Envelope<ExportRequested>, reason: &str) -> Result<(), String> {
        let export_id = envelope.payload.export_id;
        let reason = reason.to_owned();
        self.database
            .run(move |conn| Ok::<_, DbError>(exports::mark_failed(conn, export_id, &reason)?))
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
    export_id: Uuid,
    retention: chrono::Duration,
) -> Result<Ran, ExportError> {
    let mut conn = database.get()?;
    conn.transaction(|conn| {
        let Some(row) = exports::lock(conn, export_id)? else { return Ok(Ran::Gone) };
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
        let key = Key::export(row.org_id, export_id, ext);
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
        let copied = exports::copy_out(conn, row.org_id, format, &filters, |bytes| {
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
                let _ = runtime.block_on(put);
                return Err(error.into());
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
        exports::mark_succeeded(conn, export_id, &produced)?;
        Ok(Ran::Produced { rows, bytes: stored.size })
    })
}
