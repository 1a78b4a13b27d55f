//! The state a sync session works on, behind one interface (SPEC: the server keeps its
//! state behind a storage interface). [`SyncNode`] — a node over an embedded database
//! — is the implementation every client and the default server use; a server that
//! scales out keeps the same state elsewhere (PostgreSQL) and implements this trait.
//!
//! The interface is what a session really does, one call per step of the protocol:
//! take local writes over (`absorb`), apply a peer's batches (`apply_combined`: merges,
//! the log, the cursor, conflicts, in one transaction), read the log for a peer
//! (`read_log`), page through a snapshot (`snapshot_page` / `apply_snapshot`), record
//! acknowledgments and collect garbage. Every method that touches storage is one
//! transaction of the store, and is called from a blocking thread.
//!
//! Invariants every implementation keeps (docs/semantics.md, docs/protocol.md):
//! - An applied batch is all or nothing, together with the peer's cursor: a crash
//!   leaves the cursor before the batch or after it, never a partial apply.
//! - The log is one commit-ordered sequence: `log_last` only grows, and a reader that
//!   has seen position `p` has seen every position below `p` that will ever exist
//!   (no later commit can fill a gap below what a reader read).
//! - Merges follow the shared rules of `merge/`; a store decides only where states
//!   live and how transactions are serialized, never who wins.

use std::collections::BTreeSet;

use tokio::sync::watch;

use crate::clock::{NodeId, Role};
use crate::config::SyncConfig;
use crate::error::Result;
use crate::node::{BatchReport, GcReport, Part, SnapshotPage, SyncNode};
use crate::position::LogPos;
use crate::record::{Item, SnapDoc, SnapshotProgress};
use crate::relay::RelayTarget;

pub use crate::principal::Binding;

/// Wakes sessions when the store's log grows or local writes wait to be taken over
/// (live sync): a counter that changes on each such commit. The value in `keep` (a
/// commit hook, a listener task) lives as long as the signal.
pub struct CommitSignal {
    rx: watch::Receiver<u64>,
    _keep: Box<dyn std::any::Any + Send + Sync>,
}

impl CommitSignal {
    /// A signal reading `rx`, keeping `keep` alive with it.
    #[must_use]
    pub fn new(rx: watch::Receiver<u64>, keep: Box<dyn std::any::Any + Send + Sync>) -> Self {
        CommitSignal { rx, _keep: keep }
    }

    /// A receiver of the counter (one per session).
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.rx.clone()
    }
}

/// What a sync session needs of the node it runs for. See the module docs for the
/// invariants; [`SyncNode`]'s methods of the same names document each.
pub trait SyncStore: Send + Sync + 'static {
    /// This node's identity.
    fn node_id(&self) -> NodeId;
    /// This node's role.
    fn role(&self) -> Role;
    /// The configuration the node runs with.
    fn config(&self) -> &SyncConfig;
    /// The newest position of this node's log.
    fn log_last(&self) -> Result<LogPos>;
    /// The position below which the log was collected.
    fn log_floor(&self) -> Result<LogPos>;
    /// Up to `limit` log entries after `after` for `peer`, and the position reached.
    fn read_log(
        &self,
        peer: NodeId,
        after: LogPos,
        limit: usize,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<(Vec<Item>, LogPos)>;
    /// Takes committed local writes over into the log; how many.
    fn absorb(&self) -> Result<u64>;
    /// Whether local writes wait to be taken over.
    fn has_unabsorbed(&self) -> Result<bool>;
    /// Applies one batch of `peer`'s log (up to `upto`).
    fn apply_batch(
        &self,
        peer: NodeId,
        peer_role: Role,
        items: &[Item],
        upto: LogPos,
    ) -> Result<BatchReport>;
    /// Applies consecutive batches of a peer's log in one transaction, possibly with
    /// other sessions' batches; gives them back, with the report if they were applied
    /// (see [`SyncNode::apply_combined`]).
    fn apply_combined(&self, part: Part) -> (Part, Option<BatchReport>);
    /// A page of document states after `after_slot`, for a peer bootstrapping.
    fn snapshot_page(
        &self,
        after_slot: u64,
        limit: usize,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<(Vec<SnapDoc>, u64, bool)>;
    /// Applies a snapshot page received from `peer`.
    fn apply_snapshot(
        &self,
        peer: NodeId,
        page: SnapshotPage<'_>,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<BatchReport>;
    /// How far a snapshot from `peer` has been applied.
    fn snapshot_progress(&self, peer: NodeId) -> Result<Option<SnapshotProgress>>;
    /// Whether this node collects tombstones (snapshots it sends say so).
    fn collects_tombstones(&self) -> bool;
    /// The peer's log position applied here.
    fn recv_cursor(&self, peer: NodeId) -> Result<LogPos>;
    /// Our log position `peer` confirmed.
    fn acked_by(&self, peer: NodeId) -> Result<LogPos>;
    /// This node's own writes not yet confirmed by a peer that confirmed up to
    /// `acked`, counting those not yet taken over (at most a million are counted).
    fn own_writes_pending(&self, acked: LogPos) -> Result<u64>;
    /// Records that `peer` confirmed our log up to `upto` (its own log reaching
    /// `their_last`).
    fn note_acked(&self, peer: NodeId, upto: LogPos, their_last: LogPos) -> Result<()>;
    /// Records a session with `peer` opening (`up`) or closing.
    fn note_connected(&self, peer: NodeId, up: bool);
    /// Keeps which node a relay target reached (clients).
    fn remember_peer_at(&self, target: &RelayTarget, peer: NodeId) -> Result<()>;
    /// Binds node `node` to `principal` (a named user's first hello from it), unless
    /// another principal holds it or `principal` holds as many nodes as it may.
    fn bind_principal(&self, node: NodeId, principal: &str) -> Result<Binding>;
    /// Learns which principal each node belongs to (from a trusted relay).
    fn learn_principals(&self, list: &[(NodeId, String)]) -> Result<()>;
    /// The principals known for `nodes`.
    fn principals_of(&self, nodes: &BTreeSet<NodeId>) -> Result<Vec<(NodeId, String)>>;
    /// Whether garbage collection is due at `now_us`.
    fn gc_due(&self, now_us: u64) -> bool;
    /// Collects garbage if the last run is `every_us` ago or more.
    fn maybe_collect_garbage(&self, now_us: u64, every_us: u64) -> Result<Option<GcReport>>;
    /// A signal of commits that give sessions something to send.
    fn commit_signal(&self) -> Result<CommitSignal>;
}

impl SyncStore for SyncNode {
    fn node_id(&self) -> NodeId {
        SyncNode::node_id(self)
    }
    fn role(&self) -> Role {
        SyncNode::role(self)
    }
    fn config(&self) -> &SyncConfig {
        SyncNode::config(self)
    }
    fn log_last(&self) -> Result<LogPos> {
        SyncNode::log_last(self)
    }
    fn log_floor(&self) -> Result<LogPos> {
        SyncNode::log_floor(self)
    }
    fn read_log(
        &self,
        peer: NodeId,
        after: LogPos,
        limit: usize,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<(Vec<Item>, LogPos)> {
        SyncNode::read_log(self, peer, after, limit, keep)
    }
    fn absorb(&self) -> Result<u64> {
        SyncNode::absorb(self)
    }
    fn has_unabsorbed(&self) -> Result<bool> {
        SyncNode::has_unabsorbed(self)
    }
    fn apply_batch(
        &self,
        peer: NodeId,
        peer_role: Role,
        items: &[Item],
        upto: LogPos,
    ) -> Result<BatchReport> {
        SyncNode::apply_batch(self, peer, peer_role, items, upto)
    }
    fn apply_combined(&self, part: Part) -> (Part, Option<BatchReport>) {
        SyncNode::apply_combined(self, part)
    }
    fn snapshot_page(
        &self,
        after_slot: u64,
        limit: usize,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<(Vec<SnapDoc>, u64, bool)> {
        SyncNode::snapshot_page(self, after_slot, limit, keep)
    }
    fn apply_snapshot(
        &self,
        peer: NodeId,
        page: SnapshotPage<'_>,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<BatchReport> {
        SyncNode::apply_snapshot(self, peer, page, keep)
    }
    fn snapshot_progress(&self, peer: NodeId) -> Result<Option<SnapshotProgress>> {
        SyncNode::snapshot_progress(self, peer)
    }
    fn collects_tombstones(&self) -> bool {
        SyncNode::collects_tombstones(self)
    }
    fn recv_cursor(&self, peer: NodeId) -> Result<LogPos> {
        SyncNode::recv_cursor(self, peer)
    }
    fn acked_by(&self, peer: NodeId) -> Result<LogPos> {
        SyncNode::acked_by(self, peer)
    }
    fn own_writes_pending(&self, acked: LogPos) -> Result<u64> {
        Ok(SyncNode::own_writes_after(self, acked, 1_000_000)? + SyncNode::unabsorbed(self)?)
    }
    fn note_acked(&self, peer: NodeId, upto: LogPos, their_last: LogPos) -> Result<()> {
        SyncNode::note_acked(self, peer, upto, their_last)
    }
    fn note_connected(&self, peer: NodeId, up: bool) {
        SyncNode::note_connected(self, peer, up);
    }
    fn remember_peer_at(&self, target: &RelayTarget, peer: NodeId) -> Result<()> {
        SyncNode::remember_peer_at(self, target, peer)
    }
    fn bind_principal(&self, node: NodeId, principal: &str) -> Result<Binding> {
        SyncNode::bind_principal(self, node, principal)
    }
    fn learn_principals(&self, list: &[(NodeId, String)]) -> Result<()> {
        SyncNode::learn_principals(self, list)
    }
    fn principals_of(&self, nodes: &BTreeSet<NodeId>) -> Result<Vec<(NodeId, String)>> {
        SyncNode::principals_of(self, nodes)
    }
    fn gc_due(&self, now_us: u64) -> bool {
        SyncNode::gc_due(self, now_us)
    }
    fn maybe_collect_garbage(&self, now_us: u64, every_us: u64) -> Result<Option<GcReport>> {
        SyncNode::maybe_collect_garbage(self, now_us, every_us)
    }
    fn commit_signal(&self) -> Result<CommitSignal> {
        Ok(self.store_db().commit_signal()?)
    }
}

#[cfg(test)]
mod tests {
    use blazedb_engine::{Database, Document, KdfParams};

    use super::SyncStore as _;
    use crate::clock::{NodeId, Role};
    use crate::config::SyncConfig;
    use crate::node::SyncNode;
    use crate::position::LogPos;

    /// Whether the signal moved since the last call (and marks it seen).
    fn woke(rx: &mut tokio::sync::watch::Receiver<u64>) -> bool {
        let moved = rx.has_changed().expect("the signal lives");
        rx.mark_unchanged();
        moved
    }

    #[test]
    fn sessions_wake_for_local_writes_and_log_growth_but_not_for_acknowledgments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::builder()
            .kdf(KdfParams::INSECURE_FAST)
            .open(dir.path(), "db", "pw")
            .expect("open");
        let node = SyncNode::enable(&db, Role::Server, &SyncConfig::default()).expect("enable");
        let signal = node.commit_signal().expect("signal");
        let mut rx = signal.subscribe();

        db.collection("c")
            .insert(Document::new().with("n", 1i64))
            .expect("insert");
        assert!(woke(&mut rx), "a local write must wake the sessions");

        node.absorb().expect("absorb");
        assert!(
            woke(&mut rx),
            "taking the write into the sync log must wake them"
        );
        assert!(node.log_last().expect("log") > LogPos::ZERO);

        node.note_acked(NodeId(7), node.log_last().expect("log"), LogPos::ZERO)
            .expect("ack");
        assert!(
            !woke(&mut rx),
            "an acknowledgment gives no session anything to send"
        );

        node.absorb().expect("absorb with nothing new");
        assert!(!woke(&mut rx), "an absorb that took nothing wakes no one");
    }
}
