//! What the session does with each kind of message from the peer: one handler per
//! kind, each adding its replies to `out`.
//!
//! Invariant: a handler that refuses a message (an `Error` reply) changes nothing but
//! the session's error state; the refusals that end the session are fatal `Error`s.

use crate::clock::NodeId;
use crate::error::SyncError;
use crate::node::SnapshotPage;
use crate::position::LogPos;
use crate::principal::Binding;
use crate::proto::{BATCH_WRITES_MAX, ErrorCode, Msg, PROTOCOL_VERSION};
use crate::record::Item;

use super::{Closed, Ended, HelloSent, PeerHello, PeerInfo, Pong, Session, db_closed};

impl Session {
    /// The peer introduces itself (again, if our `Hello` or its got lost): the first
    /// one makes it known and sets where each side's log resumes.
    pub(super) fn on_hello(
        &mut self,
        h: &PeerHello,
        now_us: u64,
        out: &mut Vec<Msg>,
    ) -> Result<Ended, Closed> {
        if let Some(refusal) = self.refuse_hello(h)? {
            out.push(refusal);
            return Ok(Ended::Early);
        }
        let first = self.peer.is_none();
        self.peer = Some(PeerInfo {
            node: h.node,
            role: h.role,
            we_send: self.cfg.mode.sends() && h.accept,
            we_accept: self.cfg.mode.accepts() && h.send,
        });
        // Each reading is the true skew less the time the hello spent in transit and
        // queued behind other messages (never negative), so the largest reading of
        // the session is the closest one: a hello handled after a large push must
        // not report a clock that far behind.
        let reading = i64::try_from(h.peer_now)
            .unwrap_or(i64::MAX)
            .saturating_sub(i64::try_from(now_us).unwrap_or(i64::MAX));
        self.stats.skew_us = Some(self.stats.skew_us.map_or(reading, |s| s.max(reading)));
        if first {
            tracing::info!(peer = %h.node, role = %h.role, who = self.cfg.grant.who(), "sync session started");
            self.meet(h, out)?;
        }
        self.last_progress_us = now_us;
        if !h.have_yours
            && let Some(HelloSent {
                msg:
                    Msg::Hello {
                        have_yours: mine,
                        now_us: t,
                        ..
                    },
                ..
            }) = &mut self.hello
        {
            *mine = true;
            *t = now_us;
            out.push(
                self.hello
                    .as_ref()
                    .map(|sent| sent.msg.clone())
                    .expect("set above"),
            );
        }
        out.extend(self.poll_inner(now_us)?);
        Ok(Ended::Through)
    }

    /// The fatal `Error` a `Hello` gets if the session cannot go on with this peer:
    /// another protocol version, ourselves, a changed identity, or (on a first
    /// `Hello` under a principal) a node that is not the principal's to sync.
    fn refuse_hello(&mut self, h: &PeerHello) -> Result<Option<Msg>, Closed> {
        let node = h.node;
        if h.version != PROTOCOL_VERSION {
            let message = format!(
                "protocol version {} (this node speaks {PROTOCOL_VERSION})",
                h.version
            );
            return Ok(Some(self.error(ErrorCode::Version, message, true)));
        }
        if node == self.node.node_id() {
            let message = "connected to itself".into();
            return Ok(Some(self.error(ErrorCode::Protocol, message, true)));
        }
        if let Some(p) = self.peer
            && p.node != node
        {
            let message = "the peer changed identity".into();
            return Ok(Some(self.error(ErrorCode::Protocol, message, true)));
        }
        if self.peer.is_none()
            && !self.cfg.grant.relay
            && let Some(principal) = &self.cfg.grant.principal
        {
            let message = match self
                .node
                .bind_principal(node, principal)
                .map_err(db_closed)?
            {
                Binding::Yours => return Ok(None),
                Binding::Taken => format!("node {node} writes for another user"),
                Binding::Full(cap) => format!(
                    "{principal} syncs from {cap} databases already: the \
                     server keeps no more for one user"
                ),
            };
            return Ok(Some(self.error(ErrorCode::Forbidden, message, true)));
        }
        Ok(None)
    }

    /// The peer's first `Hello`: registers it as connected and sets where each side's
    /// log resumes.
    fn meet(&mut self, h: &PeerHello, out: &mut Vec<Msg>) -> Result<(), Closed> {
        self.node.note_connected(h.node, true);
        self.registered = Some(h.node);
        self.peer_resume = h.resume;
        // Resume from our persisted cursor for this peer (the hint may have been
        // missing), and send ours from where it stands.
        let announced = self.cursor;
        let cursor = self.node.recv_cursor(h.node).map_err(db_closed)?;
        self.cursor = self.cursor.max(cursor);
        self.next_send = h.want_after.next();
        self.acked = h.want_after;
        self.in_flight.clear();
        self.node
            .note_acked(h.node, h.want_after, h.log_last)
            .map_err(db_closed)?;
        self.note_peer_log_last(h.log_last);
        if self.cursor > announced && self.cfg.mode.accepts() {
            // Our hello went out before we knew the peer (a server does not know who
            // dials): tell it what we already have, so it does not send that again.
            out.push(Msg::Ack {
                upto: self.cursor,
                log_last: self.node.log_last().map_err(db_closed)?,
            });
        }
        Ok(())
    }

    /// Entries of the peer's log `(after, upto]`: applied if they continue our cursor,
    /// acked again if we have them, asked for again (`Want`) if there is a gap.
    pub(super) fn on_batch(
        &mut self,
        after: LogPos,
        upto: LogPos,
        items: &[Item],
        users: &[(NodeId, String)],
        now_us: u64,
        out: &mut Vec<Msg>,
    ) -> Result<Ended, Closed> {
        let Some(peer) = self.accepting_peer(out) else {
            return Ok(Ended::Early);
        };
        if self.snap_send.is_some() {
            out.push(self.error(
                ErrorCode::Bootstrapping,
                "writes wait until the snapshot has been taken".into(),
                false,
            ));
            return Ok(Ended::Early);
        }
        if items.len() > BATCH_WRITES_MAX || upto < after {
            out.push(self.error(ErrorCode::Protocol, "malformed batch".into(), true));
            return Ok(Ended::Early);
        }
        if self.cfg.grant.relay
            && let Err(e) = self.node.learn_principals(users)
        {
            out.push(self.error(ErrorCode::Protocol, e.to_string(), true));
            return Ok(Ended::Early);
        }
        if upto <= self.cursor {
            out.push(Msg::Ack {
                upto: self.cursor,
                log_last: self.node.log_last().map_err(db_closed)?,
            });
        } else if after > self.cursor {
            out.push(Msg::Want { after: self.cursor });
        } else {
            self.apply_batch(peer, items, upto, now_us, out)?;
        }
        Ok(Ended::Through)
    }

    /// Our cursor moves to `upto` after a durable apply that did `report`: the
    /// statistics follow, and the `Ack` to send is returned.
    pub(super) fn applied(
        &mut self,
        report: &crate::node::BatchReport,
        upto: LogPos,
        now_us: u64,
    ) -> Result<Msg, Closed> {
        self.cursor = upto;
        self.stats.writes_received += report.applied;
        self.stats.writes_rejected += report.rejected;
        self.stats.conflicts += report.conflicts;
        self.stats.last_sync_us = Some(now_us);
        Ok(Msg::Ack {
            upto,
            log_last: self.node.log_last().map_err(db_closed)?,
        })
    }

    /// Applies a batch that continues our cursor and acks it, or answers with the
    /// `Error` its failure calls for (fatal when the peer broke the protocol).
    fn apply_batch(
        &mut self,
        peer: PeerInfo,
        items: &[Item],
        upto: LogPos,
        now_us: u64,
        out: &mut Vec<Msg>,
    ) -> Result<(), Closed> {
        match self.node.apply_batch(peer.node, peer.role, items, upto) {
            Ok(report) => out.push(self.applied(&report, upto, now_us)?),
            Err(SyncError::ClockSkew(e)) => {
                out.push(self.error(ErrorCode::ClockSkew, e.to_string(), false));
            }
            Err(SyncError::Protocol(reason)) => {
                out.push(self.error(ErrorCode::Protocol, reason, true));
            }
            Err(SyncError::BadName(e)) => {
                out.push(self.error(ErrorCode::Protocol, e.to_string(), true));
            }
            Err(SyncError::Merge(e)) => {
                // A non-causal delivery: the peer broke the protocol.
                out.push(self.error(ErrorCode::Protocol, e.to_string(), true));
            }
            Err(e) => {
                out.push(self.error(ErrorCode::ApplyFailed, e.to_string(), false));
            }
        }
        Ok(())
    }

    /// The peer has our log up to `upto`: what is in flight up to there is done.
    pub(super) fn on_ack(
        &mut self,
        upto: LogPos,
        log_last: LogPos,
        now_us: u64,
        out: &mut Vec<Msg>,
    ) -> Result<Ended, Closed> {
        if let Some(peer) = self.peer
            && upto > self.acked
        {
            self.acked = upto;
            self.next_send = self.next_send.max(upto.next());
            if self.snap_send.as_ref().is_some_and(|s| upto >= s.at) {
                // The peer has our log up to the snapshot's position already (it
                // told us once it knew who we are): no snapshot needed.
                self.snap_send = None;
            }
            let before = self.in_flight.len();
            while self.in_flight.front().is_some_and(|&u| u <= upto) {
                self.in_flight.pop_front();
            }
            if self.in_flight.len() < before && self.push_refused.is_none() {
                // What we sent got through after all: an earlier passing refusal (the
                // peer was sending us a snapshot, a clock briefly ahead) no longer
                // describes this session. A refusal of our credential stays.
                self.stats.last_error = None;
            }
            self.last_progress_us = now_us;
            self.stats.last_sync_us = Some(now_us);
            self.node
                .note_acked(peer.node, upto, log_last)
                .map_err(db_closed)?;
        }
        if self.peer.is_some() {
            self.note_peer_log_last(log_last);
        }
        out.extend(self.poll_inner(now_us)?);
        Ok(Ended::Through)
    }

    /// The peer saw a gap: send again from after `after` (never before the last ack).
    pub(super) fn on_want(
        &mut self,
        after: LogPos,
        now_us: u64,
        out: &mut Vec<Msg>,
    ) -> Result<Ended, Closed> {
        if self.peer.is_some() {
            self.next_send = after.max(self.acked).next();
            self.in_flight.clear();
            self.last_progress_us = now_us;
            out.extend(self.poll_inner(now_us)?);
        }
        Ok(Ended::Through)
    }

    /// A page of the peer's snapshot: our writes wait (`holding`) until its last page
    /// is applied; a page that does not continue our progress is answered with where
    /// we stand.
    pub(super) fn on_snapshot(
        &mut self,
        page: SnapshotPage<'_>,
        users: &[(NodeId, String)],
        now_us: u64,
        out: &mut Vec<Msg>,
    ) -> Result<Ended, Closed> {
        let Some(peer) = self.accepting_peer(out) else {
            return Ok(Ended::Early);
        };
        if self.cfg.grant.relay
            && let Err(e) = self.node.learn_principals(users)
        {
            out.push(self.error(ErrorCode::Protocol, e.to_string(), true));
            return Ok(Ended::Early);
        }
        let (at, upto_slot, done) = (page.at, page.upto_slot, page.done);
        if self.cursor >= at && !self.holding {
            // A late copy of a snapshot we have finished taking.
            out.push(Msg::SnapshotAck { at, upto_slot });
            return Ok(Ended::Early);
        }
        if !self.holding {
            // Our writes wait; what is in flight is sent again afterwards.
            self.holding = true;
            self.in_flight.clear();
            self.next_send = self.acked.next();
        }
        let keep = self.keep();
        match self.node.apply_snapshot(peer.node, page, &keep) {
            Ok(report) => {
                self.stats.writes_received += report.applied;
                self.stats.conflicts += report.conflicts;
                self.stats.last_sync_us = Some(now_us);
                out.push(Msg::SnapshotAck { at, upto_slot });
                if done {
                    self.holding = false;
                    self.cursor = self.cursor.max(at);
                    out.extend(self.poll_inner(now_us)?);
                }
            }
            Err(SyncError::Protocol(_) | SyncError::BadName(_)) => {
                // Not the page that continues our progress (or a name we cannot
                // hold, answered alike): say where we are.
                let slot = match self.node.snapshot_progress(peer.node).map_err(db_closed)? {
                    Some(p) if p.at == at => p.slot,
                    _ => 0,
                };
                out.push(Msg::SnapshotAck {
                    at,
                    upto_slot: slot,
                });
            }
            Err(e) => out.push(self.error(ErrorCode::ApplyFailed, e.to_string(), false)),
        }
        Ok(Ended::Through)
    }

    /// The peer applied our snapshot taken at `at` up to `upto_slot`: the next page
    /// goes from there; after the last one, our log follows from `at`.
    pub(super) fn on_snapshot_ack(
        &mut self,
        at: LogPos,
        upto_slot: u64,
        now_us: u64,
        out: &mut Vec<Msg>,
    ) -> Result<Ended, Closed> {
        if let Some(snap) = &mut self.snap_send
            && snap.at == at
        {
            match snap.in_flight {
                Some(page) if upto_slot >= page.upto_slot => {
                    snap.next_after = page.upto_slot;
                    snap.in_flight = None;
                    if page.done {
                        // The log follows from the snapshot's position.
                        self.snap_send = None;
                        self.next_send = at.next();
                        self.acked = self.acked.max(at);
                        self.in_flight.clear();
                    }
                }
                _ => {
                    snap.next_after = upto_slot;
                    snap.in_flight = None;
                }
            }
            self.last_progress_us = now_us;
            out.extend(self.poll_inner(now_us)?);
        }
        Ok(Ended::Through)
    }

    /// Answers with our newest log position.
    pub(super) fn on_ping(&mut self, token: u64, out: &mut Vec<Msg>) -> Result<Ended, Closed> {
        // "Everything we hold" includes local writes committed but not yet taken over
        // into the log: take them over first, so the peer's "sync now" waits for
        // them too.
        self.node.absorb().map_err(db_closed)?;
        let last = self.node.log_last().map_err(db_closed)?;
        out.push(Msg::Pong {
            token,
            log_last: last,
        });
        Ok(Ended::Through)
    }

    /// Keeps the newest answer (answers may arrive out of order).
    pub(super) fn on_pong(&mut self, pong: Pong) -> Ended {
        if self.pong.is_none_or(|p| pong.token >= p.token) {
            self.pong = Some(pong);
        }
        self.note_peer_log_last(pong.log_last);
        Ended::Through
    }

    /// The peer told us its log reaches `log_last` (only ever grows: messages may
    /// arrive out of order). A figure for progress displays; nothing acts on it.
    fn note_peer_log_last(&mut self, log_last: LogPos) {
        self.stats.peer_log_last = Some(
            self.stats
                .peer_log_last
                .map_or(log_last, |l| l.max(log_last)),
        );
    }

    /// The peer refused something: a `Forbidden` stops our sending on this session;
    /// a fatal one closes it.
    pub(super) fn on_error(
        &mut self,
        code: ErrorCode,
        message: String,
        fatal: bool,
    ) -> Result<Ended, Closed> {
        self.stats.last_error = Some(format!("peer: {message}"));
        if code == ErrorCode::Forbidden {
            // Our credential does not allow this: sending it again would only be
            // refused again. Our writes stay pending; unless the refusal ends the
            // session, we keep pulling.
            self.push_refused = Some(message.clone());
            self.in_flight.clear();
            self.next_send = self.acked.next();
        }
        if fatal {
            self.closed = Some(format!("peer closed the session: {message}"));
            return Err(Closed {
                reason: format!("peer closed the session: {message}"),
            });
        }
        Ok(Ended::Through)
    }

    /// The peer, if we take its writes: `None` before its `Hello` (what it sent will
    /// be resent) or, with a refusal queued in `out`, when this side does not accept.
    fn accepting_peer(&mut self, out: &mut Vec<Msg>) -> Option<PeerInfo> {
        let peer = self.peer?;
        if !peer.we_accept {
            out.push(self.error(
                ErrorCode::Refused,
                "this side does not accept writes".into(),
                false,
            ));
            return None;
        }
        Some(peer)
    }
}
