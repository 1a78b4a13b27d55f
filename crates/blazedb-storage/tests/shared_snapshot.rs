//! Readers that begin while no commit has been published share one snapshot
//! (`snapshot.rs`). What must hold regardless: a read begun after a commit returned
//! sees that commit, a snapshot already taken keeps its state, and each reader sees
//! states in commit order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use blazedb_storage::{Store, StoreOptions, Table};

fn store(dir: &tempfile::TempDir, value_cache_bytes: u64, checkpoint_bytes: u64) -> Store {
    Store::create(
        &dir.path().join("data.redb"),
        &StoreOptions {
            value_cache_bytes,
            checkpoint_bytes,
            ..StoreOptions::default()
        },
    )
    .expect("create")
}

fn counter(store: &Store) -> u64 {
    store
        .read()
        .expect("read")
        .get(Table::Docs, b"n")
        .expect("get")
        .map_or(0, |v| u64::from_be_bytes(v.try_into().expect("8 bytes")))
}

/// The counter as one read transaction sees it in two tables: the documents' (read
/// directly) and the index's (read through the decoded-value cache when it is on).
/// Every commit writes both, so they must agree.
fn counters(store: &Store) -> (u64, u64) {
    let r = store.read().expect("read");
    let cached = r
        .get_cached(Table::Index, b"n", |v| {
            Ok::<_, blazedb_storage::StorageError>((
                u64::from_be_bytes(v.try_into().expect("8 bytes")),
                8,
            ))
        })
        .expect("get_cached")
        .map_or(0, |v| *v);
    let direct = r
        .get(Table::Docs, b"n")
        .expect("get")
        .map_or(0, |v| u64::from_be_bytes(v.try_into().expect("8 bytes")));
    (direct, cached)
}

#[test]
fn a_snapshot_keeps_its_state_and_a_read_after_a_commit_sees_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(&dir, 0, 1 << 20);
    let put = |v: &[u8]| {
        let mut w = store.write().expect("write");
        w.insert(Table::Docs, b"k", v).expect("insert");
        w.commit(false).expect("commit");
    };
    put(b"1");
    let first = store.read().expect("read");
    let shared = store.read().expect("read");
    put(b"2");
    let after = store.read().expect("read");
    assert_eq!(
        first.get(Table::Docs, b"k").expect("get").as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(
        shared.get(Table::Docs, b"k").expect("get").as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(
        after.get(Table::Docs, b"k").expect("get").as_deref(),
        Some(&b"2"[..])
    );
    // A write transaction begun and dropped publishes nothing: readers still agree.
    drop(store.write().expect("write"));
    let again = store.read().expect("read");
    assert_eq!(
        again.get(Table::Docs, b"k").expect("get").as_deref(),
        Some(&b"2"[..])
    );
}

/// One writer increments a counter in two tables (journaled commits, some durable, and
/// checkpoint commits: the journal is small), publishing each value once its commit
/// returned; readers check that every read sees at least the published value, never
/// less than their own previous read, and the same value in both tables (the index
/// table's through the decoded-value cache when it is on).
fn readers_see_every_returned_commit(value_cache_bytes: u64) {
    const COMMITS: u64 = 2_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(store(&dir, value_cache_bytes, 64 << 10));
    let returned = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (store, returned, done) = (store.clone(), returned.clone(), done.clone());
            std::thread::spawn(move || {
                let mut last = 0;
                let mut reads = 0u64;
                while !done.load(Ordering::Acquire) {
                    let floor = returned.load(Ordering::Acquire);
                    let (seen, indexed) = counters(&store);
                    assert_eq!(seen, indexed, "two tables of one snapshot disagree");
                    assert!(seen >= floor, "read {seen} after commit {floor} returned");
                    assert!(seen >= last, "read {seen} after reading {last}");
                    last = seen;
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for n in 1..=COMMITS {
        let mut w = store.write().expect("write");
        w.insert(Table::Docs, b"n", &n.to_be_bytes())
            .expect("insert");
        w.insert(Table::Index, b"n", &n.to_be_bytes())
            .expect("insert");
        // Some commits are large enough to fill the journal and checkpoint.
        if n % 97 == 0 {
            w.insert(Table::Docs, b"pad", &vec![n as u8; 48 << 10])
                .expect("insert");
        }
        w.commit(n % 5 == 0).expect("commit");
        returned.store(n, Ordering::Release);
        assert_eq!(counter(&store), n, "the writer's own next read");
    }
    done.store(true, Ordering::Release);
    for r in readers {
        assert!(r.join().expect("reader") > 0);
    }
}

#[test]
fn readers_see_every_returned_commit_with_the_value_cache() {
    readers_see_every_returned_commit(1 << 20);
}

#[test]
fn readers_see_every_returned_commit_without_the_value_cache() {
    readers_see_every_returned_commit(0);
}
