//! Checking a request's fields: every bad field is reported at once, as
//! `errors[]` of one 422 problem.

use crate::problem::{ApiError, FieldError};

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

    /// Errors so far, to tell whether a step added any.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() { Ok(()) } else { Err(ApiError::Validation(self.0)) }
    }
}

/// A JSON object of bounded size, for `custom_fields` and `metadata`.
pub(crate) fn json_object(
    fields: &mut Fields,
    name: &str,
    value: serde_json::Value,
    max: usize,
) -> Option<serde_json::Value> {
    if !value.is_object() {
        fields.push(name, "must be a JSON object");
        return None;
    }
    if serde_json::to_vec(&value).map_or(usize::MAX, |bytes| bytes.len()) > max {
        fields.push(name, format!("must be at most {} KiB as JSON", max / 1024));
        return None;
    }
    Some(value)
}
