use crate::ParseError;
use crate::rules::{TextRule, trimmed_text, trimmed_text_rule};
use sha2::{Digest, Sha256};
use std::fmt;

/// A bearer token as the client holds it: `sf_` and at least 32 base62
/// characters. Shown once at creation; only its digest is ever stored.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiTokenSecret(String);

impl ApiTokenSecret {
    pub const PREFIX: &'static str = "sf_";
    /// 40 base62 characters carry about 238 bits of entropy.
    pub const GENERATED_LEN: usize = 40;
    const MIN_LEN: usize = 32;
    const MAX_LEN: usize = 128;

    /// Builds a token from random bytes supplied by the caller, so this crate
    /// stays free of IO. Bytes are mapped to base62 by rejection sampling:
    /// values >= 248 are skipped so every character is equally likely.
    pub fn from_random_bytes(bytes: impl IntoIterator<Item = u8>) -> Option<Self> {
        const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let body: String = bytes
            .into_iter()
            .filter(|b| *b < 248)
            .map(|b| char::from(ALPHABET[usize::from(b % 62)]))
            .take(Self::GENERATED_LEN)
            .collect();
        (body.len() == Self::GENERATED_LEN).then(|| Self(format!("{}{body}", Self::PREFIX)))
    }

    /// Parses a token presented by a client.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let body = raw.strip_prefix(Self::PREFIX).unwrap_or_default();
        if (Self::MIN_LEN..=Self::MAX_LEN).contains(&body.len()) && body.chars().all(|c| c.is_ascii_alphanumeric()) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ParseError::new("token", "sf_ followed by at least 32 letters or digits"))
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn digest(&self) -> TokenDigest {
        TokenDigest(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl fmt::Debug for ApiTokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiTokenSecret([redacted])")
    }
}

/// The sha256 of a token: what the database stores and looks tokens up by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TokenDigest(pub [u8; 32]);

impl TokenDigest {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_have_the_documented_shape_and_parse_back() {
        let token = ApiTokenSecret::from_random_bytes((0..=255u8).cycle().take(400)).unwrap();
        assert!(token.expose().starts_with("sf_"));
        assert_eq!(token.expose().len(), 3 + ApiTokenSecret::GENERATED_LEN);
        assert_eq!(ApiTokenSecret::parse(token.expose()).unwrap(), token);
    }

    #[test]
    fn too_few_usable_bytes_give_no_token() {
        assert!(ApiTokenSecret::from_random_bytes([255u8; 100]).is_none());
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let body = "a".repeat(32);
        assert!(ApiTokenSecret::parse(&format!("sf_{body}")).is_ok());
        for bad in [body.clone(), format!("sf_{}", &body[1..]), format!("sf_{body}!"), format!("xx_{body}")] {
            assert!(ApiTokenSecret::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn digest_is_sha256_of_the_whole_token() {
        let token = ApiTokenSecret::parse(&format!("sf_{}", "a".repeat(32))).unwrap();
        let expected: [u8; 32] = Sha256::digest(token.expose().as_bytes()).into();
        assert_eq!(token.digest().0, expected);
        assert!(!format!("{token:?}").contains("aaaa"));
    }
}

/// How long a token stays valid: 1 to 4 digits of days (`30d`), 5 of hours
/// (`12h`) or 7 of minutes (`90m`), no leading zero; at most 9999 days, so
/// an expiry can always be stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenLifetime(std::time::Duration);

impl TokenLifetime {
    pub const PATTERN: &'static str = r"^([1-9][0-9]{0,3}d|[1-9][0-9]{0,4}h|[1-9][0-9]{0,6}m)$";

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        const ERROR: ParseError =
            ParseError::new("expires_in", "1 to 4 digits of days, 5 of hours or 7 of minutes, such as 30d, 12h or 90m");
        // Split at the last character, not the last byte: the unit may be
        // any character a client sends.
        let mut chars = raw.chars();
        let unit = chars.next_back().ok_or(ERROR)?;
        let digits = chars.as_str();
        let (unit_secs, max_digits) = match unit {
            'd' => (86_400, 4),
            'h' => (3_600, 5),
            'm' => (60, 7),
            _ => return Err(ERROR),
        };
        let well_formed = (1..=max_digits).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if !well_formed {
            return Err(ERROR);
        }
        let count: u64 = digits.parse().map_err(|_| ERROR)?;
        Ok(Self(std::time::Duration::from_secs(count * unit_secs)))
    }

    pub fn as_duration(self) -> std::time::Duration {
        self.0
    }
}

/// What a token is called in listings: at most 100 characters, not blank,
/// no control characters; stored trimmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenName(String);

impl TokenName {
    pub const RULE: TextRule = trimmed_text_rule(100);

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        trimmed_text(raw, Self::RULE.max_chars)
            .map(Self)
            .ok_or(ParseError::new("name", "1 to 100 characters, not blank, no control characters"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod lifetime_tests {
    use super::*;

    #[test]
    fn lifetimes_parse_with_units_and_reject_nonsense() {
        assert_eq!(TokenLifetime::parse("30d").unwrap().as_duration().as_secs(), 30 * 86_400);
        assert_eq!(TokenLifetime::parse("90m").unwrap().as_duration().as_secs(), 5_400);
        assert_eq!(TokenLifetime::parse("9999d").unwrap().as_duration().as_secs(), 9_999 * 86_400);
        assert_eq!(TokenLifetime::parse("9999999m").unwrap().as_duration().as_secs(), 9_999_999 * 60);
        for bad in ["", "d", "0d", "-1d", "+1d", "030d", "30", "30s", "1.5h", "99999d", " 1d", "1d "] {
            assert!(TokenLifetime::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_multi_byte_last_character_is_refused_not_a_panic() {
        for bad in ["1\u{e9}", "\u{20ac}", "\u{e9}d", "1\u{1f600}", "\u{e9}"] {
            assert_eq!(TokenLifetime::parse(bad).unwrap_err().field, "expires_in", "{bad}");
        }
    }

    #[test]
    fn token_names_are_trimmed_bounded_text() {
        assert_eq!(TokenName::parse(" ci ").unwrap().as_str(), "ci");
        for bad in ["", " ", "a\u{1}", "a\u{0}", &"n".repeat(101)] {
            assert_eq!(TokenName::parse(bad).unwrap_err().field, "name", "{bad:?}");
        }
    }
}
