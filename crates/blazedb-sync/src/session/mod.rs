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
//!
//! Rooms: this file holds the session's configuration, state and accessors, its
//! opening `Hello` and the dispatch of what arrives; `receive.rs` the handler of each
//! message kind; `group.rs` messages that arrived together (batches applied in one
//! transaction); `send.rs` what to send next (batches, snapshot pages, resends).

mod group;
mod receive;
mod send;

pub use group::GROUP_BATCHES_MAX;

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use crate::authz;
use crate::clock::{NodeId, Role};
use crate::config::{ConnectionMode, SyncConfig};
use crate::error::SyncError;
use crate::grant::Grant;
use crate::node::{SnapshotPage, SyncNode};
pub use crate::peer::PeerInfo;
use crate::position::LogPos;
use crate::proto::{ErrorCode, Msg, PROTOCOL_VERSION, WINDOW_DEFAULT};
use crate::record::SnapshotProgress;
use crate::store::SyncStore;

/// Default wait for an ack before resending: 2 seconds.
pub const RESEND_AFTER_DEFAULT_US: u64 = 2_000_000;

/// How one session behaves.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub mode: ConnectionMode,
    /// Most writes per batch (capped at [`BATCH_WRITES_MAX`](crate::proto::BATCH_WRITES_MAX)).
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

impl SessionConfig {
    /// The session settings of one connection made with `config`.
    pub(crate) fn of(config: &SyncConfig) -> SessionConfig {
        SessionConfig {
            mode: config.mode,
            batch_max: config.advanced.batch_size,
            collections: config.collections.clone(),
            ..SessionConfig::default()
        }
    }
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
    /// The newest position of the peer's log it told us of (its `Hello`, `Ack`s and
    /// `Pong`s): with the cursor, how much of its log is still to come (a bootstrap's
    /// progress).
    pub peer_log_last: Option<LogPos>,
    pub last_error: Option<String>,
}

impl SessionStats {
    /// Adds the counters of `s` (not its readings: times, skew, errors).
    pub(crate) fn add_counts(&mut self, s: &SessionStats) {
        self.writes_sent += s.writes_sent;
        self.writes_received += s.writes_received;
        self.writes_rejected += s.writes_rejected;
        self.bytes_sent += s.bytes_sent;
        self.bytes_received += s.bytes_received;
        self.conflicts += s.conflicts;
    }

    /// Raises each counter to `floor`'s where that is higher.
    pub(crate) fn raise_counts_to(&mut self, floor: &SessionStats) {
        self.writes_sent = self.writes_sent.max(floor.writes_sent);
        self.writes_received = self.writes_received.max(floor.writes_received);
        self.writes_rejected = self.writes_rejected.max(floor.writes_rejected);
        self.bytes_sent = self.bytes_sent.max(floor.bytes_sent);
        self.bytes_received = self.bytes_received.max(floor.bytes_received);
        self.conflicts = self.conflicts.max(floor.conflicts);
    }
}

/// How a handler ended. The replies of one that stopped early (a refusal, a late
/// copy of a snapshot page) are not added to `SessionStats::bytes_sent`: the
/// accounting the session has always had, kept as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    Through,
    Early,
}

/// The fields of the peer's `Hello`.
pub(crate) struct PeerHello {
    pub version: u16,
    pub node: NodeId,
    pub role: Role,
    pub want_after: LogPos,
    pub accept: bool,
    pub send: bool,
    /// The peer's wall clock when it sent the `Hello` (µs).
    pub peer_now: u64,
    pub have_yours: bool,
    pub log_last: LogPos,
    pub resume: Option<SnapshotProgress>,
}

/// One session's state.
pub struct Session {
    node: Arc<dyn SyncStore>,
    cfg: SessionConfig,
    peer: Option<PeerInfo>,
    closed: Option<String>,
    /// Our log position the next batch starts at.
    next_send: LogPos,
    acked: LogPos,
    /// The `upto` of each batch sent and not yet acknowledged, oldest first.
    in_flight: VecDeque<LogPos>,
    last_progress_us: u64,
    cursor: LogPos,
    stats: SessionStats,
    /// Our `Hello`, resent until the peer's arrives (a lost message must not stall).
    hello: Option<HelloSent>,
    /// The newest answered `Ping`.
    pong: Option<Pong>,
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

/// Our `Hello` and when it last went out.
struct HelloSent {
    msg: Msg,
    sent_us: u64,
}

/// The peer's answer to a `Ping`.
#[derive(Clone, Copy)]
struct Pong {
    token: u64,
    /// The peer's log position when it answered.
    log_last: LogPos,
}

/// A snapshot being sent.
struct SnapSend {
    at: LogPos,
    /// The next page starts after this slot.
    next_after: u64,
    /// The page in flight, if one is.
    in_flight: Option<PageInFlight>,
}

/// A snapshot page sent and not yet acknowledged.
#[derive(Clone, Copy)]
struct PageInFlight {
    /// The last index slot the page covers.
    upto_slot: u64,
    /// Whether it is the snapshot's last page.
    done: bool,
    sent_us: u64,
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
        Session::with_store(Arc::new(node), cfg)
    }

    /// A session of the node `store` keeps the state of (see [`SyncStore`]).
    #[must_use]
    pub fn with_store(store: Arc<dyn SyncStore>, cfg: SessionConfig) -> Session {
        Session {
            node: store,
            cfg,
            peer: None,
            closed: None,
            next_send: LogPos::ZERO.next(),
            acked: LogPos::ZERO,
            in_flight: VecDeque::new(),
            last_progress_us: 0,
            cursor: LogPos::ZERO,
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
            .read_log(peer, self.next_send.prev(), 4, &|_| true);
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
            self.snap_send.as_ref().map(|s| (
                s.at,
                s.next_after,
                s.in_flight.map(|p| (p.upto_slot, p.done, p.sent_us))
            ))
        )
    }

    /// The peer's log position applied here.
    #[must_use]
    pub fn cursor(&self) -> LogPos {
        self.cursor
    }

    /// The answer to the newest `Ping`: (token, the peer's log position then).
    #[must_use]
    pub fn pong(&self) -> Option<(u64, LogPos)> {
        self.pong.map(|p| (p.token, p.log_last))
    }

    /// Whether everything the peer had when it answered `Ping` number `token` has been
    /// applied here (or the peer does not send to us).
    #[must_use]
    pub fn pulled(&self, token: u64) -> bool {
        match (self.peer, self.pong) {
            (Some(p), _) if !p.we_accept => true,
            (Some(_), Some(pong)) => pong.token >= token && self.cursor >= pong.log_last,
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
    pub fn acked(&self) -> LogPos {
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

    /// Whether a timer may become due without a message or a commit arriving (a hello
    /// unanswered, batches or a snapshot page unacknowledged, a snapshot being
    /// received): only then does an idle live session need its frequent tick.
    #[must_use]
    pub fn waiting_on_timers(&self) -> bool {
        self.closed.is_none()
            && (self.peer.is_none()
                || !self.in_flight.is_empty()
                || self.snap_send.is_some()
                || self.holding)
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
            None => LogPos::ZERO,
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
        self.hello = Some(HelloSent {
            msg: msg.clone(),
            sent_us: now_us,
        });
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
        let bytes = msg.encoded_len();
        self.stats.bytes_received += bytes as u64;
        tracing::debug!(peer = %self.peer_label(), msg = %msg.summary(), bytes, "received");
        let mut out = Vec::new();
        if let Some(refusal) = self.refusal(&msg) {
            out.push(refusal);
            return Ok(out);
        }
        let ended = match msg {
            Msg::Hello {
                version,
                node,
                role,
                want_after,
                accept,
                send,
                now_us: peer_now,
                have_yours,
                log_last,
                resume,
            } => {
                let hello = PeerHello {
                    version,
                    node,
                    role,
                    want_after,
                    accept,
                    send,
                    peer_now,
                    have_yours,
                    log_last,
                    resume,
                };
                self.on_hello(&hello, now_us, &mut out)?
            }
            Msg::Batch {
                after,
                upto,
                items,
                users,
            } => self.on_batch(after, upto, &items, &users, now_us, &mut out)?,
            Msg::Ack { upto, log_last } => self.on_ack(upto, log_last, now_us, &mut out)?,
            Msg::Want { after } => self.on_want(after, now_us, &mut out)?,
            Msg::Snapshot {
                at,
                after_slot,
                upto_slot,
                docs,
                done,
                collected,
                users,
            } => {
                let page = SnapshotPage {
                    at,
                    after_slot,
                    upto_slot,
                    docs: &docs,
                    done,
                    collected,
                };
                self.on_snapshot(page, &users, now_us, &mut out)?
            }
            Msg::SnapshotAck { at, upto_slot } => {
                self.on_snapshot_ack(at, upto_slot, now_us, &mut out)?
            }
            Msg::Ping { token } => self.on_ping(token, &mut out)?,
            Msg::Pong { token, log_last } => self.on_pong(Pong { token, log_last }),
            Msg::Error {
                code,
                message,
                fatal,
            } => self.on_error(code, message, fatal)?,
        };
        if ended == Ended::Through {
            for m in &out {
                self.stats.bytes_sent += m.encoded_len() as u64;
            }
        }
        Ok(out)
    }

    /// The peer's node id for logs, `-` before its hello.
    fn peer_label(&self) -> String {
        self.peer
            .map_or_else(|| "-".to_owned(), |p| p.node.to_string())
    }

    /// The `Error` to answer with if the peer's grant does not allow `msg` (see
    /// `authz.rs`); nothing of it is applied then.
    fn refusal(&mut self, msg: &Msg) -> Option<Msg> {
        let node = self.node.clone();
        let mut log_last = || node.log_last().map_err(|e| e.to_string());
        let r = authz::check_inbound(&self.cfg.grant, self.peer, msg, &mut log_last).err()?;
        tracing::warn!(peer = %self.peer_label(), who = self.cfg.grant.who(), fatal = r.fatal, reason = %r.message, "refused a message");
        Some(self.error(r.code, r.message, r.fatal))
    }
}

/// A database failure that ends the session.
fn db_closed(e: SyncError) -> Closed {
    Closed {
        reason: e.to_string(),
    }
}
