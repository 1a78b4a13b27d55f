//! Serde adapters for document fields and values, in the engine's record encoding, for
//! the layers above that put documents into their own records (the sync layer's write
//! records, on disk and on the wire). Domain types stay non-serde; a record opts in
//! with `#[serde(with = "blazedb_engine::internal::serde_fields")]`.
//!
//! Invariant: decoding is bounded. Nesting deeper than
//! [`blazedb_core::limits::VALUE_DEPTH_MAX`] is refused *while* decoding (the decoder
//! carries the depth), so hostile input cannot recurse without bound; names are checked
//! like the engine checks them. The encoding is the one `codec.rs` writes.

use blazedb_core::{Fields, Value};
use serde::de::DeserializeSeed;
use serde::{Deserializer, Serialize, Serializer};

use crate::codec::{FieldsRef, ValueRef};
use crate::decode::{MapSeed, ValueSeed};

/// Serializes a field map.
///
/// # Errors
/// The serializer's.
pub fn serialize<S: Serializer>(fields: &Fields, s: S) -> Result<S::Ok, S::Error> {
    FieldsRef(fields).serialize(s)
}

/// Deserializes a field map (top-level fields are depth 1).
///
/// # Errors
/// The deserializer's; a custom error for too-deep nesting or a bad field name.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Fields, D::Error> {
    MapSeed { depth: 1 }.deserialize(d)
}

/// The size of the stored record of a document with `fields`: what the engine holds to
/// [`blazedb_core::limits::DOCUMENT_BYTES_MAX`] (a document fits if and only if this is
/// at most the limit).
#[must_use]
pub fn document_bytes(fields: &Fields) -> usize {
    crate::codec::document_bytes(fields)
}

/// The bytes one top-level field (its name and value) adds to a document's record.
#[must_use]
pub fn field_bytes(name: &str, value: &Value) -> usize {
    crate::codec::field_bytes(name, value)
}

/// [`document_bytes`] of a document with `count` fields whose [`field_bytes`] sum to
/// `fields_bytes` (the record's envelope is the id and the field count), so a caller
/// choosing among fields can add them up one by one.
#[must_use]
pub fn document_bytes_of(count: usize, fields_bytes: usize) -> usize {
    crate::codec::document_bytes_of(count, fields_bytes)
}

/// A single value.
pub mod value {
    use super::{Deserializer, Serialize, Serializer, Value, ValueRef, ValueSeed};
    use serde::de::DeserializeSeed;

    /// Serializes a value.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(v: &Value, s: S) -> Result<S::Ok, S::Error> {
        ValueRef(v).serialize(s)
    }

    /// Deserializes a value.
    ///
    /// # Errors
    /// The deserializer's; a custom error beyond the depth limit.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        ValueSeed { depth: 1 }.deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blazedb_core::Timestamp;
    use blazedb_core::limits::VALUE_DEPTH_MAX;
    use serde::{Deserialize, Serialize};
    use uuid::Uuid;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Rec {
        #[serde(with = "super")]
        fields: Fields,
    }

    fn nested(depth: usize) -> Value {
        let mut v = Value::Int(1);
        for _ in 1..depth {
            v = Value::Array(vec![v]);
        }
        v
    }

    #[test]
    fn every_value_kind_round_trips_through_postcard() {
        let mut inner = Fields::new();
        inner.insert("k".into(), Value::Bytes(vec![0, 255]));
        let mut fields = Fields::new();
        for (i, v) in [
            Value::Null,
            Value::Bool(true),
            Value::Int(-7),
            Value::Float(1.5),
            Value::String("s".into()),
            Value::Bytes(vec![1, 2]),
            Value::Timestamp(Timestamp(-3)),
            Value::Uuid(Uuid::from_bytes([9; 16])),
            Value::Array(vec![Value::Int(1), Value::Null]),
            Value::Map(inner),
        ]
        .into_iter()
        .enumerate()
        {
            fields.insert(format!("f{i}"), v);
        }
        let rec = Rec { fields };
        let bytes = postcard::to_allocvec(&rec).expect("encode");
        assert_eq!(postcard::from_bytes::<Rec>(&bytes).expect("decode"), rec);
    }

    #[test]
    fn nesting_beyond_the_limit_is_refused_while_decoding() {
        let ok = Rec {
            fields: Fields::from([("a".to_owned(), nested(VALUE_DEPTH_MAX))]),
        };
        let bytes = postcard::to_allocvec(&ok).expect("encode");
        assert!(postcard::from_bytes::<Rec>(&bytes).is_ok());
        let deep = Rec {
            fields: Fields::from([("a".to_owned(), nested(VALUE_DEPTH_MAX + 1))]),
        };
        let bytes = postcard::to_allocvec(&deep).expect("encode");
        assert!(postcard::from_bytes::<Rec>(&bytes).is_err());
        // A hostile prefix claiming a million nested arrays stops at the limit, no stack
        // overflow: tag 8 (array), length 1, repeated.
        let mut hostile = vec![1u8, 1, b'a'];
        for _ in 0..1_000_000 {
            hostile.extend_from_slice(&[8, 1]);
        }
        assert!(postcard::from_bytes::<Rec>(&hostile).is_err());
    }

    #[test]
    fn a_bad_field_name_is_refused() {
        let rec = Rec {
            fields: Fields::from([("a.b".to_owned(), Value::Null)]),
        };
        let bytes = postcard::to_allocvec(&rec).expect("encode");
        assert!(postcard::from_bytes::<Rec>(&bytes).is_err());
    }
}
