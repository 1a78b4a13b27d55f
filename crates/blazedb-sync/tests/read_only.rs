//! The sync layer on a read-only database handle: an enabled database's node and its
//! state (log, pending writes, conflicts) read without a write transaction, so nothing
//! changes on disk; enabling a database for the first time is a write, refused.

use std::path::Path;

use blazedb_core::Document;
use blazedb_engine::{Database, Error, KdfParams, OpenMode, database_path};
use blazedb_sync::{Role, SyncConfig, SyncError, SyncNode};

fn open(dir: &Path, name: &str, mode: OpenMode) -> Database {
    Database::builder()
        .kdf(KdfParams::INSECURE_FAST)
        .mode(mode)
        .open(dir, name, "pw")
        .expect("open")
}

/// Every file of a database directory with its bytes.
fn files(db_dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(db_dir)
        .expect("read_dir")
        .map(|e| {
            let e = e.expect("entry");
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).expect("read"))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn an_enabled_database_enables_and_reads_its_sync_state_on_a_read_only_handle_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node_id, log_last) = {
        let db = open(dir.path(), "a", OpenMode::OpenOrCreate);
        let node = SyncNode::enable(&db, Role::Client, &SyncConfig::default()).expect("enable");
        db.collection("t")
            .insert(Document::new().with("k", 1i64))
            .expect("insert");
        node.absorb().expect("absorb");
        // One write left for the next sync to take over.
        db.collection("t").insert(Document::new()).expect("insert");
        (node.node_id(), node.log_last().expect("log_last"))
    };
    let path = database_path(dir.path(), "a");
    let before = files(&path);
    let db = open(dir.path(), "a", OpenMode::ReadOnly);
    assert_eq!(
        SyncNode::stored_role(&db).expect("stored role"),
        Some(Role::Client)
    );
    let node = SyncNode::enable(&db, Role::Client, &SyncConfig::default()).expect("enable");
    assert_eq!(node.node_id(), node_id);
    assert_eq!(node.log_last().expect("log_last"), log_last);
    assert_eq!(node.unabsorbed().expect("unabsorbed"), 1);
    assert!(node.conflicts(0, usize::MAX).expect("conflicts").is_empty());
    assert!(node.known_targets().expect("targets").is_empty());
    let other = SyncNode::enable(&db, Role::Server, &SyncConfig::default());
    assert!(
        matches!(other, Err(SyncError::RoleMismatch { .. })),
        "{other:?}"
    );
    // Taking writes over is a write: refused, and nothing changes.
    let absorbed = node.absorb();
    assert!(
        matches!(absorbed, Err(SyncError::Db(Error::ReadOnly { .. }))),
        "{absorbed:?}"
    );
    drop((node, db));
    assert!(files(&path) == before, "the database's files changed");
}

#[test]
fn enabling_sync_for_the_first_time_on_a_read_only_handle_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(open(dir.path(), "a", OpenMode::OpenOrCreate));
    let path = database_path(dir.path(), "a");
    let before = files(&path);
    let db = open(dir.path(), "a", OpenMode::ReadOnly);
    let r = SyncNode::enable(&db, Role::Client, &SyncConfig::default());
    assert!(
        matches!(r, Err(SyncError::Db(Error::ReadOnly { .. }))),
        "{r:?}"
    );
    assert_eq!(SyncNode::stored_role(&db).expect("stored role"), None);
    drop(db);
    assert!(files(&path) == before, "the database's files changed");
}
