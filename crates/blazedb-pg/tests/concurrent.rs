//! Three server processes over one PostgreSQL, one client on each, all writing to the
//! same few documents at once — puts, field changes, deletes, re-creations — round after
//! round: every client ends with the same documents, and the log has no gap. Postgres
//! serializes the processes' merges (the writer lock), never process memory.
//!
//! Rounds: `BLAZEDB_PG_ROUNDS` (default 25; the README's long mode runs 1,000).

mod common;

use std::sync::Arc;

use blazedb_core::{DocId, Document, Value};
use blazedb_engine::Database;
use blazedb_sync::relay::memory;
use blazedb_sync::{ServeHandle, SyncConfig, SyncStore};
use blazedb_testpg::Cluster;
use common::{T, assert_log_has_no_gap, client, client_db, pg_config, server_node};

const PROCESSES: usize = 3;
const DOCS: usize = 4;

/// A small deterministic generator (xorshift), so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n as u64).expect("small")
    }
}

/// One random write of client `c` in `round` to one of `ids`.
fn write(db: &Database, ids: &[DocId], rng: &mut Rng, c: usize, round: usize) {
    let coll = db.collection("shared");
    let id = ids[rng.below(ids.len())];
    let existing = coll.get(id).expect("get");
    match (rng.below(4), existing) {
        // Live sync may have deleted it since the read: that is a race of the clients,
        // not an error.
        (0, Some(_)) => match coll.delete(id) {
            Ok(()) | Err(blazedb_core::Error::NotFound { .. }) => {}
            Err(e) => panic!("delete: {e}"),
        },
        (1, Some(mut doc)) => {
            doc.fields.insert(
                format!("f{c}"),
                Value::from(i64::try_from(round).expect("small")),
            );
            coll.put(doc).expect("change a field");
        }
        (_, _) => {
            let doc = Document {
                id,
                fields: Document::new()
                    .with("by", i64::try_from(c).expect("small"))
                    .with("round", i64::try_from(round).expect("small"))
                    .fields,
            };
            coll.put(doc).expect("put");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_conflicting_writers_on_three_processes_converge_with_a_gap_free_log() {
    let rounds: usize = std::env::var("BLAZEDB_PG_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25);
    let pg = tokio::task::spawn_blocking(|| Cluster::start().expect("a cluster"))
        .await
        .expect("joined");
    let cfg = pg_config(&pg);
    let config = SyncConfig::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut stores, mut hubs, mut dbs, mut handles) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for p in 0..PROCESSES {
        let (store, node) = server_node(cfg.clone(), b"server-pw")
            .await
            .expect("process");
        let (relay, listener) = memory(&format!("process-{p}"));
        hubs.push(
            ServeHandle::start_store(Arc::new(node) as Arc<dyn SyncStore>, listener, &config, 64)
                .expect("serve"),
        );
        let db = client_db(dir.path(), &format!("c{p}"));
        handles.push(client(&db, relay).await);
        dbs.push(db);
        stores.push(store);
    }
    let ids: Vec<DocId> = (0..DOCS).map(|_| DocId::new()).collect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..rounds {
        for (c, db) in dbs.iter().enumerate() {
            write(db, &ids, &mut rng, c, round);
        }
        // All three push and pull at once, through their own processes.
        let (r0, r1, r2) = tokio::join!(
            handles[0].sync_now(T),
            handles[1].sync_now(T),
            handles[2].sync_now(T)
        );
        for r in [r0, r1, r2] {
            r.expect("sync");
        }
    }
    // Quiet now: two more passes let every verdict reach everyone.
    for _ in 0..2 {
        for h in &handles {
            h.sync_now(T).await.expect("settle");
        }
    }
    let docs: Vec<Vec<Document>> = dbs
        .iter()
        .map(|db| db.collection("shared").all().expect("all"))
        .collect();
    for (c, d) in docs.iter().enumerate().skip(1) {
        assert_eq!(
            d, &docs[0],
            "client {c} differs from client 0 after {rounds} rounds"
        );
    }
    assert_log_has_no_gap(&stores[0]).await;
    for h in &handles {
        h.stop().await;
    }
    for hub in &hubs {
        hub.stop().await;
    }
    tokio::task::spawn_blocking(move || drop((stores, pg)))
        .await
        .expect("joined");
}
