//! The proto3 JSON spellings OTLP/JSON uses beside plain JSON: 64-bit integers as decimal
//! strings (JavaScript cannot hold them as numbers) or numbers, floats also as `"NaN"`,
//! `"Infinity"` and `"-Infinity"`, enums as integers or their names, bytes as base64.

use std::borrow::Cow;

use serde::de::Error;
use serde::{Deserialize, Deserializer};

/// A number as JSON may carry it.
#[derive(Deserialize)]
#[serde(untagged)]
enum Number<'a> {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    #[serde(borrow)]
    Text(Cow<'a, str>),
}

pub(super) fn u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    match Number::deserialize(deserializer)? {
        Number::Unsigned(n) => Ok(n),
        Number::Text(text) => {
            text.parse().map_err(|_| D::Error::custom(format!("`{text}` is not an unsigned integer")))
        }
        Number::Signed(n) => Err(D::Error::custom(format!("{n} is negative: expected an unsigned integer"))),
        Number::Float(n) => Err(D::Error::custom(format!("{n} is not an integer"))),
    }
}

pub(super) fn i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    match Number::deserialize(deserializer)? {
        Number::Signed(n) => Ok(n),
        Number::Unsigned(n) => i64::try_from(n).map_err(|_| D::Error::custom(format!("{n} is out of range (int64)"))),
        Number::Text(text) => text.parse().map_err(|_| D::Error::custom(format!("`{text}` is not an integer"))),
        Number::Float(n) => Err(D::Error::custom(format!("{n} is not an integer"))),
    }
}

pub(super) fn f64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    float(Number::deserialize(deserializer)?)
}

fn float<E: Error>(number: Number<'_>) -> Result<f64, E> {
    Ok(match number {
        Number::Float(n) => n,
        // An integer-valued float, written without a fraction.
        Number::Unsigned(n) => n as f64,
        Number::Signed(n) => n as f64,
        Number::Text(text) => match &*text {
            "NaN" => f64::NAN,
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            other => other.parse().map_err(|_| E::custom(format!("`{other}` is not a number")))?,
        },
    })
}

pub(super) fn optional_f64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    Option::<Number<'_>>::deserialize(deserializer)?.map(float).transpose()
}

pub(super) fn u64s<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u64>, D::Error> {
    #[derive(Deserialize)]
    struct Item(#[serde(deserialize_with = "u64")] u64);
    Ok(Vec::<Item>::deserialize(deserializer)?.into_iter().map(|item| item.0).collect())
}

pub(super) fn f64s<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<f64>, D::Error> {
    #[derive(Deserialize)]
    struct Item(#[serde(deserialize_with = "f64")] f64);
    Ok(Vec::<Item>::deserialize(deserializer)?.into_iter().map(|item| item.0).collect())
}

/// An `AggregationTemporality`, by number or by name.
pub(super) fn temporality<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i32, D::Error> {
    match Number::deserialize(deserializer)? {
        Number::Text(name) => match &*name {
            "AGGREGATION_TEMPORALITY_UNSPECIFIED" => Ok(0),
            "AGGREGATION_TEMPORALITY_DELTA" => Ok(super::proto::DELTA),
            "AGGREGATION_TEMPORALITY_CUMULATIVE" => Ok(super::proto::CUMULATIVE),
            other => Err(D::Error::custom(format!("`{other}` is not an aggregation temporality"))),
        },
        Number::Unsigned(n) => i32::try_from(n).map_err(|_| D::Error::custom(format!("{n} is not a temporality"))),
        Number::Signed(n) => i32::try_from(n).map_err(|_| D::Error::custom(format!("{n} is not a temporality"))),
        Number::Float(n) => Err(D::Error::custom(format!("{n} is not a temporality"))),
    }
}

pub(super) fn base64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    use base64::Engine;
    let text = Cow::<str>::deserialize(deserializer)?;
    base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map_err(|e| D::Error::custom(format!("bytes: {e}")))
}
