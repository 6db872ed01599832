// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use stockflow_api::{Application, Settings};
use stockflow_testkit::{TestApp, contract};

const BINARY: &str = env!("CARGO_BIN_EXE_stockflow-api");

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
async fn stops_cleanly_when_told() {
    let app = spawn_app().await;
    contract::healthy_and_ready(&app).await;
    app.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn unknown_routes_are_404() {
    let app = spawn_app().await;
    assert_eq!(app.get("/nope").await.status(), 404);
}

#[test]
fn bad_configuration_stops_with_exit_code_2() {
    contract::config_errors(
        BINARY,
        &[
            ("API_BIND", Some("localhost")),
            ("WEB_WORKERS", Some("0")),
            ("RUN_MIGRATIONS", Some("maybe")),
            ("STORAGE_BACKEND", Some("ftp")),
            ("MEDIA_ROOT", Some("var/media")),
            ("EXPORTS_MAX_ACTIVE_PER_ORG", Some("0")),
        ],
    );
}

#[tokio::test]
async fn sigterm_stops_the_process_within_10s() {
    contract::stops_on_sigterm(BINARY, "API_BIND").await;
}
