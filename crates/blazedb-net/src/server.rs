//! Sync servers: [`Server`] serves one open database on a TCP port (TLS by default);
//! [`ServerConfig`] and [`start`] open or create the database in a data directory
//! first. Clients reach one with [`RemoteNode`] and [`ConnectRemote::connect_remote`].
//!
//! Invariants:
//! - A server never starts without an auth token or a shared secret, and never without
//!   TLS unless [`TlsSetup::PlainTcpInsecure`] was chosen.
//! - A self-signed identity is generated once and kept (`tls/` in the database's
//!   directory): its fingerprint stays the same across restarts, so pinned clients
//!   keep working.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use blazedb_engine::Database;
use blazedb_sync::{
    NodeRef, Role, ServeHandle, SyncNode, SyncOptions, SyncPolicy, SyncStatus, Topology,
};
use zeroize::Zeroizing;

use crate::error::NetError;
use crate::handshake::Credentials;
use crate::pump::Liveness;
use crate::relay::{
    CONNECTIONS_MAX_DEFAULT, HANDSHAKE_TIMEOUT_DEFAULT, ListenOptions, ListenerStats, NetListener,
    Security, TcpRelay,
};
use crate::tls::{Fingerprint, ServerIdentity, ServerTrust};

/// Default port of a sync server.
pub const PORT_DEFAULT: u16 = 7447;

/// Where a server's TLS identity comes from.
#[derive(Clone, Debug)]
pub enum TlsSetup {
    /// Generated on first start and kept in this directory.
    SelfSigned(PathBuf),
    /// Supplied.
    Identity(Arc<ServerIdentity>),
    /// No TLS (loopback tests, trusted local links). Proofs still protect credentials.
    PlainTcpInsecure,
}

struct Running {
    serve: ServeHandle,
    addr: SocketAddr,
    stats: Arc<ListenerStats>,
}

/// A sync server for one database.
pub struct Server {
    db: Database,
    database_name: String,
    listen: SocketAddr,
    auth_token: Option<Zeroizing<String>>,
    shared_secret: Option<Zeroizing<String>>,
    tls: TlsSetup,
    fingerprint: Option<Fingerprint>,
    /// Connections at once (handshaking ones included).
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub liveness: Liveness,
    pub policy: SyncPolicy,
    pub sync_options: SyncOptions,
    running: Mutex<Option<Running>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("database", &self.database_name)
            .field("listen", &self.listen)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server for `database`, served as `database_name` on `port` of 127.0.0.1
    /// (see [`Server::listen_on`]), requiring `auth_token` and/or `shared_secret`, with a
    /// self-signed certificate kept in the database's directory. Call
    /// [`Server::start`].
    #[must_use]
    pub fn new(
        port: u16,
        database: &Database,
        database_name: &str,
        auth_token: Option<&str>,
        shared_secret: Option<&str>,
    ) -> Server {
        Server {
            db: database.clone(),
            database_name: database_name.to_owned(),
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            auth_token: auth_token.map(|s| Zeroizing::new(s.to_owned())),
            shared_secret: shared_secret.map(|s| Zeroizing::new(s.to_owned())),
            tls: TlsSetup::SelfSigned(database.path().join("tls")),
            fingerprint: None,
            max_connections: CONNECTIONS_MAX_DEFAULT,
            handshake_timeout: HANDSHAKE_TIMEOUT_DEFAULT,
            liveness: Liveness::default(),
            policy: SyncPolicy::default(),
            sync_options: SyncOptions::default(),
            running: Mutex::new(None),
        }
    }

    /// Listens on another address (`0.0.0.0` to accept from other machines).
    #[must_use]
    pub fn listen_on(mut self, ip: IpAddr) -> Server {
        self.listen.set_ip(ip);
        self
    }

    /// Uses another TLS setup.
    #[must_use]
    pub fn tls(mut self, tls: TlsSetup) -> Server {
        self.tls = tls;
        self
    }

    /// Starts serving; returns the address bound (port 0 picks a free port).
    ///
    /// # Errors
    /// [`NetError::Config`] (no credentials, a bad certificate), bind errors,
    /// [`NetError::Sync`] (the database syncs as a client).
    pub async fn start(&mut self) -> Result<SocketAddr, NetError> {
        if let Some(r) = self.lock().as_ref() {
            return Ok(r.addr);
        }
        let identity = match &self.tls {
            TlsSetup::SelfSigned(dir) => {
                let (id, fresh) = ServerIdentity::load_or_generate(dir)?;
                if fresh {
                    tracing::info!(dir = %dir.display(), "generated a self-signed TLS certificate");
                }
                Some(Arc::new(id))
            }
            TlsSetup::Identity(id) => Some(Arc::clone(id)),
            TlsSetup::PlainTcpInsecure => None,
        };
        self.fingerprint = identity.as_ref().map(|i| i.fingerprint());
        let token = self.auth_token.as_deref().map(String::as_str);
        let secret = self.shared_secret.as_deref().map(String::as_str);
        let mut opts = match identity {
            Some(id) => ListenOptions::tls(&self.database_name, id, token, secret),
            None => ListenOptions::plain_tcp_insecure(&self.database_name, token, secret),
        };
        opts.max_connections = self.max_connections;
        opts.handshake_timeout = self.handshake_timeout;
        opts.liveness = self.liveness;
        let listener = NetListener::bind_tcp(self.listen, opts).await?;
        let addr = listener.local_addr().unwrap_or(self.listen);
        let stats = listener.stats();
        let (db, sync_opts) = (self.db.clone(), self.sync_options.clone());
        let node =
            tokio::task::spawn_blocking(move || SyncNode::enable(&db, Role::Server, sync_opts))
                .await
                .map_err(|e| NetError::Config(format!("starting the sync node: {e}")))??;
        let serve = ServeHandle::start(node, listener, self.policy.clone(), self.max_connections)?;
        tracing::info!(%addr, database = %self.database_name, fingerprint = ?self.fingerprint, "sync server listening");
        *self.lock() = Some(Running { serve, addr, stats });
        Ok(addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops accepting, ends every session (each apply is one transaction, so none is
    /// cut midway), and flushes the database.
    ///
    /// # Errors
    /// The final flush's.
    pub async fn stop(&self) -> Result<(), NetError> {
        let running = self.lock().take();
        if let Some(r) = running {
            r.serve.stop().await;
        }
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| NetError::Config(format!("flushing: {e}")))??;
        Ok(())
    }

    /// The address served, while running.
    #[must_use]
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.lock().as_ref().map(|r| r.addr)
    }

    /// The TLS certificate's fingerprint (after [`Server::start`]; `None` without TLS).
    #[must_use]
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.fingerprint
    }

    /// The open connections.
    #[must_use]
    pub fn connections(&self) -> Vec<SyncStatus> {
        self.lock()
            .as_ref()
            .map(|r| r.serve.connections())
            .unwrap_or_default()
    }

    /// The listener's counters (accepted, refused, open), while running.
    #[must_use]
    pub fn stats(&self) -> Option<Arc<ListenerStats>> {
        self.lock().as_ref().map(|r| Arc::clone(&r.stats))
    }

    /// The served sync node, while running.
    #[must_use]
    pub fn node(&self) -> Option<SyncNode> {
        self.lock().as_ref().map(|r| r.serve.node().clone())
    }
}

/// A server to start with [`start`]: the database is opened (or created) in the data
/// directory.
#[derive(Clone)]
pub struct ServerConfig {
    pub database_name: String,
    pub password: Zeroizing<String>,
    /// Names the default data directory (`$XDG_DATA_HOME/blazedb/<project>`, or
    /// `~/.local/share/blazedb/<project>`).
    pub project: String,
    pub port: u16,
    pub auth_token: Option<String>,
    pub shared_secret: Option<String>,
    /// Overrides the default data directory.
    pub data_dir: Option<PathBuf>,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("database_name", &self.database_name)
            .field("project", &self.project)
            .field("port", &self.port)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// The default data directory of `project`.
///
/// # Errors
/// [`NetError::Config`] if neither `XDG_DATA_HOME` nor `HOME` is set.
pub fn default_data_dir(project: &str) -> Result<PathBuf, NetError> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share")))
        .ok_or_else(|| {
            NetError::Config("no data directory: set XDG_DATA_HOME or HOME, or give one".into())
        })?;
    Ok(base.join("blazedb").join(project))
}

/// Opens (or creates) the configured database and starts serving it.
///
/// # Errors
/// As [`Server::start`]; database errors (a wrong password, for one).
pub async fn start(config: ServerConfig) -> Result<Server, NetError> {
    let dir = match &config.data_dir {
        Some(d) => d.clone(),
        None => default_data_dir(&config.project)?,
    };
    std::fs::create_dir_all(&dir)?;
    let (d, name, pw) = (
        dir.clone(),
        config.database_name.clone(),
        config.password.clone(),
    );
    let db = tokio::task::spawn_blocking(move || Database::open(&d, &name, pw.as_bytes()))
        .await
        .map_err(|e| NetError::Config(format!("opening the database: {e}")))??;
    let mut server = Server::new(
        config.port,
        &db,
        &config.database_name,
        config.auth_token.as_deref(),
        config.shared_secret.as_deref(),
    );
    server.start().await?;
    Ok(server)
}

/// A server as a client names it.
#[derive(Clone, Debug)]
pub struct RemoteNode {
    pub host: String,
    pub port: u16,
    /// The database name the server serves.
    pub database: String,
    pub security: Security,
    pub credentials: Credentials,
}

impl RemoteNode {
    /// A TLS server whose certificate has `fingerprint`.
    #[must_use]
    pub fn pinned(
        host: &str,
        port: u16,
        database: &str,
        fingerprint: Fingerprint,
        credentials: Credentials,
    ) -> RemoteNode {
        RemoteNode {
            host: host.to_owned(),
            port,
            database: database.to_owned(),
            security: Security::Tls(ServerTrust::Pinned(fingerprint)),
            credentials,
        }
    }

    /// The relay that reaches it.
    #[must_use]
    pub fn relay(&self) -> TcpRelay {
        TcpRelay::new(
            &self.host,
            self.port,
            &self.database,
            self.security.clone(),
            self.credentials.clone(),
        )
    }
}

/// Connecting a [`Topology`]'s nodes to remote servers.
pub trait ConnectRemote {
    /// Connects registered node `node` to `remote` (reconnecting with backoff whenever
    /// the connection drops). Returns the connection's name.
    ///
    /// # Errors
    /// As `Topology::connect_relay`.
    fn connect_remote(
        &mut self,
        node: NodeRef,
        remote: &RemoteNode,
        policy: SyncPolicy,
    ) -> Result<String, NetError>;
}

impl ConnectRemote for Topology {
    fn connect_remote(
        &mut self,
        node: NodeRef,
        remote: &RemoteNode,
        policy: SyncPolicy,
    ) -> Result<String, NetError> {
        Ok(self.connect_relay(node, Arc::new(remote.relay()), policy)?)
    }
}
