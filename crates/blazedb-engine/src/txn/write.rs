//! The writer's life: begin (the next sequence number), storage mutations that poison
//! the transaction when they fail, durability, commit (with live events and commit
//! hooks) and rollback.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use blazedb_core::{Error, Result};
use blazedb_storage::{Table, WriteTx};

use super::WriteTxn;
use crate::codec::CountersRecord;
use crate::handle::Database;
use crate::index::maintain::{IndexCache, IndexWork};
use crate::options::Durability;

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
        // Read after taking the writer lock (`store.write` above): an enabling
        // transaction sets the flag before it commits, so it is seen here.
        let capture = capture && db.inner.capture.load(Ordering::Acquire);
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
            signal: false,
        })
    }

    /// What index maintenance works on, lent for one operation: the storage
    /// transaction, the index directory and the poison slot (an index change that fails
    /// after the document was written poisons the transaction).
    pub(crate) fn index_work(&mut self) -> IndexWork<'_, 'db> {
        IndexWork {
            tx: &mut self.tx,
            vault: &self.db.inner.vault,
            path: self.db.path(),
            cache: &mut self.indexes,
            poisoned: &mut self.poisoned,
        }
    }

    pub(crate) fn db(&self) -> &'db Database {
        self.db
    }

    pub(crate) fn raw(&mut self) -> &mut WriteTx<'db> {
        &mut self.tx
    }

    /// Whether this transaction's writes are captured in the change log: only once sync
    /// was enabled on the database (a local-only database keeps no change log), and
    /// never for transactions from [`crate::internal::SyncDatabase::begin_apply`].
    #[must_use]
    pub fn captures_changes(&self) -> bool {
        self.capture
    }

    /// Marks the commit for the commit hooks (`Committed::signaled`).
    pub(crate) fn signal(&mut self) {
        self.signal = true;
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
        crate::poison::mutate(&mut self.poisoned, self.db.path(), &mut self.tx, f)
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
        if let Some(poison) = self.poisoned.take() {
            return Err(Error::Failed {
                reason: poison.to_string(),
            });
        }
        if let Some(dir) = self.indexes.take_dirty() {
            let sealed = crate::index::seal_directory(&self.db.inner.vault, &dir)?;
            self.mutate(|tx| tx.insert(Table::Meta, crate::index::META_INDEXES, &sealed))?;
        }
        let durable = self.durability == Durability::Immediate;
        let db = self.db;
        let committed = crate::hooks::Committed {
            local_changes: self.capture && self.counters.next_seq > self.first_seq,
            signaled: self.signal,
        };
        if !self.watch {
            self.tx.commit(durable).map_err(|e| db.storage_err(e))?;
            db.inner.hooks.fire(&committed);
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
            db.inner.hooks.fire(&committed);
        }
        result
    }

    /// Rolls back (the same as dropping the transaction).
    pub fn rollback(self) {}
}
