//! Keyset pagination: `limit` (1 to 200, default 50) and an opaque `cursor`
//! naming the last row of the previous page.

use crate::problem::ApiError;
use chrono::{DateTime, Utc};
use serde::Serialize;
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

/// 8 bytes of microseconds and 16 of id, as hex: opaque to clients, and
/// harmless to forge, since every query is scoped to the caller's org.
fn encode(after: &After) -> String {
    let mut bytes = after.at.timestamp_micros().to_be_bytes().to_vec();
    bytes.extend_from_slice(after.id.as_bytes());
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode(raw: &str) -> Result<After, ApiError> {
    let invalid = || ApiError::invalid("cursor", "not a cursor returned by this endpoint");
    if raw.len() != 48 || !raw.is_ascii() {
        return Err(invalid());
    }
    let bytes = (0..24)
        .map(|i| u8::from_str_radix(&raw[2 * i..2 * i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| invalid())?;
    let micros = i64::from_be_bytes(bytes[..8].try_into().map_err(|_| invalid())?);
    let at = DateTime::<Utc>::from_timestamp_micros(micros).ok_or_else(invalid)?;
    let id = Uuid::from_slice(&bytes[8..]).map_err(|_| invalid())?;
    Ok(After { at, id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let after = After { at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(), id: Uuid::new_v4() };
        assert_eq!(decode(&encode(&after)).unwrap(), after);
        for bad in ["", "zz", &"g".repeat(48), &"0".repeat(47)] {
            assert!(matches!(decode(bad), Err(ApiError::Validation(_))), "{bad:?}");
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
