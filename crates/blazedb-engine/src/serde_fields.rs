//! Serde adapters for document fields and values, in the engine's record encoding, for
//! the layers above that put documents into their own records (the sync layer's write
//! records, on disk and on the wire). Domain types stay non-serde; a record opts in
//! with `#[serde(with = "blazedb_engine::internal::serde_fields")]`.
//!
//! Invariant: decoding is bounded. Nesting deeper than
//! [`blazedb_core::limits::VALUE_DEPTH_MAX`] is refused *while* decoding (the decoder
//! carries the depth), so hostile input cannot recurse without bound; names are checked
//! like the engine checks them. The encoding is the one `codec.rs` writes.

use std::fmt;

use blazedb_core::limits::VALUE_DEPTH_MAX;
use blazedb_core::{Fields, Timestamp, Value};
use serde::de::{self, DeserializeSeed, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use serde::{Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::codec::{FieldsRef, ValueRef};

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

const VARIANTS: &[&str] = &[
    "Null",
    "Bool",
    "Int",
    "Float",
    "String",
    "Bytes",
    "Timestamp",
    "Uuid",
    "Array",
    "Map",
];

fn too_deep<E: de::Error>() -> E {
    E::custom(format!("values nest deeper than {VALUE_DEPTH_MAX} levels"))
}

/// Decodes one value at nesting `depth`.
struct ValueSeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.depth > VALUE_DEPTH_MAX {
            return Err(too_deep());
        }
        d.deserialize_enum("Value", VARIANTS, self)
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a document value")
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let (index, v): (u32, _) = data.variant()?;
        let next = self.depth + 1;
        Ok(match index {
            0 => {
                v.unit_variant()?;
                Value::Null
            }
            1 => Value::Bool(v.newtype_variant()?),
            2 => Value::Int(v.newtype_variant()?),
            3 => Value::Float(v.newtype_variant()?),
            4 => Value::String(v.newtype_variant()?),
            5 => Value::Bytes(v.newtype_variant::<serde_bytes::ByteBuf>()?.into_vec()),
            6 => Value::Timestamp(Timestamp(v.newtype_variant()?)),
            7 => Value::Uuid(Uuid::from_bytes(v.newtype_variant()?)),
            8 => Value::Array(v.newtype_variant_seed(SeqSeed { depth: next })?),
            9 => Value::Map(v.newtype_variant_seed(MapSeed { depth: next })?),
            other => {
                return Err(de::Error::invalid_value(
                    de::Unexpected::Unsigned(u64::from(other)),
                    &"a value kind 0..=9",
                ));
            }
        })
    }
}

/// Decodes the items of an array whose items sit at `depth`.
struct SeqSeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for SeqSeed {
    type Value = Vec<Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Value>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for SeqSeed {
    type Value = Vec<Value>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of values")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Value>, A::Error> {
        // No capacity from the length prefix: it is untrusted.
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(ValueSeed { depth: self.depth })? {
            out.push(v);
        }
        Ok(out)
    }
}

/// Decodes a field map whose values sit at `depth`.
struct MapSeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for MapSeed {
    type Value = Fields;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Fields, D::Error> {
        if self.depth > VALUE_DEPTH_MAX {
            return Err(too_deep());
        }
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MapSeed {
    type Value = Fields;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of field names to values")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut out = Fields::new();
        while let Some(name) = map.next_key::<String>()? {
            blazedb_core::name::check_field_name(&name).map_err(de::Error::custom)?;
            let v = map.next_value_seed(ValueSeed { depth: self.depth })?;
            out.insert(name, v);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

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
