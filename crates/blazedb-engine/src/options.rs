//! Options for opening a database.

use std::path::Path;

use blazedb_crypto::KdfParams;

use crate::Database;
use blazedb_core::Result;

/// When a commit is reported done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// `commit` returns once the transaction is on disk: it survives a process crash or
    /// power loss at any instant. Concurrent committers share one fsync (group commit).
    #[default]
    Immediate,
    /// `commit` returns once the transaction is visible to readers; it reaches disk with
    /// the next durable commit, [`Database::flush`] or a clean close. A crash may lose it
    /// (never partially: transactions stay atomic).
    Eventual,
}

/// Whether opening may create a database, and whether the handle may write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OpenMode {
    /// Open the database, creating it if it does not exist.
    #[default]
    OpenOrCreate,
    /// Create a new database; fail with `DatabaseExists` if one exists.
    CreateNew,
    /// Open an existing database; fail with `DatabaseNotFound` if there is none.
    OpenExisting,
    /// Open an existing database for reading only; fail with `DatabaseNotFound` if there
    /// is none. The handle never modifies a file of the database directory:
    ///
    /// - The data file is opened read-only; what the storage engine writes while opening
    ///   and closing stays in memory. Page checksums are still verified (unless
    ///   [`OpenOptions::verify_on_open`] is off), and a file a crash left behind is
    ///   recovered in memory, not on disk: it stays as it was, and the next read-write
    ///   open recovers it.
    /// - The key file is only read.
    /// - The handle holds a **shared** lock on `LOCK`: any number of read-only handles
    ///   (in this process or others) coexist, and a read-write handle (for example a
    ///   running `blazedb-server`) and a read-only one exclude each other: whichever comes
    ///   second gets [`Error::AlreadyOpen`](blazedb_core::Error::AlreadyOpen). `LOCK`
    ///   is created (empty, mode 0600) only if it is missing.
    ///
    /// Every write — [`Database::begin_write`], `begin_apply`, index changes, imports,
    /// password changes — fails with [`Error::ReadOnly`](blazedb_core::Error::ReadOnly)
    /// before anything is touched. [`Database::flush`] succeeds (there is nothing to
    /// flush), and [`Database::backup_to`] works (it only reads this database).
    ReadOnly,
}

/// A builder for opening a database with options other than the defaults.
///
/// ```
/// # fn main() -> blazedb_core::Result<()> {
/// use blazedb_engine::{Durability, OpenOptions};
/// use blazedb_crypto::KdfParams;
/// let dir = tempfile::tempdir().expect("tempdir");
/// let db = OpenOptions::new()
///     .kdf(KdfParams::INSECURE_FAST) // tests only: cheap password hashing
///     .durability(Durability::Immediate)
///     .open(dir.path(), "notes", "correct horse")?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    pub(crate) kdf: KdfParams,
    pub(crate) durability: Durability,
    pub(crate) mode: OpenMode,
    pub(crate) skip_verify_on_open: bool,
}

impl OpenOptions {
    /// The defaults: Argon2id at [`KdfParams::DEFAULT`], durable commits, open or create,
    /// page checksums verified on open.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// KDF cost for a database created by this call (an existing database keeps the
    /// parameters stored in its key file; change them with `change_password_with`).
    #[must_use]
    pub fn kdf(mut self, kdf: KdfParams) -> Self {
        self.kdf = kdf;
        self
    }

    /// Default durability of this handle's transactions.
    #[must_use]
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// Whether to create.
    #[must_use]
    pub fn mode(mut self, mode: OpenMode) -> Self {
        self.mode = mode;
        self
    }

    /// Verify every page checksum of the file at open (the default). This is what makes
    /// damage or tampering of a closed file a typed error: the storage engine checks
    /// checksums only here, and authentication covers only the records a read returns.
    ///
    /// Turning it off makes opening a large file much faster (the check reads the whole
    /// file) but is for trusted storage only: damage then still never yields a panic or
    /// another document's data, but can make documents silently missing from reads
    /// (`tests/tamper.rs` measures this).
    #[must_use]
    pub fn verify_on_open(mut self, verify: bool) -> Self {
        self.skip_verify_on_open = !verify;
        self
    }

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
