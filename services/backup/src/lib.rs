//! stockflow-backup: Takes, verifies, prunes and restores database and media backups.

pub mod alerts;
pub mod retention;

use std::net::SocketAddr;
use std::sync::Arc;
use stockflow_config::{
    BackupStorageSettings, BrokerSettings, ConfigError, DatabaseSettings, Env, HealthSettings, StorageSettings,
    TelemetrySettings,
};
use stockflow_runtime::{BackgroundService, Connections, RunError, StartupError};
use stockflow_telemetry::Shutdown;

pub const HEALTH_BIND_VAR: &str = "BACKUP_HEALTH_BIND";
const DEFAULT_HEALTH_BIND: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8003);

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
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            telemetry: TelemetrySettings::from_env(env)?,
            database: DatabaseSettings::from_env(env)?,
            broker: BrokerSettings::from_env(env)?,
            health: HealthSettings::from_env(env, HEALTH_BIND_VAR, DEFAULT_HEALTH_BIND)?,
            storage: StorageSettings::from_env(env)?,
            backup_storage: BackupStorageSettings::from_env(env)?,
        })
    }
}

pub struct Application {
    service: BackgroundService,
}

impl Application {
    #[tracing::instrument(name = "backup.build", skip_all, fields(health_bind = %settings.health.bind), err)]
    pub async fn build(settings: Settings, shutdown: Shutdown) -> Result<Self, StartupError> {
        let connections = Connections::open(&settings.database, &settings.broker, "backup", shutdown)?
            .with_media_store(&settings.storage)?
            .with_backup_store(&settings.backup_storage)?;
        let readiness = connections.readiness();
        Ok(Self {
            service: BackgroundService::start(
                settings.health.bind,
                connections,
                readiness,
                Arc::new(stockflow_telemetry::metrics::registry("backup")),
            )?,
        })
    }

    /// Where `/healthz` and `/readyz` listen (port 0 in tests picks a free one).
    pub fn address(&self) -> SocketAddr {
        self.service.address()
    }

    pub async fn run_until_stopped(self) -> Result<(), RunError> {
        self.service.run_until_stopped().await
    }
}
