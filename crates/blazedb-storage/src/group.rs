//! Group commit.
//!
//! Every commit is made in redb non-durably and appended to the journal (`journal.rs`)
//! under a ticket. A durable commit then waits until the durable watermark reaches its
//! ticket. One waiter at a time leads a flush: it first lets every write transaction
//! that was in flight when it took the lead finish (they join this flush instead of
//! waiting for the next), then reads the commit counter under the journal lock (every
//! counted commit has its frame written) and syncs the journal: one `fdatasync` covers
//! the whole group. It holds no lock while it syncs, so writers go on appending.
//! A checkpoint (a durable redb commit) also moves the watermark: everything committed
//! before it is in the data file durably.
//!
//! Invariant: `durable <= committed`, and `durable` only moves to a counter value read
//! while every commit it counts had its frame written (or was made durable in redb by a
//! checkpoint), so it never covers an unpersisted commit.
//! Invariant: after a failed flush the store is failed for writes: the state of the file
//! after a failed fsync is unknown, and retrying could acknowledge lost data.
//! Invariant: the leader waits only for writers that started before it took the lead;
//! each of those finishes (commit or rollback) without waiting for the leader, so the
//! wait is bounded and later writers cannot starve it.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::error::StorageError;

#[derive(Default)]
struct State {
    committed: u64,
    durable: u64,
    flushing: bool,
    failed: Option<String>,
    flushes: u64,
    checkpoints: u64,
    writes_started: u64,
    writes_finished: u64,
}

/// Group-commit bookkeeping for one store.
#[derive(Default)]
pub struct GroupCommit {
    state: Mutex<State>,
    cv: Condvar,
}

/// Counters for benchmarks and status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupStats {
    /// Commits made (durable or not).
    pub commits: u64,
    /// Commits known to be on disk.
    pub durable: u64,
    /// Journal syncs performed by group leaders.
    pub flushes: u64,
    /// Checkpoints: durable redb commits (large transactions, a full journal, close).
    pub checkpoints: u64,
}

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fails unless the store is still healthy.
    pub(crate) fn check(&self) -> Result<(), StorageError> {
        match &self.lock().failed {
            Some(reason) => Err(StorageError::Failed(reason.clone())),
            None => Ok(()),
        }
    }

    /// Marks the store failed; every later write and durability wait fails.
    pub(crate) fn fail(&self, reason: String) {
        let mut s = self.lock();
        s.failed.get_or_insert(reason);
        self.cv.notify_all();
    }

    /// A write transaction is about to begin (called before waiting for redb's lock).
    pub(crate) fn write_started(&self) {
        self.lock().writes_started += 1;
    }

    /// A write transaction ended (committed, rolled back, or failed to begin).
    pub(crate) fn write_finished(&self) {
        let mut s = self.lock();
        s.writes_finished += 1;
        self.cv.notify_all();
    }

    /// Records a finished non-durable commit and returns its ticket.
    pub(crate) fn note_commit(&self) -> u64 {
        let mut s = self.lock();
        s.committed += 1;
        s.committed
    }

    /// Records a checkpoint; `own_commit` when it was a transaction's own commit (which
    /// counts as a commit too). Everything committed before it is durable. Called under
    /// the journal lock after the durable redb commit, so no commit lies between.
    pub(crate) fn note_checkpoint(&self, own_commit: bool) {
        let mut s = self.lock();
        if own_commit {
            s.committed += 1;
        }
        s.durable = s.committed;
        s.checkpoints += 1;
        self.cv.notify_all();
    }

    /// The current commit counter (read by a flush leader holding redb's writer lock).
    pub(crate) fn committed(&self) -> u64 {
        self.lock().committed
    }

    /// Counters.
    pub fn stats(&self) -> GroupStats {
        let s = self.lock();
        GroupStats {
            commits: s.committed,
            durable: s.durable,
            flushes: s.flushes,
            checkpoints: s.checkpoints,
        }
    }

    /// Waits until commit `ticket` is durable, leading a flush when nobody else is.
    /// `flush` must persist every commit made so far and return the counter value it
    /// covered.
    pub(crate) fn wait_durable(
        &self,
        ticket: u64,
        flush: impl Fn() -> Result<u64, StorageError>,
    ) -> Result<(), StorageError> {
        let mut s = self.lock();
        loop {
            if let Some(reason) = &s.failed {
                return Err(StorageError::Failed(reason.clone()));
            }
            if s.durable >= ticket {
                return Ok(());
            }
            if s.flushing {
                s = self.cv.wait(s).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            s.flushing = true;
            // Let the writers already in flight commit first, so they share this fsync.
            let in_flight = s.writes_started;
            while s.writes_finished < in_flight && s.failed.is_none() {
                s = self.cv.wait(s).unwrap_or_else(PoisonError::into_inner);
            }
            drop(s);
            let result = flush();
            s = self.lock();
            s.flushing = false;
            match result {
                Ok(covered) => {
                    s.durable = s.durable.max(covered);
                    s.flushes += 1;
                }
                Err(e) => {
                    let reason = format!("durable flush failed: {e}");
                    s.failed.get_or_insert(reason);
                    self.cv.notify_all();
                    return Err(e);
                }
            }
            self.cv.notify_all();
        }
    }
}
