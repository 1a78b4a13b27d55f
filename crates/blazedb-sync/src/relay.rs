//! Relays: how two sync nodes reach each other. A transport turns into a [`Wire`], a
//! pair of bounded message channels; the connection driver only ever sees wires, so the
//! in-memory relay here and the network relays drive the same session code.
//!
//! Invariant: every queue is bounded ([`WIRE_QUEUE`] messages each way, at most
//! [`crate::proto::BATCH_WRITES_MAX`] writes a message), so a slow peer exerts
//! back-pressure instead of growing memory.

use std::future::Future;
use std::io;
use std::pin::Pin;

use tokio::sync::mpsc;

use crate::proto::Msg;

/// Messages queued per direction of a wire.
pub const WIRE_QUEUE: usize = 16;
/// Connections waiting to be accepted by an in-memory listener.
pub const ACCEPT_QUEUE: usize = 64;

/// A boxed future (relays are trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One open connection: messages out, messages in.
#[derive(Debug)]
pub struct Wire {
    pub tx: mpsc::Sender<Msg>,
    pub rx: mpsc::Receiver<Msg>,
    /// Who is at the other end (for status and logs).
    pub peer_addr: String,
}

impl Wire {
    /// Two wires connected to each other.
    #[must_use]
    pub fn pair(a_name: &str, b_name: &str) -> (Wire, Wire) {
        let (a_tx, b_rx) = mpsc::channel(WIRE_QUEUE);
        let (b_tx, a_rx) = mpsc::channel(WIRE_QUEUE);
        (
            Wire {
                tx: a_tx,
                rx: a_rx,
                peer_addr: b_name.to_owned(),
            },
            Wire {
                tx: b_tx,
                rx: b_rx,
                peer_addr: a_name.to_owned(),
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
    /// What it connects to, for status and logs.
    fn describe(&self) -> String;
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
