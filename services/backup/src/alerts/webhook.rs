//! The webhook: the alert as JSON, POSTed with a signature the receiver
//! checks with the shared secret, as Stripe-style webhooks do:
//! `Stockflow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
//! The timestamp inside the signed text lets a receiver refuse replays.

use super::{Alert, WebhookSettings};
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const SIGNATURE_HEADER: &str = "Stockflow-Signature";

/// The signature header's value for `body` sent at `timestamp`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    // `Mac::new_from_slice` can only fail for fixed-size keys; HMAC takes any.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

/// One attempt: any answer but a 2xx is a failure to retry.
pub(super) async fn send(client: &reqwest::Client, hook: &WebhookSettings, alert: &Alert) -> Result<(), String> {
    let body = serde_json::to_vec(alert).map_err(|error| error.to_string())?;
    let signature = sign(hook.secret.expose(), chrono::Utc::now().timestamp(), &body);
    let response = client
        .post(hook.url.as_str())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .body(body)
        .send()
        .await
        .map_err(|error| format!("{}: {error}", hook.url.as_str()))?;
    let status = response.status();
    if status.is_success() { Ok(()) } else { Err(format!("{} answered {status}", hook.url.as_str())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_timestamp_and_body() {
        // RFC 4231 has no vector with this framing; this one was computed
        // with `printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 0123456789abcdef`.
        assert_eq!(
            sign("0123456789abcdef", 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=9eb18f493f8ec135d9eb2dad817c369bb4e9cbfa818657897a7437c1cd8c3a23"
        );
    }
}
