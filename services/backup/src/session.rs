//! The run's own connection: it holds the installation's backup lock and
//! the snapshot transaction pg_dump reads through, so it must stay the same
//! session from start to end, not a pooled connection per statement.

use crate::BackupError;
use diesel::PgConnection;
use stockflow_config::DatabaseSettings;
use stockflow_db::Database;

pub(crate) struct Session {
    conn: Option<PgConnection>,
}

impl Session {
    pub(crate) async fn open(settings: &DatabaseSettings) -> Result<Self, BackupError> {
        let settings = settings.clone();
        let conn = tokio::task::spawn_blocking(move || Database::establish(&settings)).await??;
        Ok(Self { conn: Some(conn) })
    }

    /// Runs blocking Diesel work on the session, off the async threads.
    pub(crate) async fn run<T, F>(&mut self, work: F) -> Result<T, BackupError>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, BackupError> + Send + 'static,
        T: Send + 'static,
    {
        let mut conn = self.conn.take().ok_or_else(|| BackupError::Dump("the session was lost".to_owned()))?;
        let (conn, outcome) = tokio::task::spawn_blocking(move || {
            let outcome = work(&mut conn);
            (conn, outcome)
        })
        .await?;
        self.conn = Some(conn);
        outcome
    }
}
