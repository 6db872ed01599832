// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use stockflow_scheduler::{Application, HEALTH_BIND_VAR, Settings};
use stockflow_testkit::{TestApp, contract};

const BINARY: &str = env!("CARGO_BIN_EXE_stockflow-scheduler");

async fn spawn_app() -> TestApp {
    TestApp::builder()
        .spawn(|env, shutdown| async move {
            let app = Application::build(Settings::from_env(&env)?, shutdown).await?;
            let address = app.address();
            Ok((address, Box::pin(async move { Ok(app.run_until_stopped().await?) }) as _))
        })
        .await
}

#[tokio::test]
async fn readiness_follows_database_and_broker() {
    contract::readiness_follows_dependencies(&spawn_app().await).await;
}

#[tokio::test]
async fn stops_cleanly_when_told() {
    let app = spawn_app().await;
    contract::healthy_and_ready(&app).await;
    app.stop().await.expect("a clean stop");
}

#[test]
fn bad_configuration_stops_with_exit_code_2() {
    contract::config_errors(
        BINARY,
        &[
            (HEALTH_BIND_VAR, Some("port-8001")),
            ("DB_BACKUP_CRON", Some("every night")),
            ("MEDIA_BACKUP_CRON", Some("0 0 30 2 *")),
            ("CLEANUP_UPLOADS_INTERVAL_HOURS", Some("5")),
            ("EXPORT_EXPIRY_CRON", Some("* * * *")),
            ("STORAGE_RECONCILE_CRON", Some("0 0 0 1 1 * 2030")),
            ("SCHEDULER_TIMEZONE", Some("Mars/Olympus")),
            ("SCHEDULER_TICK_MS", Some("0")),
            ("SCHEDULER_LEASE_SECS", Some("1")),
        ],
    );
}

#[tokio::test]
async fn sigterm_stops_the_process_within_10s() {
    contract::stops_on_sigterm(BINARY, HEALTH_BIND_VAR).await;
}
