#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
//! Alerts reach a real HTTP receiver and a real SMTP conversation on
//! 127.0.0.1, through refusals and retries.

mod receivers;

use receivers::{SECRET, smtp_receiver, webhook_receiver};
use stockflow_backup::alerts::{Alert, AlertKind, AlertSettings, Alerter, SIGNATURE_HEADER, sign};
use stockflow_config::Env;

fn alert() -> Alert {
    Alert::new(
        AlertKind::VerifyFailed,
        Some(uuid::Uuid::new_v4()),
        "verify of backup run failed".to_owned(),
        "table batches: 1000 rows restored, the snapshot counted 1001\n.\nend".to_owned(),
        chrono::Utc::now(),
    )
}

#[tokio::test]
async fn an_alert_reaches_the_webhook_and_the_mailbox_through_failures() {
    let (url, requests) = webhook_receiver(2).await;
    let (port, mails) = smtp_receiver(1).await;
    let env = Env::from_pairs([
        ("ALERT_WEBHOOK_URL", url.as_str()),
        ("ALERT_WEBHOOK_SECRET", SECRET),
        ("ALERT_SMTP_HOST", "127.0.0.1"),
        ("ALERT_SMTP_PORT", &port.to_string()),
        ("ALERT_EMAIL_FROM", "stockflow@example.com"),
        ("ALERT_EMAIL_TO", "ops@example.com, oncall@example.org"),
        ("ALERT_ATTEMPTS", "4"),
        ("ALERT_BACKOFF_MS", "10"),
    ]);
    let alerter = Alerter::new(AlertSettings::from_env(&env).expect("valid settings")).expect("a client");
    let alert = alert();

    let deliveries = alerter.deliver(&alert).await;

    let by_channel = |name: &str| deliveries.iter().find(|d| d.channel == name).expect("the channel ran").clone();
    let webhook = by_channel("webhook");
    assert!(webhook.delivered(), "{webhook:?}");
    assert_eq!(webhook.attempts, 3, "two 500s, then a 200");
    let email = by_channel("email");
    assert!(email.delivered(), "{email:?}");
    assert_eq!(email.attempts, 2, "one refusal, then accepted");

    let requests = requests.lock().expect("not poisoned").clone();
    assert_eq!(requests.len(), 3);
    let (head, body) = &requests[2];
    let received: serde_json::Value = serde_json::from_slice(body).expect("a JSON body");
    assert_eq!(received["id"], alert.id.to_string());
    assert_eq!(received["kind"], "verify_failed");
    assert_eq!(received["run_id"], alert.run_id.expect("a run").to_string());
    let signature = head
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{}: ", SIGNATURE_HEADER.to_ascii_lowercase())))
        .or_else(|| head.lines().find_map(|line| line.strip_prefix(&format!("{SIGNATURE_HEADER}: "))))
        .expect("a signature header")
        .trim()
        .to_owned();
    let timestamp: i64 = signature
        .strip_prefix("t=")
        .and_then(|rest| rest.split(',').next())
        .and_then(|t| t.parse().ok())
        .expect("a timestamp in the signature");
    assert_eq!(signature, sign(SECRET, timestamp, body), "the receiver's own check of the signature");
    assert_ne!(signature, sign("another-secret-of-enough-length", timestamp, body));

    let mails = mails.lock().expect("not poisoned").clone();
    assert_eq!(mails.len(), 2);
    let accepted = &mails[1];
    for expected in [
        "MAIL FROM:<stockflow@example.com>\r\n",
        "RCPT TO:<ops@example.com>\r\n",
        "RCPT TO:<oncall@example.org>\r\n",
        "Subject: [stockflow] verify of backup run failed\r\n",
        "the snapshot counted 1001\r\n..\r\nend\r\n.\r\n",
    ] {
        assert!(accepted.contains(expected), "{expected:?} not in {accepted}");
    }
}

#[tokio::test]
async fn a_receiver_that_never_accepts_is_reported_after_the_last_attempt() {
    let (url, requests) = webhook_receiver(usize::MAX).await;
    let env = Env::from_pairs([
        ("ALERT_WEBHOOK_URL", url.as_str()),
        ("ALERT_WEBHOOK_SECRET", SECRET),
        ("ALERT_ATTEMPTS", "3"),
        ("ALERT_BACKOFF_MS", "10"),
    ]);
    let alerter = Alerter::new(AlertSettings::from_env(&env).expect("valid settings")).expect("a client");

    let deliveries = alerter.deliver(&alert()).await;

    assert_eq!(deliveries.len(), 1, "only the webhook is configured");
    assert_eq!(deliveries[0].attempts, 3);
    let error = deliveries[0].error.clone().expect("not delivered");
    assert!(error.contains("500"), "{error}");
    assert_eq!(requests.lock().expect("not poisoned").len(), 3);
}
