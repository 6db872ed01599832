//! `numeric` columns read straight into canonical decimal text.

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::pg::data_types::PgNumeric;
use diesel::pg::{Pg, PgValue};
use diesel::sql_types::Numeric;

/// A `numeric` as canonical decimal text: no exponent, no trailing zeros,
/// `0` for zero (`12.5`, `-3`, `0.000001`), as `Quantity::parse` writes it.
/// Going through BigDecimal and back to text cost a list request a
/// twenty-fifth of its CPU time.
#[derive(Debug, Clone, PartialEq, Eq, FromSqlRow)]
#[diesel(sql_type = Numeric)]
pub struct DecimalText(String);

impl DecimalText {
    pub fn into_string(self) -> String {
        self.0
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromSql<Numeric, Pg> for DecimalText {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        let numeric = PgNumeric::from_sql(value)?;
        canonical(&numeric).map(Self).ok_or_else(|| format!("not a finite decimal: {numeric:?}").into())
    }
}

/// None for NaN and for digits outside base 10000.
fn canonical(numeric: &PgNumeric) -> Option<String> {
    let (negative, weight, digits) = match numeric {
        PgNumeric::Positive { weight, digits, .. } => (false, i32::from(*weight), digits),
        PgNumeric::Negative { weight, digits, .. } => (true, i32::from(*weight), digits),
        PgNumeric::NaN => return None,
    };
    // Group i stands for digits[i] * 10000^(weight - i); groups before the
    // first or after the last are zero.
    let group = |i: i32| usize::try_from(i).ok().and_then(|i| digits.get(i)).copied().unwrap_or(0);
    let push_group = |text: &mut String, value: i16| -> Option<()> {
        let value = u16::try_from(value).ok().filter(|v| *v < 10_000)?;
        for place in [1000, 100, 10, 1] {
            text.push(char::from(b'0' + (value / place % 10) as u8));
        }
        Some(())
    };
    let mut whole = String::new();
    for i in 0..=weight {
        push_group(&mut whole, group(i))?;
    }
    let mut fraction = String::new();
    let last = i32::try_from(digits.len()).ok()? - 1;
    for i in weight + 1..=last {
        push_group(&mut fraction, group(i))?;
    }
    let whole = match whole.trim_start_matches('0') {
        "" => "0",
        digits => digits,
    };
    let fraction = fraction.trim_end_matches('0');
    let sign = if negative && (whole != "0" || !fraction.is_empty()) { "-" } else { "" };
    Some(if fraction.is_empty() { format!("{sign}{whole}") } else { format!("{sign}{whole}.{fraction}") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bigdecimal::BigDecimal;
    use std::str::FromStr;

    #[test]
    fn writes_the_canonical_text_of_what_postgres_sends() {
        for (sent, canonical_text) in [
            ("0", "0"),
            ("0.000000", "0"),
            ("12.5", "12.5"),
            ("12.500000", "12.5"),
            ("1238.238", "1238.238"),
            ("0.000001", "0.000001"),
            ("0.1", "0.1"),
            ("10000", "10000"),
            ("100000000", "100000000"),
            ("10000.0001", "10000.0001"),
            ("123456789.123456", "123456789.123456"),
            ("99999999999999.999999", "99999999999999.999999"),
            ("-3.250", "-3.25"),
            ("-0.000", "0"),
        ] {
            let numeric = PgNumeric::from(&BigDecimal::from_str(sent).unwrap());
            assert_eq!(canonical(&numeric).as_deref(), Some(canonical_text), "{sent} as {numeric:?}");
        }
    }

    #[test]
    fn nan_and_bad_digits_are_refused() {
        assert_eq!(canonical(&PgNumeric::NaN), None);
        assert_eq!(canonical(&PgNumeric::Positive { weight: 0, scale: 0, digits: vec![10_000] }), None);
        assert_eq!(canonical(&PgNumeric::Positive { weight: 0, scale: 0, digits: vec![-1] }), None);
    }
}
