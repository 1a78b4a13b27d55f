//! Where a database's bytes go (per table, the storage engine's own accounting, and the
//! file's length), and getting unused bytes back ([`Database::compact`]). The report is
//! for users deciding whether to compact, and for the benchmark's size breakdown
//! (`blazedb-bench engine`).

use std::sync::Arc;

use blazedb_core::{Error, Result};
use blazedb_storage::{Table, TableSpace};

use crate::database::{COMPACT_FILE, DATA_FILE};
use crate::handle::Database;

/// Where a database's bytes go (see [`Database::space`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpaceReport {
    /// Bytes of the data file (`data.redb`).
    pub file_bytes: u64,
    /// Bytes of a storage page (every count of pages is in these).
    pub page_bytes: u64,
    /// Each table by name, in a fixed order.
    pub tables: Vec<(&'static str, TableSpace)>,
}

impl SpaceReport {
    /// Pages the tables use, in bytes.
    #[must_use]
    pub fn used_bytes(&self) -> u64 {
        self.tables
            .iter()
            .map(|(_, t)| (t.leaf_pages + t.branch_pages) * self.page_bytes)
            .sum()
    }

    /// File bytes no table uses: free pages, the storage engine's own bookkeeping and
    /// its allocation ahead of need ([`Database::compact`] gives them back).
    #[must_use]
    pub fn unused_bytes(&self) -> u64 {
        self.file_bytes.saturating_sub(self.used_bytes())
    }
}

/// The storage engine's page size (redb's default; the store never changes it).
const PAGE_BYTES: u64 = 4096;

impl Database {
    /// Where this database's bytes go, as of a snapshot: per table, entries, pages and
    /// how full they are; and the data file's length. Walks every page of every table
    /// (a read, like a scan of the whole file).
    ///
    /// # Errors
    /// Storage errors; I/O errors reading the file's length.
    pub fn space(&self) -> Result<SpaceReport> {
        let tx = self.inner.store.read().map_err(|e| self.storage_err(e))?;
        let mut tables = Vec::with_capacity(Table::ALL.len());
        for t in Table::ALL {
            tables.push((t.name(), tx.space(t).map_err(|e| self.storage_err(e))?));
        }
        // The database's directory, not the store's own path: a database created in this
        // process was built in a temporary directory and renamed into place.
        let file_bytes = std::fs::metadata(self.inner.path.join(DATA_FILE))
            .map_err(blazedb_core::Error::io("reading the data file's length"))?
            .len();
        Ok(SpaceReport {
            file_bytes,
            page_bytes: PAGE_BYTES,
            tables,
        })
    }
}

/// What [`Database::compact`] did: the data file's length before and after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactReport {
    /// Bytes of the data file before.
    pub before_bytes: u64,
    /// Bytes of the data file after.
    pub after_bytes: u64,
}

impl Database {
    /// Rewrites the data file without unused space: every record is copied, as stored
    /// (sealed; nothing is decrypted), in key order into a new file that then replaces
    /// the old one, so free pages are given back and pages are filled. The handle stays
    /// open and usable on the new file. Documents, indexes, the change log and sync
    /// state are unchanged (an export before and after is identical).
    ///
    /// Needs the only handle on the database (`&mut self`, no clone alive: a running
    /// sync holds a clone, so stop it and drop its handle first) and a read-write open. Takes about as long as
    /// copying the file, and briefly needs room for the copy beside it.
    ///
    /// It also upgrades: a database written by a release before format 4 is moved to
    /// it first, in one transaction (documents of formats 1–2 re-keyed in time order and
    /// sealed again, possibly compressed; the sync layer's per-document records re-keyed
    /// in their documents' order), so it gains append-ordered inserts and filled pages.
    /// Contents are unchanged.
    ///
    /// Crash-safe: the copy is built under another name and made durable before it
    /// replaces the file in one rename. A crash before the rename leaves the database as
    /// it was (the next read-write open removes the partial copy); after it, the copy.
    ///
    /// ```
    /// # fn main() -> blazedb::Result<()> {
    /// let dir = tempfile::tempdir().expect("tempdir");
    /// let mut db = blazedb::Database::builder()
    ///     .kdf(blazedb::KdfParams::INSECURE_FAST)
    ///     .open(dir.path(), "notes", "pw")?;
    /// let notes = db.collection("notes");
    /// let ids = notes.insert_many((0..1000).map(|i| blazedb::Document::new().with("n", i)))?;
    /// notes.delete_many(ids)?;
    /// let report = db.compact()?;
    /// assert!(report.after_bytes <= report.before_bytes);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::ReadOnly`] on a read-only handle; [`Error::AlreadyOpen`] while another
    /// clone of this handle exists; storage and I/O errors. An error leaves the database
    /// as it was, except one after the new file is in place but could not be opened: then
    /// the handle is failed ([`Error::Failed`]) and a reopen finds the compacted file.
    pub fn compact(&mut self) -> Result<CompactReport> {
        if self.inner.read_only {
            return Err(Error::ReadOnly {
                path: self.inner.path.clone(),
            });
        }
        let path = self.inner.path.clone();
        let live = path.join(DATA_FILE);
        let length = |what| {
            std::fs::metadata(&live)
                .map(|m| m.len())
                .map_err(Error::io(what))
        };
        let before_bytes = length("reading the data file's length")?;
        let inner = Arc::get_mut(&mut self.inner)
            .ok_or_else(|| Error::AlreadyOpen { path: path.clone() })?;
        // A database of an earlier format moves to the current one first (one
        // transaction), so the copy below is written in it.
        crate::format::to_current_format(inner)?;
        inner
            .store
            .compact(&live, &path.join(COMPACT_FILE))
            .map_err(|e| crate::raw::storage_err(e, &path))?;
        Ok(CompactReport {
            before_bytes,
            after_bytes: length("reading the compacted file's length")?,
        })
    }
}
