//! [`Topology`]: several databases of one process and the sync connections between
//! them, with introspection. `connect_local` links two registered databases through an
//! in-memory relay; remote connections (TCP, TLS) plug the network relays into the
//! same handles.
//!
//! Invariant: a connection is a serving side and a dialing side; every connection the
//! topology made is stopped by [`Topology::disconnect`] or when the topology drops.

use std::fmt::Write as _;
use std::time::Duration;

use blazedb_engine::Database;

use crate::clock::Role;
use crate::config::ConnectionMode;
use crate::config::SyncConfig;
use crate::error::{Result, SyncError};
use crate::handle::{SyncHandle, SyncStatus};
use crate::hub::ServeHandle;
use crate::node::SyncNode;
use crate::position::LogPos;
use crate::relay::memory;

/// Where a registered node may connect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncMode {
    /// Only to other databases of this process.
    LocalOnly,
    /// Only to remote servers.
    RemoteOnly,
    /// Both.
    #[default]
    LocalAndRemote,
}

/// A registered node: its index in the topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeRef(pub usize);

struct Registered {
    name: String,
    mode: SyncMode,
    node: SyncNode,
}

struct Connection {
    from: NodeRef,
    to: NodeRef,
    mode: ConnectionMode,
    dialer: SyncHandle,
    server: ServeHandle,
}

/// A connection from a registered node to a server elsewhere (through a network relay).
struct RemoteConnection {
    from: NodeRef,
    /// The relay's description (`tls://host:port/db`), also the connection's name.
    to: String,
    mode: ConnectionMode,
    dialer: SyncHandle,
}

/// Databases of this process and the sync connections between them and to remote
/// servers.
#[derive(Default)]
pub struct Topology {
    nodes: Vec<Registered>,
    conns: Vec<Connection>,
    remotes: Vec<RemoteConnection>,
    config: SyncConfig,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

fn mirror(mode: ConnectionMode) -> ConnectionMode {
    match mode {
        ConnectionMode::Bidirectional => ConnectionMode::Bidirectional,
        ConnectionMode::PullOnly => ConnectionMode::PushOnly,
        ConnectionMode::PushOnly => ConnectionMode::PullOnly,
    }
}

impl Topology {
    /// An empty topology with the default [`SyncConfig`].
    #[must_use]
    pub fn new() -> Topology {
        Topology::default()
    }

    /// An empty topology whose nodes are enabled with `config`, and whose local
    /// connections made by [`Topology::connect_local`] use its connection knobs.
    #[must_use]
    pub fn with_config(config: SyncConfig) -> Topology {
        Topology {
            config,
            ..Topology::default()
        }
    }

    /// Enables sync on `db` with `role` and registers it as `name`.
    ///
    /// # Errors
    /// [`SyncError::RoleMismatch`]; [`SyncError::Protocol`] for a duplicate name;
    /// database errors.
    pub fn register(
        &mut self,
        db: &Database,
        name: &str,
        mode: SyncMode,
        role: Role,
    ) -> Result<NodeRef> {
        let config = self.config.clone();
        self.register_with(db, name, mode, role, &config)
    }

    /// As [`Topology::register`], with this node's own configuration.
    ///
    /// # Errors
    /// As [`Topology::register`].
    pub fn register_with(
        &mut self,
        db: &Database,
        name: &str,
        mode: SyncMode,
        role: Role,
        config: &SyncConfig,
    ) -> Result<NodeRef> {
        if self.nodes.iter().any(|n| n.name == name) {
            return Err(SyncError::Protocol(format!(
                "a node named '{name}' is registered already"
            )));
        }
        let node = SyncNode::enable(db, role, config)?;
        self.nodes.push(Registered {
            name: name.to_owned(),
            mode,
            node,
        });
        Ok(NodeRef(self.nodes.len() - 1))
    }

    fn get(&self, n: NodeRef) -> Result<&Registered> {
        self.nodes
            .get(n.0)
            .ok_or_else(|| SyncError::Protocol(format!("no node {}", n.0)))
    }

    /// Connects `from` to `to` in this process. `mode` is seen from `from`: `PullOnly`
    /// means `from` only receives `to`'s writes.
    ///
    /// # Errors
    /// An unknown or remote-only node, a self-connection, a duplicate connection;
    /// database errors.
    pub fn connect_local(
        &mut self,
        from: NodeRef,
        to: NodeRef,
        mode: ConnectionMode,
    ) -> Result<()> {
        let config = self.config.clone().mode(mode);
        self.connect_local_with(from, to, &config)
    }

    /// As [`Topology::connect_local`], with the connection knobs of `config`
    /// (collections, direction, batch size, live or periodic) applied on both sides.
    ///
    /// # Errors
    /// As [`Topology::connect_local`].
    pub fn connect_local_with(
        &mut self,
        from: NodeRef,
        to: NodeRef,
        config: &SyncConfig,
    ) -> Result<()> {
        let (a, b) = (self.get(from)?, self.get(to)?);
        if from == to {
            return Err(SyncError::Protocol(
                "a node cannot connect to itself".into(),
            ));
        }
        for n in [a, b] {
            if n.mode == SyncMode::RemoteOnly {
                return Err(SyncError::Protocol(format!(
                    "node '{}' syncs only with remote servers",
                    n.name
                )));
            }
        }
        if self
            .conns
            .iter()
            .any(|c| (c.from, c.to) == (from, to) || (c.from, c.to) == (to, from))
        {
            return Err(SyncError::Protocol(format!(
                "'{}' and '{}' are connected already",
                a.name, b.name
            )));
        }
        let (relay, listener) = memory(&format!("{}->{}", a.name, b.name));
        let server_config = config.clone().mode(mirror(config.mode));
        let server = ServeHandle::start(b.node.clone(), listener, &server_config, 1)?;
        let dialer = SyncHandle::start_with(a.node.clone(), std::sync::Arc::new(relay), config)?;
        self.conns.push(Connection {
            from,
            to,
            mode: config.mode,
            dialer,
            server,
        });
        Ok(())
    }

    /// Connects `from` to a remote server through `relay` (a network relay; see
    /// `blazedb-net`'s `connect_remote` for the usual way in). The connection is named
    /// by the relay's description.
    ///
    /// # Errors
    /// An unknown or local-only node, a second connection to the same remote;
    /// database errors.
    pub fn connect_relay(
        &mut self,
        from: NodeRef,
        relay: std::sync::Arc<dyn crate::relay::Relay>,
        config: &SyncConfig,
    ) -> Result<String> {
        let a = self.get(from)?;
        if a.mode == SyncMode::LocalOnly {
            return Err(SyncError::Protocol(format!(
                "node '{}' syncs only with databases of this process",
                a.name
            )));
        }
        let to = relay.describe();
        if self.remotes.iter().any(|r| r.from == from && r.to == to) {
            return Err(SyncError::Protocol(format!(
                "'{}' is connected to {to} already",
                a.name
            )));
        }
        let dialer = SyncHandle::start_with(a.node.clone(), relay, config)?;
        self.remotes.push(RemoteConnection {
            from,
            to: to.clone(),
            mode: config.mode,
            dialer,
        });
        Ok(to)
    }

    /// Closes `from`'s connection to the remote named `to`.
    ///
    /// # Errors
    /// [`SyncError::Protocol`] if there is no such connection.
    pub async fn disconnect_remote(&mut self, from: NodeRef, to: &str) -> Result<()> {
        let pos = self
            .remotes
            .iter()
            .position(|r| r.from == from && r.to == to)
            .ok_or_else(|| SyncError::Protocol(format!("not connected to {to}")))?;
        self.remotes.remove(pos).dialer.stop().await;
        Ok(())
    }

    /// Remote connections: (from, remote name, mode, status).
    #[must_use]
    pub fn remote_connections(&self) -> Vec<(NodeRef, String, ConnectionMode, SyncStatus)> {
        self.remotes
            .iter()
            .map(|r| (r.from, r.to.clone(), r.mode, r.dialer.status()))
            .collect()
    }

    /// Closes the connection between `a` and `b` (either direction).
    ///
    /// # Errors
    /// [`SyncError::Protocol`] if they are not connected.
    pub async fn disconnect(&mut self, a: NodeRef, b: NodeRef) -> Result<()> {
        let pos = self
            .conns
            .iter()
            .position(|c| (c.from, c.to) == (a, b) || (c.from, c.to) == (b, a))
            .ok_or_else(|| SyncError::Protocol("not connected".into()))?;
        let c = self.conns.remove(pos);
        c.dialer.stop().await;
        c.server.stop().await;
        Ok(())
    }

    /// Registered nodes: (ref, name, role).
    #[must_use]
    pub fn nodes(&self) -> Vec<(NodeRef, String, Role)> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (NodeRef(i), n.name.clone(), n.node.role()))
            .collect()
    }

    /// The sync node of a registered database.
    ///
    /// # Errors
    /// An unknown node.
    pub fn node(&self, n: NodeRef) -> Result<&SyncNode> {
        Ok(&self.get(n)?.node)
    }

    /// Connections: (from, to, mode, status seen from `from`).
    #[must_use]
    pub fn connections(&self) -> Vec<(NodeRef, NodeRef, ConnectionMode, SyncStatus)> {
        self.conns
            .iter()
            .map(|c| (c.from, c.to, c.mode, c.dialer.status()))
            .collect()
    }

    /// A readable description of nodes and connections.
    #[must_use]
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for n in &self.nodes {
            let _ = writeln!(
                s,
                "node {} ({}, {:?}, id {})",
                n.name,
                n.node.role(),
                n.mode,
                n.node.node_id()
            );
        }
        let local = self
            .conns
            .iter()
            .map(|c| (c.from, self.nodes[c.to.0].name.as_str(), c.mode, &c.dialer));
        let remote = self
            .remotes
            .iter()
            .map(|r| (r.from, r.to.as_str(), r.mode, &r.dialer));
        for (from, to, mode, dialer) in local.chain(remote) {
            let st = dialer.status();
            let _ = writeln!(
                s,
                "{} -> {} {:?}: {}, pending {}, sent {}, received {}",
                self.nodes[from.0].name,
                to,
                mode,
                if st.connected { "connected" } else { "offline" },
                st.pending_local_writes,
                st.writes_sent,
                st.writes_received
            );
        }
        s
    }

    /// Runs "sync now" on every connection until the whole topology is quiet: every
    /// connection has pushed and pulled everything (repeated, since a write relayed
    /// over one connection is news for the next).
    ///
    /// # Errors
    /// [`SyncError::TimedOut`] if a connection does not finish within `timeout`.
    pub async fn sync_all(&self, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let before: Vec<LogPos> = self
                .nodes
                .iter()
                .map(|n| n.node.log_last().unwrap_or_default())
                .collect();
            let dialers = self.conns.iter().map(|c| &c.dialer);
            for d in dialers.chain(self.remotes.iter().map(|r| &r.dialer)) {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                d.sync_now(left).await?;
            }
            let after: Vec<LogPos> = self
                .nodes
                .iter()
                .map(|n| n.node.log_last().unwrap_or_default())
                .collect();
            if before == after {
                return Ok(());
            }
        }
    }

    /// Stops every connection.
    pub async fn shutdown(&mut self) {
        for c in self.conns.drain(..) {
            c.dialer.stop().await;
            c.server.stop().await;
        }
        for r in self.remotes.drain(..) {
            r.dialer.stop().await;
        }
    }
}
