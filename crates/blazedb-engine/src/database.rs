//! [`Database`]: opening, creating, locking, flushing, backup and password changes.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use blazedb_core::name::check_name;
use blazedb_core::{CorruptionSite, Error, NameKind, Result};
use blazedb_crypto::{DataKey, KdfParams};
use blazedb_storage::{Store, StoreOptions, Table};

use crate::codec::{CaptureRecord, decode, encode};
use crate::format::{META_FORMAT, sealed_format_record, verify_format};
pub use crate::handle::Database;
use crate::handle::Inner;
use crate::hooks::{CommitHook, Committed, HookHost, Hooks};
use crate::keyfile::{KeyFile, sync_dir};
use crate::options::{OpenMode, OpenOptions};
use crate::raw::storage_err;
use crate::txn::{ReadTxn, WriteTxn};
use crate::vault::Vault;

/// File names inside a database directory.
pub(crate) const KEY_FILE: &str = "blazedb.key";
pub(crate) const DATA_FILE: &str = "data.redb";
/// Where `Database::compact` builds the new data file before renaming it over
/// `DATA_FILE`; one left by an interrupted compaction is removed at a read-write open.
pub(crate) const COMPACT_FILE: &str = "data.redb.compacting";
pub(crate) const LOCK_FILE: &str = "LOCK";
/// The directory suffix: database `notes` in `dir` lives in `dir/notes.blazedb/`.
pub const DIR_SUFFIX: &str = ".blazedb";
/// Key of the change-capture record in the meta table (see [`CaptureRecord`]).
pub(crate) const META_CAPTURE: &[u8] = b"capture";

/// The directory holding database `name` in `dir`.
#[must_use]
pub fn database_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}{DIR_SUFFIX}"))
}

/// Takes the lock of the database directory `path`: exclusive for a read-write handle,
/// shared for a read-only one. `LOCK` is created (mode 0600) if missing; a read-only
/// handle opens an existing one for reading only.
fn lock(path: &Path, shared: bool) -> Result<File> {
    let lock_path = path.join(LOCK_FILE);
    let create = || {
        crate::private::file_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
    };
    let opened = if shared {
        File::open(&lock_path).or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => create(),
            _ => Err(e),
        })
    } else {
        create()
    };
    let f = opened.map_err(Error::io("opening the lock file"))?;
    // A lock just released can still be held for an instant by a child process that
    // another thread is spawning: between fork and exec the child holds copies of every
    // descriptor, close-on-exec ones included. So a refusal is retried a few times (at
    // most ~60 ms in all) before the database is reported as in use.
    for wait_ms in LOCK_RETRY_MS {
        let taken = if shared {
            f.try_lock_shared()
        } else {
            f.try_lock()
        };
        match taken {
            Ok(()) => return Ok(f),
            Err(fs::TryLockError::WouldBlock) => {
                std::thread::sleep(std::time::Duration::from_millis(wait_ms));
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(Error::Io {
                    context: "locking the database",
                    source: e,
                });
            }
        }
    }
    Err(Error::AlreadyOpen {
        path: path.to_owned(),
    })
}

/// Pauses between attempts to take a database's lock (the last attempt is followed by
/// the refusal, not a pause: its entry is 0).
const LOCK_RETRY_MS: [u64; 6] = [1, 3, 6, 15, 35, 0];

impl Database {
    /// Opens database `name` in directory `dir` with `password`, creating it if absent,
    /// with default options (see [`OpenOptions`]).
    ///
    /// ```
    /// # fn main() -> blazedb_core::Result<()> {
    /// use blazedb_engine::{Database, Document};
    /// let dir = tempfile::tempdir().expect("tempdir");
    /// let db = Database::open(dir.path(), "notes", "correct horse")?;
    /// let id = db.collection("todo").insert(Document::new().with("title", "ship it"))?;
    /// assert_eq!(db.collection("todo").get(id)?.and_then(|d| d.get("title").cloned()),
    ///            Some("ship it".into()));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// - [`Error::WrongPassword`]: the password does not unlock it (nothing modified).
    /// - [`Error::AlreadyOpen`]: another process or handle has it open (with
    ///   [`OpenMode::ReadOnly`]: another handle has it open read-write). Nothing modified.
    /// - [`Error::InvalidName`], [`Error::InvalidValue`] (empty password).
    /// - [`Error::Corruption`], [`Error::UnsupportedFormat`], [`Error::Io`].
    pub fn open(dir: impl AsRef<Path>, name: &str, password: impl AsRef<[u8]>) -> Result<Database> {
        OpenOptions::new().open(dir, name, password)
    }

    /// A builder for non-default options.
    #[must_use]
    pub fn builder() -> OpenOptions {
        OpenOptions::new()
    }

    pub(crate) fn open_with(
        dir: &Path,
        name: &str,
        password: &[u8],
        opts: &OpenOptions,
    ) -> Result<Database> {
        check_name(NameKind::Database, name)?;
        if password.is_empty() {
            return Err(Error::InvalidValue {
                reason: "the password must not be empty".into(),
            });
        }
        let path = database_path(dir, name);
        let exists = path.join(KEY_FILE).exists();
        if !exists && path.join(DATA_FILE).exists() {
            // The data is there but not the key that unlocks it: neither "no database"
            // (creating one would fail, the directory exists) nor anything a password
            // can fix.
            return Err(Error::Corruption {
                site: CorruptionSite::KeyFile,
                detail: format!(
                    "{} holds a data file but its key file {KEY_FILE} is missing; without \
                     it the data cannot be decrypted: restore {KEY_FILE} (or the whole \
                     database) from a backup",
                    path.display()
                ),
            });
        }
        match (exists, opts.mode) {
            (true, OpenMode::CreateNew) => Err(Error::DatabaseExists { path }),
            (false, OpenMode::OpenExisting | OpenMode::ReadOnly) => {
                Err(Error::DatabaseNotFound { path })
            }
            (true, _) => Self::open_existing(path, name, password, opts),
            (false, _) => match Self::create(dir, &path, name, password, opts) {
                // Lost a creation race: the other creator's database is there now.
                Err(Error::DatabaseExists { .. }) if opts.mode == OpenMode::OpenOrCreate => {
                    Self::open_existing(path, name, password, opts)
                }
                other => other,
            },
        }
    }

    fn store_options(opts: &OpenOptions) -> StoreOptions {
        // An eighth of the cache holds decoded index nodes (see `OpenOptions::cache_size`),
        // the rest the storage engine's pages.
        let decoded = opts.cache_bytes / 8;
        StoreOptions {
            verify_on_open: !opts.skip_verify_on_open,
            cache_bytes: Some(opts.cache_bytes - decoded),
            value_cache_bytes: decoded as u64,
            checkpoint_bytes: opts.checkpoint_bytes,
            ..StoreOptions::default()
        }
    }

    fn open_existing(
        path: PathBuf,
        name: &str,
        password: &[u8],
        opts: &OpenOptions,
    ) -> Result<Database> {
        let read_only = opts.mode == OpenMode::ReadOnly;
        let lock = lock(&path, read_only)?;
        let keyfile = KeyFile::read(&path.join(KEY_FILE))?;
        let data_key = keyfile.unlock(password)?;
        let vault = Vault::new(data_key.keyring());
        vault.set_compression(opts.compression);
        let data = path.join(DATA_FILE);
        let store = if read_only {
            // Nothing a read-only open does reaches the file: the pairing is checked
            // after it (below), like every other open.
            Store::open_read_only(&data, &Self::store_options(opts))
        } else {
            // Check the pairing through a read-only open first: a read-write open may
            // write (recovery, integrity check), and a refused open must leave the file
            // untouched. A file that needs crash recovery cannot be opened this way;
            // then the read-write open below recovers it and the check runs after.
            // A partial copy left by an interrupted `compact` (see `COMPACT_FILE`); the
            // exclusive lock is held, so no compaction is running.
            match fs::remove_file(path.join(COMPACT_FILE)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io("removing an interrupted compaction's copy")(e));
                }
                _ => {}
            }
            let sealed = match Store::peek(&data, Table::Meta, &[META_FORMAT, META_CAPTURE]) {
                Ok(sealed) => sealed,
                // A file that needs crash recovery: recover it in memory first (the
                // read-only store's overlay), so a file whose recovery fails, or that
                // does not pair with the key file, is refused untouched. Only then may
                // the read-write open below repair it on disk.
                Err(blazedb_storage::StorageError::NeedsRecovery) => {
                    let probe = Store::open_read_only(&data, &Self::store_options(opts))
                        .map_err(|e| storage_err(e, &path))?;
                    let tx = probe.read().map_err(|e| storage_err(e, &path))?;
                    let mut sealed = Vec::with_capacity(2);
                    for key in [META_FORMAT, META_CAPTURE] {
                        sealed.push(
                            tx.get(Table::Meta, key)
                                .map_err(|e| storage_err(e, &path))?,
                        );
                    }
                    sealed
                }
                Err(e) => return Err(storage_err(e, &path)),
            };
            verify_format(&vault, keyfile.db_id, sealed[0].as_deref())?;
            capture_of(&vault, sealed[1].as_deref())?;
            Store::open(&data, &Self::store_options(opts))
        }
        .map_err(|e| storage_err(e, &path))?;
        let db = Self::assemble(store, vault, path, name, data_key, keyfile, lock, opts);
        db.check_format()?;
        db.load_capture()?;
        Ok(db)
    }

    /// Reads whether local writes are captured in the change log (see `Inner::capture`).
    /// A database from before the record existed has none, and keeps capturing.
    fn load_capture(&self) -> Result<()> {
        let tx = self.inner.store.read().map_err(|e| self.storage_err(e))?;
        let sealed = tx
            .get(Table::Meta, META_CAPTURE)
            .map_err(|e| self.storage_err(e))?;
        let on = capture_of(&self.inner.vault, sealed.as_deref())?;
        self.inner.capture.store(on, Ordering::Release);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        store: Store,
        vault: Vault,
        path: PathBuf,
        name: &str,
        data_key: DataKey,
        keyfile: KeyFile,
        lock: File,
        opts: &OpenOptions,
    ) -> Database {
        Database {
            inner: Arc::new(Inner {
                store,
                vault,
                durability: opts.durability,
                hub: Arc::default(),
                hooks: Hooks::default(),
                path,
                name: name.to_owned(),
                data_key,
                keyfile: Mutex::new(keyfile),
                read_only: opts.mode == OpenMode::ReadOnly,
                capture: AtomicBool::new(false),
                _lock: lock,
            }),
        }
    }

    /// Verifies the identity record: proves the key file belongs to this data file.
    fn check_format(&self) -> Result<()> {
        let tx = self.inner.store.read().map_err(|e| self.storage_err(e))?;
        let sealed = tx
            .get(Table::Meta, META_FORMAT)
            .map_err(|e| self.storage_err(e))?;
        let db_id = self
            .inner
            .keyfile
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .db_id;
        let version = verify_format(&self.inner.vault, db_id, sealed.as_deref())?;
        self.inner.vault.set_format(version);
        Ok(())
    }

    /// Creates the database in a temporary directory, then renames it into place, so a
    /// crash during creation never leaves a half-made database under the real name.
    fn create(
        dir: &Path,
        path: &Path,
        name: &str,
        password: &[u8],
        opts: &OpenOptions,
    ) -> Result<Database> {
        opts.kdf.validate().map_err(|e| Error::InvalidValue {
            reason: e.to_string(),
        })?;
        crate::private::create_dir_all(dir).map_err(Error::io("creating the parent directory"))?;
        let mut suffix = [0u8; 8];
        blazedb_crypto::random_bytes(&mut suffix)
            .map_err(Error::random("making the temporary directory's name"))?;
        let tmp = dir.join(format!(
            ".{name}{DIR_SUFFIX}.creating-{}",
            u64::from_le_bytes(suffix)
        ));
        crate::private::create_dir(&tmp).map_err(Error::io("creating the database directory"))?;
        let made = Self::create_in(&tmp, name, password, opts);
        let db = match made {
            Ok(db) => db,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        if fs::rename(&tmp, path).is_err() {
            drop(db);
            let _ = fs::remove_dir_all(&tmp);
            return Err(Error::DatabaseExists {
                path: path.to_owned(),
            });
        }
        sync_dir(dir)?;
        // The lock file moved with the directory: the lock is still held.
        let mut inner = Arc::try_unwrap(db.inner).map_err(|_| Error::Failed {
            reason: "database handle shared during creation".into(),
        })?;
        inner.path = path.to_owned();
        Ok(Database {
            inner: Arc::new(inner),
        })
    }

    fn create_in(tmp: &Path, name: &str, password: &[u8], opts: &OpenOptions) -> Result<Database> {
        let lock = lock(tmp, false)?;
        let data_key = DataKey::generate().map_err(Error::random("making the data key"))?;
        let mut db_id = [0u8; 16];
        blazedb_crypto::random_bytes(&mut db_id)
            .map_err(Error::random("making the database id"))?;
        let keyfile = KeyFile::seal(&data_key, password, opts.kdf, db_id)?;
        keyfile.write_atomic(&tmp.join(KEY_FILE))?;
        let store = Store::create(&tmp.join(DATA_FILE), &Self::store_options(opts))
            .map_err(|e| storage_err(e, tmp))?;
        let vault = Vault::new(data_key.keyring());
        vault.set_compression(opts.compression);
        let db = Self::assemble(
            store,
            vault,
            tmp.to_owned(),
            name,
            data_key,
            keyfile,
            lock,
            opts,
        );
        let mut tx = db.inner.store.write().map_err(|e| db.storage_err(e))?;
        let sealed = sealed_format_record(&db.inner.vault, db_id)?;
        tx.insert(Table::Meta, META_FORMAT, &sealed)
            .map_err(|e| db.storage_err(e))?;
        // A new database is local-only until sync is enabled: no change log.
        let rec = encode("capture record", &CaptureRecord { on: false })?;
        let sealed = db.inner.vault.seal(Table::Meta, META_CAPTURE, &rec);
        tx.insert(Table::Meta, META_CAPTURE, &sealed)
            .map_err(|e| db.storage_err(e))?;
        tx.commit(true).map_err(|e| db.storage_err(e))?;
        sync_dir(tmp)?;
        Ok(db)
    }

    /// The database's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether this handle was opened with [`OpenMode::ReadOnly`] (every write fails with
    /// [`Error::ReadOnly`]).
    #[must_use]
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    fn refuse_if_read_only(&self) -> Result<()> {
        if self.inner.read_only {
            return Err(Error::ReadOnly {
                path: self.inner.path.clone(),
            });
        }
        Ok(())
    }

    /// Calls `hook` after every successful commit of this database (local writes and
    /// applied remote changes alike), with what the commit carried, until the returned
    /// guard is dropped.
    ///
    /// # Errors
    /// [`Error::TooLarge`] beyond [`crate::hooks::COMMIT_HOOKS_MAX`] hooks.
    pub fn on_commit(
        &self,
        hook: impl Fn(&Committed) + Send + Sync + 'static,
    ) -> Result<CommitHook> {
        let host: Arc<dyn HookHost> = Arc::clone(&self.inner) as Arc<dyn HookHost>;
        Hooks::register(host, hook)
    }

    /// Begins a read transaction: a consistent snapshot that never blocks writers.
    ///
    /// # Errors
    /// Storage errors.
    pub fn begin_read(&self) -> Result<ReadTxn> {
        ReadTxn::begin(self)
    }

    /// Begins the write transaction, waiting for any other writer to finish. Dropping it
    /// without `commit` rolls it back.
    ///
    /// # Errors
    /// Storage errors; [`Error::Failed`] after an earlier fatal error;
    /// [`Error::ReadOnly`] on a read-only handle (nothing begun).
    pub fn begin_write(&self) -> Result<WriteTxn<'_>> {
        WriteTxn::begin(self, true)
    }

    /// Makes every commit so far durable, including [`crate::Durability::Eventual`] ones. On a
    /// read-only handle there are none, and it returns at once.
    ///
    /// # Errors
    /// [`Error::Failed`] if the flush fails (the database then refuses writes).
    pub fn flush(&self) -> Result<()> {
        self.inner.store.flush().map_err(|e| self.storage_err(e))
    }

    /// Writes a consistent online copy of the database as database `name` in `dir`
    /// (which must not exist). Writers are not blocked; a read-only handle can be the
    /// source. The copy opens with the same password (as of the backup). Its directory is
    /// created mode 0700 and its files 0600, like a new database's; so are `dir` and its
    /// missing parents if they do not exist.
    ///
    /// # Errors
    /// [`Error::DatabaseExists`] if the target exists; I/O and storage errors (nothing is
    /// left under the target's name: the copy is made in a temporary directory renamed
    /// into place).
    pub fn backup_to(&self, dir: impl AsRef<Path>, name: &str) -> Result<()> {
        check_name(NameKind::Database, name)?;
        let dir = dir.as_ref();
        let dest = database_path(dir, name);
        if dest.exists() {
            return Err(Error::DatabaseExists { path: dest });
        }
        crate::private::create_dir_all(dir).map_err(Error::io("creating the backup directory"))?;
        let tmp = dir.join(format!(".{name}{DIR_SUFFIX}.backup-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        crate::private::create_dir(&tmp).map_err(Error::io("creating the backup directory"))?;
        let result = (|| {
            let keyfile = self
                .inner
                .keyfile
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            keyfile.write_atomic(&tmp.join(KEY_FILE))?;
            // The copy is complete: even a read-only open of it finds its lock file.
            crate::private::create_new_file(&tmp.join(LOCK_FILE))
                .map_err(Error::io("creating the backup's lock file"))?;
            self.inner
                .store
                .backup_to(&tmp.join(DATA_FILE))
                .map_err(|e| self.storage_err(e))?;
            sync_dir(&tmp)?;
            fs::rename(&tmp, &dest).map_err(|_| Error::DatabaseExists { path: dest.clone() })?;
            sync_dir(dir)
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }

    /// Changes the password: re-wraps the data key under the new password with fresh
    /// salt, keeping the KDF parameters. No data is rewritten. Atomic: after a crash the
    /// old or the new password works.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] for an empty password; [`Error::ReadOnly`] on a read-only
    /// handle; I/O errors. Each leaves the old password in place.
    pub fn change_password(&self, new_password: impl AsRef<[u8]>) -> Result<()> {
        let kdf = self
            .inner
            .keyfile
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .kdf;
        self.change_password_with(new_password, kdf)
    }

    /// Changes the password and the KDF parameters (e.g. to raise the cost).
    ///
    /// # Errors
    /// As [`Database::change_password`]; [`Error::InvalidValue`] for bad parameters.
    pub fn change_password_with(
        &self,
        new_password: impl AsRef<[u8]>,
        kdf: KdfParams,
    ) -> Result<()> {
        self.refuse_if_read_only()?;
        let pw = new_password.as_ref();
        if pw.is_empty() {
            return Err(Error::InvalidValue {
                reason: "the password must not be empty".into(),
            });
        }
        kdf.validate().map_err(|e| Error::InvalidValue {
            reason: e.to_string(),
        })?;
        let mut guard = self
            .inner
            .keyfile
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let next = KeyFile::seal(&self.inner.data_key, pw, kdf, guard.db_id)?;
        next.write_atomic(&self.inner.path.join(KEY_FILE))?;
        *guard = next;
        Ok(())
    }

    /// The KDF parameters currently protecting the database.
    #[must_use]
    pub fn kdf_params(&self) -> KdfParams {
        self.inner
            .keyfile
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .kdf
    }
}

// Here rather than in `options`, so that the options module stays below the database.
impl OpenOptions {
    /// Opens (or creates) the database `name` in directory `dir`.
    ///
    /// # Errors
    /// See [`Database::open`].
    pub fn open(
        &self,
        dir: impl AsRef<Path>,
        name: &str,
        password: impl AsRef<[u8]>,
    ) -> Result<Database> {
        Database::open_with(dir.as_ref(), name, password.as_ref(), self)
    }
}

/// Whether the sealed `meta/capture` record says local writes are captured; a database
/// without the record (made before it existed) captures.
fn capture_of(vault: &Vault, sealed: Option<&[u8]>) -> Result<bool> {
    match sealed {
        None => Ok(true),
        Some(sealed) => {
            let plain = vault.open(Table::Meta, META_CAPTURE, sealed)?;
            Ok(decode::<CaptureRecord>("meta", &plain)?.on)
        }
    }
}
