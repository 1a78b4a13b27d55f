//! [`SyncNode`]: one database's sync state, persisted inside the database.
//!
//! Every operation is one database transaction, so the sync state (merge states, log,
//! cursors, clock, conflict log) commits atomically with the documents it describes.
//!
//! Invariants:
//! - Local writes are taken over from the engine's change log ("absorbed") in change-log
//!   order, before any remote write is applied in the same transaction, so each local
//!   write's causal context is exactly what its writer saw.
//! - The engine's document always equals the merge state's visible document
//!   ([`DocState::eval`]); remote writes change documents only through a non-capturing
//!   transaction, so they are never re-captured as local writes (no echo).
//! - A write enters the sync log once, when first applied here; re-deliveries change
//!   nothing and are not logged, so nothing ping-pongs.
//! - A peer's cursor advances in the transaction that applied what it covers.
//! - Applying a valid batch never fails for good: not for a document's size (the merge
//!   keeps every document within the engine's limit; local-only fields that no longer
//!   fit are dropped) nor for this database's own indexes (`write_document`). Only
//!   transient causes (clock skew, I/O) make a peer send a batch again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use blazedb_core::limits::DOCUMENT_BYTES_MAX;
use blazedb_core::{DocId, Document};
use blazedb_engine::internal::serde_fields::{document_bytes_of, field_bytes};
use blazedb_engine::internal::{SyncDatabase, SyncRead, SyncWrite};
use blazedb_engine::{ChangeOp, Database, Durability, WriteTxn};

use crate::clock::{Clock, DRIFT_MAX_DEFAULT_US, NodeId, Role, wall_now_us};
use crate::error::{Result, SyncError};
use crate::merge::{DocState, Loss};
use crate::record::{
    self, CONFLICTS, ConflictEntry, INDEX, LOG, LogEntry, META_KEY, META_VERSION, Meta, NS_DOC,
    NS_LOSS_KEY, NS_META, NS_PEER, PeerRecord,
};
use crate::record::{Item, SnapDoc};
use crate::vv::Dot;
use crate::write::{Held, LossReason, Op, Stamp, Write};

/// Target size of one batch of log entries.
pub const BATCH_BYTES_MAX: usize = 1 << 20;
/// Target size of one snapshot page.
pub const SNAPSHOT_PAGE_BYTES: usize = 1 << 20;
/// Change-log entries taken over per read.
const ABSORB_CHUNK: usize = 1_000;
/// Most change-log entries pruned in one transaction.
const PRUNE_MAX: usize = 100_000;
/// Default retention of silent peers: 30 days.
pub const RETENTION_DEFAULT_US: u64 = 30 * 24 * 3600 * 1_000_000;
/// Most sync-log entries collected in one transaction.
const GC_CHUNK: u64 = 10_000;

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

/// A source of wall-clock time in microseconds since the epoch.
pub type WallClock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Options of a sync node.
#[derive(Clone)]
pub struct SyncOptions {
    /// How far ahead of the local clock a remote stamp may be (SPEC §3.2 clock hygiene).
    pub drift_max_us: u64,
    /// The wall clock (the system clock by default; simulations inject their own).
    pub clock: WallClock,
    /// Stamp local writes with the time they were made (from the change log) rather
    /// than the time sync took them over. On by default; simulations with an injected
    /// clock turn it off.
    pub stamp_with_write_time: bool,
    /// Top-level fields that never sync: they stay in this database's documents, are
    /// never sent, and remote writes leave them alone (a remote delete still removes
    /// the whole document; and where a merged document grows so that one no longer
    /// fits beside it within the engine's document limit, it is dropped with a
    /// warning: those that still fit are kept, in name order). Exclusion belongs to the
    /// database rather than to one connection: a field kept off one connection would
    /// still travel over another and come back through a third.
    pub local_fields: std::collections::BTreeSet<String>,
    /// A peer not heard from for this long is forgotten: garbage collection stops
    /// waiting for it, and if it comes back it must bootstrap again (its unsent writes
    /// go to its conflict log as expired). Default: 30 days.
    pub retention_us: u64,
    /// Collect tombstones and conflict history once stable (see
    /// [`SyncNode::collect_garbage`]). Safe only on a node that every other node syncs
    /// with directly — the server of a hub-and-spoke deployment — so off by default;
    /// the sync log is pruned either way.
    pub tombstone_gc: bool,
    /// How often sessions run garbage collection (at most; they share the rate).
    pub gc_every_us: u64,
    /// Durability of the sync layer's own transactions (applied batches, taken-over
    /// local writes). Durable by default: a batch is acknowledged only once it is on
    /// disk, so a peer may forget what it sent.
    pub durability: Durability,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            drift_max_us: DRIFT_MAX_DEFAULT_US,
            clock: Arc::new(wall_now_us),
            stamp_with_write_time: true,
            durability: Durability::Immediate,
            local_fields: std::collections::BTreeSet::new(),
            retention_us: RETENTION_DEFAULT_US,
            tombstone_gc: false,
            gc_every_us: 10_000_000,
        }
    }
}

impl std::fmt::Debug for SyncOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncOptions")
            .field("drift_max_us", &self.drift_max_us)
            .field("stamp_with_write_time", &self.stamp_with_write_time)
            .field("local_fields", &self.local_fields)
            .finish_non_exhaustive()
    }
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

/// The merge states touched by one transaction, written back at its end.
#[derive(Default)]
struct States {
    /// Document key → (state, its record as loaded: `None` if created in this
    /// transaction).
    map: HashMap<Vec<u8>, (DocState, Option<Vec<u8>>)>,
}

impl States {
    fn get<'a>(&'a mut self, tx: &mut WriteTxn<'_>, key: &[u8]) -> Result<&'a mut DocState> {
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
    fn save(self, tx: &mut WriteTxn<'_>, meta: &mut Meta) -> Result<()> {
        let mut created: Vec<&Vec<u8>> = Vec::new();
        for (key, (state, loaded)) in &self.map {
            if loaded.is_none() && state.is_empty() {
                continue; // looked up, never written
            }
            let bytes = record::encode("doc state", state)?;
            if loaded.as_ref() == Some(&bytes) {
                continue;
            }
            tx.aux_put(NS_DOC, key, &bytes)?;
            if loaded.is_none() {
                created.push(key);
            }
        }
        // Deterministic slot order (the map's is not).
        created.sort();
        for key in created {
            meta.index_last += 1;
            tx.aux_log_put(INDEX, meta.index_last, key)?;
        }
        Ok(())
    }
}

/// One database taking part in sync.
#[derive(Clone)]
pub struct SyncNode {
    db: Database,
    opts: SyncOptions,
    node: NodeId,
    role: Role,
    /// Peers with a session open now (never forgotten for silence), with counts.
    connected: Arc<std::sync::Mutex<BTreeMap<NodeId, usize>>>,
    /// Wall time of the last garbage collection (sessions share the rate limit).
    last_gc_us: Arc<std::sync::atomic::AtomicU64>,
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
    pub fn enable(db: &Database, role: Role, opts: SyncOptions) -> Result<SyncNode> {
        if let Some(meta) = record::load_meta(&mut &db.begin_read()?)? {
            return Self::enabled(db, role, opts, &meta);
        }
        let mut tx = db.begin_apply()?;
        match record::load_meta(&mut tx)? {
            // Enabled by a concurrent call since the read above.
            Some(meta) => Self::enabled(db, role, opts, &meta),
            None => {
                let node = NodeId::random().map_err(|e| {
                    SyncError::Db(blazedb_core::Error::InvalidValue {
                        reason: format!("no random source for the node id: {e}"),
                    })
                })?;
                let mut meta = Meta {
                    version: META_VERSION,
                    node,
                    role,
                    counter: 0,
                    clock: Clock::default(),
                    absorbed: tx.last_seq(),
                    log_last: 0,
                    log_floor: 0,
                    conflicts_last: 0,
                    seen: crate::vv::Vv::new(),
                    index_last: 0,
                    bootstrapped: None,
                };
                let this = SyncNode {
                    db: db.clone(),
                    opts: opts.clone(),
                    node,
                    role,
                    connected: Arc::default(),
                    last_gc_us: Arc::default(),
                };
                this.adopt_existing(&mut tx, &mut meta)?;
                record::save(&mut tx, "meta", NS_META, META_KEY, &meta)?;
                tx.commit()?;
                Ok(this)
            }
        }
    }

    /// The node of a database whose stored sync metadata is `meta`, if `role` is the one
    /// it keeps.
    fn enabled(db: &Database, role: Role, opts: SyncOptions, meta: &Meta) -> Result<SyncNode> {
        if meta.role != role {
            return Err(SyncError::RoleMismatch {
                stored: meta.role,
                requested: role,
            });
        }
        Ok(SyncNode {
            db: db.clone(),
            opts,
            node: meta.node,
            role: meta.role,
            connected: Arc::default(),
            last_gc_us: Arc::default(),
        })
    }

    /// The role `db` keeps for sync, if sync was ever enabled on it (a read; nothing is
    /// written). Tools use it to open a database with its own role.
    ///
    /// # Errors
    /// Database errors; [`SyncError::Corrupt`] for unreadable sync metadata.
    pub fn stored_role(db: &Database) -> Result<Option<Role>> {
        let r = db.begin_read()?;
        Ok(record::load_meta(&mut &r)?.map(|m| m.role))
    }

    /// Every relay target this node has dialled, with the peer it reached there (see
    /// [`SyncNode::peer_at`]), sorted by target.
    ///
    /// # Errors
    /// Database errors.
    pub fn known_targets(&self) -> Result<Vec<(String, NodeId)>> {
        let r = self.db.begin_read()?;
        Ok(r.aux_scan(record::NS_TARGET)?
            .into_iter()
            .filter_map(|(k, v)| {
                let id = <[u8; 8]>::try_from(v.as_slice()).ok()?;
                Some((
                    String::from_utf8_lossy(&k).into_owned(),
                    NodeId(u64::from_be_bytes(id)),
                ))
            })
            .collect())
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

    /// The database.
    #[must_use]
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The options.
    #[must_use]
    pub fn options(&self) -> &SyncOptions {
        &self.opts
    }

    fn now_us(&self) -> u64 {
        (self.opts.clock)()
    }

    fn begin(&self) -> Result<(WriteTxn<'_>, Meta)> {
        let mut tx = self.db.begin_apply()?;
        tx.set_durability(self.opts.durability);
        let meta = record::load_meta(&mut tx)?.ok_or_else(|| SyncError::Corrupt {
            what: "meta",
            detail: "the sync metadata record is missing".into(),
        })?;
        Ok((tx, meta))
    }

    fn finish(&self, mut tx: WriteTxn<'_>, meta: &mut Meta, states: States) -> Result<()> {
        states.save(&mut tx, meta)?;
        record::save(&mut tx, "meta", NS_META, META_KEY, meta)?;
        tx.commit()?;
        Ok(())
    }

    /// The documents present before sync was first enabled become this node's writes.
    fn adopt_existing(&self, tx: &mut WriteTxn<'_>, meta: &mut Meta) -> Result<()> {
        let mut states = States::default();
        let now = self.now_us();
        for collection in tx.collections()? {
            for doc in tx.all(&collection)? {
                let op = Op::Put { fields: doc.fields };
                self.originate(tx, meta, &mut states, &collection, doc.id, op, now)?;
            }
        }
        states.save(tx, meta)
    }

    /// `op` without its local-only fields; `None` if nothing is left to sync.
    fn strip_local(&self, op: Op) -> Option<Op> {
        let local = &self.opts.local_fields;
        if local.is_empty() {
            return Some(op);
        }
        match op {
            Op::Put { mut fields } => {
                fields.retain(|k, _| !local.contains(k));
                Some(Op::Put { fields })
            }
            Op::Patch { mut set, mut unset } => {
                set.retain(|k, _| !local.contains(k));
                unset.retain(|k| !local.contains(k));
                (!set.is_empty() || !unset.is_empty()).then_some(Op::Patch { set, unset })
            }
            Op::Delete => Some(Op::Delete),
        }
    }

    /// Stamps and logs one local write.
    #[allow(clippy::too_many_arguments)]
    fn originate(
        &self,
        tx: &mut WriteTxn<'_>,
        meta: &mut Meta,
        states: &mut States,
        collection: &str,
        id: DocId,
        op: Op,
        at_us: u64,
    ) -> Result<()> {
        let Some(op) = self.strip_local(op) else {
            return Ok(()); // a change of local-only fields: nothing to sync
        };
        let key = record::doc_key(collection, id);
        let state = states.get(tx, &key)?;
        let op = match op {
            // What the size rule leaves out here, this document did not show: the patch
            // overwrites that absence too, so it stays (see `merge`, rule 5).
            Op::Patch { set, mut unset } => {
                for f in state.excluded_fields_within(DOCUMENT_BYTES_MAX) {
                    if !set.contains_key(&f)
                        && !unset.contains(&f)
                        && !self.opts.local_fields.contains(&f)
                    {
                        unset.push(f);
                    }
                }
                Op::Patch { set, unset }
            }
            op => op,
        };
        meta.counter += 1;
        let stamp = Stamp {
            dot: Dot {
                node: self.node,
                counter: meta.counter,
            },
            hlc: meta.clock.tick(at_us),
            role: self.role,
        };
        let write = Write {
            collection: collection.to_owned(),
            id,
            stamp,
            ctx: state.vv.clone(),
            op,
        };
        // A local write follows everything this node holds: it always applies.
        state.apply(&write)?;
        meta.seen.raise(stamp.dot);
        self.append_log(tx, meta, None, Item::Write(write))
    }

    fn append_log(
        &self,
        tx: &mut WriteTxn<'_>,
        meta: &mut Meta,
        via: Option<NodeId>,
        item: Item,
    ) -> Result<()> {
        meta.log_last += 1;
        let entry = LogEntry { via, item };
        tx.aux_log_put(LOG, meta.log_last, &record::encode("log entry", &entry)?)?;
        Ok(())
    }

    /// Takes over the local writes committed since the last time.
    fn absorb_in(
        &self,
        tx: &mut WriteTxn<'_>,
        meta: &mut Meta,
        states: &mut States,
    ) -> Result<u64> {
        let mut n = 0;
        loop {
            let changes = tx.changes_after(meta.absorbed, ABSORB_CHUNK)?;
            let Some(last) = changes.last().map(|c| c.seq) else {
                break;
            };
            for c in changes {
                let op = match c.op {
                    ChangeOp::Insert { fields } | ChangeOp::Replace { fields } => {
                        Op::Put { fields }
                    }
                    ChangeOp::Update { set, unset } => Op::Patch { set, unset },
                    ChangeOp::Delete => Op::Delete,
                };
                let at = if self.opts.stamp_with_write_time {
                    u64::try_from(c.at.as_micros()).unwrap_or(0)
                } else {
                    self.now_us()
                };
                self.originate(tx, meta, states, &c.collection, c.id, op, at)?;
                n += 1;
            }
            meta.absorbed = last;
        }
        if n > 0 {
            tx.prune_changes(meta.absorbed, PRUNE_MAX)?;
        }
        Ok(n)
    }

    /// Takes over local writes committed since the last call (they then reach peers).
    /// Returns how many.
    ///
    /// # Errors
    /// Database errors.
    pub fn absorb(&self) -> Result<u64> {
        if self.db.begin_read()?.last_seq()? <= self.absorbed()? {
            return Ok(0);
        }
        let (mut tx, mut meta) = self.begin()?;
        let mut states = States::default();
        let n = self.absorb_in(&mut tx, &mut meta, &mut states)?;
        if n == 0 {
            return Ok(0);
        }
        self.finish(tx, &mut meta, states)?;
        Ok(n)
    }

    fn absorbed(&self) -> Result<u64> {
        let r = self.db.begin_read()?;
        Ok(record::load_meta(&mut &r)?.map_or(0, |m| m.absorbed))
    }

    /// Applies items received from `peer` (its log up to position `upto`), in order,
    /// in one durable transaction that also advances the peer's cursor: writes are
    /// merged, merge states (from a snapshot the peer took) are joined.
    ///
    /// # Errors
    /// [`SyncError::ClockSkew`] if a write's stamp is too far ahead of the local clock;
    /// [`SyncError::Protocol`] for a write the peer may not send (a forged role) or a
    /// non-causal delivery; database errors. On any error nothing was applied.
    pub fn apply_batch(
        &self,
        peer: NodeId,
        peer_role: Role,
        items: &[Item],
        upto: u64,
    ) -> Result<BatchReport> {
        let now = self.now_us();
        for item in items {
            let w = match item {
                Item::Write(w) => w,
                Item::State(d) => {
                    blazedb_core::name::check_name(
                        blazedb_core::NameKind::Collection,
                        &d.collection,
                    )
                    .map_err(|e| SyncError::Protocol(e.to_string()))?;
                    continue;
                }
            };
            Clock::check_drift(w.stamp.hlc, now, self.opts.drift_max_us)?;
            if w.stamp.node() == peer && w.stamp.role != peer_role {
                return Err(SyncError::Protocol(format!(
                    "peer {peer} is a {peer_role} but sent its own write {} as a {}",
                    w.stamp.dot, w.stamp.role
                )));
            }
            if w.stamp.node() == self.node {
                continue;
            }
            blazedb_core::name::check_name(blazedb_core::NameKind::Collection, &w.collection)
                .map_err(|e| SyncError::Protocol(e.to_string()))?;
        }
        if items.is_empty() {
            // Only our cursor in the peer's log moves, past entries that are ours or
            // were relayed from us. Nothing new can be lost, so this commit needs no
            // fsync of its own: after a crash the cursor (with the stability derived
            // from it, in the same record) is back where the last durable commit left
            // it, and the peer resends entries we skip again.
            let mut tx = self.db.begin_apply()?;
            tx.set_durability(Durability::Eventual);
            self.note_received(&mut tx, peer, peer_role, upto, now)?;
            tx.commit()?;
            return Ok(BatchReport::default());
        }
        let (mut tx, mut meta) = self.begin()?;
        let mut states = States::default();
        self.absorb_in(&mut tx, &mut meta, &mut states)?;
        let mut report = BatchReport::default();
        for item in items {
            let w = match item {
                Item::Write(w) => w,
                Item::State(d) => {
                    if self.join_doc(&mut tx, &mut meta, &mut states, d, now, &mut report)? {
                        self.append_log(&mut tx, &mut meta, Some(peer), item.clone())?;
                    }
                    continue;
                }
            };
            if w.stamp.node() == self.node {
                // Our own write coming back: we have it (a restored backup could make
                // this untrue; the origin counter check below catches that).
                if w.stamp.dot.counter > meta.counter {
                    return Err(SyncError::Protocol(format!(
                        "peer holds write {} of ours, newer than our counter {}: this \
                         database was restored from an older copy",
                        w.stamp.dot, meta.counter
                    )));
                }
                report.duplicates += 1;
                continue;
            }
            let key = record::doc_key(&w.collection, w.id);
            let state = states.get(&mut tx, &key)?;
            let before = state.eval();
            let applied = state
                .apply(w)
                .map_err(|e| SyncError::Protocol(e.to_string()))?;
            if !applied.new {
                report.duplicates += 1;
                continue;
            }
            meta.clock.observe(w.stamp.hlc);
            meta.seen.raise(w.stamp.dot);
            if let Some(loss) = applied.expired {
                // From beyond our horizon: not merged, and not passed on as a write. Its
                // origin expires it too (from the horizon in the snapshot it took
                // first); we record it as well, for whoever runs this node. Our other
                // peers get the document's state instead: its version vector now covers
                // the expired write, so the origin's later writes, which depend on it,
                // still arrive causally there.
                let snap = SnapDoc {
                    collection: w.collection.clone(),
                    id: w.id,
                    state: state.clone(),
                };
                tracing::warn!(
                    collection = %w.collection,
                    id = %w.id,
                    write = %w.stamp.dot,
                    "a write from beyond the retention horizon expired"
                );
                report.conflicts +=
                    self.record_losses(&mut tx, &mut meta, &w.collection, w.id, vec![loss], now)?;
                self.append_log(&mut tx, &mut meta, Some(peer), Item::State(snap))?;
                report.expired += 1;
                continue;
            }
            if applied.defeated.iter().any(|l| l.loser == w.stamp)
                || state
                    .losses_of(w.stamp.node())
                    .iter()
                    .any(|l| l.loser == w.stamp)
            {
                report.rejected += 1;
            }
            let after = state.eval();
            let mut losses: Vec<Loss> = state.losses_of(self.node);
            losses.extend(
                applied
                    .defeated
                    .into_iter()
                    .filter(|l| l.loser.node() == self.node),
            );
            if before != after {
                write_document(&mut tx, &w.collection, w.id, after, &self.opts.local_fields)?;
            }
            report.conflicts +=
                self.record_losses(&mut tx, &mut meta, &w.collection, w.id, losses, now)?;
            self.append_log(&mut tx, &mut meta, Some(peer), Item::Write(w.clone()))?;
            report.applied += 1;
        }
        self.note_received(&mut tx, peer, peer_role, upto, now)?;
        self.finish(tx, &mut meta, states)?;
        Ok(report)
    }

    /// Records in `tx` that `peer`'s log is applied here up to `upto`.
    fn note_received(
        &self,
        tx: &mut WriteTxn<'_>,
        peer: NodeId,
        peer_role: Role,
        upto: u64,
        now: u64,
    ) -> Result<()> {
        let pkey = record::peer_key(peer);
        let mut p: PeerRecord = record::load(tx, "peer", NS_PEER, &pkey)?.unwrap_or_default();
        p.role = Some(peer_role);
        p.recv_cursor = p.recv_cursor.max(upto);
        p.settle();
        p.forgotten = false;
        p.last_seen_us = now;
        record::save(tx, "peer", NS_PEER, &pkey, &p)
    }

    /// Joins a merge state received from a peer into ours; writes the document if its
    /// visible content changed and records our losses. Returns whether our state
    /// changed (only then is it news for our own peers).
    fn join_doc(
        &self,
        tx: &mut WriteTxn<'_>,
        meta: &mut Meta,
        states: &mut States,
        d: &SnapDoc,
        now: u64,
        report: &mut BatchReport,
    ) -> Result<bool> {
        let key = record::doc_key(&d.collection, d.id);
        let state = states.get(tx, &key)?;
        let old = state.clone();
        let defeated = state.join(&d.state, self.node);
        if *state == old {
            report.duplicates += 1;
            return Ok(false);
        }
        for r in &state.recs {
            meta.clock.observe(r.stamp.hlc);
        }
        meta.seen.join(&state.vv);
        let (before, after) = (old.eval(), state.eval());
        let mut losses = state.losses_of(self.node);
        losses.extend(defeated.into_iter().filter(|l| l.loser.node() == self.node));
        if before != after {
            write_document(tx, &d.collection, d.id, after, &self.opts.local_fields)?;
        }
        report.conflicts += self.record_losses(tx, meta, &d.collection, d.id, losses, now)?;
        report.applied += 1;
        Ok(true)
    }

    /// Records losses not recorded before; returns how many were new.
    fn record_losses(
        &self,
        tx: &mut WriteTxn<'_>,
        meta: &mut Meta,
        collection: &str,
        id: DocId,
        losses: Vec<Loss>,
        now: u64,
    ) -> Result<u64> {
        let mut n = 0;
        for loss in losses {
            let key = record::encode(
                "loss key",
                &(collection, id.as_bytes(), loss.loser.dot, &loss.field),
            )?;
            if tx.aux_get(NS_LOSS_KEY, &key)?.is_some() {
                continue;
            }
            meta.conflicts_last += 1;
            let entry = ConflictEntry {
                seq: meta.conflicts_last,
                collection: collection.to_owned(),
                id,
                field: loss.field,
                loser: loss.loser,
                lost: loss.lost,
                winner: loss.winner,
                won: loss.won,
                reason: loss.reason,
                detected_us: now,
            };
            tracing::info!(
                collection,
                %id,
                field = ?entry.field,
                loser = %entry.loser.dot,
                winner = ?entry.winner.map(|w| w.dot),
                reason = %entry.reason,
                "a write lost a conflict"
            );
            tx.aux_log_put(CONFLICTS, entry.seq, &record::encode("conflict", &entry)?)?;
            tx.aux_put(NS_LOSS_KEY, &key, &entry.seq.to_be_bytes())?;
            n += 1;
        }
        Ok(n)
    }

    /// Up to `limit` entries (and about [`BATCH_BYTES_MAX`]) of this node's log after
    /// position `after`, for `peer`:
    /// entries that came from the peer, or that it made, are left out (it has them),
    /// as are collections `keep` refuses. Returns the writes and the position the
    /// read reached (a cursor past the filtered entries too).
    ///
    /// # Errors
    /// [`SyncError::LogPruned`] if entries after `after` were garbage-collected;
    /// database errors.
    pub fn read_log(
        &self,
        peer: NodeId,
        after: u64,
        limit: usize,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<(Vec<Item>, u64)> {
        let r = self.db.begin_read()?;
        let meta = record::load_meta(&mut &r)?.ok_or_else(|| SyncError::Corrupt {
            what: "meta",
            detail: "missing".into(),
        })?;
        let source = meta.bootstrapped;
        let after = if after < meta.log_floor {
            // The node we bootstrapped from has what we dropped then (its own data,
            // and our writes that expired); anyone else has to bootstrap from us.
            if source != Some(peer) {
                return Err(SyncError::LogPruned {
                    after,
                    floor: meta.log_floor,
                });
            }
            meta.log_floor
        } else {
            after
        };
        let mut upto = after;
        let mut out = Vec::new();
        let mut bytes_out = 0usize;
        for (seq, bytes) in r.aux_log_range(LOG, after, limit)? {
            upto = seq;
            let e: LogEntry = record::decode("log entry", &bytes)?;
            let theirs = match &e.item {
                Item::Write(w) => w.stamp.node() == peer,
                Item::State(_) => false,
            };
            if e.via == Some(peer) || theirs || !keep(e.item.collection()) {
                continue;
            }
            bytes_out += bytes.len();
            out.push(e.item);
            if bytes_out >= BATCH_BYTES_MAX {
                break;
            }
        }
        Ok((out, upto))
    }

    /// Collects what every known peer has (SPEC §3.3): the sync log below the lowest
    /// position every peer holds, and — with [`SyncOptions::tombstone_gc`] — the
    /// tombstones and history those writes leave in document states.
    ///
    /// A log position `p` is *stable for peer P* once P acknowledged it and this node
    /// has applied P's log up to where P's log stood at that acknowledgment: then P
    /// has every write up to `p`, and every write P made before it had them is here
    /// (`PeerRecord::settle`). The log is pruned up to the minimum over known peers.
    /// Peers silent beyond [`SyncOptions::retention_us`] are forgotten first. With no
    /// known peer nothing is pruned. Does at most a bounded chunk per call.
    ///
    /// # Errors
    /// Database errors.
    pub fn collect_garbage(&self) -> Result<GcReport> {
        let (mut tx, mut meta) = self.begin()?;
        let now = self.now_us();
        let mut report = GcReport::default();
        let mut floor: Option<u64> = None;
        for (key, bytes) in tx.aux_scan(NS_PEER)? {
            let p: PeerRecord = record::decode("peer", &bytes)?;
            let online = key
                .as_slice()
                .try_into()
                .map(|b: [u8; 8]| self.is_connected(NodeId(u64::from_be_bytes(b))))
                .unwrap_or(false);
            if p.forgotten {
                continue;
            }
            if !online && now.saturating_sub(p.last_seen_us) > self.opts.retention_us {
                let p = PeerRecord {
                    forgotten: true,
                    ..p
                };
                tx.aux_put(NS_PEER, &key, &record::encode("peer", &p)?)?;
                report.peers_forgotten += 1;
                continue;
            }
            floor = Some(floor.map_or(p.stable, |f: u64| f.min(p.stable)));
        }
        let target = floor.unwrap_or(0).min(meta.log_last);
        if target > meta.log_floor {
            let upto = target.min(meta.log_floor + GC_CHUNK);
            let mut states = States::default();
            if self.opts.tombstone_gc {
                let n = usize::try_from(upto - meta.log_floor).unwrap_or(usize::MAX);
                let mut touched = Vec::new();
                for (_, bytes) in tx.aux_log_range(LOG, meta.log_floor, n)? {
                    let e: LogEntry = record::decode("log entry", &bytes)?;
                    let (key, dots) = match &e.item {
                        Item::Write(w) => (record::doc_key(&w.collection, w.id), vec![w.stamp.dot]),
                        Item::State(d) => (
                            record::doc_key(&d.collection, d.id),
                            d.state
                                .recs
                                .iter()
                                .map(|r| r.stamp.dot)
                                .chain(
                                    d.state
                                        .defeated
                                        .iter()
                                        .flat_map(|x| [x.loser.dot, x.winner.dot]),
                                )
                                .collect(),
                        ),
                    };
                    let state = states.get(&mut tx, &key)?;
                    let mut retained = false;
                    for dot in dots {
                        retained |= state.mark_stable(dot);
                    }
                    if retained && !touched.contains(&key) {
                        touched.push(key);
                    }
                }
                for key in touched {
                    if states.get(&mut tx, &key)?.collect() {
                        report.states_collected += 1;
                    }
                }
            }
            report.log_pruned = tx.aux_log_remove(LOG, meta.log_floor + 1, upto)?;
            meta.log_floor = upto;
            self.finish(tx, &mut meta, states)?;
        } else if report.peers_forgotten > 0 {
            tx.commit()?;
        }
        Ok(report)
    }

    /// Whether garbage collection is due at `now_us` (memory only; see
    /// [`SyncNode::maybe_collect_garbage`]).
    pub(crate) fn gc_due(&self, now_us: u64) -> bool {
        let last = self.last_gc_us.load(std::sync::atomic::Ordering::Acquire);
        now_us.saturating_sub(last) >= self.opts.gc_every_us
    }

    /// Runs [`SyncNode::collect_garbage`] if the last run is older than `every_us`.
    ///
    /// # Errors
    /// As [`SyncNode::collect_garbage`].
    pub fn maybe_collect_garbage(&self, now_us: u64, every_us: u64) -> Result<Option<GcReport>> {
        use std::sync::atomic::Ordering;
        let last = self.last_gc_us.load(Ordering::Acquire);
        if now_us.saturating_sub(last) < every_us
            || self
                .last_gc_us
                .compare_exchange(last, now_us, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return Ok(None);
        }
        self.collect_garbage().map(Some)
    }

    /// Notes a session with `peer` opening (`up`) or closing.
    pub fn note_connected(&self, peer: NodeId, up: bool) {
        let mut c = self
            .connected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = c.entry(peer).or_insert(0);
        if up {
            *n += 1;
        } else {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.remove(&peer);
            }
        }
    }

    fn is_connected(&self, peer: NodeId) -> bool {
        self.connected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(&peer)
    }

    /// Up to `limit` document states after index slot `after_slot` (at most about
    /// [`SNAPSHOT_PAGE_BYTES`] of them), for a peer bootstrapping from this node, with
    /// the slot reached and whether it is the last page. Collections `keep` refuses
    /// are left out.
    ///
    /// # Errors
    /// Database errors.
    pub fn snapshot_page(
        &self,
        after_slot: u64,
        limit: usize,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<(Vec<SnapDoc>, u64, bool)> {
        let r = self.db.begin_read()?;
        let meta = self.meta_in(&r)?;
        let mut docs = Vec::new();
        let mut upto = after_slot;
        let mut bytes = 0usize;
        for (slot, key) in r.aux_log_range(INDEX, after_slot, limit.max(1))? {
            upto = slot;
            let (collection, id) = record::split_doc_key(&key)?;
            if !keep(&collection) {
                continue;
            }
            let Some(mut state) = record::load::<DocState>(&mut &r, "doc state", NS_DOC, &key)?
            else {
                continue; // collected away entirely
            };
            for rec in &mut state.recs {
                rec.stable = false;
            }
            for d in &mut state.defeated {
                d.stable = (false, false);
            }
            bytes += postcard::experimental::serialized_size(&state).unwrap_or(0);
            docs.push(SnapDoc {
                collection,
                id,
                state,
            });
            if bytes >= SNAPSHOT_PAGE_BYTES {
                break;
            }
        }
        Ok((docs, upto, upto >= meta.index_last))
    }

    fn meta_in(&self, r: &blazedb_engine::ReadTxn) -> Result<Meta> {
        record::load_meta(&mut &*r)?.ok_or_else(|| SyncError::Corrupt {
            what: "meta",
            detail: "missing".into(),
        })
    }

    /// Whether this node collects tombstones (snapshots it sends say so).
    #[must_use]
    pub fn collects_tombstones(&self) -> bool {
        self.opts.tombstone_gc
    }

    /// The snapshot progress received from `peer`: (its log position, slot reached).
    ///
    /// # Errors
    /// Database errors.
    pub fn snapshot_progress(&self, peer: NodeId) -> Result<Option<(u64, u64)>> {
        Ok(self.peer(peer)?.and_then(|p| p.snapshot))
    }

    /// Applies one snapshot page from `peer` (taken at its log position `at`, covering
    /// index slots `after_slot+1 ..= upto_slot`), in one transaction with the progress.
    /// The first page of a snapshot from a peer this node synced with before means this
    /// node was forgotten (away beyond the peer's retention): it first drops its
    /// replicated state, recording its unsent writes as expired losses, so nothing the
    /// peer has collected can come back from here. The last page sets the cursor to
    /// `at`, from where the peer's log follows.
    ///
    /// # Errors
    /// [`SyncError::Protocol`] for a page that does not continue the progress (the
    /// error says where it stands); database errors.
    #[allow(clippy::too_many_arguments)]
    pub fn apply_snapshot(
        &self,
        peer: NodeId,
        at: u64,
        after_slot: u64,
        upto_slot: u64,
        docs: &[SnapDoc],
        done: bool,
        collected: bool,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<BatchReport> {
        let now = self.now_us();
        let (mut tx, mut meta) = self.begin()?;
        let mut states = States::default();
        self.absorb_in(&mut tx, &mut meta, &mut states)?;
        let pkey = record::peer_key(peer);
        let mut p: PeerRecord = record::load(&mut tx, "peer", NS_PEER, &pkey)?.unwrap_or_default();
        let mut report = BatchReport::default();
        if after_slot == 0 && p.snapshot.map(|s| s.0) != Some(at) {
            // Synced with this peer before, and it collects tombstones: it forgot us,
            // and what we hold may be what it has collected (it would come back).
            let synced_before = p.recv_cursor > 0 && collected;
            if synced_before {
                report.conflicts += self.wipe(&mut tx, &mut meta, &mut states, &p, keep, now)?;
                p.recv_cursor = 0;
            }
            p.snapshot = Some((at, 0));
        } else if p.snapshot != Some((at, after_slot)) {
            return Err(SyncError::Protocol(format!(
                "snapshot page after slot {after_slot} of {at} does not continue {:?}",
                p.snapshot
            )));
        }
        for d in docs {
            blazedb_core::name::check_name(blazedb_core::NameKind::Collection, &d.collection)
                .map_err(|e| SyncError::Protocol(e.to_string()))?;
            if self.join_doc(&mut tx, &mut meta, &mut states, d, now, &mut report)? {
                self.append_log(&mut tx, &mut meta, Some(peer), Item::State(d.clone()))?;
            }
        }
        p.snapshot = Some((at, upto_slot));
        if done {
            p.snapshot = None;
            p.recv_cursor = p.recv_cursor.max(at);
            meta.bootstrapped = Some(peer);
        }
        p.last_seen_us = now;
        record::save(&mut tx, "peer", NS_PEER, &pkey, &p)?;
        self.finish(tx, &mut meta, states)?;
        Ok(report)
    }

    /// Drops the replicated state of the collections `keep` accepts and this node's
    /// log, recording every own write the peer had not confirmed as expired. Returns
    /// how many losses were recorded.
    fn wipe(
        &self,
        tx: &mut WriteTxn<'_>,
        meta: &mut Meta,
        states: &mut States,
        p: &PeerRecord,
        keep: &dyn Fn(&str) -> bool,
        now: u64,
    ) -> Result<u64> {
        tracing::warn!(node = %self.node, "forgotten by the peer: bootstrapping again");
        let mut n = 0;
        let mut at = p.acked.max(meta.log_floor);
        loop {
            let page = tx.aux_log_range(LOG, at, 1_000)?;
            let Some(last) = page.last().map(|e| e.0) else {
                break;
            };
            for (_, bytes) in page {
                let e: LogEntry = record::decode("log entry", &bytes)?;
                let Item::Write(w) = &e.item else { continue };
                if e.via.is_some() || !keep(&w.collection) {
                    continue;
                }
                let loss = Loss {
                    loser: w.stamp,
                    field: None,
                    lost: match &w.op {
                        Op::Delete => Held::Deleted,
                        Op::Put { .. } | Op::Patch { .. } => Held::Updated,
                    },
                    winner: None,
                    won: None,
                    reason: LossReason::RetentionExpired,
                };
                n += self.record_losses(tx, meta, &w.collection, w.id, vec![loss], now)?;
            }
            at = last;
        }
        if meta.log_last > meta.log_floor {
            let mut from = meta.log_floor + 1;
            while from <= meta.log_last {
                let to = (from + GC_CHUNK - 1).min(meta.log_last);
                tx.aux_log_remove(LOG, from, to)?;
                from = to + 1;
            }
            meta.log_floor = meta.log_last;
        }
        let mut slot = 0;
        loop {
            let page = tx.aux_log_range(INDEX, slot, 1_000)?;
            let Some(last) = page.last().map(|e| e.0) else {
                break;
            };
            for (s, key) in page {
                let (collection, id) = record::split_doc_key(&key)?;
                if !keep(&collection) {
                    continue;
                }
                if tx.get(&collection, id)?.is_some() {
                    tx.delete(&collection, id)?;
                }
                tx.aux_remove(NS_DOC, &key)?;
                tx.aux_log_remove(INDEX, s, s)?;
                states.map.remove(&key);
            }
            slot = last;
        }
        Ok(n)
    }

    /// The peer this node last bootstrapped from by snapshot, if any.
    ///
    /// # Errors
    /// Database errors.
    pub fn bootstrapped_from(&self) -> Result<Option<NodeId>> {
        let r = self.db.begin_read()?;
        Ok(self.meta_in(&r)?.bootstrapped)
    }

    /// The oldest log position still kept, minus one (peers behind it bootstrap).
    ///
    /// # Errors
    /// Database errors.
    pub fn log_floor(&self) -> Result<u64> {
        let r = self.db.begin_read()?;
        Ok(record::load_meta(&mut &r)?.map_or(0, |m| m.log_floor))
    }

    /// Every write the log still keeps, in order (introspection and tests).
    ///
    /// # Errors
    /// Database errors.
    pub fn log_writes(&self) -> Result<Vec<LogEntry>> {
        let r = self.db.begin_read()?;
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            let page = r.aux_log_range(LOG, at, 1_000)?;
            let Some(last) = page.last().map(|e| e.0) else {
                break;
            };
            for (_, bytes) in page {
                out.push(record::decode("log entry", &bytes)?);
            }
            at = last;
        }
        Ok(out)
    }

    /// The newest position of this node's log.
    ///
    /// # Errors
    /// Database errors.
    pub fn log_last(&self) -> Result<u64> {
        let r = self.db.begin_read()?;
        Ok(record::load_meta(&mut &r)?.map_or(0, |m| m.log_last))
    }

    /// How many local writes are committed but not yet taken over by sync.
    ///
    /// # Errors
    /// Database errors.
    pub fn unabsorbed(&self) -> Result<u64> {
        Ok(self
            .db
            .begin_read()?
            .last_seq()?
            .saturating_sub(self.absorbed()?))
    }

    /// Whether local writes are waiting to be absorbed.
    ///
    /// # Errors
    /// Database errors.
    pub fn has_unabsorbed(&self) -> Result<bool> {
        Ok(self.db.begin_read()?.last_seq()? > self.absorbed()?)
    }

    /// The peer last reached through the relay described as `target`: a dialer that
    /// restarts names it in its hello, so the peer resumes from our cursor instead of
    /// sending its log (or a snapshot) from the start.
    ///
    /// # Errors
    /// Database errors.
    pub fn peer_at(&self, target: &str) -> Result<Option<NodeId>> {
        let r = self.db.begin_read()?;
        Ok(r.aux_get(record::NS_TARGET, target.as_bytes())?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(|b| NodeId(u64::from_be_bytes(b))))
    }

    /// Records that `target` reached `peer` (see [`SyncNode::peer_at`]).
    ///
    /// # Errors
    /// Database errors.
    pub fn remember_peer_at(&self, target: &str, peer: NodeId) -> Result<()> {
        if self.peer_at(target)? == Some(peer) {
            return Ok(());
        }
        let mut tx = self.db.begin_apply()?;
        tx.aux_put(record::NS_TARGET, target.as_bytes(), &peer.0.to_be_bytes())?;
        tx.commit()?;
        Ok(())
    }

    /// The peer's log position applied here (where to resume receiving).
    ///
    /// # Errors
    /// Database errors.
    pub fn recv_cursor(&self, peer: NodeId) -> Result<u64> {
        Ok(self.peer(peer)?.map_or(0, |p| p.recv_cursor))
    }

    fn peer(&self, peer: NodeId) -> Result<Option<PeerRecord>> {
        let r = self.db.begin_read()?;
        record::load(&mut &r, "peer", NS_PEER, &record::peer_key(peer))
    }

    /// Records that `peer` has applied this node's log up to `upto`, when its own log
    /// stood at `their_last`.
    ///
    /// # Errors
    /// Database errors.
    pub fn note_acked(&self, peer: NodeId, upto: u64, their_last: u64) -> Result<()> {
        if self
            .peer(peer)?
            .is_some_and(|p| p.acked >= upto && p.acks.last().is_some_and(|a| a.0 >= upto))
        {
            return Ok(());
        }
        let mut tx = self.db.begin_apply()?;
        // Losing this record in a crash only delays garbage collection: the next hello
        // re-establishes the peer's position.
        tx.set_durability(Durability::Eventual);
        let pkey = record::peer_key(peer);
        let mut p: PeerRecord = record::load(&mut tx, "peer", NS_PEER, &pkey)?.unwrap_or_default();
        p.note_ack(upto, their_last);
        p.forgotten = false;
        p.last_seen_us = self.now_us();
        record::save(&mut tx, "peer", NS_PEER, &pkey, &p)?;
        tx.commit()?;
        Ok(())
    }

    /// The confirmed position of `peer` in this node's log.
    ///
    /// # Errors
    /// Database errors.
    pub fn acked_by(&self, peer: NodeId) -> Result<u64> {
        Ok(self.peer(peer)?.map_or(0, |p| p.acked))
    }

    /// How many of this node's own writes after log position `after` exist (writes a
    /// peer that confirmed `after` has not confirmed yet), counting at most `max`.
    ///
    /// # Errors
    /// Database errors.
    pub fn own_writes_after(&self, after: u64, max: usize) -> Result<u64> {
        let r = self.db.begin_read()?;
        let mut n = 0;
        let mut at = after;
        let mut scanned = 0;
        loop {
            let page = r.aux_log_range(LOG, at, 1_000)?;
            let Some(last) = page.last().map(|p| p.0) else {
                break;
            };
            for (_, bytes) in &page {
                let e: LogEntry = record::decode("log entry", bytes)?;
                if e.via.is_none() {
                    n += 1;
                }
            }
            scanned += page.len();
            at = last;
            if scanned >= max {
                break;
            }
        }
        Ok(n)
    }

    /// Up to `limit` entries of the conflict log after position `after`.
    ///
    /// # Errors
    /// Database errors.
    pub fn conflicts(&self, after: u64, limit: usize) -> Result<Vec<ConflictEntry>> {
        let r = self.db.begin_read()?;
        r.aux_log_range(CONFLICTS, after, limit)?
            .into_iter()
            .map(|(_, b)| record::decode("conflict", &b))
            .collect()
    }

    /// The merge state of one document (for `get --meta` and tests).
    ///
    /// # Errors
    /// Database errors.
    pub fn doc_state(&self, collection: &str, id: DocId) -> Result<DocState> {
        let r = self.db.begin_read()?;
        Ok(record::load(
            &mut &r,
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

/// Makes the engine's document equal the merged one (plus its local-only fields).
///
/// It never fails for the document's size or this database's indexes, which would
/// stop the peer's log here for good: the merge keeps the merged document within the
/// engine's limit; local-only fields that no longer fit beside it are dropped (in name
/// order, each that fits is kept; a warning names the others); and the document is
/// stored even where one of this database's own indexes would refuse a local write
/// ([`WriteTxn::put_merged`]: a unique index then holds two documents with one value,
/// a value too long for a key is indexed by its first bytes; a warning says which).
fn write_document(
    tx: &mut WriteTxn<'_>,
    collection: &str,
    id: DocId,
    doc: Option<blazedb_core::Fields>,
    local: &std::collections::BTreeSet<String>,
) -> Result<()> {
    match doc {
        Some(mut fields) => {
            if !local.is_empty()
                && let Some(old) = tx.get(collection, id)?
            {
                keep_local_fields(&mut fields, old.fields, local, collection, id);
            }
            for note in tx.put_merged(collection, Document { id, fields })? {
                tracing::warn!(
                    collection,
                    %id,
                    "a merged document was stored although a local write would be refused: {note}"
                );
            }
        }
        None => {
            if tx.get(collection, id)?.is_some() {
                tx.delete(collection, id)?;
            }
        }
    }
    Ok(())
}

/// Adds to the merged `fields` the local-only fields of the document as stored (`old`),
/// in name order, each as long as the document still fits the engine's limit.
fn keep_local_fields(
    fields: &mut blazedb_core::Fields,
    old: blazedb_core::Fields,
    local: &std::collections::BTreeSet<String>,
    collection: &str,
    id: DocId,
) {
    let mut count = fields.len();
    let mut bytes: usize = fields.iter().map(|(k, v)| field_bytes(k, v)).sum();
    for (name, value) in old.into_iter().filter(|(k, _)| local.contains(k)) {
        let add = field_bytes(&name, &value);
        let (c, b) = match fields.get(&name) {
            // A remote write used a local-only name: the local value replaces it.
            Some(remote) => (count, bytes - field_bytes(&name, remote) + add),
            None => (count + 1, bytes + add),
        };
        if document_bytes_of(c, b) <= DOCUMENT_BYTES_MAX {
            (count, bytes) = (c, b);
            fields.insert(name, value);
        } else {
            tracing::warn!(
                collection,
                %id,
                field = %name,
                "a local-only field no longer fits beside the merged document: dropped"
            );
        }
    }
}
