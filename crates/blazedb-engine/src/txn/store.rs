//! How one document write is stored: the collection's catalog entry on first write,
//! the sealed document, its change-log entry (when captured), index changes and the
//! record for live subscribers. Invariant: unique indexes are checked before anything
//! is modified; after that, a failure poisons the transaction.

use blazedb_core::limits::TXN_WRITES_MAX;
use blazedb_core::name::check_name;
use blazedb_core::{DocId, Document, Error, NameKind, Result};
use blazedb_storage::Table;

use super::WriteTxn;
use crate::codec::{CatalogRecord, ChangeRecord, DocRecord, FieldsRef, OpRecord, encode};
use crate::raw::get_doc;
use crate::vault::{CollTag, DocKey};

impl WriteTxn<'_> {
    /// Whether a write to `collection` must read the document's previous state.
    pub(super) fn needs_old(&mut self, collection: &str) -> Result<bool> {
        Ok(self.watch || self.index_work().has_indexes(collection)?)
    }

    pub(super) fn count_write(&mut self) -> Result<()> {
        if self.writes >= TXN_WRITES_MAX {
            return Err(Error::TooLarge {
                what: "transaction (writes)",
                size: self.writes + 1,
                max: TXN_WRITES_MAX,
            });
        }
        self.writes += 1;
        Ok(())
    }

    /// The collection's tag, creating its catalog entry on first write.
    pub(super) fn collection_for_write(&mut self, name: &str) -> Result<CollTag> {
        check_name(NameKind::Collection, name)?;
        let tag = self.db.inner.vault.coll_tag(name);
        if !self.known_collections.contains(&tag) {
            let present = self
                .tx
                .get(Table::Catalog, &tag)
                .map_err(|e| self.db.storage_err(e))?
                .is_some();
            if !present {
                let rec = encode(
                    "catalog record",
                    &CatalogRecord {
                        name: name.to_owned(),
                    },
                )?;
                let sealed = self.db.inner.vault.seal(Table::Catalog, &tag, &rec);
                self.mutate(|tx| tx.insert(Table::Catalog, &tag, &sealed))?;
            }
            self.known_collections.insert(tag);
        }
        Ok(tag)
    }

    pub(super) fn read_doc(&mut self, tag: &CollTag, id: DocId) -> Result<Option<Document>> {
        get_doc(&mut self.tx, &self.db.inner.vault, tag, id, self.db.path())
    }

    /// Encodes and seals the document and its change entry, checks unique indexes, then
    /// stores the document, the entry and the index changes. `old` is the document before
    /// the write (needed only when the collection has indexes).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn store(
        &mut self,
        collection: &str,
        key: &DocKey,
        old: Option<&Document>,
        doc: Option<&Document>,
        id: DocId,
        op: OpRecord<FieldsRef<'_>>,
        merged: Option<&mut Vec<crate::index::IndexNote>>,
    ) -> Result<()> {
        self.count_write()?;
        let index_ops = self.index_work().index_ops(collection, old, doc, merged)?;
        if self.watch {
            self.written.push(crate::live::Written {
                collection: collection.to_owned(),
                id,
                old: old.cloned(),
                new: doc.cloned(),
            });
        }
        let vault = &self.db.inner.vault;
        let sealed_doc = match doc {
            Some(d) => {
                let bytes = encode(
                    "document",
                    &DocRecord {
                        id: *d.id.as_bytes(),
                        fields: FieldsRef(&d.fields),
                    },
                )?;
                Some(vault.seal_record(Table::Docs, key, &bytes))
            }
            None => None,
        };
        let change = if self.capture {
            let seq = self.counters.next_seq;
            let rec = ChangeRecord {
                txn: self.first_seq,
                collection,
                id: *id.as_bytes(),
                op,
                at: blazedb_core::Timestamp::now().as_micros(),
            };
            let bytes = encode("change entry", &rec)?;
            let k = seq.to_be_bytes();
            Some((k, vault.seal_record(Table::Changes, &k, &bytes)))
        } else {
            None
        };
        self.mutate(|tx| {
            match &sealed_doc {
                Some(s) => tx.insert(Table::Docs, key, s)?,
                None => {
                    tx.remove(Table::Docs, key)?;
                }
            }
            if let Some((k, s)) = &change {
                tx.insert(Table::Changes, k, s)?;
            }
            Ok(())
        })?;
        if change.is_some() {
            self.counters.next_seq += 1;
        }
        self.index_work().apply_index_ops(index_ops)
    }
}
