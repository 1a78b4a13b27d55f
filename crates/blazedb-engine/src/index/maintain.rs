//! Index maintenance inside write transactions, and index creation and removal.

use std::ops::ControlFlow;
use std::path::Path;

use blazedb_core::{Document, Error, Result};
use blazedb_storage::WriteTx;

use super::btree::Tree;
use super::{
    IndexInfo, IndexNote, IndexRecord, IndexSpec, check_spec, doc_key, index_tag, is_truncated,
    load_directory, stored_key, unique_conflict,
};
use crate::codec::decode_doc_only;
use crate::poison::{self, Poison};
use crate::raw::scan_doc_records;
use crate::vault::Vault;

/// One index's change for one document write: remove the old key, insert the new one.
pub(crate) struct IndexOp {
    index: usize,
    remove: Option<Vec<u8>>,
    insert: Option<Vec<u8>>,
}

/// A write transaction's copy of the index directory: loaded on first need, and written
/// back at commit when `dirty` (some index was created, dropped or changed).
#[derive(Default)]
pub(crate) struct IndexCache {
    dir: Option<Vec<IndexRecord>>,
    dirty: bool,
}

impl IndexCache {
    fn load(&mut self, tx: &mut WriteTx<'_>, vault: &Vault) -> Result<&mut Vec<IndexRecord>> {
        if self.dir.is_none() {
            self.dir = Some(load_directory(tx, vault)?);
        }
        Ok(self.dir.get_or_insert_with(Vec::new))
    }

    /// The directory to write back at commit, if it changed.
    pub(crate) fn take_dirty(&mut self) -> Option<Vec<IndexRecord>> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        Some(self.dir.take().unwrap_or_default())
    }
}

/// What index maintenance works on inside a write transaction, lent by the transaction
/// for one operation (`WriteTxn::index_work`): its storage transaction, the vault and
/// the directory of its database, its copy of the index directory and its poison slot. Index maintenance thus needs nothing else of the
/// transaction.
pub(crate) struct IndexWork<'a, 'db> {
    pub(crate) tx: &'a mut WriteTx<'db>,
    pub(crate) vault: &'db Vault,
    /// The database's directory, named in storage errors.
    pub(crate) path: &'db Path,
    pub(crate) cache: &'a mut IndexCache,
    pub(crate) poisoned: &'a mut Option<Poison>,
}

impl IndexWork<'_, '_> {
    /// The index directory, loaded on first use.
    fn index_dir(&mut self) -> Result<&mut Vec<IndexRecord>> {
        self.cache.load(self.tx, self.vault)
    }

    /// Whether `collection` has any index.
    pub(crate) fn has_indexes(&mut self, collection: &str) -> Result<bool> {
        Ok(self.index_dir()?.iter().any(|r| r.collection == collection))
    }

    /// Computes the index changes of a write and checks unique indexes, before anything
    /// is modified: a violation leaves the transaction untouched and usable. With
    /// `merged` (a document the sync layer stores, see [`crate::internal::SyncWrite::put_merged`]) a
    /// violation or a value too long for a key is noted there instead of refused.
    pub(crate) fn index_ops(
        &mut self,
        collection: &str,
        old: Option<&Document>,
        new: Option<&Document>,
        mut merged: Option<&mut Vec<IndexNote>>,
    ) -> Result<Vec<IndexOp>> {
        let mut ops = Vec::new();
        let dir = self.index_dir()?.clone();
        for (i, rec) in dir
            .iter()
            .enumerate()
            .filter(|(_, r)| r.collection == collection)
        {
            let paths = rec.paths()?;
            let remove = old.map(|d| stored_key(&paths, d));
            let insert = new.map(|d| stored_key(&paths, d));
            if remove == insert {
                continue;
            }
            let truncated = insert.as_deref().is_some_and(is_truncated);
            if let (true, Some(d)) = (truncated, new) {
                match merged.as_deref_mut() {
                    // A local write: refused, with the size of the whole key.
                    None => {
                        doc_key(&paths, d)?;
                    }
                    Some(notes) => notes.push(IndexNote::Truncated {
                        index: rec.name.clone(),
                    }),
                }
            }
            if rec.unique
                && !truncated
                && new.is_some_and(|d| super::constrained(&paths, d))
                && let Some(key) = &insert
                && let Some(existing) = unique_conflict(self.tx, self.vault, rec, key)?
            {
                match merged.as_deref_mut() {
                    None => {
                        return Err(Error::UniqueViolation {
                            index: rec.name.clone(),
                            existing,
                        });
                    }
                    Some(notes) => notes.push(IndexNote::UniqueShared {
                        index: rec.name.clone(),
                        existing,
                    }),
                }
            }
            ops.push(IndexOp {
                index: i,
                remove,
                insert,
            });
        }
        Ok(ops)
    }

    /// Applies index changes computed by [`IndexWork::index_ops`]. A failure poisons the
    /// transaction (the document is already written).
    pub(crate) fn apply_index_ops(&mut self, ops: Vec<IndexOp>) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let result = self.apply_index_ops_inner(ops);
        if let Err(e) = &result {
            *self.poisoned = Some(Poison::Index {
                cause: e.to_string(),
            });
        }
        result
    }

    fn apply_index_ops_inner(&mut self, ops: Vec<IndexOp>) -> Result<()> {
        let (tx, vault) = (&mut *self.tx, self.vault);
        let dir = self.cache.dir.get_or_insert_with(Vec::new);
        for op in ops {
            let rec = dir
                .get_mut(op.index)
                .ok_or_else(|| Error::corrupt_record("meta", "index vanished"))?;
            let mut tree = Tree {
                tag: index_tag(vault, &rec.name),
                meta: rec.tree,
                vault,
            };
            if let Some(k) = &op.remove
                && !tree.remove(tx, k)?
            {
                return Err(Error::corrupt_record(
                    "index",
                    format!("index '{}' lacked an entry of a document", rec.name),
                ));
            }
            if let Some(k) = &op.insert {
                tree.insert(tx, k)?;
            }
            rec.tree = tree.meta;
        }
        self.cache.dirty = true;
        Ok(())
    }

    /// Creates an index and fills it from the collection's documents, in this
    /// transaction (so a crash before commit leaves no index at all).
    ///
    /// # Errors
    /// [`Error::InvalidName`] / [`Error::InvalidValue`] for a bad spec; [`Error::IndexExists`] for an existing
    /// name; [`Error::UniqueViolation`] if existing documents violate a unique index;
    /// [`Error::TooLarge`] for an indexed value too large. The transaction stays usable
    /// after these errors.
    pub(crate) fn create_index(&mut self, spec: &IndexSpec) -> Result<IndexInfo> {
        let paths = check_spec(spec, self.index_dir()?)?;
        if self.poisoned.is_some() {
            return Err(Error::Failed {
                reason: "transaction already failed".into(),
            });
        }
        let (tx, vault) = (&mut *self.tx, self.vault);
        let coll = vault.coll_tag(&spec.collection);
        let mut keys = Vec::new();
        let mut unique_keys = Vec::new();
        let tops = super::top_fields(&paths);
        scan_doc_records(tx, vault, &coll, &mut |plain| {
            let d = decode_doc_only(plain, Some(&tops))?;
            let key = doc_key(&paths, &d)?;
            if spec.unique && super::constrained(&paths, &d) {
                unique_keys.push(key.clone());
            }
            keys.push(key);
            Ok(ControlFlow::Continue(()))
        })?;
        keys.sort_unstable();
        unique_keys.sort_unstable();
        for pair in unique_keys.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if a[..a.len() - 16] == b[..b.len() - 16] {
                return Err(Error::UniqueViolation {
                    index: spec.name.clone(),
                    existing: super::key_id(a)?,
                });
            }
        }
        let tag = index_tag(vault, &spec.name);
        let built = Tree::bulk_load(tx, vault, tag, keys);
        let tree = match built {
            Ok(t) => t,
            Err(e) => {
                *self.poisoned = Some(Poison::IndexBuild {
                    cause: e.to_string(),
                });
                return Err(e);
            }
        };
        let rec = IndexRecord {
            name: spec.name.clone(),
            collection: spec.collection.clone(),
            fields: spec.fields.clone(),
            unique: spec.unique,
            tree,
        };
        let info = rec.info();
        self.index_dir()?.push(rec);
        self.cache.dirty = true;
        Ok(info)
    }

    /// Removes an index; returns whether it existed.
    ///
    /// # Errors
    /// Storage errors (which poison the transaction).
    pub(crate) fn drop_index(&mut self, name: &str) -> Result<bool> {
        let dir = self.index_dir()?;
        let Some(pos) = dir.iter().position(|r| r.name == name) else {
            return Ok(false);
        };
        dir.remove(pos);
        self.cache.dirty = true;
        let tag = index_tag(self.vault, name);
        poison::mutate(self.poisoned, self.path, self.tx, |tx| {
            Tree::destroy(tx, &tag)
        })?;
        Ok(true)
    }

    /// The indexes, as this transaction sees them.
    ///
    /// # Errors
    /// Corruption.
    pub(crate) fn indexes(&mut self) -> Result<Vec<IndexInfo>> {
        Ok(self.index_dir()?.iter().map(IndexRecord::info).collect())
    }
}
