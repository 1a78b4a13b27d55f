//! Snapshot: bootstrapping a peer from this node's document states (sending), and
//! from a peer's (receiving), page by page over the document index.
//!
//! Invariants:
//! - A page is applied only if it continues the progress recorded for its peer, in
//!   one transaction with that progress; a page out of order changes nothing.
//! - Sent states carry no stability marks: stability is a fact about the sender's
//!   peers, not the receiver's.
//! - The first page from a peer that collects tombstones and that this node synced
//!   with before means this node was forgotten: its replicated state is dropped first
//!   (its unsent writes recorded as expired), so nothing the peer collected returns.
//! - The last page moves the peer's cursor to the snapshot's log position.

use super::BatchReport;
use super::index;
use super::{GC_CHUNK, SNAPSHOT_PAGE_BYTES, SnapshotPage, States, SyncNode};
use crate::backend::Tx;
use crate::clock::NodeId;
use crate::error::{Result, SyncError};
use crate::merge::{DocState, Loss};
use crate::position::LogPos;
use crate::proto::NodesNamed;
use crate::record::{
    self, Item, LOG, LogEntry, Meta, NS_DOC, NS_PEER, PeerRecord, SnapDoc, SnapshotProgress,
};
use crate::write::{Held, LossReason, Op};

impl SyncNode {
    /// How many document slots each record of the document index holds, in slot
    /// order (introspection and tests; runs are bounded so a snapshot page opens little).
    ///
    /// # Errors
    /// Database errors.
    pub fn index_run_lengths(&self) -> Result<Vec<usize>> {
        let r = self.db.begin_read()?;
        index::run_lengths(&mut &*r)
    }

    /// Up to `limit` document states after index slot `after_slot` (at most about
    /// [`SNAPSHOT_PAGE_BYTES`] of them, naming no more writer nodes than a receiver
    /// takes), for a peer bootstrapping from this node, with the slot reached and
    /// whether it is the last page. Collections `keep` refuses are left out.
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
        let meta = self.meta_in(&*r)?;
        let mut docs = Vec::new();
        let mut upto = after_slot;
        let mut bytes = 0usize;
        let mut named = NodesNamed::default();
        let slots = index::index_range(&mut &*r, after_slot, limit)?;
        // Fewer slots than asked for: the index holds none after the last of them, so a
        // page that takes them all reaches the end even when the highest slots ever
        // assigned were removed since (`wipe`) and `index_last` is above every slot left.
        let exhausted = slots.len() < limit.max(1);
        let mut took_all = true;
        for (slot, key) in slots {
            let (collection, id) = record::split_doc_key(&key)?;
            if !keep(&collection) {
                upto = slot;
                continue;
            }
            let Some(mut state) = record::load::<DocState>(&mut &*r, "doc state", NS_DOC, &key)?
            else {
                upto = slot;
                continue; // collected away entirely
            };
            if !named.admit(record::state_nodes(&state)) {
                took_all = false;
                break; // the next page starts with it
            }
            upto = slot;
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
                took_all = false;
                break;
            }
        }
        if exhausted && took_all {
            upto = upto.max(meta.index_last);
        }
        Ok((docs, upto, upto >= meta.index_last))
    }

    /// Whether this node collects tombstones (snapshots it sends say so).
    #[must_use]
    pub fn collects_tombstones(&self) -> bool {
        self.opts.tombstone_gc
    }

    /// The snapshot progress received from `peer`, if one is under way.
    ///
    /// # Errors
    /// Database errors.
    pub fn snapshot_progress(&self, peer: NodeId) -> Result<Option<SnapshotProgress>> {
        Ok(self.peer(peer)?.and_then(|p| p.snapshot))
    }

    /// Applies one snapshot page from `peer` (see [`SnapshotPage`]), in one transaction
    /// with the progress. The first page of a snapshot from a peer this node synced
    /// with before means this node was forgotten (away beyond the peer's retention): it
    /// first drops its replicated state, recording its unsent writes as expired losses,
    /// so nothing the peer has collected can come back from here. The last page sets
    /// the cursor to the snapshot's position, from where the peer's log follows.
    ///
    /// # Errors
    /// [`SyncError::Protocol`] for a page that does not continue the progress (the
    /// error says where it stands); [`SyncError::BadName`] for a collection name this
    /// database cannot hold; database errors.
    pub fn apply_snapshot(
        &self,
        peer: NodeId,
        page: SnapshotPage<'_>,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<BatchReport> {
        let SnapshotPage {
            at,
            after_slot,
            upto_slot,
            docs,
            done,
            collected,
        } = page;
        let now = self.now_us();
        let (mut tx, mut meta) = self.begin()?;
        let mut states = States::default();
        self.absorb_in(&mut *tx, &mut meta, &mut states)?;
        let pkey = record::peer_key(peer);
        let mut p: PeerRecord = record::load(&mut *tx, "peer", NS_PEER, &pkey)?.unwrap_or_default();
        let mut report = BatchReport::default();
        if after_slot == 0 && p.snapshot.map(|s| s.at) != Some(at) {
            // Synced with this peer before, and it collects tombstones: it forgot us,
            // and what we hold may be what it has collected (it would come back).
            let synced_before = p.recv_cursor > LogPos::ZERO && collected;
            if synced_before {
                report.conflicts += self.wipe(&mut *tx, &mut meta, &mut states, &p, keep, now)?;
                p.recv_cursor = LogPos::ZERO;
            }
            p.snapshot = Some(SnapshotProgress { at, slot: 0 });
        } else if p.snapshot
            != Some(SnapshotProgress {
                at,
                slot: after_slot,
            })
        {
            return Err(SyncError::Protocol(format!(
                "snapshot page after slot {after_slot} of {at} does not continue {:?}",
                p.snapshot.map(|s| (s.at, s.slot))
            )));
        }
        for d in docs {
            self.check_state(d, now)?;
            if self.join_doc(&mut *tx, &mut meta, &mut states, d, now, &mut report)? {
                self.append_log(&mut *tx, &mut meta, Some(peer), Item::State(d.clone()))?;
            }
        }
        p.snapshot = Some(SnapshotProgress {
            at,
            slot: upto_slot,
        });
        if done {
            p.snapshot = None;
            p.recv_cursor = p.recv_cursor.max(at);
            meta.bootstrapped = Some(peer);
        }
        p.last_seen_us = now;
        record::save(&mut *tx, "peer", NS_PEER, &pkey, &p)?;
        self.finish(tx, &mut meta, states)?;
        Ok(report)
    }

    /// Drops the replicated state of the collections `keep` accepts and this node's
    /// log, recording every own write the peer had not confirmed as expired. Returns
    /// how many losses were recorded.
    fn wipe(
        &self,
        tx: &mut Tx<'_>,
        meta: &mut Meta,
        states: &mut States,
        p: &PeerRecord,
        keep: &dyn Fn(&str) -> bool,
        now: u64,
    ) -> Result<u64> {
        tracing::warn!(node = %self.node, "forgotten by the peer: bootstrapping again");
        let mut n = 0;
        let mut at = p.acked.max(meta.log_floor).get();
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
            let mut from = meta.log_floor.next();
            while from <= meta.log_last {
                let to = from.advance(GC_CHUNK - 1).min(meta.log_last);
                tx.aux_log_remove(LOG, from.get(), to.get())?;
                from = to.next();
            }
            meta.log_floor = meta.log_last;
        }
        let mut slot = 0;
        loop {
            let page = index::index_range(tx, slot, 1_000)?;
            let Some(last) = page.last().map(|e| e.0) else {
                break;
            };
            let mut dropped = Vec::new();
            for (s, key) in page {
                let (collection, id) = record::split_doc_key(&key)?;
                if !keep(&collection) {
                    continue;
                }
                if tx.get(&collection, id)?.is_some() {
                    tx.delete(&collection, id)?;
                }
                tx.aux_remove(NS_DOC, &key)?;
                dropped.push(s);
                states.map.remove(&key);
            }
            index::remove_slots(tx, &dropped)?;
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
        Ok(self.meta_in(&*r)?.bootstrapped)
    }
}
