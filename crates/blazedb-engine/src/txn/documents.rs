//! The writer's document operations: insert, put (and the sync layer's merged put),
//! patch, delete, drop a collection, and reads that see the transaction's own writes.

use std::ops::ControlFlow;

use blazedb_core::document::validate_fields;
use blazedb_core::name::check_name;
use blazedb_core::{DocId, Document, Error, NameKind, Result};
use blazedb_storage::Table;

use super::{Patch, WriteTxn};
use crate::codec::decode_doc_only;
use crate::codec::{FieldsRef, OpRecord};
use crate::raw::{collection_names, scan_doc_records, scan_docs};

impl WriteTxn<'_> {
    /// Inserts a new document (its id is `doc.id`; [`Document::new`] makes a UUIDv7).
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] if the id is taken; [`Error::InvalidName`] /
    /// [`Error::InvalidValue`] / [`Error::TooLarge`] for bad input. None modifies anything.
    pub fn insert(&mut self, collection: &str, doc: Document) -> Result<DocId> {
        validate_fields(&doc.fields)?;
        let tag = self.collection_for_write(collection)?;
        let key = self.db.inner.vault.doc_key(&tag, doc.id);
        if self
            .tx
            .contains(Table::Docs, &key)
            .map_err(|e| self.db.storage_err(e))?
        {
            return Err(Error::AlreadyExists {
                collection: collection.to_owned(),
                id: doc.id,
            });
        }
        self.store(
            collection,
            &key,
            None,
            Some(&doc),
            doc.id,
            OpRecord::Insert(FieldsRef(&doc.fields)),
            None,
        )?;
        Ok(doc.id)
    }

    /// Creates the document, or replaces it whole if it exists. Returns whether it was
    /// created.
    ///
    /// # Errors
    /// As [`WriteTxn::insert`], except that an existing id is replaced.
    pub fn put(&mut self, collection: &str, doc: Document) -> Result<bool> {
        self.put_inner(collection, doc, None)
    }

    /// A put that notes index refusals in `merged` instead of failing, when given
    /// (see [`crate::internal::SyncWrite::put_merged`]).
    pub(crate) fn put_inner(
        &mut self,
        collection: &str,
        doc: Document,
        merged: Option<&mut Vec<crate::index::IndexNote>>,
    ) -> Result<bool> {
        validate_fields(&doc.fields)?;
        let tag = self.collection_for_write(collection)?;
        let key = self.db.inner.vault.doc_key(&tag, doc.id);
        match self.read_doc(&tag, doc.id)? {
            None => {
                self.store(
                    collection,
                    &key,
                    None,
                    Some(&doc),
                    doc.id,
                    OpRecord::Insert(FieldsRef(&doc.fields)),
                    merged,
                )?;
                Ok(true)
            }
            Some(old) => {
                self.store(
                    collection,
                    &key,
                    Some(&old),
                    Some(&doc),
                    doc.id,
                    OpRecord::Replace(FieldsRef(&doc.fields)),
                    merged,
                )?;
                Ok(false)
            }
        }
    }

    /// Sets and removes fields of an existing document; returns the document as it is
    /// after the patch. Removing an absent field is not an error.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::InvalidValue`] if the patch sets and unsets the same
    /// field; name and size errors. None modifies anything.
    pub fn patch(&mut self, collection: &str, id: DocId, patch: &Patch) -> Result<Document> {
        patch.validate()?;
        check_name(NameKind::Collection, collection)?;
        let tag = self.db.inner.vault.coll_tag(collection);
        let mut doc = self.read_doc(&tag, id)?.ok_or_else(|| Error::NotFound {
            collection: collection.to_owned(),
            id,
        })?;
        let old = if self.needs_old(collection)? {
            Some(doc.clone())
        } else {
            None
        };
        let unset: Vec<String> = patch
            .unset
            .iter()
            .filter(|f| doc.fields.remove(*f).is_some())
            .cloned()
            .collect();
        if patch.set.is_empty() && unset.is_empty() {
            return Ok(doc);
        }
        for (k, v) in &patch.set {
            doc.fields.insert(k.clone(), v.clone());
        }
        let key = self.db.inner.vault.doc_key(&tag, id);
        self.store(
            collection,
            &key,
            old.as_ref(),
            Some(&doc),
            id,
            OpRecord::Update {
                set: FieldsRef(&patch.set),
                unset,
            },
            None,
        )?;
        Ok(doc)
    }

    /// Deletes a document.
    ///
    /// # Errors
    /// [`Error::NotFound`] if it does not exist (nothing modified).
    pub fn delete(&mut self, collection: &str, id: DocId) -> Result<()> {
        check_name(NameKind::Collection, collection)?;
        let tag = self.db.inner.vault.coll_tag(collection);
        let key = self.db.inner.vault.doc_key(&tag, id);
        // The old document is needed only for index entries and subscribers.
        let old = if self.needs_old(collection)? {
            self.read_doc(&tag, id)?.map(Some)
        } else {
            self.tx
                .contains(Table::Docs, &key)
                .map_err(|e| self.db.storage_err(e))?
                .then_some(None)
        };
        let Some(old) = old else {
            return Err(Error::NotFound {
                collection: collection.to_owned(),
                id,
            });
        };
        self.store(
            collection,
            &key,
            old.as_ref(),
            None,
            id,
            OpRecord::Delete,
            None,
        )
    }

    /// Deletes every document of a collection (each deletion is captured) and removes it
    /// from the catalog. Returns how many documents were deleted.
    ///
    /// # Errors
    /// Name and storage errors.
    pub fn drop_collection(&mut self, collection: &str) -> Result<u64> {
        check_name(NameKind::Collection, collection)?;
        let tag = self.db.inner.vault.coll_tag(collection);
        let mut ids = Vec::new();
        scan_doc_records(&mut self.tx, &self.db.inner.vault, &tag, &mut |plain| {
            ids.push(decode_doc_only(plain, Some(&[]))?.id);
            Ok(ControlFlow::Continue(()))
        })?;
        // Deterministic order (by id), so the change log does not depend on tag order.
        ids.sort();
        for id in &ids {
            self.delete(collection, *id)?;
        }
        self.mutate(|tx| tx.remove(Table::Catalog, &tag).map(drop))?;
        self.known_collections.remove(&tag);
        Ok(ids.len() as u64)
    }

    /// The document `id`, as this transaction sees it (its own writes included).
    ///
    /// # Errors
    /// Name errors; [`Error::Corruption`].
    pub fn get(&mut self, collection: &str, id: DocId) -> Result<Option<Document>> {
        check_name(NameKind::Collection, collection)?;
        let tag = self.db.inner.vault.coll_tag(collection);
        self.read_doc(&tag, id)
    }

    /// Every document of `collection` as this transaction sees it, sorted by id.
    ///
    /// # Errors
    /// Name errors; [`Error::Corruption`].
    pub fn all(&mut self, collection: &str) -> Result<Vec<Document>> {
        check_name(NameKind::Collection, collection)?;
        let tag = self.db.inner.vault.coll_tag(collection);
        let mut docs = Vec::new();
        scan_docs(&mut self.tx, &self.db.inner.vault, &tag, &mut |d| {
            docs.push(d);
            Ok(ControlFlow::Continue(()))
        })?;
        docs.sort_by_key(|d| d.id);
        Ok(docs)
    }

    /// Names of all collections, as this transaction sees them.
    ///
    /// # Errors
    /// [`Error::Corruption`].
    pub fn collections(&mut self) -> Result<Vec<String>> {
        collection_names(&mut self.tx, &self.db.inner.vault)
    }
}
