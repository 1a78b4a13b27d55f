//! The engine's internal surface, for the sync layer only: writes without change
//! capture, the sync layer's own sealed records, pruning of the change log, merged puts
//! that override this database's index refusals, and the serde helpers of the sync
//! formats.
//!
//! Why it is apart: each of these can break an invariant an application relies on — a
//! write through [`SyncDatabase::begin_apply`] is never captured in the change log, so
//! it never reaches other replicas; pruning drops history; a merged put lets two
//! documents share a unique value. The sync layer uses them under its own invariants
//! (it applies only remote changes without capture, and prunes only what it took over).
//!
//! How it is fenced: the module is hidden from the documentation, and its traits are
//! sealed (their supertrait `Sealed` cannot be named outside this crate), so no other type can
//! implement them and their methods exist only where a caller imports a trait from here
//! by name. Nothing in this module is covered by the engine's API stability.

use blazedb_core::name::check_name;
use blazedb_core::{Document, NameKind, Result};
use blazedb_storage::Table;

use std::sync::atomic::Ordering;

use crate::codec::{CaptureRecord, encode_within};
use crate::database::META_CAPTURE;
use crate::handle::Database;
use crate::index::IndexNote;
use crate::sync_records::{self, AuxRecord, log_key};
use crate::txn::{ReadTxn, WriteTxn};

/// The auxiliary namespace of per-document records, whose keys end with the
/// document's id (16 bytes): from format 4 they are stored in the order of their
/// documents' creation, as documents are, so records of new documents are written
/// together.
pub use crate::vault::DOC_NS;

/// Serde helpers for [`blazedb_core::Fields`] and [`blazedb_core::Value`] in the sync
/// layer's record and wire formats.
pub mod serde_fields {
    pub use crate::serde_fields::*;
}

mod sealed {
    /// Implemented only by the engine's own types: the traits of this module can be
    /// neither implemented nor extended outside the engine.
    pub trait Sealed {}

    impl Sealed for crate::handle::Database {}
    impl Sealed for crate::txn::ReadTxn {}
    impl Sealed for crate::txn::WriteTxn<'_> {}
}

/// Internal operations on a [`Database`], for the sync layer.
pub trait SyncDatabase: sealed::Sealed {
    /// A write transaction whose document writes are **not** captured in the change log (they are remote changes being applied, and must not echo).
    ///
    /// # Errors
    /// As [`Database::begin_write`].
    fn begin_apply(&self) -> Result<WriteTxn<'_>>;
}

/// Internal operations of a write transaction, for the sync layer: auxiliary records and
/// logs (committed atomically with the documents of the same transaction), change-log
/// pruning and merged puts.
pub trait SyncWrite: sealed::Sealed {
    /// Stores `value` under `key` in auxiliary namespace `ns` (a collection-style name).
    ///
    /// # Errors
    /// [`blazedb_core::Error::InvalidName`] for a bad namespace;
    /// [`blazedb_core::Error::TooLarge`] beyond
    /// [`blazedb_core::limits::AUX_RECORD_BYTES_MAX`]; storage errors.
    fn aux_put(&mut self, ns: &str, key: &[u8], value: &[u8]) -> Result<()>;

    /// Removes `key` from namespace `ns`; returns whether it was present.
    ///
    /// # Errors
    /// As [`SyncWrite::aux_put`].
    fn aux_remove(&mut self, ns: &str, key: &[u8]) -> Result<bool>;

    /// The value under `key` in namespace `ns`, as this transaction sees it.
    ///
    /// # Errors
    /// As [`SyncWrite::aux_put`]; [`blazedb_core::Error::Corruption`].
    fn aux_get(&mut self, ns: &str, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Every `(key, value)` of namespace `ns`, sorted by key.
    ///
    /// # Errors
    /// As [`SyncWrite::aux_get`].
    fn aux_scan(&mut self, ns: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;

    /// Stores entry `seq` of auxiliary log `ns` (an ordered, sealed sequence of records,
    /// for the sync layer's logs). Replaces an entry already at `seq`.
    ///
    /// # Errors
    /// [`blazedb_core::Error::InvalidName`] for a bad namespace; storage errors.
    fn aux_log_put(&mut self, ns: &str, seq: u64, value: &[u8]) -> Result<()>;

    /// Marks this transaction's commit as worth a wake-up: its commit hooks see
    /// [`crate::Committed::signaled`].
    fn signal_listeners(&mut self);

    /// Removes the entries of log `ns` with positions in `from..=upto`; returns how many
    /// were present. The caller bounds the range: each position is one removal.
    ///
    /// # Errors
    /// As [`SyncWrite::aux_log_put`].
    fn aux_log_remove(&mut self, ns: &str, from: u64, upto: u64) -> Result<u64>;

    /// Up to `limit` entries of log `ns` after position `after`, as this transaction sees
    /// them.
    ///
    /// # Errors
    /// As [`SyncWrite::aux_log_put`]; [`blazedb_core::Error::Corruption`].
    fn aux_log_range(&mut self, ns: &str, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>>;

    /// The newest position of log `ns`, as this transaction sees it.
    ///
    /// # Errors
    /// As [`SyncWrite::aux_log_range`].
    fn aux_log_last(&mut self, ns: &str) -> Result<Option<u64>>;

    /// Removes change-log entries with sequence numbers up to `upto` (entries the sync
    /// layer has taken over), except the newest entry of the log, which is kept so
    /// sequence numbers are never reused. Returns how many were removed. Each call is
    /// bounded by `max` removals.
    ///
    /// # Errors
    /// Storage errors (the transaction is then poisoned).
    fn prune_changes(&mut self, upto: u64, max: usize) -> Result<u64>;

    /// [`WriteTxn::put`] of a document that a merge of replicated writes decided, which
    /// this database must hold whatever its own indexes say (indexes belong to one
    /// database; the writes' origins may have none, so no rule shared by the replicas can
    /// respect them). A unique index takes the document even when another one has the
    /// same values, and values too long for an index key are indexed by a cut key (see
    /// [`crate::index::INDEX_KEY_BYTES_MAX`]); each such case is returned. Every index
    /// still holds exactly one entry per document ([`crate::ReadTxn::check_indexes`]) and
    /// queries stay exact; local writes keep being refused in both cases.
    ///
    /// # Errors
    /// As [`WriteTxn::put`], except the two index refusals.
    fn put_merged(&mut self, collection: &str, doc: Document) -> Result<Vec<IndexNote>>;

    /// Turns change capture on for good: from this transaction on, every local write is
    /// captured in the change log (a database is created without, so a local-only one
    /// pays nothing for sync). Call it in the transaction that takes the existing
    /// documents over: writes committed before it are in no log, and every write begun
    /// after it commits is captured. Idempotent.
    ///
    /// # Errors
    /// Storage errors (the transaction is then poisoned).
    fn enable_change_capture(&mut self) -> Result<()>;
}

/// Internal reads of a snapshot, for the sync layer: auxiliary records and logs.
pub trait SyncRead: sealed::Sealed {
    /// Up to `limit` entries of auxiliary log `ns` after position `after`, in order.
    ///
    /// # Errors
    /// As [`SyncWrite::aux_log_range`].
    fn aux_log_range(&self, ns: &str, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>>;

    /// The newest position of auxiliary log `ns`.
    ///
    /// # Errors
    /// As [`SyncWrite::aux_log_range`].
    fn aux_log_last(&self, ns: &str) -> Result<Option<u64>>;

    /// The value under `key` in auxiliary namespace `ns`.
    ///
    /// # Errors
    /// As [`SyncWrite::aux_get`].
    fn aux_get(&self, ns: &str, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Every `(key, value)` of namespace `ns`, sorted by key.
    ///
    /// # Errors
    /// As [`SyncWrite::aux_get`].
    fn aux_scan(&self, ns: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
}

impl SyncDatabase for Database {
    fn begin_apply(&self) -> Result<WriteTxn<'_>> {
        WriteTxn::begin(self, false)
    }
}

impl SyncWrite for WriteTxn<'_> {
    fn signal_listeners(&mut self) {
        self.signal();
    }

    fn aux_put(&mut self, ns: &str, key: &[u8], value: &[u8]) -> Result<()> {
        check_name(NameKind::Collection, ns)?;
        let vault = &self.db().inner.vault;
        let k = vault.aux_key(&vault.aux_ns_tag(ns), key);
        let bytes = encode_within(
            "aux record",
            &AuxRecord { key, value },
            blazedb_core::limits::AUX_RECORD_BYTES_MAX,
        )?;
        let sealed = vault.seal(Table::Aux, &k, &bytes);
        self.mutate(|tx| tx.insert(Table::Aux, &k, &sealed))
    }

    fn aux_remove(&mut self, ns: &str, key: &[u8]) -> Result<bool> {
        check_name(NameKind::Collection, ns)?;
        let vault = &self.db().inner.vault;
        let k = vault.aux_key(&vault.aux_ns_tag(ns), key);
        let mut present = false;
        self.mutate(|tx| {
            present = tx.remove(Table::Aux, &k)?;
            Ok(())
        })?;
        Ok(present)
    }

    fn aux_get(&mut self, ns: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let db = self.db();
        sync_records::aux_get(self.raw(), &db.inner.vault, ns, key, db)
    }

    fn aux_scan(&mut self, ns: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let db = self.db();
        sync_records::aux_scan(self.raw(), &db.inner.vault, ns)
    }

    fn aux_log_put(&mut self, ns: &str, seq: u64, value: &[u8]) -> Result<()> {
        check_name(NameKind::Collection, ns)?;
        let vault = &self.db().inner.vault;
        let k = log_key(vault, ns, seq);
        let sealed = vault.seal(Table::Aux, &k, value);
        self.mutate(|tx| tx.insert(Table::Aux, &k, &sealed))
    }

    fn aux_log_remove(&mut self, ns: &str, from: u64, upto: u64) -> Result<u64> {
        check_name(NameKind::Collection, ns)?;
        let vault = &self.db().inner.vault;
        let keys: Vec<[u8; 24]> = (from..=upto).map(|s| log_key(vault, ns, s)).collect();
        let mut removed = 0;
        self.mutate(|tx| {
            for k in &keys {
                if tx.remove(Table::Aux, k)? {
                    removed += 1;
                }
            }
            Ok(())
        })?;
        Ok(removed)
    }

    fn aux_log_range(&mut self, ns: &str, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let vault = &self.db().inner.vault;
        sync_records::aux_log_range(self.raw(), vault, ns, after, limit)
    }

    fn aux_log_last(&mut self, ns: &str) -> Result<Option<u64>> {
        let vault = &self.db().inner.vault;
        sync_records::aux_log_last(self.raw(), vault, ns)
    }

    fn prune_changes(&mut self, upto: u64, max: usize) -> Result<u64> {
        self.remove_taken_changes(upto, max)
    }

    fn put_merged(&mut self, collection: &str, doc: Document) -> Result<Vec<IndexNote>> {
        let mut notes = Vec::new();
        self.put_inner(collection, doc, Some(&mut notes))?;
        Ok(notes)
    }

    fn enable_change_capture(&mut self) -> Result<()> {
        let vault = &self.db().inner.vault;
        let rec = encode_within("capture record", &CaptureRecord { on: true }, 64)?;
        let sealed = vault.seal(Table::Meta, META_CAPTURE, &rec);
        self.mutate(|tx| tx.insert(Table::Meta, META_CAPTURE, &sealed))?;
        // Set before this transaction commits, while it holds the writer lock: the next
        // writer begins after the commit and sees it. Should the commit fail, writes are
        // captured that no one takes over; they cost space, never a lost write.
        self.db().inner.capture.store(true, Ordering::Release);
        Ok(())
    }
}

impl SyncRead for ReadTxn {
    fn aux_log_range(&self, ns: &str, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        sync_records::aux_log_range(&mut self.raw(), &self.db().inner.vault, ns, after, limit)
    }

    fn aux_log_last(&self, ns: &str) -> Result<Option<u64>> {
        sync_records::aux_log_last(&mut self.raw(), &self.db().inner.vault, ns)
    }

    fn aux_get(&self, ns: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let db = self.db();
        sync_records::aux_get(&mut self.raw(), &db.inner.vault, ns, key, db)
    }

    fn aux_scan(&self, ns: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        sync_records::aux_scan(&mut self.raw(), &self.db().inner.vault, ns)
    }
}
