//! The disk format of records, before sealing (see `docs/format.md`).
//!
//! Domain types ([`Value`], [`Document`]) are not serde types. This module maps them to
//! postcard explicitly: encoding borrows (no copy of the document), decoding builds
//! owned domain values. Variant indexes are part of the format: append, never reorder.

use blazedb_core::{Error, Fields, Value};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};

/// Format version of databases this build creates: 4, document keys ordered by the
/// id's time (`KeyLayout::Ordered`), records compressed where it pays
/// (`Vault::seal_record`), and per-document auxiliary records ordered like their
/// documents (`Vault::aux_key_in`). Versions 1 (hashed document keys), 2 (no
/// compressed records) and 3 (hashed auxiliary keys) are read and written as they are,
/// and moved to version 4 by `Database::compact`.
pub(crate) const RECORD_VERSION: u32 = 4;
/// The format version with hashed document keys (`KeyLayout::Hashed`).
pub(crate) const RECORD_VERSION_HASHED_KEYS: u32 = 1;
/// The first format version whose per-document auxiliary records are ordered.
pub(crate) const RECORD_VERSION_ORDERED_AUX: u32 = 4;

/// Borrowing serializer for a [`Value`].
pub(crate) struct ValueRef<'a>(pub &'a Value);

impl Serialize for ValueRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        const N: &str = "Value";
        match self.0 {
            Value::Null => s.serialize_unit_variant(N, 0, "Null"),
            Value::Bool(b) => s.serialize_newtype_variant(N, 1, "Bool", b),
            Value::Int(i) => s.serialize_newtype_variant(N, 2, "Int", i),
            Value::Float(f) => s.serialize_newtype_variant(N, 3, "Float", f),
            Value::String(x) => s.serialize_newtype_variant(N, 4, "String", x),
            Value::Bytes(b) => {
                s.serialize_newtype_variant(N, 5, "Bytes", serde_bytes::Bytes::new(b))
            }
            Value::Timestamp(t) => s.serialize_newtype_variant(N, 6, "Timestamp", &t.0),
            Value::Uuid(u) => s.serialize_newtype_variant(N, 7, "Uuid", u.as_bytes()),
            Value::Array(a) => s.serialize_newtype_variant(N, 8, "Array", &SeqRef(a)),
            Value::Map(m) => s.serialize_newtype_variant(N, 9, "Map", &FieldsRef(m)),
        }
    }
}

struct SeqRef<'a>(&'a [Value]);

impl Serialize for SeqRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for v in self.0 {
            seq.serialize_element(&ValueRef(v))?;
        }
        seq.end()
    }
}

/// Borrowing serializer for a field map.
pub(crate) struct FieldsRef<'a>(pub &'a Fields);

impl Serialize for FieldsRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, &ValueRef(v))?;
        }
        map.end()
    }
}

/// A document as stored: its id and fields. `F` is [`FieldsRef`] when encoding and
/// [`FieldsDe`] when decoding.
#[derive(Serialize, Deserialize)]
pub(crate) struct DocRecord<F> {
    pub id: [u8; 16],
    pub fields: F,
}

/// What one captured write did.
#[derive(Serialize, Deserialize)]
pub(crate) enum OpRecord<F> {
    /// A document came into existence (insert, or put of an absent id) with these fields.
    Insert(F),
    /// Fields of an existing document were set and/or removed (patch, or put replacing).
    Update { set: F, unset: Vec<String> },
    /// The document was deleted.
    Delete,
    /// An existing document was replaced whole by `put` with these fields.
    Replace(F),
}

/// A change-log entry as stored.
#[derive(Serialize, Deserialize)]
pub(crate) struct ChangeRecord<S, F> {
    /// Sequence number of the first change of the same transaction.
    pub txn: u64,
    pub collection: S,
    pub id: [u8; 16],
    pub op: OpRecord<F>,
    /// Wall-clock time of the write, microseconds since the Unix epoch (the sync layer
    /// stamps the write with it, however late it reads the entry).
    pub at: i64,
}

/// A collection's catalog entry.
#[derive(Serialize, Deserialize)]
pub(crate) struct CatalogRecord {
    pub name: String,
}

/// The database's identity record, stored under `meta/format`. Decrypting it proves the
/// key file belongs to this data file.
#[derive(Serialize, Deserialize)]
pub(crate) struct FormatRecord {
    pub version: u32,
    pub db_id: [u8; 16],
}

/// Whether local writes are captured in the change log (`meta/capture`). Written `false`
/// when a database is created and `true` when sync is first enabled; absent in databases
/// made before the record existed, which capture (they always did).
#[derive(Serialize, Deserialize)]
pub(crate) struct CaptureRecord {
    pub on: bool,
}

/// A write transaction's counters (in memory; derived from the change log at begin).
#[derive(Default, Clone, Copy)]
pub(crate) struct CountersRecord {
    /// The next change-log sequence number to assign.
    pub next_seq: u64,
}

/// Encodes a record, enforcing the document size limit.
pub(crate) fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, Error> {
    // A document is held to the limit exactly; other records (change entries carry a
    // document plus a collection name and id) get room for their envelope.
    let max = blazedb_core::limits::DOCUMENT_BYTES_MAX + if what == "document" { 0 } else { 4096 };
    encode_within(what, value, max)
}

/// Encodes a record of at most `max` bytes.
pub(crate) fn encode_within<T: Serialize>(
    what: &'static str,
    value: &T,
    max: usize,
) -> Result<Vec<u8>, Error> {
    let bytes = postcard::to_allocvec(value).map_err(|e| Error::InvalidValue {
        reason: format!("cannot encode {what}: {e}"),
    })?;
    if bytes.len() > max {
        return Err(Error::TooLarge {
            what,
            size: bytes.len(),
            max,
        });
    }
    Ok(bytes)
}

/// The size of the record of a document with `fields`: what [`encode`] holds to
/// [`blazedb_core::limits::DOCUMENT_BYTES_MAX`].
pub(crate) fn document_bytes(fields: &Fields) -> usize {
    postcard::experimental::serialized_size(&DocRecord {
        id: [0u8; 16],
        fields: FieldsRef(fields),
    })
    .unwrap_or(usize::MAX)
}

/// The bytes one top-level field (name and value) adds to a document record.
pub(crate) fn field_bytes(name: &str, value: &Value) -> usize {
    postcard::experimental::serialized_size(&(name, ValueRef(value))).unwrap_or(usize::MAX)
}

/// The size of a document record with `count` fields whose [`field_bytes`] sum to
/// `fields_bytes`: the id (16 bytes), the field count (a varint), the fields.
pub(crate) fn document_bytes_of(count: usize, fields_bytes: usize) -> usize {
    let mut varint = 1;
    let mut n = count >> 7;
    while n > 0 {
        varint += 1;
        n >>= 7;
    }
    16usize.saturating_add(varint).saturating_add(fields_bytes)
}

/// Decodes a record read (and authenticated) from `table`.
pub(crate) fn decode<'a, T: Deserialize<'a>>(
    table: &'static str,
    bytes: &'a [u8],
) -> Result<T, Error> {
    postcard::from_bytes(bytes)
        .map_err(|e| Error::corrupt_record(table, format!("undecodable record: {e}")))
}

/// Decodes a document record into a [`blazedb_core::Document`].
pub(crate) fn decode_doc(bytes: &[u8]) -> Result<blazedb_core::Document, Error> {
    decode_doc_only(bytes, None)
}

/// Decodes a document record keeping only the top-level fields named in `only` (all
/// when `None`): the others are walked and checked but not built, so a filter or an
/// index build pays for the fields it reads. The result is the document as far as
/// those fields go.
pub(crate) fn decode_doc_only(
    bytes: &[u8],
    only: Option<&[&str]>,
) -> Result<blazedb_core::Document, Error> {
    let mut de = postcard::Deserializer::from_bytes(bytes);
    serde::de::DeserializeSeed::deserialize(crate::decode::DocSeed { only }, &mut de)
        .map_err(|e| Error::corrupt_record("docs", format!("undecodable record: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(fields: &[(&str, Value)]) -> Fields {
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn document_sizes_are_the_encoded_record_sizes_field_by_field_too() {
        let samples = vec![
            doc(&[]),
            doc(&[("a", Value::Int(-3))]),
            doc(&[
                ("name", Value::from("x".repeat(300))),
                ("blob", Value::Bytes(vec![7; 20_000])),
                (
                    "nested",
                    Value::Array(vec![Value::Null, Value::Float(1.5), Value::Bool(true)]),
                ),
            ]),
            (0..200)
                .map(|i| (format!("f{i}"), Value::Int(i)))
                .collect::<Fields>(),
        ];
        for fields in samples {
            let encoded = encode(
                "document",
                &DocRecord {
                    id: [9; 16],
                    fields: FieldsRef(&fields),
                },
            )
            .expect("encode");
            assert_eq!(document_bytes(&fields), encoded.len());
            let sum: usize = fields.iter().map(|(k, v)| field_bytes(k, v)).sum();
            assert_eq!(document_bytes_of(fields.len(), sum), encoded.len());
        }
    }
}
