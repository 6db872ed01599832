//! The progress table, reached from async code through the command's one
//! direct connection.

use super::Descriptor;
use diesel::QueryResult;
use std::sync::{Arc, Mutex, PoisonError};
use stockflow_db::storage_migrations::Pair;
use stockflow_db::{DbError, PgConnection};

/// Cloned into every copy in flight; the mutex takes their records one at a
/// time, which is what one connection can do anyway.
#[derive(Clone)]
pub(super) struct Ledger {
    conn: Arc<Mutex<PgConnection>>,
    source: Arc<str>,
    target: Arc<str>,
}

impl Ledger {
    pub(super) fn new(conn: PgConnection, source: &Descriptor, target: &Descriptor) -> Self {
        Self { conn: Arc::new(Mutex::new(conn)), source: source.as_str().into(), target: target.as_str().into() }
    }

    /// Runs blocking Diesel code on the blocking pool, given the connection
    /// and this migration's pair of stores.
    pub(super) async fn call<T, F>(&self, work: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut PgConnection, Pair<'_>) -> QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let Self { conn, source, target } = self.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave a half-written row
            // behind (each statement commits or not), so the connection is
            // still usable.
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            Ok(work(&mut conn, Pair { source: &source, target: &target })?)
        })
        .await?
    }
}
