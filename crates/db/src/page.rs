//! What list and write queries share: the keyset position of a page, and
//! the constraint violations callers turn into 409s.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::{DatabaseErrorKind, Error};
use uuid::Uuid;

/// The sort key of the last row of a page: the next page starts after it.
/// Ordered as the lists are, by time and then id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct After {
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

impl After {
    /// PostgreSQL's earliest `timestamptz`, 4713-11-24 BC 00:00 UTC, in
    /// microseconds since the Unix epoch.
    pub const EARLIEST_MICROS: i64 = -210_866_803_200_000_000;
    /// `None` when `at` is outside what PostgreSQL can compare with, as a
    /// forged cursor may be: the query would fail with "timestamp out of
    /// range". PostgreSQL's latest, in 294276 AD, is past chrono's.
    pub fn new(at: DateTime<Utc>, id: Uuid) -> Option<Self> {
        (at.timestamp_micros() >= Self::EARLIEST_MICROS).then_some(Self { at, id })
    }
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

/// `query LIMIT n`, the limit written into the statement's text rather
/// than bound: PostgreSQL then plans for the actual limit in a generic plan
/// it can keep (see `batches::list_with_products`). The limit is an
/// integer, so nothing but digits reaches the text.
pub(crate) struct LiteralLimit<Q> {
    query: Q,
    limit: i64,
}

impl<Q> LiteralLimit<Q> {
    pub(crate) fn new(query: Q, limit: i64) -> Self {
        Self { query, limit }
    }
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for LiteralLimit<Q> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.query.walk_ast(out.reborrow())?;
        out.push_sql(" LIMIT ");
        out.push_sql(&self.limit.to_string());
        Ok(())
    }
}

impl<Q: Query> Query for LiteralLimit<Q> {
    type SqlType = Q::SqlType;
}

/// Each limit is a statement of its own text; no static id.
impl<Q> QueryId for LiteralLimit<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q> RunQueryDsl<PgConnection> for LiteralLimit<Q> {}

#[cfg(test)]
mod tests {
    use super::After;
    use chrono::DateTime;
    use uuid::Uuid;

    #[test]
    fn positions_before_postgresql_s_earliest_timestamp_are_refused() {
        let earliest = DateTime::from_timestamp_micros(After::EARLIEST_MICROS).unwrap();
        assert!(After::new(earliest, Uuid::nil()).is_some());
        let before = DateTime::from_timestamp_micros(After::EARLIEST_MICROS - 1).unwrap();
        assert_eq!(After::new(before, Uuid::nil()), None);
        assert!(After::new(DateTime::<chrono::Utc>::MAX_UTC, Uuid::nil()).is_some());
    }

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(super::escape_like(r"50%_off\"), r"50\%\_off\\");
        assert_eq!(super::escape_like("plain"), "plain");
    }
}
