//! The writer's index operations: create, drop and list indexes, in this transaction.
//! The work itself is index maintenance's ([`crate::index`]), on what the transaction
//! lends it.

use blazedb_core::Result;

use super::WriteTxn;
use crate::index::{IndexInfo, IndexSpec};

impl WriteTxn<'_> {
    /// Creates an index and fills it from the collection's documents, in this
    /// transaction (so a crash before commit leaves no index at all).
    ///
    /// # Errors
    /// [`Error::InvalidName`](blazedb_core::Error::InvalidName) / [`Error::InvalidValue`](blazedb_core::Error::InvalidValue) for a bad spec; [`Error::IndexExists`](blazedb_core::Error::IndexExists) for an existing
    /// name; [`Error::UniqueViolation`](blazedb_core::Error::UniqueViolation) if existing documents violate a unique index;
    /// [`Error::TooLarge`](blazedb_core::Error::TooLarge) for an indexed value too large. The transaction stays usable
    /// after these errors.
    pub fn create_index(&mut self, spec: &IndexSpec) -> Result<IndexInfo> {
        self.index_work().create_index(spec)
    }

    /// Removes an index; returns whether it existed.
    ///
    /// # Errors
    /// Storage errors (which poison the transaction).
    pub fn drop_index(&mut self, name: &str) -> Result<bool> {
        self.index_work().drop_index(name)
    }

    /// The indexes, as this transaction sees them.
    ///
    /// # Errors
    /// Corruption.
    pub fn indexes(&mut self) -> Result<Vec<IndexInfo>> {
        self.index_work().indexes()
    }
}
