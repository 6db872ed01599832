use crate::pool::Manager;
use diesel::PgConnection;
use diesel::r2d2::{Pool, PooledConnection};
use std::time::Duration;
use stockflow_config::DatabaseSettings;
use stockflow_telemetry::{Check, CheckFuture, Down};

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
    #[error("the database is busy: {0} jobs already wait for a connection")]
    Busy(u32),
    #[error("the database threads are gone")]
    Closed,
    #[error("the database work panicked")]
    Panicked,
    #[error("database task did not finish: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl DbError {
    /// The database could not be reached or the connection was lost: worth
    /// a retry later, unlike a fault of the query.
    pub fn is_unavailable(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            Self::Unavailable(_) | Self::Connect(_) | Self::Busy(_) => true,
            Self::Query(Error::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            )) => true,
            Self::Query(_) | Self::Migration(_) | Self::Closed | Self::Panicked | Self::Task(_) => false,
        }
    }
}

/// The pool, and a way to run blocking Diesel code from async code.
#[derive(Clone)]
pub struct Database {
    pool: PgPool,
    /// Where `run` queues work for the database threads (see threads.rs).
    jobs: std::sync::mpsc::SyncSender<crate::threads::Job>,
    queue_limit: u32,
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
        let manager = Manager::new(settings.url.expose(), settings.statement_cache);
        let pool = Pool::builder()
            .max_size(settings.pool_size.get())
            // No eager background connects: a connect thread still inside
            // libpq when the process exits can crash it, and while the
            // database is down such threads would retry without end.
            .min_idle(Some(0))
            .connection_timeout(settings.connect_timeout)
            .error_handler(Box::new(TracingErrorHandler))
            .build_unchecked(manager);
        let queue_limit = settings.queue_limit.get();
        let jobs = crate::threads::start(settings.pool_size.get(), queue_limit);
        Self { pool, jobs, queue_limit }
    }

    /// One session of its own, without a pool, to `DATABASE_DIRECT_URL`:
    /// for admin commands and whatever holds session state (advisory
    /// locks, session settings) that a transaction pooler would not keep.
    pub fn establish(settings: &DatabaseSettings) -> Result<PgConnection, DbError> {
        use diesel::Connection;
        Ok(PgConnection::establish(settings.direct_url.expose())?)
    }

    pub fn get(
        &self,
    ) -> Result<PooledConnection<impl diesel::r2d2::ManageConnection<Connection = PgConnection>>, DbError> {
        Ok(self.pool.get()?)
    }

    /// Runs `work` on a pooled connection on a database thread, after the
    /// work queued before it. The caller picks the error type, as long as
    /// pool failures fit into it. `DbError::Busy` when the queue is full.
    /// Work whose caller stopped waiting (a client that hung up) before its
    /// turn is skipped; once started, it runs to its end.
    pub async fn run<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let pool = self.pool.clone();
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job = Box::new(move || {
            if answer.is_closed() {
                return;
            }
            let outcome = match pool.get() {
                Ok(mut conn) => work(&mut conn),
                Err(error) => Err(E::from(DbError::from(error))),
            };
            // Nobody to tell if the caller stopped waiting meanwhile.
            let _ = answer.send(outcome);
        });
        self.jobs.try_send(job).map_err(|refused| match refused {
            std::sync::mpsc::TrySendError::Full(_) => E::from(DbError::Busy(self.queue_limit)),
            std::sync::mpsc::TrySendError::Disconnected(_) => E::from(DbError::Closed),
        })?;
        answered.await.map_err(|_| E::from(DbError::Panicked))?
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
            let probe = tokio::task::spawn_blocking(move || -> Result<(), Down> {
                use diesel::RunQueryDsl;
                let mut conn = pool.get_timeout(timeout).map_err(|e| Down::new("no connection", e))?;
                diesel::sql_query("SELECT 1").execute(&mut conn).map(drop).map_err(|e| Down::new("query failed", e))
            });
            probe.await.map_err(|e| Down::new("check failed", e))?
        })
    }
}
