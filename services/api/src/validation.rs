//! Checking a request's fields: every bad field is reported at once, as
//! `errors[]` of one 422 problem.

use crate::problem::{ApiError, FieldError};
use serde::{Deserialize, Deserializer};
use stockflow_domain::JsonObject;

/// Collects every field's error, so a client fixes them all in one go.
#[derive(Default)]
pub(crate) struct Fields(Vec<FieldError>);

impl Fields {
    pub(crate) fn take<T>(&mut self, parsed: Result<T, stockflow_domain::ParseError>) -> Option<T> {
        parsed.map_err(|error| self.0.push(error.into())).ok()
    }

    /// As `take`, with `prefix` before the field's name (`filters.status`).
    pub(crate) fn take_in<T>(&mut self, prefix: &str, parsed: Result<T, stockflow_domain::ParseError>) -> Option<T> {
        parsed.map_err(|error| self.push(&format!("{prefix}{}", error.field), error.reason)).ok()
    }

    pub(crate) fn push(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    /// An error with a `code` clients match on (`invalid_cron`).
    pub(crate) fn push_coded(&mut self, field: &str, code: &'static str, message: impl Into<String>) {
        self.0.push(FieldError { code: Some(code), ..FieldError::new(field, message) });
    }

    /// Takes in the errors of a nested object checked on its own, each
    /// field named under `prefix` (`export.`).
    pub(crate) fn absorb(&mut self, prefix: &str, nested: Fields) {
        self.0.extend(
            nested.0.into_iter().map(|error| FieldError { field: format!("{prefix}{}", error.field), ..error }),
        );
    }

    /// The value of a PATCH field that cannot be null: `None` when left
    /// out, an error naming `field` when sent as `null`.
    pub(crate) fn not_null<T>(&mut self, field: &str, value: Option<Option<T>>) -> Option<T> {
        match value {
            Some(None) => {
                self.push(field, "must not be null; leave the field out to keep its value");
                None
            }
            Some(Some(value)) => Some(value),
            None => None,
        }
    }

    /// Errors so far, to tell whether a step added any.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() { Ok(()) } else { Err(ApiError::Validation(self.0)) }
    }
}

/// For `#[serde(default, deserialize_with = "distinguish_null")]`: tells a field left
/// out (`None`) from one sent as `null` (`Some(None)`), which serde's plain
/// `Option` cannot.
pub(crate) fn distinguish_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A JSON object of bounded size without NUL characters, for
/// `custom_fields` and `metadata`.
pub(crate) fn json_object(
    fields: &mut Fields,
    name: &'static str,
    value: serde_json::Value,
    max: usize,
) -> Option<serde_json::Value> {
    fields.take(JsonObject::parse(name, value, max)).map(JsonObject::into_value)
}
