//! Order-preserving byte encoding of values ("memcomparable"): for any two values,
//! comparing their encodings byte-wise gives the same result as [`super::order::cmp_opt`].
//! Index keys are built from it. These bytes only ever exist inside sealed index nodes,
//! so the order they reveal is never visible on disk.
//!
//! Layout: one kind byte (the rank: missing 0x00 … map 0x09), then
//! - bool: one byte 0/1;
//! - number: NaN → `0x00`; otherwise `0x01 ‖ f64 order bits (8, BE) ‖ remainder (2, BE)`
//!   where the f64 is the value rounded to nearest and the remainder is the exact
//!   integer minus that f64 (|r| ≤ 1024), offset by 2^15; floats have remainder 0. This
//!   orders integers and floats together exactly;
//! - string, bytes: the bytes with 0x00 escaped as 0x00 0xFF, then 0x00 0x00;
//! - timestamp: i64 with the sign bit flipped, BE; uuid: its 16 bytes;
//! - array: each element's encoding, then 0x00; map: (key as string, value)…, then 0x00.

use blazedb_core::Value;

fn escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

fn f64_bits(f: f64) -> [u8; 8] {
    let f = if f == 0.0 { 0.0 } else { f }; // -0.0 == 0.0
    let bits = f.to_bits();
    let ordered = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    ordered.to_be_bytes()
}

fn number(out: &mut Vec<u8>, approx: f64, remainder: i128) {
    if approx.is_nan() {
        out.push(0);
        return;
    }
    out.push(1);
    out.extend_from_slice(&f64_bits(approx));
    // |remainder| ≤ 1024 for i64 (f64 spacing below 2^63 is at most 2048).
    let r = u16::try_from(remainder + 32_768).unwrap_or(u16::MAX);
    out.extend_from_slice(&r.to_be_bytes());
}

/// Appends the encoding of a possibly-missing value.
pub fn encode_opt(out: &mut Vec<u8>, v: Option<&Value>) {
    match v {
        None => out.push(0),
        Some(v) => encode(out, v),
    }
}

/// Appends the encoding of `v`.
pub fn encode(out: &mut Vec<u8>, v: &Value) {
    out.push(super::order::rank(Some(v)));
    match v {
        Value::Null => {}
        Value::Bool(b) => out.push(u8::from(*b)),
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        Value::Int(i) => {
            let approx = *i as f64;
            number(out, approx, i128::from(*i) - approx as i128);
        }
        Value::Float(f) => number(out, *f, 0),
        Value::String(s) => escaped(out, s.as_bytes()),
        Value::Bytes(b) => escaped(out, b),
        Value::Timestamp(t) => out.extend_from_slice(&((t.0 as u64) ^ (1 << 63)).to_be_bytes()),
        Value::Uuid(u) => out.extend_from_slice(u.as_bytes()),
        Value::Array(items) => {
            for item in items {
                encode(out, item);
            }
            out.push(0);
        }
        Value::Map(m) => {
            for (k, v) in m {
                escaped(out, k.as_bytes());
                encode(out, v);
            }
            out.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::order::cmp_opt;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            prop_oneof![
                Just(i64::MAX),
                Just(i64::MIN),
                Just(1 << 53),
                Just((1 << 53) + 1)
            ]
            .prop_map(Value::Int),
            any::<f64>().prop_map(Value::Float),
            prop_oneof![
                Just(9_223_372_036_854_775_808.0),
                Just(-0.0),
                Just(f64::NAN)
            ]
            .prop_map(Value::Float),
            "[a\\x00b]{0,4}".prop_map(Value::String),
            proptest::collection::vec(prop_oneof![Just(0u8), Just(255u8), any::<u8>()], 0..4)
                .prop_map(Value::Bytes),
            any::<i64>().prop_map(|t| Value::Timestamp(blazedb_core::Timestamp(t))),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                proptest::collection::btree_map("[ab]{1,2}", inner, 0..3).prop_map(Value::Map),
            ]
        })
    }

    proptest! {
        #[test]
        fn byte_order_of_encodings_equals_value_order(a in proptest::option::of(value()), b in proptest::option::of(value())) {
            let (mut ea, mut eb) = (Vec::new(), Vec::new());
            encode_opt(&mut ea, a.as_ref());
            encode_opt(&mut eb, b.as_ref());
            prop_assert_eq!(ea.cmp(&eb), cmp_opt(a.as_ref(), b.as_ref()), "{:?} vs {:?}", a, b);
        }
    }
}
