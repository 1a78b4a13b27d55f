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
use blazedb_core::{DocId, Document, Fields, Timestamp, Value};
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
        d.deserialize_map(ProjectSeed {
            depth: self.depth,
            only: None,
        })
    }
}

/// Decodes a field map at `depth`, keeping only the fields named in `only` (all when
/// `None`); the values of the others are walked (bounded as any value) but not built.
struct ProjectSeed<'w> {
    depth: usize,
    only: Option<&'w [&'w str]>,
}

impl<'de> Visitor<'de> for ProjectSeed<'_> {
    type Value = Fields;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of field names to values")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut out = Fields::new();
        while let Some(name) = map.next_key_seed(NameSeed { only: self.only })? {
            let Some(name) = name else {
                map.next_value_seed(SkipSeed { depth: self.depth })?;
                continue;
            };
            blazedb_core::name::check_field_name(&name).map_err(de::Error::custom)?;
            let v = map.next_value_seed(ValueSeed { depth: self.depth })?;
            out.insert(name, v);
        }
        Ok(out)
    }
}

/// A field name: `Some` (owned) when it is to be kept, `None` when `only` leaves it out
/// (then nothing is allocated for it).
struct NameSeed<'w> {
    only: Option<&'w [&'w str]>,
}

impl<'de> DeserializeSeed<'de> for NameSeed<'_> {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for NameSeed<'_> {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, name: &str) -> Result<Option<String>, E> {
        Ok(match self.only {
            Some(only) if !only.contains(&name) => None,
            _ => Some(name.to_owned()),
        })
    }
    fn visit_string<E: de::Error>(self, name: String) -> Result<Option<String>, E> {
        Ok(match self.only {
            Some(only) if !only.contains(&name.as_str()) => None,
            _ => Some(name),
        })
    }
}

/// Walks one value at `depth` without building it: the same checks of kinds and nesting
/// as [`ValueSeed`], no allocation. Strings are walked as bytes (postcard encodes both
/// alike), so a skipped string is not checked for UTF-8: it is never handed out.
struct SkipSeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for SkipSeed {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.depth > VALUE_DEPTH_MAX {
            return Err(too_deep());
        }
        d.deserialize_enum("Value", VARIANTS, self)
    }
}

impl<'de> Visitor<'de> for SkipSeed {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a document value")
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        let (index, v): (u32, _) = data.variant()?;
        let next = self.depth + 1;
        match index {
            0 => v.unit_variant(),
            1 => v.newtype_variant::<bool>().map(drop),
            2 | 6 => v.newtype_variant::<i64>().map(drop),
            3 => v.newtype_variant::<f64>().map(drop),
            4 | 5 => v.newtype_variant_seed(SkipBytes),
            7 => v.newtype_variant::<[u8; 16]>().map(drop),
            8 => v.newtype_variant_seed(SkipItems {
                depth: next,
                map: false,
            }),
            9 => v.newtype_variant_seed(SkipItems {
                depth: next,
                map: true,
            }),
            other => Err(de::Error::invalid_value(
                de::Unexpected::Unsigned(u64::from(other)),
                &"a value kind 0..=9",
            )),
        }
    }
}

/// Walks a length-prefixed byte string (a string, bytes, or a map key).
struct SkipBytes;

impl<'de> DeserializeSeed<'de> for SkipBytes {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_bytes(self)
    }
}

impl<'de> Visitor<'de> for SkipBytes {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<(), E> {
        Ok(())
    }
}

/// Walks the items of an array, or the entries of a map, whose values sit at `depth`.
struct SkipItems {
    depth: usize,
    map: bool,
}

impl<'de> DeserializeSeed<'de> for SkipItems {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.depth > VALUE_DEPTH_MAX {
            return Err(too_deep());
        }
        if self.map {
            d.deserialize_map(self)
        } else {
            d.deserialize_seq(self)
        }
    }
}

impl<'de> Visitor<'de> for SkipItems {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array or a map of values")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(SkipSeed { depth: self.depth })?
            .is_some()
        {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(SkipBytes)?.is_some() {
            map.next_value_seed(SkipSeed { depth: self.depth })?;
        }
        Ok(())
    }
}

/// Decodes a document record (`DocRecord`: id, then the field map), keeping only the
/// top-level fields named in `only` (every field when `None`).
pub(crate) struct DocSeed<'w> {
    pub(crate) only: Option<&'w [&'w str]>,
}

impl<'de> DeserializeSeed<'de> for DocSeed<'_> {
    type Value = Document;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Document, D::Error> {
        d.deserialize_struct("DocRecord", &["id", "fields"], self)
    }
}

impl<'de> Visitor<'de> for DocSeed<'_> {
    type Value = Document;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a document record")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Document, A::Error> {
        let id: [u8; 16] = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let fields = seq
            .next_element_seed(FieldsSeed { only: self.only })?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        Ok(Document {
            id: DocId::from_bytes(id),
            fields,
        })
    }
}

/// A record's top-level field map (depth 1), projected to `only`.
struct FieldsSeed<'w> {
    only: Option<&'w [&'w str]>,
}

impl<'de> DeserializeSeed<'de> for FieldsSeed<'_> {
    type Value = Fields;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Fields, D::Error> {
        d.deserialize_map(ProjectSeed {
            depth: 1,
            only: self.only,
        })
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

    fn encoded(doc: &Document) -> Vec<u8> {
        encode(
            "document",
            &DocRecord {
                id: *doc.id.as_bytes(),
                fields: FieldsRef(&doc.fields),
            },
        )
        .expect("encode")
    }

    #[test]
    fn a_projected_decode_is_the_full_decode_restricted_to_the_named_fields() {
        let doc = Document {
            id: DocId::new(),
            fields: every_kind(),
        };
        let bytes = encoded(&doc);
        for only in [
            &[][..],
            &["int"][..],
            &["array", "string"][..],
            &["map", "absent", "bytes", "uuid", "time"][..],
        ] {
            let got = crate::codec::decode_doc_only(&bytes, Some(only)).expect("decode");
            let mut want = doc.clone();
            want.fields.retain(|k, _| only.contains(&k.as_str()));
            assert_eq!(got, want, "{only:?}");
        }
        assert_eq!(
            crate::codec::decode_doc_only(&bytes, None).expect("decode"),
            doc
        );
    }

    #[test]
    fn skipped_fields_are_still_checked_for_kinds_and_nesting() {
        // Around the nesting limit, skipping a field accepts exactly what decoding it does.
        let mut outcomes = Vec::new();
        for levels in VALUE_DEPTH_MAX - 3..VALUE_DEPTH_MAX + 1 {
            let mut deep = Value::Null;
            for _ in 0..levels {
                deep = Value::Array(vec![Value::Map(Fields::new()), deep]);
            }
            let doc = Document {
                id: DocId::new(),
                fields: [("deep".to_owned(), deep), ("k".to_owned(), Value::Int(1))]
                    .into_iter()
                    .collect(),
            };
            let bytes = encoded(&doc);
            let full = decode_doc(&bytes).is_ok();
            let skipped = crate::codec::decode_doc_only(&bytes, Some(&["k"])).is_ok();
            assert_eq!(full, skipped, "{levels} levels");
            outcomes.push(full);
        }
        assert_eq!(
            outcomes,
            [true, true, false, false],
            "the limit lies in the range"
        );

        let doc = Document {
            id: DocId::new(),
            fields: [("k".to_owned(), Value::Null)].into_iter().collect(),
        };
        let mut bytes = encoded(&doc);
        let last = bytes.len() - 1;
        bytes[last] = 10;
        assert!(crate::codec::decode_doc_only(&bytes, Some(&[])).is_err());
        bytes.truncate(last);
        assert!(
            crate::codec::decode_doc_only(&bytes, Some(&[])).is_err(),
            "a record cut short is an error even when no field is kept"
        );
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
