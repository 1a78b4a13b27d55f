//! The situations users meet, each pinned by a test named after it (docs/semantics.md: the rules and how sync works).
//! Nodes run in one process, connected through in-memory relays by a `Topology`;
//! "concurrent" writes are made while the nodes are disconnected.

use std::time::Duration;

use blazedb_core::{DocId, Document, Value};
use blazedb_engine::{Database, KdfParams, Patch};
use blazedb_sync::{ConnectionMode, Held, LossReason, NodeRef, Role, SyncMode, Topology};

const T: Duration = Duration::from_secs(20);
/// For syncs moving documents of several MiB: an unoptimised build seals and opens them
/// (and merge states holding two of them) slowly, about a minute per test.
const T_LARGE: Duration = Duration::from_secs(300);

struct Net {
    _dir: tempfile::TempDir,
    topo: Topology,
    dbs: Vec<Database>,
    refs: Vec<NodeRef>,
}

impl Net {
    /// Nodes with the given roles; node 0 is the hub when `star`.
    fn new(roles: &[Role]) -> Net {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut topo = Topology::new();
        let mut dbs = Vec::new();
        let mut refs = Vec::new();
        for (i, role) in roles.iter().enumerate() {
            let name = format!("n{i}");
            let db = Database::builder()
                .kdf(KdfParams::INSECURE_FAST)
                .open(dir.path(), &name, "pw")
                .expect("open");
            refs.push(
                topo.register(&db, &name, SyncMode::LocalAndRemote, *role)
                    .expect("register"),
            );
            dbs.push(db);
        }
        Net {
            _dir: dir,
            topo,
            dbs,
            refs,
        }
    }

    fn link(&mut self, a: usize, b: usize) {
        self.topo
            .connect_local(self.refs[a], self.refs[b], ConnectionMode::Bidirectional)
            .expect("connect");
    }

    async fn unlink(&mut self, a: usize, b: usize) {
        self.topo
            .disconnect(self.refs[a], self.refs[b])
            .await
            .expect("disconnect");
    }

    async fn sync(&self) {
        self.topo.sync_all(T).await.expect("sync");
    }

    async fn sync_large(&self) {
        self.topo.sync_all(T_LARGE).await.expect("sync");
    }

    fn get(&self, n: usize, id: DocId) -> Option<Document> {
        self.dbs[n].collection("docs").get(id).expect("get")
    }

    fn put(&self, n: usize, doc: Document) {
        self.dbs[n].collection("docs").put(doc).expect("put");
    }

    fn patch(&self, n: usize, id: DocId, p: &Patch) {
        self.dbs[n].collection("docs").patch(id, p).expect("patch");
    }

    fn delete(&self, n: usize, id: DocId) {
        self.dbs[n].collection("docs").delete(id).expect("delete");
    }

    fn conflicts(&self, n: usize) -> Vec<blazedb_sync::ConflictEntry> {
        self.topo
            .node(self.refs[n])
            .expect("node")
            .conflicts(0, 1000)
            .expect("conflicts")
    }

    fn assert_all_equal(&self) {
        let all = |db: &Database| -> Vec<(String, Vec<Document>)> {
            db.begin_read()
                .expect("read")
                .collections()
                .expect("collections")
                .into_iter()
                .map(|c| {
                    let docs = db.collection(&c).all().expect("all");
                    (c, docs)
                })
                .filter(|(_, d)| !d.is_empty())
                .collect()
        };
        let first = all(&self.dbs[0]);
        for (i, db) in self.dbs.iter().enumerate().skip(1) {
            assert_eq!(all(db), first, "node {i} differs from node 0");
        }
    }
}

fn doc(id: DocId) -> Document {
    Document::with_id(id).with("title", "first").with("n", 1i64)
}

/// Two nodes share a document, then each writes `field` while disconnected (`first`
/// writes before `second`), then they sync.
async fn concurrent_edit(roles: [Role; 2], first: usize) -> (Net, DocId) {
    let mut net = Net::new(&roles);
    net.link(1, 0);
    let id = DocId::new();
    net.put(0, doc(id));
    net.sync().await;
    net.unlink(1, 0).await;
    let second = 1 - first;
    net.patch(
        first,
        id,
        &Patch::new().set("title", format!("by node {first}")),
    );
    net.patch(
        second,
        id,
        &Patch::new().set("title", format!("by node {second}")),
    );
    net.link(1, 0);
    net.sync().await;
    net.assert_all_equal();
    (net, id)
}

fn title(net: &Net, n: usize, id: DocId) -> Value {
    net.get(n, id)
        .and_then(|d| d.get("title").cloned())
        .expect("title")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_vs_client_concurrent_edits_the_server_wins_whichever_wrote_last() {
    for first in [0, 1] {
        let (net, id) = concurrent_edit([Role::Server, Role::Client], first).await;
        assert_eq!(
            title(&net, 1, id),
            Value::from("by node 0"),
            "first writer {first}"
        );
        let lost = net.conflicts(1);
        assert_eq!(lost.len(), 1, "the client's loss is on record: {lost:?}");
        assert_eq!(lost[0].reason, LossReason::ServerPriority);
        assert_eq!(lost[0].lost, Held::Value(Value::from("by node 1")));
        assert_eq!(lost[0].won, Some(Held::Value(Value::from("by node 0"))));
        assert!(net.conflicts(0).is_empty(), "the server lost nothing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_vs_client_the_later_write_wins() {
    for first in [0, 1] {
        let (net, id) = concurrent_edit([Role::Client, Role::Client], first).await;
        let second = 1 - first;
        assert_eq!(title(&net, 0, id), Value::from(format!("by node {second}")));
        let lost = net.conflicts(first);
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].reason, LossReason::LaterTimestamp);
        assert!(net.conflicts(second).is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_vs_server_the_later_write_wins() {
    for first in [0, 1] {
        let (net, id) = concurrent_edit([Role::Server, Role::Server], first).await;
        assert_eq!(
            title(&net, 1, id),
            Value::from(format!("by node {}", 1 - first))
        );
        assert_eq!(net.conflicts(first)[0].reason, LossReason::LaterTimestamp);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_synced_the_servers_value_overrides_it() {
    let mut net = Net::new(&[Role::Server, Role::Client]);
    net.link(1, 0);
    let id = DocId::new();
    net.put(0, doc(id));
    net.patch(0, id, &Patch::new().set("title", "set by the server"));
    net.sync().await;
    assert_eq!(title(&net, 1, id), Value::from("set by the server"));
    net.patch(1, id, &Patch::new().set("title", "edited by the client"));
    net.sync().await;
    assert_eq!(title(&net, 0, id), Value::from("edited by the client"));
    assert!(net.conflicts(1).is_empty() && net.conflicts(0).is_empty());
    net.unlink(1, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_edits_of_different_fields_are_both_kept() {
    let mut net = Net::new(&[Role::Server, Role::Client]);
    net.link(1, 0);
    let id = DocId::new();
    net.put(0, doc(id));
    net.sync().await;
    net.unlink(1, 0).await;
    net.patch(0, id, &Patch::new().set("title", "server title"));
    net.patch(1, id, &Patch::new().set("n", 42i64).unset("missing"));
    net.link(1, 0);
    net.sync().await;
    net.assert_all_equal();
    let d = net.get(1, id).expect("doc");
    assert_eq!(d.get("title"), Some(&Value::from("server title")));
    assert_eq!(d.get("n"), Some(&Value::Int(42)));
    assert!(net.conflicts(0).is_empty() && net.conflicts(1).is_empty());
}

/// `deleter` deletes while `updater` patches, disconnected; returns the synced net.
async fn delete_vs_update(roles: [Role; 2], deleter: usize, delete_first: bool) -> (Net, DocId) {
    let mut net = Net::new(&roles);
    net.link(1, 0);
    let id = DocId::new();
    net.put(0, doc(id).with("keep", "me"));
    net.sync().await;
    net.unlink(1, 0).await;
    let updater = 1 - deleter;
    if delete_first {
        net.delete(deleter, id);
        net.patch(updater, id, &Patch::new().set("title", "updated"));
    } else {
        net.patch(updater, id, &Patch::new().set("title", "updated"));
        net.delete(deleter, id);
    }
    net.link(1, 0);
    net.sync().await;
    net.assert_all_equal();
    (net, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_delete_loses_to_a_concurrent_server_update_and_the_document_survives_whole() {
    for delete_first in [true, false] {
        let (net, id) = delete_vs_update([Role::Server, Role::Client], 1, delete_first).await;
        let d = net.get(1, id).expect("the document survives");
        assert_eq!(d.get("title"), Some(&Value::from("updated")));
        assert_eq!(
            d.get("keep"),
            Some(&Value::from("me")),
            "whole: untouched fields too"
        );
        let lost = net.conflicts(1);
        assert_eq!(lost.len(), 1);
        assert_eq!(
            (lost[0].lost.clone(), lost[0].reason),
            (Held::Deleted, LossReason::ServerPriority)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_delete_beats_a_concurrent_client_update_everywhere() {
    for delete_first in [true, false] {
        let (net, id) = delete_vs_update([Role::Server, Role::Client], 0, delete_first).await;
        assert!(net.get(0, id).is_none() && net.get(1, id).is_none());
        let lost = net.conflicts(1);
        assert_eq!(lost.len(), 1, "{lost:?}");
        assert_eq!(
            (lost[0].won.clone(), lost[0].reason),
            (Some(Held::Deleted), LossReason::ServerPriority)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn between_equal_roles_the_later_of_a_delete_and_an_update_wins() {
    for roles in [[Role::Client, Role::Client], [Role::Server, Role::Server]] {
        // The update is later: the document survives.
        let (net, id) = delete_vs_update(roles, 0, true).await;
        assert_eq!(
            net.get(0, id).and_then(|d| d.get("keep").cloned()),
            Some(Value::from("me"))
        );
        assert_eq!(net.conflicts(0)[0].reason, LossReason::LaterTimestamp);
        // The delete is later: it is gone.
        let (net, id) = delete_vs_update(roles, 0, false).await;
        assert!(net.get(1, id).is_none());
        assert_eq!(net.conflicts(1)[0].won, Some(Held::Deleted));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_recreated_after_a_delete_gets_no_old_field_back() {
    let mut net = Net::new(&[Role::Server, Role::Client]);
    net.link(1, 0);
    let id = DocId::new();
    net.put(0, doc(id).with("secret", "old"));
    net.sync().await;
    net.delete(1, id);
    net.sync().await;
    assert!(net.get(0, id).is_none());
    net.put(0, Document::with_id(id).with("title", "new life"));
    net.sync().await;
    net.assert_all_equal();
    let d = net.get(1, id).expect("re-created");
    assert_eq!(d.fields.len(), 1, "only the new life's fields: {d:?}");
    // An old replica coming back cannot resurrect the old life either.
    net.unlink(1, 0).await;
    net.link(1, 0);
    net.sync().await;
    assert_eq!(net.get(1, id).expect("doc").get("secret"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_client_with_many_writes_converges_on_reconnect() {
    let mut net = Net::new(&[Role::Server, Role::Client]);
    let mut ids = Vec::new();
    for i in 0..500i64 {
        let id = DocId::new();
        net.put(1, Document::with_id(id).with("i", i));
        if i % 3 == 0 {
            net.patch(1, id, &Patch::new().set("patched", true));
        }
        if i % 7 == 0 {
            net.delete(1, id);
        } else {
            ids.push(id);
        }
    }
    net.put(0, Document::new().with("from", "server"));
    net.link(1, 0);
    net.sync().await;
    net.assert_all_equal();
    assert_eq!(
        net.dbs[0].collection("docs").count().expect("count"),
        ids.len() as u64 + 1
    );
    let status = &net.topo.connections()[0].3;
    assert_eq!(status.pending_local_writes, 0, "{status:?}");
    assert!(status.connected && status.writes_sent >= 500, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_at_one_client_reaches_three_others_through_the_server() {
    let mut net = Net::new(&[
        Role::Server,
        Role::Client,
        Role::Client,
        Role::Client,
        Role::Client,
    ]);
    for c in 1..5 {
        net.link(c, 0);
    }
    let id = DocId::new();
    net.put(2, doc(id));
    net.sync().await;
    for c in 0..5 {
        assert!(net.get(c, id).is_some(), "node {c}");
    }
    net.patch(4, id, &Patch::new().set("n", 5i64));
    net.sync().await;
    net.assert_all_equal();
    assert_eq!(
        net.get(1, id).and_then(|d| d.get("n").cloned()),
        Some(Value::Int(5))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_only_client_keeps_no_change_log_and_uploads_everything_once_sync_is_enabled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let open = |n: &str| {
        Database::builder()
            .kdf(KdfParams::INSECURE_FAST)
            .open(dir.path(), n, "pw")
            .expect("open")
    };
    let client = open("client");
    let notes = client.collection("notes");
    let ids: Vec<DocId> = (0..50i64)
        .map(|i| notes.insert(Document::new().with("i", i)).expect("insert"))
        .collect();
    notes
        .patch(ids[0], &Patch::new().set("i", 100i64))
        .expect("patch");
    notes.delete(ids[1]).expect("delete");
    assert_eq!(
        client.begin_read().expect("read").last_seq().expect("seq"),
        0,
        "a local-only database writes no change log"
    );
    let server = open("server");
    let mut topo = Topology::new();
    let s = topo
        .register(&server, "server", SyncMode::LocalAndRemote, Role::Server)
        .expect("register");
    let c = topo
        .register(&client, "client", SyncMode::LocalAndRemote, Role::Client)
        .expect("register");
    topo.connect_local(c, s, ConnectionMode::Bidirectional)
        .expect("connect");
    topo.sync_all(T).await.expect("sync");
    assert_eq!(server.collection("notes").count().expect("count"), 49);
    // Writes after enabling are captured and reach the server too.
    let later = notes
        .insert(Document::new().with("i", -1i64))
        .expect("insert");
    notes
        .patch(ids[2], &Patch::new().set("i", 200i64))
        .expect("patch");
    assert!(
        client.begin_read().expect("read").last_seq().expect("seq") > 0,
        "once sync is enabled, local writes are captured"
    );
    topo.sync_all(T).await.expect("sync");
    assert_eq!(
        client.collection("notes").all().expect("all"),
        server.collection("notes").all().expect("all")
    );
    assert!(
        server
            .collection("notes")
            .get(later)
            .expect("get")
            .is_some()
    );
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_client_receives_the_data_the_server_held_before_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let open = |n: &str| {
        Database::builder()
            .kdf(KdfParams::INSECURE_FAST)
            .open(dir.path(), n, "pw")
            .expect("open")
    };
    let server = open("server");
    let mut ids = Vec::new();
    for i in 0..200i64 {
        ids.push(
            server
                .collection("old")
                .insert(Document::new().with("i", i))
                .expect("insert"),
        );
    }
    server
        .collection("old")
        .delete(ids.pop().expect("id"))
        .expect("delete");
    let client = open("client");
    let mut topo = Topology::new();
    let s = topo
        .register(&server, "server", SyncMode::LocalAndRemote, Role::Server)
        .expect("register");
    let c = topo
        .register(&client, "client", SyncMode::LocalAndRemote, Role::Client)
        .expect("register");
    topo.connect_local(c, s, ConnectionMode::Bidirectional)
        .expect("connect");
    topo.sync_all(T).await.expect("sync");
    assert_eq!(
        client.collection("old").all().expect("all"),
        server.collection("old").all().expect("all")
    );
    assert_eq!(client.collection("old").count().expect("count"), 199);
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_in_a_cycle_of_peers_stop_travelling_once_everyone_has_them() {
    let mut net = Net::new(&[Role::Client, Role::Client, Role::Client]);
    net.link(0, 1);
    net.link(1, 2);
    net.link(2, 0);
    let ids: Vec<DocId> = (0..3).map(|_| DocId::new()).collect();
    for (n, id) in ids.iter().enumerate() {
        net.put(n, doc(*id));
    }
    net.sync().await;
    net.assert_all_equal();
    let sent = |net: &Net| {
        net.topo
            .connections()
            .iter()
            .map(|c| c.3.writes_sent)
            .sum::<u64>()
    };
    let before = sent(&net);
    net.sync().await;
    net.sync().await;
    assert_eq!(sent(&net), before, "no write travels again");
    for n in 0..3 {
        let node = net.topo.node(net.refs[n]).expect("node");
        let (log, _) = node
            .read_log(
                blazedb_sync::NodeId(0),
                blazedb_sync::LogPos::ZERO,
                1000,
                &|_| true,
            )
            .expect("log");
        assert_eq!(log.len(), 3, "node {n} logs each write exactly once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_hop_line_of_peers_converges() {
    let mut net = Net::new(&[Role::Client, Role::Client, Role::Client, Role::Client]);
    net.link(0, 1);
    net.link(1, 2);
    net.link(2, 3);
    let id = DocId::new();
    net.put(0, doc(id));
    net.sync().await;
    net.patch(3, id, &Patch::new().set("n", 3i64));
    net.sync().await;
    net.assert_all_equal();
    assert_eq!(
        net.get(0, id).and_then(|d| d.get("n").cloned()),
        Some(Value::Int(3))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_only_connection_receives_but_never_sends() {
    let mut net = Net::new(&[Role::Server, Role::Client]);
    net.topo
        .connect_local(net.refs[1], net.refs[0], ConnectionMode::PullOnly)
        .expect("connect");
    let from_server = DocId::new();
    let from_client = DocId::new();
    net.put(0, doc(from_server));
    net.put(1, doc(from_client));
    net.sync().await;
    assert!(net.get(1, from_server).is_some(), "pulled");
    assert!(net.get(0, from_client).is_none(), "never pushed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_limited_to_some_collections_leaves_the_others_local() {
    let mut net = Net::new(&[Role::Server, Role::Client]);
    let config = blazedb_sync::SyncConfig::default().collections(["shared"]);
    net.topo
        .connect_local_with(net.refs[1], net.refs[0], &config)
        .expect("connect");
    let a = net.dbs[1]
        .collection("shared")
        .insert(Document::new().with("x", 1i64))
        .expect("insert");
    let b = net.dbs[1]
        .collection("private")
        .insert(Document::new().with("x", 2i64))
        .expect("insert");
    net.sync().await;
    assert!(
        net.dbs[0]
            .collection("shared")
            .get(a)
            .expect("get")
            .is_some()
    );
    assert!(
        net.dbs[0]
            .collection("private")
            .get(b)
            .expect("get")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_only_fields_never_travel_and_survive_remote_replacements() {
    let dir = tempfile::tempdir().expect("tempdir");
    let open = |n: &str| {
        Database::builder()
            .kdf(KdfParams::INSECURE_FAST)
            .open(dir.path(), n, "pw")
            .expect("open")
    };
    let (a, b) = (open("a"), open("b"));
    let config = blazedb_sync::SyncConfig {
        local_fields: ["note".to_owned()].into(),
        ..blazedb_sync::SyncConfig::default()
    };
    let mut topo = Topology::with_config(config);
    let ra = topo
        .register(&a, "a", SyncMode::LocalOnly, Role::Server)
        .expect("register");
    let rb = topo
        .register(&b, "b", SyncMode::LocalOnly, Role::Client)
        .expect("register");
    topo.connect_local(rb, ra, ConnectionMode::Bidirectional)
        .expect("connect");
    let id = DocId::new();
    b.collection("docs")
        .put(
            Document::with_id(id)
                .with("title", "t")
                .with("note", "mine"),
        )
        .expect("put");
    topo.sync_all(T).await.expect("sync");
    assert_eq!(
        a.collection("docs").get(id).expect("get"),
        Some(Document::with_id(id).with("title", "t"))
    );
    a.collection("docs")
        .put(Document::with_id(id).with("title", "replaced"))
        .expect("put");
    topo.sync_all(T).await.expect("sync");
    assert_eq!(
        b.collection("docs").get(id).expect("get"),
        Some(
            Document::with_id(id)
                .with("title", "replaced")
                .with("note", "mine")
        )
    );
    let before = topo.node(rb).expect("node").log_last().expect("log");
    b.collection("docs")
        .patch(id, &Patch::new().set("note", "still mine"))
        .expect("patch");
    topo.sync_all(T).await.expect("sync");
    assert_eq!(
        topo.node(rb).expect("node").log_last().expect("log"),
        before,
        "a local-only change is no sync write"
    );
    topo.shutdown().await;
}

fn hub_config(retention_us: u64) -> blazedb_sync::SyncConfig {
    blazedb_sync::SyncConfig {
        tombstone_gc: true,
        retention_us,
        ..blazedb_sync::SyncConfig::default()
    }
}

/// A tombstone-collecting server, a client connected to it, and a second client
/// registered but not yet connected.
struct Hub {
    topo: Topology,
    server: Database,
    s: NodeRef,
    c1: Database,
    c2: Database,
    r2: NodeRef,
}

fn hub_and_two_clients(dir: &std::path::Path, second: &str) -> Hub {
    let open = |n: &str| {
        Database::builder()
            .kdf(KdfParams::INSECURE_FAST)
            .open(dir, n, "pw")
            .expect("open")
    };
    let (server, c1, c2) = (open("server"), open("c1"), open(second));
    let mut topo = Topology::new();
    let s = topo
        .register_with(
            &server,
            "server",
            SyncMode::LocalAndRemote,
            Role::Server,
            &hub_config(u64::MAX),
        )
        .expect("register");
    let r1 = topo
        .register(&c1, "c1", SyncMode::LocalAndRemote, Role::Client)
        .expect("register");
    let r2 = topo
        .register(&c2, second, SyncMode::LocalAndRemote, Role::Client)
        .expect("register");
    topo.connect_local(r1, s, ConnectionMode::Bidirectional)
        .expect("connect");
    Hub {
        topo,
        server,
        s,
        c1,
        c2,
        r2,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_client_bootstraps_from_a_snapshot_once_the_servers_log_is_collected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Hub {
        mut topo,
        server,
        s,
        c1,
        c2,
        r2,
    } = hub_and_two_clients(dir.path(), "c2");
    let mut gone = Vec::new();
    for i in 0..300i64 {
        let id = c1
            .collection("docs")
            .insert(Document::new().with("i", i))
            .expect("insert");
        if i % 10 == 0 {
            c1.collection("docs").delete(id).expect("delete");
            gone.push(id);
        }
    }
    topo.sync_all(T).await.expect("sync");
    let node = topo.node(s).expect("node").clone();
    let report = node.collect_garbage().expect("gc");
    assert!(
        report.log_pruned > 0 && node.log_floor().expect("floor") > blazedb_sync::LogPos::ZERO,
        "{report:?}"
    );
    // The deleted documents' history is gone from the server: only their version
    // vectors remain, to refuse old writes delivered again.
    let state = node.doc_state("docs", gone[0]).expect("state");
    assert!(state.recs.is_empty() && !state.vv.is_empty(), "{state:?}");
    topo.connect_local(r2, s, ConnectionMode::Bidirectional)
        .expect("connect");
    topo.sync_all(T).await.expect("sync");
    assert_eq!(
        c2.collection("docs").all().expect("all"),
        server.collection("docs").all().expect("all")
    );
    assert_eq!(c2.collection("docs").count().expect("count"), 270);
    assert_eq!(
        topo.node(r2)
            .expect("node")
            .bootstrapped_from()
            .expect("meta"),
        Some(node.node_id())
    );
    // And it goes on syncing from the log.
    let id = c2
        .collection("docs")
        .insert(Document::new().with("late", true))
        .expect("insert");
    topo.sync_all(T).await.expect("sync");
    assert!(c1.collection("docs").get(id).expect("get").is_some());
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_forgotten_past_the_retention_bootstraps_again_without_resurrecting_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let open = |n: &str| {
        Database::builder()
            .kdf(KdfParams::INSECURE_FAST)
            .open(dir.path(), n, "pw")
            .expect("open")
    };
    let (server, stale, other) = (open("server"), open("stale"), open("other"));
    let mut topo = Topology::new();
    // Retention zero: a disconnected client is forgotten at the next collection.
    let s = topo
        .register_with(
            &server,
            "server",
            SyncMode::LocalAndRemote,
            Role::Server,
            &hub_config(0),
        )
        .expect("register");
    let rs = topo
        .register(&stale, "stale", SyncMode::LocalAndRemote, Role::Client)
        .expect("register");
    let ro = topo
        .register(&other, "other", SyncMode::LocalAndRemote, Role::Client)
        .expect("register");
    topo.connect_local(rs, s, ConnectionMode::Bidirectional)
        .expect("connect");
    topo.connect_local(ro, s, ConnectionMode::Bidirectional)
        .expect("connect");
    let d = DocId::new();
    other
        .collection("docs")
        .put(
            Document::with_id(d)
                .with("title", "doomed")
                .with("secret", "x"),
        )
        .expect("put");
    topo.sync_all(T).await.expect("sync");
    assert!(stale.collection("docs").get(d).expect("get").is_some());
    topo.disconnect(rs, s).await.expect("disconnect");
    // Offline, the stale client edits the document and creates another.
    stale
        .collection("docs")
        .patch(d, &Patch::new().set("title", "edited offline"))
        .expect("patch");
    let e = stale
        .collection("docs")
        .insert(Document::new().with("offline", true))
        .expect("insert");
    // Meanwhile the document is deleted, and the server collects.
    other.collection("docs").delete(d).expect("delete");
    topo.sync_all(T).await.expect("sync");
    let report = topo.node(s).expect("node").collect_garbage().expect("gc");
    assert_eq!(report.peers_forgotten, 1, "{report:?}");
    assert!(
        topo.node(s)
            .expect("node")
            .doc_state("docs", d)
            .expect("state")
            .recs
            .is_empty()
    );
    // The stale client returns: it must bootstrap again, and the deleted document
    // must not come back from it.
    topo.connect_local(rs, s, ConnectionMode::Bidirectional)
        .expect("connect");
    topo.sync_all(T).await.expect("sync");
    for db in [&server, &stale, &other] {
        assert!(
            db.collection("docs").get(d).expect("get").is_none(),
            "no resurrection"
        );
        assert!(db.collection("docs").get(e).expect("get").is_none());
    }
    let lost = topo
        .node(rs)
        .expect("node")
        .conflicts(0, 100)
        .expect("conflicts");
    let expired: Vec<_> = lost
        .iter()
        .filter(|c| c.reason == LossReason::RetentionExpired)
        .collect();
    assert_eq!(
        expired.len(),
        2,
        "both unsent writes are on record: {lost:?}"
    );
    // It syncs normally afterwards.
    let f = stale
        .collection("docs")
        .insert(Document::new().with("after", true))
        .expect("insert");
    topo.sync_all(T).await.expect("sync");
    assert!(other.collection("docs").get(f).expect("get").is_some());
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_clients_offline_edit_of_a_document_whose_history_the_server_collected_expires_and_is_logged()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let Hub {
        mut topo,
        server,
        s,
        c1,
        c2: late,
        r2: rl,
    } = hub_and_two_clients(dir.path(), "late");
    let shared = DocId::from_bytes([7; 16]);
    let fresh = DocId::from_bytes([8; 16]);
    server
        .collection("docs")
        .put(Document {
            id: shared,
            fields: Document::new().with("v", 1i64).fields,
        })
        .expect("put");
    server.collection("docs").delete(shared).expect("delete");
    topo.sync_all(T).await.expect("sync");
    let node = topo.node(s).expect("node").clone();
    node.collect_garbage().expect("gc");
    assert!(
        node.doc_state("docs", shared)
            .expect("state")
            .recs
            .is_empty()
    );

    // A client that has never synced writes the same id (concurrent with the delete
    // the server no longer holds) and a document of its own.
    late.collection("docs")
        .put(Document {
            id: shared,
            fields: Document::new().with("v", 2i64).fields,
        })
        .expect("put");
    late.collection("docs")
        .put(Document {
            id: fresh,
            fields: Document::new().with("mine", true).fields,
        })
        .expect("put");
    topo.connect_local(rl, s, ConnectionMode::Bidirectional)
        .expect("connect");
    topo.sync_all(T).await.expect("sync");

    // Nobody holds the expired write; the unrelated document synced everywhere.
    for db in [&server, &c1, &late] {
        assert!(db.collection("docs").get(shared).expect("get").is_none());
        assert!(db.collection("docs").get(fresh).expect("get").is_some());
    }
    let log = topo
        .node(rl)
        .expect("node")
        .conflicts(0, 100)
        .expect("conflicts");
    assert!(
        log.iter().any(|c| c.id == shared
            && c.reason == LossReason::RetentionExpired
            && c.winner.is_none()),
        "{log:?}"
    );
    topo.shutdown().await;
}

/// Two clients each write a 9 MiB field of the same document while offline, the first
/// before the second; the second goes on with small writes. They sync one after the
/// other through the server (node 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_large_fields_overflowing_a_document_leave_the_later_write_out_on_record_and_sync_goes_on()
 {
    let mut net = Net::new(&[Role::Server, Role::Client, Role::Client]);
    net.link(1, 0);
    net.link(2, 0);
    let id = DocId::new();
    net.put(0, doc(id));
    net.sync().await;
    net.unlink(1, 0).await;
    net.unlink(2, 0).await;
    let nine_mib = |b: u8| Value::Bytes(vec![b; 9 << 20]);
    net.patch(1, id, &Patch::new().set("a", nine_mib(1)));
    net.patch(2, id, &Patch::new().set("b", nine_mib(2)));
    net.patch(2, id, &Patch::new().set("note", "small, later"));
    let later = DocId::new();
    net.put(2, Document::with_id(later).with("after", "the large write"));
    net.link(1, 0);
    net.sync_large().await;
    net.link(2, 0);
    net.sync_large().await;
    // That sync completed: the second client's later writes were not stuck behind its
    // large one.
    assert!(
        net.get(0, later).is_some(),
        "a later write reached the server"
    );
    net.assert_all_equal();
    let d = net.get(0, id).expect("the document");
    assert_eq!(
        d.fields.keys().collect::<Vec<_>>(),
        ["a", "n", "note", "title"],
        "the first writer's field and the small later one; not the overflowing one"
    );
    let size = blazedb_engine::internal::serde_fields::document_bytes(&d.fields);
    assert!(size <= blazedb_core::limits::DOCUMENT_BYTES_MAX, "{size}");
    let lost = net.conflicts(2);
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(lost[0].reason, LossReason::TooLarge);
    assert_eq!(lost[0].id, id);
    assert_eq!(lost[0].field.as_deref(), Some("b"));
    assert_eq!(lost[0].lost, Held::Value(nine_mib(2)));
    assert!(net.conflicts(1).is_empty() && net.conflicts(0).is_empty());

    // The second client removes the first one's large field: what it saw left out
    // stays out (its patch unsets that too), everywhere.
    net.patch(2, id, &Patch::new().unset("a"));
    net.sync_large().await;
    net.assert_all_equal();
    let d = net.get(0, id).expect("the document");
    assert_eq!(d.fields.keys().collect::<Vec<_>>(), ["n", "note", "title"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_only_fields_that_no_longer_fit_beside_a_merged_document_are_dropped_and_sync_goes_on()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let open = |n: &str| {
        Database::builder()
            .kdf(KdfParams::INSECURE_FAST)
            .open(dir.path(), n, "pw")
            .expect("open")
    };
    let (a, b) = (open("a"), open("b"));
    let config = blazedb_sync::SyncConfig {
        local_fields: ["note".to_owned(), "tag".to_owned()].into(),
        ..blazedb_sync::SyncConfig::default()
    };
    let mut topo = Topology::with_config(config);
    let ra = topo
        .register(&a, "a", SyncMode::LocalOnly, Role::Server)
        .expect("register");
    let rb = topo
        .register(&b, "b", SyncMode::LocalOnly, Role::Client)
        .expect("register");
    topo.connect_local(rb, ra, ConnectionMode::Bidirectional)
        .expect("connect");
    let id = DocId::new();
    b.collection("docs")
        .put(
            Document::with_id(id)
                .with("title", "t")
                .with("note", Value::Bytes(vec![1; 9 << 20]))
                .with("tag", "mine"),
        )
        .expect("put");
    topo.sync_all(T_LARGE).await.expect("sync");
    a.collection("docs")
        .patch(id, &Patch::new().set("big", Value::Bytes(vec![2; 9 << 20])))
        .expect("patch");
    topo.sync_all(T_LARGE).await.expect("sync");
    let got = b.collection("docs").get(id).expect("get").expect("doc");
    assert_eq!(
        got.fields.keys().collect::<Vec<_>>(),
        ["big", "tag", "title"],
        "the merged document, and the local-only field that still fits"
    );
    let later = a
        .collection("docs")
        .insert(Document::new().with("x", 1i64))
        .expect("insert");
    topo.sync_all(T_LARGE).await.expect("sync");
    assert!(b.collection("docs").get(later).expect("get").is_some());
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_inserting_one_unique_key_twice_both_reach_a_server_indexing_it_and_sync_goes_on() {
    let mut net = Net::new(&[Role::Server, Role::Client, Role::Client]);
    net.dbs[0]
        .create_index(&blazedb_engine::IndexSpec::new("by_email", "docs", &["email"]).unique())
        .expect("index");
    let (x, y) = (DocId::new(), DocId::new());
    net.put(1, Document::with_id(x).with("email", "ana@x"));
    net.put(2, Document::with_id(y).with("email", "ana@x"));
    let later = DocId::new();
    net.put(2, Document::with_id(later).with("email", "bob@x"));
    net.link(1, 0);
    net.sync().await;
    net.link(2, 0);
    net.sync().await;
    net.assert_all_equal();
    for id in [x, y, later] {
        assert!(net.get(0, id).is_some(), "{id} reached the server");
    }
    let server = &net.dbs[0];
    server
        .begin_read()
        .expect("read")
        .check_indexes()
        .expect("index");
    let q = blazedb_engine::Query::new("docs")
        .filter(blazedb_engine::Filter::eq("email", "ana@x").expect("filter"));
    assert_eq!(
        server.query(&q).expect("query").len(),
        2,
        "both are indexed"
    );
    // Local writes at the server are still held to the constraint.
    assert!(matches!(
        server
            .collection("docs")
            .insert(Document::new().with("email", "ana@x")),
        Err(blazedb_core::Error::UniqueViolation { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_too_long_for_the_servers_index_reaches_it_and_is_found_by_the_index() {
    let mut net = Net::new(&[Role::Server, Role::Client]);
    net.dbs[0]
        .create_index(&blazedb_engine::IndexSpec::new(
            "by_title",
            "docs",
            &["title"],
        ))
        .expect("index");
    let long = "t".repeat(4_000);
    let id = DocId::new();
    net.put(1, Document::with_id(id).with("title", long.as_str()));
    let later = DocId::new();
    net.put(1, doc(later));
    net.link(1, 0);
    net.sync().await;
    assert!(
        net.get(0, later).is_some(),
        "a later write reached the server"
    );
    let server = &net.dbs[0];
    server
        .begin_read()
        .expect("read")
        .check_indexes()
        .expect("index");
    let q = blazedb_engine::Query::new("docs")
        .filter(blazedb_engine::Filter::eq("title", long.as_str()).expect("filter"));
    let found = server.query(&q).expect("query");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, id);
}
