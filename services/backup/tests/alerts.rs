#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
//! Alerts reach a real HTTP receiver and a real SMTP conversation on
//! 127.0.0.1, through refusals and retries.

use std::sync::{Arc, Mutex};
use stockflow_backup::alerts::{Alert, AlertKind, AlertSettings, Alerter, SIGNATURE_HEADER, sign};
use stockflow_config::Env;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const SECRET: &str = "a-shared-secret-of-32-characters";

/// A webhook receiver that answers the first `failures` requests with 500
/// and the rest with 200, keeping every request (headers, body).
async fn webhook_receiver(failures: usize) -> (String, Arc<Mutex<Vec<(String, Vec<u8>)>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let url = format!("http://{}/hooks/backups", listener.local_addr().expect("bound"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).await.unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let length: usize = head
                .lines()
                .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; length];
            reader.read_exact(&mut body).await.expect("the whole body");
            let count = {
                let mut seen = kept.lock().expect("not poisoned");
                seen.push((head, body));
                seen.len()
            };
            let status = if count <= failures { "500 Internal Server Error" } else { "200 OK" };
            let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            reader.get_mut().write_all(reply.as_bytes()).await.expect("reply written");
        }
    });
    (url, seen)
}

/// An SMTP receiver that refuses the first `refusals` conversations at
/// RCPT (451, try later) and accepts the rest, keeping each whole
/// conversation as the client wrote it.
async fn smtp_receiver(refusals: usize) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let port = listener.local_addr().expect("bound").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    tokio::spawn(async move {
        let mut conversations = 0;
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            conversations += 1;
            let refuse = conversations <= refusals;
            let mut reader = BufReader::new(stream);
            let mut transcript = String::new();
            reader.get_mut().write_all(b"220 test ESMTP\r\n").await.expect("greeting");
            let mut in_data = false;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                    break;
                }
                transcript.push_str(&line);
                let reply: &[u8] = if in_data {
                    if line != ".\r\n" {
                        continue;
                    }
                    in_data = false;
                    b"250 queued\r\n"
                } else if line.starts_with("EHLO") {
                    b"250-test\r\n250 8BITMIME\r\n"
                } else if line.starts_with("RCPT") && refuse {
                    b"451 try again later\r\n"
                } else if line.starts_with("DATA") {
                    in_data = true;
                    b"354 go ahead\r\n"
                } else if line.starts_with("QUIT") {
                    reader.get_mut().write_all(b"221 bye\r\n").await.expect("reply");
                    break;
                } else {
                    b"250 ok\r\n"
                };
                if reader.get_mut().write_all(reply).await.is_err() {
                    break;
                }
            }
            kept.lock().expect("not poisoned").push(transcript);
        }
    });
    (port, seen)
}

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
