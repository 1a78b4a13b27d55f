//! The total order over values, used by sorting, range filters and range indexes.
//!
//! Order of kinds: missing < null < bool < number < string < bytes < timestamp < uuid <
//! array < map. Numbers compare by value across `Int` and `Float` (1 == 1.0); NaN sorts
//! below every other number and equals itself. Strings compare by UTF-8 bytes; arrays
//! and maps lexicographically (maps by their sorted entries).

use std::cmp::Ordering;

use blazedb_core::Value;

/// A kind's position in the order. Numbers share one rank so they compare by value.
#[must_use]
pub fn rank(v: Option<&Value>) -> u8 {
    match v {
        None => 0,
        Some(Value::Null) => 1,
        Some(Value::Bool(_)) => 2,
        Some(Value::Int(_) | Value::Float(_)) => 3,
        Some(Value::String(_)) => 4,
        Some(Value::Bytes(_)) => 5,
        Some(Value::Timestamp(_)) => 6,
        Some(Value::Uuid(_)) => 7,
        Some(Value::Array(_)) => 8,
        Some(Value::Map(_)) => 9,
    }
}

/// Compares an integer with a float exactly (no rounding through `f64`).
fn cmp_int_float(i: i64, f: f64) -> Ordering {
    if f.is_nan() {
        return Ordering::Greater;
    }
    // i64 spans [-2^63, 2^63); floats outside it compare by sign alone.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if f >= TWO_63 {
        return Ordering::Less;
    }
    if f < -TWO_63 {
        return Ordering::Greater;
    }
    let whole = f.trunc();
    // `whole` is within i64 range here, and integral, so the cast is exact.
    #[allow(clippy::cast_possible_truncation)]
    let wi = whole as i64;
    i.cmp(&wi)
        .then_with(|| 0.0f64.partial_cmp(&(f - whole)).unwrap_or(Ordering::Equal))
}

fn cmp_float(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        // -0.0 == 0.0, as in every numeric comparison users expect.
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// Compares two values in the total order.
#[must_use]
pub fn cmp_values(a: &Value, b: &Value) -> Ordering {
    let (ra, rb) = (rank(Some(a)), rank(Some(b)));
    if ra != rb {
        return ra.cmp(&rb);
    }
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Float(x), Value::Float(y)) => cmp_float(*x, *y),
        (Value::Int(x), Value::Float(y)) => cmp_int_float(*x, *y),
        (Value::Float(x), Value::Int(y)) => cmp_int_float(*y, *x).reverse(),
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Bytes(x), Value::Bytes(y)) => x.cmp(y),
        (Value::Timestamp(x), Value::Timestamp(y)) => x.cmp(y),
        (Value::Uuid(x), Value::Uuid(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => cmp_seq(x.iter(), y.iter(), cmp_values),
        (Value::Map(x), Value::Map(y)) => cmp_seq(x.iter(), y.iter(), |(ka, va), (kb, vb)| {
            ka.as_bytes()
                .cmp(kb.as_bytes())
                .then_with(|| cmp_values(va, vb))
        }),
        // Same rank means same kind (or both numbers, handled above); Null == Null.
        _ => Ordering::Equal,
    }
}

fn cmp_seq<T>(
    mut a: impl Iterator<Item = T>,
    mut b: impl Iterator<Item = T>,
    f: impl Fn(T, T) -> Ordering,
) -> Ordering {
    loop {
        match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => match f(x, y) {
                Ordering::Equal => {}
                other => return other,
            },
        }
    }
}

/// Compares possibly-missing values (missing sorts first).
#[must_use]
pub fn cmp_opt(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (Some(x), Some(y)) => cmp_values(x, y),
        _ => rank(a).cmp(&rank(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_order_and_numbers_compare_across_int_and_float() {
        let ordered = [
            Value::Null,
            Value::Bool(false),
            Value::Bool(true),
            Value::Float(f64::NAN),
            Value::Float(f64::NEG_INFINITY),
            Value::Int(i64::MIN),
            Value::Float(-1.5),
            Value::Int(-1),
            Value::Int(0),
            Value::Float(0.5),
            Value::Int(1),
            Value::Int(i64::MAX),
            Value::Float(1e19),
            Value::String("a".into()),
            Value::String("b".into()),
            Value::Bytes(vec![0]),
            Value::Timestamp(blazedb_core::Timestamp(0)),
            Value::Array(vec![]),
            Value::Array(vec![Value::Int(1)]),
            Value::Map(Default::default()),
        ];
        for (i, a) in ordered.iter().enumerate() {
            for (j, b) in ordered.iter().enumerate() {
                assert_eq!(cmp_values(a, b), i.cmp(&j), "{a:?} vs {b:?}");
            }
        }
        assert_eq!(
            cmp_values(&Value::Int(1), &Value::Float(1.0)),
            Ordering::Equal
        );
        assert_eq!(
            cmp_values(
                &Value::Int(i64::MAX),
                &Value::Float(9_223_372_036_854_775_808.0)
            ),
            Ordering::Less
        );
        assert_eq!(cmp_opt(None, Some(&Value::Null)), Ordering::Less);
    }
}
