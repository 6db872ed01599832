use clap::{Parser, Subcommand};
use std::process::ExitCode;
use stockflow_db::{Database, PgConnection};
use stockflow_scheduler::commands::{self, CommandError};
use stockflow_scheduler::{AdminSettings, Application, Settings};
use stockflow_telemetry::Shutdown;

/// Fires cron-style schedules into the job queue, one leader at a time.
/// With no command, runs the scheduler.
///
/// Configured by environment variables only (see .env.prod.example).
#[derive(Parser)]
#[command(name = "stockflow-scheduler", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the scheduler (the default).
    Serve,
    /// Ask the running service's /healthz (with --ready, /readyz) on the
    /// address it binds; exit 0 only on 200. The container health check.
    Healthcheck {
        #[arg(long)]
        ready: bool,
    },
    /// Inspect schedules.
    #[command(subcommand)]
    Schedules(SchedulesCommand),
    /// Print the next fire times of a schedule, in its own time zone.
    Next {
        /// The schedule's name (system schedules: db-backup, media-backup,
        /// cleanup-uploads, expire-exports, reconcile-storage).
        name: String,
        /// How many fire times.
        #[arg(short = 'n', long = "count", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=1000))]
        count: u16,
        /// The organization (slug) the schedule belongs to; without it, a
        /// system schedule.
        #[arg(long)]
        org: Option<String>,
    },
}

#[derive(Subcommand)]
enum SchedulesCommand {
    /// Every schedule, tab-separated: owner, pattern, zone, state, next run
    /// and last run in the schedule's zone.
    List,
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command.unwrap_or(Command::Serve) {
        Command::Healthcheck { ready } => stockflow_runtime::healthcheck::run(
            stockflow_scheduler::HEALTH_BIND_VAR,
            stockflow_scheduler::DEFAULT_HEALTH_BIND,
            stockflow_runtime::healthcheck::Probe::from_ready_flag(ready),
        ),
        Command::Serve => {
            let settings = stockflow_config::load_or_exit(Settings::from_env);
            stockflow_telemetry::init(&settings.telemetry);
            stockflow_runtime::exit_status(serve(settings).await)
        }
        Command::Schedules(SchedulesCommand::List) => stockflow_runtime::exit_status(admin(|conn| {
            for line in commands::list(conn)? {
                println!("{line}");
            }
            Ok(())
        })),
        Command::Next { name, count, org } => stockflow_runtime::exit_status(admin(|conn| {
            for line in commands::next(conn, &name, org.as_deref(), usize::from(count))? {
                println!("{line}");
            }
            Ok(())
        })),
    }
}

/// Runs an admin command on one database connection; its result goes to
/// stdout, its logs to stderr.
fn admin(command: impl FnOnce(&mut PgConnection) -> Result<(), CommandError>) -> Result<(), CommandError> {
    let settings = stockflow_config::load_or_exit(AdminSettings::from_env);
    stockflow_telemetry::init_stderr(&settings.telemetry);
    command(&mut Database::establish(&settings.database)?)
}

async fn serve(settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
    let shutdown = Shutdown::on_signals()?;
    let app = Application::build(settings, shutdown).await?;
    Ok(app.run_until_stopped().await?)
}
