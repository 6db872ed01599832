//! The scheduler's settings, read once at start: how often it ticks, how
//! soon a dead leader's lock is freed, and the system schedules.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;
use stockflow_config::{
    BrokerSettings, ConfigError, DatabaseSettings, Env, FromEnvValue, HealthSettings, OutboxSettings, TelemetrySettings,
};
use stockflow_domain::{CronExpr, Timezone};

pub const HEALTH_BIND_VAR: &str = "SCHEDULER_HEALTH_BIND";
pub const DEFAULT_HEALTH_BIND: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8002);

#[derive(Debug, Clone)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub broker: BrokerSettings,
    pub telemetry: TelemetrySettings,
    pub health: HealthSettings,
    pub outbox: OutboxSettings,
    pub scheduler: SchedulerSettings,
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            telemetry: TelemetrySettings::from_env(env)?,
            // The leader fires through a session of its own; the pool serves
            // the outbox relay and /metrics.
            database: DatabaseSettings::from_env_with_pool(env, NonZeroU32::MIN.saturating_add(2))?,
            broker: BrokerSettings::from_env(env)?,
            health: HealthSettings::from_env(env, HEALTH_BIND_VAR, DEFAULT_HEALTH_BIND)?,
            outbox: OutboxSettings::from_env(env)?,
            scheduler: SchedulerSettings::from_env(env)?,
        })
    }
}

/// Only what the admin commands need: the database and logs.
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

#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    /// How often the leader looks for due schedules, and a standby for a
    /// free leader lock (`SCHEDULER_TICK_MS`).
    pub tick: Duration,
    /// How long a leader that vanished without closing its connection (a
    /// host gone, a cut link) keeps the lock: TCP keepalives on the leader's
    /// session end it within about this long (`SCHEDULER_LEASE_SECS`). A
    /// leader that exits or whose session is terminated frees it at once.
    pub lease: Duration,
    /// The zone of the system schedules' patterns (`SCHEDULER_TIMEZONE`).
    pub timezone: Timezone,
    /// Exports an organization may have queued or running: the api's
    /// limit, which its export schedules keep too
    /// (`EXPORTS_MAX_ACTIVE_PER_ORG`).
    pub max_active_exports: NonZeroU32,
    pub system: SystemSettings,
}

/// The system schedules; `None` is switched off (the value `off`).
#[derive(Debug, Clone)]
pub struct SystemSettings {
    pub db_backup: Option<CronExpr>,
    pub media_backup: Option<CronExpr>,
    /// Every this many hours, from midnight.
    pub cleanup_uploads_hours: Option<u8>,
    pub export_expiry: Option<CronExpr>,
    pub storage_reconcile: Option<CronExpr>,
}

/// The api's default of `EXPORTS_MAX_ACTIVE_PER_ORG`.
pub const DEFAULT_MAX_ACTIVE_EXPORTS: u32 = 10;
pub const DEFAULT_DB_BACKUP_CRON: &str = "0 2 * * *";
pub const DEFAULT_MEDIA_BACKUP_CRON: &str = "30 2 * * *";
pub const DEFAULT_CLEANUP_UPLOADS_HOURS: u8 = 6;
pub const DEFAULT_EXPORT_EXPIRY_CRON: &str = "15 * * * *";
pub const DEFAULT_STORAGE_RECONCILE_CRON: &str = "45 3 * * *";

impl SchedulerSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let cron = |var: &str, default: &str| -> Result<Option<CronExpr>, ConfigError> {
            match env.optional::<CronSetting>(var)? {
                Some(CronSetting(value)) => Ok(value),
                None => Ok(CronExpr::parse(default).ok()),
            }
        };
        Ok(Self {
            tick: Duration::from_millis(env.or("SCHEDULER_TICK_MS", TickMillis(1000))?.0),
            lease: Duration::from_secs(env.or("SCHEDULER_LEASE_SECS", LeaseSecs(10))?.0),
            timezone: env.or("SCHEDULER_TIMEZONE", ZoneSetting(Timezone::UTC))?.0,
            max_active_exports: env.or(
                "EXPORTS_MAX_ACTIVE_PER_ORG",
                NonZeroU32::new(DEFAULT_MAX_ACTIVE_EXPORTS).unwrap_or(NonZeroU32::MIN),
            )?,
            system: SystemSettings {
                db_backup: cron("DB_BACKUP_CRON", DEFAULT_DB_BACKUP_CRON)?,
                media_backup: cron("MEDIA_BACKUP_CRON", DEFAULT_MEDIA_BACKUP_CRON)?,
                cleanup_uploads_hours: env
                    .or("CLEANUP_UPLOADS_INTERVAL_HOURS", IntervalHours(Some(DEFAULT_CLEANUP_UPLOADS_HOURS)))?
                    .0,
                export_expiry: cron("EXPORT_EXPIRY_CRON", DEFAULT_EXPORT_EXPIRY_CRON)?,
                storage_reconcile: cron("STORAGE_RECONCILE_CRON", DEFAULT_STORAGE_RECONCILE_CRON)?,
            },
        })
    }
}

/// A cron pattern, or `off`.
struct CronSetting(Option<CronExpr>);

impl FromEnvValue for CronSetting {
    const EXPECTED: &'static str = "a cron pattern of 5 or 6 fields such as \"0 2 * * *\", or off";
    fn from_env_value(raw: &str) -> Option<Self> {
        if raw.eq_ignore_ascii_case("off") {
            return Some(Self(None));
        }
        CronExpr::parse(raw).ok().map(|cron| Self(Some(cron)))
    }
}

struct ZoneSetting(Timezone);

impl FromEnvValue for ZoneSetting {
    const EXPECTED: &'static str = "an IANA time zone such as UTC or Europe/Berlin";
    fn from_env_value(raw: &str) -> Option<Self> {
        Timezone::parse(raw).ok().map(Self)
    }
}

/// Hours between runs, a divisor of 24 so the runs fall at the same hours
/// every day; or `off`.
struct IntervalHours(Option<u8>);

impl FromEnvValue for IntervalHours {
    const EXPECTED: &'static str = "a number of hours that divides 24 (1, 2, 3, 4, 6, 8, 12 or 24), or off";
    fn from_env_value(raw: &str) -> Option<Self> {
        if raw.eq_ignore_ascii_case("off") {
            return Some(Self(None));
        }
        raw.parse::<u8>().ok().filter(|hours| *hours > 0 && 24 % hours == 0).map(|hours| Self(Some(hours)))
    }
}

struct TickMillis(u64);

impl FromEnvValue for TickMillis {
    const EXPECTED: &'static str = "milliseconds between 100 and 60000";
    fn from_env_value(raw: &str) -> Option<Self> {
        raw.parse().ok().filter(|ms| (100..=60_000).contains(ms)).map(Self)
    }
}

struct LeaseSecs(u64);

impl FromEnvValue for LeaseSecs {
    const EXPECTED: &'static str = "seconds between 2 and 300";
    fn from_env_value(raw: &str) -> Option<Self> {
        raw.parse().ok().filter(|secs| (2..=300).contains(secs)).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        let base = Env::from_pairs([("DATABASE_URL", "postgres://u:p@127.0.0.1/db"), ("AMQP_URL", "amqp://127.0.0.1")]);
        pairs.iter().fold(base, |env, (var, value)| env.with(*var, *value))
    }

    #[test]
    fn defaults_are_documented_values() {
        let settings = SchedulerSettings::from_env(&env(&[])).unwrap();
        assert_eq!((settings.tick, settings.lease), (Duration::from_secs(1), Duration::from_secs(10)));
        assert_eq!(settings.timezone, Timezone::UTC);
        assert_eq!(settings.max_active_exports.get(), 10, "the api's default");
        let system = settings.system;
        assert_eq!(system.db_backup.unwrap().as_str(), DEFAULT_DB_BACKUP_CRON);
        assert_eq!(system.media_backup.unwrap().as_str(), DEFAULT_MEDIA_BACKUP_CRON);
        assert_eq!(system.cleanup_uploads_hours, Some(6));
        assert_eq!(system.export_expiry.unwrap().as_str(), DEFAULT_EXPORT_EXPIRY_CRON);
        assert_eq!(system.storage_reconcile.unwrap().as_str(), DEFAULT_STORAGE_RECONCILE_CRON);
    }

    #[test]
    fn each_system_schedule_can_be_switched_off() {
        let settings = SchedulerSettings::from_env(&env(&[
            ("DB_BACKUP_CRON", "off"),
            ("MEDIA_BACKUP_CRON", "OFF"),
            ("CLEANUP_UPLOADS_INTERVAL_HOURS", "off"),
            ("EXPORT_EXPIRY_CRON", "off"),
            ("STORAGE_RECONCILE_CRON", "off"),
        ]))
        .unwrap();
        let system = settings.system;
        assert!(system.db_backup.is_none() && system.media_backup.is_none());
        assert!(system.cleanup_uploads_hours.is_none());
        assert!(system.export_expiry.is_none() && system.storage_reconcile.is_none());
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (var, value) in [
            ("DB_BACKUP_CRON", "every night"),
            ("MEDIA_BACKUP_CRON", "0 0 30 2 *"),
            ("CLEANUP_UPLOADS_INTERVAL_HOURS", "5"),
            ("SCHEDULER_TIMEZONE", "Mars/Olympus"),
            ("SCHEDULER_TICK_MS", "10"),
            ("SCHEDULER_LEASE_SECS", "1"),
            ("EXPORTS_MAX_ACTIVE_PER_ORG", "0"),
        ] {
            let error = SchedulerSettings::from_env(&env(&[(var, value)])).unwrap_err();
            assert_eq!(error.var(), var);
            assert!(error.to_string().ends_with(&format!("got \"{value}\"")), "{error}");
        }
    }
}
