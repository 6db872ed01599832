//! Keyset pagination: `limit` (1 to 200, default 50) and an opaque `cursor`
//! naming the last row of the previous page.

use crate::problem::ApiError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use stockflow_db::page::After;
use uuid::Uuid;

pub(crate) const DEFAULT_LIMIT: i64 = 50;
pub(crate) const MAX_LIMIT: i64 = 200;

/// A page of results. `next_cursor` is null on the last page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Page<T> {
    pub(crate) items: Vec<T>,
    /// Pass it back as `cursor` for the next page.
    pub(crate) next_cursor: Option<String>,
}

/// The query of a list that takes nothing but a page: `limit` and `cursor`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Items per page, 1 to 200; 50 when left out.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(schema_with = crate::pagination::cursor_schema)]
    cursor: Option<String>,
}

impl PageQuery {
    pub(crate) fn limit(&self) -> Option<&str> {
        self.limit.as_deref()
    }

    pub(crate) fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }
}

pub(crate) struct PageRequest {
    pub(crate) limit: i64,
    pub(crate) after: Option<After>,
}

impl PageRequest {
    pub(crate) fn parse(limit: Option<&str>, cursor: Option<&str>) -> Result<Self, ApiError> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(raw) => raw
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| ApiError::invalid("limit", format!("an integer from 1 to {MAX_LIMIT}")))?,
        };
        let after = cursor.map(decode).transpose()?;
        Ok(Self { limit, after })
    }

    /// One row more than the page holds, to learn whether another page follows.
    pub(crate) fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// Cuts the extra row and turns the last kept one into the next cursor.
    pub(crate) fn page<R, T>(&self, mut rows: Vec<R>, key: impl Fn(&R) -> After, view: impl Fn(R) -> T) -> Page<T> {
        let more = rows.len() as i64 > self.limit;
        rows.truncate(usize::try_from(self.limit).unwrap_or(usize::MAX));
        let next_cursor = if more { rows.last().map(|row| encode(&key(row))) } else { None };
        Page { items: rows.into_iter().map(view).collect(), next_cursor }
    }
}

/// The cursor's form, as the OpenAPI document states it: 16 hex digits of
/// microseconds since PostgreSQL's earliest timestamp (4713 BC), at most
/// `6fff...` (past year 250,000), then the 32 of the row's id. Any value of
/// this form is a valid position, and nothing else is.
pub(crate) const CURSOR_PATTERN: &str = "^[0-6][0-9a-f]{47}$";

/// Opaque to clients, and harmless to forge, since every query is scoped
/// to the caller's org.
pub(crate) fn encode(after: &After) -> String {
    // Every stored time is after 4713 BC, so the offset is never negative.
    let offset = after.at.timestamp_micros().abs_diff(After::EARLIEST_MICROS);
    // Written digit by digit: a GraphQL page writes one per edge, and
    // `format!` made them a twentieth of the page's time.
    let mut cursor = String::with_capacity(48);
    for shift in (0..16).rev() {
        cursor.push(char::from(b"0123456789abcdef"[usize::from((offset >> (shift * 4)) as u8 & 0xf)]));
    }
    cursor.push_str(after.id.simple().encode_lower(&mut Uuid::encode_buffer()));
    cursor
}

fn decode(raw: &str) -> Result<After, ApiError> {
    let invalid = || ApiError::BadRequest("cursor: not a cursor returned by this endpoint".to_owned());
    let well_formed = raw.len() == 48
        && raw.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && (b'0'..=b'6').contains(&raw.as_bytes()[0]);
    if !well_formed {
        return Err(invalid());
    }
    let (offset, id) = raw.split_at(16);
    let offset = i64::from_str_radix(offset, 16).map_err(|_| invalid())?;
    let at = After::EARLIEST_MICROS.checked_add(offset).and_then(DateTime::<Utc>::from_timestamp_micros);
    let id = Uuid::try_parse(id).map_err(|_| invalid())?;
    at.and_then(|at| After::new(at, id)).ok_or_else(invalid)
}

/// `cursor` in the document.
pub(crate) fn cursor_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .pattern(Some(CURSOR_PATTERN))
        .description(Some("The `next_cursor` of the previous page."))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        for micros in [1_700_000_000_123_456, After::EARLIEST_MICROS, -1, 253_402_300_799_999_999] {
            let after = After { at: DateTime::from_timestamp_micros(micros).unwrap(), id: Uuid::new_v4() };
            let cursor = encode(&after);
            assert!(cursor.len() == 48 && cursor.starts_with(['0', '1', '2', '3', '4', '5', '6']), "{cursor}");
            let offset = micros.abs_diff(After::EARLIEST_MICROS);
            assert_eq!(cursor, format!("{offset:016x}{}", after.id.simple()));
            assert_eq!(decode(&cursor).unwrap(), after);
        }
        let id = Uuid::nil().simple().to_string();
        for bad in [
            "".to_owned(),
            "zz".to_owned(),
            "g".repeat(48),
            "0".repeat(47),
            "0".repeat(49),
            format!("7{}{id}", "0".repeat(15)),
            format!("f{}{id}", "f".repeat(15)),
            format!("0000000000000A00{id}"),
        ] {
            assert!(matches!(decode(&bad), Err(ApiError::BadRequest(_))), "{bad:?}");
        }
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(PageRequest::parse(None, None).unwrap().limit, 50);
        assert_eq!(PageRequest::parse(Some("200"), None).unwrap().limit, 200);
        for bad in ["0", "201", "-1", "ten"] {
            assert!(PageRequest::parse(Some(bad), None).is_err(), "{bad}");
        }
    }
}
