//! `stockflow-worker migrate-storage`: copies every media object from one
//! backend to the other, verifies each copy by sha256 and records it in the
//! database as it completes, so an interrupted run resumes where it stopped.
//!
//! The source is listed once into a session-private table. The database
//! then answers what it references that the source lacks, how much is left
//! to copy (for the ETA) and, page by page, what to copy next, so the
//! worker's memory does not grow with the number of objects.

mod copy;
mod endpoint;
mod ledger;
mod meter;
mod report;

pub use endpoint::{Backend, Descriptor, Direction, Endpoint, SameBackend};
pub use report::Report;

use copy::Copier;
use futures_util::StreamExt;
use ledger::Ledger;
use meter::Meter;
use std::num::NonZeroUsize;
use std::time::Instant;
use stockflow_config::{ConfigError, DatabaseSettings, Env, StorageSettings, TelemetrySettings};
use stockflow_db::storage_migrations::{self as progress, ListedObject, ListingTotals, MissingReferences};
use stockflow_db::{Database, DbError, PgConnection};
use stockflow_storage::{Prefix, StorageError};
use stockflow_telemetry::Shutdown;

/// Objects sent to the database per insert while listing.
const LISTING_BATCH: usize = 1000;
/// Keys named in the missing report; the rest are counted.
const REPORT_SAMPLE: usize = 20;

/// What the command reads from the environment: both stores, whatever
/// `STORAGE_BACKEND` says, the database for progress, and logs.
#[derive(Clone, Debug)]
pub struct MigrateSettings {
    pub database: DatabaseSettings,
    pub telemetry: TelemetrySettings,
    pub source: StorageSettings,
    pub target: StorageSettings,
}

impl MigrateSettings {
    pub fn from_env(env: &Env, direction: Direction) -> Result<Self, ConfigError> {
        Ok(Self {
            telemetry: TelemetrySettings::from_env(env)?,
            database: DatabaseSettings::from_env(env)?,
            source: direction.from().settings_from_env(env)?,
            target: direction.to().settings_from_env(env)?,
        })
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub dry_run: bool,
    pub skip_missing: bool,
    /// Objects copied at once.
    pub jobs: NonZeroUsize,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("cannot open {descriptor}: {error}")]
    Open { descriptor: Descriptor, error: StorageError },
    #[error("the source {0} does not exist: check MEDIA_ROOT")]
    NoSourceRoot(Descriptor),
    #[error("the target {descriptor} cannot take objects: {error}")]
    TargetDown { descriptor: Descriptor, error: StorageError },
    #[error("cannot list {descriptor}: {error}")]
    List { descriptor: Descriptor, error: StorageError },
    #[error("another migrate-storage from {from} to {to} is running; wait for it or stop it first")]
    Busy { from: Descriptor, to: Descriptor },
    #[error(
        "{0} objects that the database references are missing at the source, so nothing is copied; \
         --skip-missing copies the rest and records these as missing"
    )]
    MissingAtSource(u64),
    #[error("{0} objects could not be copied (see the log); run the command again to retry them")]
    Failed(u64),
    #[error("interrupted; run the same command again to resume")]
    Interrupted,
    #[error("cannot listen for signals: {0}")]
    Signals(std::io::Error),
}

/// Opens the database and the stores the settings name, then copies, or
/// only surveys with `--dry-run`.
pub async fn run(settings: MigrateSettings, options: Options, shutdown: Shutdown) -> Result<Report, MigrateError> {
    // One direct connection: it holds the pair's lock and the listing table,
    // both of which belong to a session.
    let conn = Database::establish(&settings.database)?;
    let source = Endpoint::open_source(&settings.source)?;
    if options.dry_run {
        // The target is only named: opening a local one would create its root.
        return dry_run(conn, &source, &Descriptor::of(&settings.target), options.skip_missing, &shutdown).await;
    }
    let target = Endpoint::open_target(&settings.target)?;
    copy(conn, &source, &target, options.skip_missing, options.jobs, &shutdown).await
}

/// Lists the source and reports what a copy would do, writing nothing: no
/// object, no row (the listing table is private to this session and goes
/// with it).
#[tracing::instrument(skip_all, fields(from = %source.descriptor, to = %target), err)]
pub async fn dry_run(
    conn: PgConnection,
    source: &Endpoint,
    target: &Descriptor,
    skip_missing: bool,
    shutdown: &Shutdown,
) -> Result<Report, MigrateError> {
    let started = Instant::now();
    let ledger = Ledger::new(conn, &source.descriptor, target);
    let meter = Meter::start();
    let survey = survey(&ledger, source, &meter, shutdown).await?;
    meter.finish();
    Ok(Report::dry_run(&survey.totals, survey.missing, skip_missing, started.elapsed()))
}

/// Copies every object of `source` that no run of this pair copied yet to
/// `target`, verified, recording each; resumes the pair's unfinished run if
/// there is one. One process per pair at a time.
#[tracing::instrument(skip_all, fields(from = %source.descriptor, to = %target.descriptor, jobs = jobs.get()), err)]
pub async fn copy(
    conn: PgConnection,
    source: &Endpoint,
    target: &Endpoint,
    skip_missing: bool,
    jobs: NonZeroUsize,
    shutdown: &Shutdown,
) -> Result<Report, MigrateError> {
    let ledger = Ledger::new(conn, &source.descriptor, &target.descriptor);
    if !ledger.call(progress::try_lock).await? {
        return Err(MigrateError::Busy { from: source.descriptor.clone(), to: target.descriptor.clone() });
    }
    let copied = copy_locked(&ledger, source, target, skip_missing, jobs, shutdown).await;
    if let Err(error) = ledger.call(progress::unlock).await {
        tracing::warn!(%error, "cannot release the lock of this pair; it goes when the connection closes");
    }
    copied
}

async fn copy_locked(
    ledger: &Ledger,
    source: &Endpoint,
    target: &Endpoint,
    skip_missing: bool,
    jobs: NonZeroUsize,
    shutdown: &Shutdown,
) -> Result<Report, MigrateError> {
    let started = Instant::now();
    target
        .store
        .health_check()
        .await
        .map_err(|error| MigrateError::TargetDown { descriptor: target.descriptor.clone(), error })?;
    let meter = Meter::start();
    let survey = survey(ledger, source, &meter, shutdown).await?;
    if survey.missing.total > 0 && !skip_missing {
        meter.finish();
        return Ok(Report::refused(&survey.totals, survey.missing, started.elapsed()));
    }

    let previous = ledger.call(progress::latest).await?;
    let run = ledger.call(progress::resume_or_start).await?;
    match previous {
        Some(previous) if previous.id == run.id => {
            tracing::info!(run = %run.id, started_at = %run.started_at, "resuming the unfinished run")
        }
        Some(previous) => tracing::info!(
            run = %run.id,
            previous_finished_at = ?previous.finished_at,
            "starting a new run; objects an earlier run copied are skipped"
        ),
        None => tracing::info!(run = %run.id, "starting the first run of this pair"),
    }
    if survey.missing.total > 0 {
        ledger.call(move |conn, pair| progress::record_missing_references(conn, pair, run.id)).await?;
    }

    let totals = survey.totals;
    meter.copying(count(totals.pending), count(totals.pending_bytes));
    let copier = Copier { ledger, run: run.id, source, target, skip_missing, meter: &meter };
    let tally = copier.copy_pending(jobs, shutdown).await?;
    meter.finish();

    let interrupted = tally.processed() < count(totals.pending);
    if !interrupted && tally.failed == 0 {
        ledger.call(move |conn, _| progress::finish(conn, run.id)).await?;
        tracing::info!(run = %run.id, "every object is at the target; the run is finished");
    }
    Ok(Report::copied(&totals, survey.missing, tally, interrupted, started.elapsed()))
}

/// What the listing showed, against the database and the pair's earlier runs.
struct Survey {
    totals: ListingTotals,
    missing: MissingReferences,
}

async fn survey(
    ledger: &Ledger,
    source: &Endpoint,
    meter: &Meter,
    shutdown: &Shutdown,
) -> Result<Survey, MigrateError> {
    tracing::info!("listing the source");
    ledger.call(|conn, _| progress::create_listing(conn)).await?;
    let mut batches = source.store.list(&Prefix::all()).chunks(LISTING_BATCH);
    loop {
        let batch = tokio::select! {
            biased;
            () = shutdown.wait() => return Err(MigrateError::Interrupted),
            batch = batches.next() => batch,
        };
        let Some(batch) = batch else { break };
        let objects = batch
            .into_iter()
            .map(|listed| {
                listed.map(|meta| ListedObject {
                    key: meta.key.as_str().to_owned(),
                    size_bytes: i64::try_from(meta.size).unwrap_or(i64::MAX),
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| MigrateError::List { descriptor: source.descriptor.clone(), error })?;
        meter.listed(objects.len() as u64, objects.iter().map(|object| count(object.size_bytes)).sum());
        ledger.call(move |conn, _| progress::add_to_listing(conn, &objects)).await?;
    }
    meter.end_phase();
    let totals = ledger.call(progress::listing_totals).await?;
    let missing = ledger.call(|conn, pair| progress::missing_references(conn, pair, REPORT_SAMPLE as i64)).await?;
    tracing::info!(
        to_copy = totals.pending,
        bytes = totals.pending_bytes,
        already_copied = totals.copied,
        missing = missing.total,
        "source listed"
    );
    Ok(Survey { totals, missing })
}

/// Counts come out of SQL as i64 but are never negative.
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
