//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use std::path::Path;

use blazedb_engine::{Database, KdfParams, OpenOptions, Result};

pub const PASSWORD: &str = "test password";

/// Options with cheap password hashing (tests of everything but the KDF).
pub fn fast() -> OpenOptions {
    OpenOptions::new().kdf(KdfParams::INSECURE_FAST)
}

pub fn open(dir: &Path, name: &str) -> Result<Database> {
    fast().open(dir, name, PASSWORD)
}

/// Every file of a database directory with its bytes, for "nothing changed" checks.
pub fn snapshot_files(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(path)
        .expect("read_dir")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("read"),
            )
        })
        .collect();
    out.sort();
    out
}

/// Everything a database holds that the public API can read, for "exactly this data"
/// comparisons: the catalog, every listed collection's documents, the change log.
#[derive(Clone, Debug, PartialEq)]
pub struct Contents {
    pub collections: Vec<String>,
    /// `(collection, documents sorted by id)` for each name asked for.
    pub docs: Vec<(String, Vec<blazedb_engine::Document>)>,
    pub changes: Vec<blazedb_engine::Change>,
    pub last_seq: u64,
}

/// Reads [`Contents`] from one snapshot. `names` lists the collections to read in full
/// (besides the catalog), so a damaged catalog cannot hide a collection from the check.
pub fn contents(db: &Database, names: &[&str]) -> Result<Contents> {
    let r = db.begin_read()?;
    let mut docs = Vec::new();
    for name in names {
        docs.push(((*name).to_owned(), r.all(name)?));
    }
    Ok(Contents {
        collections: r.collections()?,
        docs,
        changes: r.changes_after(0, usize::MAX)?,
        last_seq: r.last_seq()?,
    })
}

/// Copies the files of database directory `src` into a new directory `dst`.
pub fn copy_db_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("create copy dir");
    for e in std::fs::read_dir(src).expect("read_dir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), dst.join(e.file_name())).expect("copy file");
    }
}

/// Names of the entries of `dir`, sorted (for "nothing was created" checks).
pub fn dir_entries(dir: &Path) -> Vec<String> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}
