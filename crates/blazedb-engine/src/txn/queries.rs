//! The writer's queries: what [`crate::ReadTxn::query`] answers, over this
//! transaction's own view (its uncommitted writes and indexes included), so a
//! transaction can read what it is about to commit.

use std::ops::ControlFlow;

use blazedb_core::{Document, Result};

use super::WriteTxn;
use crate::query::Query;
use crate::raw::scan_doc_records;

impl WriteTxn<'_> {
    /// Runs a query as this transaction sees the database, through an index when one
    /// applies.
    ///
    /// # Errors
    /// As [`crate::ReadTxn::query`].
    pub fn query(&mut self, q: &Query) -> Result<Vec<Document>> {
        q.validate()?;
        let db = self.db;
        let vault = &db.inner.vault;
        let dir = crate::index::load_directory(&mut self.tx, vault)?;
        match crate::query::plan::choose(q, &dir)? {
            Some(plan) => crate::query::plan::run_index(&mut self.tx, vault, q, &plan, db.path()),
            None => {
                let tag = vault.coll_tag(q.collection());
                let tx = &mut self.tx;
                crate::query::run_scan(q, &mut |f: &mut dyn FnMut(
                    &[u8],
                )
                    -> Result<ControlFlow<()>>| {
                    scan_doc_records(tx, vault, &tag, f)
                })
            }
        }
    }

    /// Number of documents [`WriteTxn::query`] would return.
    ///
    /// # Errors
    /// As [`WriteTxn::query`].
    pub fn count_query(&mut self, q: &Query) -> Result<u64> {
        Ok(self.query(q)?.len() as u64)
    }
}
