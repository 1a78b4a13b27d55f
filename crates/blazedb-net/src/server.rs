//! Sync servers: [`Server`] serves one open database on a TCP port (TLS by default);
//! [`ServerConfig`] and [`start`] open or create the database in a data directory
//! first. Clients reach one with [`RemoteNode`] and [`ConnectRemote::connect_remote`].
//!
//! Invariants:
//! - A server never starts without a credential (auth token, shared secret, users or a
//!   peer token), and never without TLS unless [`TlsSetup::PlainTcpInsecure`] was
//!   chosen.
//! - Stopping ends every session within about two seconds whatever clients do
//!   (connections are told `ShuttingDown`; sessions hear the stop even when blocked on
//!   a peer that does not read; stragglers are aborted), then flushes.
//! - A self-signed identity is generated once and kept (`tls/` in the database's
//!   directory): its fingerprint stays the same across restarts, so pinned clients
//!   keep working.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use blazedb_engine::Database;
use blazedb_sync::backend::NodeDb;
use blazedb_sync::{
    NodeRef, Role, ServeHandle, SyncConfig, SyncNode, SyncStatus, SyncStore, Topology,
};
use zeroize::Zeroizing;

use crate::admit::ListenerStats;
use crate::dial::{Security, TcpRelay};
use crate::error::NetError;
use crate::handshake::Credentials;
use crate::listener::{
    CONNECTIONS_MAX_DEFAULT, HANDSHAKE_TIMEOUT_DEFAULT, HANDSHAKES_MAX_DEFAULT,
    HANDSHAKES_PER_IP_DEFAULT, ListenOptions, ListenerControl, NetListener, READ_BUDGET_DEFAULT,
    SEND_BUDGET_DEFAULT,
};
use crate::pump::Liveness;
use crate::tls::{Fingerprint, ServerIdentity, ServerTrust};
use crate::users::{UserDirectory, users_path};

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
    node: SyncNode,
    serve: ServeHandle,
    addr: SocketAddr,
    stats: Arc<ListenerStats>,
    control: ListenerControl,
}

/// Where the served node's state lives.
#[derive(Clone)]
enum Served {
    /// An embedded database (the default).
    Database(Database),
    /// Another store (PostgreSQL for servers that scale out), shared with other
    /// server processes.
    Store(Arc<dyn NodeDb>),
}

/// A sync server for one database.
pub struct Server {
    served: Served,
    database_name: String,
    listen: SocketAddr,
    auth_token: Option<Zeroizing<String>>,
    shared_secret: Option<Zeroizing<String>>,
    peer_token: Option<Zeroizing<String>>,
    users: Option<Arc<UserDirectory>>,
    tls: TlsSetup,
    fingerprint: Option<Fingerprint>,
    /// Authenticated connections at once.
    pub max_connections: usize,
    /// Connections in TLS or the handshake at once, and from one address.
    pub max_handshakes: usize,
    pub max_handshakes_per_ip: usize,
    pub handshake_timeout: Duration,
    pub liveness: Liveness,
    /// Bytes of received / queued messages held in memory, all connections together.
    pub read_budget: usize,
    pub send_budget: usize,
    /// How the served database syncs (its database-wide knobs, and the connection
    /// knobs every client's connection uses on this side).
    pub sync: SyncConfig,
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
        Server::serving(
            Served::Database(database.clone()),
            TlsSetup::SelfSigned(database.path().join("tls")),
            port,
            database_name,
            auth_token,
            shared_secret,
        )
    }

    /// A server for the node whose state `store` keeps (see
    /// `blazedb_sync::backend`), served as `database_name`; as [`Server::new`], except
    /// that it has no directory of its own: give its TLS with [`Server::tls`].
    #[must_use]
    pub fn with_store(
        port: u16,
        store: Arc<dyn NodeDb>,
        database_name: &str,
        auth_token: Option<&str>,
        shared_secret: Option<&str>,
    ) -> Server {
        Server::serving(
            Served::Store(store),
            TlsSetup::PlainTcpInsecure,
            port,
            database_name,
            auth_token,
            shared_secret,
        )
    }

    fn serving(
        served: Served,
        tls: TlsSetup,
        port: u16,
        database_name: &str,
        auth_token: Option<&str>,
        shared_secret: Option<&str>,
    ) -> Server {
        Server {
            served,
            database_name: database_name.to_owned(),
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            auth_token: auth_token.map(|s| Zeroizing::new(s.to_owned())),
            shared_secret: shared_secret.map(|s| Zeroizing::new(s.to_owned())),
            peer_token: None,
            users: None,
            tls,
            fingerprint: None,
            max_connections: CONNECTIONS_MAX_DEFAULT,
            max_handshakes: HANDSHAKES_MAX_DEFAULT,
            max_handshakes_per_ip: HANDSHAKES_PER_IP_DEFAULT,
            handshake_timeout: HANDSHAKE_TIMEOUT_DEFAULT,
            liveness: Liveness::default(),
            read_budget: READ_BUDGET_DEFAULT,
            send_budget: SEND_BUDGET_DEFAULT,
            sync: SyncConfig::default(),
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

    /// Accepts server peers proving `token` (they may sync as servers and relay other
    /// nodes' writes: for server-to-server meshes). Configure the same token as the
    /// dialing server's [`Credentials::peer_token`].
    #[must_use]
    pub fn peer_token(mut self, token: &str) -> Server {
        self.peer_token = Some(Zeroizing::new(token.to_owned()));
        self
    }

    /// Accepts the named users of `users` (see [`UserDirectory`]).
    #[must_use]
    pub fn users(mut self, users: Arc<UserDirectory>) -> Server {
        self.users = Some(users);
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
        opts.peer_token = self.peer_token.as_deref().map(|t| t.to_string());
        opts.users.clone_from(&self.users);
        opts.max_connections = self.max_connections;
        opts.max_handshakes = self.max_handshakes;
        opts.max_handshakes_per_ip = self.max_handshakes_per_ip;
        opts.handshake_timeout = self.handshake_timeout;
        opts.liveness = self.liveness;
        opts.read_budget = self.read_budget;
        opts.send_budget = self.send_budget;
        let listener = NetListener::bind_tcp(self.listen, opts).await?;
        let addr = listener.local_addr().unwrap_or(self.listen);
        let stats = listener.stats();
        let control = listener.control();
        let (served, config) = (self.served.clone(), self.sync.clone());
        let node = tokio::task::spawn_blocking(move || match served {
            Served::Database(db) => SyncNode::enable(&db, Role::Server, &config),
            Served::Store(store) => SyncNode::enable_on(store, Role::Server, &config),
        })
        .await
        .map_err(|e| NetError::Config(format!("starting the sync node: {e}")))??;
        let serve = ServeHandle::start(node.clone(), listener, &self.sync, self.max_connections)?;
        let fingerprint = self
            .fingerprint
            .map_or_else(|| "none (plain TCP)".to_owned(), |f| f.to_string());
        tracing::info!(%addr, database = %self.database_name, %fingerprint, "sync server listening");
        *self.lock() = Some(Running {
            node,
            serve,
            addr,
            stats,
            control,
        });
        Ok(addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops accepting, ends every session (each apply is one transaction, so none is
    /// cut midway) within about two seconds whatever clients do, and flushes the
    /// database.
    ///
    /// # Errors
    /// The final flush's.
    pub async fn stop(&self) -> Result<(), NetError> {
        let running = self.lock().take();
        if let Some(r) = running {
            r.control.shutdown();
            r.serve.stop().await;
        }
        // A store other than the embedded database commits durably itself.
        if let Served::Database(db) = self.served.clone() {
            tokio::task::spawn_blocking(move || db.flush())
                .await
                .map_err(|e| NetError::Config(format!("flushing: {e}")))??;
        }
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

    /// The open connections. Each status reads the served node's state: for a server
    /// over another store than the embedded database (`Server::with_store`), call it
    /// off the async threads (`spawn_blocking`), as that store's calls block.
    #[must_use]
    pub fn connections(&self) -> Vec<SyncStatus> {
        self.lock()
            .as_ref()
            .map(|r| r.serve.connections())
            .unwrap_or_default()
    }

    /// Counters over every session since the start, ended ones included (they only
    /// grow; see `ServeHandle::totals`), while running.
    #[must_use]
    pub fn session_totals(&self) -> Option<blazedb_sync::SessionStats> {
        self.lock().as_ref().map(|r| r.serve.totals())
    }

    /// Each open session's own figures, without reading the node's state (see
    /// `ServeHandle::sessions`).
    #[must_use]
    pub fn sessions(&self) -> Vec<blazedb_sync::ConnStatus> {
        self.lock()
            .as_ref()
            .map(|r| r.serve.sessions())
            .unwrap_or_default()
    }

    /// The listener's counters (accepted, refused, open), while running.
    #[must_use]
    pub fn stats(&self) -> Option<Arc<ListenerStats>> {
        self.lock().as_ref().map(|r| Arc::clone(&r.stats))
    }

    /// The listener's control (shutdown, budgets free), while running.
    #[must_use]
    pub fn control(&self) -> Option<ListenerControl> {
        self.lock().as_ref().map(|r| r.control.clone())
    }

    /// The served node's state, while running.
    #[must_use]
    pub fn store(&self) -> Option<Arc<dyn SyncStore>> {
        self.lock().as_ref().map(|r| Arc::clone(r.serve.store()))
    }

    /// The served sync node (over the served database), while running.
    #[must_use]
    pub fn node(&self) -> Option<SyncNode> {
        self.lock().as_ref().map(|r| r.node.clone())
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
    // Named users, if `blazedb-server user add` made any for this database.
    let users = users_path(db.path());
    if users.exists() {
        let pw = config.password.clone();
        let dir = tokio::task::spawn_blocking(move || UserDirectory::open(&users, pw.as_bytes()))
            .await
            .map_err(|e| NetError::Config(format!("opening the users file: {e}")))??;
        server = server.users(dir);
    }
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
        config: &SyncConfig,
    ) -> Result<String, NetError>;
}

impl ConnectRemote for Topology {
    fn connect_remote(
        &mut self,
        node: NodeRef,
        remote: &RemoteNode,
        config: &SyncConfig,
    ) -> Result<String, NetError> {
        Ok(self.connect_relay(node, Arc::new(remote.relay()), config)?)
    }
}
