//! Field values and timestamps: strict number syntax, exact integer ranges, no NaN or infinity.

use super::{Escaped, Reason};
use crate::point::{FieldValue, Precision};

/// Parses an unquoted field value: float, `i` integer, `u` unsigned or boolean.
pub(super) fn parse_value(raw: &[u8]) -> Result<FieldValue<Escaped<'static>>, Reason> {
    match raw {
        b"t" | b"T" | b"true" | b"True" | b"TRUE" => return Ok(FieldValue::Boolean(true)),
        b"f" | b"F" | b"false" | b"False" | b"FALSE" => return Ok(FieldValue::Boolean(false)),
        _ => {}
    }
    match raw.split_last() {
        Some((b'i', digits)) => parse_integer(digits)
            .map(FieldValue::Integer)
            .ok_or_else(|| range_or_invalid(raw, digits, Reason::IntegerOutOfRange)),
        Some((b'u', digits)) => parse_unsigned(digits)
            .map(FieldValue::Unsigned)
            .ok_or_else(|| range_or_invalid(raw, digits, Reason::UnsignedOutOfRange)),
        _ => parse_float(raw).map(FieldValue::Float),
    }
}

/// Decides between "out of range" (well-formed digits) and "invalid" for a failed integer.
fn range_or_invalid(raw: &[u8], digits: &[u8], out_of_range: fn(String) -> Reason) -> Reason {
    let unsigned = digits.strip_prefix(b"-").unwrap_or(digits);
    let text = String::from_utf8_lossy(raw).into_owned();
    let negative_unsigned = raw.ends_with(b"u") && digits.starts_with(b"-");
    if !unsigned.is_empty() && unsigned.iter().all(u8::is_ascii_digit) && !negative_unsigned {
        out_of_range(text)
    } else {
        Reason::InvalidValue(text)
    }
}

fn parse_unsigned(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    // Leading zeros are valid and do not count toward the 20 digits of u64::MAX.
    let significant = &digits[digits.iter().take_while(|&&d| d == b'0').count()..];
    if significant.len() > 20 {
        return None;
    }
    significant.iter().try_fold(0u64, |acc, &d| {
        let d = d.wrapping_sub(b'0');
        (d < 10).then_some(())?;
        acc.checked_mul(10)?.checked_add(u64::from(d))
    })
}

fn parse_integer(digits: &[u8]) -> Option<i64> {
    match digits.strip_prefix(b"-") {
        Some(magnitude) => {
            let m = parse_unsigned(magnitude)?;
            if m == 1 << 63 {
                Some(i64::MIN)
            } else {
                i64::try_from(m).ok().map(|v| -v)
            }
        }
        None => i64::try_from(parse_unsigned(digits)?).ok(),
    }
}

/// Powers of ten exactly representable in an f64.
const EXACT_POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// Parses `[-+]?(digits[.digits*]|.digits)([eE][-+]?digits)?`, rejecting NaN, infinity and
/// overflow.
///
/// Telemetry floats are short decimals (`58.1`), so the common case is computed directly (Clinger's
/// fast path: an exact mantissa below 2^53 divided by an exact power of ten rounds correctly); the
/// rest goes to the standard library's correctly rounded parser. Measured in `benches/`.
fn parse_float(raw: &[u8]) -> Result<f64, Reason> {
    let invalid = || {
        let text = String::from_utf8_lossy(raw).into_owned();
        let lower = text.trim_start_matches(['-', '+']).to_ascii_lowercase();
        if lower.starts_with("nan") || lower.starts_with("inf") {
            Reason::NotFinite
        } else {
            Reason::InvalidValue(text)
        }
    };
    let (negative, body) = match raw.first() {
        Some(b'-') => (true, &raw[1..]),
        Some(b'+') => (false, &raw[1..]),
        _ => (false, raw),
    };
    let mut i = 0;
    let mut mantissa: u64 = 0;
    let mut digits = 0usize;
    while let Some(&d) = body.get(i).filter(|d| d.is_ascii_digit()) {
        mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
        digits += 1;
        i += 1;
    }
    let int_digits = digits;
    let mut frac_digits = 0usize;
    if body.get(i) == Some(&b'.') {
        i += 1;
        while let Some(&d) = body.get(i).filter(|d| d.is_ascii_digit()) {
            mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
            frac_digits += 1;
            i += 1;
        }
    }
    if int_digits + frac_digits == 0 {
        return Err(invalid());
    }
    let mut has_exponent = false;
    if matches!(body.get(i), Some(b'e' | b'E')) {
        has_exponent = true;
        i += 1;
        if matches!(body.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        let exp_start = i;
        while body.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == exp_start {
            return Err(invalid());
        }
    }
    if i != body.len() {
        return Err(invalid());
    }
    let total_digits = int_digits + frac_digits;
    let value = if !has_exponent && total_digits <= 15 && frac_digits < EXACT_POWERS_OF_TEN.len() {
        mantissa as f64 / EXACT_POWERS_OF_TEN[frac_digits]
    } else {
        // The syntax is checked above, so the standard parser sees no NaN/inf spellings.
        let text = std::str::from_utf8(body).map_err(|_| invalid())?;
        text.parse::<f64>().map_err(|_| invalid())?
    };
    if !value.is_finite() {
        return Err(Reason::FloatOutOfRange(String::from_utf8_lossy(raw).into_owned()));
    }
    Ok(if negative { -value } else { value })
}

/// Parses a timestamp in `precision` units into nanoseconds.
pub(super) fn parse_timestamp(raw: &[u8], precision: Precision) -> Result<i64, Reason> {
    let text = || String::from_utf8_lossy(raw).into_owned();
    let magnitude = raw.strip_prefix(b"-").unwrap_or(raw);
    if magnitude.is_empty() || !magnitude.iter().all(u8::is_ascii_digit) {
        return Err(Reason::InvalidTimestamp(text()));
    }
    parse_integer(raw)
        .and_then(|units| units.checked_mul(precision.nanos_per_unit()))
        .ok_or_else(|| Reason::TimestampOutOfRange(text(), precision))
}
