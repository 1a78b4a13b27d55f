//! The [`Database`] handle, the state its clones share, and the per-collection handles
//! that borrow it ([`Collection`], [`TypedCollection`]).
//!
//! This module sits below everything that works on a database (transactions, hooks,
//! opening and creating, export and import): they name the handle from here, and this
//! module imports none of them. Opening, creating and the public operations live in
//! `database`; the types the handle's methods take and return live in rooms below it
//! (`options`, `query`, `index`, `live`, `ndjson`), so those rooms never import it.
//!
//! The collection handles are defined here, beside the database they borrow, and only
//! their methods live in `collection` and `typed`: `Database::collection` returns a
//! `Collection` that gives the `&Database` back (`Collection::database`), and with the
//! struct in another module that pair would name each other.

use std::fmt;
use std::fs::File;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use blazedb_core::Error;
use blazedb_crypto::DataKey;
use blazedb_storage::Store;

use crate::hooks::{HookHost, Hooks};
use crate::keyfile::KeyFile;
use crate::live::Hub;
use crate::options::Durability;
use crate::raw::storage_err;
use crate::vault::Vault;

/// An open, encrypted database. Cheap to clone (a shared handle); `Send + Sync`.
/// The database closes when the last clone is dropped, flushing pending commits.
#[derive(Clone)]
pub struct Database {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) vault: Vault,
    pub(crate) durability: Durability,
    /// Live-query subscriptions and their delivery sequencer.
    pub(crate) hub: Arc<Hub>,
    /// Commit notifications for the sync layer.
    pub(crate) hooks: Hooks,
    pub(crate) path: PathBuf,
    pub(crate) name: String,
    pub(crate) data_key: DataKey,
    pub(crate) keyfile: Mutex<KeyFile>,
    /// Opened with [`OpenMode::ReadOnly`]: nothing is written.
    pub(crate) read_only: bool,
    /// Whether local writes go to the change log (the `meta/capture` record). Off until
    /// sync is first enabled: a local-only database pays nothing for sync. Set (before
    /// the enabling transaction commits, so while it holds the writer lock) by
    /// `SyncWrite::enable_change_capture`; a writer reads it after taking the writer
    /// lock, so no write begun after the enabling transaction escapes the log.
    pub(crate) capture: AtomicBool,
    /// Held (flock) for the handle's life: exclusive for a read-write handle (one owner
    /// at a time), shared for a read-only one (read-only handles coexist).
    pub(crate) _lock: File,
}

/// A handle on one collection. Every method runs in its own transaction; batch methods
/// (`*_many`) are atomic: all of the batch or none of it. For several collections in one
/// transaction use [`Database::begin_write`].
#[derive(Clone, Debug)]
pub struct Collection<'db> {
    pub(crate) db: &'db Database,
    pub(crate) name: String,
}

/// A collection whose documents map to and from `T` (see `Database::typed`).
pub struct TypedCollection<'db, T> {
    pub(crate) inner: Collection<'db>,
    pub(crate) _type: PhantomData<fn() -> T>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Subscribers blocked in recv learn that no more events will come.
        self.hub.close_all();
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl HookHost for Inner {
    fn hooks(&self) -> &Hooks {
        &self.hooks
    }
}

impl Database {
    /// A storage error of this database, naming its directory.
    pub(crate) fn storage_err(&self, e: blazedb_storage::StorageError) -> Error {
        storage_err(e, &self.inner.path)
    }

    /// The database's directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}
