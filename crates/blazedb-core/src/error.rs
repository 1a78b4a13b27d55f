//! The error type of the public API.
//!
//! Every error says what state it leaves behind. Unless a variant says otherwise, a
//! failed write left the database exactly as it was: transactions apply fully or not at
//! all.

use std::fmt;
use std::path::PathBuf;

use crate::id::{DocId, ParseIdError};

/// Shorthand for results of BlazeDB operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of name was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    Database,
    Collection,
    Field,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Database => "database",
            NameKind::Collection => "collection",
            NameKind::Field => "field",
        })
    }
}

/// Where corruption or tampering was detected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorruptionSite {
    /// The key file (KDF parameters, wrapped data key) failed its checksum or is malformed.
    KeyFile,
    /// The key file does not belong to this data file.
    KeyMismatch,
    /// The storage engine found a damaged page, checksum or structure.
    Storage,
    /// A stored record failed authentication or decoding. `table` names the table.
    Record { table: &'static str },
}

impl fmt::Display for CorruptionSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptionSite::KeyFile => f.write_str("key file"),
            CorruptionSite::KeyMismatch => f.write_str("key file does not match the data file"),
            CorruptionSite::Storage => f.write_str("storage engine"),
            CorruptionSite::Record { table } => write!(f, "record in table '{table}'"),
        }
    }
}

/// Everything that can go wrong in BlazeDB.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The password does not unlock this database. Nothing was modified.
    #[error("wrong password for this database")]
    WrongPassword,

    /// Another process (or another handle in this process) has the database open.
    /// Nothing was modified.
    #[error("database {path} is in use by another process or handle")]
    AlreadyOpen { path: PathBuf },

    /// The database was opened read-only (`OpenMode::ReadOnly`) and the operation would
    /// write (a write transaction, an index change, an import, a password change).
    /// Nothing was modified; reopen it read-write to write.
    #[error("database {path} is open read-only; writing needs a read-write open")]
    ReadOnly { path: PathBuf },

    /// No database exists at this path (and the options asked not to create one).
    #[error("no database at {path}")]
    DatabaseNotFound { path: PathBuf },

    /// A database already exists at this path (and the options asked to create a new one).
    #[error("a database already exists at {path}")]
    DatabaseExists { path: PathBuf },

    /// The document does not exist. Nothing was modified.
    #[error("document {id} not found in collection '{collection}'")]
    NotFound { collection: String, id: DocId },

    /// An insert found a document with the same id. Nothing was modified.
    #[error("document {id} already exists in collection '{collection}'")]
    AlreadyExists { collection: String, id: DocId },

    /// The write would give two documents equal values in a unique index. Nothing was
    /// modified.
    #[error("unique index '{index}' already holds document {existing} with these values")]
    UniqueViolation { index: String, existing: DocId },

    /// An index with this name exists already. Nothing was modified.
    #[error("an index named '{name}' already exists")]
    IndexExists { name: String },

    /// An import record (line `line`, counting from 1) is malformed or cannot be stored.
    /// Unless the import was asked to be partial, nothing was imported.
    #[error("bad record at line {line}: {reason}")]
    BadRecord { line: u64, reason: String },

    /// A database, collection or field name breaks a naming rule. Nothing was modified.
    #[error("invalid {kind} name '{name}': {reason}")]
    InvalidName {
        kind: NameKind,
        name: String,
        reason: &'static str,
    },

    /// A value, option or argument is not acceptable. Nothing was modified.
    #[error("invalid value: {reason}")]
    InvalidValue { reason: String },

    /// Something is larger than its limit (see `blazedb_core::limits`). Nothing was modified.
    #[error("{what} is too large: {size} bytes, over the limit of {max} bytes")]
    TooLarge {
        what: &'static str,
        size: usize,
        max: usize,
    },

    /// A typed value could not be mapped to or from a document.
    #[error("cannot map type {type_name}: {reason}")]
    Mapping {
        type_name: &'static str,
        reason: String,
    },

    /// Stored data failed authentication or is damaged: tampering, disk corruption or a
    /// bug. The operation returned no data from the damaged part.
    #[error("corruption detected in {site}: {detail}")]
    Corruption {
        site: CorruptionSite,
        detail: String,
    },

    /// The file was written by an incompatible format version.
    #[error("unsupported format version {found} in {what} (this build reads {supported})")]
    UnsupportedFormat {
        what: &'static str,
        found: u32,
        supported: u32,
    },

    /// An earlier I/O failure made the database unusable for writes (a failed fsync leaves
    /// the file's state unknown). Reopen the database to recover from the last durable
    /// commit.
    #[error("database is in a failed state after an earlier error: {reason}")]
    Failed { reason: String },

    /// The calling thread already has a write transaction open on this database (or a
    /// flush was requested while it does): waiting would deadlock. Commit or drop the
    /// open transaction first. Nothing was modified.
    #[error("this thread already has a write transaction open on this database")]
    TransactionInProgress,

    /// The operating system's random-number generator failed, so a key, salt or name
    /// that must be unpredictable could not be made. `context` says what was being made.
    /// Nothing was created or modified.
    #[error("the system random-number generator failed while {context}: {source}")]
    Random {
        context: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// An operating-system I/O error. `context` says what was being done.
    #[error("I/O error while {context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl From<ParseIdError> for Error {
    fn from(e: ParseIdError) -> Self {
        Error::InvalidValue {
            reason: e.to_string(),
        }
    }
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> Error {
        move |source| Error::Io { context, source }
    }

    /// Wraps a failure of the system random-number generator with what was being made.
    pub fn random<E>(context: &'static str) -> impl FnOnce(E) -> Error
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        move |e| Error::Random {
            context,
            source: Box::new(e),
        }
    }

    /// A record that failed to decrypt or decode.
    #[must_use]
    pub fn corrupt_record(table: &'static str, detail: impl Into<String>) -> Error {
        Error::Corruption {
            site: CorruptionSite::Record { table },
            detail: detail.into(),
        }
    }
}
