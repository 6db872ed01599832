use clap::{Parser, Subcommand};
use std::process::ExitCode;
use stockflow_api::commands::{self, CommandError, TokenRequest};
use stockflow_api::{AdminSettings, Application, Settings};
use stockflow_db::{Database, PgConnection};
use stockflow_telemetry::Shutdown;

/// The Stockflow HTTP API. With no command, serves the API.
///
/// Configured by environment variables only (see .env.prod.example).
#[derive(Parser)]
#[command(name = "stockflow-api", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Ask the running service's /healthz (with --ready, /readyz) on the
    /// address it binds; exit 0 only on 200. The container health check.
    Healthcheck {
        #[arg(long)]
        ready: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it, alone, on stdout. It is shown only once.
    Create {
        /// Organization slug; the organization is created if it does not exist.
        #[arg(long)]
        org: String,
        /// admin, member or viewer.
        #[arg(long)]
        role: String,
        /// A label to tell tokens apart.
        #[arg(long, default_value = "cli")]
        name: String,
        /// The user the token acts as (created if needed); defaults to one user per role.
        #[arg(long)]
        email: Option<String>,
        /// Lifetime such as 30d, 12h or 90m; without it the token does not expire.
        #[arg(long)]
        expires_in: Option<String>,
        /// The token may also see and start the installation's backups
        /// (`/v1/backups`), which are no organization's.
        #[arg(long)]
        operator: bool,
    },
    /// List an organization's tokens (never their secrets), tab-separated.
    List {
        #[arg(long)]
        org: String,
    },
    /// Revoke a token by its id (from `token list`); it stops working at once.
    Revoke {
        /// The token's id.
        id: String,
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
        Command::Healthcheck { ready } => stockflow_runtime::healthcheck::run(
            stockflow_api::BIND_VAR,
            stockflow_api::DEFAULT_BIND,
            stockflow_runtime::healthcheck::Probe::from_ready_flag(ready),
        ),
        Command::Migrate => stockflow_runtime::exit_status(admin(|conn| {
            let applied = commands::migrate(conn)?;
            tracing::info!(count = applied.len(), ?applied, "migrations applied");
            Ok(())
        })),
        Command::Token(TokenCommand::Create { org, role, name, email, expires_in, operator }) => {
            stockflow_runtime::exit_status(admin(|conn| {
                let token =
                    commands::create_token(conn, TokenRequest { org, role, name, email, expires_in, operator })?;
                println!("{}", token.expose());
                Ok(())
            }))
        }
        Command::Token(TokenCommand::List { org }) => stockflow_runtime::exit_status(admin(|conn| {
            for line in commands::list_tokens(conn, &org)? {
                println!("{line}");
            }
            Ok(())
        })),
        Command::Token(TokenCommand::Revoke { id }) => stockflow_runtime::exit_status(admin(|conn| {
            commands::revoke_token(conn, &id)?;
            tracing::info!(token = %id, "token revoked");
            Ok(())
        })),
    }
}

/// Runs an admin command on one database connection. Its result goes to
/// stdout, so its logs go to stderr.
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
