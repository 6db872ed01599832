//! stockflow-worker: Runs queued jobs: report exports and storage maintenance.

mod exports;
pub mod maintenance;
pub mod migrate_storage;
mod outcome;
mod ping;
mod turns;

use futures_util::future::BoxFuture;
use maintenance::{Grace, Maintenance, MaintenanceMetrics};
use outcome::Reported;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::num::{NonZeroU16, NonZeroU32, NonZeroU64};
use std::sync::Arc;
use std::time::Duration;
use stockflow_config::{
    BrokerSettings, ConfigError, DatabaseSettings, Env, FromEnvValue, HealthSettings, StorageSettings,
    TelemetrySettings,
};
use stockflow_queue::topology::{EXPORTS, MAINTENANCE};
use stockflow_queue::{Broker, Consumer, ConsumerSettings, JobMetrics, Publisher};
use stockflow_runtime::{BackgroundService, Connections, RunError, StartupError};
use stockflow_telemetry::{MetricsSource, Shutdown};

pub const HEALTH_BIND_VAR: &str = "WORKER_HEALTH_BIND";
pub const DEFAULT_HEALTH_BIND: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8001);

#[derive(Debug, Clone)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub broker: BrokerSettings,
    pub telemetry: TelemetrySettings,
    pub health: HealthSettings,
    pub storage: StorageSettings,
    pub jobs: JobSettings,
}

/// How the worker takes and retries jobs, and how long export files live.
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// Jobs in hand at once per queue, and exports run at once (`WORKER_CONCURRENCY`).
    pub concurrency: NonZeroU16,
    /// Export jobs held beyond those running, for the next slot to go to
    /// the organization whose turn it is (`EXPORT_LOOKAHEAD`).
    pub export_lookahead: u16,
    /// Attempts before a failing job is dead-lettered (`JOB_MAX_ATTEMPTS`).
    pub max_attempts: NonZeroU32,
    /// First retry delay; each further one waits 4 times longer, up to the max.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Days an export file is kept after it is written (`EXPORT_RETENTION_DAYS`).
    pub export_retention_days: NonZeroU32,
    /// Age past which maintenance removes a pending upload or an object no
    /// row names (`MAINTENANCE_GRACE_MINUTES`).
    pub maintenance_grace: Grace,
}

impl JobSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let millis = |var: &str, default: u64| -> Result<Duration, ConfigError> {
            let value: NonZeroU64 = env.or(var, NonZeroU64::MIN.saturating_add(default - 1))?;
            Ok(Duration::from_millis(value.get()))
        };
        Ok(Self {
            concurrency: env.or("WORKER_CONCURRENCY", NonZeroU16::MIN.saturating_add(3))?,
            export_lookahead: env.or("EXPORT_LOOKAHEAD", Lookahead(16))?.0,
            max_attempts: env.or("JOB_MAX_ATTEMPTS", NonZeroU32::MIN.saturating_add(4))?,
            retry_base: millis("JOB_RETRY_BASE_MS", 1_000)?,
            retry_max: millis("JOB_RETRY_MAX_MS", 300_000)?,
            export_retention_days: env.or("EXPORT_RETENTION_DAYS", NonZeroU32::MIN.saturating_add(6))?,
            maintenance_grace: Grace::from_env(env)?,
        })
    }

    fn consumer(&self, lookahead: u16) -> ConsumerSettings {
        ConsumerSettings {
            prefetch: self.concurrency.get().saturating_add(lookahead),
            max_attempts: self.max_attempts.get(),
            retry_base: self.retry_base,
            retry_max: self.retry_max.max(self.retry_base),
        }
    }
}

/// `EXPORT_LOOKAHEAD`: export jobs held beyond those running.
struct Lookahead(u16);

impl FromEnvValue for Lookahead {
    const EXPECTED: &'static str = "a whole number from 0 to 1000";
    fn from_env_value(raw: &str) -> Option<Self> {
        raw.parse().ok().filter(|n| *n <= 1000).map(Self)
    }
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            telemetry: TelemetrySettings::from_env(env)?,
            database: DatabaseSettings::from_env(env)?,
            broker: BrokerSettings::from_env(env)?,
            health: HealthSettings::from_env(env, HEALTH_BIND_VAR, DEFAULT_HEALTH_BIND)?,
            storage: StorageSettings::from_env(env)?,
            jobs: JobSettings::from_env(env)?,
        })
    }
}

pub struct Application {
    service: BackgroundService,
}

impl Application {
    #[tracing::instrument(name = "worker.build", skip_all, fields(health_bind = %settings.health.bind), err)]
    pub async fn build(settings: Settings, shutdown: Shutdown) -> Result<Self, StartupError> {
        let connections = Connections::open(&settings.database, &settings.broker, "worker", shutdown.clone())?
            .with_media_store(&settings.storage)?;
        let storage = connections.media_store().ok_or(StartupError::Storage {
            name: "storage",
            source: stockflow_storage::StorageError::Unavailable("no media store was opened".to_owned()),
        })?;
        let publisher = Arc::new(Publisher::new(connections.broker.clone()));
        let mut registry = stockflow_telemetry::metrics::registry("worker");
        let metrics = Arc::new(JobMetrics::register(&mut registry));
        let jobs = &settings.jobs;
        let database = connections.database.clone();
        let export_handler = exports::ExportHandler {
            database: database.clone(),
            storage: Arc::clone(&storage),
            retention: chrono::Duration::days(i64::from(jobs.export_retention_days.get())),
            turns: turns::Turns::new(usize::from(jobs.concurrency.get())),
        };
        let exports = Consumer::new(EXPORTS)
            .route(Reported::new(export_handler, database.clone(), exports::public_detail))
            .start(
                connections.broker.clone(),
                Arc::clone(&publisher),
                Arc::clone(&metrics),
                jobs.consumer(jobs.export_lookahead),
                shutdown.clone(),
            );
        let maintenance = Arc::new(Maintenance {
            database: database.clone(),
            storage,
            grace: jobs.maintenance_grace,
            metrics: Arc::new(MaintenanceMetrics::register(&mut registry)),
        });
        // Every job a schedule may send reports back to it. Pings are only
        // sent by hand and by `make bench`, whose trip they measure.
        let (db, whole) = (database.clone(), outcome::whole);
        let maintenance = Consumer::new(MAINTENANCE)
            .route(ping::PingHandler)
            .route(Reported::new(maintenance::ExpireExportsHandler(Arc::clone(&maintenance)), db.clone(), whole))
            .route(Reported::new(maintenance::CleanupUploadsHandler(Arc::clone(&maintenance)), db.clone(), whole))
            .route(Reported::new(maintenance::ReconcileStorageHandler(maintenance), db, whole))
            .start(connections.broker.clone(), publisher, Arc::clone(&metrics), jobs.consumer(0), shutdown);
        let readiness = connections.readiness().with(exports.check()).with(maintenance.check());
        let source = Arc::new(WorkerMetrics { registry, jobs: metrics, broker: connections.broker.clone() });
        let service = BackgroundService::start(settings.health.bind, connections, readiness, source)?
            .finish_before_close(exports.stopped())
            .finish_before_close(maintenance.stopped());
        Ok(Self { service })
    }

    /// Where `/healthz`, `/readyz` and `/metrics` listen (port 0 in tests
    /// picks a free one).
    pub fn address(&self) -> SocketAddr {
        self.service.address()
    }

    pub async fn run_until_stopped(self) -> Result<(), RunError> {
        self.service.run_until_stopped().await
    }
}

struct WorkerMetrics {
    registry: Registry,
    jobs: Arc<JobMetrics>,
    broker: Broker,
}

impl MetricsSource for WorkerMetrics {
    fn registry(&self) -> &Registry {
        &self.registry
    }

    fn refresh(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // A broker that does not answer must not hang the scrape.
            let read = self.jobs.refresh_queue_depths(&self.broker);
            let _ = tokio::time::timeout(Duration::from_secs(2), read).await;
        })
    }
}
