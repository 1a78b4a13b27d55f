//! One sync session with one peer, as a state machine without I/O: messages in,
//! messages out. Every transport and the deterministic simulation drive the same code.
//!
//! Each side sends its log to the other (when the modes allow) in batches covering
//! log positions `(after, upto]`, at most `window` batches unacknowledged. The receiver
//! applies a batch in one durable transaction that advances its cursor, then acks.
//!
//! Invariants:
//! - A batch is applied only if it starts at or before the receiver's cursor + 1, so
//!   the receiver takes the sender's log in order (which keeps delivery causal);
//!   a batch beyond a gap is dropped and the receiver asks for a resend (`Want`).
//! - Re-delivered batches are acked without effect (writes are idempotent).
//! - A sender with unacknowledged batches and no progress for `resend_after_us`
//!   rewinds to the last ack, so a lost message costs a resend, never a write.
//! - Nothing is applied before the peer's `Hello` (its identity and role).

use std::collections::{BTreeSet, VecDeque};

use crate::authz;
use crate::clock::{NodeId, Role};
use crate::error::SyncError;
use crate::grant::Grant;
use crate::node::{SnapshotPage, SyncNode};
use crate::principal::Binding;
use crate::proto::{BATCH_WRITES_MAX, ErrorCode, Msg, PROTOCOL_VERSION, WINDOW_DEFAULT};
use crate::record::{Item, SnapshotProgress};

/// Default wait for an ack before resending: 2 seconds.
pub const RESEND_AFTER_DEFAULT_US: u64 = 2_000_000;

/// Which directions a connection carries, seen from this side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConnectionMode {
    /// Both ways.
    #[default]
    Bidirectional,
    /// Only receive the peer's writes.
    PullOnly,
    /// Only send our writes.
    PushOnly,
}

impl ConnectionMode {
    fn sends(self) -> bool {
        self != ConnectionMode::PullOnly
    }
    fn accepts(self) -> bool {
        self != ConnectionMode::PushOnly
    }
}

/// How one session behaves.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub mode: ConnectionMode,
    /// Most writes per batch (capped at [`BATCH_WRITES_MAX`]).
    pub batch_max: usize,
    /// Batches in flight.
    pub window: usize,
    pub resend_after_us: u64,
    /// Collections that sync on this connection (`None`: all).
    pub collections: Option<BTreeSet<String>>,
    /// What the peer may do, as its transport authenticated it (`Grant::peer()` for
    /// peers trusted like this node: in-process, or the server this node dialed).
    pub grant: Grant,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            mode: ConnectionMode::Bidirectional,
            batch_max: 256,
            window: WINDOW_DEFAULT,
            resend_after_us: RESEND_AFTER_DEFAULT_US,
            collections: None,
            grant: Grant::peer(),
        }
    }
}

/// The peer, once its `Hello` arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    pub node: NodeId,
    pub role: Role,
    /// Whether we send to it (our mode and its acceptance).
    pub we_send: bool,
    /// Whether it sends to us and we accept.
    pub we_accept: bool,
}

/// Counters of one session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub writes_sent: u64,
    pub writes_received: u64,
    /// Received writes that lost a conflict here on arrival (see
    /// [`crate::BatchReport::rejected`]).
    pub writes_rejected: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub conflicts: u64,
    /// Wall time of the last batch applied or acknowledged (µs).
    pub last_sync_us: Option<u64>,
    /// Peer clock minus ours at its `Hello` (µs; positive: the peer is ahead).
    pub skew_us: Option<i64>,
    pub last_error: Option<String>,
}

/// One session's state.
pub struct Session {
    node: SyncNode,
    cfg: SessionConfig,
    peer: Option<PeerInfo>,
    closed: Option<String>,
    next_send: u64,
    acked: u64,
    in_flight: VecDeque<u64>,
    last_progress_us: u64,
    cursor: u64,
    stats: SessionStats,
    /// Our `Hello`, resent until the peer's arrives (a lost message must not stall).
    hello: Option<(Msg, u64)>,
    /// The newest answered `Ping`: its token and the peer's log position then.
    pong: Option<(u64, u64)>,
    /// A snapshot we are sending the peer.
    snap_send: Option<SnapSend>,
    /// The peer's resume point for a snapshot of ours (from its `Hello`).
    peer_resume: Option<SnapshotProgress>,
    /// We are receiving a snapshot: our writes wait until it is complete (the peer
    /// must not see them before, see `DocState::join`).
    holding: bool,
    /// The peer this session registered with the node as connected.
    registered: Option<NodeId>,
    /// The peer refused our writes for a permission we lack (`Forbidden`): we stop
    /// sending them on this session (they stay pending here) and keep receiving.
    push_refused: Option<String>,
}

/// A snapshot being sent.
struct SnapSend {
    at: u64,
    /// The next page starts after this slot.
    next_after: u64,
    /// The page in flight: (its last slot, whether it is the last page, sent at).
    in_flight: Option<(u64, bool, u64)>,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(p) = self.registered.take() {
            self.node.note_connected(p, false);
        }
    }
}

/// A session ended or refused to go on.
#[derive(Debug, thiserror::Error)]
#[error("sync session closed: {reason}")]
pub struct Closed {
    pub reason: String,
}

impl Session {
    /// A session of `node` with a peer yet unknown; send [`Session::hello`] first.
    #[must_use]
    pub fn new(node: SyncNode, cfg: SessionConfig) -> Session {
        Session {
            node,
            cfg,
            peer: None,
            closed: None,
            next_send: 1,
            acked: 0,
            in_flight: VecDeque::new(),
            last_progress_us: 0,
            cursor: 0,
            stats: SessionStats::default(),
            hello: None,
            pong: None,
            snap_send: None,
            peer_resume: None,
            holding: false,
            registered: None,
            push_refused: None,
        }
    }

    /// A one-line description of the session's progress (for logs and debugging).
    #[must_use]
    pub fn describe(&self) -> String {
        let peer = self.peer.map(|p| p.node).unwrap_or(NodeId(0));
        let probe = self
            .node
            .read_log(peer, self.next_send.saturating_sub(1), 4, &|_| true);
        format!(
            "closed {:?} log ({:?}..{:?}] probe {:?} next_send {} acked {} in_flight {:?} cursor {} holding {} snapshot {:?}",
            self.closed,
            self.node.log_floor().ok(),
            self.node.log_last().ok(),
            probe.map(|(i, u)| (i.len(), u)),
            self.next_send,
            self.acked,
            self.in_flight,
            self.cursor,
            self.holding,
            self.snap_send
                .as_ref()
                .map(|s| (s.at, s.next_after, s.in_flight))
        )
    }

    /// The peer's log position applied here.
    #[must_use]
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The answer to the newest `Ping`: (token, the peer's log position then).
    #[must_use]
    pub fn pong(&self) -> Option<(u64, u64)> {
        self.pong
    }

    /// Whether everything the peer had when it answered `Ping` number `token` has been
    /// applied here (or the peer does not send to us).
    #[must_use]
    pub fn pulled(&self, token: u64) -> bool {
        match (self.peer, self.pong) {
            (Some(p), _) if !p.we_accept => true,
            (Some(_), Some((t, last))) => t >= token && self.cursor >= last,
            _ => false,
        }
    }

    /// The peer, once known.
    #[must_use]
    pub fn peer(&self) -> Option<PeerInfo> {
        self.peer
    }

    /// The counters.
    #[must_use]
    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    /// The peer's confirmed position in our log.
    #[must_use]
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Why the session closed, if it did.
    #[must_use]
    pub fn closed(&self) -> Option<&str> {
        self.closed.as_deref()
    }

    /// Why the peer refused our writes, if it did (a permission this node's credential
    /// lacks); they stay pending here.
    #[must_use]
    pub fn push_refused(&self) -> Option<&str> {
        self.push_refused.as_deref()
    }

    /// Whether a timer of this session may have work (a hello to resend, batches or a
    /// snapshot waiting for acknowledgement, a snapshot being received, garbage
    /// collection due), judged from memory only. An idle live session needs no poll
    /// on its ticks: commits and messages wake it.
    #[must_use]
    pub fn timers_due(&self, now_us: u64) -> bool {
        self.closed.is_none()
            && (self.peer.is_none()
                || !self.in_flight.is_empty()
                || self.snap_send.is_some()
                || self.holding
                || self.node.gc_due(now_us))
    }

    /// Whether everything we have sent is acknowledged and nothing is left to send.
    ///
    /// # Errors
    /// Database errors.
    pub fn idle(&self) -> Result<bool, SyncError> {
        // Local writes not yet taken over into the log count as unsent (a database
        // reopened after a crash has some until the next poll absorbs them).
        let sends = self.peer.is_some_and(|p| p.we_send);
        Ok(self.snap_send.is_none()
            && !self.holding
            && self.in_flight.is_empty()
            && (!sends
                || (self.next_send > self.node.log_last()? && !self.node.has_unabsorbed()?)))
    }

    /// The opening message. `peer_hint` is the peer's node id if known from an
    /// earlier session (so we can ask for its log from our cursor).
    ///
    /// # Errors
    /// Database errors.
    pub fn hello(&mut self, peer_hint: Option<NodeId>, now_us: u64) -> Result<Msg, SyncError> {
        let want_after = match peer_hint {
            Some(p) => self.node.recv_cursor(p)?,
            None => 0,
        };
        self.cursor = want_after;
        let msg = Msg::Hello {
            version: PROTOCOL_VERSION,
            node: self.node.node_id(),
            role: self.node.role(),
            want_after,
            accept: self.cfg.mode.accepts(),
            send: self.cfg.mode.sends(),
            now_us,
            have_yours: false,
            log_last: self.node.log_last()?,
            resume: match peer_hint {
                Some(p) => self.node.snapshot_progress(p)?,
                None => None,
            },
        };
        self.hello = Some((msg.clone(), now_us));
        Ok(msg)
    }

    fn error(&mut self, code: ErrorCode, message: String, fatal: bool) -> Msg {
        self.stats.last_error = Some(message.clone());
        if fatal {
            self.closed = Some(message.clone());
        }
        Msg::Error {
            code,
            message,
            fatal,
        }
    }

    /// Handles one message from the peer; returns the replies.
    ///
    /// # Errors
    /// [`Closed`] when the session cannot go on (the replies to send first are lost;
    /// a fatal `Error` message is returned as a reply before closing instead when
    /// possible).
    pub fn on_message(&mut self, msg: Msg, now_us: u64) -> Result<Vec<Msg>, Closed> {
        if let Some(reason) = &self.closed {
            return Err(Closed {
                reason: reason.clone(),
            });
        }
        self.stats.bytes_received += msg.encoded_len() as u64;
        let mut out = Vec::new();
        let node = self.node.clone();
        let mut log_last = || node.log_last().map_err(|e| e.to_string());
        if let Err(r) = authz::check_inbound(&self.cfg.grant, self.peer, &msg, &mut log_last) {
            tracing::warn!(peer = ?self.peer.map(|p| p.node), who = self.cfg.grant.who(), fatal = r.fatal, reason = %r.message, "refused a message");
            out.push(self.error(r.code, r.message, r.fatal));
            return Ok(out);
        }
        match msg {
            Msg::Hello {
                version,
                node,
                role,
                want_after,
                accept,
                send,
                now_us: peer_now,
                have_yours,
                log_last: peer_last,
                resume,
            } => {
                if version != PROTOCOL_VERSION {
                    out.push(self.error(
                        ErrorCode::Version,
                        format!("protocol version {version} (this node speaks {PROTOCOL_VERSION})"),
                        true,
                    ));
                    return Ok(out);
                }
                if node == self.node.node_id() {
                    out.push(self.error(ErrorCode::Protocol, "connected to itself".into(), true));
                    return Ok(out);
                }
                if let Some(p) = self.peer
                    && p.node != node
                {
                    out.push(self.error(
                        ErrorCode::Protocol,
                        "the peer changed identity".into(),
                        true,
                    ));
                    return Ok(out);
                }
                let first = self.peer.is_none();
                if first
                    && !self.cfg.grant.relay
                    && let Some(principal) = &self.cfg.grant.principal
                {
                    match self.node.bind_principal(node, principal) {
                        Ok(Binding::Yours) => {}
                        Ok(Binding::Taken) => {
                            out.push(self.error(
                                ErrorCode::Forbidden,
                                format!("node {node} writes for another user"),
                                true,
                            ));
                            return Ok(out);
                        }
                        Ok(Binding::Full(cap)) => {
                            out.push(self.error(
                                ErrorCode::Forbidden,
                                format!(
                                    "{principal} syncs from {cap} databases already: the \
                                     server keeps no more for one user"
                                ),
                                true,
                            ));
                            return Ok(out);
                        }
                        Err(e) => {
                            return Err(Closed {
                                reason: e.to_string(),
                            });
                        }
                    }
                }
                self.peer = Some(PeerInfo {
                    node,
                    role,
                    we_send: self.cfg.mode.sends() && accept,
                    we_accept: self.cfg.mode.accepts() && send,
                });
                self.stats.skew_us = Some(
                    i64::try_from(peer_now).unwrap_or(i64::MAX)
                        - i64::try_from(now_us).unwrap_or(i64::MAX),
                );
                if first {
                    self.node.note_connected(node, true);
                    self.registered = Some(node);
                    self.peer_resume = resume;
                    // Resume from our persisted cursor for this peer (the hint may
                    // have been missing), and send ours from where it stands.
                    let announced = self.cursor;
                    match self.node.recv_cursor(node) {
                        Ok(c) => self.cursor = self.cursor.max(c),
                        Err(e) => {
                            return Err(Closed {
                                reason: e.to_string(),
                            });
                        }
                    }
                    self.next_send = want_after + 1;
                    self.acked = want_after;
                    self.in_flight.clear();
                    if let Err(e) = self.node.note_acked(node, want_after, peer_last) {
                        return Err(Closed {
                            reason: e.to_string(),
                        });
                    }
                    if self.cursor > announced && self.cfg.mode.accepts() {
                        // Our hello went out before we knew the peer (a server does
                        // not know who dials): tell it what we already have, so it
                        // does not send that again.
                        out.push(Msg::Ack {
                            upto: self.cursor,
                            log_last: self.node.log_last().map_err(|e| Closed {
                                reason: e.to_string(),
                            })?,
                        });
                    }
                }
                self.last_progress_us = now_us;
                if !have_yours
                    && let Some((
                        Msg::Hello {
                            have_yours: h,
                            now_us: t,
                            ..
                        },
                        _,
                    )) = &mut self.hello
                {
                    *h = true;
                    *t = now_us;
                    out.push(self.hello.as_ref().map(|m| m.0.clone()).expect("set above"));
                }
                out.extend(self.poll_inner(now_us)?);
            }
            Msg::Batch {
                after,
                upto,
                items,
                users,
            } => {
                let Some(peer) = self.accepting_peer(&mut out) else {
                    return Ok(out);
                };
                if self.snap_send.is_some() {
                    out.push(self.error(
                        ErrorCode::Bootstrapping,
                        "writes wait until the snapshot has been taken".into(),
                        false,
                    ));
                    return Ok(out);
                }
                if items.len() > BATCH_WRITES_MAX || upto < after {
                    out.push(self.error(ErrorCode::Protocol, "malformed batch".into(), true));
                    return Ok(out);
                }
                if self.cfg.grant.relay
                    && let Err(e) = self.node.learn_principals(&users)
                {
                    out.push(self.error(ErrorCode::Protocol, e.to_string(), true));
                    return Ok(out);
                }
                let log_last = |s: &Self| {
                    s.node.log_last().map_err(|e| Closed {
                        reason: e.to_string(),
                    })
                };
                if upto <= self.cursor {
                    out.push(Msg::Ack {
                        upto: self.cursor,
                        log_last: log_last(self)?,
                    });
                } else if after > self.cursor {
                    out.push(Msg::Want { after: self.cursor });
                } else {
                    match self.node.apply_batch(peer.node, peer.role, &items, upto) {
                        Ok(report) => {
                            self.cursor = upto;
                            self.stats.writes_received += report.applied;
                            self.stats.writes_rejected += report.rejected;
                            self.stats.conflicts += report.conflicts;
                            self.stats.last_sync_us = Some(now_us);
                            out.push(Msg::Ack {
                                upto,
                                log_last: log_last(self)?,
                            });
                        }
                        Err(SyncError::ClockSkew(e)) => {
                            out.push(self.error(ErrorCode::ClockSkew, e.to_string(), false));
                        }
                        Err(SyncError::Protocol(reason)) => {
                            out.push(self.error(ErrorCode::Protocol, reason, true));
                        }
                        Err(SyncError::Merge(e)) => {
                            // A non-causal delivery: the peer broke the protocol.
                            out.push(self.error(ErrorCode::Protocol, e.to_string(), true));
                        }
                        Err(e) => {
                            out.push(self.error(ErrorCode::ApplyFailed, e.to_string(), false));
                        }
                    }
                }
            }
            Msg::Ack { upto, log_last } => {
                if let Some(peer) = self.peer
                    && upto > self.acked
                {
                    self.acked = upto;
                    self.next_send = self.next_send.max(upto + 1);
                    if self.snap_send.as_ref().is_some_and(|s| upto >= s.at) {
                        // The peer has our log up to the snapshot's position already
                        // (it told us once it knew who we are): no snapshot needed.
                        self.snap_send = None;
                    }
                    while self.in_flight.front().is_some_and(|&u| u <= upto) {
                        self.in_flight.pop_front();
                    }
                    self.last_progress_us = now_us;
                    self.stats.last_sync_us = Some(now_us);
                    if let Err(e) = self.node.note_acked(peer.node, upto, log_last) {
                        return Err(Closed {
                            reason: e.to_string(),
                        });
                    }
                }
                out.extend(self.poll_inner(now_us)?);
            }
            Msg::Want { after } => {
                if self.peer.is_some() {
                    self.next_send = after.max(self.acked) + 1;
                    self.in_flight.clear();
                    self.last_progress_us = now_us;
                    out.extend(self.poll_inner(now_us)?);
                }
            }
            Msg::Snapshot {
                at,
                after_slot,
                upto_slot,
                docs,
                done,
                collected,
                users,
            } => {
                let Some(peer) = self.accepting_peer(&mut out) else {
                    return Ok(out);
                };
                if self.cfg.grant.relay
                    && let Err(e) = self.node.learn_principals(&users)
                {
                    out.push(self.error(ErrorCode::Protocol, e.to_string(), true));
                    return Ok(out);
                }
                if self.cursor >= at && !self.holding {
                    // A late copy of a snapshot we have finished taking.
                    out.push(Msg::SnapshotAck { at, upto_slot });
                    return Ok(out);
                }
                if !self.holding {
                    // Our writes wait; what is in flight is sent again afterwards.
                    self.holding = true;
                    self.in_flight.clear();
                    self.next_send = self.acked + 1;
                }
                let keep = self.keep();
                let page = SnapshotPage {
                    at,
                    after_slot,
                    upto_slot,
                    docs: &docs,
                    done,
                    collected,
                };
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
                    Err(SyncError::Protocol(_)) => {
                        // Not the page that continues our progress: say where we are.
                        let slot = match self.node.snapshot_progress(peer.node) {
                            Ok(Some(p)) if p.at == at => p.slot,
                            Ok(_) => 0,
                            Err(e) => {
                                return Err(Closed {
                                    reason: e.to_string(),
                                });
                            }
                        };
                        out.push(Msg::SnapshotAck {
                            at,
                            upto_slot: slot,
                        });
                    }
                    Err(e) => out.push(self.error(ErrorCode::ApplyFailed, e.to_string(), false)),
                }
            }
            Msg::SnapshotAck { at, upto_slot } => {
                if let Some(snap) = &mut self.snap_send
                    && snap.at == at
                {
                    match snap.in_flight {
                        Some((upto, done, _)) if upto_slot >= upto => {
                            snap.next_after = upto;
                            snap.in_flight = None;
                            if done {
                                // The log follows from the snapshot's position.
                                self.snap_send = None;
                                self.next_send = at + 1;
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
            }
            Msg::Ping { token } => {
                // "Everything we hold" includes local writes committed but not yet
                // taken over into the log: take them over first, so the peer's "sync
                // now" waits for them too.
                let closed = |e: SyncError| Closed {
                    reason: e.to_string(),
                };
                self.node.absorb().map_err(closed)?;
                let last = self.node.log_last().map_err(closed)?;
                out.push(Msg::Pong {
                    token,
                    log_last: last,
                });
            }
            Msg::Pong { token, log_last } => {
                if self.pong.is_none_or(|(t, _)| token >= t) {
                    self.pong = Some((token, log_last));
                }
            }
            Msg::Error {
                code,
                message,
                fatal,
            } => {
                self.stats.last_error = Some(format!("peer: {message}"));
                if code == ErrorCode::Forbidden {
                    // Our credential does not allow this: sending it again would only
                    // be refused again. Our writes stay pending; unless the refusal
                    // ends the session, we keep pulling.
                    self.push_refused = Some(message.clone());
                    self.in_flight.clear();
                    self.next_send = self.acked + 1;
                }
                if fatal {
                    self.closed = Some(format!("peer closed the session: {message}"));
                    return Err(Closed {
                        reason: format!("peer closed the session: {message}"),
                    });
                }
            }
        }
        for m in &out {
            self.stats.bytes_sent += m.encoded_len() as u64;
        }
        Ok(out)
    }

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

    /// The collections this session carries: the policy's, within the peer's grant.
    fn keep(&self) -> impl Fn(&str) -> bool + use<> {
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
            nodes.extend(state.recs.iter().map(|r| r.stamp.node()));
            nodes.extend(
                state
                    .defeated
                    .iter()
                    .flat_map(|d| [d.loser.node(), d.winner.node()]),
            );
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
        if let Some((_, _, sent)) = snap.in_flight {
            if now_us.saturating_sub(sent) <= resend_after {
                return Ok(Vec::new());
            }
            snap.in_flight = None;
        }
        let (docs, upto_slot, done) = self.node.snapshot_page(snap.next_after, limit, &keep)?;
        snap.in_flight = Some((upto_slot, done, now_us));
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

    fn poll_inner(&mut self, now_us: u64) -> Result<Vec<Msg>, Closed> {
        let closed = |e: SyncError| Closed {
            reason: e.to_string(),
        };
        let mut out = Vec::new();
        if self.closed.is_some() {
            return Ok(out);
        }
        if self.peer.is_none() {
            if let Some((hello, sent_us)) = &mut self.hello
                && now_us.saturating_sub(*sent_us) > self.cfg.resend_after_us
            {
                *sent_us = now_us;
                out.push(hello.clone());
            }
            return Ok(out);
        }
        let Some(peer) = self.peer.filter(|p| p.we_send) else {
            return Ok(out);
        };
        if let Err(e) = self
            .node
            .maybe_collect_garbage(now_us, self.node.options().gc_every_us)
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
            self.next_send = self.acked + 1;
            self.in_flight.clear();
            self.last_progress_us = now_us;
        }
        let keep = self.keep();
        let last = self.node.log_last().map_err(closed)?;
        let limit = self.cfg.batch_max.clamp(1, BATCH_WRITES_MAX);
        while self.in_flight.len() < self.cfg.window.max(1) && self.next_send <= last {
            let after = self.next_send - 1;
            let (items, upto) = match self.node.read_log(peer.node, after, limit, &keep) {
                Ok(r) => r,
                Err(SyncError::LogPruned { .. }) => {
                    // The peer needs more than the log holds: it bootstraps from a
                    // snapshot (resuming one it had started if that is still valid).
                    let at = self.node.log_last().map_err(closed)?;
                    let floor = self.node.log_floor().map_err(closed)?;
                    let (at, next_after) = match self.peer_resume.take() {
                        Some(p) if p.at >= floor && p.at <= at => (p.at, p.slot),
                        _ => (at, 0),
                    };
                    tracing::info!(peer = %peer.node, after, floor, at, "the peer needs more than the log holds: sending a snapshot");
                    self.in_flight.clear();
                    self.snap_send = Some(SnapSend {
                        at,
                        next_after,
                        in_flight: None,
                    });
                    out.extend(self.send_snapshot(now_us).map_err(closed)?);
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
            self.next_send = upto + 1;
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
}
