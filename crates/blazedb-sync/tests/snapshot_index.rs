//! The document index that snapshots page over is stored in bounded runs: a transaction
//! that creates many merge states (enabling sync on a database that already holds
//! documents, a first sync) must not leave one record that every snapshot page opens
//! whole. Paging over such an index still returns every document exactly once.

use std::collections::BTreeSet;

use blazedb_core::{DocId, Document};
use blazedb_engine::{Database, KdfParams};
use blazedb_sync::{Role, SyncConfig, SyncNode};

/// Most slots one index run may hold (`node/index.rs`, `RUN_SLOTS_MAX`).
const RUN_SLOTS_MAX: usize = 1_024;

fn adopted(dir: &tempfile::TempDir, docs: usize) -> (SyncNode, BTreeSet<DocId>) {
    let db = Database::builder()
        .kdf(KdfParams::INSECURE_FAST)
        .open(dir.path(), "s", "pw")
        .expect("open");
    let mut ids = BTreeSet::new();
    let mut tx = db.begin_write().expect("write");
    for i in 0..docs {
        ids.insert(
            tx.insert("docs", Document::new().with("i", i as i64))
                .expect("insert"),
        );
    }
    tx.commit().expect("commit");
    // Enabling sync adopts every document in one transaction.
    let node = SyncNode::enable(&db, Role::Server, &SyncConfig::default()).expect("enable");
    (node, ids)
}

#[test]
fn documents_adopted_in_one_transaction_are_indexed_in_bounded_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, _) = adopted(&dir, 3_000);
    let runs = node.index_run_lengths().expect("runs");
    assert_eq!(
        runs.iter().sum::<usize>(),
        3_000,
        "every document has a slot"
    );
    assert!(
        runs.iter().all(|&n| n <= RUN_SLOTS_MAX),
        "runs of {runs:?} slots"
    );
}

#[test]
fn snapshot_pages_across_run_boundaries_return_every_document_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, ids) = adopted(&dir, 3_000);
    for limit in [7, 256, 1_000, 5_000] {
        let (mut after, mut seen, mut pages) = (0, BTreeSet::new(), 0);
        loop {
            let (docs, upto, done) = node.snapshot_page(after, limit, &|_| true).expect("page");
            assert!(
                docs.len() <= limit,
                "a page of {} for limit {limit}",
                docs.len()
            );
            assert!(upto > after || done, "the page moved on");
            for d in docs {
                assert!(seen.insert(d.id), "{} twice (limit {limit})", d.id);
            }
            (after, pages) = (upto, pages + 1);
            if done {
                break;
            }
        }
        assert_eq!(seen, ids, "every document once (limit {limit})");
        assert!(
            pages >= 3_000usize.div_ceil(limit),
            "{pages} pages for limit {limit}"
        );
    }
}

#[test]
fn a_snapshot_ends_even_when_the_highest_slots_were_removed() {
    use blazedb_sync::{LogPos, NodeId, SnapshotPage};
    // Three documents of its own give this node slots 1..=3.
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, _) = adopted(&dir, 3);
    // It synced with a hub before, and the hub, which collects tombstones, now sends
    // it a snapshot (an empty one): it was forgotten, so it drops its replicated state
    // first, and with it every slot of its index. Nothing new gets a slot.
    let hub = NodeId(7);
    node.apply_batch(hub, Role::Server, &[], LogPos::new(1))
        .expect("a first sync with the hub");
    node.apply_snapshot(
        hub,
        SnapshotPage {
            at: LogPos::new(5),
            after_slot: 0,
            upto_slot: 0,
            docs: &[],
            done: true,
            collected: true,
        },
        &|_| true,
    )
    .expect("the hub's snapshot");
    assert_eq!(
        node.index_run_lengths()
            .expect("runs")
            .iter()
            .sum::<usize>(),
        0
    );
    // A snapshot this node sends now must still end.
    let (docs, _, done) = node.snapshot_page(0, 256, &|_| true).expect("page");
    assert!(docs.is_empty());
    assert!(done, "the first page of an empty index is the last");
}
