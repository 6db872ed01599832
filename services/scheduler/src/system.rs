//! The installation's own schedules, written from the settings at every
//! start: a changed variable changes its row, `off` switches it off.

use crate::settings::SchedulerSettings;
use diesel::PgConnection;
use stockflow_db::schedules::{self, SystemSchedule, Upserted};
use stockflow_domain::{
    BackupDatabase, BackupMedia, BackupTrigger, CleanupUploads, CronExpr, ExpireExports, Job, ReconcileStorage,
    RunTimeout, Timing,
};

/// What the settings ask for: each system schedule by name, `None` when
/// switched off.
pub fn wanted(settings: &SchedulerSettings) -> Vec<(&'static str, Option<SystemSchedule>)> {
    let zone = settings.timezone;
    let system = &settings.system;
    let timing = |cron: &CronExpr| Timing::new(cron.clone(), zone);
    // A backup of a large installation runs for hours; the others minutes.
    let backup_timeout = RunTimeout::from_secs(6 * 3600).unwrap_or_default();
    let cleanup = system.cleanup_uploads_hours.and_then(|hours| CronExpr::parse(&every_hours(hours)).ok());
    vec![
        (
            "db-backup",
            system.db_backup.as_ref().map(|cron| SystemSchedule {
                name: "db-backup",
                timing: timing(cron),
                routing_key: BackupDatabase::TYPE,
                payload: payload(&BackupDatabase { trigger: BackupTrigger::Scheduled }),
                run_timeout: backup_timeout,
            }),
        ),
        (
            "media-backup",
            system.media_backup.as_ref().map(|cron| SystemSchedule {
                name: "media-backup",
                timing: timing(cron),
                routing_key: BackupMedia::TYPE,
                payload: payload(&BackupMedia { trigger: BackupTrigger::Scheduled }),
                run_timeout: backup_timeout,
            }),
        ),
        (
            "cleanup-uploads",
            cleanup.as_ref().map(|cron| SystemSchedule {
                name: "cleanup-uploads",
                timing: timing(cron),
                routing_key: CleanupUploads::TYPE,
                payload: payload(&CleanupUploads {}),
                run_timeout: RunTimeout::DEFAULT,
            }),
        ),
        (
            "expire-exports",
            system.export_expiry.as_ref().map(|cron| SystemSchedule {
                name: "expire-exports",
                timing: timing(cron),
                routing_key: ExpireExports::TYPE,
                payload: payload(&ExpireExports {}),
                run_timeout: RunTimeout::DEFAULT,
            }),
        ),
        (
            "reconcile-storage",
            system.storage_reconcile.as_ref().map(|cron| SystemSchedule {
                name: "reconcile-storage",
                timing: timing(cron),
                routing_key: ReconcileStorage::TYPE,
                payload: payload(&ReconcileStorage { dry_run: false }),
                run_timeout: RunTimeout::DEFAULT,
            }),
        ),
    ]
}

/// `CLEANUP_UPLOADS_INTERVAL_HOURS` as a pattern: on the hour, every
/// `hours` hours from midnight (a divisor of 24, so every day alike).
fn every_hours(hours: u8) -> String {
    if hours >= 24 { "0 0 * * *".to_owned() } else { format!("0 */{hours} * * *") }
}

fn payload<P: Job>(payload: &P) -> serde_json::Value {
    serde_json::to_value(payload).unwrap_or_default()
}

/// Writes every system schedule as the settings have it.
pub fn apply(conn: &mut PgConnection, settings: &SchedulerSettings) -> diesel::QueryResult<()> {
    for (name, schedule) in wanted(settings) {
        match schedule {
            Some(schedule) => {
                let outcome = schedules::upsert_system(conn, &schedule)?;
                if outcome != Upserted::Kept {
                    tracing::info!(
                        schedule = name,
                        cron = schedule.timing.cron.as_str(),
                        timezone = schedule.timing.zone.name(),
                        ?outcome,
                        "system schedule written"
                    );
                }
            }
            None => {
                if schedules::disable_system(conn, name)? {
                    tracing::info!(schedule = name, "system schedule switched off");
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_interval_that_divides_a_day_is_a_valid_pattern() {
        for hours in [1, 2, 3, 4, 6, 8, 12, 24] {
            assert!(CronExpr::parse(&every_hours(hours)).is_ok(), "{hours}");
        }
        assert_eq!(every_hours(6), "0 */6 * * *");
    }
}
