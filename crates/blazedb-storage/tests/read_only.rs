//! Read-only stores: they read what was committed, refuse writes, and leave the file's
//! bytes exactly as they were, also when the file needs crash recovery or is damaged.

mod common;

use std::path::Path;

use blazedb_storage::{StorageError, Store, StoreOptions, Table};
use common::rows;

const ROWS: u32 = 500;

fn key(i: u32) -> [u8; 4] {
    i.to_be_bytes()
}

fn value(i: u32) -> Vec<u8> {
    format!("value {i} ").repeat(20).into_bytes()
}

/// A store at `path` holding `ROWS` rows in `Docs`, committed durably; still open.
fn filled(path: &Path) -> Store {
    let store = Store::create(path, &StoreOptions::default()).expect("create");
    let mut w = store.write().expect("write");
    for i in 0..ROWS {
        w.insert(Table::Docs, &key(i), &value(i)).expect("insert");
    }
    w.commit(true).expect("commit");
    store
}

fn expected_rows() -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..ROWS).map(|i| (key(i).to_vec(), value(i))).collect()
}

fn opts(verify_on_open: bool) -> StoreOptions {
    StoreOptions {
        verify_on_open,
        ..StoreOptions::default()
    }
}

#[test]
fn a_read_only_store_reads_what_was_committed_refuses_writes_and_leaves_the_file_byte_identical() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data.redb");
    drop(filled(&path));
    let before = std::fs::read(&path).expect("read file");
    for verify in [true, false] {
        let store = Store::open_read_only(&path, &opts(verify)).expect("open read-only");
        assert!(store.is_read_only());
        assert_eq!(rows(&store), expected_rows());
        assert!(matches!(store.write(), Err(StorageError::ReadOnly)));
        store.flush().expect("a read-only flush has nothing to do");
        let copy = dir.path().join(format!("copy-{verify}.redb"));
        store
            .backup_to(&copy)
            .expect("a read-only store can be backed up");
        drop(store);
        assert!(
            std::fs::read(&path).expect("read file") == before,
            "verify_on_open {verify}: the file's bytes changed"
        );
        let restored = Store::open(&copy, &StoreOptions::default()).expect("open the copy");
        assert_eq!(rows(&restored), expected_rows());
    }
}

#[test]
fn a_file_that_needs_crash_recovery_is_recovered_in_memory_and_left_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data.redb");
    let live = filled(&path);
    // A copy taken while the store is open is what a crash would leave: the data file
    // and its journal (which holds the commit; the data file has it only non-durably).
    let crashed = dir.path().join("crashed.redb");
    std::fs::copy(&path, &crashed).expect("copy");
    let journal = dir.path().join("crashed.redb.journal");
    std::fs::copy(dir.path().join("data.redb.journal"), &journal).expect("copy the journal");
    drop(live);
    assert!(
        matches!(
            Store::peek(&crashed, Table::Docs, &[&key(0)]),
            Err(StorageError::NeedsRecovery)
        ),
        "the copy needs recovery"
    );
    let before = std::fs::read(&crashed).expect("read file");
    let journal_before = std::fs::read(&journal).expect("read the journal");
    for verify in [true, false] {
        let store = Store::open_read_only(&crashed, &opts(verify)).expect("open read-only");
        assert_eq!(rows(&store), expected_rows(), "durable commits survive");
        drop(store);
        assert!(
            std::fs::read(&crashed).expect("read file") == before,
            "verify_on_open {verify}: the file's bytes changed"
        );
        assert!(
            std::fs::read(&journal).expect("read the journal") == journal_before,
            "verify_on_open {verify}: the journal's bytes changed"
        );
    }
    // Still unrecovered on disk: a read-write open would repair it.
    assert!(matches!(
        Store::peek(&crashed, Table::Docs, &[&key(0)]),
        Err(StorageError::NeedsRecovery)
    ));
}

#[test]
fn a_damaged_file_is_refused_read_only_and_left_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data.redb");
    drop(filled(&path));
    let mut bytes = std::fs::read(&path).expect("read file");
    for i in (4096..bytes.len()).step_by(97) {
        bytes[i] ^= 0x55;
    }
    std::fs::write(&path, &bytes).expect("damage it");
    let r = Store::open_read_only(&path, &opts(true));
    assert!(
        matches!(r, Err(StorageError::Corrupted(_))),
        "{:?}",
        r.err()
    );
    assert!(
        std::fs::read(&path).expect("read file") == bytes,
        "the damaged file's bytes changed"
    );
    std::fs::write(&path, b"").expect("empty it");
    let r = Store::open_read_only(&path, &opts(true));
    assert!(
        matches!(r, Err(StorageError::Corrupted(_))),
        "{:?}",
        r.err()
    );
}
