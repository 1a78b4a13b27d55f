//! Garbage collection: the sync log below what every known peer has, and (with
//! `SyncConfig::tombstone_gc`) the tombstones and history those writes leave.
//!
//! Invariants:
//! - Nothing a known peer may still need is collected: the floor is the minimum over
//!   known peers of their stable position (`PeerRecord::settle`); with no known peer
//!   nothing is pruned.
//! - A peer with a session open is never forgotten for silence.
//! - One call does a bounded chunk, in one transaction.

use super::{GC_CHUNK, GcReport, States, SyncNode};
use crate::clock::NodeId;
use crate::error::Result;
use crate::position::LogPos;
use crate::record::{self, Item, LOG, LogEntry, NS_PEER, PeerRecord};

impl SyncNode {
    /// Collects what every known peer has (docs/semantics.md, "Garbage collection"): the sync log below the lowest
    /// position every peer holds, and — with [`SyncConfig::tombstone_gc`](crate::SyncConfig::tombstone_gc) — the
    /// tombstones and history those writes leave in document states.
    ///
    /// A log position `p` is *stable for peer P* once P acknowledged it and this node
    /// has applied P's log up to where P's log stood at that acknowledgment: then P
    /// has every write up to `p`, and every write P made before it had them is here
    /// (`PeerRecord::settle`). The log is pruned up to the minimum over known peers.
    /// Peers silent beyond [`SyncConfig::retention_us`](crate::SyncConfig::retention_us) are forgotten first. With no
    /// known peer nothing is pruned. Does at most a bounded chunk per call.
    ///
    /// # Errors
    /// Database errors.
    pub fn collect_garbage(&self) -> Result<GcReport> {
        let (mut tx, mut meta) = self.begin()?;
        let now = self.now_us();
        let mut report = GcReport::default();
        let mut floor: Option<LogPos> = None;
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
            floor = Some(floor.map_or(p.stable, |f: LogPos| f.min(p.stable)));
        }
        let target = floor.unwrap_or(LogPos::ZERO).min(meta.log_last);
        if target > meta.log_floor {
            let upto = target.min(meta.log_floor.advance(GC_CHUNK));
            let mut states = States::default();
            if self.opts.tombstone_gc {
                let n = usize::try_from(upto.entries_since(meta.log_floor)).unwrap_or(usize::MAX);
                let mut touched = Vec::new();
                for (_, bytes) in tx.aux_log_range(LOG, meta.log_floor.get(), n)? {
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
                    let state = states.get(&mut *tx, &key)?;
                    let mut retained = false;
                    for dot in dots {
                        retained |= state.mark_stable(dot);
                    }
                    if retained && !touched.contains(&key) {
                        touched.push(key);
                    }
                }
                for key in touched {
                    if states.get(&mut *tx, &key)?.collect() {
                        report.states_collected += 1;
                    }
                }
            }
            report.log_pruned = tx.aux_log_remove(LOG, meta.log_floor.next().get(), upto.get())?;
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
        now_us.saturating_sub(last) >= self.opts.advanced.gc_every_us
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
}
