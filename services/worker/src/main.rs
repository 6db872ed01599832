use clap::{CommandFactory, Parser, Subcommand};
use std::num::NonZeroUsize;
use std::process::ExitCode;
use stockflow_domain::{ExportFormat, ExportKind};
use stockflow_telemetry::Shutdown;
use stockflow_worker::migrate_storage::{self, Backend, Direction, MigrateError, MigrateSettings, Options};
use stockflow_worker::{Application, Settings};

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
    /// Print the SQL an export runs, to run it by hand with psql. It reads
    /// its filters from settings: first `SET stockflow.export_org_id =
    /// '<org uuid>'` and, for batches, `stockflow.export_product_id`,
    /// `stockflow.export_status`, `stockflow.export_produced_from`,
    /// `stockflow.export_produced_to` (for products,
    /// `stockflow.export_sku_like` and `stockflow.export_name_like`), each ''
    /// for no filter.
    ExportQuery {
        #[arg(long, value_parser = ["batches", "products"])]
        kind: String,
        #[arg(long, value_parser = ["csv", "jsonl"])]
        format: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let settings = stockflow_config::load_or_exit(Settings::from_env);
            stockflow_telemetry::init(&settings.telemetry);
            stockflow_runtime::exit_status(serve(settings).await)
        }
        Command::ExportQuery { kind, format } => {
            let (Ok(kind), Ok(format)) = (ExportKind::parse(&kind), ExportFormat::parse(&format)) else {
                return ExitCode::from(2);
            };
            println!("{}", stockflow_db::exports::export_query(kind, format));
            ExitCode::SUCCESS
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
