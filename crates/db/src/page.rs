//! What list and write queries share: the keyset position of a page, and
//! the constraint violations callers turn into 409s.

use chrono::{DateTime, Utc};
use diesel::result::{DatabaseErrorKind, Error};
use uuid::Uuid;

/// The sort key of the last row of a page: the next page starts after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct After {
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A per-organization unique value is taken; names the API field.
    #[error("{field} is already taken")]
    Taken { field: &'static str },
    /// A row still referenced elsewhere (a product with batches).
    #[error("still in use: {0}")]
    InUse(String),
    /// A reference to a row that does not exist in the organization.
    #[error("refers to a missing row: {0}")]
    MissingReference(String),
    #[error(transparent)]
    Query(#[from] Error),
}

impl WriteError {
    /// Maps unique violations of the constraints in `unique_fields` to the
    /// field they guard, and foreign-key violations to `InUse` (on delete)
    /// or `MissingReference` (on insert/update).
    pub fn classify(error: Error, unique_fields: &[(&str, &'static str)]) -> Self {
        if let Error::DatabaseError(kind, info) = &error {
            let constraint = info.constraint_name().unwrap_or_default();
            match kind {
                DatabaseErrorKind::UniqueViolation => {
                    if let Some((_, field)) = unique_fields.iter().find(|(name, _)| *name == constraint) {
                        return Self::Taken { field };
                    }
                }
                // "update or delete on table ... violates foreign key
                // constraint ...": the row is referenced, not referencing.
                DatabaseErrorKind::ForeignKeyViolation if info.message().starts_with("update or delete") => {
                    return Self::InUse(constraint.to_owned());
                }
                DatabaseErrorKind::ForeignKeyViolation => return Self::MissingReference(constraint.to_owned()),
                _ => {}
            }
        }
        Self::Query(error)
    }
}

/// `needle` matched literally inside a LIKE pattern.
pub fn escape_like(needle: &str) -> String {
    let mut escaped = String::with_capacity(needle.len());
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(super::escape_like(r"50%_off\"), r"50\%\_off\\");
        assert_eq!(super::escape_like("plain"), "plain");
    }
}
