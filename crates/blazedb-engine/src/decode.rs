//! Decoding stored fields straight into domain values: one map per document, built as
//! the record is read (no intermediate owned tree converted afterwards).
//!
//! The encoding is [`crate::codec::ValueRef`]'s: an enum whose variant index (postcard:
//! a varint) is the kind — 0 null, 1 bool, 2 int, 3 float, 4 string, 5 bytes,
//! 6 timestamp, 7 UUID, 8 array, 9 map — followed by its content. Records are
//! authenticated before they are decoded, so a kind out of range is damage.

use std::collections::BTreeMap;
use std::fmt;

use blazedb_core::{Fields, Timestamp, Value};
use serde::Deserialize;
use serde::de::{self, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use uuid::Uuid;

/// A document's fields, decoded into [`Fields`].
pub(crate) struct FieldsDe(pub Fields);

struct ValueDe(Value);

struct ArrayDe(Vec<Value>);

const KINDS: &[&str] = &[
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

impl<'de> Deserialize<'de> for ValueDe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_enum("Value", KINDS, ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = ValueDe;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a stored value")
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<ValueDe, A::Error> {
        let (kind, v): (u32, _) = data.variant()?;
        Ok(ValueDe(match kind {
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
            8 => Value::Array(v.newtype_variant::<ArrayDe>()?.0),
            9 => Value::Map(v.newtype_variant::<FieldsDe>()?.0),
            other => {
                return Err(de::Error::invalid_value(
                    de::Unexpected::Unsigned(u64::from(other)),
                    &"a value kind from 0 to 9",
                ));
            }
        }))
    }
}

impl<'de> Deserialize<'de> for ArrayDe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ArrayDe;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of stored values")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ArrayDe, A::Error> {
                // The length is untrusted only in the sense of a bug: cap the reservation.
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
                while let Some(ValueDe(v)) = seq.next_element()? {
                    out.push(v);
                }
                Ok(ArrayDe(out))
            }
        }
        d.deserialize_seq(V)
    }
}

impl<'de> Deserialize<'de> for FieldsDe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FieldsDe;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of field names to stored values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FieldsDe, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, ValueDe(v))) = map.next_entry::<String, ValueDe>()? {
                    out.insert(k, v);
                }
                Ok(FieldsDe(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use blazedb_core::{DocId, Document};

    use crate::codec::{DocRecord, FieldsRef, decode_doc, encode};

    use super::*;

    fn every_kind() -> Fields {
        let mut inner = Fields::new();
        inner.insert("deep".into(), Value::Array(vec![Value::Null, Value::Int(-1)]));
        [
            ("null", Value::Null),
            ("bool", Value::Bool(true)),
            ("int", Value::Int(i64::MIN)),
            ("float", Value::Float(-0.5)),
            ("string", Value::from("é ✓")),
            ("bytes", Value::Bytes(vec![0, 255, 7])),
            ("time", Value::Timestamp(Timestamp(-42))),
            ("uuid", Value::Uuid(Uuid::from_bytes([9; 16]))),
            ("array", Value::Array(vec![Value::from("a"), Value::Map(inner.clone())])),
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
