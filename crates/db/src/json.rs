//! JSON columns read for passing on, not for looking into.

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::pg::{Pg, PgValue};
use diesel::sql_types::Jsonb;
use serde_json::value::RawValue;

/// A `jsonb` value as PostgreSQL sends it: checked to be JSON, kept as
/// text. Parsing metadata into a tree only to write it out again was a
/// tenth of a list request's CPU time.
#[derive(Debug, Clone, FromSqlRow)]
#[diesel(sql_type = Jsonb)]
pub struct JsonText(Box<RawValue>);

impl FromSql<Jsonb, Pg> for JsonText {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        // jsonb's binary form is a version byte, 1, then the JSON text.
        match value.as_bytes().split_first() {
            Some((1, text)) => Ok(Self(serde_json::from_slice(text)?)),
            Some((version, _)) => Err(format!("unsupported jsonb version {version}").into()),
            None => Err("an empty jsonb value".into()),
        }
    }
}

impl JsonText {
    /// The JSON text, as stored.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }
}

impl serde::Serialize for JsonText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}
