//! [`Shared`]: what a store and its write transaction share — the open redb file, the
//! group-commit state and the writer mark. Below both `store` and `tx`, so neither has
//! to import the other to reach it.

use std::sync::Mutex;
use std::thread::ThreadId;

use crate::error::{StorageError, guard};
use crate::group::GroupCommit;

/// The open file and its write-side state.
pub(crate) struct Shared {
    /// `Some` until drop; taken then so the engine's own `Drop` (which closes the file
    /// and can panic on a damaged one) runs under the panic guard.
    db: Option<redb::Database>,
    pub(crate) group: GroupCommit,
    /// The thread holding the write transaction, if any: a second `write()` or a
    /// `flush()` from that thread would wait for itself forever.
    pub(crate) writer: Mutex<Option<ThreadId>>,
}

impl Shared {
    pub(crate) fn new(db: redb::Database) -> Self {
        Self {
            db: Some(db),
            group: GroupCommit::default(),
            writer: Mutex::new(None),
        }
    }

    /// The engine handle. Present for the whole life (taken only in `Drop`).
    pub(crate) fn db(&self) -> &redb::Database {
        match &self.db {
            Some(db) => db,
            None => unreachable!("the redb handle is taken only when the store drops"),
        }
    }

    /// The engine handle, exclusively (for operations that need no other user of the
    /// file, such as redb's own compaction).
    pub(crate) fn db_mut(&mut self) -> &mut redb::Database {
        match &mut self.db {
            Some(db) => db,
            None => unreachable!("the redb handle is taken only when the store drops"),
        }
    }

    /// Returns once every commit up to `ticket` is durable (one fsync, shared with
    /// concurrent callers).
    pub(crate) fn wait_durable(&self, ticket: u64) -> Result<(), StorageError> {
        self.group.wait_durable(ticket, || {
            guard(|| {
                let mut txn = self.db().begin_write()?;
                // redb's writer lock is held: every commit that returned is ordered before.
                let covered = self.group.committed();
                txn.set_durability(redb::Durability::Immediate)?;
                txn.commit()?;
                Ok(covered)
            })
        })
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let db = self.db.take();
        let _ = guard(|| {
            drop(db);
            Ok(())
        });
    }
}
