//! End to end over real TCP + TLS on 127.0.0.1 against a real `blazedb-server` process:
//! fan-out to three clients, an offline client catching up, the server restarted
//! mid-sync (gracefully and by SIGKILL), a graceful shutdown that exits 0, the metrics
//! endpoint, and a conflict decided over the network.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use blazedb_core::{DocId, Document, Value};
use blazedb_engine::{Database, KdfParams};
use blazedb_net::{Credentials, Fingerprint, RemoteNode};
use blazedb_sync::{EnableSync, Role, SyncHandle};
use common::{Proc, T, http_get, open};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

async fn spawn_server(data: &std::path::Path, port: u16) -> Proc {
    common::spawn_server_on(data, port, &[]).await
}

fn sigterm(p: &Proc) {
    p.sigterm();
}

async fn client(db: &Database, p: &Proc) -> SyncHandle {
    db.enable_sync(
        p.remote(Credentials::none().token("tok")).relay(),
        Role::Client,
    )
    .await
    .expect("enable sync")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_clients_fan_out_through_a_server_process_and_metrics_show_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = spawn_server(&dir.path().join("server"), 0).await;
    let dbs: Vec<Database> = (0..3).map(|i| open(dir.path(), &format!("c{i}"))).collect();
    let mut handles = Vec::new();
    for db in &dbs {
        handles.push(client(db, &p).await);
    }
    let id = dbs[0]
        .collection("notes")
        .insert(Document::new().with("text", "from c0"))
        .expect("insert");
    handles[0].sync_now(T).await.expect("push");
    for (db, h) in dbs.iter().zip(&handles).skip(1) {
        h.sync_now(T).await.expect("pull");
        let got = db
            .collection("notes")
            .get(id)
            .expect("get")
            .expect("fanned out");
        assert_eq!(got.fields.get("text"), Some(&Value::from("from c0")));
    }
    let health = http_get(&p.metrics, "/health").await;
    assert!(
        health.starts_with("HTTP/1.0 200") && health.ends_with("ok\n"),
        "{health}"
    );
    assert!(
        health.contains("content-type: text/plain; charset=utf-8"),
        "{health}"
    );
    let metrics = http_get(&p.metrics, "/metrics").await;
    assert!(
        metrics.contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "blazedb_build_info{{version=\"{}\",commit=\"",
            env!("CARGO_PKG_VERSION")
        )),
        "{metrics}"
    );
    for process in [
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(metrics.contains(process), "{process} in {metrics}");
    }
    assert!(metrics.contains("blazedb_sessions 3"), "{metrics}");
    assert!(
        metrics.contains("blazedb_connections_accepted_total 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("blazedb_client_lag_writes{client="),
        "{metrics}"
    );
    // Fan-out has no conflicts: nothing was rejected.
    assert!(
        metrics.contains("blazedb_writes_rejected_total 0"),
        "{metrics}"
    );
    // Counters count ended sessions too: a client leaving takes nothing back.
    let (sent, received) = (
        p.metric("blazedb_writes_sent_total").await,
        p.metric("blazedb_bytes_received_total").await,
    );
    assert!(sent >= 2 && received > 0, "{sent} {received}");
    handles.pop().expect("a handle").stop().await;
    p.metric_becomes("blazedb_sessions", 2).await;
    assert!(p.metric("blazedb_writes_sent_total").await >= sent);
    assert!(p.metric("blazedb_bytes_received_total").await >= received);
    let mut p = p;
    sigterm(&p);
    let status = tokio::time::timeout(T, p.child.wait())
        .await
        .expect("exits")
        .expect("wait");
    assert!(status.success(), "graceful shutdown exits 0: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_client_and_a_restarted_server_converge_without_losing_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server");
    let p = spawn_server(&data, 0).await;
    let port = p.port;
    let (a, b) = (open(dir.path(), "a"), open(dir.path(), "b"));
    let (ha, hb) = (client(&a, &p).await, client(&b, &p).await);
    ha.sync_now(T).await.expect("sync");
    hb.stop().await;
    // b offline: writes locally. a writes a lot, and the server goes down mid-push.
    for i in 0..200i64 {
        b.collection("offline")
            .insert(Document::new().with("i", i))
            .expect("insert");
    }
    for i in 0..2_000i64 {
        a.collection("bulk")
            .insert(Document::new().with("i", i))
            .expect("insert");
    }
    let mut p = p;
    p.child.start_kill().expect("SIGKILL");
    p.child.wait().await.expect("wait");
    // Same data directory and port: same certificate, so the pinned clients reconnect.
    let p2 = spawn_server(&data, port).await;
    assert_eq!(
        p2.fingerprint, p.fingerprint,
        "the kept certificate survives restarts"
    );
    hb.start();
    ha.sync_now(T).await.expect("a converges after the restart");
    hb.sync_now(T).await.expect("b converges");
    ha.sync_now(T).await.expect("a pulls b's writes");
    for db in [&a, &b] {
        assert_eq!(db.collection("bulk").count().expect("count"), 2_000);
        assert_eq!(db.collection("offline").count().expect("count"), 200);
    }
    let st = ha.status();
    assert_eq!(st.pending_local_writes, 0, "{st:?}");
    // A graceful restart mid-sync too.
    for i in 0..500i64 {
        a.collection("more")
            .insert(Document::new().with("i", i))
            .expect("insert");
    }
    sigterm(&p2);
    let mut p2 = p2;
    assert!(p2.child.wait().await.expect("wait").success());
    let mut p3 = spawn_server(&data, port).await;
    ha.sync_now(T).await.expect("sync");
    hb.sync_now(T).await.expect("sync");
    assert_eq!(b.collection("more").count().expect("count"), 500);
    // Nothing lost through both restarts, and what the log still holds (the rest is
    // collected once every client confirmed it) holds each write once.
    sigterm(&p3);
    assert!(p3.child.wait().await.expect("wait").success());
    let server = Database::open(&data, "main", "server-pw").expect("open the server's database");
    let node =
        blazedb_sync::SyncNode::enable(&server, Role::Server, &blazedb_sync::SyncConfig::default())
            .expect("enable");
    let mut dots = std::collections::BTreeSet::new();
    for e in node.log_writes().expect("log") {
        if let blazedb_sync::Item::Write(w) = e.item {
            assert!(
                dots.insert(w.stamp.dot),
                "write {} twice in the server's log",
                w.stamp.dot
            );
        }
    }
    for (c, n) in [("bulk", 2_000), ("offline", 200), ("more", 500)] {
        assert_eq!(server.collection(c).count().expect("count"), n, "{c}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_client_edits_over_the_network_keep_the_later_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = spawn_server(&dir.path().join("server"), 0).await;
    let (a, b) = (open(dir.path(), "a"), open(dir.path(), "b"));
    let (ha, hb) = (client(&a, &p).await, client(&b, &p).await);
    let id = DocId::from_bytes([9; 16]);
    a.collection("d")
        .put(Document {
            id,
            fields: Document::new().with("v", 0i64).fields,
        })
        .expect("put");
    ha.sync_now(T).await.expect("sync");
    hb.sync_now(T).await.expect("sync");
    ha.stop().await;
    hb.stop().await;
    a.collection("d")
        .put(Document {
            id,
            fields: Document::new().with("v", 1i64).fields,
        })
        .expect("put");
    b.collection("d")
        .put(Document {
            id,
            fields: Document::new().with("v", 2i64).fields,
        })
        .expect("put"); // later stamp
    ha.start();
    hb.start();
    for _ in 0..2 {
        ha.sync_now(T).await.expect("sync");
        hb.sync_now(T).await.expect("sync");
    }
    for db in [&a, &b] {
        let d = db.collection("d").get(id).expect("get").expect("exists");
        assert_eq!(d.fields.get("v"), Some(&Value::Int(2)));
    }
    let lost = ha.conflicts(0, 10).expect("conflicts");
    assert!(
        lost.iter()
            .any(|c| c.id == id && c.field.as_deref() == Some("v")),
        "{lost:?}"
    );
}

/// The client process of the test below: writes while syncing live until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_client_when_spawned_by_the_kill_test() {
    let Ok(spec) = std::env::var("BLAZEDB_E2E_CHILD") else {
        return; // run directly: nothing to do
    };
    let mut parts = spec.split(',');
    let (dir, port, fp) = (
        parts.next().expect("dir"),
        parts.next().expect("port").parse::<u16>().expect("port"),
        Fingerprint::parse(parts.next().expect("fingerprint")).expect("fingerprint"),
    );
    let db = open(Path::new(dir), "victim");
    let remote = RemoteNode::pinned(
        "localhost",
        port,
        "main",
        fp,
        Credentials::none().token("tok"),
    );
    let _sync = db
        .enable_sync(remote.relay(), Role::Client)
        .await
        .expect("enable");
    for i in 0..1_000_000i64 {
        db.collection("pushed")
            .insert(Document::new().with("i", i))
            .expect("insert");
        if i % 200 == 0 {
            println!("wrote {i}");
            tokio::task::yield_now().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_mid_push_has_each_write_applied_exactly_once_after_it_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = spawn_server(&dir.path().join("server"), 0).await;
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "child_client_when_spawned_by_the_kill_test",
            "--nocapture",
        ])
        .env(
            "BLAZEDB_E2E_CHILD",
            format!("{},{},{}", dir.path().display(), p.port, p.fingerprint),
        )
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the client");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    // Let it write (and push, live) a few thousand documents, then kill it mid-stream.
    loop {
        let line = tokio::time::timeout(T, lines.next_line())
            .await
            .expect("the child writes")
            .expect("read")
            .expect("the child keeps writing");
        if line == "wrote 3000" {
            break;
        }
    }
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("wait");

    // Back again: the same database resumes from its persisted cursors.
    let victim = open(dir.path(), "victim");
    let written = victim.collection("pushed").count().expect("count");
    assert!(written > 3_000, "{written}");
    let h = client(&victim, &p).await;
    let st = h.sync_now(T).await.expect("sync");
    assert_eq!(st.pending_local_writes, 0, "{st:?}");
    // It resumed from its cursors: only what the server lacked went out again.
    assert!(st.writes_sent < 1_000, "resent {} writes", st.writes_sent);
    // An observer sees exactly what the victim committed, each document once.
    let observer = open(dir.path(), "observer");
    let ho = client(&observer, &p).await;
    ho.sync_now(T).await.expect("sync");
    assert_eq!(
        observer.collection("pushed").count().expect("count"),
        written
    );
    let mut seen = std::collections::BTreeSet::new();
    for d in observer.collection("pushed").all().expect("all") {
        assert!(
            seen.insert(d.fields.get("i").cloned().map(|v| format!("{v:?}"))),
            "a write applied twice"
        );
    }
    assert!(ho.conflicts(0, 10).expect("conflicts").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_client_bootstraps_a_large_database_over_tls() {
    let n: i64 = std::env::var("BLAZEDB_E2E_BOOTSTRAP_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000); // CI; the long mode (README) runs 100,000
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server");
    {
        let db = Database::builder()
            .kdf(KdfParams::INSECURE_FAST)
            .open(&data, "main", "server-pw")
            .expect("create the server's database");
        let mut tx = db.begin_write().expect("txn");
        for i in 0..n {
            tx.insert(
                "items",
                Document::new()
                    .with("i", i)
                    .with("name", format!("item {i}")),
            )
            .expect("insert");
        }
        tx.commit().expect("commit");
    }
    let p = spawn_server(&data, 0).await;
    let fresh = open(dir.path(), "fresh");
    let started = std::time::Instant::now();
    let h = client(&fresh, &p).await;
    let st = h
        .sync_now(Duration::from_secs(600))
        .await
        .expect("bootstrap");
    eprintln!(
        "bootstrap of {n} documents over TLS: {:?}, {} bytes received",
        started.elapsed(),
        st.bytes_received
    );
    assert_eq!(
        fresh.collection("items").count().expect("count"),
        u64::try_from(n).expect("n")
    );
    // And it goes on from the log: its own new write is pushed as a write.
    fresh
        .collection("items")
        .insert(Document::new().with("late", true))
        .expect("insert");
    let st = h.sync_now(T).await.expect("push");
    assert_eq!(st.pending_local_writes, 0, "{st:?}");
}
