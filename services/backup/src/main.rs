use clap::{Parser, Subcommand};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use stockflow_backup::alerts::Alerter;
use stockflow_backup::restore::RestoreOptions;
use stockflow_backup::watch::{BackupMetrics, Watch};
use stockflow_backup::{Application, Backup, Settings};
use stockflow_db::backup_runs::{BackupRun, SUCCEEDED};
use stockflow_domain::BackupRunRef;
use stockflow_runtime::Connections;
use stockflow_telemetry::Shutdown;

/// Takes, verifies, prunes and restores database and media backups.
///
/// Configured by environment variables only (see .env.prod.example). With
/// no subcommand, runs the service: it consumes backup jobs.
#[derive(Parser)]
#[command(name = "stockflow-backup", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the backup service (the default): consume backup requests.
    Serve,
    /// Ask the running service's /healthz (with --ready, /readyz) on the
    /// address it binds; exit 0 only on 200. The container health check.
    Healthcheck {
        #[arg(long)]
        ready: bool,
    },
    /// Back up the database and media, then verify by restore; prints the
    /// run id. Exits 1 when any step fails.
    Run,
    /// The newest runs first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Verify a run by restoring it into a scratch database; exits 1 when
    /// verification fails.
    Verify {
        /// A run id, or `latest` (the newest succeeded run).
        run: BackupRunRef,
    },
    /// Restore a run into an empty database (DATABASE_URL's, or
    /// --target-database-url), its dump's sha256 checked first; prints each
    /// table's rows against the snapshot's. Exits 1 when any differ.
    Restore {
        /// A run id, or `latest` (the newest succeeded run).
        run: BackupRunRef,
        #[arg(long)]
        target_database_url: Option<String>,
        /// Also copy the run's media objects back into media storage.
        #[arg(long)]
        media: bool,
        /// Restore over a database that has tables (drops what the dump holds first).
        #[arg(long)]
        force_clean: bool,
    },
    /// Forget the runs BACKUP_KEEP_DAILY/WEEKLY/MONTHLY do not keep (their
    /// dump, manifest and row) and the media objects no kept run names;
    /// prints each run, kept and why, or forgotten.
    Prune {
        /// Print the plan and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before the settings: a health check needs only the bind address.
    if let Some(Command::Healthcheck { ready }) = cli.command {
        return healthcheck(ready);
    }
    let settings = stockflow_config::load_or_exit(Settings::from_env);
    stockflow_telemetry::init(&settings.telemetry);
    match cli.command {
        None | Some(Command::Serve) => stockflow_runtime::exit_status(serve(settings).await),
        Some(command) => match admin(settings, command).await {
            Ok(code) => code,
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        },
    }
}

async fn serve(settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
    let shutdown = Shutdown::on_signals()?;
    let app = Application::build(settings, shutdown).await?;
    Ok(app.run_until_stopped().await?)
}

fn healthcheck(ready: bool) -> ExitCode {
    stockflow_runtime::healthcheck::run(
        stockflow_backup::HEALTH_BIND_VAR,
        stockflow_backup::DEFAULT_HEALTH_BIND,
        stockflow_runtime::healthcheck::Probe::from_ready_flag(ready),
    )
}

async fn admin(settings: Settings, command: Command) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let connections = Connections::open(&settings.database, &settings.broker, "backup-cli", Shutdown::new())?
        .with_media_store(&settings.storage)?
        .with_backup_store(&settings.backup_storage)?;
    let backup: Backup = stockflow_backup::backup(&settings, &connections)?;
    // A run or verify by hand (or from cron) alerts as the service's do.
    let metrics = Arc::new(BackupMetrics::new(Default::default(), connections.database.clone()));
    let watch = Watch::new(metrics, Alerter::new(settings.alerts.clone())?);
    match command {
        Command::Healthcheck { ready } => Ok(healthcheck(ready)),
        // main serves before it comes here.
        Command::Serve => Err("serve is not an admin command".into()),
        Command::Run => {
            let started = Instant::now();
            let run = backup.run("manual").await?;
            println!("{}", run.id);
            watch.ended("run", &run, started.elapsed()).await;
            Ok(report(&run))
        }
        Command::List { limit } => {
            println!(
                "{:<36}  {:<9}  {:<9}  {:<25}  {:>12}  {:>6}  {:<8}  error",
                "id", "trigger", "status", "started_at", "db_bytes", "media", "verified"
            );
            for run in backup.list(limit).await? {
                println!(
                    "{:<36}  {:<9}  {:<9}  {:<25}  {:>12}  {:>6}  {:<8}  {}",
                    run.id,
                    run.trigger,
                    run.status,
                    run.started_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    run.db_bytes.map(|b| b.to_string()).unwrap_or_default(),
                    run.media_objects.map(|n| n.to_string()).unwrap_or_default(),
                    run.verify_method.as_deref().unwrap_or("no"),
                    run.error.as_deref().unwrap_or(""),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { run } => {
            let started = Instant::now();
            let run = backup.verify(run).await?;
            println!("{}", run.id);
            watch.ended("verify", &run, started.elapsed()).await;
            Ok(report(&run))
        }
        Command::Prune { dry_run } => {
            for line in backup.prune(settings.keep, dry_run).await?.lines() {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore { run, target_database_url, media, force_clean } => {
            let options = RestoreOptions { target_database_url, media, force_clean };
            let restored = backup.restore(run, &options).await?;
            println!("restored run {}", restored.run.id);
            println!("{:<32}  {:>12}  {:>12}", "table", "snapshot", "restored");
            let show = |n: Option<i64>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
            for row in &restored.tables {
                let flag = if row.snapshot == row.restored { "" } else { "  DIFFERS" };
                println!("{:<32}  {:>12}  {:>12}{flag}", row.table, show(row.snapshot), show(row.restored));
            }
            if media {
                println!("media: {} copied, {} already present", restored.media_copied, restored.media_present);
            }
            Ok(if restored.counts_match() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}

/// Success only for a succeeded run that is verified (when verify ran).
fn report(run: &BackupRun) -> ExitCode {
    if run.status == SUCCEEDED {
        let verified = run.verified_at.map_or_else(|| "not verified".to_owned(), |at| format!("verified at {at}"));
        eprintln!("backup run {} succeeded, {verified}", run.id);
        ExitCode::SUCCESS
    } else {
        eprintln!("backup run {} {}: {}", run.id, run.status, run.error.as_deref().unwrap_or("no reason recorded"));
        ExitCode::FAILURE
    }
}
