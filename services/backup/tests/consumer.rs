// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

//! The service as deployed: jobs on `<ns>.backups` become runs, one at a
//! time; and the CLI's run, list and verify with their exit codes.

use std::sync::Arc;
use std::time::Duration;
use stockflow_backup::{Application, Settings};
use stockflow_config::BrokerSettings;
use stockflow_db::backup_runs::{self, BackupRun};
use stockflow_domain::{BackupDatabase, BackupRunRef, BackupTrigger, BackupVerify, Envelope, Job};
use stockflow_queue::{Broker, Outgoing, Publisher};
use stockflow_testkit::{ProcessEnv, TestApp, eventually};

const BINARY: &str = env!("CARGO_BIN_EXE_stockflow-backup");

async fn spawn_app() -> TestApp {
    let app = TestApp::builder()
        .spawn(|env, shutdown| async move {
            let app = Application::build(Settings::from_env(&env)?, shutdown).await?;
            let address = app.address();
            Ok((address, Box::pin(async move { Ok(app.run_until_stopped().await?) }) as _))
        })
        .await;
    // Ready means the consumer declared its queue: nothing sent is lost.
    app.wait_for_readyz(200, Duration::from_secs(20)).await;
    app
}

async fn send<P: Job>(app: &TestApp, payloads: Vec<P>) {
    let broker = Broker::start(&BrokerSettings::from_env(&app.env).unwrap(), "test-sender").unwrap();
    let publisher = Arc::new(Publisher::new(broker));
    let topology = publisher.topology();
    let messages: Vec<Outgoing> =
        payloads.into_iter().map(|p| Outgoing::job(&topology, &Envelope::new(p, "test")).unwrap()).collect();
    eventually("the messages published", Duration::from_secs(10), || async {
        publisher.publish_all(&messages).await.into_iter().all(|sent| sent.is_ok()).then_some(())
    })
    .await;
}

fn runs(app: &TestApp) -> Vec<BackupRun> {
    backup_runs::list(&mut app.database.connect(), 10).unwrap()
}

fn finished(runs: &[BackupRun]) -> bool {
    runs.iter().all(|run| {
        run.status != backup_runs::RUNNING && (run.status != backup_runs::SUCCEEDED || run.verified_at.is_some())
    })
}

#[tokio::test]
async fn a_backup_database_job_produces_a_verified_run() {
    let app = spawn_app().await;
    send(&app, vec![BackupDatabase { trigger: BackupTrigger::Scheduled }]).await;
    let run = eventually("a finished run", Duration::from_secs(60), || async {
        let runs = runs(&app);
        (runs.len() == 1 && finished(&runs)).then(|| runs[0].clone())
    })
    .await;
    assert_eq!((run.trigger.as_str(), run.status.as_str()), ("scheduled", backup_runs::SUCCEEDED), "{:?}", run.error);
    assert_eq!(run.verify_method.as_deref(), Some("restore"));

    // backup.verify of "latest" verifies it again.
    let first_verified = run.verified_at.unwrap();
    send(&app, vec![BackupVerify { run: BackupRunRef::Latest }]).await;
    eventually("verified again", Duration::from_secs(60), || async {
        let run = backup_runs::get(&mut app.database.connect(), run.id).unwrap().unwrap();
        run.verified_at.filter(|at| *at > first_verified)
    })
    .await;
}

#[tokio::test]
async fn two_jobs_at_once_run_one_backup_and_record_the_other() {
    let app = spawn_app().await;
    send(
        &app,
        vec![BackupDatabase { trigger: BackupTrigger::Manual }, BackupDatabase { trigger: BackupTrigger::Manual }],
    )
    .await;
    let runs = eventually("two finished rows", Duration::from_secs(60), || async {
        let runs = runs(&app);
        (runs.len() == 2 && finished(&runs)).then_some(runs)
    })
    .await;
    let succeeded: Vec<_> = runs.iter().filter(|run| run.status == backup_runs::SUCCEEDED).collect();
    let refused: Vec<_> = runs.iter().filter(|run| run.status == backup_runs::FAILED).collect();
    assert_eq!((succeeded.len(), refused.len()), (1, 1), "{runs:?}");
    assert_eq!(
        refused[0].error.as_deref(),
        Some(format!("another backup run was in progress: {}", succeeded[0].id).as_str())
    );
}

#[test]
fn the_cli_runs_lists_and_verifies() {
    let env = ProcessEnv::new();
    let output = env.run(BINARY, &["run"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let id = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let run = backup_runs::get(&mut env.database.connect(), id.parse().unwrap()).unwrap().unwrap();
    assert!(run.verified_at.is_some());

    let output = env.run(BINARY, &["list"]);
    assert!(output.status.success());
    assert!(String::from_utf8(output.stdout).unwrap().contains(&id));

    let output = env.run(BINARY, &["verify", "latest"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8(output.stdout).unwrap().trim(), id);

    // A dump gone from backup storage: verify fails and says so.
    let dump = env.storage_root.path().join("backups").join(run.db_key.unwrap());
    std::fs::remove_file(dump).unwrap();
    let output = env.run(BINARY, &["verify", &id]);
    assert_eq!(output.status.code(), Some(1));
    let run = backup_runs::get(&mut env.database.connect(), run.id).unwrap().unwrap();
    assert_eq!(run.status, backup_runs::FAILED);

    // pg_dump missing: the run fails, exit code 1.
    let broken = ProcessEnv::new().with("BACKUP_PG_DUMP", "/nonexistent");
    let output = broken.run(BINARY, &["run"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot run /nonexistent"));
}
