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
