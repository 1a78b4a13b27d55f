//! Log: the sync log peers read, in positions `1..=Meta::log_last`.
//!
//! Invariants:
//! - Positions only grow; an entry never changes once appended. Entries at or below
//!   `Meta::log_floor` are gone (garbage-collected, see `gc.rs`): a peer behind the
//!   floor bootstraps from a snapshot, except the peer this node bootstrapped from.
//! - An entry records the peer it came from (`via`): it is never sent back there, nor
//!   is a write sent to the node that made it.

use super::{BATCH_BYTES_MAX, SyncNode};
use crate::backend::Tx;
use crate::clock::NodeId;
use crate::error::{Result, SyncError};
use crate::position::LogPos;
use crate::proto::NodesNamed;
use crate::record::{self, Item, LOG, LogEntry, Meta};

impl SyncNode {
    pub(super) fn append_log(
        &self,
        tx: &mut Tx<'_>,
        meta: &mut Meta,
        via: Option<NodeId>,
        item: Item,
    ) -> Result<()> {
        meta.log_last = meta.log_last.next();
        // Sessions wake on this commit to send the entry (`conn.rs`, `CommitSignal`).
        tx.signal_listeners();
        let entry = LogEntry { via, item };
        tx.aux_log_put(
            LOG,
            meta.log_last.get(),
            &record::encode("log entry", &entry)?,
        )?;
        Ok(())
    }

    /// Up to `limit` entries (and about [`BATCH_BYTES_MAX`]) of this node's log after
    /// position `after`, for `peer`:
    /// entries that came from the peer, or that it made, are left out (it has them),
    /// as are collections `keep` refuses. A read stops before an entry that would make
    /// the batch name more writer nodes than a receiver takes (`NODES_PER_MESSAGE_MAX`).
    /// Returns the writes and the position the read reached (a cursor past the
    /// filtered entries too).
    ///
    /// # Errors
    /// [`SyncError::LogPruned`] if entries after `after` were garbage-collected;
    /// database errors.
    pub fn read_log(
        &self,
        peer: NodeId,
        after: LogPos,
        limit: usize,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<(Vec<Item>, LogPos)> {
        let r = self.db.begin_read()?;
        let meta = record::load_meta(&mut &*r)?.ok_or_else(|| SyncError::Corrupt {
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
        let mut named = NodesNamed::default();
        for (seq, bytes) in r.aux_log_range(LOG, after.get(), limit)? {
            let e: LogEntry = record::decode("log entry", &bytes)?;
            let theirs = match &e.item {
                Item::Write(w) => w.stamp.node() == peer,
                Item::State(_) => false,
            };
            if e.via == Some(peer) || theirs || !keep(e.item.collection()) {
                upto = LogPos::new(seq);
                continue;
            }
            let admitted = match &e.item {
                Item::Write(w) => named.admit([w.stamp.node()]),
                Item::State(d) => named.admit(record::state_nodes(&d.state)),
            };
            if !admitted {
                break; // the next batch starts with it
            }
            upto = LogPos::new(seq);
            bytes_out += bytes.len();
            out.push(e.item);
            if bytes_out >= BATCH_BYTES_MAX {
                break;
            }
        }
        Ok((out, upto))
    }

    /// The oldest log position still kept, minus one (peers behind it bootstrap).
    ///
    /// # Errors
    /// Database errors.
    pub fn log_floor(&self) -> Result<LogPos> {
        let r = self.db.begin_read()?;
        Ok(record::load_meta(&mut &*r)?.map_or(LogPos::ZERO, |m| m.log_floor))
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
    pub fn log_last(&self) -> Result<LogPos> {
        let r = self.db.begin_read()?;
        Ok(record::load_meta(&mut &*r)?.map_or(LogPos::ZERO, |m| m.log_last))
    }

    /// How many of this node's own writes after log position `after` exist (writes a
    /// peer that confirmed `after` has not confirmed yet), counting at most `max`.
    ///
    /// # Errors
    /// Database errors.
    pub fn own_writes_after(&self, after: LogPos, max: usize) -> Result<u64> {
        let r = self.db.begin_read()?;
        let mut n = 0;
        let mut at = after.get();
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
}
