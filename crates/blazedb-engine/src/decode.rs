//! Decoding stored fields and values straight into domain values, bounded: one map per
//! document, built as the record is read, with nesting deeper than
//! [`VALUE_DEPTH_MAX`] refused *while* decoding (the decoder carries the depth) and
//! field names checked as the engine checks them.
//!
//! The encoding is [`crate::codec::ValueRef`]'s: an enum whose variant index (postcard:
//! a varint) is the kind — 0 null, 1 bool, 2 int, 3 float, 4 string, 5 bytes,
//! 6 timestamp, 7 UUID, 8 array, 9 map — followed by its content. Used for the engine's
//! own records (documents, change entries) and, through `serde_fields`, for the records
//! of the layers above.

use std::fmt;

use blazedb_core::limits::VALUE_DEPTH_MAX;
use blazedb_core::{Fields, Timestamp, Value};
use serde::de::{self, DeserializeSeed, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use serde::{Deserialize, Deserializer};
use uuid::Uuid;

/// A record's top-level fields, decoded into [`Fields`] (top-level fields are depth 1).
pub(crate) struct FieldsDe(pub Fields);

impl<'de> Deserialize<'de> for FieldsDe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        MapSeed { depth: 1 }.deserialize(d).map(FieldsDe)
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
pub(crate) struct ValueSeed {
    pub(crate) depth: usize,
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
pub(crate) struct MapSeed {
    pub(crate) depth: usize,
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
    use blazedb_core::{DocId, Document};

    use crate::codec::{DocRecord, FieldsRef, decode_doc, encode};

    use super::*;

    fn every_kind() -> Fields {
        let mut inner = Fields::new();
        inner.insert(
            "deep".into(),
            Value::Array(vec![Value::Null, Value::Int(-1)]),
        );
        [
            ("null", Value::Null),
            ("bool", Value::Bool(true)),
            ("int", Value::Int(i64::MIN)),
            ("float", Value::Float(-0.5)),
            ("string", Value::from("é ✓")),
            ("bytes", Value::Bytes(vec![0, 255, 7])),
            ("time", Value::Timestamp(Timestamp(-42))),
            ("uuid", Value::Uuid(Uuid::from_bytes([9; 16]))),
            (
                "array",
                Value::Array(vec![Value::from("a"), Value::Map(inner.clone())]),
            ),
            ("map", Value::Map(inner)),
            ("empty", Value::Array(Vec::new())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    #[test]
    fn every_value_kind_decodes_to_what_was_encoded() {
        let doc = Document {
            id: DocId::new(),
            fields: every_kind(),
        };
        let bytes = encode(
            "document",
            &DocRecord {
                id: *doc.id.as_bytes(),
                fields: FieldsRef(&doc.fields),
            },
        )
        .expect("encode");
        assert_eq!(decode_doc(&bytes).expect("decode"), doc);
    }

    #[test]
    fn a_value_kind_out_of_range_is_an_error_not_a_value() {
        let doc = Document {
            id: DocId::new(),
            fields: [("k".to_owned(), Value::Null)].into_iter().collect(),
        };
        let mut bytes = encode(
            "document",
            &DocRecord {
                id: *doc.id.as_bytes(),
                fields: FieldsRef(&doc.fields),
            },
        )
        .expect("encode");
        // id (16) ‖ field count (1) ‖ name length (1) ‖ "k" ‖ kind: the last byte.
        let last = bytes.len() - 1;
        assert_eq!(bytes[last], 0, "the null's kind");
        bytes[last] = 10;
        assert!(decode_doc(&bytes).is_err());
    }
}
