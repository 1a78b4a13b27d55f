//! Apply: remote batches merged into this node, with the peer's cursor.
//!
//! Invariants:
//! - A batch applies in one transaction with the peer's cursor; on any error nothing
//!   of it was applied.
//! - Remote writes change documents only through a non-capturing transaction, so they
//!   are never re-captured as local writes (no echo); the engine's document always
//!   equals the merge state's visible document ([`DocState::eval`](crate::merge::DocState::eval)).
//! - A write enters the sync log once, when first applied here; re-deliveries change
//!   nothing and are not logged, so nothing ping-pongs.
//! - Applying a valid batch never fails for good: not for a document's size nor for
//!   this database's own indexes (`write_document`). Only transient causes (clock
//!   skew, I/O) make a peer send a batch again.

use blazedb_core::limits::DOCUMENT_BYTES_MAX;
use blazedb_core::{DocId, Document};
use blazedb_engine::Durability;
use blazedb_engine::internal::serde_fields::{document_bytes_of, field_bytes};

use super::combine::PartRef;
use super::{Arrival, BatchReport, States, SyncNode};
use crate::backend::Tx;
use crate::clock::{Clock, NodeId, Role};
use crate::error::{Result, SyncError};
use crate::merge::Loss;
use crate::position::LogPos;
use crate::record::{self, Item, Meta, NS_DOC, NS_PEER, PeerRecord, SnapDoc};
use crate::write::Write;

impl SyncNode {
    /// Applies items received from `peer` (its log up to position `upto`), in order,
    /// in one durable transaction that also advances the peer's cursor: writes are
    /// merged, merge states (from a snapshot the peer took) are joined.
    ///
    /// # Errors
    /// [`SyncError::ClockSkew`] if a write's stamp is too far ahead of the local clock;
    /// [`SyncError::Protocol`] for a write the peer may not send (a forged role),
    /// [`SyncError::BadName`] for a collection name this database cannot hold;
    /// [`SyncError::Merge`] for a non-causal delivery; database errors. On any error
    /// nothing was applied.
    pub fn apply_batch(
        &self,
        peer: NodeId,
        peer_role: Role,
        items: &[Item],
        upto: LogPos,
    ) -> Result<BatchReport> {
        let now = self.now_us();
        self.check_batch(peer, peer_role, items, now)?;
        if items.is_empty() {
            // Only our cursor in the peer's log moves, past entries that are ours or
            // were relayed from us. Nothing new can be lost, so this commit needs no
            // fsync of its own: after a crash the cursor (with the stability derived
            // from it, in the same record) is back where the last durable commit left
            // it, and the peer resends entries we skip again.
            let mut tx = self.db.begin_apply()?;
            tx.set_durability(Durability::Eventual);
            self.note_received(&mut *tx, peer, peer_role, upto, now)?;
            tx.commit()?;
            return Ok(BatchReport::default());
        }
        self.apply_part(peer, peer_role, &[(items, upto)], now)
    }

    /// Applies consecutive batches received from `peer` (each `(items, upto)`, in the
    /// order of the peer's log) in one durable transaction, as [`SyncNode::apply_batch`]
    /// applies one: the per-transaction work (the commit and its sync, the metadata, the
    /// cursor, each touched document's merge state) is paid once for all of them.
    ///
    /// # Errors
    /// As [`SyncNode::apply_batch`], for any of the batches; on any error nothing of
    /// any of them was applied.
    pub fn apply_batches(
        &self,
        peer: NodeId,
        peer_role: Role,
        batches: &[(&[Item], LogPos)],
    ) -> Result<BatchReport> {
        let now = self.now_us();
        self.check_part(peer, peer_role, batches, now)?;
        self.apply_part(peer, peer_role, batches, now)
    }

    /// [`SyncNode::apply_parts`] of one peer's checked batches.
    fn apply_part(
        &self,
        peer: NodeId,
        role: Role,
        batches: &[(&[Item], LogPos)],
        now: u64,
    ) -> Result<BatchReport> {
        let part = PartRef {
            peer,
            role,
            batches,
        };
        Ok(self.apply_parts(&[part], now)?.pop().unwrap_or_default())
    }

    /// [`SyncNode::check_batch`] for each of one peer's batches.
    pub(super) fn check_part(
        &self,
        peer: NodeId,
        peer_role: Role,
        batches: &[(&[Item], LogPos)],
        now: u64,
    ) -> Result<()> {
        for (items, _) in batches {
            self.check_batch(peer, peer_role, items, now)?;
        }
        Ok(())
    }

    /// Applies `parts` (each one peer's consecutive batches, already checked, no two of
    /// one peer) in one durable transaction, in order: the same as one transaction per
    /// part, one after the other. Returns a report per part; on any error nothing of
    /// any part was applied.
    pub(super) fn apply_parts(&self, parts: &[PartRef<'_>], now: u64) -> Result<Vec<BatchReport>> {
        let (mut tx, mut meta) = self.begin()?;
        let mut states = States::default();
        self.absorb_in(&mut *tx, &mut meta, &mut states)?;
        // Every merge state the writes touch, and the peers' records (their cursors
        // move), asked for at once (a store with a round trip per read fetches them
        // together).
        let wanted: Vec<(&str, Vec<u8>)> = parts
            .iter()
            .flat_map(|p| p.batches.iter())
            .flat_map(|(items, _)| items.iter())
            .filter_map(|item| match item {
                Item::Write(w) => Some((NS_DOC, record::doc_key(&w.collection, w.id))),
                Item::State(_) => None,
            })
            .chain(
                parts
                    .iter()
                    .map(|p| (NS_PEER, record::peer_key(p.peer).to_vec())),
            )
            .collect();
        tx.prefetch(&wanted)?;
        let mut reports = Vec::with_capacity(parts.len());
        for part in parts {
            let mut report = BatchReport::default();
            let from = Arrival {
                peer: part.peer,
                now,
            };
            let mut upto = LogPos::ZERO;
            for (items, batch_upto) in part.batches {
                for item in *items {
                    match item {
                        Item::Write(w) => {
                            self.apply_write(
                                &mut *tx,
                                &mut meta,
                                &mut states,
                                from,
                                w,
                                &mut report,
                            )?;
                        }
                        Item::State(d) => {
                            if self.join_doc(
                                &mut *tx,
                                &mut meta,
                                &mut states,
                                d,
                                now,
                                &mut report,
                            )? {
                                self.append_log(
                                    &mut *tx,
                                    &mut meta,
                                    Some(part.peer),
                                    item.clone(),
                                )?;
                            }
                        }
                    }
                }
                upto = upto.max(*batch_upto);
            }
            self.note_received(&mut *tx, part.peer, part.role, upto, now)?;
            reports.push(report);
        }
        self.finish(tx, &mut meta, states)?;
        Ok(reports)
    }

    /// Refuses a batch before anything of it is applied: a collection name the engine
    /// would refuse, a stamp too far ahead of our clock (a write's, or any a merge
    /// state carries), a peer's own write under a role it does not hold.
    fn check_batch(&self, peer: NodeId, peer_role: Role, items: &[Item], now: u64) -> Result<()> {
        for item in items {
            let w = match item {
                Item::Write(w) => w,
                Item::State(d) => {
                    self.check_state(d, now)?;
                    continue;
                }
            };
            Clock::check_drift(w.stamp.hlc, now, self.opts.advanced.drift_max_us)?;
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
                .map_err(SyncError::BadName)?;
        }
        Ok(())
    }

    /// Refuses a merge state (in a batch or a snapshot page) whose collection name the
    /// engine would refuse, or that carries a stamp too far ahead of our clock
    /// (docs/semantics.md, "Clock hygiene": a state must not bring in what the same
    /// write, sent as a write, could not).
    pub(super) fn check_state(&self, d: &SnapDoc, now: u64) -> Result<()> {
        blazedb_core::name::check_name(blazedb_core::NameKind::Collection, &d.collection)
            .map_err(SyncError::BadName)?;
        for stamp in record::state_stamps(&d.state) {
            Clock::check_drift(stamp.hlc, now, self.opts.advanced.drift_max_us)?;
        }
        Ok(())
    }

    /// Merges one write of a batch from `from.peer`: documents, losses and the log
    /// follow; a duplicate only counts.
    fn apply_write(
        &self,
        tx: &mut Tx<'_>,
        meta: &mut Meta,
        states: &mut States,
        from: Arrival,
        w: &Write,
        report: &mut BatchReport,
    ) -> Result<()> {
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
            return Ok(());
        }
        let key = record::doc_key(&w.collection, w.id);
        let state = states.get(tx, &key)?;
        let before = state.eval();
        let applied = state.apply(w)?;
        if !applied.new {
            report.duplicates += 1;
            return Ok(());
        }
        meta.clock.observe(w.stamp.hlc);
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
                self.record_losses(tx, meta, &w.collection, w.id, vec![loss], from.now)?;
            self.append_log(tx, meta, Some(from.peer), Item::State(snap))?;
            report.expired += 1;
            return Ok(());
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
            write_document(tx, &w.collection, w.id, after, &self.opts.local_fields)?;
        }
        report.conflicts += self.record_losses(tx, meta, &w.collection, w.id, losses, from.now)?;
        self.append_log(tx, meta, Some(from.peer), Item::Write(w.clone()))?;
        report.applied += 1;
        Ok(())
    }

    /// Records in `tx` that `peer`'s log is applied here up to `upto`.
    pub(super) fn note_received(
        &self,
        tx: &mut Tx<'_>,
        peer: NodeId,
        peer_role: Role,
        upto: LogPos,
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
    pub(super) fn join_doc(
        &self,
        tx: &mut Tx<'_>,
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
    tx: &mut Tx<'_>,
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
