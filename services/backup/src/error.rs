use stockflow_db::DbError;
use stockflow_storage::StorageError;
use uuid::Uuid;

/// Why a backup step failed; the message is what `backup_runs.error` says.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// pg_dump or pg_restore missing, or of another major version than the server.
    #[error("{0}")]
    Tool(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("backup storage: {0}")]
    Storage(#[from] StorageError),
    #[error("pg_dump failed: {0}")]
    Dump(String),
    #[error("media backup failed: {0}")]
    Media(String),
    #[error("verification failed: {0}")]
    Verify(String),
    #[error("restore failed: {0}")]
    Restore(String),
    #[error("another backup run was in progress: {0}")]
    Busy(String),
    #[error("no backup run {0}")]
    NotFound(String),
    #[error("the database work stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl BackupError {
    /// Worth retrying the job later: the database could not be reached.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Db(error) if error.is_unavailable())
    }
}

/// A run's id for messages, or "unknown".
pub(crate) fn run_label(id: Option<Uuid>) -> String {
    id.map_or_else(|| "unknown".to_owned(), |id| id.to_string())
}
