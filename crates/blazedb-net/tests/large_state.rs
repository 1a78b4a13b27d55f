//! A document whose merge state outgrows one client frame still reaches a bootstrapping
//! client: two concurrent 9 MiB writes to one document (one left out by the size rule,
//! both kept in the state), the server's log pruned, a fresh client taking a snapshot
//! over TLS.

use std::time::Duration;

use blazedb_core::{DocId, Document, Value};
use blazedb_engine::{Database, KdfParams};
use blazedb_net::{Credentials, RemoteNode, Server};
use blazedb_sync::{EnableSync, LossReason, Role, SyncAdvanced, SyncConfig};

const T: Duration = Duration::from_secs(60);

fn open(dir: &std::path::Path, name: &str) -> Database {
    Database::builder()
        .kdf(KdfParams::INSECURE_FAST)
        .open(dir, name, "pw")
        .expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_state_larger_than_a_client_frame_bootstraps_a_fresh_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server_db = open(dir.path(), "server");
    let mut server = Server::new(0, &server_db, "main", Some("tok"), None);
    // Collect the log as soon as every peer has it, so a new client needs a snapshot.
    server.sync = SyncConfig {
        advanced: SyncAdvanced {
            gc_every_us: 0,
            ..SyncAdvanced::default()
        },
        ..SyncConfig::default()
    };
    let addr = server.start().await.expect("start");
    let remote = RemoteNode::pinned(
        "localhost",
        addr.port(),
        "main",
        server.fingerprint().expect("TLS"),
        Credentials::none().token("tok"),
    );
    let id = DocId::new();
    let nine = 9 << 20;
    let (a, b) = (open(dir.path(), "a"), open(dir.path(), "b"));
    a.collection("docs")
        .put(Document::with_id(id).with("a", "a".repeat(nine)))
        .expect("put");
    b.collection("docs")
        .put(Document::with_id(id).with("b", "b".repeat(nine)))
        .expect("put");
    let ha = a
        .enable_sync(remote.relay(), Role::Client)
        .await
        .expect("enable");
    ha.sync_now(T).await.expect("a first");
    let hb = b
        .enable_sync(remote.relay(), Role::Client)
        .await
        .expect("enable");
    hb.sync_now(T).await.expect("b second");
    assert!(
        hb.conflicts(0, 10)
            .expect("conflicts")
            .iter()
            .any(|c| c.reason == LossReason::TooLarge)
    );
    let node = server.node().expect("running");
    let state = node.doc_state("docs", id).expect("state");
    let state_bytes = postcard::to_allocvec(&state).expect("encode").len();
    assert!(
        state_bytes > blazedb_net::frame::FRAME_MAX,
        "the state holds both values: {state_bytes} bytes"
    );
    // Wait (a deadline, polling) until the server has collected its log.
    let deadline = tokio::time::Instant::now() + T;
    while node.log_floor().expect("floor") == blazedb_sync::LogPos::ZERO {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the log was never pruned"
        );
        ha.sync_now(T).await.expect("sync");
        hb.sync_now(T).await.expect("sync");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = open(dir.path(), "c");
    let hc = c
        .enable_sync(remote.relay(), Role::Client)
        .await
        .expect("enable");
    hc.sync_now(T).await.expect("the fresh client bootstraps");
    assert_eq!(
        hc.node().bootstrapped_from().expect("meta"),
        Some(node.node_id())
    );
    let doc = c.collection("docs").get(id).expect("get").expect("doc");
    assert!(matches!(doc.fields.get("a"), Some(Value::String(s)) if s.len() == nine));
    assert!(!doc.fields.contains_key("b"));
    for h in [ha, hb, hc] {
        h.stop().await;
    }
    server.stop().await.expect("stop");
}
