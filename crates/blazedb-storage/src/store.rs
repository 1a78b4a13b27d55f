//! [`Store`]: opening, creating, flushing and backing up a database file.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};

use redb::ReadableDatabase;

use crate::error::{StorageError, guard};
use crate::group::GroupStats;
use crate::journal::{DEFAULT_CHECKPOINT_BYTES, path_for, sync_parent};
use crate::overlay::Overlay;
use crate::shared::{Shared, has_pending, replay};
use crate::snapshot::Snapshot;
use crate::table::Table;
use crate::tx::{ReadTx, WriteTx};

/// Options for opening a store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Verify every page checksum on open (reads the whole file). redb checks page
    /// checksums nowhere else: without this, a damaged page may be read as valid
    /// structure (e.g. a key that no longer matches, so a lookup misses).
    pub verify_on_open: bool,
    /// Page cache size in bytes (read cache and the write buffer of uncommitted pages
    /// together); `None` keeps the storage engine's default (redb: 1 GiB).
    pub cache_bytes: Option<usize>,
    /// Bytes the commit journal may hold before a commit runs a checkpoint (a durable
    /// commit of the data file, after which the journal starts over).
    pub checkpoint_bytes: u64,
    /// Bytes of decoded values (index nodes) kept in memory beside the page cache (see [`ReadTx::get_cached`]); 0 turns the cache off.
    pub value_cache_bytes: u64,
    /// Fault injection for tests: the journal write of this store's frame number N
    /// (from 0, counted from the open) fails as a full disk would. `None` in use.
    #[doc(hidden)]
    pub fail_journal_write: Option<u64>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            verify_on_open: true,
            cache_bytes: None,
            checkpoint_bytes: DEFAULT_CHECKPOINT_BYTES,
            value_cache_bytes: 0,
            fail_journal_write: None,
        }
    }
}

/// One database file.
pub struct Store {
    /// The open file, group commit and writer mark (shared with [`WriteTx`]); its `Drop`
    /// closes the file under the panic guard.
    shared: Shared,
    path: PathBuf,
    /// Opened by [`Store::open_read_only`]: every write is refused.
    read_only: bool,
    /// The page cache size it was opened with (a backup's target gets the same).
    cache_bytes: Option<usize>,
    /// See [`StoreOptions::checkpoint_bytes`].
    checkpoint_bytes: u64,
    /// See [`StoreOptions::value_cache_bytes`].
    value_cache_bytes: u64,
}

impl Store {
    /// Creates a new store file at `path` with every [`Table`], durably.
    /// The file is created with mode 0600 (owner only) before redb writes anything to it.
    ///
    /// # Errors
    /// [`StorageError::Io`] if the file exists or cannot be created.
    pub fn create(path: &Path, opts: &StoreOptions) -> Result<Store, StorageError> {
        // create_new: never initialise over an existing file. redb then initialises the
        // empty file it is given, keeping its mode.
        let mut new_file = std::fs::OpenOptions::new();
        new_file.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut new_file, 0o600);
        new_file.open(path)?;
        // A new file has no journal: one left beside it (by a file removed without its
        // journal) would otherwise be replayed into it.
        match std::fs::remove_file(path_for(path)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        let store = Self::open_inner(path, opts, true)?;
        guard(|| {
            let txn = store.db().begin_write()?;
            for t in Table::ALL {
                drop(txn.open_table(t.def())?);
            }
            txn.commit()?;
            Ok(())
        })?;
        Ok(store)
    }

    /// Opens an existing store file.
    ///
    /// # Errors
    /// [`StorageError::AlreadyOpen`] if another handle holds it; [`StorageError::Corrupted`]
    /// if it is damaged or lacks a table.
    pub fn open(path: &Path, opts: &StoreOptions) -> Result<Store, StorageError> {
        let store = Self::open_inner(path, opts, false)?;
        store.check_tables()?;
        Ok(store)
    }

    /// Opens an existing store file for reading only, leaving its bytes exactly as they
    /// were.
    ///
    /// The file is opened read-only (the operating system refuses writes to it). What
    /// redb writes while opening and closing (the header's in-use mark, the integrity
    /// check of `verify_on_open`, recovery of a file that was not closed cleanly, the
    /// allocator state at close) goes to memory and is dropped with the store (see
    /// `overlay.rs`). So page checksums are verified as in a read-write open, and a file
    /// a crash left behind is readable (recovered in memory) without being repaired.
    ///
    /// The store takes no lock of its own on the file: the caller excludes writers (the
    /// engine holds a shared lock on its `LOCK` file). [`Store::write`] fails with
    /// [`StorageError::ReadOnly`]; [`Store::flush`] has nothing to do.
    ///
    /// # Errors
    /// [`StorageError::Io`] if the file cannot be opened; [`StorageError::Corrupted`] if
    /// it is empty, damaged or lacks a table.
    pub fn open_read_only(path: &Path, opts: &StoreOptions) -> Result<Store, StorageError> {
        let file = std::fs::File::open(path)?;
        if file.metadata()?.len() == 0 {
            // redb would initialise an empty file (in memory): that is not a store.
            return Err(StorageError::Corrupted("the data file is empty".into()));
        }
        let overlay = Overlay::new(file)?;
        let db = guard(|| Ok(Self::builder(opts).create_with_backend(overlay)?))?;
        // Commits the journal holds are replayed into the overlay (memory) too: they were
        // acknowledged, so a reader must see them.
        let epoch = guard(|| replay(&db, path))?;
        let store = Self::assemble(db, path, opts, true, epoch);
        store.check_tables()?;
        Ok(store)
    }

    /// Every table exists and is readable.
    fn check_tables(&self) -> Result<(), StorageError> {
        let tx = self.read()?;
        for t in Table::ALL {
            tx.len(t)?;
        }
        Ok(())
    }

    fn builder(opts: &StoreOptions) -> redb::Builder {
        let mut b = redb::Database::builder();
        b.set_check_integrity_on_open(opts.verify_on_open);
        if let Some(bytes) = opts.cache_bytes {
            b.set_cache_size(bytes);
        }
        b
    }

    fn assemble(
        db: redb::Database,
        path: &Path,
        opts: &StoreOptions,
        read_only: bool,
        epoch: u64,
    ) -> Store {
        Store {
            shared: Shared::new(
                db,
                path,
                epoch,
                opts.checkpoint_bytes,
                opts.fail_journal_write,
                opts.value_cache_bytes,
            ),
            path: path.to_owned(),
            read_only,
            cache_bytes: opts.cache_bytes,
            checkpoint_bytes: opts.checkpoint_bytes,
            value_cache_bytes: opts.value_cache_bytes,
        }
    }

    /// Whether the store was opened with [`Store::open_read_only`].
    #[must_use]
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn open_inner(path: &Path, opts: &StoreOptions, create: bool) -> Result<Store, StorageError> {
        let (db, epoch) = guard(|| {
            let b = Self::builder(opts);
            let db = if create {
                b.create(path)?
            } else {
                b.open(path)?
            };
            // Commits acknowledged through the journal but not yet in the data file
            // durably go in now, in one durable commit (see `journal.rs`).
            let epoch = replay(&db, path)?;
            Ok((db, epoch))
        })?;
        Ok(Self::assemble(db, path, opts, false, epoch))
    }

    /// Reads values of table `t` from a closed store file without modifying it (a
    /// read-only open), one per key of `keys`, in order. Used to check a file before
    /// opening it read-write, which may write to it.
    ///
    /// # Errors
    /// [`StorageError::AlreadyOpen`] if a writer holds it; [`StorageError::NeedsRecovery`]
    /// if the file needs crash recovery or its journal holds commits to replay (a
    /// read-only open, [`Store::open_read_only`], reads those in memory); others if the
    /// file is damaged.
    pub fn peek(
        path: &Path,
        t: Table,
        keys: &[&[u8]],
    ) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        guard(|| {
            let db = redb::ReadOnlyDatabase::open(path)?;
            let txn = db.begin_read()?;
            // The same table checks as `open`, so damage they would find is refused here,
            // read-only, before a read-write open could write to the file.
            for each in Table::ALL {
                redb::ReadableTableMetadata::len(&txn.open_table(each.def())?)?;
            }
            // Commits in the journal are part of the state, and not in this view.
            if has_pending(&txn, path)? {
                return Err(StorageError::NeedsRecovery);
            }
            let table = txn.open_table(t.def())?;
            let mut values = Vec::with_capacity(keys.len());
            for key in keys {
                values.push(redb::ReadableTable::get(&table, *key)?.map(|g| g.value().to_vec()));
            }
            Ok(values)
        })
    }

    /// The engine handle. Present for the store's whole life.
    fn db(&self) -> &redb::Database {
        self.shared.db()
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Begins a snapshot read. Never blocks, never blocks the writer.
    ///
    /// # Errors
    /// [`StorageError`] from the engine.
    pub fn read(&self) -> Result<ReadTx, StorageError> {
        let cache = &self.shared.cache;
        let latest = &self.shared.latest;
        if let Some(snap) = latest.get(cache) {
            return Ok(ReadTx::new(snap));
        }
        let (txn, at) = cache.snapshot(|| guard(|| Ok(self.db().begin_read()?)));
        let snap = Arc::new(Snapshot::new(txn?, at.map(|at| (Arc::clone(cache), at))));
        if let Some(at) = at {
            latest.offer(cache, at, &snap);
        }
        Ok(ReadTx::new(snap))
    }

    /// What the store and its transactions share (unit tests of `snapshot.rs`).
    #[cfg(test)]
    pub(crate) fn shared(&mut self) -> &mut Shared {
        &mut self.shared
    }

    /// Begins the (single) write transaction, waiting for the current one to finish.
    ///
    /// # Errors
    /// [`StorageError::ReadOnly`] on a read-only store (nothing begun);
    /// [`StorageError::Failed`] after an earlier fatal error; engine errors.
    pub fn write(&self) -> Result<WriteTx<'_>, StorageError> {
        if self.read_only {
            return Err(StorageError::ReadOnly);
        }
        self.shared.group.check()?;
        self.check_not_writer()?;
        self.shared.group.write_started();
        let began = guard(|| {
            let mut txn = self.db().begin_write()?;
            txn.set_durability(redb::Durability::None)?;
            Ok(txn)
        });
        match began {
            Ok(txn) => Ok(WriteTx::new(&self.shared, txn)),
            Err(e) => {
                self.shared.group.write_finished();
                Err(e)
            }
        }
    }

    fn check_not_writer(&self) -> Result<(), StorageError> {
        let me = std::thread::current().id();
        if *self
            .shared
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            == Some(me)
        {
            return Err(StorageError::NestedWrite);
        }
        Ok(())
    }

    /// Makes every commit made so far durable (one fsync, shared with concurrent callers).
    /// On a read-only store there are none: it returns at once.
    ///
    /// # Errors
    /// [`StorageError::Failed`] if the flush (fsync) fails; the store is then failed.
    pub fn flush(&self) -> Result<(), StorageError> {
        if self.read_only {
            return Ok(());
        }
        self.check_not_writer()?;
        let ticket = self.shared.group.committed();
        self.wait_durable(ticket)
    }

    fn wait_durable(&self, ticket: u64) -> Result<(), StorageError> {
        self.shared.wait_durable(ticket)
    }

    /// Group-commit counters.
    #[must_use]
    pub fn group_stats(&self) -> GroupStats {
        self.shared.group.stats()
    }

    /// Writes a consistent copy of the current committed state to a new file at `dest`
    /// (which must not exist; created mode 0600 like every store file), durably.
    /// Concurrent writers are not blocked; a read-only store can be the source.
    ///
    /// # Errors
    /// [`StorageError::Io`] if `dest` exists or cannot be written.
    pub fn backup_to(&self, dest: &Path) -> Result<(), StorageError> {
        let snapshot = self.read()?;
        let mut target = Store::create(
            dest,
            &StoreOptions {
                cache_bytes: self.cache_bytes,
                ..StoreOptions::default()
            },
        )?;
        let mut w = target.write()?;
        // Entry by entry in key order, straight from the snapshot into the new file: no
        // table is held in memory, and pages fill as they would not under random inserts.
        for t in Table::ALL {
            snapshot.scan(t, (Bound::Unbounded, Bound::Unbounded), |k, v| {
                w.insert(t, k, v)?;
                Ok::<_, StorageError>(std::ops::ControlFlow::Continue(()))
            })?;
        }
        // A checkpoint commit (durable in the file itself; no journal beside a copy), under
        // a new random epoch no frame carries: when the copy replaces this file
        // (`compact`), or is restored beside another journal, no frame is replayed into it.
        w.commit_checkpoint()?;
        // The file grew in steps ahead of need while it was written; give the unused
        // tail back (redb's own compaction: durable commits, then a truncation). No one
        // else has the new file open.
        guard(|| {
            target.shared.db_mut().compact()?;
            Ok(())
        })
    }

    /// Rewrites the file compactly: a copy of the committed state, entries written in
    /// key order (pages filled, no free pages), replaces the file at `live`, and this
    /// store continues on the copy. `live` is where the store's file is now (it may have
    /// been renamed since it was opened); `scratch` is where the copy is built (removed
    /// first if an interrupted compaction left it). `&mut self`: no transaction is open.
    ///
    /// Crash-safe at every point: until the rename, `live` is the untouched original and
    /// `scratch` a leftover; the copy is durable (fsynced) before the rename, so after it
    /// `live` is the complete copy; the directory is fsynced so the rename itself lasts.
    ///
    /// # Errors
    /// [`StorageError::ReadOnly`] on a read-only store; I/O and engine errors. An error
    /// before the rename leaves this store as it was; after the rename the store is
    /// failed (its file is no longer the one at `live`): reopen it.
    pub fn compact(&mut self, live: &Path, scratch: &Path) -> Result<(), StorageError> {
        if self.read_only {
            return Err(StorageError::ReadOnly);
        }
        self.shared.group.check()?;
        // Everything in the data file durably, the journal empty.
        self.shared.checkpoint()?;
        match std::fs::remove_file(scratch) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        if let Err(e) = self.backup_to(scratch) {
            let _ = std::fs::remove_file(scratch);
            return Err(e);
        }
        std::fs::rename(scratch, live)?;
        let reopened = sync_parent(live).and_then(|()| {
            Store::open(
                live,
                &StoreOptions {
                    // Written and checksummed a moment ago by this process.
                    verify_on_open: false,
                    cache_bytes: self.cache_bytes,
                    checkpoint_bytes: self.checkpoint_bytes,
                    value_cache_bytes: self.value_cache_bytes,
                    fail_journal_write: None,
                },
            )
        });
        match reopened {
            Ok(store) => {
                // The old store closes on the unlinked original.
                drop(std::mem::replace(self, store));
                Ok(())
            }
            Err(e) => {
                self.shared.group.fail(format!(
                    "compaction replaced the file but reopening it failed: {e}"
                ));
                Err(e)
            }
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // A clean close checkpoints: every commit in the data file durably (non-durable
        // ones too), the journal empty. A failure here cannot be reported: durable
        // commits are in the journal and replayed at the next open; non-durable ones
        // were never acknowledged as durable.
        if !self.read_only && self.shared.group.check().is_ok() {
            let _ = self.shared.checkpoint();
        }
        // Dropping `shared` then closes the file under the panic guard.
    }
}
