//! [`SyncNode`]: one database's sync state, persisted inside the database.
//!
//! Every operation is one database transaction, so the sync state (merge states, log,
//! cursors, clock, conflict log) commits atomically with the documents it describes.
//! The node's work is split into rooms, each stating the invariants it keeps:
//! - `absorb.rs`: local writes taken over from the engine's change log and stamped;
//! - `apply.rs`: remote batches merged, with the peer's cursor;
//! - `combine.rs`: several sessions' batches applied in one transaction;
//! - `log.rs`: the sync log peers read;
//! - `conflicts.rs`: the conflict log of this node's lost writes;
//! - `gc.rs`: garbage collection of the log and of stable history;
//! - `snapshot.rs`: bootstrapping by document states, sending and receiving;
//! - `peers.rs`: cursors, acknowledgments, relay targets, open sessions.
//!
//! Invariants kept by this module (every room relies on them):
//! - Sync metadata (`Meta`) exists once [`SyncNode::enable`] returned; every write
//!   transaction loads it in `begin` and saves it in `finish`, with the merge states it
//!   touched (`States`), in one commit.
//! - A node's id and role never change once stored (`RoleMismatch` otherwise).
//! - Local writes are absorbed before any remote write is applied in the same
//!   transaction (`absorb.rs`), so each local write's causal context is exactly what
//!   its writer saw.
//! - A peer's cursor advances in the transaction that applied what it covers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use blazedb_core::DocId;
use blazedb_engine::Database;

use crate::backend::{EngineDb, NodeDb, Snap, Tx};
use crate::clock::{NodeId, Role};
use crate::config::SyncConfig;
use crate::error::{Result, SyncError};
use crate::merge::DocState;
use crate::position::LogPos;
use crate::record::{self, META_KEY, META_VERSION, Meta, NS_DOC, NS_META, SnapDoc};
use crate::write::Stamp;

mod absorb;
mod apply;
mod combine;
mod conflicts;
mod gc;
mod index;
mod log;
mod peers;
mod snapshot;

pub use combine::Part;

/// Target size of one batch of log entries.
pub const BATCH_BYTES_MAX: usize = 1 << 20;
/// Target size of one snapshot page.
pub const SNAPSHOT_PAGE_BYTES: usize = 1 << 20;
/// Most sync-log entries collected (or dropped by a wipe) in one transaction.
const GC_CHUNK: u64 = 10_000;

/// Where the writes being applied come from, and when (`apply.rs`). Declared here,
/// with the node, because the node's methods name it.
#[derive(Clone, Copy)]
struct Arrival {
    peer: NodeId,
    now: u64,
}

/// What one garbage collection did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Sync-log entries pruned.
    pub log_pruned: u64,
    /// Document states that dropped something.
    pub states_collected: u64,
    /// Peers forgotten for silence beyond the retention.
    pub peers_forgotten: u64,
}

/// What applying a batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Writes new to this node.
    pub applied: u64,
    /// Writes it already had.
    pub duplicates: u64,
    /// Losses newly recorded in the conflict log (of this node's own writes, and of
    /// writes that expired here).
    pub conflicts: u64,
    /// Writes from beyond this node's retention horizon, discarded (see
    /// `merge`'s module docs).
    pub expired: u64,
    /// New writes that lost a conflict here on arrival, in whole or in part (on a
    /// server: client writes its own concurrent writes overruled). Their origins
    /// record the losses when they hear of them.
    pub rejected: u64,
}

/// One snapshot page received from a peer (see [`SyncNode::apply_snapshot`]).
#[derive(Clone, Copy, Debug)]
pub struct SnapshotPage<'a> {
    /// The peer's log position the snapshot was taken at.
    pub at: LogPos,
    /// The page covers document index slots `after_slot+1 ..= upto_slot`.
    pub after_slot: u64,
    /// The last index slot the page covers.
    pub upto_slot: u64,
    /// The document states of the page.
    pub docs: &'a [SnapDoc],
    /// Whether it is the snapshot's last page.
    pub done: bool,
    /// Whether the peer collects tombstones (a peer that synced with it before and
    /// gets a snapshot again was forgotten by it).
    pub collected: bool,
}

#[derive(Default)]
struct States {
    /// Document key → (state, its record as loaded: `None` if created in this
    /// transaction).
    map: HashMap<Vec<u8>, (DocState, Option<Vec<u8>>)>,
}

impl States {
    fn get<'a>(&'a mut self, tx: &mut Tx<'_>, key: &[u8]) -> Result<&'a mut DocState> {
        if !self.map.contains_key(key) {
            let loaded = tx.aux_get(NS_DOC, key)?;
            let state = match &loaded {
                Some(bytes) => record::decode("doc state", bytes)?,
                None => DocState::default(),
            };
            self.map.insert(key.to_vec(), (state, loaded));
        }
        Ok(&mut self.map.get_mut(key).expect("inserted above").0)
    }

    /// Writes back every state that changed (a state can hold several documents'
    /// worth of concurrent values: resealing it unchanged, for every duplicate write
    /// delivered, would cost as much); new ones get a slot in the document index.
    ///
    /// In key order: the states are stored in their documents' order, so writing them
    /// sorted appends to the B-tree's pages instead of inserting into the middle of
    /// them (the map's order is random: ~14 % of an absorb went to moving bytes
    /// within pages, perf). It is also the deterministic order of the new slots.
    fn save(self, tx: &mut Tx<'_>, meta: &mut Meta) -> Result<()> {
        let mut entries: Vec<_> = self.map.into_iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut created: Vec<Vec<u8>> = Vec::new();
        for (key, (state, loaded)) in entries {
            if loaded.is_none() && state.is_empty() {
                continue; // looked up, never written
            }
            let bytes = record::encode("doc state", &state)?;
            if loaded.as_ref() == Some(&bytes) {
                continue;
            }
            tx.aux_put(NS_DOC, &key, &bytes)?;
            if loaded.is_none() {
                created.push(key);
            }
        }
        index::append_run(tx, meta, created)
    }
}

/// One database taking part in sync.
#[derive(Clone)]
pub struct SyncNode {
    db: Arc<dyn NodeDb>,
    opts: SyncConfig,
    node: NodeId,
    role: Role,
    /// Peers with a session open now (never forgotten for silence), with counts.
    connected: Arc<std::sync::Mutex<BTreeMap<NodeId, usize>>>,
    /// Wall time of the last garbage collection (sessions share the rate limit).
    last_gc_us: Arc<std::sync::atomic::AtomicU64>,
    /// Sessions' batches waiting to be applied together (`combine.rs`).
    combiner: Arc<combine::Combiner>,
}

impl std::fmt::Debug for SyncNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncNode")
            .field("node", &self.node)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl SyncNode {
    /// Enables sync on `db` with `role`. The first time, the database gets a node id,
    /// keeps `role` for good, and its existing documents become its first writes (so a
    /// server shares what it held before sync, and a client's offline data uploads).
    ///
    /// Enabling a database that already is only reads: no write transaction begins, so
    /// it works on a read-only handle.
    ///
    /// # Errors
    /// [`SyncError::RoleMismatch`] if it was enabled with the other role before;
    /// database errors (`Error::ReadOnly` when a read-only handle is enabled for the
    /// first time). Nothing is written on error.
    pub fn enable(db: &Database, role: Role, config: &SyncConfig) -> Result<SyncNode> {
        SyncNode::enable_on(Arc::new(EngineDb(db.clone())), role, config)
    }

    /// As [`SyncNode::enable`], on the node's state in `db` (see `backend.rs`).
    ///
    /// # Errors
    /// As [`SyncNode::enable`].
    pub fn enable_on(db: Arc<dyn NodeDb>, role: Role, config: &SyncConfig) -> Result<SyncNode> {
        let opts = config.clone();
        if let Some(meta) = record::load_meta(&mut &*db.begin_read()?)? {
            return Self::enabled(&db, role, opts, &meta);
        }
        let mut tx = db.begin_apply()?;
        match record::load_meta(&mut *tx)? {
            // Enabled by a concurrent call since the read above.
            Some(meta) => Self::enabled(&db, role, opts, &meta),
            None => {
                let node = NodeId::random().map_err(|e| {
                    SyncError::Db(blazedb_core::Error::InvalidValue {
                        reason: format!("no random source for the node id: {e}"),
                    })
                })?;
                let mut meta = Meta::fresh(node, role, tx.last_seq());
                let this = SyncNode {
                    db: Arc::clone(&db),
                    opts,
                    node,
                    role,
                    connected: Arc::default(),
                    last_gc_us: Arc::default(),
                    combiner: Arc::default(),
                };
                // From this transaction on, local writes are captured; what was
                // written before (in no change log) is taken over by the scan below.
                tx.enable_change_capture()?;
                this.adopt_existing(&mut *tx, &mut meta)?;
                record::save(&mut *tx, "meta", NS_META, META_KEY, &meta)?;
                tx.commit()?;
                Ok(this)
            }
        }
    }

    /// The node of a database whose stored sync metadata is `meta`, if `role` is the one
    /// it keeps.
    fn enabled(
        db: &Arc<dyn NodeDb>,
        role: Role,
        opts: SyncConfig,
        meta: &Meta,
    ) -> Result<SyncNode> {
        if meta.role != role {
            return Err(SyncError::RoleMismatch {
                stored: meta.role,
                requested: role,
            });
        }
        Ok(SyncNode {
            db: Arc::clone(db),
            opts,
            node: meta.node,
            role: meta.role,
            connected: Arc::default(),
            last_gc_us: Arc::default(),
            combiner: Arc::default(),
        })
    }

    /// The role `db` keeps for sync, if sync was ever enabled on it (a read; nothing is
    /// written). Tools use it to open a database with its own role.
    ///
    /// # Errors
    /// Database errors; [`SyncError::Corrupt`] for unreadable sync metadata.
    pub fn stored_role(db: &Database) -> Result<Option<Role>> {
        let r = db.begin_read()?;
        let snap: &Snap<'_> = &r;
        Ok(record::load_meta(&mut &*snap)?.map(|m| m.role))
    }

    /// This node's id.
    #[must_use]
    pub fn node_id(&self) -> NodeId {
        self.node
    }

    /// This node's role.
    #[must_use]
    pub fn role(&self) -> Role {
        self.role
    }

    /// The embedded database the node is kept in (`None` for a node kept in another
    /// store).
    #[must_use]
    pub fn database(&self) -> Option<&Database> {
        self.db.engine()
    }

    /// Where the node's state is kept.
    #[must_use]
    pub fn store_db(&self) -> &Arc<dyn NodeDb> {
        &self.db
    }

    /// The configuration the node was enabled with (its database-wide knobs apply).
    #[must_use]
    pub fn config(&self) -> &SyncConfig {
        &self.opts
    }

    fn now_us(&self) -> u64 {
        (self.opts.advanced.clock)()
    }

    fn begin(&self) -> Result<(Box<Tx<'_>>, Meta)> {
        let mut tx = self.db.begin_apply()?;
        tx.set_durability(self.opts.advanced.durability);
        let mut meta = record::load_meta(&mut *tx)?.ok_or_else(|| SyncError::Corrupt {
            what: "meta",
            detail: "the sync metadata record is missing".into(),
        })?;
        // Emptied at the first save (see `Meta::seen`).
        meta.seen = crate::vv::Vv::new();
        // A version-1 database is upgraded by its first sync transaction: from then
        // on it may hold index runs (`index.rs`), which a version-1 build cannot read.
        meta.version = META_VERSION;
        Ok((tx, meta))
    }

    fn finish(&self, mut tx: Box<Tx<'_>>, meta: &mut Meta, states: States) -> Result<()> {
        states.save(&mut *tx, meta)?;
        record::save(&mut *tx, "meta", NS_META, META_KEY, meta)?;
        tx.commit()?;
        Ok(())
    }

    fn meta_in(&self, r: &Snap<'_>) -> Result<Meta> {
        record::load_meta(&mut &*r)?.ok_or_else(|| SyncError::Corrupt {
            what: "meta",
            detail: "missing".into(),
        })
    }

    /// The merge state of one document (for `get --meta` and tests).
    ///
    /// # Errors
    /// Database errors.
    pub fn doc_state(&self, collection: &str, id: DocId) -> Result<DocState> {
        let r = self.db.begin_read()?;
        Ok(record::load(
            &mut &*r,
            "doc state",
            NS_DOC,
            &record::doc_key(collection, id),
        )?
        .unwrap_or_default())
    }

    /// Each field's winning stamp in document `id` (empty if unknown).
    ///
    /// # Errors
    /// Database errors.
    pub fn field_stamps(&self, collection: &str, id: DocId) -> Result<BTreeMap<String, Stamp>> {
        let state = self.doc_state(collection, id)?;
        let Some(fields) = state.eval() else {
            return Ok(BTreeMap::new());
        };
        Ok(fields
            .keys()
            .filter_map(|f| state.field_stamp(f).map(|s| (f.clone(), s)))
            .collect())
    }
}
