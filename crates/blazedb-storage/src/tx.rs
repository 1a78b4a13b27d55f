//! Read and write transactions over the byte tables.

use std::any::Any;
use std::ops::{Bound, ControlFlow};
use std::sync::{Arc, PoisonError};

use redb::{ReadableTable, ReadableTableMetadata};

use crate::error::{StorageError, guard};
use crate::journal::OpLog;
use crate::shared::Shared;
use crate::snapshot::{RoTable, Snapshot};
use crate::table::Table;

/// An owned key-value pair.
pub type Entry = (Vec<u8>, Vec<u8>);

/// A key range: lower and upper bound.
pub type Bounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

type RawTable<'a> = redb::Table<'a, &'static [u8], &'static [u8]>;

/// Reads `key` from any readable table.
fn get_in(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
) -> Result<Option<Vec<u8>>, StorageError> {
    Ok(t.get(key)?.map(|g| g.value().to_vec()))
}

/// Visits `range` of any readable table in key order until `f` breaks.
fn scan_in<E: From<StorageError>>(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    range: Bounds<'_>,
    mut f: impl FnMut(&[u8], &[u8]) -> Result<ControlFlow<()>, E>,
) -> Result<(), E> {
    let iter = t.range::<&[u8]>(range).map_err(StorageError::from)?;
    for item in iter {
        let (k, v) = item.map_err(StorageError::from)?;
        if f(k.value(), v.value())?.is_break() {
            break;
        }
    }
    Ok(())
}

fn last_in(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    range: Bounds<'_>,
) -> Result<Option<Entry>, StorageError> {
    Ok(t.range::<&[u8]>(range)?
        .next_back()
        .transpose()?
        .map(|(k, v)| (k.value().to_vec(), v.value().to_vec())))
}

type PanicPayload = Box<dyn std::any::Any + Send>;

/// Runs a scan with the caller's callback `f` shielded: a panic of the *caller's* code
/// is not mistaken for a storage-engine panic (which the engine's guard turns into
/// `Corrupted`). It is caught at the callback, the scan stops, and it is re-raised here,
/// outside the guard. Storage errors and `f`'s own errors come back as `E`.
fn shielded<E: From<StorageError>>(
    mut f: impl FnMut(&[u8], &[u8]) -> Result<ControlFlow<()>, E>,
    run: impl FnOnce(&mut dyn FnMut(&[u8], &[u8]) -> Result<ControlFlow<()>, E>) -> Result<(), E>,
) -> Result<(), E> {
    let mut user_panic: Option<PanicPayload> = None;
    let result = run(
        &mut |k, v| match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(k, v))) {
            Ok(r) => r,
            Err(p) => {
                user_panic = Some(p);
                Ok(ControlFlow::Break(()))
            }
        },
    );
    if let Some(p) = user_panic {
        std::panic::resume_unwind(p);
    }
    result
}

/// A consistent snapshot of the store: a handle on the redb snapshot that every reader
/// beginning before the next commit shares (see `snapshot.rs`).
pub struct ReadTx {
    snap: Arc<Snapshot>,
}

impl ReadTx {
    pub(crate) fn new(snap: Arc<Snapshot>) -> Self {
        Self { snap }
    }

    fn table(&self, t: Table) -> Result<&RoTable, StorageError> {
        self.snap.table(t)
    }

    /// The value stored under `key`.
    ///
    /// # Errors
    /// [`StorageError`] from the engine (corruption is [`StorageError::Corrupted`]).
    pub fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        guard(|| get_in(self.table(t)?, key))
    }

    /// Runs `f` on the value stored under `key`, in place (no copy is made): `None` if
    /// there is none. `f` runs outside the engine's panic guard, so a panic of the
    /// caller's code is not taken for corruption.
    ///
    /// # Errors
    /// As [`ReadTx::get`].
    pub fn get_with<R>(
        &self,
        t: Table,
        key: &[u8],
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, StorageError> {
        let found = guard(|| {
            let found = self.table(t)?.get(key)?;
            // Slicing the value out of its page can panic on a damaged page: do it once
            // here, under the guard; the second time, below, slices the same way.
            if let Some(g) = &found {
                let _ = g.value();
            }
            Ok(found)
        })?;
        Ok(found.map(|g| f(g.value())))
    }

    /// The value `decode` makes of the record under `key`, from the store's cache of
    /// decoded values when an entry valid in this snapshot is there (no lookup, no
    /// `decode`), else decoded now and offered to the cache. `decode` returns the value
    /// and about how many bytes it holds in memory; it must be a pure function of the
    /// record's bytes (the cache hands its result to every reader of the same record).
    ///
    /// Only [`Table::Index`] is cached; for other tables this is a lookup and a decode.
    ///
    /// # Errors
    /// As [`ReadTx::get`], or what `decode` returns.
    pub fn get_cached<T, E>(
        &self,
        t: Table,
        key: &[u8],
        decode: impl FnOnce(&[u8]) -> Result<(T, usize), E>,
    ) -> Result<Option<Arc<T>>, E>
    where
        T: Any + Send + Sync,
        E: From<StorageError>,
    {
        if let Some((cache, at)) = &self.snap.cache
            && let Some(hit) = cache.get(t, key, *at)
            && let Ok(value) = hit.downcast::<T>()
        {
            return Ok(Some(value));
        }
        let Some(decoded) = self.get_with(t, key, decode)? else {
            return Ok(None);
        };
        let (value, weight) = decoded?;
        let value = Arc::new(value);
        if let Some((cache, at)) = &self.snap.cache {
            cache.insert(
                t,
                key,
                *at,
                weight,
                Arc::clone(&value) as Arc<dyn Any + Send + Sync>,
            );
        }
        Ok(Some(value))
    }

    /// Visits the entries of `range` in key order until `f` returns `Break` or an error.
    ///
    /// # Errors
    /// Engine errors, or the first error `f` returns.
    pub fn scan<E: From<StorageError>>(
        &self,
        t: Table,
        range: Bounds<'_>,
        f: impl FnMut(&[u8], &[u8]) -> Result<ControlFlow<()>, E>,
    ) -> Result<(), E> {
        shielded(f, |visit| {
            guard(|| Ok(scan_in(self.table(t)?, range, visit))).map_err(E::from)?
        })
    }

    /// The entry with the largest key.
    ///
    /// # Errors
    /// Engine errors.
    pub fn last(&self, t: Table) -> Result<Option<Entry>, StorageError> {
        self.last_in(t, (Bound::Unbounded, Bound::Unbounded))
    }

    /// The entry with the largest key inside `range`.
    ///
    /// # Errors
    /// Engine errors.
    pub fn last_in(&self, t: Table, range: Bounds<'_>) -> Result<Option<Entry>, StorageError> {
        guard(|| last_in(self.table(t)?, range))
    }

    /// Number of entries in a table.
    ///
    /// # Errors
    /// Engine errors.
    pub fn len(&self, t: Table) -> Result<u64, StorageError> {
        guard(|| Ok(self.table(t)?.len()?))
    }

    /// Where a table's bytes go in this snapshot (walks the table's pages).
    ///
    /// # Errors
    /// Engine errors.
    pub fn space(&self, t: Table) -> Result<TableSpace, StorageError> {
        guard(|| {
            let table = self.table(t)?;
            let stats = table.stats()?;
            Ok(TableSpace {
                entries: table.len()?,
                height: stats.tree_height(),
                leaf_pages: stats.leaf_pages(),
                branch_pages: stats.branch_pages(),
                stored_bytes: stats.stored_bytes(),
                metadata_bytes: stats.metadata_bytes(),
                fragmented_bytes: stats.fragmented_bytes(),
            })
        })
    }
}

/// Where one table's bytes go (the storage engine's own accounting).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableSpace {
    /// Entries (key-value pairs).
    pub entries: u64,
    /// Levels of the table's B-tree.
    pub height: u32,
    /// Pages holding entries.
    pub leaf_pages: u64,
    /// Pages holding only keys that route to leaves.
    pub branch_pages: u64,
    /// Bytes of the keys and values themselves.
    pub stored_bytes: u64,
    /// Bytes of branch keys and page headers.
    pub metadata_bytes: u64,
    /// Bytes of pages not filled by either.
    pub fragmented_bytes: u64,
}

self_cell::self_cell!(
    /// The redb write transaction together with the tables opened in it.
    struct WriteCell {
        owner: redb::WriteTransaction,
        #[not_covariant]
        dependent: OpenTables,
    }
);

type OpenTables<'a> = [Option<RawTable<'a>>; 6];

/// Records the writer thread for the life of a write transaction.
struct WriterMark<'s>(&'s Shared);

impl<'s> WriterMark<'s> {
    fn new(store: &'s Shared) -> Self {
        *store.writer.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(std::thread::current().id());
        Self(store)
    }
}

impl Drop for WriterMark<'_> {
    fn drop(&mut self) {
        // Another thread's transaction may have begun since redb released its writer
        // lock (inside the commit): only clear the mark if it is still this thread's.
        let mut writer = self.0.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if *writer == Some(std::thread::current().id()) {
            *writer = None;
        }
        drop(writer);
        self.0.group.write_finished();
    }
}

/// The single write transaction. Dropping it without [`WriteTx::commit`] rolls back.
pub struct WriteTx<'s> {
    store: &'s Shared,
    /// `Some` until commit or drop; dropping it aborts the redb transaction, which runs
    /// engine code, so `Drop` does it under the panic guard.
    cell: Option<WriteCell>,
    mark: Option<WriterMark<'s>>,
    /// The writes so far, as the journal frame's payload.
    log: OpLog,
    /// Per table, once [`WriteTx::contains`] asked about it: a key no present key
    /// exceeds (see [`Ceiling`]).
    ceilings: [Ceiling; 6],
}

/// What a write transaction knows of a table's largest key, so that [`WriteTx::contains`]
/// can answer "absent" for a key above it without a lookup: keys that grow with
/// insertion order (documents of time-ordered ids) are always above it.
///
/// Invariant: every key present in the table is at most the ceiling (`Empty`: no key
/// is present). Inserts raise it; removes leave it (it stays an upper bound).
#[derive(Default)]
enum Ceiling {
    /// Not asked for yet: nothing is known, nothing is kept up to date.
    #[default]
    Unknown,
    Empty,
    Key(Vec<u8>),
}

impl Ceiling {
    /// Whether `key` is certainly absent: above every present key.
    fn above(&self, key: &[u8]) -> bool {
        match self {
            Ceiling::Unknown => false,
            Ceiling::Empty => true,
            Ceiling::Key(c) => key > c.as_slice(),
        }
    }

    /// Keeps the invariant after `key` was inserted.
    fn inserted(&mut self, key: &[u8]) {
        match self {
            Ceiling::Unknown => {}
            Ceiling::Key(c) if key <= c.as_slice() => {}
            Ceiling::Key(c) => {
                c.clear();
                c.extend_from_slice(key);
            }
            Ceiling::Empty => *self = Ceiling::Key(key.to_vec()),
        }
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        let cell = self.cell.take();
        let _ = guard(|| {
            drop(cell);
            Ok(())
        });
        drop(self.mark.take());
    }
}

impl<'s> WriteTx<'s> {
    pub(crate) fn new(store: &'s Shared, txn: redb::WriteTransaction) -> Self {
        Self {
            store,
            cell: Some(WriteCell::new(txn, |_| Default::default())),
            mark: Some(WriterMark::new(store)),
            log: OpLog::default(),
            ceilings: Default::default(),
        }
    }

    /// Runs `f` on the opened table `t`, opening it on first use.
    fn with<T>(
        &mut self,
        t: Table,
        f: impl FnOnce(&mut RawTable<'_>) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        guard(|| {
            let Some(cell) = self.cell.as_mut() else {
                return Err(StorageError::Other(
                    "write transaction already closed".into(),
                ));
            };
            cell.with_dependent_mut(|txn, tables| {
                let slot = &mut tables[t.index()];
                if slot.is_none() {
                    *slot = Some(txn.open_table(t.def())?);
                }
                match slot {
                    Some(table) => f(table),
                    None => Err(StorageError::Other("table slot empty after open".into())),
                }
            })
        })
    }

    /// The value stored under `key`, including this transaction's own writes.
    ///
    /// # Errors
    /// Engine errors.
    pub fn get(&mut self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.with(t, |table| get_in(table, key))
    }

    /// Runs `f` on the value stored under `key` (as [`ReadTx::get_with`]; here the value
    /// is copied out first, the table being borrowed per call).
    ///
    /// # Errors
    /// As [`WriteTx::get`].
    pub fn get_with<R>(
        &mut self,
        t: Table,
        key: &[u8],
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, StorageError> {
        Ok(self.get(t, key)?.map(|v| f(&v)))
    }

    /// Inserts or replaces `key`.
    ///
    /// # Errors
    /// Engine errors ([`StorageError::ValueTooLarge`] beyond the engine's limit).
    pub fn insert(&mut self, t: Table, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.with(t, |table| {
            table.insert(key, value)?;
            Ok(())
        })?;
        self.log.insert(t, key, value);
        self.ceilings[t.index()].inserted(key);
        Ok(())
    }

    /// Removes `key`; returns whether it was present.
    ///
    /// # Errors
    /// Engine errors.
    pub fn remove(&mut self, t: Table, key: &[u8]) -> Result<bool, StorageError> {
        let removed = self.with(t, |table| Ok(table.remove(key)?.is_some()))?;
        if removed {
            self.log.remove(t, key);
        }
        Ok(removed)
    }

    /// Visits `range` in key order (this transaction's writes included).
    ///
    /// # Errors
    /// Engine errors, or the first error `f` returns.
    pub fn scan<E: From<StorageError>>(
        &mut self,
        t: Table,
        range: Bounds<'_>,
        f: impl FnMut(&[u8], &[u8]) -> Result<ControlFlow<()>, E>,
    ) -> Result<(), E> {
        shielded(f, |visit| {
            self.with(t, |table| Ok(scan_in(table, range, visit)))
                .map_err(E::from)?
        })
    }

    /// The entry with the largest key.
    ///
    /// # Errors
    /// Engine errors.
    pub fn last(&mut self, t: Table) -> Result<Option<Entry>, StorageError> {
        self.last_in(t, (Bound::Unbounded, Bound::Unbounded))
    }

    /// The entry with the largest key inside `range` (this transaction's writes included).
    ///
    /// # Errors
    /// Engine errors.
    pub fn last_in(&mut self, t: Table, range: Bounds<'_>) -> Result<Option<Entry>, StorageError> {
        self.with(t, |table| last_in(table, range))
    }

    /// Commits. With `durable`, returns only once the commit is on disk (group commit:
    /// concurrent committers share one journal sync). Without, the commit is visible at
    /// once and becomes durable with the next durable commit, flush or clean close.
    ///
    /// A transaction whose writes fit one journal frame is committed in redb
    /// non-durably and appended to the journal; a larger one commits as a checkpoint
    /// (one durable redb commit, which is durable whatever `durable` says).
    ///
    /// # Errors
    /// Engine errors; [`StorageError::Failed`] if the journal write, the durable flush or
    /// the checkpoint the commit ran failed (the store is then failed; the commit may or
    /// may not be on disk, and may already be visible to readers: do not retry it on
    /// this store, reopen).
    pub fn commit(mut self, durable: bool) -> Result<(), StorageError> {
        if self.log.overflowed() {
            return self.commit_checkpoint();
        }
        let (store, cell, mark, log) = self.take()?;
        let ticket = store.commit_journaled(move || cell.into_owner(), log.payload());
        // The redb transaction is over: this thread may begin another or lead a flush.
        drop(mark);
        let ticket = ticket?;
        if store.journal_full() {
            store.checkpoint()?;
        }
        if durable {
            store.wait_durable(ticket)?;
        }
        Ok(())
    }

    /// Commits as a checkpoint: one durable redb commit under a new random journal epoch
    /// (which no frame anywhere carries, so a copy written this way never replays a
    /// journal it is put beside).
    pub(crate) fn commit_checkpoint(mut self) -> Result<(), StorageError> {
        let (store, cell, mark, _) = self.take()?;
        let result = store.commit_checkpoint(move || cell.into_owner());
        drop(mark);
        result
    }

    fn take(
        &mut self,
    ) -> Result<(&'s Shared, WriteCell, Option<WriterMark<'s>>, OpLog), StorageError> {
        let cell = self.cell.take().ok_or(StorageError::Other(
            "write transaction already closed".into(),
        ))?;
        Ok((
            self.store,
            cell,
            self.mark.take(),
            std::mem::take(&mut self.log),
        ))
    }

    /// Whether `key` is present, without copying its value.
    ///
    /// # Errors
    /// Engine errors.
    pub fn contains(&mut self, t: Table, key: &[u8]) -> Result<bool, StorageError> {
        if matches!(self.ceilings[t.index()], Ceiling::Unknown) {
            self.ceilings[t.index()] = match self.last(t)? {
                Some((k, _)) => Ceiling::Key(k),
                None => Ceiling::Empty,
            };
        }
        if self.ceilings[t.index()].above(key) {
            return Ok(false);
        }
        self.with(t, |table| Ok(table.get(key)?.is_some()))
    }
}

/// The smallest key greater than every key starting with `prefix`, or `None` if no such
/// key exists (the prefix is all `0xFF`). For prefix scans: `prefix..upper`.
#[must_use]
pub fn prefix_upper(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut upper = prefix.to_vec();
    while let Some(last) = upper.pop() {
        if last < 0xFF {
            upper.push(last + 1);
            return Some(upper);
        }
    }
    None
}
