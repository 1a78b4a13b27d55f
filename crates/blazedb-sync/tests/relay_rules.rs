//! What a node that relays other nodes' writes must keep true for its peers (a client
//! in a peer-to-peer group relays too): a writer still learns of a loss its relay saw
//! and then overwrote, and no write stamped beyond the drift bound gets through a
//! relay. A design that relayed merge states in place of the writes a client received
//! broke both (the join only reports losses its evidence still shows, and states are
//! not checked for drift); these tests drive `SyncNode` message by message so each
//! step is deterministic.

use std::sync::Arc;

use blazedb_core::{DocId, Document, Fields, Value};
use blazedb_engine::{Database, KdfParams};
use blazedb_sync::{
    Item, LogPos, LossReason, Role, SnapshotPage, SyncAdvanced, SyncConfig, SyncError, SyncNode,
};

struct Node {
    db: Database,
    sync: SyncNode,
}

impl Node {
    /// Puts `{f: value}` as document `id`.
    fn put(&self, id: DocId, value: &str) {
        let mut fields = Fields::new();
        fields.insert("f".into(), Value::String(value.into()));
        self.db
            .collection("docs")
            .put(Document { id, fields })
            .expect("put");
    }

    fn field(&self, id: DocId) -> Option<Value> {
        let doc = self.db.collection("docs").get(id).expect("get")?;
        doc.fields.get("f").cloned()
    }
}

fn node(dir: &tempfile::TempDir, name: &str, role: Role, config: &SyncConfig) -> Node {
    let db = Database::builder()
        .kdf(KdfParams::INSECURE_FAST)
        .open(dir.path(), name, "pw")
        .expect("open");
    let sync = SyncNode::enable(&db, role, config).expect("enable");
    Node { db, sync }
}

/// Up to `limit` entries of `from`'s log after `after`, for `to`.
fn read(from: &Node, to: &Node, after: LogPos, limit: usize) -> (Vec<Item>, LogPos) {
    from.sync.absorb().expect("absorb");
    from.sync
        .read_log(to.sync.node_id(), after, limit, &|_| true)
        .expect("read_log")
}

/// Everything `from` has for `to` after `after`, applied at `to` in one batch.
fn deliver(from: &Node, to: &Node, after: LogPos) -> LogPos {
    let (items, upto) = read(from, to, after, 1_000);
    to.sync
        .apply_batch(from.sync.node_id(), from.sync.role(), &items, upto)
        .expect("apply");
    upto
}

/// O's value loses at relay C to a concurrent server write, and C's user then
/// overwrites the field: what C relays to O still shows O that its value lost, and to
/// whom.
#[test]
fn a_writer_learns_of_a_loss_its_relay_saw_even_after_the_value_was_overwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = SyncConfig::default();
    let server = node(&dir, "s", Role::Server, &config);
    let relay = node(&dir, "c", Role::Client, &config);
    let writer = node(&dir, "o", Role::Client, &config);
    let x = DocId::new();
    writer.put(x, "o");
    server.put(x, "s");
    deliver(&writer, &relay, LogPos::ZERO);
    deliver(&server, &relay, LogPos::ZERO);
    assert_eq!(relay.field(x), Some(Value::String("s".into())));
    relay.put(x, "c");
    deliver(&relay, &writer, LogPos::ZERO);
    assert_eq!(writer.field(x), Some(Value::String("c".into())));
    let losses = writer.sync.conflicts(0, 100).expect("conflicts");
    assert_eq!(losses.len(), 1, "{losses:?}");
    assert_eq!(losses[0].reason, LossReason::ServerPriority);
    assert_eq!(
        losses[0].winner.map(|w| w.node()),
        Some(server.sync.node_id())
    );
}

/// A node whose clock runs ten minutes ahead of real time (the drift bound is five).
fn fast_config() -> SyncConfig {
    SyncConfig {
        advanced: SyncAdvanced {
            clock: Arc::new(|| blazedb_sync::clock::wall_now_us() + 600_000_000),
            stamp_with_write_time: false,
            ..SyncAdvanced::default()
        },
        ..SyncConfig::default()
    }
}

/// A merge state is refused for a stamp beyond the drift bound as the write itself
/// would be, in a batch and in a snapshot page, and nothing of it is applied.
#[test]
fn a_merge_state_with_a_stamp_beyond_the_drift_bound_is_refused_like_the_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fast = node(&dir, "f", Role::Server, &fast_config());
    let peer = node(&dir, "r", Role::Client, &SyncConfig::default());
    let x = DocId::new();
    fast.put(x, "fast");
    fast.sync.absorb().expect("absorb");
    let (docs, upto_slot, done) = fast.sync.snapshot_page(0, 100, &|_| true).expect("page");
    assert_eq!(docs.len(), 1);
    let page = SnapshotPage {
        at: fast.sync.log_last().expect("log_last"),
        after_slot: 0,
        upto_slot,
        docs: &docs,
        done,
        collected: false,
    };
    let refused = peer
        .sync
        .apply_snapshot(fast.sync.node_id(), page, &|_| true);
    assert!(
        matches!(refused, Err(SyncError::ClockSkew(_))),
        "{refused:?}"
    );
    let batch = [Item::State(docs[0].clone())];
    let refused = peer
        .sync
        .apply_batch(fast.sync.node_id(), Role::Server, &batch, LogPos::new(1));
    assert!(
        matches!(refused, Err(SyncError::ClockSkew(_))),
        "{refused:?}"
    );
    assert_eq!(peer.field(x), None, "nothing of it applied");
    assert_eq!(
        peer.sync
            .snapshot_progress(fast.sync.node_id())
            .expect("progress"),
        None
    );
}

/// A relay whose clock runs ten minutes ahead (the bound is five) edits a document it
/// received; its peer reads the log one entry per batch. The received write passes,
/// the fast one is refused, and the peer's clock is not dragged ahead.
#[test]
fn no_write_stamped_beyond_the_drift_bound_gets_through_a_relay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fast = fast_config();
    let server = node(&dir, "a", Role::Server, &SyncConfig::default());
    let relay = node(&dir, "c", Role::Client, &fast);
    let peer = node(&dir, "r", Role::Client, &SyncConfig::default());
    let x = DocId::new();
    server.put(x, "a");
    deliver(&server, &relay, LogPos::ZERO);
    relay.put(x, "c-fast");
    let (first, upto) = read(&relay, &peer, LogPos::ZERO, 1);
    peer.sync
        .apply_batch(relay.sync.node_id(), Role::Client, &first, upto)
        .expect("the server's write, relayed, is within the bound");
    let (second, upto2) = read(&relay, &peer, upto, 1);
    let refused = peer
        .sync
        .apply_batch(relay.sync.node_id(), Role::Client, &second, upto2);
    assert!(
        matches!(refused, Err(SyncError::ClockSkew(_))),
        "{refused:?}"
    );
    assert_eq!(peer.field(x), Some(Value::String("a".into())));
    // The peer's own next write is stamped by its own clock.
    peer.put(DocId::new(), "r");
    peer.sync.absorb().expect("absorb");
    let own = peer
        .sync
        .log_writes()
        .expect("log")
        .into_iter()
        .rev()
        .find_map(|e| match (e.via, e.item) {
            (None, Item::Write(w)) => Some(w.stamp.hlc.wall_us),
            _ => None,
        })
        .expect("the peer's own write");
    let lead = own.saturating_sub(blazedb_sync::clock::wall_now_us());
    assert!(lead < 60_000_000, "the peer's clock runs {lead} us ahead");
}
