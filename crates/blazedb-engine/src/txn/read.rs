//! Reads and queries in a snapshot ([`ReadTxn`]).

use std::ops::ControlFlow;

use blazedb_core::name::check_name;
use blazedb_core::{DocId, Document, NameKind, Result};
use blazedb_storage::ReadTx;

use super::ReadTxn;
use crate::codec::decode_doc_only;
use crate::handle::Database;
use crate::raw::{collection_names, get_doc, scan_doc_records, scan_docs};

impl ReadTxn {
    pub(crate) fn begin(db: &Database) -> Result<ReadTxn> {
        let tx = db.inner.store.read().map_err(|e| db.storage_err(e))?;
        Ok(ReadTxn { db: db.clone(), tx })
    }

    /// The document `id` of `collection`, if present.
    ///
    /// # Errors
    /// [`Error::InvalidName`](blazedb_core::Error::InvalidName); [`Error::Corruption`](blazedb_core::Error::Corruption) if the stored record fails
    /// authentication.
    pub fn get(&self, collection: &str, id: DocId) -> Result<Option<Document>> {
        check_name(NameKind::Collection, collection)?;
        let tag = self.db.inner.vault.coll_tag(collection);
        get_doc(
            &mut &self.tx,
            &self.db.inner.vault,
            &tag,
            id,
            self.db.path(),
        )
    }

    /// Visits every document of `collection` (in no particular order) until `f` breaks.
    ///
    /// # Errors
    /// As [`ReadTxn::get`], or the first error `f` returns.
    pub fn scan(
        &self,
        collection: &str,
        mut f: impl FnMut(Document) -> Result<ControlFlow<()>>,
    ) -> Result<()> {
        check_name(NameKind::Collection, collection)?;
        let tag = self.db.inner.vault.coll_tag(collection);
        scan_docs(&mut &self.tx, &self.db.inner.vault, &tag, &mut f)
    }

    /// Every document of `collection`, sorted by id.
    ///
    /// # Errors
    /// As [`ReadTxn::scan`].
    pub fn all(&self, collection: &str) -> Result<Vec<Document>> {
        let mut docs = Vec::new();
        self.scan(collection, |d| {
            docs.push(d);
            Ok(ControlFlow::Continue(()))
        })?;
        docs.sort_by_key(|d| d.id);
        Ok(docs)
    }

    /// Number of documents in `collection`.
    ///
    /// # Errors
    /// As [`ReadTxn::scan`].
    pub fn count(&self, collection: &str) -> Result<u64> {
        check_name(NameKind::Collection, collection)?;
        let vault = &self.db.inner.vault;
        let tag = vault.coll_tag(collection);
        let mut n = 0;
        // Every record is opened (authenticated) and walked, none is built.
        scan_doc_records(&mut &self.tx, vault, &tag, &mut |plain| {
            decode_doc_only(plain, Some(&[]))?;
            n += 1;
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(n)
    }

    /// Runs a query in this snapshot, through an index when one applies.
    ///
    /// # Errors
    /// [`Error::InvalidName`](blazedb_core::Error::InvalidName) / [`Error::InvalidValue`](blazedb_core::Error::InvalidValue) for a bad query; corruption.
    pub fn query(&self, q: &crate::query::Query) -> Result<Vec<Document>> {
        q.validate()?;
        let vault = &self.db.inner.vault;
        let dir = crate::index::load_directory(&mut &self.tx, vault)?;
        match crate::query::plan::choose(q, &dir)? {
            Some(plan) => {
                crate::query::plan::run_index(&mut &self.tx, vault, q, &plan, self.db.path())
            }
            None => crate::query::run_scan(q, &mut |f| self.scan_records(&q.collection, f)),
        }
    }

    /// Number of documents `query` would return (filter, offset and limit applied).
    ///
    /// # Errors
    /// As [`ReadTxn::query`].
    pub fn count_query(&self, q: &crate::query::Query) -> Result<u64> {
        q.validate()?;
        let vault = &self.db.inner.vault;
        let dir = crate::index::load_directory(&mut &self.tx, vault)?;
        if crate::query::plan::choose(q, &dir)?.is_some() {
            return Ok(self.query(q)?.len() as u64);
        }
        crate::query::count_scan(q, &mut |f| self.scan_records(&q.collection, f))
    }

    /// Visits the opened record of every document of `collection` (see
    /// `raw::scan_doc_records`).
    fn scan_records(
        &self,
        collection: &str,
        f: &mut dyn FnMut(&[u8]) -> Result<ControlFlow<()>>,
    ) -> Result<()> {
        let vault = &self.db.inner.vault;
        scan_doc_records(&mut &self.tx, vault, &vault.coll_tag(collection), f)
    }

    /// The plan [`ReadTxn::query`] would use, with its estimate of documents read.
    ///
    /// # Errors
    /// As [`ReadTxn::query`].
    pub fn explain(&self, q: &crate::query::Query) -> Result<crate::query::Plan> {
        q.validate()?;
        let vault = &self.db.inner.vault;
        let dir = crate::index::load_directory(&mut &self.tx, vault)?;
        let plan = crate::query::plan::choose(q, &dir)?;
        let size = match &plan {
            Some(_) => 0,
            None => crate::raw::count_doc_keys(&mut &self.tx, &vault.coll_tag(&q.collection))?,
        };
        crate::query::plan::explain(&mut &self.tx, vault, q, plan.as_ref(), size)
    }

    /// Verifies every secondary index against a rebuild from the documents.
    ///
    /// # Errors
    /// [`Error::Corruption`](blazedb_core::Error::Corruption) naming the first index that disagrees.
    pub fn check_indexes(&self) -> Result<Vec<crate::index::IndexInfo>> {
        crate::index::check_all(&mut &self.tx, &self.db.inner.vault)
    }

    /// The database's secondary indexes.
    ///
    /// # Errors
    /// Corruption.
    pub fn indexes(&self) -> Result<Vec<crate::index::IndexInfo>> {
        let dir = crate::index::load_directory(&mut &self.tx, &self.db.inner.vault)?;
        Ok(dir.iter().map(crate::index::IndexRecord::info).collect())
    }

    /// Names of all collections that have ever been written to and not dropped.
    ///
    /// # Errors
    /// [`Error::Corruption`](blazedb_core::Error::Corruption).
    pub fn collections(&self) -> Result<Vec<String>> {
        collection_names(&mut &self.tx, &self.db.inner.vault)
    }

    pub(crate) fn db(&self) -> &Database {
        &self.db
    }

    pub(crate) fn raw(&self) -> &ReadTx {
        &self.tx
    }
}
