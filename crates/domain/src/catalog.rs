//! Products and what describes them.

use crate::ParseError;
use crate::rules::{TextRule, controls, trimmed_text, trimmed_text_rule};

/// A stock-keeping unit, unique per organization: 1 to 64 of letters,
/// digits, `.`, `_`, `/` and `-`, starting with a letter or digit. The same
/// rule as the database CHECK, so a parsed SKU is always storable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sku(String);

impl Sku {
    pub const RULE: TextRule = CODE_RULE;

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        code_like(raw).map(Self).ok_or(ParseError::new(
            "sku",
            "1 to 64 letters, digits, '.', '_', '/' or '-', starting with a letter or digit",
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The start of a SKU, for prefix filters: the same characters as a SKU.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SkuPrefix(String);

impl TryFrom<String> for SkuPrefix {
    type Error = ParseError;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<SkuPrefix> for String {
    fn from(prefix: SkuPrefix) -> Self {
        prefix.0
    }
}

impl SkuPrefix {
    pub const RULE: TextRule = CODE_RULE;

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        code_like(raw)
            .map(Self)
            .ok_or(ParseError::new("sku_prefix", "the start of a SKU: letters, digits, '.', '_', '/' or '-'"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What people call the product: at most 200 characters, not blank, no
/// control characters; stored trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductName(String);

impl ProductName {
    pub const RULE: TextRule = trimmed_text_rule(200);

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        trimmed_text(raw, Self::RULE.max_chars)
            .map(Self)
            .ok_or(ParseError::new("name", "1 to 200 characters, not blank, no control characters"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The unit quantities are counted in (`kg`, `pcs`, `l`): at most 32
/// characters, not blank; stored trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit(String);

impl Unit {
    pub const RULE: TextRule = trimmed_text_rule(32);

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        trimmed_text(raw, Self::RULE.max_chars)
            .map(Self)
            .ok_or(ParseError::new("unit", "1 to 32 characters, not blank, no control characters"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A search of product names (`q`): at most 200 characters, no control
/// characters; blank means no search. Derefs to the text to look for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NameSearch(String);

impl NameSearch {
    pub const RULE: TextRule = TextRule { pattern: concat!("^[^", controls!(), "]*$"), max_chars: 200 };

    /// `None` for a blank search, which filters nothing.
    pub fn parse(raw: &str) -> Result<Option<Self>, ParseError> {
        if raw.chars().count() > Self::RULE.max_chars || raw.chars().any(char::is_control) {
            return Err(ParseError::new("q", "at most 200 characters, no control characters"));
        }
        let trimmed = raw.trim();
        Ok((!trimmed.is_empty()).then(|| Self(trimmed.to_owned())))
    }
}

impl std::ops::Deref for NameSearch {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NameSearch {
    type Error = ParseError;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)?.ok_or(ParseError::new("q", "not blank"))
    }
}

impl From<NameSearch> for String {
    fn from(search: NameSearch) -> Self {
        search.0
    }
}

/// SKUs, their prefixes and batch codes.
pub(crate) const CODE_RULE: TextRule = TextRule { pattern: r"^[A-Za-z0-9][A-Za-z0-9._/-]*$", max_chars: 64 };

/// Shared by SKUs and batch codes: [`CODE_RULE`].
pub(crate) fn code_like(raw: &str) -> Option<String> {
    let starts_well = raw.starts_with(|c: char| c.is_ascii_alphanumeric());
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-');
    (starts_well && raw.len() <= CODE_RULE.max_chars && raw.chars().all(ok_char)).then(|| raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skus_follow_the_database_rule() {
        for good in ["A", "flour-00", "BOX/12.5_x", &"k".repeat(64)] {
            assert_eq!(Sku::parse(good).unwrap().as_str(), good);
        }
        for bad in ["", "-a", ".a", "a b", "a\u{e9}", &"k".repeat(65), "a;drop"] {
            let err = Sku::parse(bad).unwrap_err();
            assert_eq!(err.field, "sku", "{bad:?}");
        }
        assert!(SkuPrefix::parse("FL").is_ok());
        assert_eq!(SkuPrefix::parse("%").unwrap_err().field, "sku_prefix");
    }

    #[test]
    fn names_and_units_are_trimmed_bounded_text() {
        assert_eq!(ProductName::parse("  Rye flour ").unwrap().as_str(), "Rye flour");
        assert_eq!(ProductName::parse(&"é".repeat(200)).unwrap().as_str().chars().count(), 200);
        for bad in ["", "   ", "a\nb", "a\u{0}", &"x".repeat(201), &format!(" {} ", "x".repeat(199))] {
            assert_eq!(ProductName::parse(bad).unwrap_err().field, "name", "{bad:?}");
        }
        assert_eq!(Unit::parse("kg").unwrap().as_str(), "kg");
        assert_eq!(Unit::parse(&"u".repeat(33)).unwrap_err().field, "unit");
    }

    #[test]
    fn a_name_search_is_bounded_text_without_controls_and_blank_is_none() {
        assert_eq!(NameSearch::parse(" rye ").unwrap().as_deref(), Some("rye"));
        assert_eq!(NameSearch::parse("  ").unwrap(), None);
        assert_eq!(NameSearch::parse("").unwrap(), None);
        for bad in ["\u{0}", "a\u{0}b", "\n", &"q".repeat(201)] {
            assert_eq!(NameSearch::parse(bad).unwrap_err().field, "q", "{bad:?}");
        }
    }
}
