//! Alerts that arrive: a failed backup, a failed verify, and no verified
//! backup for longer than `BACKUP_MAX_AGE_HOURS` are sent to every channel
//! configured (a signed webhook, an email), each retried with backoff and
//! each attempt logged, so an operator can tell from the logs alone whether
//! an alert went out.

mod settings;
mod smtp;
mod webhook;

pub use settings::{AlertSettings, EmailAddress, EmailSettings, MAX_BACKOFF, SmtpHost, WebhookSettings};
pub use webhook::{SIGNATURE_HEADER, sign};

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Duration;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    BackupFailed,
    VerifyFailed,
    NoRecentVerifiedBackup,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BackupFailed => "backup_failed",
            Self::VerifyFailed => "verify_failed",
            Self::NoRecentVerifiedBackup => "no_recent_verified_backup",
        }
    }
}

/// What is sent: the webhook's JSON body, and the email's subject and text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// Receivers deduplicate retried deliveries by it.
    pub id: Uuid,
    pub kind: AlertKind,
    pub run_id: Option<Uuid>,
    /// One line, such as "backup run 6f1c... failed".
    pub summary: String,
    /// The reason, as the run records it.
    pub detail: String,
    pub occurred_at: DateTime<Utc>,
}

impl Alert {
    pub fn new(kind: AlertKind, run_id: Option<Uuid>, summary: String, detail: String, at: DateTime<Utc>) -> Self {
        Self { id: Uuid::new_v4(), kind, run_id, summary, detail, occurred_at: at }
    }
}

/// How one channel's delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub channel: &'static str,
    pub attempts: u32,
    /// `None` when delivered; the last attempt's error otherwise.
    pub error: Option<String>,
}

impl Delivery {
    pub fn delivered(&self) -> bool {
        self.error.is_none()
    }
}

/// Sends alerts to the channels of [`AlertSettings`].
#[derive(Debug, Clone)]
pub struct Alerter {
    settings: AlertSettings,
    client: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
#[error("the alert webhook's HTTP client could not be built: {0}")]
pub struct AlerterError(#[from] reqwest::Error);

/// Per attempt: an unanswering receiver must not hold up the retries.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

impl Alerter {
    pub fn new(settings: AlertSettings) -> Result<Self, AlerterError> {
        let client = reqwest::Client::builder().timeout(ATTEMPT_TIMEOUT).build()?;
        Ok(Self { settings, client })
    }

    pub fn settings(&self) -> &AlertSettings {
        &self.settings
    }

    /// Delivers `alert` to every channel at once, each retried until it is
    /// delivered or out of attempts; returns how each ended.
    #[tracing::instrument(name = "alert.deliver", skip_all, fields(alert = %alert.id, kind = alert.kind.as_str()))]
    pub async fn deliver(&self, alert: &Alert) -> Vec<Delivery> {
        let webhook = async {
            match &self.settings.webhook {
                Some(hook) => Some(self.retried("webhook", || webhook::send(&self.client, hook, alert)).await),
                None => None,
            }
        };
        let email = async {
            match &self.settings.email {
                Some(email) => Some(self.retried("email", || smtp::send(email, alert, ATTEMPT_TIMEOUT)).await),
                None => None,
            }
        };
        let (webhook, email) = tokio::join!(webhook, email);
        let deliveries: Vec<Delivery> = [webhook, email].into_iter().flatten().collect();
        if deliveries.is_empty() {
            tracing::warn!(summary = %alert.summary, "no alert channel is configured (ALERT_WEBHOOK_URL, ALERT_SMTP_HOST)");
        }
        deliveries
    }

    async fn retried<F, Fut>(&self, channel: &'static str, mut attempt: F) -> Delivery
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let attempts = self.settings.attempts.get();
        let mut last_error = String::new();
        for number in 1..=attempts {
            if number > 1 {
                tokio::time::sleep(self.settings.backoff(number)).await;
            }
            match attempt().await {
                Ok(()) => {
                    tracing::info!(channel, attempt = number, "alert delivered");
                    return Delivery { channel, attempts: number, error: None };
                }
                Err(error) => {
                    tracing::warn!(channel, attempt = number, of = attempts, %error, "alert delivery failed");
                    last_error = error;
                }
            }
        }
        tracing::error!(channel, attempts, error = %last_error, "alert not delivered: out of attempts");
        Delivery { channel, attempts, error: Some(last_error) }
    }
}

/// Whether the newest verified backup is too old to go unreported: when
/// `last_verified` (the newest `verified_at`, or when the installation's
/// first run started if none was ever verified) is older than `max_age`,
/// and nothing was said about it since it became so. One alert per
/// episode, repeated every `max_age` while it lasts.
pub fn staleness_alert_due(
    last_verified: DateTime<Utc>,
    last_alerted: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    max_age: Duration,
) -> bool {
    let max_age = chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
    if now - last_verified <= max_age {
        return false;
    }
    match last_alerted {
        Some(alerted) if alerted > last_verified => now - alerted > max_age,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn hour(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).single().expect("a valid instant") + chrono::Duration::hours(h)
    }

    #[test]
    fn a_stale_backup_is_reported_once_per_max_age() {
        let max_age = Duration::from_secs(26 * 3600);
        assert!(!staleness_alert_due(hour(0), None, hour(26), max_age), "exactly the max age is not yet stale");
        assert!(staleness_alert_due(hour(0), None, hour(27), max_age));
        assert!(!staleness_alert_due(hour(0), Some(hour(27)), hour(40), max_age), "said already");
        assert!(staleness_alert_due(hour(0), Some(hour(27)), hour(54), max_age), "still stale a max age later");
        // A verify after the alert starts a new episode.
        assert!(!staleness_alert_due(hour(30), Some(hour(27)), hour(40), max_age));
        assert!(staleness_alert_due(hour(30), Some(hour(27)), hour(57), max_age));
    }
}
