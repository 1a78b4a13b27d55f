//! Why a write transaction refuses further writes and its commit: one of its writes
//! failed after touching storage, so committing could store half a write. Shared by the
//! transaction and index maintenance, which both write through [`mutate`].

use std::fmt;
use std::path::Path;

use blazedb_core::{Error, Result};
use blazedb_storage::{StorageError, WriteTx};

use crate::raw::storage_err;

/// What failed, with the failure's own message. The failure itself is returned to the
/// caller of the failing write; each later write and the commit report this reason in
/// [`blazedb_core::Error::Failed`].
#[derive(Debug)]
pub(crate) enum Poison {
    /// A storage mutation (document, change entry, catalog, auxiliary record) failed.
    Storage { cause: String },
    /// Changing an index failed after the document was written.
    Index { cause: String },
    /// Building a new index failed partway.
    IndexBuild { cause: String },
}

impl fmt::Display for Poison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Poison::Storage { cause } => {
                write!(f, "transaction aborted by an earlier error: {cause}")
            }
            Poison::Index { cause } => write!(f, "transaction aborted by an index error: {cause}"),
            Poison::IndexBuild { cause } => {
                write!(f, "transaction aborted by an index build error: {cause}")
            }
        }
    }
}

/// Runs a storage mutation of a write transaction whose poison slot is `poisoned`, on
/// the database in directory `path` (named in errors): refused once poisoned; a failure
/// poisons it.
pub(crate) fn mutate<'db>(
    poisoned: &mut Option<Poison>,
    path: &Path,
    tx: &mut WriteTx<'db>,
    f: impl FnOnce(&mut WriteTx<'db>) -> Result<(), StorageError>,
) -> Result<()> {
    if let Some(reason) = poisoned {
        return Err(Error::Failed {
            reason: reason.to_string(),
        });
    }
    f(tx).map_err(|e| {
        let err = storage_err(e, path);
        *poisoned = Some(Poison::Storage {
            cause: err.to_string(),
        });
        err
    })
}
