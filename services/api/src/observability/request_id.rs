//! The id that ties a response to its log lines, across nginx and the api.

use actix_web::http::header::HeaderValue;
use std::fmt;
use uuid::Uuid;

pub(crate) const HEADER: &str = "x-request-id";

/// Long enough for any tracing id format we know of (uuid, nginx's 32 hex,
/// W3C trace ids), short enough that a client cannot bloat every log line.
const MAX_LEN: usize = 128;

/// A request id: the caller's, when it is safe to echo and log, else a new
/// uuid v4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestId(String);

impl RequestId {
    pub(crate) fn from_header(value: Option<&HeaderValue>) -> Self {
        value.and_then(|value| Self::parse(value.as_bytes())).unwrap_or_else(Self::generate)
    }

    fn generate() -> Self {
        Self(Uuid::new_v4().to_string())
    }

    /// Only characters that need no escaping in a header or a log line, so
    /// a caller cannot forge log lines or headers through it.
    fn parse(bytes: &[u8]) -> Option<Self> {
        let id = std::str::from_utf8(bytes).ok()?;
        let sane = (1..=MAX_LEN).contains(&id.len())
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        sane.then(|| Self(id.to_owned()))
    }

    pub(crate) fn header_value(&self) -> Option<HeaderValue> {
        HeaderValue::from_str(&self.0).ok()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(raw: &[u8]) -> RequestId {
        RequestId::from_header(Some(&HeaderValue::from_bytes(raw).expect("a header value")))
    }

    fn is_generated(id: &RequestId) -> bool {
        Uuid::parse_str(&id.0).is_ok_and(|uuid| uuid.get_version_num() == 4)
    }

    #[test]
    fn a_sane_id_is_kept_as_sent() {
        for raw in ["a", "req-42", "7f1c.A_b-9", &"x".repeat(MAX_LEN), "0af7651916cd43dd8448eb211c80319c"] {
            assert_eq!(from(raw.as_bytes()).0, raw);
        }
    }

    #[test]
    fn a_missing_or_unsafe_id_is_replaced_by_a_uuid_v4() {
        assert!(is_generated(&RequestId::from_header(None)));
        let long = "x".repeat(MAX_LEN + 1);
        for raw in ["", "has space", "tab\there", "quote\"", "semi;colon", "slash/", "caf\u{e9}", &long] {
            assert!(is_generated(&from(raw.as_bytes())), "{raw:?} must be replaced");
        }
        assert!(is_generated(&from(b"latin1\xe9")));
    }

    #[test]
    fn generated_ids_differ() {
        assert_ne!(RequestId::from_header(None), RequestId::from_header(None));
    }
}
