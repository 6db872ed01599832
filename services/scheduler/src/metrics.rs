//! The scheduler's `/metrics`: runs fired by schedule and trigger, slots
//! skipped and misfired, whether this replica leads, tick duration, and
//! the seconds since each system schedule's last successful run (read from
//! the database at scrape time). Organization schedules share the label
//! `schedule="org"`, so the number of series does not grow with tenants.

use crate::tick::TickReport;
use futures_util::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use stockflow_db::{Database, DbError};
use stockflow_telemetry::MetricsSource;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Fired {
    schedule: String,
    trigger: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Schedule {
    schedule: String,
}

pub(crate) struct SchedulerMetrics {
    registry: Registry,
    fired: Family<Fired, Counter>,
    skipped: Family<Schedule, Counter>,
    misfired: Family<Schedule, Counter>,
    leader: Gauge,
    ticks: Histogram,
    since_success: Family<Schedule, Gauge<f64, AtomicU64>>,
    database: Database,
}

const TICK_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

impl SchedulerMetrics {
    pub(crate) fn new(database: Database) -> Self {
        let mut registry = stockflow_telemetry::metrics::registry("scheduler");
        let metrics = Self {
            fired: Family::default(),
            skipped: Family::default(),
            misfired: Family::default(),
            leader: Gauge::default(),
            ticks: Histogram::new(TICK_BUCKETS),
            since_success: Family::default(),
            registry: Registry::default(),
            database,
        };
        registry.register(
            "scheduler_runs_fired",
            "Runs fired (jobs sent), by schedule (system schedules by name, organization ones as org) and trigger",
            metrics.fired.clone(),
        );
        registry.register(
            "scheduler_runs_skipped",
            "Slots recorded as skipped, nothing sent: the previous run had not finished (overlap: skip), or the organization was at EXPORTS_MAX_ACTIVE_PER_ORG; by schedule",
            metrics.skipped.clone(),
        );
        registry.register(
            "scheduler_misfires",
            "Times a schedule found slots that passed unfired (handled by its misfire policy), by schedule",
            metrics.misfired.clone(),
        );
        registry.register(
            "scheduler_leader",
            "1 while this replica leads and fires schedules, 0 on standby",
            metrics.leader.clone(),
        );
        registry.register_with_unit(
            "scheduler_tick_duration",
            "Time of one leader tick transaction: claim, record runs, write jobs, advance",
            Unit::Seconds,
            metrics.ticks.clone(),
        );
        registry.register_with_unit(
            "scheduler_since_last_success",
            "Time since the last run of each system schedule whose job reported success; absent before the first",
            Unit::Seconds,
            metrics.since_success.clone(),
        );
        Self { registry, ..metrics }
    }

    pub(crate) fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    pub(crate) fn observe(&self, report: &TickReport, took: Duration) {
        self.ticks.observe(took.as_secs_f64());
        for (schedule, count) in &report.fired {
            self.fired.get_or_create(&Fired { schedule: schedule.clone(), trigger: "scheduled" }).inc_by(*count);
        }
        for (schedule, count) in &report.skipped {
            self.skipped.get_or_create(&Schedule { schedule: schedule.clone() }).inc_by(*count);
        }
        for (schedule, count) in &report.misfired {
            self.misfired.get_or_create(&Schedule { schedule: schedule.clone() }).inc_by(*count);
        }
    }

    async fn refresh_since_success(&self) {
        let read = self
            .database
            .run(|conn| Ok::<_, DbError>(stockflow_db::schedule_runs::system_seconds_since_success(conn)?));
        match tokio::time::timeout(Duration::from_secs(2), read).await {
            Ok(Ok(ages)) => {
                self.since_success.clear();
                for (schedule, seconds) in ages {
                    self.since_success.get_or_create(&Schedule { schedule }).set(seconds);
                }
            }
            Ok(Err(error)) => tracing::debug!(%error, "cannot read the schedules' last successes"),
            Err(_) => tracing::debug!("reading the schedules' last successes timed out"),
        }
    }
}

impl MetricsSource for SchedulerMetrics {
    fn registry(&self) -> &Registry {
        &self.registry
    }

    fn refresh(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.refresh_since_success())
    }
}
