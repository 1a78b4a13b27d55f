//! The sync protocol's messages: the only wire types of the sync layer. Every transport
//! (in-memory, TCP, TLS, Unix socket) carries these; `docs/protocol.md` specifies them.
//! Encoded with postcard; append variants and fields, never reorder.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::clock::{NodeId, Role};
use crate::position::LogPos;
use crate::record::{Item, SnapDoc, SnapshotProgress};

/// Protocol version spoken by this build (2: batches and snapshot pages carry user
/// attributions; the `Forbidden` error).
pub const PROTOCOL_VERSION: u16 = 2;
/// Most writes in one batch.
pub const BATCH_WRITES_MAX: usize = 1_000;

/// Most writer nodes one batch or snapshot page names besides its receiver: a message
/// carries the principal of every node it names (`users`), and a receiver refuses
/// one that names more than [`BATCH_WRITES_MAX`] (the receiver itself is the one more).
/// Senders cut their messages to stay within it ([`NodesNamed`]).
pub(crate) const NODES_PER_MESSAGE_MAX: usize = BATCH_WRITES_MAX - 1;

/// The nodes the items of one message name so far (see [`NODES_PER_MESSAGE_MAX`]).
#[derive(Default)]
pub(crate) struct NodesNamed(BTreeSet<NodeId>);

impl NodesNamed {
    /// Adds the nodes an item names, unless the message already names some and would
    /// then name more than [`NODES_PER_MESSAGE_MAX`]: the item waits for the next
    /// message. The first item is always taken (so a reader always moves on): a single
    /// document with more writers than the bound, all retained, travels alone, and a
    /// receiver takes the principals of all its writers (`authz.rs`, `users_max`).
    pub(crate) fn admit(&mut self, nodes: impl IntoIterator<Item = NodeId>) -> bool {
        let new: BTreeSet<NodeId> = nodes.into_iter().filter(|n| !self.0.contains(n)).collect();
        if !self.0.is_empty() && self.0.len() + new.len() > NODES_PER_MESSAGE_MAX {
            return false;
        }
        self.0.extend(new);
        true
    }
}

/// Default batches a sender keeps in flight before it waits for an ack.
pub const WINDOW_DEFAULT: usize = 4;

/// One protocol message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Msg {
    /// Opens a session (each side sends one).
    Hello {
        version: u16,
        node: NodeId,
        role: Role,
        /// Send me your log after this position (what I have applied of it).
        want_after: LogPos,
        /// Whether I accept your log (false: push-only on my side).
        accept: bool,
        /// Whether I will send you my log (false: pull-only on my side).
        send: bool,
        /// My wall clock, µs since the epoch (for skew reports).
        now_us: u64,
        /// Whether I have your `Hello` already (if not, answer with yours: ours may be
        /// the only one that got through).
        have_yours: bool,
        /// My newest log position (pairs with `want_after` like an `Ack`).
        log_last: LogPos,
        /// A snapshot of yours I was receiving when we were cut off (your log
        /// position it is taken at, the index slot I reached), to resume it. Encoded
        /// as the pair `(at, slot)`.
        resume: Option<SnapshotProgress>,
    },
    /// Entries of the sender's log at positions `after + 1 ..= upto` (the writes the
    /// receiver lacks; filtered positions are covered but carry nothing).
    Batch {
        after: LogPos,
        upto: LogPos,
        items: Vec<Item>,
        /// The principal (user) of origins of `items`, and of the receiver itself, as
        /// far as the sender knows them (see `principal.rs`). Only a peer trusted to
        /// relay may send any.
        users: Vec<(NodeId, String)>,
    },
    /// The receiver has durably applied the sender's log up to `upto`; `log_last` is
    /// the receiver's own newest log position at that moment (what the sender must
    /// have applied before it may treat `upto` as stable, see `SyncNode::collect_garbage`).
    Ack { upto: LogPos, log_last: LogPos },
    /// The receiver saw a gap: resend the log after `after`.
    Want { after: LogPos },
    /// A page of the sender's document states, for a peer that needs more than the
    /// sender's log still holds (a new node, or one forgotten after long silence).
    /// The snapshot is taken at the sender's log position `at`; the page covers its
    /// document index slots `after_slot + 1 ..= upto_slot`; after the last page
    /// (`done`) the log follows from `at`.
    Snapshot {
        at: LogPos,
        after_slot: u64,
        upto_slot: u64,
        docs: Vec<SnapDoc>,
        done: bool,
        /// The sender collects tombstones: a receiver it has forgotten must drop its
        /// replicated state instead of merging it (see `SyncNode::apply_snapshot`).
        collected: bool,
        /// The principals of the writers of `docs`, as in `Batch::users`.
        users: Vec<(NodeId, String)>,
    },
    /// The receiver applied the snapshot taken at `at` up to `upto_slot` (or, if less
    /// than what was sent, stands there and wants the rest from there).
    SnapshotAck { at: LogPos, upto_slot: u64 },
    /// Asks for the sender's log position (heartbeat, and "sync now": once the cursor
    /// reaches the answer, everything the peer had then is here).
    Ping { token: u64 },
    /// Answers a `Ping` with this side's newest log position.
    Pong { token: u64, log_last: LogPos },
    /// Something went wrong; `fatal` closes the session.
    Error {
        code: ErrorCode,
        message: String,
        fatal: bool,
    },
}

/// Typed protocol errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The peer speaks another protocol version.
    Version,
    /// Stamps too far ahead of the receiver's clock; the batch was not applied.
    ClockSkew,
    /// A message broke the protocol.
    Protocol,
    /// The receiver failed to apply (its database refused); retried later.
    ApplyFailed,
    /// This side does not accept what was sent (its connection mode).
    Refused,
    /// The sender's log no longer holds what was asked for: bootstrap needed.
    LogPruned,
    /// Writes refused until the sender has taken the snapshot it is being sent.
    Bootstrapping,
    /// The peer's credential does not allow what it asked for or sent (a role above
    /// its grant, a write without write permission, a collection outside its grant,
    /// another user's node id, relaying as a client). Nothing of it was applied.
    Forbidden,
}

impl Msg {
    /// A short name for logs and metrics.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Msg::Hello { .. } => "hello",
            Msg::Batch { .. } => "batch",
            Msg::Ack { .. } => "ack",
            Msg::Want { .. } => "want",
            Msg::Snapshot { .. } => "snapshot",
            Msg::SnapshotAck { .. } => "snapshot-ack",
            Msg::Ping { .. } => "ping",
            Msg::Pong { .. } => "pong",
            Msg::Error { .. } => "error",
        }
    }

    /// What a log line says of the message: its kind and figures, never a document
    /// (`batch after=3.0 upto=9.0 items=6`).
    #[must_use]
    pub fn summary(&self) -> Summary<'_> {
        Summary(self)
    }

    /// The encoded size in bytes (what a network transport would carry).
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        postcard::experimental::serialized_size(self).unwrap_or(0)
    }
}

/// [`Msg::summary`].
#[derive(Debug)]
pub struct Summary<'a>(&'a Msg);

impl std::fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = self.0.kind();
        match self.0 {
            Msg::Hello {
                role,
                want_after,
                log_last,
                have_yours,
                ..
            } => write!(
                f,
                "{kind} role={role} want_after={want_after} log_last={log_last} \
                 have_yours={have_yours}"
            ),
            Msg::Batch {
                after, upto, items, ..
            } => write!(f, "{kind} after={after} upto={upto} items={}", items.len()),
            Msg::Ack { upto, log_last } => write!(f, "{kind} upto={upto} log_last={log_last}"),
            Msg::Want { after } => write!(f, "{kind} after={after}"),
            Msg::Snapshot {
                at,
                after_slot,
                upto_slot,
                docs,
                done,
                ..
            } => write!(
                f,
                "{kind} at={at} slots={after_slot}..{upto_slot} docs={} done={done}",
                docs.len()
            ),
            Msg::SnapshotAck { at, upto_slot } => write!(f, "{kind} at={at} upto_slot={upto_slot}"),
            Msg::Ping { token } => write!(f, "{kind} token={token}"),
            Msg::Pong { token, log_last } => write!(f, "{kind} token={token} log_last={log_last}"),
            Msg::Error { code, fatal, .. } => write!(f, "{kind} code={code:?} fatal={fatal}"),
        }
    }
}
