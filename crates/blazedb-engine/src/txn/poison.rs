//! Why a write transaction refuses further writes and its commit: one of its writes
//! failed after touching storage, so committing could store half a write.

use std::fmt;

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
