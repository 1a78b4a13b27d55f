//! Options for opening a database.

use blazedb_crypto::KdfParams;

/// The default page cache size of [`OpenOptions::cache_size`]: 128 MiB. Measured
/// (`blazedb-bench engine`, 100,000 documents, a 136 MiB file): against the storage
/// engine's 1 GiB default, a one-transaction bulk load is ~20 % slower, point gets and
/// opening with verification unchanged; 64 MiB made the bulk load ~30 % slower and the
/// verifying open of that file up to twice as slow.
pub const DEFAULT_CACHE_BYTES: usize = 128 << 20;

/// The commit journal's default size before a checkpoint (see
/// [`OpenOptions::checkpoint_bytes`]).
pub const DEFAULT_CHECKPOINT_BYTES: u64 = blazedb_storage::DEFAULT_CHECKPOINT_BYTES;

/// When a commit is reported done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// `commit` returns once the transaction is on disk: it survives a process crash or
    /// power loss at any instant. Concurrent committers share one fsync (group commit).
    #[default]
    Immediate,
    /// `commit` returns once the transaction is visible to readers; it reaches disk with
    /// the next durable commit, [`crate::Database::flush`] or a clean close. A crash may lose it
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
    /// Every write — [`crate::Database::begin_write`], `begin_apply`, index changes, imports,
    /// password changes — fails with [`Error::ReadOnly`](blazedb_core::Error::ReadOnly)
    /// before anything is touched. [`crate::Database::flush`] succeeds (there is nothing to
    /// flush), and [`crate::Database::backup_to`] works (it only reads this database).
    ReadOnly,
}

/// A builder for opening a database with options other than the defaults.
///
/// ```
/// # fn main() -> blazedb::Result<()> {
/// use blazedb::{Durability, KdfParams, OpenOptions};
/// let dir = tempfile::tempdir().expect("tempdir");
/// let db = OpenOptions::new()
///     .kdf(KdfParams::INSECURE_FAST) // tests only: cheap password hashing
///     .durability(Durability::Immediate)
///     .open(dir.path(), "notes", "correct horse")?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct OpenOptions {
    pub(crate) kdf: KdfParams,
    pub(crate) durability: Durability,
    pub(crate) mode: OpenMode,
    pub(crate) skip_verify_on_open: bool,
    pub(crate) cache_bytes: usize,
    pub(crate) checkpoint_bytes: u64,
    pub(crate) compression: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            kdf: KdfParams::default(),
            durability: Durability::default(),
            mode: OpenMode::default(),
            skip_verify_on_open: false,
            cache_bytes: DEFAULT_CACHE_BYTES,
            checkpoint_bytes: DEFAULT_CHECKPOINT_BYTES,
            compression: true,
        }
    }
}

impl OpenOptions {
    /// The defaults: Argon2id at [`KdfParams::DEFAULT`], durable commits, open or create,
    /// page checksums verified on open, a page cache of [`DEFAULT_CACHE_BYTES`], a
    /// checkpoint every [`DEFAULT_CHECKPOINT_BYTES`] of journal, records compressed where
    /// it pays.
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

    /// The cache, in bytes (default [`DEFAULT_CACHE_BYTES`]). Each open handle has its
    /// own.
    ///
    /// Seven eighths are the storage engine's page cache: recently read pages and the
    /// pages write transactions changed. One eighth holds recently read index nodes
    /// decrypted and decoded, so a query walks an index in memory while its nodes have
    /// not changed (a commit drops the nodes it wrote). Together they bound most of the
    /// memory a handle keeps beyond the documents in flight. Larger speeds up reads and
    /// large transactions on a database bigger than the cache; smaller saves resident
    /// memory. The storage engine's own default, 1 GiB, let a process that wrote twelve
    /// 15 MiB documents stay at ~850 MiB resident; 128 MiB keeps it at ~130 MiB. A cache
    /// smaller than one transaction's changes still works (pages are written out early).
    /// It changes speed and memory only, never what is stored or read.
    #[must_use]
    pub fn cache_size(mut self, bytes: usize) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// How many bytes the commit journal may hold before a commit runs a checkpoint
    /// (default [`DEFAULT_CHECKPOINT_BYTES`], 4 MiB).
    ///
    /// A commit is made durable by appending it to the journal beside the data file (one
    /// sequential write and sync); a checkpoint writes the journal's commits into the
    /// data file durably and starts the journal over. Smaller means less to replay after
    /// a crash and a smaller journal file, at the cost of more frequent checkpoints (a
    /// commit that runs one waits for it); larger the reverse. A clean close always
    /// checkpoints. It changes speed and file sizes only, never what is stored or read.
    #[must_use]
    pub fn checkpoint_bytes(mut self, bytes: u64) -> Self {
        self.checkpoint_bytes = bytes;
        self
    }

    /// Whether this handle compresses documents and change entries before sealing them
    /// (default on). A record is stored compressed (LZ4) only when that puts it in a
    /// smaller size bucket; every handle reads both kinds. Databases of an earlier format
    /// are written uncompressed until `compact` moves them to the current one.
    ///
    /// Off, a record's size bucket depends only on its encoded length; on, also on how
    /// repetitive its content is (docs/security.md, *What still leaks*). Turn it off for
    /// documents that mix secrets with text an adversary can choose and whose file sizes
    /// the adversary can watch. It changes sizes and speed only, never what is read.
    #[must_use]
    pub fn compression(mut self, on: bool) -> Self {
        self.compression = on;
        self
    }
}
