//! What a [`Collection`] does: a named collection on a database; each call is its own
//! transaction.
//!
//! Above the handle and the transactions (it imports them; they import nothing of it).
//! The struct itself is defined with the [`Database`] it borrows, in `handle`, so the
//! handle's constructor [`Database::collection`] names nothing above the handle.

use blazedb_core::{DocId, Document, Result};

use crate::handle::{Collection, Database};
use crate::txn::Patch;

impl Database {
    /// A handle on collection `name`. The name is checked on use; the collection comes
    /// into existence with its first write.
    #[must_use]
    pub fn collection(&self, name: &str) -> Collection<'_> {
        Collection {
            db: self,
            name: name.to_owned(),
        }
    }
}

impl Collection<'_> {
    /// The database this handle writes to.
    #[must_use]
    pub fn database(&self) -> &Database {
        self.db
    }

    /// The collection's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    fn write<T>(&self, f: impl FnOnce(&mut crate::WriteTxn<'_>) -> Result<T>) -> Result<T> {
        let mut tx = self.db.begin_write()?;
        let out = f(&mut tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Inserts a new document. See [`crate::WriteTxn::insert`].
    ///
    ///
    /// ```
    /// # fn main() -> blazedb::Result<()> {
    /// use blazedb::{Database, Document, KdfParams};
    ///
    /// let dir = tempfile::tempdir().expect("tempdir");
    /// let db = Database::builder()
    ///     .kdf(KdfParams::INSECURE_FAST)
    ///     .open(dir.path(), "notes", "password")?;
    /// let todo = db.collection("todo");
    /// let id = todo.insert(Document::new().with("title", "write docs"))?;
    /// let doc = todo.get(id)?.expect("just inserted");
    /// assert_eq!(doc.get("title"), Some(&"write docs".into()));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`crate::WriteTxn::insert`].
    pub fn insert(&self, doc: Document) -> Result<DocId> {
        self.write(|tx| tx.insert(&self.name, doc))
    }

    /// Creates or replaces a document; returns whether it was created.
    ///
    /// # Errors
    /// As [`crate::WriteTxn::put`].
    pub fn put(&self, doc: Document) -> Result<bool> {
        self.write(|tx| tx.put(&self.name, doc))
    }

    /// Patches a document; returns it as patched.
    ///
    ///
    /// ```
    /// # fn main() -> blazedb::Result<()> {
    /// use blazedb::{Database, Document, KdfParams, Patch};
    ///
    /// let dir = tempfile::tempdir().expect("tempdir");
    /// let db = Database::builder()
    ///     .kdf(KdfParams::INSECURE_FAST)
    ///     .open(dir.path(), "notes", "password")?;
    /// let todo = db.collection("todo");
    /// let id = todo.insert(Document::new().with("title", "x").with("done", false))?;
    /// let doc = todo.patch(id, &Patch::new().set("done", true).unset("title"))?;
    /// assert_eq!(doc.get("done"), Some(&true.into()));
    /// assert_eq!(doc.get("title"), None);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`crate::WriteTxn::patch`].
    pub fn patch(&self, id: DocId, patch: &Patch) -> Result<Document> {
        self.write(|tx| tx.patch(&self.name, id, patch))
    }

    /// Deletes a document.
    ///
    /// # Errors
    /// As [`crate::WriteTxn::delete`].
    pub fn delete(&self, id: DocId) -> Result<()> {
        self.write(|tx| tx.delete(&self.name, id))
    }

    /// Reads a document.
    ///
    /// # Errors
    /// As [`crate::ReadTxn::get`].
    pub fn get(&self, id: DocId) -> Result<Option<Document>> {
        self.db.begin_read()?.get(&self.name, id)
    }

    /// Every document, sorted by id.
    ///
    /// # Errors
    /// As [`crate::ReadTxn::all`].
    pub fn all(&self) -> Result<Vec<Document>> {
        self.db.begin_read()?.all(&self.name)
    }

    /// Number of documents.
    ///
    /// # Errors
    /// As [`crate::ReadTxn::count`].
    pub fn count(&self) -> Result<u64> {
        self.db.begin_read()?.count(&self.name)
    }

    /// Inserts every document in one transaction, or none if any fails.
    ///
    /// # Errors
    /// The first error of [`crate::WriteTxn::insert`]; nothing is written then.
    pub fn insert_many(&self, docs: impl IntoIterator<Item = Document>) -> Result<Vec<DocId>> {
        self.write(|tx| docs.into_iter().map(|d| tx.insert(&self.name, d)).collect())
    }

    /// Puts every document in one transaction, or none if any fails.
    ///
    /// # Errors
    /// The first error of [`crate::WriteTxn::put`]; nothing is written then.
    pub fn put_many(&self, docs: impl IntoIterator<Item = Document>) -> Result<()> {
        self.write(|tx| {
            docs.into_iter()
                .try_for_each(|d| tx.put(&self.name, d).map(drop))
        })
    }

    /// Deletes every listed document in one transaction, or none if any is missing.
    ///
    /// # Errors
    /// The first error of [`crate::WriteTxn::delete`]; nothing is deleted then.
    pub fn delete_many(&self, ids: impl IntoIterator<Item = DocId>) -> Result<()> {
        self.write(|tx| ids.into_iter().try_for_each(|id| tx.delete(&self.name, id)))
    }

    /// Deletes the collection and all its documents.
    ///
    /// # Errors
    /// As [`crate::WriteTxn::drop_collection`].
    pub fn drop_all(&self) -> Result<u64> {
        self.write(|tx| tx.drop_collection(&self.name))
    }
}
