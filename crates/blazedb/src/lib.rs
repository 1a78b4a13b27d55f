//! # BlazeDB
//!
//! An embedded, password-encrypted document database. This crate is the one to depend
//! on; it re-exports the engine (and, behind the `sync` feature, the sync layer when it
//! lands).
//!
//! ```
//! # fn main() -> blazedb::Result<()> {
//! use blazedb::{Database, Document, Patch};
//!
//! let dir = tempfile::tempdir().expect("tempdir");
//! let db = Database::open(dir.path(), "notes", "correct horse battery staple")?;
//! let todo = db.collection("todo");
//! let id = todo.insert(Document::new().with("title", "write docs").with("done", false))?;
//! todo.patch(id, &Patch::new().set("done", true))?;
//!
//! // Several writes across collections, atomically:
//! let mut tx = db.begin_write()?;
//! tx.insert("log", Document::new().with("event", "done"))?;
//! tx.delete("todo", id)?;
//! tx.commit()?;
//! assert_eq!(todo.count()?, 0);
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub use blazedb_engine::*;

/// The README's examples, compiled and run as doctests so the README stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
