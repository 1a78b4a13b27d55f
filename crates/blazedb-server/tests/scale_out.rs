//! Several `blazedb-server` processes over one real PostgreSQL (`--store`), over TLS with
//! one certificate shared through the store:
//! a write through process 1 reaches a live client of process 2, a client whose
//! process is SIGKILLed mid-push resumes on the other process with every write applied
//! once, and a Postgres restart during a push loses no write while `/health` says when
//! Postgres is away and when it is back.

mod common;

use std::path::Path;
use std::time::Duration;

use blazedb_core::{Document, Value};
use blazedb_engine::Database;
use blazedb_net::Credentials;
use blazedb_sync::{EnableSync, Role, SyncHandle};
use blazedb_testpg::Cluster;
use common::{Proc, T, http_get, open, spawn_server};

/// A server process over the cluster's store, with its own data directory (its own
/// certificate) under `dir`.
async fn store_server(dir: &Path, name: &str, pg: &Cluster) -> Proc {
    let pwfile = dir.join("store-password");
    std::fs::write(&pwfile, pg.password()).expect("write the store password");
    let url = pg.url("postgres");
    spawn_server(
        &dir.join(name),
        &[
            "--store",
            &url,
            "--store-password-file",
            pwfile.to_str().expect("utf-8"),
        ],
    )
    .await
}

async fn client(db: &Database, p: &Proc) -> SyncHandle {
    db.enable_sync(
        p.remote(Credentials::none().token("tok")).relay(),
        Role::Client,
    )
    .await
    .expect("enable sync")
}

/// Waits (a deadline, polling the database) until `db` holds `n` documents in `coll`.
async fn holds(db: &Database, coll: &str, n: u64) {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let have = db.collection(coll).count().expect("count");
        if have == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{coll}: {have} of {n} arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `i` of every document of `coll`, sorted.
fn numbers(db: &Database, coll: &str) -> Vec<i64> {
    let mut seen: Vec<i64> = db
        .collection(coll)
        .all()
        .expect("all")
        .iter()
        .filter_map(|d| match d.fields.get("i") {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        })
        .collect();
    seen.sort_unstable();
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_processes_sharing_postgres_serve_live_clients_and_survive_a_sigkill() {
    let pg = tokio::task::spawn_blocking(|| Cluster::start().expect("a cluster"))
        .await
        .expect("joined");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p1 = store_server(dir.path(), "p1", &pg).await;
    let p2 = store_server(dir.path(), "p2", &pg).await;
    assert_eq!(
        p1.fingerprint, p2.fingerprint,
        "one self-signed identity for all processes, kept in the store"
    );
    let (a, b) = (open(dir.path(), "a"), open(dir.path(), "b"));
    let (ha, hb) = (client(&a, &p1).await, client(&b, &p2).await);
    let id = a
        .collection("notes")
        .insert(Document::new().with("text", "via process 1"))
        .expect("insert");
    ha.sync_now(T).await.expect("a pushes to process 1");
    // b is live on process 2: the write arrives without b asking.
    holds(&b, "notes", 1).await;
    let got = b
        .collection("notes")
        .get(id)
        .expect("get")
        .expect("arrived");
    assert_eq!(got.fields.get("text"), Some(&Value::from("via process 1")));

    // Process 1 dies (SIGKILL) while a pushes; a resumes on process 2.
    for i in 0..300i64 {
        a.collection("bulk")
            .insert(Document::new().with("i", i))
            .expect("insert");
    }
    p1.child.start_kill().expect("SIGKILL");
    p1.child.wait().await.expect("wait");
    ha.stop().await;
    let ha = client(&a, &p2).await;
    ha.sync_now(T).await.expect("a resumes on process 2");
    hb.sync_now(T).await.expect("b");
    holds(&b, "bulk", 300).await;
    let st = ha.status();
    assert_eq!(st.pending_local_writes, 0, "{st:?}");
    assert_eq!(
        numbers(&b, "bulk"),
        (0..300).collect::<Vec<_>>(),
        "every write once"
    );

    // Postgres restarts while a pushes (a is live: its writes go out as they commit):
    // /health says so meanwhile, and once it is back every write arrives once.
    let health = http_get(&p2.metrics, "/health").await;
    assert!(health.starts_with("HTTP/1.0 200"), "{health}");
    for i in 0..200i64 {
        a.collection("late")
            .insert(Document::new().with("i", i))
            .expect("insert");
    }
    let mut pg = pg;
    let pg = tokio::task::spawn_blocking(move || {
        pg.stop().expect("stop postgres");
        pg
    })
    .await
    .expect("joined");
    let down = http_get(&p2.metrics, "/health").await;
    assert!(down.starts_with("HTTP/1.0 503"), "{down}");
    let mut pg = pg;
    let pg = tokio::task::spawn_blocking(move || {
        pg.start_again().expect("start postgres");
        pg
    })
    .await
    .expect("joined");
    let up = http_get(&p2.metrics, "/health").await;
    assert!(up.starts_with("HTTP/1.0 200"), "{up}");
    ha.sync_now(T).await.expect("a after Postgres restarted");
    holds(&b, "late", 200).await;
    assert_eq!(
        numbers(&b, "late"),
        (0..200).collect::<Vec<_>>(),
        "every write once"
    );
    ha.stop().await;
    hb.stop().await;
    p2.sigterm();
    let mut p2 = p2;
    assert!(p2.child.wait().await.expect("wait").success());
    tokio::task::spawn_blocking(move || drop(pg))
        .await
        .expect("joined");
}
