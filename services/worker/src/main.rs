use clap::{CommandFactory, Parser, Subcommand};
use std::num::NonZeroUsize;
use std::process::ExitCode;
use std::sync::Arc;
use stockflow_config::DatabaseSettings;
use stockflow_db::Database;
use stockflow_domain::{ExportFilters, ExportFormat, ExportKind};
use stockflow_telemetry::Shutdown;
use stockflow_telemetry::progress::{Progress, Unit};
use stockflow_worker::maintenance::{Maintenance, MaintenanceMetrics, ReconcileSettings};
use stockflow_worker::migrate_storage::{self, Backend, Direction, MigrateError, MigrateSettings, Options};
use stockflow_worker::{Application, Settings};
use uuid::Uuid;

/// Runs queued jobs: report exports and storage maintenance. With no
/// command, runs the worker.
///
/// Configured by environment variables only (see .env.prod.example).
#[derive(Parser)]
#[command(name = "stockflow-worker", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the worker (the default).
    Serve,
    /// Ask the running service's /healthz (with --ready, /readyz) on the
    /// address it binds; exit 0 only on 200. The container health check.
    Healthcheck {
        #[arg(long)]
        ready: bool,
    },
    /// Copy every media object from one backend to the other, verifying each
    /// by its sha256. Progress is kept in the database: run it again to resume.
    MigrateStorage {
        /// The backend to copy from, configured as for STORAGE_BACKEND.
        #[arg(long, value_enum)]
        from: Backend,
        /// The backend to copy to.
        #[arg(long, value_enum)]
        to: Backend,
        /// List and count what would be copied and report missing objects;
        /// write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Copy what exists and report objects the database references but
        /// the source lacks, instead of refusing to start.
        #[arg(long)]
        skip_missing: bool,
        /// Objects copied at once.
        #[arg(long, default_value = "4", value_parser = parse_jobs)]
        jobs: NonZeroUsize,
    },
    /// Compare media storage with the database both ways: delete objects no
    /// row names that are older than MAINTENANCE_GRACE_MINUTES, mark rows
    /// whose object is gone `missing`, and print the counts. What the
    /// scheduled `maintenance.reconcile_storage` job does.
    Reconcile {
        /// Count and report only; delete and mark nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print what an export of these filters runs, to run it by hand:
    /// `stockflow-worker export-query ... | psql -X -q "$DATABASE_URL" > file`
    /// writes the same bytes as the export. It reads DATABASE_URL, since
    /// PostgreSQL itself quotes the values into the statement.
    ExportQuery {
        /// The organization's id.
        #[arg(long)]
        org: Uuid,
        #[arg(long, value_parser = ["batches", "products"])]
        kind: String,
        #[arg(long, value_parser = ["csv", "jsonl"])]
        format: String,
        /// The filters as an export stores them, e.g.
        /// '{"status":"completed","produced_from":"2026-01-01T00:00:00Z"}'.
        #[arg(long, default_value = "{}")]
        filters: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command.unwrap_or(Command::Serve) {
        Command::Healthcheck { ready } => stockflow_runtime::healthcheck::run(
            stockflow_worker::HEALTH_BIND_VAR,
            stockflow_worker::DEFAULT_HEALTH_BIND,
            stockflow_runtime::healthcheck::Probe::from_ready_flag(ready),
        ),
        Command::Serve => {
            let settings = stockflow_config::load_or_exit(Settings::from_env);
            stockflow_telemetry::init(&settings.telemetry);
            stockflow_runtime::exit_status(serve(settings).await)
        }
        Command::ExportQuery { org, kind, format, filters } => {
            let (Ok(kind), Ok(format)) = (ExportKind::parse(&kind), ExportFormat::parse(&format)) else {
                return ExitCode::from(2);
            };
            let filters = match serde_json::from_str(&filters).and_then(|json| ExportFilters::from_json(kind, json)) {
                Ok(filters) => filters,
                Err(error) => {
                    Cli::command().error(clap::error::ErrorKind::ValueValidation, format!("--filters: {error}")).exit()
                }
            };
            let settings = stockflow_config::load_or_exit(DatabaseSettings::from_env);
            let script = Database::establish(&settings)
                .and_then(|mut conn| Ok(stockflow_db::exports::copy_script(&mut conn, org, format, &filters)?));
            match script {
                Ok(script) => {
                    print!("{script}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("export-query: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Reconcile { dry_run } => {
            let settings = stockflow_config::load_or_exit(ReconcileSettings::from_env);
            // stdout carries the report, so logs and the progress line go to stderr.
            stockflow_telemetry::init_stderr(&settings.telemetry);
            stockflow_runtime::exit_status(reconcile(settings, dry_run).await)
        }
        Command::MigrateStorage { from, to, dry_run, skip_missing, jobs } => {
            let direction = Direction::new(from, to)
                .unwrap_or_else(|error| Cli::command().error(clap::error::ErrorKind::ArgumentConflict, error).exit());
            let settings = stockflow_config::load_or_exit(|env| MigrateSettings::from_env(env, direction));
            // stdout carries the report, so logs and the progress line go to stderr.
            stockflow_telemetry::init_stderr(&settings.telemetry);
            stockflow_runtime::exit_status(migrate(settings, Options { dry_run, skip_missing, jobs }).await)
        }
    }
}

async fn serve(settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
    let shutdown = Shutdown::on_signals()?;
    let app = Application::build(settings, shutdown).await?;
    Ok(app.run_until_stopped().await?)
}

async fn reconcile(settings: ReconcileSettings, dry_run: bool) -> Result<(), Box<dyn std::error::Error>> {
    let maintenance = Maintenance {
        database: Database::connect_lazy(&settings.database),
        storage: stockflow_storage::from_settings(&settings.storage)?,
        grace: settings.grace,
        metrics: Arc::new(MaintenanceMetrics::default()),
    };
    let progress = Progress::new();
    let listing = progress.task("reconciling", Unit::Items("objects listed"), None);
    let report = maintenance.reconcile(dry_run, listing.counter()).await;
    listing.finish();
    print!("{}", report?);
    Ok(())
}

async fn migrate(settings: MigrateSettings, options: Options) -> Result<(), MigrateError> {
    let shutdown = Shutdown::on_signals().map_err(MigrateError::Signals)?;
    tokio::spawn(exit_on_second_signal(shutdown.clone()));
    let report = migrate_storage::run(settings, options, shutdown).await?;
    print!("{report}");
    report.into_result()
}

/// The first signal lets the objects in flight finish and be recorded; a
/// second one is an operator who will not wait. Exiting at once is safe:
/// progress is committed object by object.
async fn exit_on_second_signal(shutdown: Shutdown) {
    use tokio::signal::unix::{SignalKind, signal};
    shutdown.wait().await;
    // Listening only now, so the first signal does not count twice.
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    eprintln!("\nstopped at once; run the same command again to resume");
    std::process::exit(130);
}

fn parse_jobs(raw: &str) -> Result<NonZeroUsize, String> {
    const MAX_JOBS: usize = 64;
    match raw.parse::<NonZeroUsize>() {
        Ok(jobs) if jobs.get() <= MAX_JOBS => Ok(jobs),
        _ => Err(format!("expected a number from 1 to {MAX_JOBS}")),
    }
}
