//! Relays: how two sync nodes reach each other. A transport turns into a [`Wire`], a
//! pair of bounded message channels; the connection driver only ever sees wires, so the
//! in-memory relay here and the network relays drive the same session code.
//!
//! Invariants:
//! - Every queue is bounded ([`WIRE_QUEUE`] messages each way, at most
//!   [`crate::proto::BATCH_WRITES_MAX`] writes a message), so a slow peer exerts
//!   back-pressure instead of growing memory.
//! - A transport that shares a byte budget among its connections attaches a permit to
//!   each message it delivers (held until the session has handled it) and hands the
//!   session its send budget (a permit taken before a message is queued, held until
//!   the transport has written it): what all sessions hold in messages is bounded by
//!   the budgets, not by the number of connections.
//! - A wire says what its peer may do ([`Grant`]); only a transport that authenticated
//!   the peer narrows it.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::grant::Grant;
use crate::proto::Msg;

/// Messages queued per direction of a wire.
pub const WIRE_QUEUE: usize = 16;
/// Connections waiting to be accepted by an in-memory listener.
pub const ACCEPT_QUEUE: usize = 64;

/// A boxed future (relays are trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A byte budget shared by many connections (what their queued and in-flight messages
/// may hold in memory at once).
#[derive(Clone, Debug)]
pub struct Budget {
    sem: Arc<Semaphore>,
    total: u32,
}

impl Budget {
    /// A budget of `bytes` (at most 4 GiB).
    #[must_use]
    pub fn new(bytes: usize) -> Budget {
        let total = u32::try_from(bytes).unwrap_or(u32::MAX).max(1);
        Budget {
            sem: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// Takes `bytes` of the budget (all of it for a message larger than the whole
    /// budget, so one message always fits), waiting until they are free. `None` if
    /// the budget was closed.
    pub async fn take(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(bytes)
            .unwrap_or(u32::MAX)
            .clamp(1, self.total);
        Arc::clone(&self.sem).acquire_many_owned(n).await.ok()
    }

    /// Bytes free now.
    #[must_use]
    pub fn available(&self) -> usize {
        self.sem.available_permits()
    }

    /// The budget's size in bytes.
    #[must_use]
    pub fn total(&self) -> usize {
        self.total as usize
    }
}

/// One message on a wire, with the share of a byte budget it holds (released when the
/// delivery is dropped: after the receiver handled it, or the writer wrote it).
#[derive(Debug)]
pub struct Delivery {
    pub msg: Msg,
    pub permit: Option<OwnedSemaphorePermit>,
}

impl Delivery {
    /// A message holding no budget.
    #[must_use]
    pub fn new(msg: Msg) -> Delivery {
        Delivery { msg, permit: None }
    }
}

/// One open connection: messages out, messages in.
#[derive(Debug)]
pub struct Wire {
    pub tx: mpsc::Sender<Delivery>,
    pub rx: mpsc::Receiver<Delivery>,
    /// Who is at the other end (for status and logs).
    pub peer_addr: String,
    /// What the peer may do (as the transport authenticated it).
    pub grant: Grant,
    /// The byte budget a message takes before it is queued on `tx` (`None`: none).
    pub send_budget: Option<Budget>,
}

impl Wire {
    /// Two wires connected to each other, each trusting the other as a peer.
    #[must_use]
    pub fn pair(a_name: &str, b_name: &str) -> (Wire, Wire) {
        let (a_tx, b_rx) = mpsc::channel(WIRE_QUEUE);
        let (b_tx, a_rx) = mpsc::channel(WIRE_QUEUE);
        (
            Wire {
                tx: a_tx,
                rx: a_rx,
                peer_addr: b_name.to_owned(),
                grant: Grant::peer(),
                send_budget: None,
            },
            Wire {
                tx: b_tx,
                rx: b_rx,
                peer_addr: a_name.to_owned(),
                grant: Grant::peer(),
                send_budget: None,
            },
        )
    }
}

/// Opens connections to one peer (a client's way to its server).
pub trait Relay: Send + Sync + 'static {
    /// Connects.
    ///
    /// # Errors
    /// The transport's (refused, unreachable, handshake failed, ...).
    fn connect(&self) -> BoxFuture<'_, io::Result<Wire>>;
    /// What it connects to, for status and logs (display text only: what this node
    /// remembers about the relay is keyed by [`Relay::target`]).
    fn describe(&self) -> String;
    /// The key under which this node remembers the peer it reached through the relay
    /// (see [`crate::SyncNode::peer_at`]). By default the description, which is what
    /// such keys have always been: a relay whose description may change while it
    /// still reaches the same peer overrides it with a stable name.
    fn target(&self) -> RelayTarget {
        RelayTarget::new(self.describe())
    }
}

/// The persisted key of a sync target: which relay a dialer used, so a restarted
/// dialer finds the peer it reached there (`SyncNode::peer_at`).
///
/// Invariant: its stored encoding is its name's UTF-8 bytes, exactly the bytes of the
/// relay descriptions stored as keys before this type existed (namespace
/// `sync.target`, docs/format.md), so existing databases keep resolving their targets.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RelayTarget(String);

impl RelayTarget {
    /// The target named `name` (e.g. `memory:hub`).
    #[must_use]
    pub fn new(name: impl Into<String>) -> RelayTarget {
        RelayTarget(name.into())
    }

    /// Its name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its stored key: the name's UTF-8 bytes.
    #[must_use]
    pub fn key(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// A stored key read back (read lossily should it not be UTF-8, which no key this
    /// crate writes is).
    #[must_use]
    pub fn from_key(key: &[u8]) -> RelayTarget {
        RelayTarget(String::from_utf8_lossy(key).into_owned())
    }
}

impl fmt::Display for RelayTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Accepts connections from peers (a server's side).
pub trait Listener: Send + 'static {
    /// Waits for the next connection.
    ///
    /// # Errors
    /// The transport's; an error of kind `BrokenPipe` means no more connections come.
    fn accept(&mut self) -> BoxFuture<'_, io::Result<Wire>>;
    /// Where it listens.
    fn describe(&self) -> String;
}

/// The dialing end of an in-memory relay (same process).
#[derive(Clone, Debug)]
pub struct MemoryRelay {
    name: String,
    accept: mpsc::Sender<Wire>,
}

/// The listening end of an in-memory relay.
#[derive(Debug)]
pub struct MemoryListener {
    name: String,
    incoming: mpsc::Receiver<Wire>,
}

/// An in-memory relay named `name`: connections made with the relay arrive at the
/// listener.
#[must_use]
pub fn memory(name: &str) -> (MemoryRelay, MemoryListener) {
    let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
    (
        MemoryRelay {
            name: name.to_owned(),
            accept: tx,
        },
        MemoryListener {
            name: name.to_owned(),
            incoming: rx,
        },
    )
}

impl Relay for MemoryRelay {
    fn connect(&self) -> BoxFuture<'_, io::Result<Wire>> {
        Box::pin(async move {
            let (ours, theirs) = Wire::pair("memory-client", &self.name);
            self.accept.send(theirs).await.map_err(|_| {
                io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("nobody listens on memory relay '{}'", self.name),
                )
            })?;
            Ok(ours)
        })
    }

    fn describe(&self) -> String {
        format!("memory:{}", self.name)
    }
}

impl Listener for MemoryListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<Wire>> {
        Box::pin(async move {
            self.incoming.recv().await.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "every relay to this listener is gone",
                )
            })
        })
    }

    fn describe(&self) -> String {
        format!("memory:{}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relay_target_is_stored_as_the_description_it_replaced() {
        let (relay, _listener) = memory("hub");
        let target = relay.target();
        assert_eq!(target.key(), relay.describe().as_bytes());
        assert_eq!(target.key(), b"memory:hub");
        assert_eq!(RelayTarget::from_key(target.key()), target);
        assert_eq!(target.to_string(), "memory:hub");
    }
}
