//! The sync layer's records inside the database (sealed auxiliary records and logs of
//! the engine; see `docs/format.md`). Encoded with postcard; append fields and variants,
//! never reorder.
//!
//! Invariant: every record here is written in the same transaction as the documents it
//! describes, so the sync state and the data never disagree after a crash.

use blazedb_core::DocId;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::backend::{Snap, Tx};
use crate::clock::{Clock, NodeId, Role};
use crate::error::{Result, SyncError};
use crate::position::LogPos;
use crate::vv::Vv;
use crate::write::{Held, LossReason, Stamp, Write};

/// Namespace of the node's metadata record.
pub(crate) const NS_META: &str = "sync";
pub(crate) const META_KEY: &[u8] = b"meta";
/// Namespace of per-document merge states, keyed by collection ‖ 0 ‖ id: the engine's
/// per-document namespace, whose records are stored in their documents' order.
pub(crate) const NS_DOC: &str = blazedb_engine::internal::DOC_NS;
/// Namespace of peer records, keyed by node id (8 bytes, big-endian).
pub(crate) const NS_PEER: &str = "sync.peer";
/// Namespace of the peer last reached through each relay, keyed by its
/// [`crate::RelayTarget`] (the relay's description as UTF-8, as ever); the value is
/// the node id (8 bytes, big-endian).
pub(crate) const NS_TARGET: &str = "sync.target";
/// Namespace of the remote a tool last synced with (key [`REMOTE_KEY`]): the tool's
/// own description of it, opaque here (see `SyncNode::remember_remote`).
pub(crate) const NS_REMOTE: &str = "sync.remote";
pub(crate) const REMOTE_KEY: &[u8] = b"last";
/// Namespace marking losses already recorded, keyed by the loss's identity.
pub(crate) const NS_LOSS_KEY: &str = "sync.loss-key";
/// The sync log: every write this node holds, in the order it took them.
pub(crate) const LOG: &str = "sync.log";
/// The conflict log: losses of this node's own writes.
pub(crate) const CONFLICTS: &str = "sync.conflicts";
/// The document index as databases before sync metadata version 2 hold it: slot →
/// document key, one record per slot (see `node/index.rs`).
pub(crate) const INDEX: &str = "sync.index";
/// The document index from sync metadata version 2 on: one record per transaction
/// that created states, keyed by its last slot (see `node/index.rs`).
pub(crate) const INDEX_RUNS: &str = "sync.index-runs";

/// The sync metadata version this build writes. 2: new document-index slots go to
/// [`INDEX_RUNS`]; a build that reads only version 1 would not see them (its snapshots
/// would leave those documents out), so it refuses the database instead.
pub(crate) const META_VERSION: u32 = 2;
/// The oldest version this build reads (and upgrades at its next sync transaction).
pub(crate) const META_VERSION_MIN: u32 = 1;

/// The node's sync metadata.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub version: u32,
    pub node: NodeId,
    pub role: Role,
    /// Counter of the last write this node originated.
    pub counter: u64,
    pub clock: Clock,
    /// Change-log sequence number taken over into the sync log.
    pub absorbed: u64,
    /// Position of the newest sync-log entry (0 when empty).
    pub log_last: LogPos,
    /// Entries at or below this position have been pruned.
    pub log_floor: LogPos,
    /// Position of the newest conflict-log entry.
    pub conflicts_last: u64,
    /// Unused, and kept empty: it held, for each origin, the highest counter of its
    /// writes applied here, which nothing read, and it grew with every node that ever
    /// wrote while every transaction decrypts and reseals this record (a server with
    /// 10,000 writing clients would carry ~150 KB in each commit). The field stays so
    /// records keep their layout in both directions; [`SyncNode`]'s transactions empty
    /// it when they save.
    ///
    /// [`SyncNode`]: crate::SyncNode
    pub seen: Vv,
    /// Newest slot of the document index (each document state gets one when created).
    pub index_last: u64,
    /// The node this node last bootstrapped from by snapshot.
    pub bootstrapped: Option<NodeId>,
}

impl Meta {
    /// The metadata of a node that has just enabled sync: nothing logged, stamped or
    /// indexed yet, the engine's change log taken over up to `absorbed`.
    pub(crate) fn fresh(node: NodeId, role: Role, absorbed: u64) -> Meta {
        Meta {
            version: META_VERSION,
            node,
            role,
            counter: 0,
            clock: Clock::default(),
            absorbed,
            log_last: LogPos::ZERO,
            log_floor: LogPos::ZERO,
            conflicts_last: 0,
            seen: Vv::new(),
            index_last: 0,
            bootstrapped: None,
        }
    }
}

/// What a sync-log entry (and a batch) carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Item {
    /// One write, to be merged in causal order.
    Write(Write),
    /// A document's merge state taken over from a snapshot, to be joined (state
    /// transfer). Logging it lets this node's peers receive what the snapshot brought
    /// like anything else it holds.
    State(SnapDoc),
}

impl Item {
    /// The collection of the document it concerns.
    #[must_use]
    pub fn collection(&self) -> &str {
        match self {
            Item::Write(w) => &w.collection,
            Item::State(d) => &d.collection,
        }
    }
}

/// The stamps `state` carries: those of its records and both sides of its recorded
/// defeats.
pub(crate) fn state_stamps(state: &crate::merge::DocState) -> impl Iterator<Item = &Stamp> + '_ {
    state
        .recs
        .iter()
        .map(|r| &r.stamp)
        .chain(state.defeated.iter().flat_map(|d| [&d.loser, &d.winner]))
}

/// The nodes a message carrying `state` names: the writers of its records and both
/// sides of its recorded defeats.
pub(crate) fn state_nodes(state: &crate::merge::DocState) -> impl Iterator<Item = NodeId> + '_ {
    state_stamps(state).map(Stamp::node)
}

/// One sync-log entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The peer it came from; `None` for this node's own writes.
    pub via: Option<NodeId>,
    pub item: Item,
}

/// What this node knows of a peer.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct PeerRecord {
    pub role: Option<Role>,
    /// The peer's log position applied here.
    pub recv_cursor: LogPos,
    /// This node's log position the peer confirmed applied.
    pub acked: LogPos,
    /// Wall time of the last exchange with it.
    pub last_seen_us: u64,
    /// Acks not yet known stable: (our log position it confirmed, its own newest log
    /// position then), oldest first, at most [`ACKS_PENDING_MAX`].
    pub acks: Vec<(LogPos, LogPos)>,
    /// Our log position up to which the peer has everything and we have everything the
    /// peer had made before it got them (see `SyncNode::collect_garbage`).
    pub stable: LogPos,
    /// A snapshot from this peer being received, and how far.
    pub snapshot: Option<SnapshotProgress>,
    /// Silent beyond the retention: no longer holds back garbage collection. Kept
    /// (not deleted) so that if it returns, its cursor still says it synced before.
    pub forgotten: bool,
}

/// How far a snapshot from a peer has been received. Stored inside `PeerRecord`:
/// postcard encodes a struct as the tuple of its fields, so this is byte for byte the
/// `(u64, u64)` it replaced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotProgress {
    /// The peer's log position the snapshot is taken at.
    pub at: LogPos,
    /// The last index slot applied (0: none yet).
    pub slot: u64,
}

/// Most acks a peer record keeps while waiting for them to become stable (older ones
/// are dropped: stability then advances with a later ack, never wrongly).
pub(crate) const ACKS_PENDING_MAX: usize = 16;

impl PeerRecord {
    /// Moves `stable` over every ack whose paired position we have applied.
    pub(crate) fn settle(&mut self) {
        while let Some(&(acked, their_last)) = self.acks.first() {
            if their_last > self.recv_cursor {
                break;
            }
            self.stable = self.stable.max(acked);
            self.acks.remove(0);
        }
    }

    /// Notes an ack (our position `acked`, the peer's own position `their_last`).
    pub(crate) fn note_ack(&mut self, acked: LogPos, their_last: LogPos) {
        self.acked = self.acked.max(acked);
        if self.acks.last().is_none_or(|&(a, _)| acked > a) {
            if self.acks.len() >= ACKS_PENDING_MAX {
                self.acks.remove(0);
            }
            self.acks.push((acked, their_last));
        }
        self.settle();
    }
}

/// One recorded loss of one of this node's writes (docs/semantics.md rule 6).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConflictEntry {
    /// Position in the conflict log, from 1.
    pub seq: u64,
    pub collection: String,
    #[serde(with = "crate::write::doc_id")]
    pub id: DocId,
    /// The field that lost, or `None` when the whole write lost (an update killed by a
    /// concurrent delete, or a delete a concurrent update defeated).
    pub field: Option<String>,
    pub loser: Stamp,
    pub lost: Held,
    /// The write that won (`None` for [`LossReason::RetentionExpired`]).
    pub winner: Option<Stamp>,
    pub won: Option<Held>,
    pub reason: LossReason,
    /// Wall time this node learned of the loss (µs since the epoch).
    pub detected_us: u64,
}

/// One document's merge state in a snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapDoc {
    pub collection: String,
    #[serde(with = "crate::write::doc_id")]
    pub id: DocId,
    pub state: crate::merge::DocState,
}

/// Splits a document key back into collection and id.
pub(crate) fn split_doc_key(key: &[u8]) -> Result<(String, DocId)> {
    let bad = || SyncError::Corrupt {
        what: "document index",
        detail: "malformed document key".into(),
    };
    let (name, id) = key
        .split_at_checked(key.len().checked_sub(16).ok_or_else(bad)?)
        .ok_or_else(bad)?;
    let name = name.strip_suffix(&[0]).ok_or_else(bad)?;
    let id: [u8; 16] = id.try_into().map_err(|_| bad())?;
    Ok((
        String::from_utf8(name.to_vec()).map_err(|_| bad())?,
        DocId::from_bytes(id),
    ))
}

pub(crate) fn encode<T: Serialize>(what: &'static str, v: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(v).map_err(|source| SyncError::Encode { what, source })
}

pub(crate) fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|source| SyncError::Decode { what, source })
}

pub(crate) fn doc_key(collection: &str, id: DocId) -> Vec<u8> {
    let mut k = Vec::with_capacity(collection.len() + 17);
    k.extend_from_slice(collection.as_bytes());
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

pub(crate) fn peer_key(node: NodeId) -> [u8; 8] {
    node.0.to_be_bytes()
}

/// Reads either kind of transaction.
pub(crate) trait Aux {
    fn get(&mut self, ns: &str, key: &[u8]) -> blazedb_core::Result<Option<Vec<u8>>>;
    /// Up to `limit` entries of log `ns` after position `after`.
    fn log_range(
        &mut self,
        ns: &str,
        after: u64,
        limit: usize,
    ) -> blazedb_core::Result<Vec<(u64, Vec<u8>)>>;
}

impl Aux for &Snap<'_> {
    fn get(&mut self, ns: &str, key: &[u8]) -> blazedb_core::Result<Option<Vec<u8>>> {
        self.aux_get(ns, key)
    }

    fn log_range(
        &mut self,
        ns: &str,
        after: u64,
        limit: usize,
    ) -> blazedb_core::Result<Vec<(u64, Vec<u8>)>> {
        self.aux_log_range(ns, after, limit)
    }
}

impl Aux for Tx<'_> {
    fn get(&mut self, ns: &str, key: &[u8]) -> blazedb_core::Result<Option<Vec<u8>>> {
        self.aux_get(ns, key)
    }

    fn log_range(
        &mut self,
        ns: &str,
        after: u64,
        limit: usize,
    ) -> blazedb_core::Result<Vec<(u64, Vec<u8>)>> {
        self.aux_log_range(ns, after, limit)
    }
}

pub(crate) fn load<T: DeserializeOwned>(
    tx: &mut (impl Aux + ?Sized),
    what: &'static str,
    ns: &str,
    key: &[u8],
) -> Result<Option<T>> {
    tx.get(ns, key)?.map(|b| decode(what, &b)).transpose()
}

pub(crate) fn load_meta(tx: &mut (impl Aux + ?Sized)) -> Result<Option<Meta>> {
    let meta: Option<Meta> = load(tx, "meta", NS_META, META_KEY)?;
    if let Some(m) = &meta
        && !(META_VERSION_MIN..=META_VERSION).contains(&m.version)
    {
        return Err(SyncError::Corrupt {
            what: "meta",
            detail: format!(
                "version {} (this build reads {META_VERSION_MIN} to {META_VERSION}; a newer \
                 release wrote it)",
                m.version
            ),
        });
    }
    Ok(meta)
}

pub(crate) fn save<T: Serialize>(
    tx: &mut Tx<'_>,
    what: &'static str,
    ns: &str,
    key: &[u8],
    v: &T,
) -> Result<()> {
    tx.aux_put(ns, key, &encode(what, v)?)?;
    Ok(())
}
