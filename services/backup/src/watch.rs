//! What makes backups trustworthy from outside: the `/metrics` an operator
//! graphs and alerts on, and alerts sent by the service itself when a run
//! or verify fails, or when no verified backup is younger than
//! `BACKUP_MAX_AGE_HOURS` (so a backup that silently stopped running is
//! reported too, not only one that ran and failed).

use crate::alerts::{Alert, AlertKind, Alerter, staleness_alert_due};
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stockflow_db::backup_runs::{self, BackupRun, Freshness};
use stockflow_db::{Database, DbError};
use stockflow_telemetry::{MetricsSource, Shutdown};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Outcome {
    /// `run` or `verify`.
    step: &'static str,
    status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Artifact {
    artifact: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Channel {
    channel: &'static str,
    delivered: &'static str,
}

pub struct BackupMetrics {
    registry: Registry,
    last_success: Gauge<f64, AtomicU64>,
    last_verified: Gauge<f64, AtomicU64>,
    durations: Family<Outcome, Histogram>,
    bytes: Family<Artifact, Counter>,
    alerts: Family<Channel, Counter>,
    database: Database,
}

/// Runs take seconds to hours.
const DURATION_BUCKETS: [f64; 10] = [1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0];

impl BackupMetrics {
    /// Adds the backup families to `registry` (which may hold others).
    pub fn new(mut registry: Registry, database: Database) -> Self {
        let last_success = Gauge::<f64, AtomicU64>::default();
        let last_verified = Gauge::<f64, AtomicU64>::default();
        let durations = Family::<Outcome, Histogram>::new_with_constructor(|| Histogram::new(DURATION_BUCKETS));
        let bytes = Family::<Artifact, Counter>::default();
        let alerts = Family::<Channel, Counter>::default();
        registry.register_with_unit(
            "backup_last_success_timestamp",
            "When the newest succeeded backup run finished (Unix time); 0 before the first",
            Unit::Seconds,
            last_success.clone(),
        );
        registry.register_with_unit(
            "backup_last_verified_timestamp",
            "When a backup run still succeeded was last verified by restore (Unix time); 0 before the first",
            Unit::Seconds,
            last_verified.clone(),
        );
        registry.register_with_unit(
            "backup_duration",
            "Time of backup runs (dump, media and verify) and of verifies on their own, by step and status",
            Unit::Seconds,
            durations.clone(),
        );
        registry.register_with_unit(
            "backup_stored",
            "Bytes written to backup storage: database dumps, and media objects copied (not those already there)",
            Unit::Bytes,
            bytes.clone(),
        );
        registry.register(
            "backup_alerts",
            "Alert deliveries by channel, delivered or given up after every attempt",
            alerts.clone(),
        );
        Self { registry, last_success, last_verified, durations, bytes, alerts, database }
    }

    fn set_freshness(&self, freshness: &Freshness) {
        let seconds = |at: Option<DateTime<Utc>>| at.map_or(0.0, |at| at.timestamp_micros() as f64 / 1e6);
        self.last_success.set(seconds(freshness.last_success));
        self.last_verified.set(seconds(freshness.last_verified));
    }

    async fn refresh_freshness(&self) {
        let read = self.database.run(|conn| Ok::<_, DbError>(backup_runs::freshness(conn)?));
        match tokio::time::timeout(Duration::from_secs(2), read).await {
            Ok(Ok(freshness)) => self.set_freshness(&freshness),
            Ok(Err(error)) => tracing::debug!(%error, "cannot read the backups' freshness"),
            Err(_) => tracing::debug!("reading the backups' freshness timed out"),
        }
    }
}

impl MetricsSource for BackupMetrics {
    fn registry(&self) -> &Registry {
        &self.registry
    }

    fn refresh(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.refresh_freshness())
    }
}

/// Looks at every run as it ends, and at the backups' age on a timer.
pub struct Watch {
    pub metrics: Arc<BackupMetrics>,
    pub alerter: Alerter,
    /// When the last staleness alert went out, so one episode is one alert
    /// (repeated every max age while it lasts).
    stale_alerted: Mutex<Option<DateTime<Utc>>>,
    started: DateTime<Utc>,
}

impl Watch {
    pub fn new(metrics: Arc<BackupMetrics>, alerter: Alerter) -> Self {
        Self { metrics, alerter, stale_alerted: Mutex::new(None), started: Utc::now() }
    }

    /// Records a run (`step` "run") or a verify (`step` "verify") that
    /// ended, and alerts when it failed.
    pub async fn ended(&self, step: &'static str, run: &BackupRun, took: Duration) {
        let status = run.status.clone();
        self.metrics.durations.get_or_create(&Outcome { step, status }).observe(took.as_secs_f64());
        if step == "run" {
            let positive = |bytes: Option<i64>| bytes.and_then(|b| u64::try_from(b).ok()).unwrap_or(0);
            self.metrics.bytes.get_or_create(&Artifact { artifact: "database" }).inc_by(positive(run.db_bytes));
            self.metrics.bytes.get_or_create(&Artifact { artifact: "media" }).inc_by(positive(run.media_new_bytes));
        }
        if run.status != backup_runs::FAILED {
            return;
        }
        let reason = run.error.clone().unwrap_or_else(|| "no reason was recorded".to_owned());
        // A run is failed by its verify when its artifacts were all stored.
        let verify_failed = step == "verify" || reason.starts_with("verification failed");
        let (kind, what) = if verify_failed {
            (AlertKind::VerifyFailed, "verify of backup run")
        } else {
            (AlertKind::BackupFailed, "backup run")
        };
        let alert = Alert::new(kind, Some(run.id), format!("{what} {} failed", run.id), reason, Utc::now());
        self.deliver(&alert).await;
    }

    async fn deliver(&self, alert: &Alert) {
        for delivery in self.alerter.deliver(alert).await {
            let delivered = if delivery.delivered() { "yes" } else { "no" };
            self.metrics.alerts.get_or_create(&Channel { channel: delivery.channel, delivered }).inc();
        }
    }

    /// One look at the backups' age: alerts when no verified backup is
    /// younger than the max age (counting from the first run, or from this
    /// service's start when there is none yet).
    pub async fn check_age(&self, now: DateTime<Utc>) -> Result<bool, DbError> {
        let freshness = self.metrics.database.run(|conn| Ok::<_, DbError>(backup_runs::freshness(conn)?)).await?;
        self.metrics.set_freshness(&freshness);
        let since = freshness.last_verified.or(freshness.first_started).unwrap_or(self.started);
        let max_age = self.alerter.settings().max_age;
        let last_alerted = *self.stale_alerted.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !staleness_alert_due(since, last_alerted, now, max_age) {
            return Ok(false);
        }
        let detail = match freshness.last_verified {
            Some(at) => format!("the newest verified backup is from {}", at.to_rfc3339()),
            None => "no backup has been verified yet".to_owned(),
        };
        let hours = max_age.as_secs() / 3600;
        let alert = Alert::new(
            AlertKind::NoRecentVerifiedBackup,
            None,
            format!("no verified backup in the last {hours} hours (BACKUP_MAX_AGE_HOURS)"),
            detail,
            now,
        );
        *self.stale_alerted.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(now);
        self.deliver(&alert).await;
        Ok(true)
    }

    /// Checks the age every `every` until shutdown.
    pub fn spawn_age_checks(self: Arc<Self>, every: Duration, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.wait() => return,
                    _ = ticks.tick() => {
                        if let Err(error) = self.check_age(Utc::now()).await {
                            tracing::warn!(%error, "cannot check how old the newest verified backup is");
                        }
                    }
                }
            }
        })
    }
}
