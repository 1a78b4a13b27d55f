//! A client the server forgot for silence comes back (docs/semantics.md, "Garbage
//! collection": it bootstraps again). A server that does not collect tombstones
//! (`SyncConfig::tombstone_gc` off) serves it a snapshot of merge states that already
//! hold the client's own synced writes, and the client joins them into the state it
//! kept (`node/snapshot.rs`, `apply_snapshot`: no wipe): `DocState::join` then runs
//! outside its stated contract (the sender has seen the receiver's writes). These tests
//! pin what users get in that situation: every replica converges, nothing is lost or
//! resurrected, the client's unsent writes still sync, and every loss its writes have
//! in the final history (docs/semantics.md rule 6, as the reference model counts them:
//! `tests/common/model.rs`, `Model::losses`) reaches its conflict log.
//!
//! Every node runs on one injected clock that the test moves by hand, so stamps (who
//! wins), silence and the retention are decided by the test, not by timing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use blazedb_core::{DocId, Document, Value};
use blazedb_engine::{Database, KdfParams, Patch};
use blazedb_sync::{
    ConflictEntry, ConnectionMode, Held, LogPos, LossReason, NodeRef, Role, SyncAdvanced,
    SyncConfig, SyncMode, Topology,
};

const T: Duration = Duration::from_secs(20);
/// The server forgets a peer silent for longer than this (µs of the injected clock).
const RETENTION_US: u64 = 1_000_000;

/// A server `s`, the client `c` that goes away, and a client `b` that stays.
struct World {
    _dir: tempfile::TempDir,
    now: Arc<AtomicU64>,
    topo: Topology,
    dbs: [Database; 3],
    refs: [NodeRef; 3],
}

const S: usize = 0;
const C: usize = 1;
const B: usize = 2;

impl World {
    fn new(server_collects: bool) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = Arc::new(AtomicU64::new(1_700_000_000_000_000));
        let config = |collects: bool| {
            let clock = Arc::clone(&now);
            SyncConfig {
                tombstone_gc: collects,
                retention_us: RETENTION_US,
                advanced: SyncAdvanced {
                    clock: Arc::new(move || clock.load(Ordering::SeqCst)),
                    stamp_with_write_time: false,
                    // Garbage collection only when the test asks for it.
                    gc_every_us: u64::MAX,
                    ..SyncAdvanced::default()
                },
                ..SyncConfig::default()
            }
        };
        let mut topo = Topology::new();
        let mut open = |name: &str, role: Role, collects: bool| {
            let db = Database::builder()
                .kdf(KdfParams::INSECURE_FAST)
                .open(dir.path(), name, "pw")
                .expect("open");
            let r = topo
                .register_with(&db, name, SyncMode::LocalAndRemote, role, &config(collects))
                .expect("register");
            (db, r)
        };
        let (s, rs) = open("server", Role::Server, server_collects);
        let (c, rc) = open("away", Role::Client, false);
        let (b, rb) = open("stays", Role::Client, false);
        World {
            _dir: dir,
            now,
            topo,
            dbs: [s, c, b],
            refs: [rs, rc, rb],
        }
    }

    /// Moves the shared clock on (each step of the story happens later than the last).
    fn tick(&self, us: u64) {
        self.now.fetch_add(us, Ordering::SeqCst);
    }

    fn link(&mut self, n: usize) {
        self.topo
            .connect_local(self.refs[n], self.refs[S], ConnectionMode::Bidirectional)
            .expect("connect");
    }

    async fn unlink(&mut self, n: usize) {
        self.topo
            .disconnect(self.refs[n], self.refs[S])
            .await
            .expect("disconnect");
    }

    async fn sync(&self) {
        self.topo.sync_all(T).await.expect("sync");
    }

    fn db(&self, n: usize) -> blazedb_engine::Collection<'_> {
        self.dbs[n].collection("docs")
    }

    fn put(&self, n: usize, doc: Document) {
        self.db(n).put(doc).expect("put");
    }

    fn patch(&self, n: usize, id: DocId, patch: &Patch) {
        self.db(n).patch(id, patch).expect("patch");
    }

    fn get(&self, n: usize, id: DocId) -> Option<Document> {
        self.db(n).get(id).expect("get")
    }

    fn conflicts(&self, n: usize) -> Vec<ConflictEntry> {
        self.topo
            .node(self.refs[n])
            .expect("node")
            .conflicts(0, 1000)
            .expect("conflicts")
    }
}

/// The documents of the story.
struct Ids {
    /// Both clients patch `f` and `g` concurrently (the client that stays later, so it
    /// wins both); the server then sets `f` again, having seen both. The away client
    /// loses `g` for good, and `f` only until the server's later write overwrites
    /// both values (rule 1).
    d: DocId,
    /// The away client deletes it; the client that stays, concurrently and later,
    /// patches it: the delete is defeated.
    e: DocId,
    /// The away client patches it; the client that stays, concurrently and later,
    /// deletes it: the patch is killed.
    k: DocId,
    /// The away client patches it; the client that stays, having seen that, puts a
    /// whole new content: a causal overwrite (rule 1), no loss anywhere.
    p: DocId,
    /// Created by the away client after the server forgot it (never sent before).
    u: DocId,
}

/// Plays the story; `forget`: whether the server forgets the away client before it
/// returns (otherwise it comes back within the retention and takes the log).
async fn story(w: &mut World, forget: bool) -> Ids {
    let (d, e, k, p) = (DocId::new(), DocId::new(), DocId::new(), DocId::new());
    w.link(C);
    w.link(B);
    w.put(
        S,
        Document::with_id(d)
            .with("f", 0i64)
            .with("g", 0i64)
            .with("h", 0i64),
    );
    w.put(S, Document::with_id(e).with("x", 0i64));
    w.put(S, Document::with_id(k).with("y", 0i64));
    w.put(S, Document::with_id(p).with("z", 0i64));
    w.sync().await;

    // The away client's writes reach the server while the other client is offline.
    w.unlink(B).await;
    w.tick(1_000);
    w.patch(C, d, &Patch::new().set("f", "away").set("g", "away"));
    w.db(C).delete(e).expect("delete");
    w.patch(C, k, &Patch::new().set("y", "away"));
    w.patch(C, p, &Patch::new().set("z", "away"));
    w.sync().await;
    w.unlink(C).await;

    // The other client, not having seen them, writes later; then it syncs.
    w.tick(1_000);
    w.patch(B, d, &Patch::new().set("f", "stays").set("g", "stays"));
    w.patch(B, e, &Patch::new().set("x", "stays"));
    w.db(B).delete(k).expect("delete");
    w.link(B);
    w.sync().await;
    w.tick(1_000);
    w.put(B, Document::with_id(p).with("z", "stays"));
    w.sync().await;

    // The server, having seen both, sets `f`: the evidence that the away client's `f`
    // lost is overwritten.
    w.tick(1_000);
    w.patch(S, d, &Patch::new().set("f", "server"));
    w.sync().await;

    // Offline, the away client writes again.
    w.tick(1_000);
    w.patch(C, d, &Patch::new().set("h", "offline"));
    let u = w
        .db(C)
        .insert(Document::new().with("offline", true))
        .expect("insert");

    if forget {
        w.tick(RETENTION_US + 1);
        let server = w.topo.node(w.refs[S]).expect("node").clone();
        let report = server.collect_garbage().expect("gc");
        assert_eq!(report.peers_forgotten, 1, "{report:?}");
        assert!(
            server.log_floor().expect("floor") > LogPos::ZERO,
            "the log the away client needs is pruned: {report:?}"
        );
    }
    w.tick(1_000);
    w.link(C);
    w.sync().await;
    Ids { d, e, k, p, u }
}

fn has_loss(log: &[ConflictEntry], id: DocId, field: Option<&str>, won: Held) -> bool {
    log.iter().any(|c| {
        c.id == id
            && c.field.as_deref() == field
            && c.loser.role == Role::Client
            && c.won.as_ref() == Some(&won)
    })
}

/// The losses the story's final history holds for the away client's writes: `g` of
/// `d` to the other client's later patch, its defeated delete of `e`, its patch of `k`
/// killed by the other client's delete.
fn assert_final_losses(log: &[ConflictEntry], d: DocId, e: DocId, k: DocId) {
    assert!(
        has_loss(log, d, Some("g"), Held::Value(Value::from("stays"))),
        "{log:#?}"
    );
    assert!(has_loss(log, e, None, Held::Updated), "{log:#?}");
    assert!(has_loss(log, k, None, Held::Deleted), "{log:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_forgotten_by_a_server_that_keeps_tombstones_converges_and_logs_every_final_loss()
{
    let mut w = World::new(false);
    let Ids { d, e, k, p, u } = story(&mut w, true).await;
    let (s, c) = (w.topo.node(w.refs[S]).expect("node"), w.refs[C]);
    // It did take the server's snapshot, over the state it kept.
    assert_eq!(
        w.topo
            .node(c)
            .expect("node")
            .bootstrapped_from()
            .expect("meta"),
        Some(s.node_id())
    );

    // Every replica holds the same documents, and what the rules say.
    let want_d = Document::with_id(d)
        .with("f", "server")
        .with("g", "stays")
        .with("h", "offline");
    for n in [S, C, B] {
        assert_eq!(w.get(n, d), Some(want_d.clone()), "node {n}");
        assert_eq!(
            w.get(n, e).map(|x| x.fields.get("x").cloned()),
            Some(Some(Value::from("stays"))),
            "node {n}: the defeated delete has no effect"
        );
        assert_eq!(w.get(n, k), None, "node {n}: the winning delete holds");
        assert_eq!(
            w.get(n, p),
            Some(Document::with_id(p).with("z", "stays")),
            "node {n}: the causal overwrite holds"
        );
        assert!(w.get(n, u).is_some(), "node {n}: the unsent insert synced");
    }
    for id in [d, e, k, p, u] {
        let states: Vec<_> = [S, C, B]
            .iter()
            .map(|&n| {
                let st = w
                    .topo
                    .node(w.refs[n])
                    .expect("node")
                    .doc_state("docs", id)
                    .expect("state");
                (st.eval(), st.vv)
            })
            .collect();
        assert!(
            states.iter().all(|x| x == &states[0]),
            "{id}: replicas' merge states disagree: {states:?}"
        );
    }

    // Every loss of the away client's writes in the final history is on its record,
    // and nothing of it expired (the server collected nothing).
    let log = w.conflicts(C);
    assert_final_losses(&log, d, e, k);
    assert!(
        log.iter().all(|c| c.reason != LossReason::RetentionExpired),
        "{log:#?}"
    );
    // A causal overwrite is no loss, however the client learns of it.
    assert!(log.iter().all(|c| c.id != p), "{log:#?}");
    // Not asserted: the loss of `f` in `d`. A client that takes the log records it
    // (it applies the winning write before the server's overwrite); the snapshot no
    // longer shows it, and the final history does not count it (`f` was overwritten
    // by a write that saw both values: `Model::losses` leaves it out).
    w.topo.shutdown().await;
}

/// The same story against a server that collects tombstones: the returning client
/// drops its replicated state (`apply_snapshot`'s wipe) and its unsent writes expire,
/// by design. But the losses its *synced* writes suffered in the final history were
/// collected on the server while it was away (it no longer held collection back), so
/// neither the snapshot nor the wipe brings them to its conflict log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fails on the current code: a forgotten client never learns the losses a collecting server collected while it was away"]
async fn a_client_forgotten_by_a_collecting_server_logs_the_final_losses_of_its_synced_writes() {
    let mut w = World::new(true);
    let Ids { d, e, k, .. } = story(&mut w, true).await;
    assert_final_losses(&w.conflicts(C), d, e, k);
    w.topo.shutdown().await;
}
