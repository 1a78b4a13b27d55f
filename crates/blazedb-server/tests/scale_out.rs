//! Several `blazedb-server` processes over one real PostgreSQL (`--store`), over TLS with
//! one certificate shared through the store:
//! a write through process 1 reaches a live client of process 2, a client whose
//! process is SIGKILLed mid-push resumes on the other process with every write applied
//! once, and a Postgres restart during a push loses no write while `/health` says when
//! Postgres is away and when it is back; named users live in the store, so a user
//! added or revoked once is known to, or shut out of, every process.

mod common;

use std::path::Path;
use std::time::Duration;

use blazedb_core::{Document, Value};
use blazedb_engine::Database;
use blazedb_net::Credentials;
use blazedb_sync::{EnableSync, Role, SyncHandle};
use blazedb_testpg::Cluster;
use common::{Proc, T, http_get, open, spawn_server};

async fn store_server(dir: &Path, name: &str, pg: &Cluster) -> Proc {
    common::store_server(dir, name, pg, &[]).await
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

/// Runs `blazedb-server --store … user ARGS` against the cluster's store.
fn store_user_cmd(
    dir: &Path,
    pg: &Cluster,
    database: &str,
    args: &[&str],
) -> (bool, String, String) {
    let pwfile = dir.join("store-password");
    std::fs::write(&pwfile, pg.password()).expect("write the store password");
    let (admin, url) = (dir.join("admin"), pg.url("postgres"));
    let mut all = vec![
        "--data-dir",
        admin.to_str().expect("utf-8"),
        "--database",
        database,
        "--store",
        &url,
        "--store-password-file",
        pwfile.to_str().expect("utf-8"),
        "user",
    ];
    all.extend_from_slice(args);
    common::run_server_cmd(&all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_added_in_the_store_is_known_to_every_process_and_revoked_from_all() {
    let pg = tokio::task::spawn_blocking(|| Cluster::start().expect("a cluster"))
        .await
        .expect("joined");
    let dir = tempfile::tempdir().expect("tempdir");
    let p1 = store_server(dir.path(), "p1", &pg).await;
    let p2 = store_server(dir.path(), "p2", &pg).await;
    // Added while both run, by a third program: one list in the store, not a file.
    let (ok, token, err) = store_user_cmd(dir.path(), &pg, "main", &["add", "alice"]);
    assert!(ok, "user add: {err}");
    let token = token.trim().to_owned();
    assert!(!dir.path().join("admin").exists(), "nothing kept locally");
    let (ok, list, _) = store_user_cmd(dir.path(), &pg, "main", &["list"]);
    assert!(ok && list == "alice\tread-write\tcollections=*\n", "{list}");
    // A mistyped database name is refused, not created.
    let (ok, _, err) = store_user_cmd(dir.path(), &pg, "mian", &["add", "eve"]);
    assert!(
        !ok && err.contains("no database \"mian\" in the store"),
        "{err}"
    );

    let mut handles = Vec::new();
    for (i, p) in [&p1, &p2].into_iter().enumerate() {
        let db = open(dir.path(), &format!("alice{i}"));
        db.collection("notes")
            .insert(Document::new().with("i", i as i64))
            .expect("insert");
        let h = db
            .enable_sync(
                p.remote(Credentials::none().user("alice", &token)).relay(),
                Role::Client,
            )
            .await
            .expect("enable");
        h.sync_now(T)
            .await
            .expect("alice syncs through either process");
        handles.push(h);
    }

    // Revoked once: her sessions on both processes end, and neither lets her back in.
    let (ok, _, err) = store_user_cmd(dir.path(), &pg, "main", &["revoke", "alice"]);
    assert!(ok, "user revoke: {err}");
    let deadline = tokio::time::Instant::now() + T;
    while handles.iter().any(|h| h.status().connected) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a session of a revoked user is still open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for p in [&p1, &p2] {
        let e = p
            .relay(Credentials::none().user("alice", &token))
            .connect_frames()
            .await
            .expect_err("revoked");
        assert_eq!(e.refused(), Some(blazedb_net::RefuseCode::Auth), "{e}");
    }
    for h in handles {
        h.stop().await;
    }
    for mut p in [p1, p2] {
        p.sigterm();
        assert!(p.child.wait().await.expect("wait").success());
    }
    tokio::task::spawn_blocking(move || drop(pg))
        .await
        .expect("joined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_reaches_a_tls_only_postgres_with_store_ca_file() {
    let (cert, key) = blazedb_net::ServerIdentity::self_signed_pem().expect("a certificate");
    let pg_cert = cert.clone();
    let pg = tokio::task::spawn_blocking(move || {
        Cluster::start_tls_only(&pg_cert, &key).expect("a TLS-only cluster")
    })
    .await
    .expect("joined");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("postgres-ca.pem");
    std::fs::write(&ca, &cert).expect("write the CA file");
    let pwfile = dir.path().join("store-password");
    std::fs::write(&pwfile, pg.password()).expect("write the store password");
    let url = pg.url("postgres");
    let p = spawn_server(
        &dir.path().join("p"),
        &[
            "--store",
            &url,
            "--store-password-file",
            pwfile.to_str().expect("utf-8"),
            "--store-ca-file",
            ca.to_str().expect("utf-8"),
        ],
    )
    .await;
    let health = http_get(&p.metrics, "/health").await;
    assert!(health.starts_with("HTTP/1.0 200"), "{health}");
    let a = open(dir.path(), "a");
    a.collection("notes")
        .insert(Document::new().with("i", 1))
        .expect("insert");
    let h = client(&a, &p).await;
    h.sync_now(T)
        .await
        .expect("a syncs through a server on TLS to Postgres");
    h.stop().await;
    p.sigterm();
    let mut p = p;
    assert!(p.child.wait().await.expect("wait").success());

    // Without the CA file the same server cannot reach this Postgres, and says so.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_blazedb-server"))
        .args([
            "--data-dir",
            dir.path().join("q").to_str().expect("utf-8"),
            "--listen",
            "127.0.0.1:0",
            "--store",
            &url,
            "--store-password-file",
            pwfile.to_str().expect("utf-8"),
        ])
        .env("BLAZEDB_PASSWORD", "server-pw")
        .env("BLAZEDB_AUTH_TOKEN", "tok")
        .output()
        .expect("run blazedb-server");
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("no encryption"),
        "refused by Postgres for plain TCP: {said}"
    );
    tokio::task::spawn_blocking(move || drop(pg))
        .await
        .expect("joined");
}
