// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use stockflow_backup::{Application, HEALTH_BIND_VAR, Settings};
use stockflow_testkit::{TestApp, contract};

const BINARY: &str = env!("CARGO_BIN_EXE_stockflow-backup");

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
async fn readiness_follows_the_media_store() {
    contract::readiness_follows_storage(&spawn_app().await, "storage", "media").await;
}

#[tokio::test]
async fn readiness_follows_the_backup_store() {
    contract::readiness_follows_storage(&spawn_app().await, "backup_storage", "backups").await;
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
            ("STORAGE_BACKEND", Some("ftp")),
            ("MEDIA_ROOT", Some("var/media")),
            ("BACKUP_STORAGE_BACKEND", Some("tape")),
            ("BACKUP_ROOT", Some("backups")),
            ("BACKUP_COMPRESS", Some("10")),
        ],
    );
}

#[tokio::test]
async fn sigterm_stops_the_process_within_10s() {
    contract::stops_on_sigterm(BINARY, HEALTH_BIND_VAR).await;
}
