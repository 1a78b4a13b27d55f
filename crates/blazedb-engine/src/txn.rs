//! Transactions: [`ReadTxn`] (snapshot) and [`WriteTxn`] (the single writer, with change
//! capture).
//!
//! Invariant: a write either fails before touching storage (validation, not found,
//! already exists: the transaction stays usable), or its document and change-log entry
//! are both written. A storage failure in the middle poisons the transaction: `commit`
//! then refuses, so a half-applied write can never be committed.

use std::collections::HashSet;
use std::ops::ControlFlow;

use blazedb_core::document::validate_fields;
use blazedb_core::limits::TXN_WRITES_MAX;
use blazedb_core::name::{check_field_name, check_name};
use blazedb_core::{DocId, Document, Error, Fields, NameKind, Result};
use blazedb_storage::{ReadTx, Table, WriteTx};

use crate::changes::{Change, changes_after};
use crate::codec::{
    CatalogRecord, ChangeRecord, CountersRecord, DocRecord, FieldsRef, OpRecord, encode,
};
use crate::handle::Database;
use crate::index::IndexCache;
use crate::options::Durability;
use crate::raw::{collection_names, get_doc, scan_docs};
use crate::vault::{CollTag, DocKey, Vault};

/// Fields to set and fields to remove on an existing document.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Patch {
    pub set: Fields,
    pub unset: Vec<String>,
}

impl Patch {
    /// An empty patch.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `field` to `value`, builder style.
    #[must_use]
    pub fn set(mut self, field: &str, value: impl Into<blazedb_core::Value>) -> Self {
        self.set.insert(field.to_owned(), value.into());
        self
    }

    /// Removes `field`, builder style.
    #[must_use]
    pub fn unset(mut self, field: &str) -> Self {
        self.unset.push(field.to_owned());
        self
    }

    fn validate(&self) -> Result<()> {
        validate_fields(&self.set)?;
        for f in &self.unset {
            check_field_name(f)?;
            if self.set.contains_key(f) {
                return Err(Error::InvalidValue {
                    reason: format!("patch both sets and unsets field '{f}'"),
                });
            }
        }
        Ok(())
    }
}

/// A consistent snapshot. Never blocks writers and is never blocked by them.
pub struct ReadTxn {
    db: Database,
    tx: ReadTx,
}

impl ReadTxn {
    pub(crate) fn begin(db: &Database) -> Result<ReadTxn> {
        let tx = db.inner.store.read().map_err(|e| db.storage_err(e))?;
        Ok(ReadTxn { db: db.clone(), tx })
    }

    /// The document `id` of `collection`, if present.
    ///
    /// # Errors
    /// [`Error::InvalidName`]; [`Error::Corruption`] if the stored record fails
    /// authentication.
    pub fn get(&self, collection: &str, id: DocId) -> Result<Option<Document>> {
        check_name(NameKind::Collection, collection)?;
        let tag = self.db.inner.vault.coll_tag(collection);
        get_doc(
            &mut &self.tx,
            &self.db.inner.vault,
            &tag,
            id,
            self.db.path(),
        )
    }

    /// Visits every document of `collection` (in no particular order) until `f` breaks.
    ///
    /// # Errors
    /// As [`ReadTxn::get`], or the first error `f` returns.
    pub fn scan(
        &self,
        collection: &str,
        mut f: impl FnMut(Document) -> Result<ControlFlow<()>>,
    ) -> Result<()> {
        check_name(NameKind::Collection, collection)?;
        let tag = self.db.inner.vault.coll_tag(collection);
        scan_docs(&mut &self.tx, &self.db.inner.vault, &tag, &mut f)
    }

    /// Every document of `collection`, sorted by id.
    ///
    /// # Errors
    /// As [`ReadTxn::scan`].
    pub fn all(&self, collection: &str) -> Result<Vec<Document>> {
        let mut docs = Vec::new();
        self.scan(collection, |d| {
            docs.push(d);
            Ok(ControlFlow::Continue(()))
        })?;
        docs.sort_by_key(|d| d.id);
        Ok(docs)
    }

    /// Number of documents in `collection`.
    ///
    /// # Errors
    /// As [`ReadTxn::scan`].
    pub fn count(&self, collection: &str) -> Result<u64> {
        let mut n = 0;
        self.scan(collection, |_| {
            n += 1;
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(n)
    }

    /// Runs a query in this snapshot, through an index when one applies.
    ///
    /// # Errors
    /// [`Error::InvalidName`] / [`Error::InvalidValue`] for a bad query; corruption.
    pub fn query(&self, q: &crate::query::Query) -> Result<Vec<Document>> {
        q.validate()?;
        let vault = &self.db.inner.vault;
        let dir = crate::index::load_directory(&mut &self.tx, vault)?;
        match crate::query::plan::choose(q, &dir)? {
            Some(plan) => {
                crate::query::plan::run_index(&mut &self.tx, vault, q, &plan, self.db.path())
            }
            None => crate::query::run_scan(q, |f| self.scan(&q.collection, f)),
        }
    }

    /// Number of documents `query` would return (filter, offset and limit applied).
    ///
    /// # Errors
    /// As [`ReadTxn::query`].
    pub fn count_query(&self, q: &crate::query::Query) -> Result<u64> {
        Ok(self.query(q)?.len() as u64)
    }

    /// The plan [`ReadTxn::query`] would use, with its estimate of documents read.
    ///
    /// # Errors
    /// As [`ReadTxn::query`].
    pub fn explain(&self, q: &crate::query::Query) -> Result<crate::query::Plan> {
        q.validate()?;
        let vault = &self.db.inner.vault;
        let dir = crate::index::load_directory(&mut &self.tx, vault)?;
        let plan = crate::query::plan::choose(q, &dir)?;
        let size = match &plan {
            Some(_) => 0,
            None => crate::raw::count_doc_keys(&mut &self.tx, &vault.coll_tag(&q.collection))?,
        };
        crate::query::plan::explain(&mut &self.tx, vault, q, plan.as_ref(), size)
    }

    /// Verifies every secondary index against a rebuild from the documents.
    ///
    /// # Errors
    /// [`Error::Corruption`] naming the first index that disagrees.
    pub fn check_indexes(&self) -> Result<Vec<crate::index::IndexInfo>> {
        crate::index::check_all(&mut &self.tx, &self.db.inner.vault)
    }

    /// The database's secondary indexes.
    ///
    /// # Errors
    /// Corruption.
    pub fn indexes(&self) -> Result<Vec<crate::index::IndexInfo>> {
        let dir = crate::index::load_directory(&mut &self.tx, &self.db.inner.vault)?;
        Ok(dir.iter().map(crate::index::IndexRecord::info).collect())
    }

    /// Names of all collections that have ever been written to and not dropped.
    ///
    /// # Errors
    /// [`Error::Corruption`].
    pub fn collections(&self) -> Result<Vec<String>> {
        collection_names(&mut &self.tx, &self.db.inner.vault)
    }

    pub(crate) fn db(&self) -> &Database {
        &self.db
    }

    pub(crate) fn raw(&self) -> &ReadTx {
        &self.tx
    }

    /// The sequence number of the last change-log entry committed in this snapshot
    /// (0 when none).
    ///
    /// # Errors
    /// Storage errors.
    pub fn last_seq(&self) -> Result<u64> {
        let last = self
            .tx
            .last(Table::Changes)
            .map_err(|e| self.db.storage_err(e))?;
        Ok(last
            .and_then(|(k, _)| k.try_into().ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// Up to `limit` change-log entries with sequence number greater than `after`, in
    /// order. For the sync layer.
    ///
    /// # Errors
    /// [`Error::Corruption`].
    pub fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        changes_after(&mut &self.tx, &self.db.inner.vault, after, limit)
    }
}

/// The write transaction. Commit with [`WriteTxn::commit`]; dropping it rolls back.
pub struct WriteTxn<'db> {
    db: &'db Database,
    tx: WriteTx<'db>,
    counters: CountersRecord,
    first_seq: u64,
    capture: bool,
    durability: Durability,
    known_collections: HashSet<CollTag>,
    writes: usize,
    poisoned: Option<String>,
    indexes: IndexCache,
    /// Whether live subscribers existed when the transaction began: then each write is
    /// recorded (before/after) for delivery at commit.
    watch: bool,
    written: Vec<crate::live::Written>,
}

impl<'db> WriteTxn<'db> {
    pub(crate) fn begin(db: &'db Database, capture: bool) -> Result<WriteTxn<'db>> {
        let mut tx = db.inner.store.write().map_err(|e| db.storage_err(e))?;
        // The next sequence number follows the newest change-log entry. Invariant for
        // whoever prunes the log (sync GC): the newest entry is never pruned, so numbers
        // are never reused.
        let last = tx.last(Table::Changes).map_err(|e| db.storage_err(e))?;
        let next_seq = match last {
            None => 1,
            Some((k, _)) => {
                let bytes: [u8; 8] = k.as_slice().try_into().map_err(|_| {
                    Error::corrupt_record("changes", "key is not a sequence number")
                })?;
                u64::from_be_bytes(bytes) + 1
            }
        };
        let counters = CountersRecord { next_seq };
        Ok(WriteTxn {
            db,
            tx,
            counters,
            first_seq: counters.next_seq,
            capture,
            durability: db.inner.durability,
            known_collections: HashSet::new(),
            writes: 0,
            poisoned: None,
            indexes: IndexCache::default(),
            watch: db.inner.hub.has_subscribers(),
            written: Vec::new(),
        })
    }

    /// The storage transaction, the vault and the index directory, borrowed together
    /// for index maintenance (which changes the directory while writing index trees).
    pub(crate) fn index_parts(&mut self) -> (&mut WriteTx<'db>, &'db Vault, &mut IndexCache) {
        (&mut self.tx, &self.db.inner.vault, &mut self.indexes)
    }

    /// Marks the transaction failed: every later write and the commit are refused, so a
    /// half-applied write can never be committed.
    pub(crate) fn poison(&mut self, reason: String) {
        self.poisoned = Some(reason);
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    pub(crate) fn db(&self) -> &'db Database {
        self.db
    }

    pub(crate) fn raw(&mut self) -> &mut WriteTx<'db> {
        &mut self.tx
    }

    pub(crate) fn mutate_pub(
        &mut self,
        f: impl FnOnce(&mut WriteTx<'db>) -> Result<(), blazedb_storage::StorageError>,
    ) -> Result<()> {
        self.mutate(f)
    }

    /// Whether a write to `collection` must read the document's previous state.
    fn needs_old(&mut self, collection: &str) -> Result<bool> {
        Ok(self.watch || self.has_indexes(collection)?)
    }

    /// Whether this transaction's writes are captured in the change log (false for
    /// transactions from [`Database::begin_apply`]).
    #[must_use]
    pub fn captures_changes(&self) -> bool {
        self.capture
    }

    /// Overrides the durability of this transaction's commit.
    pub fn set_durability(&mut self, durability: Durability) {
        self.durability = durability;
    }

    /// Runs a storage mutation; a failure poisons the transaction.
    pub(crate) fn mutate(
        &mut self,
        f: impl FnOnce(&mut WriteTx<'db>) -> Result<(), blazedb_storage::StorageError>,
    ) -> Result<()> {
        if let Some(reason) = &self.poisoned {
            return Err(Error::Failed {
                reason: reason.clone(),
            });
        }
        f(&mut self.tx).map_err(|e| {
            let err = self.db.storage_err(e);
            self.poisoned = Some(format!("transaction aborted by an earlier error: {err}"));
            err
        })
    }

    fn count_write(&mut self) -> Result<()> {
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
    fn collection_for_write(&mut self, name: &str) -> Result<CollTag> {
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

    fn read_doc(&mut self, tag: &CollTag, id: DocId) -> Result<Option<Document>> {
        get_doc(&mut self.tx, &self.db.inner.vault, tag, id, self.db.path())
    }

    /// Encodes and seals the document and its change entry, checks unique indexes, then
    /// stores the document, the entry and the index changes. `old` is the document before
    /// the write (needed only when the collection has indexes).
    #[allow(clippy::too_many_arguments)]
    fn store(
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
        let index_ops = self.index_ops(collection, old, doc, merged)?;
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
                Some(vault.seal(Table::Docs, key, &bytes))
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
            Some((k, vault.seal(Table::Changes, &k, &bytes)))
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
        self.apply_index_ops(index_ops)
    }

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

    /// For the sync layer: [`WriteTxn::put`] of a document that a merge of replicated
    /// writes decided, which this database must hold whatever its own indexes say
    /// (indexes belong to one database; the writes' origins may have none, so no rule
    /// shared by the replicas can respect them). A unique index takes the document even
    /// when another one has the same values, and values too long for an index key are
    /// indexed by a cut key (see [`crate::index::INDEX_KEY_BYTES_MAX`]); each such case
    /// is returned. Every index still holds exactly one entry per document
    /// ([`ReadTxn::check_indexes`]) and queries stay exact; local writes keep being
    /// refused in both cases.
    ///
    /// # Errors
    /// As [`WriteTxn::put`], except the two index refusals.
    pub fn put_merged(
        &mut self,
        collection: &str,
        doc: Document,
    ) -> Result<Vec<crate::index::IndexNote>> {
        let mut notes = Vec::new();
        self.put_inner(collection, doc, Some(&mut notes))?;
        Ok(notes)
    }

    fn put_inner(
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
        scan_docs(&mut self.tx, &self.db.inner.vault, &tag, &mut |d| {
            ids.push(d.id);
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

    /// Commits atomically: all of the transaction's writes and change-log entries, or
    /// none. With [`Durability::Immediate`] it returns once they are on disk.
    ///
    /// # Errors
    /// [`Error::Failed`] if an earlier write of this transaction failed in storage (the
    /// transaction is rolled back) or the store failed; storage errors. If a durable
    /// commit's flush fails, the commit may or may not have reached disk and the
    /// database refuses further writes until reopened.
    pub fn commit(mut self) -> Result<()> {
        if let Some(reason) = self.poisoned.take() {
            return Err(Error::Failed { reason });
        }
        if let Some(dir) = self.indexes.take_dirty() {
            let sealed = crate::index::seal_directory(&self.db.inner.vault, &dir)?;
            self.mutate(|tx| tx.insert(Table::Meta, crate::index::META_INDEXES, &sealed))?;
        }
        let durable = self.durability == Durability::Immediate;
        let db = self.db;
        if !self.watch {
            self.tx.commit(durable).map_err(|e| db.storage_err(e))?;
            db.inner.hooks.fire();
            return Ok(());
        }
        // The ticket is taken while this transaction still holds the writer lock, so
        // ticket order is commit order; it is published whatever the outcome.
        let hub = &db.inner.hub;
        let ticket = hub.ticket();
        let result = self.tx.commit(durable).map_err(|e| db.storage_err(e));
        hub.publish(
            ticket,
            if result.is_ok() {
                self.written
            } else {
                Vec::new()
            },
        );
        if result.is_ok() {
            db.inner.hooks.fire();
        }
        result
    }

    /// Up to `limit` change-log entries after `after`, as this transaction sees them
    /// (for the sync layer, which takes local changes over inside its own transaction).
    ///
    /// # Errors
    /// [`Error::Corruption`].
    pub fn changes_after(&mut self, after: u64, limit: usize) -> Result<Vec<Change>> {
        changes_after(&mut self.tx, &self.db.inner.vault, after, limit)
    }

    /// The sequence number of the newest change-log entry this transaction sees (0 when
    /// none).
    #[must_use]
    pub fn last_seq(&self) -> u64 {
        self.counters.next_seq.saturating_sub(1)
    }

    /// For the sync layer: removes change-log entries with sequence numbers up to `upto`
    /// (entries it has taken over), except the newest entry of the log, which is kept so
    /// sequence numbers are never reused. Returns how many were removed. Each call is
    /// bounded by `max` removals.
    ///
    /// # Errors
    /// Storage errors (the transaction is then poisoned).
    pub fn prune_changes(&mut self, upto: u64, max: usize) -> Result<u64> {
        let newest = self.counters.next_seq.saturating_sub(1);
        let upto = upto.min(newest.saturating_sub(1));
        let mut keys = Vec::new();
        self.tx
            .scan(
                Table::Changes,
                (
                    std::ops::Bound::Unbounded,
                    std::ops::Bound::Included(&upto.to_be_bytes()[..]),
                ),
                |k, _| {
                    keys.push(k.to_vec());
                    Ok::<_, blazedb_storage::StorageError>(if keys.len() >= max {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    })
                },
            )
            .map_err(|e| self.db.storage_err(e))?;
        let n = keys.len() as u64;
        self.mutate(|tx| {
            for k in &keys {
                tx.remove(Table::Changes, k)?;
            }
            Ok(())
        })?;
        Ok(n)
    }

    /// Rolls back (the same as dropping the transaction).
    pub fn rollback(self) {}
}
