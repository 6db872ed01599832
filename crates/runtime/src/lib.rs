//! The scaffolding every Stockflow service shares, so each service's own
//! code is only what makes it different: open the database pool and the
//! broker connection, report readiness on both, and stop cleanly on
//! SIGTERM/SIGINT within the 10 s a container runtime allows.

use actix_web::dev::{Server, ServerHandle};
use std::net::SocketAddr;
use std::time::Duration;
use stockflow_config::{BrokerSettings, DatabaseSettings};
use stockflow_db::Database;
use stockflow_queue::{Broker, InvalidAmqpUrl};
use stockflow_telemetry::{Readiness, Shutdown, serve_health};

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
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("HTTP server failed: {0}")]
    Server(#[from] std::io::Error),
}

/// A service's links to PostgreSQL and RabbitMQ. Neither is required at
/// start: both reconnect by themselves, and readiness says which is down.
#[derive(Clone)]
pub struct Connections {
    pub database: Database,
    pub broker: Broker,
    pub shutdown: Shutdown,
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
            broker: Broker::start(broker, service, shutdown.clone())?,
            shutdown,
        })
    }

    pub fn readiness(&self) -> Readiness {
        Readiness::new().with(self.database.check(DATABASE_CHECK_TIMEOUT)).with(self.broker.check())
    }

    /// Applies pending migrations, e.g. for `RUN_MIGRATIONS=true`.
    pub async fn migrate(&self) -> Result<Vec<String>, StartupError> {
        self.database.run(stockflow_db::run_pending).await.map_err(StartupError::Migrations)
    }
}

/// Runs an HTTP server until the shutdown signal fires, then stops it
/// gracefully (in-flight requests finish) and closes the broker connection.
pub async fn serve_until_stopped(server: Server, connections: Connections) -> Result<(), RunError> {
    let stopper = tokio::spawn(stop_on(connections.shutdown.clone(), server.handle()));
    let served = server.await;
    stopper.abort();
    connections.shutdown.trigger();
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
}

impl BackgroundService {
    pub fn start(bind: SocketAddr, connections: Connections) -> Result<Self, StartupError> {
        let (address, health) = serve_health(bind, connections.readiness())
            .map_err(|source| StartupError::Bind { address: bind, source })?;
        tracing::info!(%address, "health endpoints listening");
        Ok(Self { address, health, connections })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn connections(&self) -> &Connections {
        &self.connections
    }

    pub async fn run_until_stopped(self) -> Result<(), RunError> {
        serve_until_stopped(self.health, self.connections).await
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
