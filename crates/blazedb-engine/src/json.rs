//! Values ↔ JSON, exactly, for export/import, the CLI and tests.
//!
//! JSON has no bytes, timestamps, UUIDs, non-finite floats, or integer/float
//! distinction; BlazeDB values map as follows so every value round-trips exactly:
//!
//! | value | JSON |
//! | --- | --- |
//! | null, bool, string, array, map | the same |
//! | int | an integer literal (`7`) |
//! | float | a number with a fraction or exponent (`7.0`, `1e300`); NaN/±∞ as `{"$float": "NaN" \| "inf" \| "-inf"}` |
//! | bytes | `{"$bytes": "<base64, standard alphabet, padded>"}` |
//! | timestamp | `{"$ts": <microseconds since the epoch>}` |
//! | uuid | `{"$uuid": "<hyphenated>"}` |
//!
//! Field names never start with `$`, so a one-entry object with a `$` key is always a
//! tagged value. Objects are written with sorted keys (canonical: equal documents give
//! equal bytes).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use blazedb_core::{Error, Fields, Result, Timestamp, Value};
use serde_json::{Map, Number, Value as Json};

fn tagged(tag: &str, v: Json) -> Json {
    let mut m = Map::new();
    m.insert(tag.to_owned(), v);
    Json::Object(m)
}

/// A value as JSON.
#[must_use]
pub fn to_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::Number((*i).into()),
        Value::Float(f) => match Number::from_f64(*f) {
            Some(n) => Json::Number(n),
            None => tagged(
                "$float",
                Json::String(
                    if f.is_nan() {
                        "NaN"
                    } else if *f > 0.0 {
                        "inf"
                    } else {
                        "-inf"
                    }
                    .into(),
                ),
            ),
        },
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(b) => tagged("$bytes", Json::String(STANDARD.encode(b))),
        Value::Timestamp(t) => tagged("$ts", Json::Number(t.0.into())),
        Value::Uuid(u) => tagged("$uuid", Json::String(u.hyphenated().to_string())),
        Value::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        Value::Map(m) => Json::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
    }
}

/// Document fields as a JSON object.
#[must_use]
pub fn fields_to_json(f: &Fields) -> Json {
    Json::Object(f.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
}

fn bad(reason: impl Into<String>) -> Error {
    Error::InvalidValue {
        reason: reason.into(),
    }
}

fn from_tagged(tag: &str, v: &Json) -> Result<Value> {
    match (tag, v) {
        ("$float", Json::String(s)) => match s.as_str() {
            "NaN" => Ok(Value::Float(f64::NAN)),
            "inf" => Ok(Value::Float(f64::INFINITY)),
            "-inf" => Ok(Value::Float(f64::NEG_INFINITY)),
            other => Err(bad(format!(
                "$float must be \"NaN\", \"inf\" or \"-inf\", not {other:?}"
            ))),
        },
        ("$bytes", Json::String(s)) => STANDARD
            .decode(s)
            .map(Value::Bytes)
            .map_err(|e| bad(format!("$bytes is not base64: {e}"))),
        ("$ts", Json::Number(n)) => n
            .as_i64()
            .map(|t| Value::Timestamp(Timestamp(t)))
            .ok_or_else(|| bad("$ts must be an integer number of microseconds")),
        ("$uuid", Json::String(s)) => uuid::Uuid::parse_str(s)
            .map(Value::Uuid)
            .map_err(|e| bad(format!("$uuid is not a UUID: {e}"))),
        (tag, _) => Err(bad(format!("unknown or malformed tagged value {tag:?}"))),
    }
}

/// A JSON value as a value.
///
/// # Errors
/// [`Error::InvalidValue`] for integers outside the 64-bit signed range, malformed
/// tagged values, or keys starting with `$` that are not a tagged value.
pub fn from_json(v: &Json) -> Result<Value> {
    Ok(match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => {
            if n.is_f64() {
                Value::Float(n.as_f64().ok_or_else(|| bad("number out of range"))?)
            } else {
                Value::Int(
                    n.as_i64().ok_or_else(|| {
                        bad(format!("integer {n} outside the 64-bit signed range"))
                    })?,
                )
            }
        }
        Json::String(s) => Value::String(s.clone()),
        Json::Array(a) => Value::Array(a.iter().map(from_json).collect::<Result<_>>()?),
        Json::Object(m) => {
            if m.len() == 1
                && let Some((k, v)) = m.iter().next()
                && k.starts_with('$')
            {
                return from_tagged(k, v);
            }
            Value::Map(object_fields(m)?)
        }
    })
}

fn object_fields(m: &Map<String, Json>) -> Result<BTreeMap<String, Value>> {
    m.iter()
        .map(|(k, v)| Ok((k.clone(), from_json(v)?)))
        .collect()
}

/// A JSON object as document fields (validated like any write).
///
/// # Errors
/// [`Error::InvalidValue`] if `v` is not an object or holds an unmappable value;
/// [`Error::InvalidName`] for a bad field name.
pub fn fields_from_json(v: &Json) -> Result<Fields> {
    let Json::Object(m) = v else {
        return Err(bad("a document must be a JSON object"));
    };
    let fields = object_fields(m)?;
    blazedb_core::document::validate_fields(&fields)?;
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_value_round_trips_through_json_text() {
        let v = Value::Array(vec![
            Value::Null,
            Value::Bool(true),
            Value::Int(i64::MIN),
            Value::Float(1.0),
            Value::Float(-0.0),
            Value::Float(f64::NAN),
            Value::Float(f64::NEG_INFINITY),
            Value::String("$x".into()),
            Value::Bytes(vec![0, 255]),
            Value::Timestamp(Timestamp(-5)),
            Value::Uuid(uuid::Uuid::from_bytes([7; 16])),
            Value::Map(BTreeMap::from([("a".to_owned(), Value::Int(1))])),
        ]);
        let text = serde_json::to_string(&to_json(&v)).expect("serialize");
        let back = from_json(&serde_json::from_str(&text).expect("parse")).expect("from_json");
        // NaN != NaN, so compare the canonical text instead.
        assert_eq!(
            serde_json::to_string(&to_json(&back)).expect("serialize"),
            text
        );
        assert!(
            matches!(&back, Value::Array(a) if matches!(a[3], Value::Float(f) if f == 1.0) && matches!(a[4], Value::Float(f) if f.is_sign_negative()))
        );
    }

    #[test]
    fn malformed_json_values_are_typed_errors() {
        for text in [
            r#"{"$bytes": "!!"}"#,
            r#"{"$ts": 1.5}"#,
            r#"{"$uuid": "x"}"#,
            r#"{"$nope": 1}"#,
            "18446744073709551615",
        ] {
            let j: Json = serde_json::from_str(text).expect("json");
            assert!(from_json(&j).is_err(), "{text}");
        }
        assert!(fields_from_json(&Json::Array(vec![])).is_err());
        assert!(fields_from_json(&serde_json::json!({"a.b": 1})).is_err());
    }
}
