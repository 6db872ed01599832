use crate::pool::Manager;
use diesel::PgConnection;
use diesel::r2d2::{Pool, PooledConnection};
use std::sync::Arc;
use std::time::Duration;
use stockflow_config::DatabaseSettings;
use stockflow_telemetry::{Check, CheckFuture};
use tokio::sync::Semaphore;

type PgPool = Pool<Manager>;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("no database connection: {0}")]
    Unavailable(#[from] diesel::r2d2::PoolError),
    #[error("cannot connect to the database: {0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("the database pool is closed")]
    Closed,
    #[error("database task did not finish: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl DbError {
    /// The database could not be reached or the connection was lost: worth
    /// a retry later, unlike a fault of the query.
    pub fn is_unavailable(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            Self::Unavailable(_) | Self::Connect(_) => true,
            Self::Query(Error::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            )) => true,
            Self::Query(_) | Self::Migration(_) | Self::Closed | Self::Task(_) => false,
        }
    }
}

/// The pool, and a way to run blocking Diesel code from async code.
#[derive(Clone)]
pub struct Database {
    pool: PgPool,
    /// One permit per pooled connection, taken before the blocking hand-off:
    /// callers queue in arrival order (r2d2's own wait lets newcomers barge
    /// ahead of threads already waiting, which stretches the tail latency),
    /// and waiting costs no blocking thread.
    turns: Arc<Semaphore>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").field("state", &self.pool.state()).finish()
    }
}

/// r2d2 reports through the `log` crate by default; route its errors to tracing.
#[derive(Debug)]
struct TracingErrorHandler;

impl diesel::r2d2::HandleError<diesel::r2d2::Error> for TracingErrorHandler {
    fn handle_error(&self, error: diesel::r2d2::Error) {
        tracing::warn!(%error, "database connection failed");
    }
}

impl Database {
    /// Builds the pool without connecting: a service starts (and reports
    /// not-ready) while the database is down, and recovers when it returns.
    pub fn connect_lazy(settings: &DatabaseSettings) -> Self {
        let manager = Manager::new(settings.url.expose());
        let pool = Pool::builder()
            .max_size(settings.pool_size.get())
            // No eager background connects: a connect thread still inside
            // libpq when the process exits can crash it, and while the
            // database is down such threads would retry without end.
            .min_idle(Some(0))
            .connection_timeout(settings.connect_timeout)
            .error_handler(Box::new(TracingErrorHandler))
            .build_unchecked(manager);
        let turns = Arc::new(Semaphore::new(settings.pool_size.get() as usize));
        Self { pool, turns }
    }

    /// One connection, without a pool: for short-lived admin commands.
    pub fn establish(settings: &DatabaseSettings) -> Result<PgConnection, DbError> {
        use diesel::Connection;
        Ok(PgConnection::establish(settings.url.expose())?)
    }

    pub fn get(
        &self,
    ) -> Result<PooledConnection<impl diesel::r2d2::ManageConnection<Connection = PgConnection>>, DbError> {
        Ok(self.pool.get()?)
    }

    /// Runs `work` on a pooled connection on the blocking thread pool. The
    /// caller picks the error type, as long as pool failures fit into it.
    pub async fn run<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let pool = self.pool.clone();
        let turn = self.turns.clone().acquire_owned().await.map_err(|_| DbError::Closed)?;
        tokio::task::spawn_blocking(move || {
            // Held until the work is done, even if the caller stops waiting.
            let _turn = turn;
            let mut conn = pool.get().map_err(DbError::from)?;
            work(&mut conn)
        })
        .await
        .map_err(|e| E::from(DbError::from(e)))?
    }

    /// A readiness check: a connection answers `SELECT 1` within `timeout`.
    pub fn check(&self, timeout: Duration) -> DatabaseCheck {
        DatabaseCheck { pool: self.pool.clone(), timeout }
    }
}

pub struct DatabaseCheck {
    pool: PgPool,
    timeout: Duration,
}

impl Check for DatabaseCheck {
    fn name(&self) -> &'static str {
        "database"
    }

    fn check(&self) -> CheckFuture<'_> {
        let pool = self.pool.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let probe = tokio::task::spawn_blocking(move || -> Result<(), String> {
                use diesel::RunQueryDsl;
                let mut conn = pool.get_timeout(timeout).map_err(|e| e.to_string())?;
                diesel::sql_query("SELECT 1").execute(&mut conn).map(drop).map_err(|e| e.to_string())
            });
            probe.await.map_err(|e| e.to_string())?
        })
    }
}
