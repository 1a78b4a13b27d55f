//! The change log as the transactions see it: reading entries after a sequence number,
//! the newest sequence number, and pruning entries the sync layer has taken over.
//!
//! Invariant: the newest entry is never pruned, so sequence numbers are never reused.

use std::ops::ControlFlow;

use blazedb_core::Result;
use blazedb_storage::Table;

use super::{ReadTxn, WriteTxn};
use crate::changes::{Change, changes_after};

impl ReadTxn {
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
    /// [`Error::Corruption`](blazedb_core::Error::Corruption).
    pub fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        changes_after(&mut &self.tx, &self.db.inner.vault, after, limit)
    }
}

impl WriteTxn<'_> {
    /// Up to `limit` change-log entries after `after`, as this transaction sees them
    /// (for the sync layer, which takes local changes over inside its own transaction).
    ///
    /// # Errors
    /// [`Error::Corruption`](blazedb_core::Error::Corruption).
    pub fn changes_after(&mut self, after: u64, limit: usize) -> Result<Vec<Change>> {
        changes_after(&mut self.tx, &self.db.inner.vault, after, limit)
    }

    /// The sequence number of the newest change-log entry this transaction sees (0 when
    /// none).
    #[must_use]
    pub fn last_seq(&self) -> u64 {
        self.counters.next_seq.saturating_sub(1)
    }

    /// Removes change-log entries with sequence numbers up to `upto`, except the newest
    /// entry of the log, which is kept so sequence numbers are never reused; at most `max`
    /// of them. Returns how many were removed. The sync layer reaches it as
    /// [`crate::internal::SyncWrite::prune_changes`].
    ///
    /// # Errors
    /// Storage errors (the transaction is then poisoned).
    pub(crate) fn remove_taken_changes(&mut self, upto: u64, max: usize) -> Result<u64> {
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
}
