//! The maintenance jobs the scheduler sends (`maintenance.*`): export
//! expiry, the sweep of uploads that never finished, and the reconciliation
//! of media storage with the database. Each is idempotent: a second run
//! right after the first finds nothing to do. `stockflow-worker reconcile`
//! runs the reconciliation by hand.

mod expire;
mod metrics;
mod reconcile;
mod uploads;

pub use expire::ExpiryReport;
pub use metrics::MaintenanceMetrics;
pub use reconcile::ReconcileReport;
pub use uploads::CleanupReport;

use std::sync::Arc;
use std::time::Duration;
use stockflow_config::{ConfigError, DatabaseSettings, Env, FromEnvValue, StorageSettings, TelemetrySettings};
use stockflow_db::{Database, DbError};
use stockflow_domain::{CleanupUploads, Envelope, ExpireExports, ReconcileStorage};
use stockflow_queue::{Handler, HandlerError};
use stockflow_storage::{Storage, StorageError};

/// Rows taken per round trip by the sweeps.
const BATCH: i64 = 500;

/// `MAINTENANCE_GRACE_MINUTES`: how old a pending upload or an object no
/// row names must be before maintenance removes it. Anything younger may
/// belong to an upload or an export still under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grace(u32);

impl Grace {
    pub const VAR: &'static str = "MAINTENANCE_GRACE_MINUTES";
    pub const DEFAULT: Self = Self(60);
    /// A week: a longer grace keeps leftovers for no reason.
    const MAX_MINUTES: u32 = 10_080;

    pub fn minutes(self) -> u32 {
        self.0
    }

    pub fn duration(self) -> Duration {
        Duration::from_secs(u64::from(self.0) * 60)
    }

    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        env.or(Self::VAR, Self::DEFAULT)
    }
}

impl FromEnvValue for Grace {
    const EXPECTED: &'static str = "a whole number of minutes from 1 to 10080";
    fn from_env_value(raw: &str) -> Option<Self> {
        raw.parse().ok().filter(|n| (1..=Self::MAX_MINUTES).contains(n)).map(Self)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error("database: {0}")]
    Database(#[from] DbError),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

impl From<diesel::result::Error> for MaintenanceError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(error.into())
    }
}

/// Both are outages: the job is retried, and its next run picks up where
/// this one stopped, since every step is recorded as it is done.
impl From<MaintenanceError> for HandlerError {
    fn from(error: MaintenanceError) -> Self {
        Self::Retry(error.to_string())
    }
}

/// What the maintenance jobs work on.
pub struct Maintenance {
    pub database: Database,
    pub storage: Arc<dyn Storage>,
    pub grace: Grace,
    pub metrics: Arc<MaintenanceMetrics>,
}

impl Maintenance {
    async fn db<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut stockflow_db::PgConnection) -> diesel::QueryResult<T> + Send + 'static,
    ) -> Result<T, MaintenanceError> {
        self.database.run(move |conn| Ok::<_, MaintenanceError>(work(conn)?)).await
    }
}

/// What `stockflow-worker reconcile` reads from the environment.
#[derive(Debug, Clone)]
pub struct ReconcileSettings {
    pub database: DatabaseSettings,
    pub telemetry: TelemetrySettings,
    pub storage: StorageSettings,
    pub grace: Grace,
}

impl ReconcileSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            telemetry: TelemetrySettings::from_env(env)?,
            database: DatabaseSettings::from_env(env)?,
            storage: StorageSettings::from_env(env)?,
            grace: Grace::from_env(env)?,
        })
    }
}

pub(crate) struct ExpireExportsHandler(pub(crate) Arc<Maintenance>);
pub(crate) struct CleanupUploadsHandler(pub(crate) Arc<Maintenance>);
pub(crate) struct ReconcileStorageHandler(pub(crate) Arc<Maintenance>);

impl Handler<ExpireExports> for ExpireExportsHandler {
    async fn handle(&self, _: Envelope<ExpireExports>) -> Result<(), HandlerError> {
        self.0.expire_exports().await.map(drop).map_err(HandlerError::from)
    }

    async fn give_up(&self, _: &Envelope<ExpireExports>, _: &str) -> Result<(), String> {
        Ok(())
    }
}

impl Handler<CleanupUploads> for CleanupUploadsHandler {
    async fn handle(&self, _: Envelope<CleanupUploads>) -> Result<(), HandlerError> {
        self.0.cleanup_uploads().await.map(drop).map_err(HandlerError::from)
    }

    async fn give_up(&self, _: &Envelope<CleanupUploads>, _: &str) -> Result<(), String> {
        Ok(())
    }
}

impl Handler<ReconcileStorage> for ReconcileStorageHandler {
    async fn handle(&self, envelope: Envelope<ReconcileStorage>) -> Result<(), HandlerError> {
        self.0.reconcile(envelope.payload.dry_run, |_| {}).await.map(drop).map_err(HandlerError::from)
    }

    async fn give_up(&self, _: &Envelope<ReconcileStorage>, _: &str) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grace_is_whole_minutes_within_a_week() {
        assert_eq!(Grace::from_env_value("60"), Some(Grace(60)));
        assert_eq!(Grace::from_env_value("10080"), Some(Grace(10_080)));
        for bad in ["0", "-5", "1.5", "10081", "", "an hour"] {
            assert_eq!(Grace::from_env_value(bad), None, "{bad:?}");
        }
        assert_eq!(Grace::DEFAULT.duration(), Duration::from_secs(3600));
    }
}
