//! What the session sends next: batches of our log within the window, snapshot pages
//! when the peer needs more than the log holds, our `Hello` until the peer's arrives,
//! and resends of what went unacknowledged for `resend_after_us`.

use std::collections::BTreeSet;

use crate::clock::NodeId;
use crate::error::SyncError;
use crate::position::LogPos;
use crate::proto::{BATCH_WRITES_MAX, Msg};
use crate::record::Item;

use super::{Closed, PageInFlight, Session, SnapSend, db_closed};

impl Session {
    /// Sends what is new (local writes are taken over first) and resends what went
    /// unacknowledged too long.
    ///
    /// # Errors
    /// [`Closed`] on a database failure.
    pub fn poll(&mut self, now_us: u64) -> Result<Vec<Msg>, Closed> {
        let out = self.poll_inner(now_us)?;
        for m in &out {
            self.stats.bytes_sent += m.encoded_len() as u64;
        }
        Ok(out)
    }

    /// The collections this session carries: the configuration's, within the peer's grant.
    pub(super) fn keep(&self) -> impl Fn(&str) -> bool + use<> {
        let set = self.cfg.collections.clone();
        let grant = self.cfg.grant.clone();
        move |c: &str| set.as_ref().is_none_or(|s| s.contains(c)) && grant.covers(c)
    }

    /// The principals of the writers of `items` and of the peer itself, for the
    /// message that carries them (see `principal.rs`).
    fn users_for<'a>(
        &self,
        peer: NodeId,
        items: impl Iterator<Item = &'a crate::merge::DocState>,
        writes: impl Iterator<Item = NodeId>,
    ) -> Result<Vec<(NodeId, String)>, SyncError> {
        let mut nodes: BTreeSet<NodeId> = writes.collect();
        nodes.insert(peer);
        for state in items {
            nodes.extend(crate::record::state_nodes(state));
        }
        self.node.principals_of(&nodes)
    }

    /// Sends the next snapshot page when none is in flight (or the one in flight has
    /// gone unanswered too long).
    fn send_snapshot(&mut self, now_us: u64) -> Result<Vec<Msg>, SyncError> {
        let keep = self.keep();
        let limit = self.cfg.batch_max.clamp(1, BATCH_WRITES_MAX);
        let resend_after = self.cfg.resend_after_us;
        let Some(snap) = &mut self.snap_send else {
            return Ok(Vec::new());
        };
        if let Some(page) = snap.in_flight {
            if now_us.saturating_sub(page.sent_us) <= resend_after {
                return Ok(Vec::new());
            }
            snap.in_flight = None;
        }
        let (docs, upto_slot, done) = self.node.snapshot_page(snap.next_after, limit, &keep)?;
        snap.in_flight = Some(PageInFlight {
            upto_slot,
            done,
            sent_us: now_us,
        });
        let (at, after_slot) = (snap.at, snap.next_after);
        self.stats.writes_sent += docs.len() as u64;
        let peer = self.peer.map_or(NodeId(0), |p| p.node);
        let users = self.users_for(peer, docs.iter().map(|d| &d.state), std::iter::empty())?;
        Ok(vec![Msg::Snapshot {
            at,
            after_slot,
            upto_slot,
            docs,
            done,
            collected: self.node.collects_tombstones(),
            users,
        }])
    }

    pub(super) fn poll_inner(&mut self, now_us: u64) -> Result<Vec<Msg>, Closed> {
        let closed = db_closed;
        let mut out = Vec::new();
        if self.closed.is_some() {
            return Ok(out);
        }
        if self.peer.is_none() {
            if let Some(hello) = &mut self.hello
                && now_us.saturating_sub(hello.sent_us) > self.cfg.resend_after_us
            {
                hello.sent_us = now_us;
                // Our clock as of this send: the peer measures the skew from it, and
                // the first send's time would read as a clock that much behind.
                if let Msg::Hello { now_us: t, .. } = &mut hello.msg {
                    *t = now_us;
                }
                out.push(hello.msg.clone());
            }
            return Ok(out);
        }
        let Some(peer) = self.peer.filter(|p| p.we_send) else {
            return Ok(out);
        };
        if let Err(e) = self
            .node
            .maybe_collect_garbage(now_us, self.node.config().advanced.gc_every_us)
        {
            tracing::warn!(error = %e, "garbage collection failed");
        }
        // A snapshot we send goes on even while we receive one (two nodes may
        // bootstrap from each other); only our batches wait while we are receiving.
        if self.snap_send.is_some() {
            return self.send_snapshot(now_us).map_err(closed);
        }
        if self.holding || self.push_refused.is_some() {
            return Ok(out);
        }
        self.node.absorb().map_err(closed)?;
        if !self.in_flight.is_empty()
            && now_us.saturating_sub(self.last_progress_us) > self.cfg.resend_after_us
        {
            self.next_send = self.acked.next();
            self.in_flight.clear();
            self.last_progress_us = now_us;
        }
        let keep = self.keep();
        let last = self.node.log_last().map_err(closed)?;
        let limit = self.cfg.batch_max.clamp(1, BATCH_WRITES_MAX);
        while self.in_flight.len() < self.cfg.window.max(1) && self.next_send <= last {
            let after = self.next_send.prev();
            let (items, upto) = match self.node.read_log(peer.node, after, limit, &keep) {
                Ok(r) => r,
                Err(SyncError::LogPruned { .. }) => {
                    out.extend(self.start_snapshot(peer.node, after, now_us)?);
                    break;
                }
                Err(e) => return Err(closed(e)),
            };
            if upto <= after {
                break;
            }
            self.stats.writes_sent += items.len() as u64;
            let moves_cursor_only = items.is_empty();
            let users = self
                .users_for(
                    peer.node,
                    items.iter().filter_map(|i| match i {
                        Item::State(d) => Some(&d.state),
                        Item::Write(_) => None,
                    }),
                    items.iter().filter_map(|i| match i {
                        Item::Write(w) => Some(w.stamp.node()),
                        Item::State(_) => None,
                    }),
                )
                .map_err(closed)?;
            out.push(Msg::Batch {
                after,
                upto,
                items,
                users,
            });
            self.next_send = upto.next();
            if moves_cursor_only {
                // Nothing the peer lacks: it only learns where our log stands. Not
                // waited for (a "sync now" is done without it); if it is lost with
                // the connection, the next session's hello asks from the old cursor
                // and the skipped entries are skipped again.
                continue;
            }
            self.in_flight.push_back(upto);
            if self.in_flight.len() == 1 {
                self.last_progress_us = now_us;
            }
        }
        Ok(out)
    }

    /// The peer needs our log after `after`, which is pruned: it bootstraps from a
    /// snapshot instead (resuming one it had started if that is still valid).
    fn start_snapshot(
        &mut self,
        peer: NodeId,
        after: LogPos,
        now_us: u64,
    ) -> Result<Vec<Msg>, Closed> {
        let at = self.node.log_last().map_err(db_closed)?;
        let floor = self.node.log_floor().map_err(db_closed)?;
        let (at, next_after) = match self.peer_resume.take() {
            Some(p) if p.at >= floor && p.at <= at => (p.at, p.slot),
            _ => (at, 0),
        };
        tracing::info!(peer = %peer, after = after.get(), floor = floor.get(), at = at.get(), "the peer needs more than the log holds: sending a snapshot");
        self.in_flight.clear();
        self.snap_send = Some(SnapSend {
            at,
            next_after,
            in_flight: None,
        });
        self.send_snapshot(now_us).map_err(db_closed)
    }
}
