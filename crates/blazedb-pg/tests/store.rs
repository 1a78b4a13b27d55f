//! Two server "processes" (two stores with their own connections and listeners) over one
//! real PostgreSQL serve the same data: a write through one reaches a client of the
//! other, concurrent conflicting writes through both converge, the log has no gap, a
//! commit on one wakes the other's sessions, and Postgres never holds a plaintext
//! document, field name or id.

mod common;

use std::sync::Arc;

use blazedb_core::{Document, Value};
use blazedb_sync::backend::NodeDb as _;
use blazedb_sync::relay::memory;
use blazedb_sync::{ServeHandle, SyncConfig, SyncStore};
use blazedb_testpg::Cluster;
use common::{T, assert_log_has_no_gap, client, client_db, pg_config, server_node};

/// What an administrator sees in every table holds none of `needles`.
async fn assert_no_plaintext(cfg: postgres::Config, needles: Vec<Vec<u8>>) {
    tokio::task::spawn_blocking(move || {
        let mut raw = cfg.connect(postgres::NoTls).expect("raw connection");
        for table in ["blazedb_records", "blazedb_logs", "blazedb_docs"] {
            let rows = raw
                .query(&format!("SELECT * FROM {table}"), &[])
                .expect("select");
            assert!(!rows.is_empty(), "{table} holds the data");
            for row in &rows {
                for i in 0..row.len() {
                    let Ok(bytes) = row.try_get::<_, Vec<u8>>(i) else {
                        continue;
                    };
                    for needle in &needles {
                        assert!(
                            !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                            "{table} holds {:?} in plaintext",
                            String::from_utf8_lossy(needle)
                        );
                    }
                }
            }
        }
    })
    .await
    .expect("no plaintext");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_server_processes_over_one_postgres_serve_and_converge_the_same_data() {
    let pg = tokio::task::spawn_blocking(|| Cluster::start().expect("a cluster"))
        .await
        .expect("joined");
    let cfg = pg_config(&pg);
    let (store1, node1) = server_node(cfg.clone(), b"server-pw")
        .await
        .expect("process 1");
    let (store2, node2) = server_node(cfg.clone(), b"server-pw")
        .await
        .expect("process 2");
    assert_eq!(
        node1.node_id(),
        node2.node_id(),
        "one server node, two processes"
    );
    let wrong = server_node(cfg.clone(), b"wrong").await;
    assert!(
        matches!(wrong, Err(blazedb_core::Error::WrongPassword)),
        "{:?}",
        wrong.err()
    );

    // Process 2's sessions wake on process 1's commits (LISTEN/NOTIFY).
    let signal2 = store2.commit_signal().expect("listen");
    let mut woken = signal2.subscribe();
    woken.mark_unchanged();

    let config = SyncConfig::default();
    let (r1, l1) = memory("process-1");
    let (r2, l2) = memory("process-2");
    let hub1 = ServeHandle::start_store(Arc::new(node1) as Arc<dyn SyncStore>, l1, &config, 64)
        .expect("serve 1");
    let hub2 = ServeHandle::start_store(Arc::new(node2) as Arc<dyn SyncStore>, l2, &config, 64)
        .expect("serve 2");

    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (client_db(dir.path(), "a"), client_db(dir.path(), "b"));
    let id = a
        .collection("notes")
        .insert(
            Document::new()
                .with("title", "secret-title-7f3a")
                .with("n", 1i64),
        )
        .expect("insert");
    let ha = client(&a, r1).await;
    ha.sync_now(T).await.expect("a pushes through process 1");
    tokio::time::timeout(T, woken.changed())
        .await
        .expect("process 2 hears of process 1's commit")
        .expect("the signal lives");
    let hb = client(&b, r2).await;
    hb.sync_now(T).await.expect("b pulls through process 2");
    let got = b
        .collection("notes")
        .get(id)
        .expect("get")
        .expect("arrived through postgres");
    assert_eq!(
        got.fields.get("title"),
        Some(&Value::from("secret-title-7f3a"))
    );

    // Conflicting writes at once through both processes: one writer at a time in
    // Postgres, both clients end identical.
    for i in 0..20i64 {
        let mut da = a
            .collection("notes")
            .get(id)
            .expect("get")
            .expect("a has it");
        da.fields.insert("n".into(), Value::from(100 + i));
        a.collection("notes").put(da).expect("a writes");
        let mut db = b
            .collection("notes")
            .get(id)
            .expect("get")
            .expect("b has it");
        db.fields.insert("n".into(), Value::from(200 + i));
        b.collection("notes").put(db).expect("b writes");
    }
    let (ra, rb) = tokio::join!(ha.sync_now(T), hb.sync_now(T));
    ra.expect("a");
    rb.expect("b");
    ha.sync_now(T).await.expect("a again");
    hb.sync_now(T).await.expect("b again");
    let (da, db) = (
        a.collection("notes")
            .get(id)
            .expect("get")
            .expect("a has it"),
        b.collection("notes")
            .get(id)
            .expect("get")
            .expect("b has it"),
    );
    assert_eq!(da.fields, db.fields, "converged");

    assert_log_has_no_gap(&store1).await;
    assert_no_plaintext(
        cfg,
        vec![
            b"secret-title-7f3a".to_vec(),
            b"title".to_vec(),
            b"notes".to_vec(),
            id.as_bytes().to_vec(),
        ],
    )
    .await;
    ha.stop().await;
    hb.stop().await;
    hub1.stop().await;
    hub2.stop().await;
    tokio::task::spawn_blocking(move || drop(pg))
        .await
        .expect("joined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_updates_through_two_processes_at_once_lose_none() {
    let pg = tokio::task::spawn_blocking(|| Cluster::start().expect("a cluster"))
        .await
        .expect("joined");
    let cfg = pg_config(&pg);
    let (store1, _node1) = server_node(cfg.clone(), b"server-pw")
        .await
        .expect("process 1");
    let (store2, _node2) = server_node(cfg.clone(), b"server-pw")
        .await
        .expect("process 2");
    // Each "process" appends its mark 40 times to one shared value, both at once: a
    // read-modify-write outside one transaction would lose some.
    let writers: Vec<_> = [(store1.clone(), b'a'), (store2.clone(), b'b')]
        .into_iter()
        .map(|(store, mark)| {
            std::thread::spawn(move || {
                for _ in 0..40 {
                    store
                        .shared_update("list", |cur| {
                            let mut v = cur.map(<[u8]>::to_vec).unwrap_or_default();
                            v.push(mark);
                            Ok::<_, std::convert::Infallible>(v)
                        })
                        .expect("update")
                        .expect("no error from the edit");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    let (v, generation) = tokio::task::spawn_blocking(move || {
        (
            store1.shared_get("list").expect("get").expect("kept"),
            store2.shared_generation("list").expect("generation"),
        )
    })
    .await
    .expect("joined");
    assert_eq!(v.iter().filter(|&&b| b == b'a').count(), 40);
    assert_eq!(v.iter().filter(|&&b| b == b'b').count(), 40);
    assert_eq!(generation, Some(80), "one generation per update");
    tokio::task::spawn_blocking(move || drop(pg))
        .await
        .expect("joined");
}
