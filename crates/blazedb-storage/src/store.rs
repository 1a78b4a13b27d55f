//! [`Store`]: opening, creating, flushing and backing up a database file.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::thread::ThreadId;

use redb::ReadableDatabase;

use crate::error::guard;
use crate::group::{GroupCommit, GroupStats};
use crate::tx::{ReadTx, WriteTx};
use crate::{StorageError, Table};

/// Options for opening a store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Verify every page checksum on open (reads the whole file). redb checks page
    /// checksums nowhere else: without this, a damaged page may be read as valid
    /// structure (e.g. a key that no longer matches, so a lookup misses).
    pub verify_on_open: bool,
    /// Page cache size in bytes; `None` keeps the engine's default.
    pub cache_bytes: Option<usize>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            verify_on_open: true,
            cache_bytes: None,
        }
    }
}

/// One database file.
pub struct Store {
    /// `Some` until the store drops; taken then so the engine's own `Drop` (which closes
    /// the file and can panic on a damaged one) runs under the panic guard.
    db: Option<redb::Database>,
    pub(crate) group: GroupCommit,
    /// The thread holding the write transaction, if any: a second `write()` or a
    /// `flush()` from that thread would wait for itself forever.
    pub(crate) writer: Mutex<Option<ThreadId>>,
    path: PathBuf,
}

impl Store {
    /// Creates a new store file at `path` with every [`Table`], durably.
    ///
    /// # Errors
    /// [`StorageError::Io`] if the file exists or cannot be created.
    pub fn create(path: &Path, opts: &StoreOptions) -> Result<Store, StorageError> {
        // create_new: never initialise over an existing file.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
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
        let tx = store.read()?;
        for t in Table::ALL {
            tx.len(t)?;
        }
        Ok(store)
    }

    fn open_inner(path: &Path, opts: &StoreOptions, create: bool) -> Result<Store, StorageError> {
        let db = guard(|| {
            let mut b = redb::Database::builder();
            b.set_check_integrity_on_open(opts.verify_on_open);
            if let Some(bytes) = opts.cache_bytes {
                b.set_cache_size(bytes);
            }
            Ok(if create {
                b.create(path)?
            } else {
                b.open(path)?
            })
        })?;
        Ok(Store {
            db: Some(db),
            group: GroupCommit::default(),
            writer: Mutex::new(None),
            path: path.to_owned(),
        })
    }

    /// Reads one value from a closed store file without modifying it (a read-only open).
    /// Used to check a file before opening it read-write, which may write to it.
    ///
    /// # Errors
    /// [`StorageError::AlreadyOpen`] if a writer holds it; other errors when a read-only
    /// open is impossible (e.g. the file needs crash recovery, which only a read-write
    /// open performs) or the file is damaged.
    pub fn peek(path: &Path, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        guard(|| {
            let db = redb::ReadOnlyDatabase::open(path)?;
            let txn = db.begin_read()?;
            // The same table checks as `open`, so damage they would find is refused here,
            // read-only, before a read-write open could write to the file.
            for each in Table::ALL {
                redb::ReadableTableMetadata::len(&txn.open_table(each.def())?)?;
            }
            let table = txn.open_table(t.def())?;
            let value = redb::ReadableTable::get(&table, key)?.map(|g| g.value().to_vec());
            Ok(value)
        })
    }

    /// The engine handle. Present for the store's whole life (taken only in `Drop`).
    pub(crate) fn db(&self) -> &redb::Database {
        match &self.db {
            Some(db) => db,
            None => unreachable!("the redb handle is taken only when the store drops"),
        }
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
        guard(|| Ok(ReadTx::new(self.db().begin_read()?)))
    }

    /// Begins the (single) write transaction, waiting for the current one to finish.
    ///
    /// # Errors
    /// [`StorageError::Failed`] after an earlier fatal error; engine errors.
    pub fn write(&self) -> Result<WriteTx<'_>, StorageError> {
        self.group.check()?;
        self.check_not_writer()?;
        self.group.write_started();
        let began = guard(|| {
            let mut txn = self.db().begin_write()?;
            txn.set_durability(redb::Durability::None)?;
            Ok(txn)
        });
        match began {
            Ok(txn) => Ok(WriteTx::new(self, txn)),
            Err(e) => {
                self.group.write_finished();
                Err(e)
            }
        }
    }

    fn check_not_writer(&self) -> Result<(), StorageError> {
        let me = std::thread::current().id();
        if *self.writer.lock().unwrap_or_else(PoisonError::into_inner) == Some(me) {
            return Err(StorageError::NestedWrite);
        }
        Ok(())
    }

    /// Makes every commit made so far durable (one fsync, shared with concurrent callers).
    ///
    /// # Errors
    /// [`StorageError::Failed`] if the flush (fsync) fails; the store is then failed.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.check_not_writer()?;
        let ticket = self.group.committed();
        self.wait_durable(ticket)
    }

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

    /// Group-commit counters.
    #[must_use]
    pub fn group_stats(&self) -> GroupStats {
        self.group.stats()
    }

    /// Writes a consistent copy of the current committed state to a new file at `dest`
    /// (which must not exist), durably. Concurrent writers are not blocked.
    ///
    /// # Errors
    /// [`StorageError::Io`] if `dest` exists or cannot be written.
    pub fn backup_to(&self, dest: &Path) -> Result<(), StorageError> {
        let snapshot = self.read()?;
        let target = Store::create(dest, &StoreOptions::default())?;
        let mut w = target.write()?;
        for t in Table::ALL {
            let mut rows = Vec::new();
            snapshot.scan(t, (Bound::Unbounded, Bound::Unbounded), |k, v| {
                rows.push((k.to_vec(), v.to_vec()));
                Ok::<_, StorageError>(std::ops::ControlFlow::Continue(()))
            })?;
            for (k, v) in rows {
                w.insert(t, &k, &v)?;
            }
        }
        w.commit(true)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Persist non-durable commits (Durability::Eventual) on a clean close. A failure
        // here cannot be reported; those commits were never acknowledged as durable.
        if self.group.check().is_ok() {
            let _ = self.flush();
        }
        let db = self.db.take();
        let _ = guard(|| {
            drop(db);
            Ok(())
        });
    }
}
