//! The cache of decoded values (`ReadTx::get_cached`; it caches the index nodes' table):
//! a snapshot reads through it exactly what it would decode from its own records,
//! whatever commits run meanwhile, and a value that did not change is decoded once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use blazedb_storage::{StorageError, Store, StoreOptions, Table};

fn store(dir: &tempfile::TempDir, cache: u64) -> Store {
    Store::create(
        &dir.path().join("data.redb"),
        &StoreOptions {
            value_cache_bytes: cache,
            ..StoreOptions::default()
        },
    )
    .expect("create")
}

fn put(store: &Store, t: Table, key: &[u8], value: &[u8]) {
    let mut w = store.write().expect("write");
    w.insert(t, key, value).expect("insert");
    w.commit(false).expect("commit");
}

/// `get_cached` with a decode that counts its calls and returns the bytes as text.
fn read(
    tx: &blazedb_storage::ReadTx,
    t: Table,
    key: &[u8],
    decodes: &AtomicUsize,
) -> Option<String> {
    tx.get_cached(t, key, |v| {
        decodes.fetch_add(1, Ordering::Relaxed);
        Ok::<_, StorageError>((String::from_utf8(v.to_vec()).expect("utf-8"), v.len()))
    })
    .expect("get_cached")
    .map(|s| (*s).clone())
}

#[test]
fn an_uncached_table_is_decoded_at_every_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(&dir, 1 << 20);
    put(&store, Table::Docs, b"k", b"v");
    let decodes = AtomicUsize::new(0);
    for _ in 0..3 {
        let r = store.read().expect("read");
        assert_eq!(read(&r, Table::Docs, b"k", &decodes).as_deref(), Some("v"));
    }
    assert_eq!(decodes.load(Ordering::Relaxed), 3);
}

#[test]
fn an_unchanged_record_is_decoded_once_across_snapshots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(&dir, 1 << 20);
    put(&store, Table::Index, b"k", b"v1");
    let decodes = AtomicUsize::new(0);
    for _ in 0..5 {
        let r = store.read().expect("read");
        assert_eq!(
            read(&r, Table::Index, b"k", &decodes).as_deref(),
            Some("v1")
        );
    }
    assert_eq!(decodes.load(Ordering::Relaxed), 1);
    // A commit of another key leaves the entry in place.
    put(&store, Table::Index, b"other", b"x");
    let r = store.read().expect("read");
    assert_eq!(
        read(&r, Table::Index, b"k", &decodes).as_deref(),
        Some("v1")
    );
    assert_eq!(decodes.load(Ordering::Relaxed), 1);
}

#[test]
fn each_snapshot_sees_its_own_version_of_a_record_changed_between_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(&dir, 1 << 20);
    let decodes = AtomicUsize::new(0);
    put(&store, Table::Index, b"k", b"old");
    let before = store.read().expect("read");
    assert_eq!(
        read(&before, Table::Index, b"k", &decodes).as_deref(),
        Some("old")
    );
    put(&store, Table::Index, b"k", b"new");
    let after = store.read().expect("read");
    // The new snapshot does not get the entry cached before the commit...
    assert_eq!(
        read(&after, Table::Index, b"k", &decodes).as_deref(),
        Some("new")
    );
    // ...and the old one does not get the entry the new snapshot cached.
    assert_eq!(
        read(&before, Table::Index, b"k", &decodes).as_deref(),
        Some("old")
    );
    assert_eq!(
        read(&after, Table::Index, b"k", &decodes).as_deref(),
        Some("new")
    );
    // A removal is seen as one.
    let mut w = store.write().expect("write");
    assert!(w.remove(Table::Index, b"k").expect("remove"));
    w.commit(false).expect("commit");
    let gone = store.read().expect("read");
    assert_eq!(read(&gone, Table::Index, b"k", &decodes), None);
    assert_eq!(
        read(&after, Table::Index, b"k", &decodes).as_deref(),
        Some("new")
    );
}

#[test]
fn a_transaction_too_large_for_a_journal_frame_drops_every_cached_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(&dir, 1 << 20);
    let decodes = AtomicUsize::new(0);
    put(&store, Table::Index, b"k", b"old");
    assert_eq!(
        read(&store.read().expect("read"), Table::Index, b"k", &decodes).as_deref(),
        Some("old")
    );
    // More than a frame holds (1 MiB): committed as a checkpoint, whose keys the cache
    // is not told one by one.
    let mut w = store.write().expect("write");
    w.insert(Table::Index, b"k", b"new").expect("insert");
    for i in 0u32..40 {
        w.insert(Table::Docs, &i.to_be_bytes(), &[7u8; 32 << 10])
            .expect("insert");
    }
    w.commit(false).expect("commit");
    assert_eq!(
        read(&store.read().expect("read"), Table::Index, b"k", &decodes).as_deref(),
        Some("new")
    );
}

#[test]
fn a_store_without_a_cache_decodes_every_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(&dir, 0);
    put(&store, Table::Index, b"k", b"v");
    let decodes = AtomicUsize::new(0);
    for _ in 0..3 {
        assert_eq!(
            read(&store.read().expect("read"), Table::Index, b"k", &decodes).as_deref(),
            Some("v")
        );
    }
    assert_eq!(decodes.load(Ordering::Relaxed), 3);
}

/// Readers race a writer that keeps changing the same keys: in every snapshot, the
/// value through the cache equals the record's bytes read directly in that snapshot.
#[test]
fn concurrent_readers_never_get_a_value_from_another_snapshot() {
    const KEYS: u32 = 4;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(store(&dir, 1 << 20));
    for k in 0..KEYS {
        put(&store, Table::Index, &k.to_be_bytes(), b"0");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(3));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, stop, start) = (Arc::clone(&store), Arc::clone(&stop), Arc::clone(&start));
            std::thread::spawn(move || {
                let decodes = AtomicUsize::new(0);
                let mut reads = 0u64;
                start.wait();
                while !stop.load(Ordering::Relaxed) {
                    let r = store.read().expect("read");
                    for k in 0..KEYS {
                        let key = k.to_be_bytes();
                        let direct = r.get(Table::Index, &key).expect("get");
                        let cached = read(&r, Table::Index, &key, &decodes);
                        assert_eq!(
                            cached.map(String::into_bytes),
                            direct,
                            "a cached value differs from the snapshot's record"
                        );
                        reads += 1;
                    }
                }
                (reads, decodes.load(Ordering::Relaxed))
            })
        })
        .collect();
    start.wait();
    for round in 1..=3000u32 {
        let mut w = store.write().expect("write");
        let key = (round % KEYS).to_be_bytes();
        if round % 7 == 0 {
            w.remove(Table::Index, &key).expect("remove");
        } else {
            w.insert(Table::Index, &key, round.to_string().as_bytes())
                .expect("insert");
        }
        w.commit(false).expect("commit");
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = (0, 0);
    for r in readers {
        let (reads, decodes) = r.join().expect("reader");
        total = (total.0 + reads, total.1 + decodes);
    }
    // The readers read, and the cache served some of it (not a vacuous pass).
    assert!(total.0 > 0, "no reads ran");
    assert!(
        (total.1 as u64) < total.0,
        "every read decoded: {} decodes for {} reads",
        total.1,
        total.0
    );
}
