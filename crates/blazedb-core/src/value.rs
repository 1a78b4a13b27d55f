//! The document value model (docs/format.md, "postcard encoding"): null, bool, 64-bit int, float, string, bytes,
//! timestamp, UUID, array and nested map.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::error::Error;
use crate::limits::VALUE_DEPTH_MAX;
use crate::name::check_field_name;

/// A point in time: microseconds since the Unix epoch (UTC), negative before 1970.
/// Microseconds cover ±292,000 years, which no calendar in use needs more than.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current wall-clock time. A clock set before 1970 yields negative values.
    #[must_use]
    pub fn now() -> Self {
        let now = std::time::SystemTime::now();
        match now.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Self(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            Err(e) => Self(-i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX)),
        }
    }

    /// Microseconds since the Unix epoch.
    #[must_use]
    pub fn as_micros(self) -> i64 {
        self.0
    }
}

/// One value inside a document.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Bytes(Vec<u8>),
    Timestamp(Timestamp),
    Uuid(Uuid),
    Array(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

impl Value {
    /// The name of this value's type, as used in error messages and the CLI.
    #[must_use]
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::Timestamp(_) => "timestamp",
            Value::Uuid(_) => "uuid",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
        }
    }

    /// Checks what the engine requires of a stored value: nesting at most
    /// [`VALUE_DEPTH_MAX`] deep (`depth` is this value's own depth, 1 for a top-level
    /// field) and valid field names in every nested map.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] or [`Error::InvalidName`] naming the problem.
    pub fn validate(&self, depth: usize) -> Result<(), Error> {
        if depth > VALUE_DEPTH_MAX {
            return Err(Error::InvalidValue {
                reason: format!("values nest deeper than {VALUE_DEPTH_MAX} levels"),
            });
        }
        match self {
            Value::Array(items) => items.iter().try_for_each(|v| v.validate(depth + 1)),
            Value::Map(map) => map.iter().try_for_each(|(k, v)| {
                check_field_name(k)?;
                v.validate(depth + 1)
            }),
            _ => Ok(()),
        }
    }

    /// Returns the string inside a `Value::String`.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Returns the integer inside a `Value::Int`.
    #[must_use]
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}

macro_rules! from_impl {
    ($($t:ty => $variant:ident $(via $conv:path)?),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::$variant($($conv)?(v))
            }
        }
    )*};
}

from_impl! {
    bool => Bool,
    i64 => Int,
    i32 => Int via i64::from,
    u32 => Int via i64::from,
    f64 => Float,
    String => String,
    Vec<u8> => Bytes,
    Timestamp => Timestamp,
    Uuid => Uuid,
    Vec<Value> => Array,
    BTreeMap<String, Value> => Map,
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::String(v.to_owned())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_rejects_excessive_depth_and_bad_nested_names() {
        let mut v = Value::Int(1);
        for _ in 0..VALUE_DEPTH_MAX {
            v = Value::Array(vec![v]);
        }
        assert!(matches!(v.validate(1), Err(Error::InvalidValue { .. })));
        let mut m = BTreeMap::new();
        m.insert("a.b".to_owned(), Value::Null);
        assert!(matches!(
            Value::Map(m).validate(1),
            Err(Error::InvalidName { .. })
        ));
    }
}
