//! The conflict rules of docs/semantics.md (rules 1, 2, 3, 4 and 5 with the new life
//! after a delete; 6 for every loss) hold when the server's state lives in PostgreSQL
//! and the nodes reach it through different server processes: two real
//! `blazedb-server` processes over one real Postgres, over TLS. The writers: a
//! server-role database that syncs as a peer of the mesh (`--peer-token`, its writes
//! carry server priority), and three clients, alice on process 1, bob and carol on
//! process 2, some moving to the other process between scenes. Each scene is set up so
//! that only its own rule gives the result it checks (e.g. the losing write has the
//! later stamp, or arrives first), and each loss is checked in the loser's conflict log
//! with its reason. At the end every replica exports the same bytes, and a `pg_dump`
//! of the store holds no value, field name, collection name or id in plaintext.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use blazedb_core::{DocId, Document, Value};
use blazedb_engine::{Database, Patch};
use blazedb_net::Credentials;
use blazedb_sync::{EnableSync, LossReason, Role, SyncHandle};
use blazedb_testpg::Cluster;
use common::{Proc, T, open};

const BOARD: &str = "board";
const PEER_TOKEN: &str = "peer-secret-token";

/// A server process over the cluster's store, accepting server peers with
/// [`PEER_TOKEN`].
async fn store_server(dir: &Path, name: &str, pg: &Cluster) -> Proc {
    let peer = dir.join("peer-token");
    std::fs::write(&peer, PEER_TOKEN).expect("write the peer token");
    std::fs::set_permissions(&peer, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    common::store_server(
        dir,
        name,
        pg,
        &["--peer-token-file", peer.to_str().expect("utf-8")],
    )
    .await
}

/// A node of the test: its database, and its sync through one of the processes.
struct Node {
    name: &'static str,
    db: Database,
    role: Role,
    sync: Option<SyncHandle>,
}

impl Node {
    async fn connect(&mut self, p: &Proc) {
        if let Some(h) = self.sync.take() {
            h.stop().await;
        }
        let creds = match self.role {
            Role::Server => Credentials::none().peer_token(PEER_TOKEN),
            _ => Credentials::none().token("tok"),
        };
        let h = self
            .db
            .enable_sync(p.remote(creds).relay(), self.role)
            .await
            .unwrap_or_else(|e| panic!("{}: enable sync: {e}", self.name));
        self.sync = Some(h);
    }

    async fn offline(&mut self) {
        if let Some(h) = self.sync.take() {
            h.stop().await;
        }
    }

    fn board(&self) -> blazedb_engine::Collection<'_> {
        self.db.collection(BOARD)
    }

    fn field(&self, id: DocId, field: &str) -> Option<Value> {
        self.board()
            .get(id)
            .expect("get")
            .and_then(|d| d.fields.get(field).cloned())
    }

    /// The last entry of this node's conflict log (0: none).
    fn last_conflict(&self) -> u64 {
        self.handle()
            .conflicts(0, usize::MAX)
            .expect("conflicts")
            .last()
            .map_or(0, |e| e.seq)
    }

    /// The reasons of this node's conflict-log entries after `after`.
    fn losses_after(&self, after: u64) -> Vec<LossReason> {
        self.handle()
            .conflicts(after, 100)
            .expect("conflicts")
            .into_iter()
            .map(|e| e.reason)
            .collect()
    }

    fn handle(&self) -> &SyncHandle {
        self.sync
            .as_ref()
            .unwrap_or_else(|| panic!("{} is offline", self.name))
    }

    fn export(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.db.export_ndjson(&mut out, None).expect("export");
        out
    }
}

/// Every connected node syncs, twice over: afterwards each holds what the store holds
/// (every process reads the one store), and every loss has reached its writer.
async fn settle(nodes: &[&Node]) {
    for _ in 0..2 {
        for n in nodes {
            if let Some(h) = &n.sync {
                h.sync_now(T)
                    .await
                    .unwrap_or_else(|e| panic!("{} could not sync: {e}", n.name));
            }
        }
    }
}

fn lower_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The four nodes and the two processes.
struct Mesh {
    server: Node,
    alice: Node,
    bob: Node,
    carol: Node,
    p1: Proc,
    p2: Proc,
}

impl Mesh {
    async fn settle(&self) {
        settle(&[&self.server, &self.alice, &self.bob, &self.carol]).await;
    }

    fn all(&self) -> [&Node; 4] {
        [&self.server, &self.alice, &self.bob, &self.carol]
    }
}

/// 1. Fan-out: the server-role peer's notice reaches every client, whichever process.
async fn fan_out(m: &Mesh) -> DocId {
    let notice = m
        .server
        .board()
        .insert(
            Document::new()
                .with("title", "Welcome")
                .with("price", 10)
                .with("status", "open"),
        )
        .expect("insert");
    m.settle().await;
    for n in m.all() {
        assert_eq!(
            n.field(notice, "title"),
            Some("Welcome".into()),
            "{}",
            n.name
        );
    }
    notice
}

/// 2. Server priority: the server peer sets price 15; then alice, offline (she has not
///    seen it), sets 12 — a later stamp, which rule 3 would let win. Alice comes back
///    through the other process: 15 wins, her 12 is in her log as `server-priority`.
///    3. Causality first: alice, having seen 15, sets 16: it wins over the server's.
async fn server_priority_then_causality(m: &mut Mesh, notice: DocId) {
    let before = m.alice.last_conflict();
    m.alice.offline().await;
    m.server
        .board()
        .patch(notice, &Patch::new().set("price", 15))
        .expect("patch");
    settle(&[&m.server, &m.bob, &m.carol]).await;
    m.alice
        .board()
        .patch(notice, &Patch::new().set("price", 12))
        .expect("patch");
    m.alice.connect(&m.p2).await;
    m.settle().await;
    for n in m.all() {
        assert_eq!(n.field(notice, "price"), Some(15.into()), "{}", n.name);
    }
    assert_eq!(
        m.alice.losses_after(before),
        [LossReason::ServerPriority],
        "alice's later 12 lost to the server's 15, on record"
    );

    m.alice
        .board()
        .patch(notice, &Patch::new().set("price", 16))
        .expect("patch");
    m.settle().await;
    for n in m.all() {
        assert_eq!(n.field(notice, "price"), Some(16.into()), "{}", n.name);
    }
}

/// 4. Later timestamp: bob and carol, both offline, retitle; bob writes first, carol
///    last. Carol comes back first (through process 2) and bob after her (through
///    process 1): the later write wins though it arrived first, and bob's is on record
///    as `later-timestamp`.
async fn later_timestamp(m: &mut Mesh, notice: DocId) {
    let before = m.bob.last_conflict();
    m.bob.offline().await;
    m.carol.offline().await;
    m.bob
        .board()
        .patch(notice, &Patch::new().set("title", "Bob's title"))
        .expect("patch");
    m.carol
        .board()
        .patch(notice, &Patch::new().set("title", "Carol's title"))
        .expect("patch");
    m.carol.connect(&m.p2).await;
    m.carol.handle().sync_now(T).await.expect("carol syncs");
    m.bob.connect(&m.p1).await;
    m.settle().await;
    for n in m.all() {
        assert_eq!(
            n.field(notice, "title"),
            Some("Carol's title".into()),
            "{}",
            n.name
        );
    }
    assert_eq!(
        m.bob.losses_after(before),
        [LossReason::LaterTimestamp],
        "bob's title is on record"
    );
}

/// 5. Offline client: carol, offline, adds two notes and closes the notice, then
///    reconnects through the other process. Returns the notes' ids.
async fn offline_client(m: &mut Mesh, notice: DocId) -> (DocId, DocId) {
    m.carol.offline().await;
    let n1 = m
        .carol
        .board()
        .insert(
            Document::new()
                .with("title", "Carol's note 1")
                .with("pinned", true),
        )
        .expect("insert");
    let n2 = m
        .carol
        .board()
        .insert(Document::new().with("title", "Carol's note 2"))
        .expect("insert");
    m.carol
        .board()
        .patch(notice, &Patch::new().set("status", "closed"))
        .expect("patch");
    m.carol.connect(&m.p1).await;
    m.settle().await;
    for n in m.all() {
        assert!(n.board().get(n1).expect("get").is_some(), "{}", n.name);
        assert!(n.board().get(n2).expect("get").is_some(), "{}", n.name);
        assert_eq!(
            n.field(notice, "status"),
            Some("closed".into()),
            "{}",
            n.name
        );
    }
    (n1, n2)
}

/// 6. Delete vs update: the server peer deletes carol's first note; then alice,
///    offline (she has not seen the delete), edits it — a later stamp. The delete wins
///    everywhere (rules 5 and 2) and alice's edit is on record as `server-priority`.
///    Then bob, who has seen the delete, writes the same id again: a new life, in
///    which the old life's fields do not come back.
async fn delete_vs_update_then_new_life(m: &mut Mesh, n1: DocId) {
    let before = m.alice.last_conflict();
    m.alice.offline().await;
    m.server.board().delete(n1).expect("delete");
    settle(&[&m.server, &m.bob, &m.carol]).await;
    m.alice
        .board()
        .patch(n1, &Patch::new().set("title", "alice was here"))
        .expect("patch");
    m.alice.connect(&m.p1).await;
    m.settle().await;
    for n in m.all() {
        assert!(n.board().get(n1).expect("get").is_none(), "{}", n.name);
    }
    assert_eq!(
        m.alice.losses_after(before),
        [LossReason::ServerPriority],
        "alice's edit lost to the server's delete, on record"
    );

    m.bob
        .board()
        .put(Document::with_id(n1).with("title", "Bob's new note"))
        .expect("put");
    m.settle().await;
    for n in m.all() {
        let d = n.board().get(n1).expect("get").expect("the new life");
        assert_eq!(
            d.fields.get("title"),
            Some(&"Bob's new note".into()),
            "{}",
            n.name
        );
        assert_eq!(
            d.fields.get("pinned"),
            None,
            "{}: the old life came back",
            n.name
        );
    }
}

/// What a Postgres administrator sees: no value, field name, collection name or id.
fn assert_dump_holds_no_plaintext(dump: &str, ids: &[DocId]) {
    assert!(
        dump.contains("blazedb_records"),
        "the dump holds the store's tables"
    );
    let mut secrets: Vec<String> = [
        "Welcome",
        "Carol's title",
        "Bob's title",
        "Carol's note",
        "Bob's new note",
        "alice was here",
        "pinned",
        "closed",
        "title",
        "price",
        "status",
        BOARD,
    ]
    .iter()
    .flat_map(|s| [(*s).to_owned(), lower_hex(s.as_bytes())])
    .collect();
    for id in ids {
        secrets.push(id.to_string());
        secrets.push(lower_hex(id.as_bytes()));
    }
    for s in &secrets {
        assert!(!dump.contains(s.as_str()), "the dump holds {s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_rules_hold_across_server_processes_sharing_postgres() {
    let pg = tokio::task::spawn_blocking(|| Cluster::start().expect("a cluster"))
        .await
        .expect("joined");
    let dir = tempfile::tempdir().expect("tempdir");
    let node = |name, role| Node {
        name,
        db: open(dir.path(), name),
        role,
        sync: None,
    };
    let mut m = Mesh {
        server: node("server", Role::Server),
        alice: node("alice", Role::Client),
        bob: node("bob", Role::Client),
        carol: node("carol", Role::Client),
        p1: store_server(dir.path(), "p1", &pg).await,
        p2: store_server(dir.path(), "p2", &pg).await,
    };
    m.server.connect(&m.p1).await;
    m.alice.connect(&m.p1).await;
    m.bob.connect(&m.p2).await;
    m.carol.connect(&m.p2).await;

    let notice = fan_out(&m).await;
    server_priority_then_causality(&mut m, notice).await;
    later_timestamp(&mut m, notice).await;
    let (n1, n2) = offline_client(&mut m, notice).await;
    delete_vs_update_then_new_life(&mut m, n1).await;

    // Every replica, byte for byte.
    let reference = m.server.export();
    assert!(!reference.is_empty());
    for n in [&m.alice, &m.bob, &m.carol] {
        assert_eq!(
            String::from_utf8_lossy(&n.export()),
            String::from_utf8_lossy(&reference),
            "{} differs from the server peer",
            n.name
        );
    }
    for n in [&mut m.server, &mut m.alice, &mut m.bob, &mut m.carol] {
        n.offline().await;
    }

    let dump = tokio::task::block_in_place(|| pg.dump("postgres")).expect("pg_dump");
    assert_dump_holds_no_plaintext(&dump, &[notice, n1, n2]);

    for mut p in [m.p1, m.p2] {
        p.sigterm();
        assert!(p.child.wait().await.expect("wait").success());
    }
    tokio::task::spawn_blocking(move || drop(pg))
        .await
        .expect("joined");
}
