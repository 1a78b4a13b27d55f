//! The typed layer: any `serde` type ↔ document fields.
//!
//! A value must serialize to a map (a struct, or a map with string keys). Mapping:
//! integers → `Int` (an unsigned value above `i64::MAX` is an error), floats → `Float`,
//! strings and chars → `String`, byte buffers → `Bytes`, sequences → `Array`, maps and
//! structs → `Map`, `None` and unit → `Null`, unit enum variants → `String`, other enum
//! variants → a one-entry `Map`. Types that serialize as strings in human-readable formats
//! (UUIDs, dates) are stored as strings.
//!
//! Above `collection` and the handle. [`TypedCollection`] is defined with the
//! [`Database`] it borrows, in `handle`, so the handle's constructor [`Database::typed`]
//! names nothing above the handle.

use std::any::type_name;
use std::collections::BTreeMap;
use std::marker::PhantomData;

use blazedb_core::{DocId, Document, Error, Fields, Result, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_value::Value as SV;

use crate::handle::{Database, TypedCollection};

fn mapping<T>(reason: impl Into<String>) -> Error {
    Error::Mapping {
        type_name: type_name::<T>(),
        reason: reason.into(),
    }
}

fn to_value<T>(v: SV) -> Result<Value> {
    Ok(match v {
        SV::Bool(b) => Value::Bool(b),
        SV::U8(n) => Value::Int(n.into()),
        SV::U16(n) => Value::Int(n.into()),
        SV::U32(n) => Value::Int(n.into()),
        SV::U64(n) => Value::Int(
            i64::try_from(n)
                .map_err(|_| mapping::<T>(format!("{n} exceeds the 64-bit signed range")))?,
        ),
        SV::I8(n) => Value::Int(n.into()),
        SV::I16(n) => Value::Int(n.into()),
        SV::I32(n) => Value::Int(n.into()),
        SV::I64(n) => Value::Int(n),
        SV::F32(f) => Value::Float(f.into()),
        SV::F64(f) => Value::Float(f),
        SV::Char(c) => Value::String(c.to_string()),
        SV::String(s) => Value::String(s),
        SV::Unit | SV::Option(None) => Value::Null,
        SV::Option(Some(b)) | SV::Newtype(b) => to_value::<T>(*b)?,
        SV::Seq(items) => Value::Array(
            items
                .into_iter()
                .map(to_value::<T>)
                .collect::<Result<_>>()?,
        ),
        SV::Map(m) => Value::Map(to_fields::<T>(m)?),
        SV::Bytes(b) => Value::Bytes(b),
    })
}

fn to_fields<T>(m: BTreeMap<SV, SV>) -> Result<Fields> {
    m.into_iter()
        .map(|(k, v)| match k {
            SV::String(k) => Ok((k, to_value::<T>(v)?)),
            other => Err(mapping::<T>(format!("map key {other:?} is not a string"))),
        })
        .collect()
}

fn from_value(v: Value) -> SV {
    match v {
        Value::Null => SV::Unit,
        Value::Bool(b) => SV::Bool(b),
        Value::Int(i) => SV::I64(i),
        Value::Float(f) => SV::F64(f),
        Value::String(s) => SV::String(s),
        Value::Bytes(b) => SV::Bytes(b),
        Value::Timestamp(t) => SV::I64(t.0),
        Value::Uuid(u) => SV::String(u.hyphenated().to_string()),
        Value::Array(a) => SV::Seq(a.into_iter().map(from_value).collect()),
        Value::Map(m) => SV::Map(
            m.into_iter()
                .map(|(k, v)| (SV::String(k), from_value(v)))
                .collect(),
        ),
    }
}

/// Maps a serde value to document fields.
///
/// # Errors
/// [`Error::Mapping`] if `value` does not serialize to a map with string keys, or holds
/// an unsigned integer above `i64::MAX`.
pub fn to_document_fields<T: Serialize>(value: &T) -> Result<Fields> {
    match serde_value::to_value(value).map_err(|e| mapping::<T>(e.to_string()))? {
        SV::Map(m) => to_fields::<T>(m),
        other => Err(mapping::<T>(format!(
            "serializes to {other:?}, not to a map of fields"
        ))),
    }
}

/// Maps document fields to a serde value.
///
/// # Errors
/// [`Error::Mapping`] when the fields do not fit `T`.
pub fn from_document_fields<T: DeserializeOwned>(fields: Fields) -> Result<T> {
    from_value(Value::Map(fields))
        .deserialize_into()
        .map_err(|e| mapping::<T>(e.to_string()))
}

impl Database {
    /// A typed handle on collection `name`:
    ///
    /// ```
    /// # fn main() -> blazedb_core::Result<()> {
    /// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    /// struct Bug { title: String, severity: u8 }
    /// # let dir = tempfile::tempdir().expect("tempdir");
    /// # let db = blazedb_engine::Database::builder()
    /// #     .kdf(blazedb_crypto::KdfParams::INSECURE_FAST).open(dir.path(), "t", "pw")?;
    /// let bugs = db.typed::<Bug>("bugs");
    /// let id = bugs.insert(&Bug { title: "crash".into(), severity: 2 })?;
    /// assert_eq!(bugs.get(id)?, Some(Bug { title: "crash".into(), severity: 2 }));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn typed<T>(&self, name: &str) -> TypedCollection<'_, T> {
        TypedCollection {
            inner: self.collection(name),
            _type: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> TypedCollection<'_, T> {
    /// Inserts `value` as a new document with a fresh id.
    ///
    /// # Errors
    /// [`Error::Mapping`]; as [`Collection::insert`](crate::Collection::insert).
    pub fn insert(&self, value: &T) -> Result<DocId> {
        let fields = to_document_fields(value)?;
        self.inner.insert(Document {
            id: DocId::new(),
            fields,
        })
    }

    /// Creates or replaces document `id` with `value`.
    ///
    /// # Errors
    /// [`Error::Mapping`]; as [`Collection::put`](crate::Collection::put).
    pub fn put(&self, id: DocId, value: &T) -> Result<bool> {
        self.inner.put(Document {
            id,
            fields: to_document_fields(value)?,
        })
    }

    /// Reads document `id` as a `T`.
    ///
    /// # Errors
    /// [`Error::Mapping`] if the stored fields do not fit `T`; as [`Collection::get`](crate::Collection::get).
    pub fn get(&self, id: DocId) -> Result<Option<T>> {
        self.inner
            .get(id)?
            .map(|d| from_document_fields(d.fields))
            .transpose()
    }

    /// Deletes document `id`.
    ///
    /// # Errors
    /// As [`Collection::delete`](crate::Collection::delete).
    pub fn delete(&self, id: DocId) -> Result<()> {
        self.inner.delete(id)
    }

    /// The results of a query on this collection as `(id, T)`, in the query's order.
    /// The query's collection must be this one.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] for a query on another collection; [`Error::Mapping`];
    /// as [`crate::ReadTxn::query`].
    pub fn query(&self, q: &crate::Query) -> Result<Vec<(DocId, T)>> {
        if q.collection() != self.inner.name() {
            return Err(Error::InvalidValue {
                reason: format!(
                    "query on '{}' run on collection '{}'",
                    q.collection(),
                    self.inner.name()
                ),
            });
        }
        self.inner
            .database()
            .query(q)?
            .into_iter()
            .map(|d| Ok((d.id, from_document_fields(d.fields)?)))
            .collect()
    }

    /// Every document as `(id, T)`, sorted by id.
    ///
    /// # Errors
    /// [`Error::Mapping`]; as [`Collection::all`](crate::Collection::all).
    pub fn all(&self) -> Result<Vec<(DocId, T)>> {
        self.inner
            .all()?
            .into_iter()
            .map(|d| Ok((d.id, from_document_fields(d.fields)?)))
            .collect()
    }
}
