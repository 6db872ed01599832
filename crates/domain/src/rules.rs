//! The rules of text and JSON values, stated once for the parsers and once
//! more as JSON Schema for the OpenAPI document. A test checks the two
//! statements agree on hundreds of values, so the document cannot drift.

use crate::ParseError;
use serde_json::Value;

/// A text value's rule as JSON Schema says it: a pattern (ECMA 262, the
/// dialect JSON Schema uses) and a length in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextRule {
    pub pattern: &'static str,
    pub max_chars: usize,
}

/// `char::is_control`: the C0 and C1 controls, NUL included.
macro_rules! controls {
    () => {
        r"\x00-\x1f\x7f-\x9f"
    };
}
/// `char::is_whitespace` (Unicode White_Space) less the controls already
/// in `controls!`.
macro_rules! spaces {
    () => {
        r"\x20\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
    };
}
pub(crate) use {controls, spaces};

/// Text of at most `max` characters as sent, without control characters,
/// holding at least one character that is not a space: what
/// [`trimmed_text`] accepts.
pub(crate) const fn trimmed_text_rule(max_chars: usize) -> TextRule {
    TextRule {
        pattern: concat!("^[^", controls!(), "]*[^", controls!(), spaces!(), "][^", controls!(), "]*$"),
        max_chars,
    }
}

/// Trimmed text: at most `max` characters as sent, no control characters,
/// not blank. The length is counted before trimming so the rule is one a
/// schema can state.
pub(crate) fn trimmed_text(raw: &str, max: usize) -> Option<String> {
    let trimmed = raw.trim();
    let fits = raw.chars().count() <= max && !trimmed.is_empty() && !raw.chars().any(char::is_control);
    fits.then(|| trimmed.to_owned())
}

/// A JSON object kept as sent (`custom_fields`, `metadata`): at most
/// `max_bytes` as compact JSON, and no NUL character in any key or string
/// at any depth, since PostgreSQL's `jsonb` cannot hold one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonObject(Value);

impl JsonObject {
    /// The pattern every key and string value of the object must match.
    pub const STRING_PATTERN: &'static str = r"^[^\x00]*$";

    pub fn parse(field: &'static str, value: Value, max_bytes: usize) -> Result<Self, ParseError> {
        if !value.is_object() {
            return Err(ParseError::new(field, "a JSON object"));
        }
        if holds_nul(&value) {
            return Err(ParseError::new(field, "no NUL character (\\u0000) in any key or string"));
        }
        if serde_json::to_vec(&value).map_or(usize::MAX, |bytes| bytes.len()) > max_bytes {
            return Err(ParseError::new(field, "at most 16 KiB as JSON"));
        }
        Ok(Self(value))
    }

    pub fn empty() -> Self {
        Self(Value::Object(serde_json::Map::new()))
    }

    pub fn as_value(&self) -> &Value {
        &self.0
    }

    pub fn into_value(self) -> Value {
        self.0
    }
}

fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(key, value)| key.contains('\0') || holds_nul(value)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_nul_anywhere_in_a_json_object_is_refused_and_names_the_field() {
        for bad in [
            json!({"a\u{0}": 1}),
            json!({"a": "x\u{0}y"}),
            json!({"a": [1, {"b": ["\u{0}"]}]}),
            json!({"a": {"\u{0}": null}}),
        ] {
            assert_eq!(JsonObject::parse("metadata", bad.clone(), 16_384).unwrap_err().field, "metadata", "{bad}");
        }
        let good = json!({"a": [1, {"b": ["x", null, true, 2.5]}], "é": "ü"});
        assert_eq!(JsonObject::parse("metadata", good.clone(), 16_384).unwrap().into_value(), good);
        assert!(JsonObject::parse("metadata", json!([]), 16_384).is_err());
        assert!(JsonObject::parse("metadata", json!({"a": "x".repeat(100)}), 64).is_err());
    }

    #[test]
    fn trimmed_text_counts_characters_as_sent() {
        assert_eq!(trimmed_text(" a ", 3).as_deref(), Some("a"));
        assert_eq!(trimmed_text(" a  ", 3), None);
        assert_eq!(trimmed_text("\u{3000}", 3), None);
        assert_eq!(trimmed_text("a\u{0}", 3), None);
    }
}
