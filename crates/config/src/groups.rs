//! Settings shared by several services, one struct per concern.

use crate::{AmqpNamespace, AmqpUrl, ConfigError, DatabaseUrl, Env, FromEnvValue, LogFilter};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct DatabaseSettings {
    /// What the pool connects to: PostgreSQL, or a pooler in front of it.
    pub url: DatabaseUrl,
    /// What needs a session of its own connects to (`DATABASE_DIRECT_URL`,
    /// else `DATABASE_URL`): migrations, the scheduler's leader lock, the
    /// backup's lock and `pg_dump`, admin commands. A transaction pooler
    /// would hand such a session's later statements to another server
    /// connection, where its locks and settings are not.
    pub direct_url: DatabaseUrl,
    /// Whether pooled connections keep prepared statements by name
    /// (`DATABASE_STATEMENT_CACHE`, default true). Off behind a pooler in
    /// transaction mode: a named statement lives on one server connection,
    /// and the next transaction may run on another. Off, every statement is
    /// sent with its parameters in one round trip (unnamed).
    pub statement_cache: bool,
    pub pool_size: NonZeroU32,
    /// How long to wait for a pooled connection before giving up.
    pub connect_timeout: Duration,
    /// Most database jobs waiting for a thread; one more is refused at once
    /// (`DATABASE_QUEUE_LIMIT`), so a flood cannot delay every request.
    pub queue_limit: NonZeroU32,
}

impl DatabaseSettings {
    /// With a pool of 10 connections unless DATABASE_POOL_SIZE says otherwise.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Self::from_env_with_pool(env, NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN))
    }

    /// For a service whose pool, when DATABASE_POOL_SIZE is not set, should
    /// have another size than 10.
    pub fn from_env_with_pool(env: &Env, default_pool_size: NonZeroU32) -> Result<Self, ConfigError> {
        let url: DatabaseUrl = env.required("DATABASE_URL")?;
        Ok(Self {
            direct_url: env.optional("DATABASE_DIRECT_URL")?.unwrap_or_else(|| url.clone()),
            url,
            statement_cache: env.or("DATABASE_STATEMENT_CACHE", true)?,
            pool_size: env.or("DATABASE_POOL_SIZE", default_pool_size)?,
            connect_timeout: seconds(
                env.or("DATABASE_CONNECT_TIMEOUT_SECS", NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN))?,
            ),
            queue_limit: env.or("DATABASE_QUEUE_LIMIT", DEFAULT_QUEUE_LIMIT)?,
        })
    }
}

/// About 50 ms of work for a pool of 4 at api-list's pace: deep enough for
/// bursts, short enough that a flood is refused rather than queued.
const DEFAULT_QUEUE_LIMIT: NonZeroU32 = NonZeroU32::MIN.saturating_add(255);

#[derive(Clone, Debug)]
pub struct BrokerSettings {
    pub url: AmqpUrl,
    pub namespace: AmqpNamespace,
    /// The AMQP heartbeat the client asks for (`AMQP_HEARTBEAT_SECS`), unless
    /// AMQP_URL sets `?heartbeat=`: how soon a link that went silent
    /// without closing is noticed.
    pub heartbeat: std::num::NonZeroU16,
}

impl BrokerSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            url: env.required("AMQP_URL")?,
            namespace: env.or("AMQP_NAMESPACE", AmqpNamespace::default())?,
            heartbeat: env
                .or("AMQP_HEARTBEAT_SECS", std::num::NonZeroU16::new(10).unwrap_or(std::num::NonZeroU16::MIN))?,
        })
    }
}

/// The outbox relay of a service that writes jobs (api, scheduler).
#[derive(Clone, Debug)]
pub struct OutboxSettings {
    /// How often the relay looks for jobs left unpublished, e.g. written
    /// while the broker was down (`OUTBOX_SWEEP_INTERVAL_MS`).
    pub sweep_interval: std::time::Duration,
}

impl OutboxSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let millis: std::num::NonZeroU64 = env.or("OUTBOX_SWEEP_INTERVAL_MS", DEFAULT_SWEEP_MS)?;
        Ok(Self { sweep_interval: std::time::Duration::from_millis(millis.get()) })
    }
}

const DEFAULT_SWEEP_MS: std::num::NonZeroU64 = std::num::NonZeroU64::MIN.saturating_add(4999);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line: what log shippers want in production.
    #[default]
    Json,
    /// Human-readable lines for a terminal.
    Pretty,
}

impl FromEnvValue for LogFormat {
    const EXPECTED: &'static str = "json or pretty";
    fn from_env_value(raw: &str) -> Option<Self> {
        match raw.to_ascii_lowercase().as_str() {
            "json" => Some(Self::Json),
            "pretty" => Some(Self::Pretty),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct TelemetrySettings {
    pub filter: LogFilter,
    pub format: LogFormat,
}

impl TelemetrySettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            filter: env.or("LOG_LEVEL", LogFilter::default())?,
            format: env.or("LOG_FORMAT", LogFormat::default())?,
        })
    }
}

/// Where a background service serves `/healthz` and `/readyz`.
#[derive(Clone, Copy, Debug)]
pub struct HealthSettings {
    pub bind: SocketAddr,
}

impl HealthSettings {
    /// `var` is the service's own variable, e.g. `WORKER_HEALTH_BIND`.
    pub fn from_env(env: &Env, var: &str, default: SocketAddr) -> Result<Self, ConfigError> {
        Ok(Self { bind: env.or(var, default)? })
    }
}

fn seconds(value: NonZeroU32) -> Duration {
    Duration::from_secs(u64::from(value.get()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Env {
        Env::from_pairs([
            ("DATABASE_URL", "postgres://u:p@127.0.0.1/db"),
            ("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
        ])
    }

    #[test]
    fn defaults_apply_when_optional_variables_are_unset() {
        let db = DatabaseSettings::from_env(&base()).unwrap();
        assert_eq!((db.pool_size.get(), db.connect_timeout), (10, Duration::from_secs(5)));
        assert_eq!(db.queue_limit.get(), 256);
        assert!(db.statement_cache);
        assert_eq!(db.direct_url, db.url, "the direct URL falls back to DATABASE_URL");
        let broker = BrokerSettings::from_env(&base()).unwrap();
        assert_eq!(broker.namespace.as_str(), "stockflow");
        assert_eq!(broker.heartbeat.get(), 10);
        let telemetry = TelemetrySettings::from_env(&base()).unwrap();
        assert_eq!((telemetry.filter.as_str(), telemetry.format), ("info", LogFormat::Json));
    }

    #[test]
    fn a_services_own_pool_default_yields_to_database_pool_size() {
        let four = NonZeroU32::new(4).unwrap();
        assert_eq!(DatabaseSettings::from_env_with_pool(&base(), four).unwrap().pool_size, four);
        let set = base().with("DATABASE_POOL_SIZE", "12");
        assert_eq!(DatabaseSettings::from_env_with_pool(&set, four).unwrap().pool_size.get(), 12);
    }

    #[test]
    fn behind_a_transaction_pooler_sessions_take_the_direct_url() {
        let env = base()
            .with("DATABASE_URL", "postgres://u:p@pgbouncer:6432/db")
            .with("DATABASE_DIRECT_URL", "postgres://u:p@postgres:5432/db")
            .with("DATABASE_STATEMENT_CACHE", "false");
        let db = DatabaseSettings::from_env(&env).unwrap();
        assert_eq!(db.url.expose(), "postgres://u:p@pgbouncer:6432/db");
        assert_eq!(db.direct_url.expose(), "postgres://u:p@postgres:5432/db");
        assert!(!db.statement_cache);
        let err = DatabaseSettings::from_env(&env.with("DATABASE_DIRECT_URL", "mysql://u:p@db/x")).unwrap_err();
        assert_eq!(err.var(), "DATABASE_DIRECT_URL");
    }

    #[test]
    fn each_group_names_its_bad_variable() {
        let cases = [
            ("DATABASE_POOL_SIZE", "0"),
            ("DATABASE_CONNECT_TIMEOUT_SECS", "-1"),
            ("DATABASE_QUEUE_LIMIT", "0"),
            ("DATABASE_STATEMENT_CACHE", "sometimes"),
            ("AMQP_NAMESPACE", "Has Spaces"),
            ("AMQP_HEARTBEAT_SECS", "0"),
            ("LOG_FORMAT", "xml"),
        ];
        for (var, value) in cases {
            let env = base().with(var, value);
            let err = DatabaseSettings::from_env(&env)
                .err()
                .or_else(|| BrokerSettings::from_env(&env).err())
                .or_else(|| TelemetrySettings::from_env(&env).err())
                .unwrap_or_else(|| panic!("{var}={value} was accepted"));
            assert_eq!(err.var(), var);
            assert!(err.to_string().ends_with(&format!("got \"{value}\"")), "{err}");
        }
        let err = DatabaseSettings::from_env(&base().without("DATABASE_URL")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "DATABASE_URL: required, expected a postgres://user:password@host:port/database URL, but it is not set"
        );
    }
}
