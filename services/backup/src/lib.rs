//! stockflow-backup: Takes, verifies, prunes and restores database and media backups.

pub mod alerts;
mod consumer;
mod dump;
pub mod encrypted;
mod error;
mod manifest;
pub mod media;
mod prune;
pub mod restore;
pub mod retention;
pub mod run;
mod session;
mod settings;
mod tools;
mod verify;
pub mod watch;

pub use dump::{TableCounts, count_tables};
pub use error::BackupError;
pub use manifest::ManifestEntry;
pub use prune::PruneReport;
pub use run::Backup;
pub use settings::{BackupSettings, Compress};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use stockflow_config::{
    BackupStorageSettings, BrokerSettings, ConfigError, DatabaseSettings, Env, HealthSettings, StorageSettings,
    TelemetrySettings,
};
use stockflow_domain::{BackupDatabase, BackupMedia, BackupVerify};
use stockflow_queue::topology::BACKUPS;
use stockflow_queue::{Consumer, ConsumerSettings, JobMetrics, Publisher};
use stockflow_runtime::{BackgroundService, Connections, RunError, StartupError};
use stockflow_telemetry::Shutdown;

pub const HEALTH_BIND_VAR: &str = "BACKUP_HEALTH_BIND";
pub const DEFAULT_HEALTH_BIND: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8003);

#[derive(Debug, Clone)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub broker: BrokerSettings,
    pub telemetry: TelemetrySettings,
    pub health: HealthSettings,
    /// The media it backs up.
    pub storage: StorageSettings,
    /// Where backups go.
    pub backup_storage: BackupStorageSettings,
    pub backup: BackupSettings,
    /// `ALERT_*` and `BACKUP_MAX_AGE_HOURS`.
    pub alerts: alerts::AlertSettings,
    /// `BACKUP_KEEP_DAILY/WEEKLY/MONTHLY`, for `prune`.
    pub keep: retention::KeepPolicy,
    /// `BACKUP_ENCRYPTION_*`: off unless a recipient is set.
    pub encryption: Option<encrypted::EncryptionSettings>,
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let backup = BackupSettings::from_env(env)?;
        Ok(Self {
            telemetry: TelemetrySettings::from_env(env)?,
            database: DatabaseSettings::from_env(env)?,
            broker: BrokerSettings::from_env(env)?,
            health: HealthSettings::from_env(env, HEALTH_BIND_VAR, DEFAULT_HEALTH_BIND)?,
            storage: StorageSettings::from_env(env)?,
            backup_storage: BackupStorageSettings::from_env(env)?,
            encryption: encrypted::EncryptionSettings::from_env(env, backup.verify_after_run)?,
            backup,
            alerts: alerts::AlertSettings::from_env(env)?,
            keep: retention::KeepPolicy::from_env(env)?,
        })
    }
}

pub struct Application {
    service: BackgroundService,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error(transparent)]
    Alerts(#[from] alerts::AlerterError),
}

/// How often the service checks that a verified backup is recent enough.
const AGE_CHECK_EVERY: Duration = Duration::from_secs(300);

impl Application {
    #[tracing::instrument(name = "backup.build", skip_all, fields(health_bind = %settings.health.bind), err)]
    pub async fn build(settings: Settings, shutdown: Shutdown) -> Result<Self, BuildError> {
        let connections = Connections::open(&settings.database, &settings.broker, "backup", shutdown.clone())?
            .with_media_store(&settings.storage)?
            .with_backup_store(&settings.backup_storage)?;
        let backup = backup(&settings, &connections)?;
        let mut registry = stockflow_telemetry::metrics::registry("backup");
        let metrics = Arc::new(JobMetrics::register(&mut registry));
        let publisher = Arc::new(Publisher::new(connections.broker.clone()));
        // Two in hand: the second of two requests at once meets the run
        // lock and is recorded as refused at once, instead of waiting to
        // run the same backup again.
        let consumer_settings = ConsumerSettings {
            prefetch: 2,
            max_attempts: 5,
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(300),
        };
        let metrics_source = Arc::new(watch::BackupMetrics::new(registry, connections.database.clone()));
        let watch = Arc::new(watch::Watch::new(metrics_source.clone(), alerts::Alerter::new(settings.alerts.clone())?));
        let age_checks = watch.clone().spawn_age_checks(AGE_CHECK_EVERY, shutdown.clone());
        let handler = consumer::RunHandler { backup, watch };
        let consumer = Consumer::new(BACKUPS)
            .route::<BackupDatabase, _>(handler.clone())
            .route::<BackupMedia, _>(handler.clone())
            .route::<BackupVerify, _>(handler)
            .start(connections.broker.clone(), publisher, metrics, consumer_settings, shutdown);
        let readiness = connections.readiness().with(consumer.check());
        let service = BackgroundService::start(settings.health.bind, connections, readiness, metrics_source)?
            .finish_before_close(consumer.stopped())
            .finish_before_close(async move {
                let _ = age_checks.await;
            });
        Ok(Self { service })
    }

    /// Where `/healthz` and `/readyz` listen (port 0 in tests picks a free one).
    pub fn address(&self) -> SocketAddr {
        self.service.address()
    }

    pub async fn run_until_stopped(self) -> Result<(), RunError> {
        self.service.run_until_stopped().await
    }
}

/// The run machinery over a service's connections.
pub fn backup(settings: &Settings, connections: &Connections) -> Result<Backup, StartupError> {
    let missing = |name: &'static str| StartupError::Storage {
        name,
        source: stockflow_storage::StorageError::Unavailable(format!("no {name} store was opened")),
    };
    Ok(Backup {
        database: connections.database.clone(),
        database_settings: settings.database.clone(),
        media: connections.media_store().ok_or_else(|| missing("storage"))?,
        backups: match &settings.encryption {
            Some(encryption) => Arc::new(encrypted::Encrypted::new(
                connections.backup_store().ok_or_else(|| missing("backup_storage"))?,
                encryption.clone(),
            )),
            None => connections.backup_store().ok_or_else(|| missing("backup_storage"))?,
        },
        settings: settings.backup.clone(),
    })
}
