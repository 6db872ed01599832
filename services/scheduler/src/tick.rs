//! One tick of the leader: in one transaction on the leader's own session,
//! claim the due schedules (`FOR UPDATE SKIP LOCKED`), record their runs,
//! write their jobs to the outbox and advance `next_run_at`. The clock is
//! the database's `now()`. The transaction first checks that this session
//! still holds the leader lock; a session that died cannot commit at all.

use chrono::{DateTime, Duration, Utc};
use diesel::{Connection, PgConnection};
use std::collections::HashMap;
use stockflow_db::org_schedules;
use stockflow_db::outbox::RawJob;
use stockflow_db::schedule_exports::{self, Made};
use stockflow_db::schedule_runs::{self, NewRun};
use stockflow_db::schedules::{self, Advance, ScheduleRow};
use stockflow_domain::{
    BackupDatabase, BackupMedia, CleanupUploads, Decision, Envelope, ExpireExports, Firing, Job, Ping,
    ReconcileStorage, RunOutcome, RunTrigger, Timing,
};
use uuid::Uuid;

/// Schedules claimed per transaction. Measured with `bench/run.py
/// scheduler` (10,000 due at once): 1,000 took ~1.0 s to the outbox,
/// 5,000 ~0.67 s, 10,000 ~0.56 s; but the relay publishes only what is
/// committed, and with one transaction of 10,000 it starts only at the end
/// (all published 1.3 s against 1.08 s with 5,000).
pub const BATCH: i64 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum TickError {
    #[error("this session no longer holds the leader lock")]
    NotLeader,
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

/// What one transaction did, for metrics and logs.
#[derive(Debug, Default)]
pub struct TickReport {
    pub claimed: usize,
    /// Job ids written to the outbox.
    pub jobs: Vec<Uuid>,
    /// Runs fired, by metric label (a system schedule's name, or `org`).
    pub fired: HashMap<String, u64>,
    /// Slots recorded as skipped (overlap, or an organization at its
    /// limit of active exports), by label.
    pub skipped: HashMap<String, u64>,
    /// Schedules that found missed slots, by label.
    pub misfired: HashMap<String, u64>,
    /// Schedules paused because they cannot fire.
    pub broken: usize,
}

/// The label a schedule's series carry: system schedules by name, every
/// organization schedule as `org`, so the number of series stays bounded.
pub fn label(row: &ScheduleRow) -> String {
    if row.is_system() { row.name.clone() } else { "org".to_owned() }
}

/// One transaction's worth of due schedules; call again while `claimed`
/// equals [`BATCH`]. An organization's export schedule makes its export
/// as `POST /v1/exports` would, within the organization's
/// `max_active_exports`; a slot that finds the organization at its limit
/// is recorded as skipped, saying so, and the schedule goes on with its
/// next slot.
pub fn tick(conn: &mut PgConnection, grace: Duration, max_active_exports: u32) -> Result<TickReport, TickError> {
    conn.transaction(|conn| {
        if !schedules::holds_lead(conn)? {
            return Err(TickError::NotLeader);
        }
        let now = schedules::now(conn)?;
        let due = schedules::claim_due(conn, now, BATCH)?;
        let mut report = TickReport { claimed: due.len(), ..TickReport::default() };
        if due.is_empty() {
            return Ok(report);
        }
        let ids: Vec<Uuid> = due.iter().map(|row| row.id).collect();
        schedule_runs::mark_lost(conn, &ids, now)?;
        let open = schedule_runs::with_open_runs(conn, &ids)?;
        let mut orgs: Vec<Uuid> = due.iter().filter_map(|row| row.org_id).collect();
        orgs.sort_unstable();
        orgs.dedup();
        let mut active = schedule_exports::lock_active_counts(conn, &orgs)?;

        let mut runs = Vec::new();
        let mut jobs: HashMap<Uuid, RawJob> = HashMap::new();
        let mut made: HashMap<Uuid, Made> = HashMap::new();
        let mut moves = Vec::with_capacity(due.len());
        // Schedules often share a pattern and zone: each pair is parsed once.
        let mut timings: HashMap<(&str, &str), Result<Timing, String>> = HashMap::new();
        for row in &due {
            timings
                .entry((row.cron.as_str(), row.timezone.as_str()))
                .or_insert_with(|| row.timing().map_err(|error| error.to_string()));
        }
        for row in &due {
            let timing = match timings.get(&(row.cron.as_str(), row.timezone.as_str())) {
                Some(Ok(timing)) => timing,
                Some(Err(reason)) => {
                    broken(conn, row, reason, &mut report)?;
                    continue;
                }
                None => {
                    broken(conn, row, "its pattern was not read", &mut report)?;
                    continue;
                }
            };
            let firing = Firing {
                id: row.id,
                timing,
                misfire: row.misfire(),
                overlap: row.overlap(),
                catchup: row.catchup(),
                jitter: row.jitter(),
            };
            let plan = firing.plan(row.next_run_at, now, open.contains(&row.id), grace);
            let Some(next_run_at) = plan.next_run_at else {
                broken(conn, row, "the pattern has no further slot", &mut report)?;
                continue;
            };
            let label = label(row);
            if plan.misfired {
                *report.misfired.entry(label.clone()).or_default() += 1;
            }
            let mut last_status = None;
            for (slot, decision) in plan.slots {
                match decision {
                    Decision::Fire if row.org_id.is_some() => {
                        let Some((org, spec)) = row.org_id.zip(org_schedules::export_of(row)) else {
                            broken(conn, row, "its payload is not an export this version can make", &mut report)?;
                            last_status = None;
                            break;
                        };
                        let count = active.entry(org).or_default();
                        if *count >= i64::from(max_active_exports) {
                            let detail = format!(
                                "the organization already had {count} exports queued or running \
                                 (EXPORTS_MAX_ACTIVE_PER_ORG)"
                            );
                            runs.push(NewRun { detail: Some(detail), ..NewRun::skipped(row.id, slot, now) });
                            *report.skipped.entry(label.clone()).or_default() += 1;
                            last_status = last_status.or(Some(RunOutcome::Skipped.as_str()));
                            continue;
                        }
                        *count += 1;
                        let export = schedule_exports::make(org, row.created_by, &spec, correlation(row, slot), now);
                        let run = NewRun {
                            export_id: Some(export.export.id),
                            ..NewRun::sent(row.id, slot, RunTrigger::Scheduled, export.job.id, now)
                        };
                        made.insert(run.id, export);
                        runs.push(run);
                        *report.fired.entry(label.clone()).or_default() += 1;
                        last_status = Some(RunOutcome::Enqueued.as_str());
                    }
                    Decision::Fire => match message(row, slot, now) {
                        Ok(job) => {
                            let run = NewRun::sent(row.id, slot, RunTrigger::Scheduled, job.id, now);
                            jobs.insert(run.id, job);
                            runs.push(run);
                            *report.fired.entry(label.clone()).or_default() += 1;
                            last_status = Some(RunOutcome::Enqueued.as_str());
                        }
                        Err(reason) => {
                            broken(conn, row, &reason, &mut report)?;
                            last_status = None;
                            break;
                        }
                    },
                    Decision::SkipOverlap => {
                        runs.push(NewRun::skipped(row.id, slot, now));
                        *report.skipped.entry(label.clone()).or_default() += 1;
                        last_status = last_status.or(Some(RunOutcome::Skipped.as_str()));
                    }
                }
            }
            moves.push(Advance { id: row.id, next_run_at, last_run_at: last_status.map(|_| now), last_status });
        }
        // A slot already recorded (which only a buggy replica could cause)
        // keeps its first run, and its job and export are not made again.
        report.jobs = schedule_exports::record(conn, &runs, jobs, made)?;
        schedules::advance(conn, &moves)?;
        Ok(report)
    })
}

fn broken(conn: &mut PgConnection, row: &ScheduleRow, reason: &str, report: &mut TickReport) -> Result<(), TickError> {
    tracing::error!(schedule = %row.name, id = %row.id, reason, "schedule paused: it cannot fire");
    schedules::pause_broken(conn, row.id, reason)?;
    report.broken += 1;
    Ok(())
}

/// The job of one slot: the schedule's payload read as the message type
/// its routing key names (so it is exactly what `proto/` describes), in an
/// envelope whose correlation id names the schedule and the slot.
pub fn message(row: &ScheduleRow, slot: DateTime<Utc>, now: DateTime<Utc>) -> Result<RawJob, String> {
    let correlation = correlation(row, slot);
    let payload = &row.payload;
    let message = match row.routing_key.as_str() {
        BackupDatabase::TYPE => envelope::<BackupDatabase>(payload, correlation, now),
        BackupMedia::TYPE => envelope::<BackupMedia>(payload, correlation, now),
        CleanupUploads::TYPE => envelope::<CleanupUploads>(payload, correlation, now),
        ExpireExports::TYPE => envelope::<ExpireExports>(payload, correlation, now),
        ReconcileStorage::TYPE => envelope::<ReconcileStorage>(payload, correlation, now),
        Ping::TYPE => envelope::<Ping>(payload, correlation, now),
        other => Err(format!("no job of type {other:?} can be scheduled")),
    }?;
    Ok(message)
}

/// `schedule:<id>:<slot>`: what ties a job to the slot that sent it.
fn correlation(row: &ScheduleRow, slot: DateTime<Utc>) -> String {
    format!("schedule:{}:{}", row.id, slot.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

fn envelope<P: Job>(payload: &serde_json::Value, correlation: String, now: DateTime<Utc>) -> Result<RawJob, String> {
    let payload: P = serde_json::from_value(payload.clone())
        .map_err(|error| format!("the payload is not a valid {}: {error}", P::TYPE))?;
    let mut envelope = Envelope::new(payload, correlation);
    envelope.occurred_at = now;
    let message = serde_json::to_value(&envelope).map_err(|error| error.to_string())?;
    Ok(RawJob { id: envelope.id, routing_key: P::TYPE.to_owned(), message })
}
