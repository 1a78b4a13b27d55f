//! `WriteTx::contains` answers "absent" without a lookup for a key above the largest key
//! it knows of (the transaction's ceiling). Whatever the order of inserts, removes and
//! questions, within a transaction and across commits, it must agree with a lookup.
//!
//! Cases: `PROPTEST_CASES` (default 128).

use std::collections::BTreeSet;

use blazedb_storage::{Store, StoreOptions, Table};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Insert(u16),
    Remove(u16),
    Contains(u16),
    /// Ask about the largest key present (or a key above all when none is).
    ContainsLargest,
    Commit,
}

/// Keys of varying length, so that a ceiling compares prefixes too ([0x12] < [0x12, 0]).
fn key(k: u16) -> Vec<u8> {
    let [hi, lo] = k.to_be_bytes();
    if lo % 3 == 0 { vec![hi] } else { vec![hi, lo] }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u16>().prop_map(Op::Insert),
        2 => any::<u16>().prop_map(Op::Remove),
        4 => any::<u16>().prop_map(Op::Contains),
        2 => Just(Op::ContainsLargest),
        1 => Just(Op::Commit),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(128),
        ..ProptestConfig::default()
    })]

    #[test]
    fn contains_agrees_with_the_stored_keys(
        preload in proptest::collection::vec(any::<u16>(), 0..20),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::create(&dir.path().join("data.redb"), &StoreOptions::default())
            .expect("create");
        let mut model = BTreeSet::new();
        let mut tx = store.write().expect("write");
        for k in preload {
            tx.insert(Table::Docs, &key(k), b"v").expect("insert");
            model.insert(key(k));
        }
        tx.commit(false).expect("commit");
        let mut tx = store.write().expect("write");
        for op in ops {
            match op {
                Op::Insert(k) => {
                    tx.insert(Table::Docs, &key(k), b"v").expect("insert");
                    model.insert(key(k));
                }
                Op::Remove(k) => {
                    let removed = tx.remove(Table::Docs, &key(k)).expect("remove");
                    prop_assert_eq!(removed, model.remove(&key(k)));
                }
                Op::Contains(k) => {
                    let k = key(k);
                    prop_assert_eq!(
                        tx.contains(Table::Docs, &k).expect("contains"),
                        model.contains(&k),
                        "key {:?}", k
                    );
                }
                Op::ContainsLargest => {
                    let k = model.last().cloned().unwrap_or_else(|| vec![0xFF; 3]);
                    prop_assert_eq!(
                        tx.contains(Table::Docs, &k).expect("contains"),
                        model.contains(&k),
                        "key {:?}", k
                    );
                }
                Op::Commit => {
                    tx.commit(false).expect("commit");
                    tx = store.write().expect("write");
                }
            }
        }
        tx.commit(true).expect("commit");
    }
}

/// Keys inserted in ascending order (the fast path) are all found once inserted, and a
/// key above them is not.
#[test]
fn ascending_inserts_are_found_and_keys_above_them_are_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        Store::create(&dir.path().join("data.redb"), &StoreOptions::default()).expect("create");
    let mut tx = store.write().expect("write");
    for i in 0u32..2_000 {
        let k = i.to_be_bytes();
        assert!(
            !tx.contains(Table::Docs, &k).expect("contains"),
            "{i} before insert"
        );
        tx.insert(Table::Docs, &k, b"v").expect("insert");
        assert!(
            tx.contains(Table::Docs, &k).expect("contains"),
            "{i} after insert"
        );
    }
    tx.commit(true).expect("commit");
    let mut tx = store.write().expect("write");
    assert!(
        tx.contains(Table::Docs, &1_999u32.to_be_bytes())
            .expect("contains")
    );
    assert!(
        !tx.contains(Table::Docs, &2_000u32.to_be_bytes())
            .expect("contains")
    );
    // Another table has its own ceiling.
    assert!(
        !tx.contains(Table::Index, &0u32.to_be_bytes())
            .expect("contains")
    );
}
