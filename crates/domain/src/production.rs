//! Production batches and what describes them.

use crate::ParseError;
use crate::catalog::{CODE_RULE, code_like};
use crate::rules::TextRule;
use std::fmt;

/// A batch's code, unique per organization; the same rule as a SKU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchCode(String);

impl BatchCode {
    pub const RULE: TextRule = CODE_RULE;

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        code_like(raw).map(Self).ok_or(ParseError::new(
            "code",
            "1 to 64 letters, digits, '.', '_', '/' or '-', starting with a letter or digit",
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    Planned,
    InProgress,
    Completed,
    Cancelled,
}

impl BatchStatus {
    pub const ALL: [Self; 4] = [Self::Planned, Self::InProgress, Self::Completed, Self::Cancelled];

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == raw)
            .ok_or(ParseError::new("status", "planned, in_progress, completed or cancelled"))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Planned => "planned",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for BatchStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A non-negative decimal with at most 14 digits before the point and 6
/// after, what `numeric(20, 6)` holds exactly. Kept as its canonical text
/// (`12.5`, `0`) so no float ever rounds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantity(String);

impl Quantity {
    /// As text: digits, with leading zeros, at most 14 significant ones
    /// before the point, and at most 6 after it, trailing zeros aside.
    pub const PATTERN: &'static str = r"^0*[0-9]{1,14}(\.[0-9]{1,6}0*)?$";

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let invalid =
            ParseError::new("quantity", "a non-negative decimal, at most 14 digits before the point and 6 after");
        let (whole, fraction) = raw.split_once('.').unwrap_or((raw, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(fraction) || (raw.contains('.') && fraction.is_empty()) {
            return Err(invalid);
        }
        let whole = whole.trim_start_matches('0');
        let fraction = fraction.trim_end_matches('0');
        if whole.len() > 14 || fraction.len() > 6 {
            return Err(invalid);
        }
        let whole = if whole.is_empty() { "0" } else { whole };
        Ok(Self(if fraction.is_empty() { whole.to_owned() } else { format!("{whole}.{fraction}") }))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Free text about a batch: at most 10,000 characters as sent, no control
/// characters but newlines and tabs; stored trimmed, may be empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Notes(String);

impl Notes {
    pub const RULE: TextRule = TextRule { pattern: r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$", max_chars: 10_000 };

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let allowed = |c: char| !c.is_control() || matches!(c, '\n' | '\r' | '\t');
        if raw.chars().count() <= Self::RULE.max_chars && raw.chars().all(allowed) {
            Ok(Self(raw.trim().to_owned()))
        } else {
            Err(ParseError::new("notes", "at most 10000 characters, no control characters but newlines and tabs"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_canonical_exact_decimals() {
        for (raw, canonical) in [
            ("0", "0"),
            ("12.500", "12.5"),
            ("007", "7"),
            ("0.000001", "0.000001"),
            ("99999999999999.999999", "99999999999999.999999"),
        ] {
            assert_eq!(Quantity::parse(raw).unwrap().as_str(), canonical, "{raw}");
        }
        for bad in ["", "-1", "1.", ".5", "1e3", "1.0000001", "100000000000000", "1,5", " 1", "NaN"] {
            assert_eq!(Quantity::parse(bad).unwrap_err().field, "quantity", "{bad:?}");
        }
    }

    #[test]
    fn statuses_and_codes_parse() {
        assert_eq!(BatchStatus::parse("in_progress").unwrap(), BatchStatus::InProgress);
        assert_eq!(BatchStatus::parse("done").unwrap_err().field, "status");
        assert_eq!(BatchCode::parse("B-2026/11").unwrap().as_str(), "B-2026/11");
        assert_eq!(BatchCode::parse("").unwrap_err().field, "code");
    }

    #[test]
    fn notes_keep_newlines_but_no_other_controls() {
        assert_eq!(Notes::parse("line 1\nline 2").unwrap().as_str(), "line 1\nline 2");
        assert_eq!(Notes::parse("   ").unwrap().as_str(), "");
        assert_eq!(Notes::parse("bell\u{7}").unwrap_err().field, "notes");
        assert_eq!(Notes::parse("nul\u{0}").unwrap_err().field, "notes");
        assert!(Notes::parse(&"n".repeat(10_001)).is_err());
    }
}
