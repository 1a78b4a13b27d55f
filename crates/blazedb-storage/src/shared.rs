//! [`Shared`]: what a store and its write transaction share — the open redb file, the
//! journal, the group-commit state and the writer mark. Below both `store` and `tx`, so
//! neither has to import the other to reach it.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;

use redb::ReadableDatabase;

use crate::cache::ValueCache;
use crate::error::{StorageError, guard};
use crate::group::GroupCommit;
use crate::journal::{Frames, Journal, Op, decode_ops, path_for, random_id};
use crate::snapshot::Latest;

/// Where the data file keeps its journal state (see `journal.rs`): a redb table of its
/// own, outside [`crate::table::Table`], so no layer above sees it. `epoch` → the epoch
/// (u64 BE; absent means 0); `position` → the position of the last journaled commit the
/// state holds: epoch, cycle id, sequence (3 × u64 BE; absent after a checkpoint).
const STATE_TABLE: redb::TableDefinition<'static, &'static [u8], &'static [u8]> =
    redb::TableDefinition::new("journal");
const EPOCH_KEY: &[u8] = b"epoch";
const POSITION_KEY: &[u8] = b"position";

/// The position of a journal frame: (epoch, cycle id, sequence).
pub(crate) type Position = (u64, u64, u64);

fn read_u64s<const N: usize>(
    table: &redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
    key: &[u8],
) -> Result<Option<[u64; N]>, StorageError> {
    let Some(v) = redb::ReadableTable::get(table, key)? else {
        return Ok(None);
    };
    let bytes = v.value();
    if bytes.len() != 8 * N {
        return Err(StorageError::Corrupted(
            "journal state record malformed".into(),
        ));
    }
    let mut out = [0u64; N];
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        *o = u64::from_be_bytes(b);
    }
    Ok(Some(out))
}

/// The journal epoch of the state `txn` reads, and the position of the last journaled
/// commit it holds (only if of that epoch).
pub(crate) fn read_state(
    txn: &redb::ReadTransaction,
) -> Result<(u64, Option<Position>), StorageError> {
    let table = match txn.open_table(STATE_TABLE) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok((0, None)),
        Err(e) => return Err(e.into()),
    };
    let epoch = read_u64s::<1>(&table, EPOCH_KEY)?.map_or(0, |[e]| e);
    let position = read_u64s::<3>(&table, POSITION_KEY)?
        .map(|[e, c, n]| (e, c, n))
        .filter(|p| p.0 == epoch);
    Ok((epoch, position))
}

/// Stores `epoch` and clears the position: the state of a checkpoint.
fn write_epoch(txn: &redb::WriteTransaction, epoch: u64) -> Result<(), StorageError> {
    let mut table = txn.open_table(STATE_TABLE)?;
    table.insert(EPOCH_KEY, epoch.to_be_bytes().as_slice())?;
    table.remove(POSITION_KEY)?;
    Ok(())
}

fn write_position(txn: &redb::WriteTransaction, p: Position) -> Result<(), StorageError> {
    let mut bytes = [0u8; 24];
    for (chunk, v) in bytes.chunks_exact_mut(8).zip([p.0, p.1, p.2]) {
        chunk.copy_from_slice(&v.to_be_bytes());
    }
    txn.open_table(STATE_TABLE)?
        .insert(POSITION_KEY, bytes.as_slice())?;
    Ok(())
}

/// Whether frame (`cycle`, `seq`) is newer than what a state at `position` holds.
fn after(position: Option<Position>, cycle: u64, seq: u64) -> bool {
    match position {
        None => true,
        // Frames of another cycle than the state's last commit are older than it: a
        // state with a position makes the next open move to a new epoch.
        Some((_, c, n)) => c == cycle && seq > n,
    }
}

/// Whether the journal beside `data` holds frames a state read by `txn` lacks.
pub(crate) fn has_pending(txn: &redb::ReadTransaction, data: &Path) -> Result<bool, StorageError> {
    let (epoch, position) = read_state(txn)?;
    let mut frames = Frames::open(&path_for(data), epoch)?;
    while let Some((cycle, seq, _)) = frames.next_frame()? {
        if after(position, cycle, seq) {
            return Ok(true);
        }
    }
    Ok(false)
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

/// Replays the journal beside the data file at `data` into `db` and returns the epoch to
/// write frames under. Frames the state already holds (up to its position) are skipped.
/// If the journal held any frame of the state's epoch, or the state a position, it
/// commits durably under a new random epoch (with the frames applied), so this session
/// never continues an epoch an earlier one wrote to. On a read-only store `db` writes to
/// memory only (the overlay), and the journal file is only read.
pub(crate) fn replay(db: &redb::Database, data: &Path) -> Result<u64, StorageError> {
    let (epoch, position) = read_state(&db.begin_read()?)?;
    let mut frames = Frames::open(&path_for(data), epoch)?;
    let mut txn: Option<redb::WriteTransaction> = None;
    let mut seen = false;
    while let Some((cycle, seq, payload)) = frames.next_frame()? {
        seen = true;
        if !after(position, cycle, seq) {
            continue;
        }
        let t = match &mut txn {
            Some(t) => t,
            None => txn.insert(db.begin_write()?),
        };
        apply_frame(t, payload)?;
    }
    if txn.is_none() && !seen && position.is_none() {
        return Ok(epoch);
    }
    let mut txn = match txn {
        Some(t) => t,
        None => db.begin_write()?,
    };
    let next = random_id();
    write_epoch(&txn, next)?;
    txn.set_durability(redb::Durability::Immediate)?;
    txn.commit()?;
    Ok(next)
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
    /// Decoded values of committed records; every commit is published through it.
    pub(crate) cache: Arc<ValueCache>,
    /// The snapshot readers share until the next commit (`snapshot.rs`); every commit
    /// that publishes clears it.
    pub(crate) latest: Latest,
}

impl Shared {
    /// `epoch`: what [`replay`] returned for this file.
    /// `checkpoint_bytes` and `fail_journal_write` as in `StoreOptions`.
    pub(crate) fn new(
        db: redb::Database,
        data: &Path,
        epoch: u64,
        checkpoint_bytes: u64,
        fail_journal_write: Option<u64>,
        cache_bytes: u64,
    ) -> Self {
        Self {
            db: Some(db),
            journal: Mutex::new(Journal::new(data, epoch, fail_journal_write)),
            group: GroupCommit::default(),
            writer: Mutex::new(None),
            checkpoint_bytes,
            cache: Arc::new(ValueCache::new(cache_bytes)),
            latest: Latest::default(),
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
    /// file, such as redb's own compaction): the snapshot readers share goes first, so
    /// no read transaction of the store's own is open (readers' handles are theirs).
    pub(crate) fn db_mut(&mut self) -> &mut redb::Database {
        self.latest.clear();
        match &mut self.db {
            Some(db) => db,
            None => unreachable!("the redb handle is taken only when the store drops"),
        }
    }

    fn journal(&self) -> MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(PoisonError::into_inner)
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
        let position = j.next_position();
        // The keys the frame writes are the keys whose cached values it changes.
        let ops = decode_ops(payload).ok();
        let mut written = ops.iter().flatten().map(|op| match *op {
            Op::Insert(t, key, _) | Op::Remove(t, key) => (t, key),
        });
        let written: Option<&mut dyn Iterator<Item = _>> = ops.is_some().then_some(&mut written);
        let published = self.cache.publish(written, || {
            guard(move || {
                let txn = txn();
                // In the same transaction: whatever redb persists of it says which
                // frame it is.
                write_position(&txn, position)?;
                txn.commit()?;
                Ok(())
            })
        });
        // Failed or not, the publish moved the sequence: the shared snapshot is stale.
        self.latest.clear();
        published.inspect_err(|e| self.fail_on_io(e))?;
        if let Err(e) = j.append(payload) {
            self.group
                .fail(format!("appending a commit to the journal failed: {e}"));
            return Err(e);
        }
        Ok(self.group.note_commit())
    }

    /// Commits `txn` durably in redb as a checkpoint (under a new random epoch): every
    /// earlier commit becomes durable with it, and the journal starts over.
    pub(crate) fn commit_checkpoint(
        &self,
        txn: impl FnOnce() -> redb::WriteTransaction,
    ) -> Result<(), StorageError> {
        let mut j = self.journal();
        let next = random_id();
        // Its writes outgrew the frame that would list them: every cached value goes.
        let published = self.cache.publish(None, || {
            guard(move || {
                let mut txn = txn();
                write_epoch(&txn, next)?;
                txn.set_durability(redb::Durability::Immediate)?;
                txn.commit()?;
                Ok(())
            })
        });
        // Failed or not, the publish moved the sequence: the shared snapshot is stale.
        self.latest.clear();
        published.inspect_err(|e| self.fail_on_io(e))?;
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
            let next = random_id();
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
        // The shared snapshot goes before the file closes. (A reader's handle that
        // outlives the store still reads the tables it had opened; opening another
        // fails as closed. The engine's read transactions keep the store alive.)
        self.latest.clear();
        let db = self.db.take();
        let _ = guard(|| {
            drop(db);
            Ok(())
        });
    }
}
