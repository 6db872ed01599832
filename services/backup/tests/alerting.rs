// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

//! Alerts that arrive, from the service as deployed: a verify that finds a
//! corrupted dump marks the run failed and its alert reaches a webhook and
//! a mailbox on 127.0.0.1; `/metrics` says when backups last succeeded and
//! were verified; and a backup that stopped happening is reported once.

mod common;
mod receivers;

use receivers::{SECRET, smtp_receiver, webhook_receiver};
use std::sync::Arc;
use std::time::Duration;
use stockflow_backup::alerts::{AlertSettings, Alerter};
use stockflow_backup::watch::{BackupMetrics, Watch};
use stockflow_backup::{Application, Settings};
use stockflow_config::{BrokerSettings, Env};
use stockflow_db::backup_runs;
use stockflow_domain::{BackupDatabase, BackupRunRef, BackupTrigger, BackupVerify, Envelope, Job};
use stockflow_queue::{Broker, Outgoing, Publisher};
use stockflow_testkit::{TestApp, eventually};

async fn send<P: Job>(app: &TestApp, payload: P) {
    let broker = Broker::start(&BrokerSettings::from_env(&app.env).unwrap(), "test-sender").unwrap();
    let publisher = Arc::new(Publisher::new(broker));
    let message = Outgoing::job(&publisher.topology(), &Envelope::new(payload, "test")).unwrap();
    eventually("the message published", Duration::from_secs(10), || async {
        publisher.publish_all(std::slice::from_ref(&message)).await.into_iter().all(|sent| sent.is_ok()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_corrupted_dump_fails_verify_and_the_alert_reaches_the_webhook_and_the_mailbox() {
    let (url, requests) = webhook_receiver(1).await;
    let (port, mails) = smtp_receiver(0).await;
    let port = port.to_string();
    let app = TestApp::builder()
        .env("ALERT_WEBHOOK_URL", &url)
        .env("ALERT_WEBHOOK_SECRET", SECRET)
        .env("ALERT_SMTP_HOST", "127.0.0.1")
        .env("ALERT_SMTP_PORT", &port)
        .env("ALERT_EMAIL_FROM", "stockflow@example.com")
        .env("ALERT_EMAIL_TO", "ops@example.com")
        .env("ALERT_BACKOFF_MS", "10")
        .spawn(|env, shutdown| async move {
            let app = Application::build(Settings::from_env(&env)?, shutdown).await?;
            let address = app.address();
            Ok((address, Box::pin(async move { Ok(app.run_until_stopped().await?) }) as _))
        })
        .await;
    app.wait_for_readyz(200, Duration::from_secs(20)).await;

    send(&app, BackupDatabase { trigger: BackupTrigger::Scheduled }).await;
    let run = eventually("a verified run", Duration::from_secs(60), || async {
        backup_runs::latest_succeeded(&mut app.database.connect()).unwrap().filter(|run| run.verified_at.is_some())
    })
    .await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let gauge = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not in {metrics}"))
            .parse()
            .unwrap()
    };
    let verified_at = run.verified_at.unwrap().timestamp() as f64;
    assert!((gauge("stockflow_backup_last_verified_timestamp_seconds") - verified_at).abs() < 1.0, "{metrics}");
    assert!(gauge("stockflow_backup_last_success_timestamp_seconds") > 0.0, "{metrics}");
    assert!(requests.lock().unwrap().is_empty(), "a good run sends no alert");

    // One byte of the stored dump flipped, as a failing disk would.
    let dump = std::path::Path::new(app.env.get("BACKUP_ROOT").unwrap()).join(run.db_key.as_deref().unwrap());
    let mut bytes = std::fs::read(&dump).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&dump, bytes).unwrap();
    send(&app, BackupVerify { run: BackupRunRef::Id(run.id) }).await;

    let failed = eventually("the run marked failed", Duration::from_secs(60), || async {
        backup_runs::get(&mut app.database.connect(), run.id).unwrap().filter(|run| run.status == backup_runs::FAILED)
    })
    .await;
    assert!(failed.error.as_deref().unwrap().starts_with("verification failed"), "{:?}", failed.error);
    // The webhook refused the first delivery; the retry got through.
    let body = eventually("the alert delivered to the webhook", Duration::from_secs(20), || async {
        let requests = requests.lock().unwrap();
        (requests.len() == 2).then(|| requests[1].1.clone())
    })
    .await;
    let alert: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(alert["kind"], "verify_failed");
    assert_eq!(alert["run_id"], run.id.to_string());
    assert!(alert["detail"].as_str().unwrap().starts_with("verification failed"), "{alert}");
    let mail = eventually("the alert delivered by mail", Duration::from_secs(20), || async {
        mails.lock().unwrap().first().cloned()
    })
    .await;
    assert!(mail.contains(&format!("Subject: [stockflow] verify of backup run {} failed\r\n", run.id)), "{mail}");
    let delivered = eventually("the deliveries counted", Duration::from_secs(10), || async {
        let metrics = app.get("/metrics").await.text().await.unwrap();
        metrics.contains(r#"stockflow_backup_alerts_total{channel="webhook",delivered="yes"} 1"#).then_some(metrics)
    })
    .await;
    assert!(delivered.contains(r#"stockflow_backup_alerts_total{channel="email",delivered="yes"} 1"#), "{delivered}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn no_verified_backup_within_the_max_age_is_reported_once_per_episode() {
    let fixture = common::fixture();
    let (url, requests) = webhook_receiver(0).await;
    let env = Env::from_pairs([
        ("ALERT_WEBHOOK_URL", url.as_str()),
        ("ALERT_WEBHOOK_SECRET", SECRET),
        ("BACKUP_MAX_AGE_HOURS", "26"),
    ]);
    let metrics = Arc::new(BackupMetrics::new(Default::default(), fixture.backup.database.clone()));
    let watch = Watch::new(metrics, Alerter::new(AlertSettings::from_env(&env).unwrap()).unwrap());
    let run = fixture.backup.run("scheduled").await.unwrap();
    let verified = run.verified_at.expect("a verified run");

    assert!(!watch.check_age(verified + chrono::Duration::hours(25)).await.unwrap(), "young enough");
    assert!(watch.check_age(verified + chrono::Duration::hours(27)).await.unwrap(), "too old: alert");
    assert!(!watch.check_age(verified + chrono::Duration::hours(30)).await.unwrap(), "said already");
    assert!(watch.check_age(verified + chrono::Duration::hours(54)).await.unwrap(), "still too old a max age later");

    let requests = requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2);
    let alert: serde_json::Value = serde_json::from_slice(&requests[0].1).unwrap();
    assert_eq!(alert["kind"], "no_recent_verified_backup");
    assert_eq!(alert["run_id"], serde_json::Value::Null);
    assert!(alert["detail"].as_str().unwrap().contains(&verified.to_rfc3339()), "{alert}");
}
