//! Storage errors, converted from the engine's own.

use std::panic::AssertUnwindSafe;

/// What went wrong below the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The file is locked by another process or handle.
    #[error("the database file is already open")]
    AlreadyOpen,
    /// A damaged page, checksum or structure; or the engine panicked on one.
    #[error("storage corrupted: {0}")]
    Corrupted(String),
    /// A value exceeds what the engine can store.
    #[error("value too large for the storage engine: {0} bytes")]
    ValueTooLarge(usize),
    /// An earlier failure (failed fsync, caught panic) left the store unusable for writes.
    #[error("store failed earlier: {0}")]
    Failed(String),
    /// The file was not closed cleanly and needs crash recovery, which only a read-write
    /// open performs (a read-only open refuses it).
    #[error("the file needs crash recovery")]
    NeedsRecovery,
    /// The store was opened read-only: it begins no write transaction.
    #[error("the store is open read-only")]
    ReadOnly,
    /// The calling thread already holds this store's write transaction: waiting for a
    /// second one would deadlock.
    #[error("this thread already holds the write transaction")]
    NestedWrite,
    /// Operating-system I/O error.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Anything else the engine reported.
    #[error("storage engine: {0}")]
    Other(String),
}

impl From<redb::StorageError> for StorageError {
    fn from(e: redb::StorageError) -> Self {
        match e {
            redb::StorageError::Corrupted(m) => StorageError::Corrupted(m),
            redb::StorageError::ValueTooLarge(n) => StorageError::ValueTooLarge(n),
            redb::StorageError::Io(io) => io_or_corrupt(io),
            other => StorageError::Other(other.to_string()),
        }
    }
}

macro_rules! via_storage {
    ($($t:ty),*) => {$(
        impl From<$t> for StorageError {
            fn from(e: $t) -> Self {
                match e.into() {
                    redb::Error::Corrupted(m) => StorageError::Corrupted(m),
                    redb::Error::ValueTooLarge(n) => StorageError::ValueTooLarge(n),
                    redb::Error::Io(io) => io_or_corrupt(io),
                    redb::Error::DatabaseAlreadyOpen => StorageError::AlreadyOpen,
                    redb::Error::RepairAborted => StorageError::NeedsRecovery,
                    // The redb version is pinned: every file BlazeDB writes carries that
                    // release's format version, so another version byte is damage.
                    redb::Error::UpgradeRequired(v) => {
                        StorageError::Corrupted(format!("unknown storage format version {v}"))
                    }
                    // Every table of a BlazeDB file exists from its creation on, with fixed
                    // types: a missing table or a mismatch is damage.
                    e @ (redb::Error::TableTypeMismatch { .. }
                    | redb::Error::TableDoesNotExist(_)
                    | redb::Error::TypeDefinitionChanged { .. }
                    | redb::Error::TableIsMultimap(_)
                    | redb::Error::TableIsNotMultimap(_)) => StorageError::Corrupted(e.to_string()),
                    other => StorageError::Other(other.to_string()),
                }
            }
        }
    )*};
}

via_storage!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::CommitError,
    redb::SetDurabilityError,
    redb::CompactionError
);

/// A short read or undecodable header is damage to the file, not an OS failure.
fn io_or_corrupt(io: std::io::Error) -> StorageError {
    match io.kind() {
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData => {
            StorageError::Corrupted(format!("file truncated or malformed: {io}"))
        }
        _ => StorageError::Io(io),
    }
}

/// Runs `f`, turning a panic of the storage engine into [`StorageError::Corrupted`].
/// redb documents that a plain open of a damaged file may panic; the engine must never
/// panic on bad input.
pub(crate) fn guard<T>(f: impl FnOnce() -> Result<T, StorageError>) -> Result<T, StorageError> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(StorageError::Corrupted(format!(
                "storage engine panicked: {msg}"
            )))
        }
    }
}
