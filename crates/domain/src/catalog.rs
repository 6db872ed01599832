//! Products and what describes them.

use crate::ParseError;

/// A stock-keeping unit, unique per organization: 1 to 64 of letters,
/// digits, `.`, `_`, `/` and `-`, starting with a letter or digit. The same
/// rule as the database CHECK, so a parsed SKU is always storable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sku(String);

impl Sku {
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
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        code_like(raw)
            .map(Self)
            .ok_or(ParseError::new("sku_prefix", "the start of a SKU: letters, digits, '.', '_', '/' or '-'"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What people call the product: 1 to 200 characters, trimmed, no control
/// characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductName(String);

impl ProductName {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        text(raw, 200).map(Self).ok_or(ParseError::new("name", "1 to 200 characters, no control characters"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The unit quantities are counted in (`kg`, `pcs`, `l`): 1 to 32 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit(String);

impl Unit {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        text(raw, 32).map(Self).ok_or(ParseError::new("unit", "1 to 32 characters, no control characters"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Shared by SKUs and batch codes.
pub(crate) fn code_like(raw: &str) -> Option<String> {
    let starts_well = raw.starts_with(|c: char| c.is_ascii_alphanumeric());
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-');
    (starts_well && raw.len() <= 64 && raw.chars().all(ok_char)).then(|| raw.to_owned())
}

/// Trimmed text of 1 to `max` characters without control characters.
pub(crate) fn text(raw: &str, max: usize) -> Option<String> {
    let trimmed = raw.trim();
    let count = trimmed.chars().count();
    ((1..=max).contains(&count) && !trimmed.chars().any(char::is_control)).then(|| trimmed.to_owned())
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
        for bad in ["", "   ", "a\nb", &"x".repeat(201)] {
            assert_eq!(ProductName::parse(bad).unwrap_err().field, "name", "{bad:?}");
        }
        assert_eq!(Unit::parse("kg").unwrap().as_str(), "kg");
        assert_eq!(Unit::parse(&"u".repeat(33)).unwrap_err().field, "unit");
    }
}
