use std::net::SocketAddr;
use std::num::NonZeroUsize;
use stockflow_config::{BrokerSettings, ConfigError, DatabaseSettings, Env, StorageSettings, TelemetrySettings};

#[derive(Debug, Clone)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub broker: BrokerSettings,
    pub telemetry: TelemetrySettings,
    pub storage: StorageSettings,
    pub api: ApiSettings,
}

#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub bind: SocketAddr,
    pub workers: NonZeroUsize,
    /// Apply pending migrations at start (single-container setups).
    pub run_migrations: bool,
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            telemetry: TelemetrySettings::from_env(env)?,
            database: DatabaseSettings::from_env(env)?,
            broker: BrokerSettings::from_env(env)?,
            storage: StorageSettings::from_env(env)?,
            api: ApiSettings::from_env(env)?,
        })
    }
}

impl ApiSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let cores = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
        Ok(Self {
            bind: env.or("API_BIND", SocketAddr::from(([127, 0, 0, 1], 8000)))?,
            workers: env.or("WEB_WORKERS", cores)?,
            run_migrations: env.or("RUN_MIGRATIONS", false)?,
        })
    }
}

/// What the admin commands need: the database, and logs.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub database: DatabaseSettings,
    pub telemetry: TelemetrySettings,
}

impl AdminSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self { telemetry: TelemetrySettings::from_env(env)?, database: DatabaseSettings::from_env(env)? })
    }
}
