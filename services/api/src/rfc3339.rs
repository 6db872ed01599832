//! Timestamps in response bodies, written as chrono writes them
//! (`2026-11-23T08:00:00.123Z`: UTC, `Z`, no fraction or 3, 6 or 9 digits)
//! but without `core::fmt`: a page of 50 batches holds 150 timestamps, and
//! chrono's formatter made them a tenth of a list request's CPU time.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Serializer;

pub(crate) fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    let mut buffer = [0u8; 32];
    match write(at, &mut buffer) {
        Some(text) => serializer.serialize_str(text),
        None => serde::Serialize::serialize(at, serializer),
    }
}

/// The same text, owned: for GraphQL's `DateTime`.
pub(crate) fn format(at: &DateTime<Utc>) -> String {
    let mut buffer = [0u8; 32];
    match write(at, &mut buffer) {
        Some(text) => text.to_owned(),
        None => serde_json::to_value(at).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
    }
}

pub(crate) fn optional<S: Serializer>(at: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => serialize(at, serializer),
        None => serializer.serialize_none(),
    }
}

/// None for what chrono writes differently: years outside 0..=9999 and
/// leap seconds.
fn write<'b>(at: &DateTime<Utc>, buffer: &'b mut [u8; 32]) -> Option<&'b str> {
    let year = u32::try_from(at.year()).ok().filter(|y| *y <= 9999)?;
    let nanos = at.nanosecond();
    if nanos >= 1_000_000_000 {
        return None;
    }
    let mut end = 0;
    let mut put = |mut value: u32, width: usize, separator: u8| {
        for slot in buffer[end..end + width].iter_mut().rev() {
            // A remainder of 10 always fits a u8.
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
        buffer[end + width] = separator;
        end += width + 1;
    };
    put(year, 4, b'-');
    put(at.month(), 2, b'-');
    put(at.day(), 2, b'T');
    put(at.hour(), 2, b':');
    put(at.minute(), 2, b':');
    let fraction = match nanos {
        0 => None,
        n if n % 1_000_000 == 0 => Some((n / 1_000_000, 3)),
        n if n % 1_000 == 0 => Some((n / 1_000, 6)),
        n => Some((n, 9)),
    };
    match fraction {
        None => put(at.second(), 2, b'Z'),
        Some((digits, width)) => {
            put(at.second(), 2, b'.');
            put(digits, width, b'Z');
        }
    }
    std::str::from_utf8(&buffer[..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[derive(serde::Serialize)]
    struct Ours {
        #[serde(serialize_with = "serialize")]
        at: DateTime<Utc>,
        #[serde(serialize_with = "optional")]
        maybe: Option<DateTime<Utc>>,
    }

    #[derive(serde::Serialize)]
    struct Chrono {
        at: DateTime<Utc>,
        maybe: Option<DateTime<Utc>>,
    }

    fn same_as_chrono(at: DateTime<Utc>) {
        let ours = serde_json::to_string(&Ours { at, maybe: Some(at) }).unwrap();
        let chrono = serde_json::to_string(&Chrono { at, maybe: Some(at) }).unwrap();
        assert_eq!(ours, chrono);
    }

    #[test]
    fn writes_what_chrono_writes() {
        let base = Utc.with_ymd_and_hms(2026, 11, 23, 8, 5, 9).unwrap();
        for nanos in [0, 1, 7, 120, 1_000, 123_000, 999_999, 1_000_000, 5_000_000, 123_456_789, 999_999_999] {
            same_as_chrono(base + chrono::Duration::nanoseconds(nanos));
        }
        for (y, mo, d, h, mi, s) in
            [(1, 1, 1, 0, 0, 0), (999, 12, 31, 23, 59, 59), (9999, 12, 31, 23, 59, 59), (2024, 2, 29, 12, 0, 1)]
        {
            same_as_chrono(Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap());
        }
        // What the fast path leaves to chrono.
        same_as_chrono(Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap());
        same_as_chrono(Utc.with_ymd_and_hms(-5, 1, 1, 0, 0, 0).unwrap());
        let leap =
            chrono::NaiveDate::from_ymd_opt(2016, 12, 31).unwrap().and_hms_nano_opt(23, 59, 59, 1_500_000_000).unwrap();
        same_as_chrono(Utc.from_utc_datetime(&leap));
    }

    #[test]
    fn absent_is_null() {
        let at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(
            serde_json::to_string(&Ours { at, maybe: None }).unwrap(),
            r#"{"at":"2026-01-02T03:04:05Z","maybe":null}"#
        );
    }
}
