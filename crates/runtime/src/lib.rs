//! The scaffolding every Stockflow service shares, so each service's own
//! code is only what makes it different: open the database pool and the
//! broker connection, report readiness on both, and stop cleanly on
//! SIGTERM/SIGINT within the 10 s a container runtime allows.

pub mod healthcheck;
pub mod outbox;

pub use outbox::OutboxRelay;

use actix_web::dev::{Server, ServerHandle};
use futures_util::future::BoxFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use stockflow_config::{BackupStorageSettings, BrokerSettings, DatabaseSettings, StorageSettings};
use stockflow_db::Database;
use stockflow_queue::{Broker, InvalidAmqpUrl};
use stockflow_storage::{Storage, StorageCheck, StorageError};
use stockflow_telemetry::{MetricsSource, Readiness, Shutdown, serve_health};

const MEDIA_STORE: &str = "storage";
const BACKUP_STORE: &str = "backup_storage";

/// How long `/readyz` waits for a pooled database connection.
const DATABASE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {address}: {source}")]
    Bind { address: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Broker(#[from] InvalidAmqpUrl),
    #[error("cannot apply migrations: {0}")]
    Migrations(stockflow_db::DbError),
    /// A misconfigured store, such as a `MEDIA_ROOT` that cannot be created.
    /// A store that is merely down does not stop a service: it shows on
    /// `/readyz`.
    #[error("cannot open {name}: {source}")]
    Storage { name: &'static str, source: StorageError },
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("HTTP server failed: {0}")]
    Server(#[from] std::io::Error),
}

/// A service's links to PostgreSQL, RabbitMQ and its stores. None is
/// required at start: each reconnects by itself, and readiness says which is
/// down.
#[derive(Clone)]
pub struct Connections {
    pub database: Database,
    pub broker: Broker,
    pub shutdown: Shutdown,
    /// Each store under the name of its line on `/readyz`.
    stores: Vec<(&'static str, Arc<dyn Storage>)>,
}

impl Connections {
    pub fn open(
        database: &DatabaseSettings,
        broker: &BrokerSettings,
        service: &'static str,
        shutdown: Shutdown,
    ) -> Result<Self, StartupError> {
        Ok(Self {
            database: Database::connect_lazy(database),
            broker: Broker::start(broker, service)?,
            shutdown,
            stores: Vec::new(),
        })
    }

    /// Opens the media store (attachments, exports); `storage` on `/readyz`.
    pub fn with_media_store(self, settings: &StorageSettings) -> Result<Self, StartupError> {
        self.with_store(MEDIA_STORE, || stockflow_storage::from_settings(settings))
    }

    /// Opens the backup target; `backup_storage` on `/readyz`.
    pub fn with_backup_store(self, settings: &BackupStorageSettings) -> Result<Self, StartupError> {
        self.with_store(BACKUP_STORE, || stockflow_storage::from_backup_settings(settings))
    }

    fn with_store(
        mut self,
        name: &'static str,
        open: impl FnOnce() -> Result<Arc<dyn Storage>, StorageError>,
    ) -> Result<Self, StartupError> {
        let storage = open().map_err(|source| StartupError::Storage { name, source })?;
        tracing::info!(store = name, backend = storage.backend(), "storage opened");
        self.stores.push((name, storage));
        Ok(self)
    }

    pub fn media_store(&self) -> Option<Arc<dyn Storage>> {
        self.store(MEDIA_STORE)
    }

    pub fn backup_store(&self) -> Option<Arc<dyn Storage>> {
        self.store(BACKUP_STORE)
    }

    fn store(&self, name: &str) -> Option<Arc<dyn Storage>> {
        self.stores.iter().find(|(each, _)| *each == name).map(|(_, storage)| Arc::clone(storage))
    }

    pub fn readiness(&self) -> Readiness {
        let readiness = Readiness::new().with(self.database.check(DATABASE_CHECK_TIMEOUT)).with(self.broker.check());
        self.stores.iter().fold(readiness, |readiness, (name, storage)| {
            readiness.with(StorageCheck::named(Arc::clone(storage), name))
        })
    }

    /// Applies pending migrations, e.g. for `RUN_MIGRATIONS=true`.
    pub async fn migrate(&self) -> Result<Vec<String>, StartupError> {
        self.database.run(stockflow_db::run_pending).await.map_err(StartupError::Migrations)
    }
}

/// Work that must end before the broker connection closes: consumers
/// settling the messages in hand, a relay finishing its batch.
pub type BeforeClose = Vec<BoxFuture<'static, ()>>;

/// Runs an HTTP server until the shutdown signal fires, then stops it
/// gracefully (in-flight requests finish), waits for `before_close`, and
/// closes the broker connection.
pub async fn serve_until_stopped(
    server: Server,
    connections: Connections,
    before_close: BeforeClose,
) -> Result<(), RunError> {
    let stopper = tokio::spawn(stop_on(connections.shutdown.clone(), server.handle()));
    let served = server.await;
    stopper.abort();
    connections.shutdown.trigger();
    futures_util::future::join_all(before_close).await;
    connections.broker.closed().await;
    tracing::info!("stopped");
    Ok(served?)
}

async fn stop_on(shutdown: Shutdown, server: ServerHandle) {
    shutdown.wait().await;
    server.stop(true).await;
}

/// A service whose only HTTP surface is `/healthz` and `/readyz` on its
/// `*_HEALTH_BIND` address (worker, scheduler, backup).
pub struct BackgroundService {
    address: SocketAddr,
    health: Server,
    connections: Connections,
    before_close: BeforeClose,
}

impl BackgroundService {
    /// `readiness` is usually `connections.readiness()` plus the service's
    /// own checks; `metrics` is served on `/metrics`.
    pub fn start(
        bind: SocketAddr,
        connections: Connections,
        readiness: Readiness,
        metrics: Arc<dyn MetricsSource>,
    ) -> Result<Self, StartupError> {
        let (address, health) =
            serve_health(bind, readiness, metrics).map_err(|source| StartupError::Bind { address: bind, source })?;
        tracing::info!(%address, "health endpoints listening");
        Ok(Self { address, health, connections, before_close: Vec::new() })
    }

    /// Waits for `work` after shutdown, before the broker connection closes.
    pub fn finish_before_close(mut self, work: impl Future<Output = ()> + Send + 'static) -> Self {
        self.before_close.push(Box::pin(work));
        self
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn connections(&self) -> &Connections {
        &self.connections
    }

    pub async fn run_until_stopped(self) -> Result<(), RunError> {
        serve_until_stopped(self.health, self.connections, self.before_close).await
    }
}

/// Turns how a service ended into its exit status, logging the failure.
pub fn exit_status<E: std::fmt::Display>(outcome: Result<(), E>) -> std::process::ExitCode {
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "service failed");
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
