//! Group commit.
//!
//! Every write transaction commits to redb with `Durability::None` (ordered, visible,
//! not yet on disk), takes a ticket, then waits until the durable watermark reaches its
//! ticket. One waiter at a time becomes the leader: it begins an empty redb transaction
//! (which waits for redb's writer lock, so every commit that already returned is ordered
//! before it), reads the commit counter, and commits with `Durability::Immediate`. redb
//! guarantees that this persists every earlier non-durable commit, so one fsync makes a
//! whole group durable. Waiters whose ticket is now covered return; others repeat.
//!
//! Invariant: `durable <= committed`, and `durable` only moves to a counter value read
//! after redb's writer lock was held, so it never covers a commit that was not persisted.
//! Invariant: after a failed flush the store is failed for writes: the state of the file
//! after a failed fsync is unknown, and retrying could acknowledge lost data.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::StorageError;

#[derive(Default)]
struct State {
    committed: u64,
    durable: u64,
    flushing: bool,
    failed: Option<String>,
    flushes: u64,
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
    /// fsyncing flushes performed.
    pub flushes: u64,
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

    /// Records a finished commit and returns its ticket.
    pub(crate) fn note_commit(&self) -> u64 {
        let mut s = self.lock();
        s.committed += 1;
        s.committed
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
