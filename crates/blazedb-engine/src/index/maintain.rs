//! Index maintenance inside write transactions, and index creation and removal.

use std::ops::ControlFlow;

use blazedb_core::{Document, Error, Result};

use super::btree::Tree;
use super::{
    IndexInfo, IndexNote, IndexRecord, IndexSpec, check_spec, doc_key, index_tag, is_truncated,
    load_directory, stored_key, unique_conflict,
};
use crate::raw::scan_docs;
use crate::txn::WriteTxn;

/// One index's change for one document write: remove the old key, insert the new one.
pub(crate) struct IndexOp {
    index: usize,
    remove: Option<Vec<u8>>,
    insert: Option<Vec<u8>>,
}

impl WriteTxn<'_> {
    /// The index directory, loaded on first use.
    pub(crate) fn index_dir(&mut self) -> Result<&mut Vec<IndexRecord>> {
        if self.indexes.is_none() {
            let dir = load_directory(&mut self.tx, &self.db.inner.vault)?;
            self.indexes = Some(dir);
        }
        Ok(self.indexes.get_or_insert_with(Vec::new))
    }

    /// Whether `collection` has any index.
    pub(crate) fn has_indexes(&mut self, collection: &str) -> Result<bool> {
        Ok(self.index_dir()?.iter().any(|r| r.collection == collection))
    }

    /// Computes the index changes of a write and checks unique indexes, before anything
    /// is modified: a violation leaves the transaction untouched and usable. With
    /// `merged` (a document the sync layer stores, see [`WriteTxn::put_merged`]) a
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
                && let Some(existing) =
                    unique_conflict(&mut self.tx, &self.db.inner.vault, rec, key)?
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

    /// Applies index changes computed by [`WriteTxn::index_ops`]. A failure poisons the
    /// transaction (the document is already written).
    pub(crate) fn apply_index_ops(&mut self, ops: Vec<IndexOp>) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let result = self.apply_index_ops_inner(ops);
        if let Err(e) = &result {
            self.poisoned = Some(format!("transaction aborted by an index error: {e}"));
        }
        result
    }

    fn apply_index_ops_inner(&mut self, ops: Vec<IndexOp>) -> Result<()> {
        let vault = &self.db.inner.vault;
        let dir = self.indexes.get_or_insert_with(Vec::new);
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
                && !tree.remove(&mut self.tx, k)?
            {
                return Err(Error::corrupt_record(
                    "index",
                    format!("index '{}' lacked an entry of a document", rec.name),
                ));
            }
            if let Some(k) = &op.insert {
                tree.insert(&mut self.tx, k)?;
            }
            rec.tree = tree.meta;
        }
        self.indexes_dirty = true;
        Ok(())
    }

    /// Creates an index and fills it from the collection's documents, in this
    /// transaction (so a crash before commit leaves no index at all).
    ///
    /// # Errors
    /// [`Error::InvalidName`] / [`Error::InvalidValue`] for a bad spec or an existing
    /// name; [`Error::UniqueViolation`] if existing documents violate a unique index;
    /// [`Error::TooLarge`] for an indexed value too large. The transaction stays usable
    /// after these errors.
    pub fn create_index(&mut self, spec: &IndexSpec) -> Result<IndexInfo> {
        let paths = check_spec(spec, self.index_dir()?)?;
        if self.poisoned.is_some() {
            return Err(Error::Failed {
                reason: "transaction already failed".into(),
            });
        }
        let vault = &self.db.inner.vault;
        let coll = vault.coll_tag(&spec.collection);
        let mut keys = Vec::new();
        let mut unique_keys = Vec::new();
        scan_docs(&mut self.tx, vault, &coll, &mut |d| {
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
        let built = Tree::bulk_load(&mut self.tx, vault, tag, &keys);
        let tree = match built {
            Ok(t) => t,
            Err(e) => {
                self.poisoned = Some(format!("transaction aborted by an index build error: {e}"));
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
        self.indexes_dirty = true;
        Ok(info)
    }

    /// Removes an index; returns whether it existed.
    ///
    /// # Errors
    /// Storage errors (which poison the transaction).
    pub fn drop_index(&mut self, name: &str) -> Result<bool> {
        let dir = self.index_dir()?;
        let Some(pos) = dir.iter().position(|r| r.name == name) else {
            return Ok(false);
        };
        dir.remove(pos);
        self.indexes_dirty = true;
        let tag = index_tag(&self.db.inner.vault, name);
        self.mutate(|tx| Tree::destroy(tx, &tag))?;
        Ok(true)
    }

    /// The indexes, as this transaction sees them.
    ///
    /// # Errors
    /// Corruption.
    pub fn indexes(&mut self) -> Result<Vec<IndexInfo>> {
        Ok(self.index_dir()?.iter().map(IndexRecord::info).collect())
    }
}
