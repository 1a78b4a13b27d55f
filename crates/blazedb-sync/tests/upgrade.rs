//! A database synced by a release before sync metadata version 2 works in this one.
//!
//! The fixture is the engine's `tests/fixtures/format3.blazedb` (see the engine's
//! `tests/upgrade.rs`): sync enabled as a server by the release before format 4, so
//! its 45 merge states each have a document-index record of their own (the layout
//! before index runs, `node/index.rs`).

use std::collections::BTreeSet;
use std::path::Path;

use blazedb_engine::{Database, DocId, Document, OpenMode, OpenOptions, database_path};
use blazedb_sync::{Role, SyncConfig, SyncNode};

const NAME: &str = "format3";
const PASSWORD: &str = "fixture password";

/// A private copy of the fixture (opening it writes).
fn fixture_copy() -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../blazedb-engine/tests/fixtures")
        .join(format!("{NAME}.blazedb"));
    let dir = tempfile::tempdir().expect("tempdir");
    let dst = database_path(dir.path(), NAME);
    std::fs::create_dir_all(&dst).expect("mkdir");
    for entry in std::fs::read_dir(&src).expect("fixture directory") {
        let name = entry.expect("entry").file_name();
        std::fs::copy(src.join(&name), dst.join(&name)).expect("copy a fixture file");
    }
    dir
}

fn open(dir: &Path) -> Database {
    OpenOptions::new()
        .mode(OpenMode::OpenExisting)
        .open(dir, NAME, PASSWORD)
        .expect("open the fixture")
}

/// Every document a snapshot of `node` carries, walked in pages of `page` states.
fn snapshot_docs(node: &SyncNode, page: usize) -> Vec<(String, DocId)> {
    let mut after = 0;
    let mut out = Vec::new();
    loop {
        let (docs, upto, done) = node.snapshot_page(after, page, &|_| true).expect("page");
        assert!(upto >= after, "a page never goes back");
        out.extend(docs.into_iter().map(|d| (d.collection, d.id)));
        after = upto;
        if done {
            return out;
        }
    }
}

#[test]
fn a_snapshot_of_a_database_indexed_before_index_runs_carries_its_old_and_new_documents() {
    let dir = fixture_copy();
    let db = open(dir.path());
    let node = SyncNode::enable(&db, Role::Server, &SyncConfig::default()).expect("enable");
    let old = snapshot_docs(&node, 4);
    assert_eq!(
        old.len(),
        45,
        "the fixture's merge states, from its old index"
    );

    // New states get their slots in runs, after the old index's: two transactions.
    let mut new_ids = Vec::new();
    for batch in 0..2i64 {
        let mut tx = db.begin_write().expect("write");
        for i in 0..3i64 {
            new_ids.push(
                tx.insert("notes", Document::new().with("n", 100 + batch * 10 + i))
                    .expect("insert"),
            );
        }
        tx.commit().expect("commit");
        node.absorb().expect("absorb");
    }

    for page in [1, 4, 1_000] {
        let all = snapshot_docs(&node, page);
        assert_eq!(
            all.len(),
            51,
            "45 old and 6 new, each once (pages of {page})"
        );
        assert_eq!(all[..45], old[..], "the old slots first, in their order");
        let new: BTreeSet<DocId> = all[45..].iter().map(|(_, id)| *id).collect();
        assert_eq!(new, new_ids.iter().copied().collect::<BTreeSet<_>>());
    }
    let distinct: BTreeSet<_> = snapshot_docs(&node, 7).into_iter().collect();
    assert_eq!(distinct.len(), 51, "no document twice");

    // Still the same after closing and opening again (the runs are durable records).
    drop(node);
    drop(db);
    let db = open(dir.path());
    let node = SyncNode::enable(&db, Role::Server, &SyncConfig::default()).expect("enable");
    assert_eq!(snapshot_docs(&node, 5).len(), 51);
}
