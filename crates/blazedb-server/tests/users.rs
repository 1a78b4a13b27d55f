//! Named users against the real `blazedb-server`: `user add/list/revoke` while the
//! server runs, a revocation closing a live session, read-only users, collection
//! permissions, and every write attributed to its user.

mod common;

use std::path::Path;
use std::time::Duration;

use blazedb_core::{Document, Value};
use blazedb_engine::Patch;
use blazedb_net::Credentials;
use blazedb_sync::{EnableSync, LossReason, Role, SyncError, SyncHandle};
use common::{Proc, T, open, spawn_server};

/// Runs `blazedb-server user ARGS` on the server's data directory.
fn user_cmd(data: &Path, args: &[&str]) -> (bool, String, String) {
    let mut all = vec![
        "--data-dir",
        data.to_str().expect("utf-8"),
        "--database",
        "main",
        "user",
    ];
    all.extend_from_slice(args);
    common::run_server_cmd(&all)
}

/// Adds a user; returns its token.
fn add_user(data: &Path, args: &[&str]) -> String {
    let mut all = vec!["add"];
    all.extend_from_slice(args);
    let (ok, out, err) = user_cmd(data, &all);
    assert!(ok, "user add failed: {err}");
    let token = out.trim().to_owned();
    assert!(token.starts_with("bdbu_"), "{out:?}");
    token
}

async fn as_user(
    dir: &Path,
    name: &str,
    p: &Proc,
    user: &str,
    token: &str,
) -> (blazedb_engine::Database, SyncHandle) {
    let db = open(dir, name);
    let h = db
        .enable_sync(
            p.remote(Credentials::none().user(user, token)).relay(),
            Role::Client,
        )
        .await
        .expect("enable");
    (db, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_added_listed_and_revoked_while_the_server_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server");
    let p = spawn_server(&data, &[]).await;
    let alice = add_user(&data, &["alice"]);
    add_user(
        &data,
        &["bob", "--read-only", "--collections", "notes,todo"],
    );
    let (ok, list, _) = user_cmd(&data, &["list"]);
    assert!(ok);
    assert_eq!(
        list,
        "alice\tread-write\tcollections=*\nbob\tread-only\tcollections=notes,todo\n"
    );
    let (ok, _, err) = user_cmd(&data, &["add", "alice"]);
    assert!(!ok && err.contains("exists"), "{err}");
    // The users file holds no token and no name in plaintext.
    let file = std::fs::read(blazedb_engine::database_path(&data, "main").join("users.sealed"))
        .expect("users file");
    for needle in [alice.as_bytes(), b"alice".as_slice(), b"notes"] {
        assert!(!file.windows(needle.len()).any(|w| w == needle));
    }

    // Alice syncs live; revoking her closes the session and every later handshake.
    let (db, h) = as_user(dir.path(), "alice-db", &p, "alice", &alice).await;
    db.collection("notes")
        .insert(Document::new().with("by", "alice"))
        .expect("insert");
    h.sync_now(T).await.expect("alice syncs");
    let (ok, _, err) = user_cmd(&data, &["revoke", "alice"]);
    assert!(ok, "{err}");
    let deadline = tokio::time::Instant::now() + T;
    while h.status().connected {
        assert!(tokio::time::Instant::now() < deadline, "still connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let e = p
        .relay(Credentials::none().user("alice", &alice))
        .connect_frames()
        .await
        .expect_err("revoked");
    assert_eq!(e.refused(), Some(blazedb_net::RefuseCode::Auth), "{e}");
    h.stop().await;
    let (ok, list, _) = user_cmd(&data, &["list"]);
    assert!(ok && !list.contains("alice"), "{list}");
    let (ok, _, err) = user_cmd(&data, &["revoke", "alice"]);
    assert!(!ok && err.contains("no user"), "{err}");
    // A wrong token for a known user is refused like an unknown user.
    let bob_wrong = p
        .relay(Credentials::none().user("bob", "bdbu_wrong"))
        .connect_frames()
        .await
        .expect_err("wrong token");
    assert_eq!(bob_wrong.refused(), Some(blazedb_net::RefuseCode::Auth));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_user_receives_everything_and_its_writes_are_refused_and_stay_pending() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server");
    let p = spawn_server(&data, &[]).await;
    let writer = add_user(&data, &["writer"]);
    let reader = add_user(&data, &["reader", "--read-only"]);
    let (wdb, wh) = as_user(dir.path(), "w", &p, "writer", &writer).await;
    let id = wdb
        .collection("notes")
        .insert(Document::new().with("text", "from the writer"))
        .expect("insert");
    wh.sync_now(T).await.expect("push");

    let (rdb, rh) = as_user(dir.path(), "r", &p, "reader", &reader).await;
    rh.sync_now(T).await.expect("a read-only user pulls");
    assert!(rdb.collection("notes").get(id).expect("get").is_some());
    let mine = rdb
        .collection("notes")
        .insert(Document::new().with("text", "from the reader"))
        .expect("a local write");
    let e = rh.sync_now(T).await.expect_err("refused");
    assert!(
        matches!(&e, SyncError::Forbidden(m) if m.contains("read-only")),
        "{e}"
    );
    assert!(rh.status().pending_local_writes >= 1, "kept, pending");
    // Nothing of it reached the server: the writer never sees it.
    wh.sync_now(T).await.expect("sync");
    assert!(wdb.collection("notes").get(mine).expect("get").is_none());
    // What the writer adds still reaches the reader.
    let later = wdb
        .collection("notes")
        .insert(Document::new().with("text", "later"))
        .expect("insert");
    wh.sync_now(T).await.expect("push");
    let _ = rh.sync_now(T).await;
    assert!(rdb.collection("notes").get(later).expect("get").is_some());
    rh.stop().await;
    wh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_limited_to_collections_neither_receives_nor_writes_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server");
    let p = spawn_server(&data, &[]).await;
    let admin = add_user(&data, &["admin"]);
    let carol = add_user(&data, &["carol", "--collections", "notes"]);
    let (adb, ah) = as_user(dir.path(), "a", &p, "admin", &admin).await;
    let note = adb
        .collection("notes")
        .insert(Document::new().with("text", "shared"))
        .expect("insert");
    let secret = adb
        .collection("payroll")
        .insert(Document::new().with("salary", 1i64))
        .expect("insert");
    ah.sync_now(T).await.expect("push");

    let (cdb, ch) = as_user(dir.path(), "c", &p, "carol", &carol).await;
    ch.sync_now(T).await.expect("pull");
    assert!(cdb.collection("notes").get(note).expect("get").is_some());
    assert!(
        cdb.collection("payroll")
            .get(secret)
            .expect("get")
            .is_none()
    );
    assert_eq!(cdb.collection("payroll").count().expect("count"), 0);
    let ok = cdb
        .collection("notes")
        .insert(Document::new().with("text", "carol's"))
        .expect("insert");
    ch.sync_now(T).await.expect("a permitted write syncs");
    cdb.collection("payroll")
        .insert(Document::new().with("salary", 1_000_000i64))
        .expect("a local write");
    let e = ch.sync_now(T).await.expect_err("refused");
    assert!(
        matches!(&e, SyncError::Forbidden(m) if m.contains("payroll")),
        "{e}"
    );
    ah.sync_now(T).await.expect("sync");
    assert!(adb.collection("notes").get(ok).expect("get").is_some());
    assert_eq!(adb.collection("payroll").count().expect("count"), 1);
    ch.stop().await;
    ah.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_is_attributed_to_its_user_in_stamps_and_the_conflict_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server");
    let p = spawn_server(&data, &[]).await;
    let alice = add_user(&data, &["alice"]);
    let bob = add_user(&data, &["bob"]);
    let (adb, ah) = as_user(dir.path(), "a", &p, "alice", &alice).await;
    let (bdb, bh) = as_user(dir.path(), "b", &p, "bob", &bob).await;
    let id = adb
        .collection("notes")
        .insert(Document::new().with("title", "draft"))
        .expect("insert");
    ah.sync_now(T).await.expect("push");
    bh.sync_now(T).await.expect("pull");
    // Concurrent edits of one field: bob's, made later, wins (same role).
    ah.stop().await;
    bh.stop().await;
    adb.collection("notes")
        .patch(id, &Patch::new().set("title", "alice's"))
        .expect("patch");
    bdb.collection("notes")
        .patch(id, &Patch::new().set("title", "bob's"))
        .expect("patch");
    ah.start();
    ah.sync_now(T).await.expect("alice first");
    bh.start();
    bh.sync_now(T).await.expect("bob second");
    ah.sync_now(T).await.expect("alice learns");
    assert_eq!(
        adb.collection("notes")
            .get(id)
            .expect("get")
            .expect("doc")
            .fields["title"],
        Value::from("bob's")
    );
    let lost = ah.conflicts(0, 10).expect("conflicts");
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(lost[0].reason, LossReason::LaterTimestamp);
    let winner = lost[0].winner.expect("a winner");
    let node = ah.node();
    assert_eq!(
        node.principal_of(winner.node())
            .expect("principal")
            .as_deref(),
        Some("bob")
    );
    assert_eq!(
        node.principal_of(lost[0].loser.node())
            .expect("principal")
            .as_deref(),
        Some("alice"),
        "the server tells each client its own user too"
    );
    let stamps = bh.node().field_stamps("notes", id).expect("stamps");
    assert_eq!(
        bh.node()
            .principal_of(stamps["title"].node())
            .expect("principal")
            .as_deref(),
        Some("bob")
    );
    ah.stop().await;
    bh.stop().await;
}
