//! Exit codes and the one error type every command returns.
//!
//! Scripts rely on the codes (README "Exit codes"): they name the kind of failure, not
//! the command that failed, and never change meaning between versions.

use std::fmt;
use std::process::ExitCode;

use blazedb::Error;
use blazedb::net::{NetError, RefuseCode};
use blazedb::sync::SyncError;

/// What went wrong, as a process exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Anything not covered below (I/O errors, an interrupted operation).
    Failure = 1,
    /// The command line is wrong (clap's own code for usage errors).
    Usage = 2,
    /// The document, database or file named does not exist.
    NotFound = 3,
    /// Wrong password, the server refused the credentials, or the server refused this
    /// user's writes (read-only, or a collection outside its permissions).
    Denied = 4,
    /// Another process holds the database.
    InUse = 5,
    /// The write conflicts with what is stored: the id exists, a unique index refuses
    /// it, the database keeps the other sync role, or the database already exists.
    Conflict = 6,
    /// The input (JSON, a filter, a value, an import record) is not acceptable.
    BadInput = 7,
    /// Sync could not complete: the server is unreachable, busy (at its connection
    /// limit: try later), refused the connection, or did not answer in time.
    Sync = 8,
    /// Stored data is damaged or from an unsupported format version.
    Corrupt = 9,
}

/// A command's failure: the code, what happened, and what to do about it.
#[derive(Debug)]
pub struct CliError {
    pub exit: Exit,
    pub message: String,
    pub hint: Option<String>,
}

pub type CliResult<T = ()> = Result<T, CliError>;

impl CliError {
    pub fn new(exit: Exit, message: impl Into<String>) -> CliError {
        CliError {
            exit,
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> CliError {
        self.hint = Some(hint.into());
        self
    }

    pub fn bad_input(message: impl Into<String>) -> CliError {
        CliError::new(Exit::BadInput, message)
    }

    pub fn code(&self) -> ExitCode {
        ExitCode::from(self.exit as u8)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\nhint: {h}")?;
        }
        Ok(())
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> CliError {
        let message = e.to_string();
        let (exit, hint) = match &e {
            Error::WrongPassword => (
                Exit::Denied,
                Some("check BLAZEDB_PASSWORD, --password-file, or what you typed"),
            ),
            Error::AlreadyOpen { .. } => (
                Exit::InUse,
                Some(
                    "another process (a blazedb-server or another blazedb) holds it; stop it or wait, then retry",
                ),
            ),
            Error::DatabaseNotFound { .. } => (
                Exit::NotFound,
                Some("create it with `blazedb --db PATH create`"),
            ),
            Error::NotFound { .. } => (Exit::NotFound, None),
            Error::DatabaseExists { .. } => (Exit::Conflict, None),
            Error::AlreadyExists { .. } => (
                Exit::Conflict,
                Some(
                    "use `put` (or `import --replace`) to replace a document, or `insert` without an id",
                ),
            ),
            Error::UniqueViolation { .. } => (Exit::Conflict, None),
            Error::IndexExists { .. } => (
                Exit::Conflict,
                Some("`index list` shows the indexes; `index drop NAME` removes one"),
            ),
            Error::BadRecord { .. }
            | Error::InvalidName { .. }
            | Error::InvalidValue { .. }
            | Error::TooLarge { .. }
            | Error::Mapping { .. } => (Exit::BadInput, None),
            Error::Corruption { .. } | Error::UnsupportedFormat { .. } => (
                Exit::Corrupt,
                Some("restore from a backup (`blazedb backup` makes one); nothing was changed"),
            ),
            _ => (Exit::Failure, None),
        };
        CliError {
            exit,
            message,
            hint: hint.map(str::to_owned),
        }
    }
}

impl From<SyncError> for CliError {
    fn from(e: SyncError) -> CliError {
        match e {
            SyncError::Db(e) => CliError::from(e),
            SyncError::RoleMismatch { stored, requested } => CliError::new(
                Exit::Conflict,
                format!(
                    "this database keeps the sync role '{stored}'; it cannot sync as '{requested}'"
                ),
            )
            .hint(format!("drop --role, or pass --role {stored}")),
            SyncError::Corrupt { .. } => CliError::new(Exit::Corrupt, e.to_string()),
            SyncError::Forbidden(_) => CliError::new(Exit::Denied, e.to_string()),
            other => CliError::new(Exit::Sync, other.to_string()),
        }
    }
}

impl From<NetError> for CliError {
    fn from(e: NetError) -> CliError {
        match e {
            NetError::Sync(s) => CliError::from(s),
            other => {
                let text = other.to_string();
                let exit = match &other {
                    NetError::Refused {
                        code: RefuseCode::Busy | RefuseCode::ShuttingDown | RefuseCode::Timeout,
                        ..
                    } => Exit::Sync,
                    NetError::Refused { .. } => Exit::Denied,
                    _ => Exit::Sync,
                };
                CliError::new(exit, text)
            }
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> CliError {
        let exit = match e.kind() {
            std::io::ErrorKind::NotFound => Exit::NotFound,
            std::io::ErrorKind::AlreadyExists => Exit::Conflict,
            // Input that is not what it must be (text that is not UTF-8).
            std::io::ErrorKind::InvalidData => Exit::BadInput,
            _ => Exit::Failure,
        };
        CliError::new(exit, e.to_string())
    }
}
