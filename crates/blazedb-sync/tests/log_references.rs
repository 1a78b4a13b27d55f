//! A client that does not collect tombstones logs what it applies by reference
//! (`Logged::Applied`), not as a second copy of each write; when it relays, the
//! document's merge state goes in the reference's place. These tests drive
//! `SyncNode` directly, message by message, so each step is deterministic.

use blazedb_core::{DocId, Document, Fields, Value};
use blazedb_engine::{Database, KdfParams};
use blazedb_sync::{Item, LogPos, Logged, LossReason, NodeId, Role, SyncConfig, SyncNode, Write};

struct Node {
    db: Database,
    sync: SyncNode,
}

fn node(dir: &tempfile::TempDir, name: &str, role: Role, config: &SyncConfig) -> Node {
    let db = Database::builder()
        .kdf(KdfParams::INSECURE_FAST)
        .open(dir.path(), name, "pw")
        .expect("open");
    let sync = SyncNode::enable(&db, role, config).expect("enable");
    Node { db, sync }
}

impl Node {
    /// Puts `{f: value}` as document `id` and takes it over into the sync log.
    fn put(&self, id: DocId, value: &str) {
        self.db
            .collection("docs")
            .put(doc(id, "f", value))
            .expect("put");
        self.sync.absorb().expect("absorb");
    }
}

fn doc(id: DocId, field: &str, value: &str) -> Document {
    let mut fields = Fields::new();
    fields.insert(field.into(), Value::String(value.into()));
    Document { id, fields }
}

/// Everything `from` has for `to` after `after`, applied at `to` (in one batch).
fn deliver(from: &Node, to: &Node, after: LogPos) -> (Vec<Item>, LogPos) {
    from.sync.absorb().expect("absorb");
    let (items, upto) = from
        .sync
        .read_log(to.sync.node_id(), after, 1_000, &|_| true)
        .expect("read_log");
    to.sync
        .apply_batch(from.sync.node_id(), from.sync.role(), &items, upto)
        .expect("apply");
    (items, upto)
}

fn writes(items: &[Item]) -> Vec<&Write> {
    items
        .iter()
        .filter_map(|i| match i {
            Item::Write(w) => Some(w),
            Item::State(_) => None,
        })
        .collect()
}

#[test]
fn a_client_logs_received_writes_by_reference_and_a_server_logs_them_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = SyncConfig::default();
    let server = node(&dir, "s", Role::Server, &config);
    let client = node(&dir, "c", Role::Client, &config);
    let (x, y) = (DocId::new(), DocId::new());
    server.put(x, &"s".repeat(4096));
    client.put(y, "c");
    deliver(&server, &client, LogPos::ZERO);
    deliver(&client, &server, LogPos::ZERO);

    let client_log = client.sync.log_writes().expect("log");
    let received: Vec<&Logged> = client_log
        .iter()
        .filter(|e| e.via == Some(server.sync.node_id()))
        .map(|e| &e.item)
        .collect();
    assert_eq!(received.len(), 1);
    let Logged::Applied(a) = received[0] else {
        panic!("the client logged a copy: {:?}", received[0]);
    };
    assert_eq!((a.collection.as_str(), a.id), ("docs", x));
    assert_eq!(a.dot.map(|d| d.node), Some(server.sync.node_id()));
    assert!(
        client_log
            .iter()
            .any(|e| e.via.is_none() && matches!(&e.item, Logged::Write(w) if w.id == y)),
        "the client's own write is logged whole (it is what the server receives)"
    );
    let server_log = server.sync.log_writes().expect("log");
    assert!(
        server_log
            .iter()
            .any(|e| e.via == Some(client.sync.node_id())
                && matches!(&e.item, Logged::Write(w) if w.id == y)),
        "a server logs received writes whole (it relays them to every other client)"
    );
    // Nothing the client logged by reference is offered back to where it came from.
    let (back, _) = client
        .sync
        .read_log(server.sync.node_id(), LogPos::ZERO, 1_000, &|_| true)
        .expect("read_log");
    assert_eq!(
        writes(&back).len(),
        1,
        "only the client's own write: {back:?}"
    );
    assert_eq!(back.len(), 1);
}

#[test]
fn a_client_that_collects_tombstones_logs_received_writes_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = node(&dir, "s", Role::Server, &SyncConfig::default());
    let client = node(
        &dir,
        "c",
        Role::Client,
        &SyncConfig::default().tombstone_gc(true),
    );
    server.put(DocId::new(), "s");
    deliver(&server, &client, LogPos::ZERO);
    let log = client.sync.log_writes().expect("log");
    assert_eq!(log.len(), 1);
    assert!(matches!(log[0].item, Logged::Write(_)), "{:?}", log[0]);
}

/// A server's write reaches a client, which relays it to a third node that wrote the
/// same field concurrently: the relay carries the document's merge state (once, for
/// two writes), the third node ends with the server's value, and records its own loss
/// with the server's write as the winner.
#[test]
fn a_relay_from_a_client_sends_the_merge_state_and_the_receiver_records_its_loss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = SyncConfig::default();
    let server = node(&dir, "s", Role::Server, &config);
    let client = node(&dir, "c", Role::Client, &config);
    let other = node(&dir, "d", Role::Client, &config);
    let x = DocId::new();
    other.put(x, "other");
    server.put(x, "first");
    server.put(x, "server");
    deliver(&server, &client, LogPos::ZERO);
    assert_eq!(
        client.sync.log_writes().expect("log").len(),
        2,
        "two writes applied, two references"
    );

    let (relayed, _) = deliver(&client, &other, LogPos::ZERO);
    assert_eq!(
        relayed.len(),
        1,
        "one state for the document's two writes: {relayed:?}"
    );
    let Item::State(state) = &relayed[0] else {
        panic!("a reference was not read out as the merge state: {relayed:?}");
    };
    assert_eq!(state.id, x);
    let got = other
        .db
        .collection("docs")
        .get(x)
        .expect("get")
        .expect("present");
    assert_eq!(got.fields.get("f"), Some(&Value::String("server".into())));
    let losses = other.sync.conflicts(0, 100).expect("conflicts");
    assert_eq!(losses.len(), 1, "{losses:?}");
    assert_eq!(losses[0].reason, LossReason::ServerPriority);
    assert_eq!(
        losses[0].winner.map(|w| w.node()),
        Some(server.sync.node_id())
    );

    // The other node's write goes back through the client to the server, as a write
    // (the client's log holds the state it joined by reference, which the server,
    // where the winning writes come from, already has).
    deliver(&other, &client, LogPos::ZERO);
    deliver(&client, &server, LogPos::ZERO);
    assert_eq!(
        server.db.collection("docs").get(x).expect("get"),
        other.db.collection("docs").get(x).expect("get")
    );
    let server_losses = server.sync.conflicts(0, 100).expect("conflicts");
    assert!(
        server_losses.is_empty(),
        "the server lost nothing: {server_losses:?}"
    );
    let unknown = NodeId(u64::MAX);
    let (all, _) = client
        .sync
        .read_log(unknown, LogPos::ZERO, 1_000, &|_| true)
        .expect("read_log");
    assert!(
        all.iter().all(|i| matches!(i, Item::State(_))),
        "a reader new to the client gets states for what it received: {all:?}"
    );
}
