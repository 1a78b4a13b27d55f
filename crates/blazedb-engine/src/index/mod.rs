//! Secondary indexes: equality and range, single-field and compound, optionally unique.
//!
//! An index is a sealed B+tree (`btree.rs`) of keys `enc(v1) ‖ enc(v2) ‖ … ‖ id` where
//! `enc` is the order-preserving encoding of `query::keyenc` and `id` the
//! document's 16 bytes. Every document of the collection has exactly one entry (a
//! missing field encodes as "missing"), so an index also yields documents in
//! `(fields…, id)` order — except documents the sync layer stored with values too long
//! for a key, indexed by a cut key (see `TRUNCATED_KEY_BYTES`): in range like their
//! whole key, not in order among themselves (queries then sort in memory).
//!
//! The index directory (definitions and tree metas) is one sealed record, `meta/indexes`,
//! written in the same commit as the nodes it describes. Index maintenance runs inside
//! the document write's transaction, so an index never disagrees with the documents of
//! any committed state. Building an index is one transaction: a crash midway leaves no
//! index at all.
//!
//! Rooms: `btree` (the tree) below this module (specs, directory, keys, checks);
//! `maintain` (maintenance, create/drop) above it: it imports from here, nothing here
//! imports it, and users name its items at `index::maintain` — no circle of imports.

pub(crate) mod btree;
pub(crate) mod maintain;

use std::ops::ControlFlow;

use blazedb_core::name::check_name;
use blazedb_core::{DocId, Document, Error, NameKind, Result};
use blazedb_storage::Table;
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::query::FieldPath;
use crate::query::keyenc::encode_opt;
use crate::raw::Raw;
use crate::vault::Vault;
use btree::TreeMeta;

pub(crate) const META_INDEXES: &[u8] = b"indexes";
/// Longest index key (encoded values and id). Longer indexed values are refused with
/// [`Error::TooLarge`], because a key must fit a node many times over — except in a
/// document the sync layer stores ([`crate::internal::SyncWrite::put_merged`]): its key is cut
/// (see `TRUNCATED_KEY_BYTES`).
pub const INDEX_KEY_BYTES_MAX: usize = 1024;
/// Length of a cut key: the first `TRUNCATED_KEY_BYTES - 16` bytes of the encoded
/// values, then the id. One byte longer than any whole key, so a cut key is known by its
/// length. Every bound the planner scans with is cut to the same length, which keeps a
/// cut key inside every range its whole key is in (the filter, re-checked on each
/// document, does the rest); an ordered scan that meets a cut key sorts in memory.
pub(crate) const TRUNCATED_KEY_BYTES: usize = INDEX_KEY_BYTES_MAX + 1;
/// Encoded-value bytes a cut key keeps.
pub(crate) const TRUNCATED_VALUES_BYTES: usize = TRUNCATED_KEY_BYTES - 16;
/// Most fields in a compound index.
pub const INDEX_FIELDS_MAX: usize = 8;

/// What to index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexSpec {
    /// The index's name, unique in the database (collection-name rules).
    pub name: String,
    pub collection: String,
    /// Field paths, most significant first (`["status", "severity"]` serves
    /// `status = x` and `status = x AND severity > y`).
    pub fields: Vec<String>,
    /// Refuse writes that would give two documents equal values for all fields. As in
    /// SQL, a document whose indexed fields are not all present and non-null is exempt:
    /// missing and null values never conflict.
    pub unique: bool,
}

impl IndexSpec {
    /// A non-unique index on `fields` of `collection`.
    #[must_use]
    pub fn new(name: &str, collection: &str, fields: &[&str]) -> IndexSpec {
        IndexSpec {
            name: name.to_owned(),
            collection: collection.to_owned(),
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
            unique: false,
        }
    }

    /// The same, unique.
    #[must_use]
    pub fn unique(mut self) -> IndexSpec {
        self.unique = true;
        self
    }
}

/// An index as listed by [`crate::ReadTxn::indexes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexInfo {
    pub spec: IndexSpec,
    /// Entries (= documents in the collection).
    pub entries: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct IndexRecord {
    pub name: String,
    pub collection: String,
    pub fields: Vec<String>,
    pub unique: bool,
    pub tree: TreeMeta,
}

impl IndexRecord {
    pub(crate) fn paths(&self) -> Result<Vec<FieldPath>> {
        self.fields.iter().map(|f| FieldPath::parse(f)).collect()
    }

    pub(crate) fn info(&self) -> IndexInfo {
        IndexInfo {
            spec: IndexSpec {
                name: self.name.clone(),
                collection: self.collection.clone(),
                fields: self.fields.clone(),
                unique: self.unique,
            },
            entries: self.tree.len,
        }
    }
}

/// Validates a spec against the existing directory.
pub(crate) fn check_spec(spec: &IndexSpec, existing: &[IndexRecord]) -> Result<Vec<FieldPath>> {
    check_name(NameKind::Collection, &spec.name)?;
    check_name(NameKind::Collection, &spec.collection)?;
    if spec.fields.is_empty() || spec.fields.len() > INDEX_FIELDS_MAX {
        return Err(Error::InvalidValue {
            reason: format!("an index needs 1 to {INDEX_FIELDS_MAX} fields"),
        });
    }
    if existing.iter().any(|r| r.name == spec.name) {
        return Err(Error::IndexExists {
            name: spec.name.clone(),
        });
    }
    spec.fields.iter().map(|f| FieldPath::parse(f)).collect()
}

/// The tag of index `name` (the storage prefix of its nodes).
pub(crate) fn index_tag(vault: &Vault, name: &str) -> [u8; 16] {
    vault.name_tag(&[b"index", name.as_bytes()])
}

/// Reads the index directory.
pub(crate) fn load_directory(raw: &mut impl Raw, vault: &Vault) -> Result<Vec<IndexRecord>> {
    match raw
        .raw_get(Table::Meta, META_INDEXES)
        .map_err(|e| crate::raw::storage_err(e, std::path::Path::new("")))?
    {
        None => Ok(Vec::new()),
        Some(sealed) => decode("meta", &vault.open(Table::Meta, META_INDEXES, &sealed)?),
    }
}

/// The sealed directory record, ready to store.
pub(crate) fn seal_directory(vault: &Vault, dir: &[IndexRecord]) -> Result<Vec<u8>> {
    Ok(vault.seal(Table::Meta, META_INDEXES, &encode("index directory", &dir)?))
}

fn encoded_values(paths: &[FieldPath], doc: &Document) -> Vec<u8> {
    let mut out = Vec::new();
    for p in paths {
        encode_opt(&mut out, p.lookup(doc));
    }
    out
}

/// The full index key of `doc`: its encoded field values, then its id.
///
/// # Errors
/// [`Error::TooLarge`] beyond [`INDEX_KEY_BYTES_MAX`].
pub(crate) fn doc_key(paths: &[FieldPath], doc: &Document) -> Result<Vec<u8>> {
    let mut out = encoded_values(paths, doc);
    out.extend_from_slice(doc.id.as_bytes());
    if out.len() > INDEX_KEY_BYTES_MAX {
        return Err(Error::TooLarge {
            what: "indexed value (encoded index key)",
            size: out.len(),
            max: INDEX_KEY_BYTES_MAX,
        });
    }
    Ok(out)
}

/// The key `doc` has in an index: [`doc_key`], or the cut key when that is too long
/// (only documents stored by [`crate::internal::SyncWrite::put_merged`] have one).
pub(crate) fn stored_key(paths: &[FieldPath], doc: &Document) -> Vec<u8> {
    let mut out = encoded_values(paths, doc);
    if out.len() + 16 > INDEX_KEY_BYTES_MAX {
        out.truncate(TRUNCATED_VALUES_BYTES);
    }
    out.extend_from_slice(doc.id.as_bytes());
    out
}

/// Whether `key` is a cut key (see [`TRUNCATED_KEY_BYTES`]).
pub(crate) fn is_truncated(key: &[u8]) -> bool {
    key.len() == TRUNCATED_KEY_BYTES
}

/// What [`crate::internal::SyncWrite::put_merged`] let through that a local write would have been
/// refused for. The index still holds exactly one entry per document
/// ([`crate::ReadTxn::check_indexes`]) and queries stay exact.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IndexNote {
    /// Unique index `index` now holds two documents with equal values: the stored one
    /// and `existing`.
    UniqueShared { index: String, existing: DocId },
    /// The document's values are too long for a key of `index`: it is indexed by a cut
    /// key (see [`INDEX_KEY_BYTES_MAX`]).
    Truncated { index: String },
}

impl std::fmt::Display for IndexNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IndexNote::UniqueShared { index, existing } => write!(
                f,
                "unique index '{index}' now holds another document ({existing}) with the same values"
            ),
            IndexNote::Truncated { index } => write!(
                f,
                "the values are too long for index '{index}': indexed by their first bytes"
            ),
        }
    }
}

/// Whether `doc` takes part in uniqueness: every indexed field present and non-null.
pub(crate) fn constrained(paths: &[FieldPath], doc: &Document) -> bool {
    paths.iter().all(|p| {
        p.lookup(doc)
            .is_some_and(|v| !matches!(v, blazedb_core::Value::Null))
    })
}

/// The document id at the end of an index key.
pub(crate) fn key_id(key: &[u8]) -> Result<DocId> {
    let tail: [u8; 16] = key
        .get(key.len().saturating_sub(16)..)
        .and_then(|t| t.try_into().ok())
        .ok_or_else(|| Error::corrupt_record("index", "index key shorter than an id"))?;
    Ok(DocId::from_bytes(tail))
}

/// Whether a unique index already holds another document with the values of `key`.
pub(crate) fn unique_conflict(
    raw: &mut impl Raw,
    vault: &Vault,
    rec: &IndexRecord,
    key: &[u8],
) -> Result<Option<DocId>> {
    let prefix = &key[..key.len() - 16];
    let upper = blazedb_storage::prefix_upper(prefix);
    let tree = btree::Tree {
        tag: index_tag(vault, &rec.name),
        meta: rec.tree,
        vault,
    };
    let own = key_id(key)?;
    let mut clash = None;
    let hi = upper
        .as_deref()
        .map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
    tree.scan(raw, std::ops::Bound::Included(prefix), hi, &mut |k| {
        let id = key_id(k)?;
        if id != own {
            clash = Some(id);
            return Ok(ControlFlow::Break(()));
        }
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(clash)
}

/// The top-level fields `paths` start at: all of a document an index key reads (for
/// `codec::decode_doc_only`).
pub(crate) fn top_fields(paths: &[FieldPath]) -> Vec<&str> {
    let mut out: Vec<&str> = paths
        .iter()
        .filter_map(|p| p.segments().first().map(String::as_str))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Checks every index against a rebuild from the documents: same keys, same count.
pub(crate) fn check_all(raw: &mut impl Raw, vault: &Vault) -> Result<Vec<IndexInfo>> {
    let dir = load_directory(raw, vault)?;
    for rec in &dir {
        let paths = rec.paths()?;
        let tops = top_fields(&paths);
        let mut want = Vec::new();
        let coll = vault.coll_tag(&rec.collection);
        crate::raw::scan_doc_records(raw, vault, &coll, &mut |plain| {
            let d = crate::codec::decode_doc_only(plain, Some(&tops))?;
            want.push(stored_key(&paths, &d));
            Ok(ControlFlow::Continue(()))
        })?;
        want.sort_unstable();
        let tree = btree::Tree {
            tag: index_tag(vault, &rec.name),
            meta: rec.tree,
            vault,
        };
        let mut got = Vec::new();
        tree.scan(
            raw,
            std::ops::Bound::Unbounded,
            std::ops::Bound::Unbounded,
            &mut |k| {
                got.push(k.to_vec());
                Ok(ControlFlow::Continue(()))
            },
        )?;
        if got != want || rec.tree.len != want.len() as u64 {
            return Err(Error::corrupt_record(
                "index",
                format!(
                    "index '{}' disagrees with its documents ({} entries, {} documents)",
                    rec.name,
                    got.len(),
                    want.len()
                ),
            ));
        }
    }
    Ok(dir.iter().map(IndexRecord::info).collect())
}
