//! [`Shared`]: what a store and its write transaction share — the open redb file, the
//! journal, the group-commit state and the writer mark. Below both `store` and `tx`, so
//! neither has to import the other to reach it.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;

use redb::ReadableDatabase;

use crate::error::{StorageError, guard};
use crate::group::GroupCommit;
use crate::journal::{Frames, Journal, Op, decode_ops, path_for};

/// Where the data file stores its journal epoch (see `journal.rs`): a redb table of its
/// own, outside [`Table`], so no layer above sees it. Absent means epoch 0.
const EPOCH_TABLE: redb::TableDefinition<'static, &'static [u8], &'static [u8]> =
    redb::TableDefinition::new("journal");
const EPOCH_KEY: &[u8] = b"epoch";

/// The journal epoch of the state `txn` reads.
pub(crate) fn read_epoch(txn: &redb::ReadTransaction) -> Result<u64, StorageError> {
    let table = match txn.open_table(EPOCH_TABLE) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let Some(v) = redb::ReadableTable::get(&table, EPOCH_KEY)? else {
        return Ok(0);
    };
    let bytes: [u8; 8] = v
        .value()
        .try_into()
        .map_err(|_| StorageError::Corrupted("journal epoch record malformed".into()))?;
    Ok(u64::from_be_bytes(bytes))
}

fn write_epoch(txn: &redb::WriteTransaction, epoch: u64) -> Result<(), StorageError> {
    txn.open_table(EPOCH_TABLE)?
        .insert(EPOCH_KEY, epoch.to_be_bytes().as_slice())?;
    Ok(())
}

/// Applies one frame's operations to `txn`.
fn apply_frame(txn: &redb::WriteTransaction, payload: &[u8]) -> Result<(), StorageError> {
    let mut tables: [Option<redb::Table<'_, &'static [u8], &'static [u8]>>; 6] = Default::default();
    for op in decode_ops(payload)? {
        let t = match op {
            Op::Insert(t, ..) | Op::Remove(t, _) => t,
        };
        let slot = &mut tables[t.index()];
        if slot.is_none() {
            *slot = Some(txn.open_table(t.def())?);
        }
        let Some(table) = slot.as_mut() else {
            continue;
        };
        match op {
            Op::Insert(_, k, v) => {
                table.insert(k, v)?;
            }
            Op::Remove(_, k) => {
                table.remove(k)?;
            }
        }
    }
    Ok(())
}

/// Replays the journal beside the data file at `data` into `db` (one durable commit that
/// also moves to the next epoch) and returns the epoch to write frames under. On a
/// read-only store `db` writes to memory only (the overlay), and the journal file is
/// only read.
pub(crate) fn replay(db: &redb::Database, data: &Path) -> Result<u64, StorageError> {
    let epoch = read_epoch(&db.begin_read()?)?;
    let mut frames = Frames::open(&path_for(data), epoch)?;
    let mut txn: Option<redb::WriteTransaction> = None;
    while let Some(payload) = frames.next_payload()? {
        let t = match &mut txn {
            Some(t) => t,
            None => txn.insert(db.begin_write()?),
        };
        apply_frame(t, payload)?;
    }
    let Some(mut txn) = txn else {
        return Ok(epoch);
    };
    write_epoch(&txn, epoch + 1)?;
    txn.set_durability(redb::Durability::Immediate)?;
    txn.commit()?;
    Ok(epoch + 1)
}

/// The open file and its write-side state.
pub(crate) struct Shared {
    /// `Some` until drop; taken then so the engine's own `Drop` (which closes the file
    /// and can panic on a damaged one) runs under the panic guard.
    db: Option<redb::Database>,
    /// Lock order: redb's writer lock before this one, never the reverse.
    journal: Mutex<Journal>,
    pub(crate) group: GroupCommit,
    /// The thread holding the write transaction, if any: a second `write()` or a
    /// `flush()` from that thread would wait for itself forever.
    pub(crate) writer: Mutex<Option<ThreadId>>,
    /// A commit that leaves the journal at least this long runs a checkpoint.
    checkpoint_bytes: u64,
}

impl Shared {
    /// `epoch`: what [`replay`] returned for this file.
    pub(crate) fn new(db: redb::Database, data: &Path, epoch: u64, checkpoint_bytes: u64) -> Self {
        Self {
            db: Some(db),
            journal: Mutex::new(Journal::new(data, epoch)),
            group: GroupCommit::default(),
            writer: Mutex::new(None),
            checkpoint_bytes,
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

    fn journal(&self) -> MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The epoch frames are written under now.
    pub(crate) fn epoch(&self) -> u64 {
        self.journal().epoch()
    }

    /// Commits the transaction `txn` gives (called under the panic guard, since closing
    /// its tables runs engine code) non-durably and appends its frame, in that order and under the
    /// journal lock (so frames follow commit order). Returns the commit's ticket. An
    /// error after the redb commit fails the store: the commit is visible but has no
    /// frame, so it could never become durable in order.
    pub(crate) fn commit_journaled(
        &self,
        txn: impl FnOnce() -> redb::WriteTransaction,
        payload: &[u8],
    ) -> Result<u64, StorageError> {
        let mut j = self.journal();
        guard(move || {
            txn().commit()?;
            Ok(())
        })
        .inspect_err(|e| self.fail_on_io(e))?;
        if let Err(e) = j.append(payload) {
            self.group
                .fail(format!("appending a commit to the journal failed: {e}"));
            return Err(e);
        }
        Ok(self.group.note_commit())
    }

    /// Commits `txn` durably in redb as a checkpoint (storing `at_least` or the next
    /// epoch, whichever is larger): every earlier commit becomes durable with it, and the
    /// journal starts over.
    pub(crate) fn commit_checkpoint(
        &self,
        txn: impl FnOnce() -> redb::WriteTransaction,
        at_least: u64,
    ) -> Result<(), StorageError> {
        let mut j = self.journal();
        let next = (j.epoch() + 1).max(at_least);
        guard(move || {
            let mut txn = txn();
            write_epoch(&txn, next)?;
            txn.set_durability(redb::Durability::Immediate)?;
            txn.commit()?;
            Ok(())
        })
        .inspect_err(|e| self.fail_on_io(e))?;
        j.restart(next);
        self.group.note_checkpoint(true);
        Ok(())
    }

    /// Runs a checkpoint if the journal holds frames: a durable redb commit of
    /// everything committed so far, after which the journal starts over.
    pub(crate) fn checkpoint(&self) -> Result<(), StorageError> {
        let result = guard(|| {
            let txn = self.db().begin_write()?;
            let mut j = self.journal();
            if j.len() == 0 {
                return Ok(());
            }
            let next = j.epoch() + 1;
            write_epoch(&txn, next)?;
            let mut txn = txn;
            txn.set_durability(redb::Durability::Immediate)?;
            txn.commit()?;
            j.restart(next);
            self.group.note_checkpoint(false);
            Ok(())
        });
        result.inspect_err(|e| {
            self.group.fail(format!("checkpoint failed: {e}"));
        })
    }

    /// Whether the journal has grown to the checkpoint size.
    pub(crate) fn journal_full(&self) -> bool {
        self.journal().len() >= self.checkpoint_bytes
    }

    /// A failed commit may have failed its fsync: the file state is unknown.
    fn fail_on_io(&self, e: &StorageError) {
        if matches!(e, StorageError::Corrupted(_) | StorageError::Io(_)) {
            self.group.fail(e.to_string());
        }
    }

    /// Returns once every commit up to `ticket` is durable (one journal sync, shared
    /// with concurrent callers).
    pub(crate) fn wait_durable(&self, ticket: u64) -> Result<(), StorageError> {
        self.group.wait_durable(ticket, || {
            // Under the journal lock every counted commit has its frame written.
            let (file, covered) = {
                let j = self.journal();
                (j.file(), self.group.committed())
            };
            if let Some(file) = file {
                file.sync_data()?;
            }
            Ok(covered)
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
