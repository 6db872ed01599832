//! `ALERT_*` and `BACKUP_MAX_AGE_HOURS`, read once at start. A channel is
//! on when its first variable is set; its other variables are then
//! required, so a half-configured channel stops the service at start
//! instead of failing silently at the first alert.

use std::num::{NonZeroU16, NonZeroU32, NonZeroU64};
use std::time::Duration;
use stockflow_config::{ConfigError, Env, FromEnvValue, HttpUrl, Secret};

#[derive(Debug, Clone)]
pub struct AlertSettings {
    pub webhook: Option<WebhookSettings>,
    pub email: Option<EmailSettings>,
    /// Deliveries tried per channel and alert (`ALERT_ATTEMPTS`, default 6).
    pub attempts: NonZeroU32,
    /// The wait before the second attempt, doubled before each next one up
    /// to [`MAX_BACKOFF`] (`ALERT_BACKOFF_MS`, default 2000: 2, 4, 8, 16,
    /// 32 s, about a minute in all).
    pub first_backoff: Duration,
    /// No verified backup for longer than this is an alert
    /// (`BACKUP_MAX_AGE_HOURS`, default 26: a daily backup a little late is
    /// not yet one).
    pub max_age: Duration,
}

pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub url: HttpUrl,
    pub secret: Secret<String>,
}

#[derive(Debug, Clone)]
pub struct EmailSettings {
    pub host: SmtpHost,
    pub port: NonZeroU16,
    pub from: EmailAddress,
    pub to: Vec<EmailAddress>,
}

impl AlertSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let webhook = match env.optional::<HttpUrl>("ALERT_WEBHOOK_URL")? {
            Some(url) => {
                let WebhookSecret(secret) = env.required("ALERT_WEBHOOK_SECRET")?;
                Some(WebhookSettings { url, secret })
            }
            None => None,
        };
        let email = match env.optional::<SmtpHost>("ALERT_SMTP_HOST")? {
            Some(host) => Some(EmailSettings {
                host,
                port: env.or("ALERT_SMTP_PORT", NonZeroU16::new(25).unwrap_or(NonZeroU16::MIN))?,
                from: env.required("ALERT_EMAIL_FROM")?,
                to: env.required::<EmailList>("ALERT_EMAIL_TO")?.0,
            }),
            None => None,
        };
        Ok(Self {
            webhook,
            email,
            attempts: env.or("ALERT_ATTEMPTS", NonZeroU32::new(6).unwrap_or(NonZeroU32::MIN))?,
            first_backoff: Duration::from_millis(
                env.or("ALERT_BACKOFF_MS", NonZeroU64::new(2000).unwrap_or(NonZeroU64::MIN))?.get(),
            ),
            max_age: Duration::from_secs(
                env.or("BACKUP_MAX_AGE_HOURS", NonZeroU32::new(26).unwrap_or(NonZeroU32::MIN))?.get() as u64 * 3600,
            ),
        })
    }

    /// The wait before attempt `attempt` (2 is the first retry).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(2).min(20);
        self.first_backoff.saturating_mul(1 << doublings).min(MAX_BACKOFF)
    }
}

/// The shared secret receivers check signatures with: at least 16
/// characters, never echoed.
struct WebhookSecret(Secret<String>);

impl FromEnvValue for WebhookSecret {
    const EXPECTED: &'static str = "a secret of at least 16 characters";
    const SECRET: bool = true;
    fn from_env_value(raw: &str) -> Option<Self> {
        (raw.chars().count() >= 16).then(|| Self(Secret::new(raw.to_owned())))
    }
}

/// A host name or IP address to open an SMTP connection to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpHost(String);

impl SmtpHost {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    #[cfg(test)]
    pub(crate) fn from_env_value_for_tests(raw: &str) -> Self {
        Self(raw.to_owned())
    }
}

impl FromEnvValue for SmtpHost {
    const EXPECTED: &'static str = "a host name or IP address such as mail.example.com";
    fn from_env_value(raw: &str) -> Option<Self> {
        let plain = |c: char| c.is_ascii_alphanumeric() || "-.:[]".contains(c);
        (raw.len() <= 253 && raw.chars().all(plain)).then(|| Self(raw.to_owned()))
    }
}

/// An address for SMTP's envelope and the headers: one `@`, nothing that
/// could end a command or a header line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Option<Self> {
        let (local, domain) = raw.split_once('@')?;
        let allowed = |c: char| c.is_ascii_graphic() && !"<>()[]\\,;:\"@".contains(c);
        let valid = !local.is_empty()
            && !domain.is_empty()
            && raw.len() <= 254
            && local.chars().all(allowed)
            && domain.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        valid.then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromEnvValue for EmailAddress {
    const EXPECTED: &'static str = "an email address such as backups@example.com";
    fn from_env_value(raw: &str) -> Option<Self> {
        Self::parse(raw)
    }
}

struct EmailList(Vec<EmailAddress>);

impl FromEnvValue for EmailList {
    const EXPECTED: &'static str = "email addresses separated by commas";
    fn from_env_value(raw: &str) -> Option<Self> {
        let list = raw.split(',').map(|one| EmailAddress::parse(one.trim())).collect::<Option<Vec<_>>>()?;
        Some(Self(list))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_channel_is_on_by_default() {
        let settings = AlertSettings::from_env(&Env::from_pairs::<&str, &str>([])).expect("defaults parse");
        assert!(settings.webhook.is_none() && settings.email.is_none());
        assert_eq!(settings.attempts.get(), 6);
        assert_eq!(settings.max_age, Duration::from_secs(26 * 3600));
    }

    #[test]
    fn a_webhook_needs_its_secret_and_the_error_never_shows_it() {
        let env = Env::from_pairs([("ALERT_WEBHOOK_URL", "https://hooks.example.com/backups")]);
        let missing = AlertSettings::from_env(&env).expect_err("no secret");
        assert_eq!(missing.var(), "ALERT_WEBHOOK_SECRET");
        let short = AlertSettings::from_env(&env.with("ALERT_WEBHOOK_SECRET", "hunter2")).expect_err("too short");
        assert_eq!(short.var(), "ALERT_WEBHOOK_SECRET");
        assert!(!short.to_string().contains("hunter2"), "{short}");
    }

    #[test]
    fn email_needs_a_sender_and_recipients() {
        let env = Env::from_pairs([("ALERT_SMTP_HOST", "127.0.0.1")]);
        assert_eq!(AlertSettings::from_env(&env).expect_err("no sender").var(), "ALERT_EMAIL_FROM");
        let env = env.with("ALERT_EMAIL_FROM", "stockflow@example.com");
        assert_eq!(AlertSettings::from_env(&env).expect_err("no recipients").var(), "ALERT_EMAIL_TO");
        let bad = env.clone().with("ALERT_EMAIL_TO", "ops@example.com, evil\r\nRCPT TO:<x@y>");
        assert_eq!(AlertSettings::from_env(&bad).expect_err("a line break").var(), "ALERT_EMAIL_TO");
        let good = env.with("ALERT_EMAIL_TO", "ops@example.com, oncall@example.org");
        let email = AlertSettings::from_env(&good).expect("valid").email.expect("email on");
        assert_eq!(email.to.len(), 2);
        assert_eq!(email.port.get(), 25);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let settings = AlertSettings::from_env(&Env::from_pairs([("ALERT_BACKOFF_MS", "1000")])).expect("valid");
        let waits: Vec<u64> = (2..=6).map(|attempt| settings.backoff(attempt).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16]);
        assert_eq!(settings.backoff(40), MAX_BACKOFF);
    }
}
