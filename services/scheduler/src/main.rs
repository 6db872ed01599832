use clap::Parser;
use std::process::ExitCode;
use stockflow_scheduler::{Application, Settings};
use stockflow_telemetry::Shutdown;

/// Fires cron-style schedules into the job queue, one leader at a time.
///
/// Configured by environment variables only (see .env.prod.example).
#[derive(Parser)]
#[command(name = "stockflow-scheduler", version)]
struct Cli {}

#[tokio::main]
async fn main() -> ExitCode {
    Cli::parse();
    let settings = stockflow_config::load_or_exit(Settings::from_env);
    stockflow_telemetry::init(&settings.telemetry);
    stockflow_runtime::exit_status(run(settings).await)
}

async fn run(settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
    let shutdown = Shutdown::on_signals()?;
    let app = Application::build(settings, shutdown).await?;
    Ok(app.run_until_stopped().await?)
}
