//! Settings for every Stockflow service, read from the environment once at
//! start. Each concern (database, broker, telemetry, ...) has its own struct;
//! each service composes the ones it needs and adds its own extras.
//!
//! A missing or malformed variable is reported as one line that names the
//! variable and what it expected, and the service exits with code 2.

mod env;
mod groups;
mod secret;
mod storage;
mod values;

pub use env::{ConfigError, Env, FromEnvValue};
pub use groups::{BrokerSettings, DatabaseSettings, HealthSettings, LogFormat, OutboxSettings, TelemetrySettings};
pub use secret::Secret;
pub use storage::{
    AbsolutePath, BackupStorageSettings, BucketName, HttpUrl, PartSize, S3Settings, StorageBackendKind, StorageSettings,
};
pub use values::{AmqpNamespace, AmqpUrl, DatabaseUrl, LogFilter};

/// Exit code of a service whose configuration is invalid (EX_USAGE-like, and
/// distinct from the 1 of a runtime failure so supervisors can tell them apart).
pub const CONFIG_EXIT_CODE: u8 = 2;

/// Parses settings from the process environment, or prints
/// `config error: <VAR>: <problem>` to stderr and exits with code 2.
pub fn load_or_exit<S>(parse: impl FnOnce(&Env) -> Result<S, ConfigError>) -> S {
    match parse(&Env::from_process()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("config error: {error}");
            std::process::exit(i32::from(CONFIG_EXIT_CODE));
        }
    }
}
