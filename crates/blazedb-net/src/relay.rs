//! Network relays: the dialing side ([`TcpRelay`], [`UnixRelay`]) and the accepting side
//! ([`NetListener`]), each producing the same [`Wire`] the in-memory relay produces, so
//! the sync engine runs unchanged over them.
//!
//! Invariants (accepting side):
//! - At most `max_connections` connections exist at once, handshaking ones included; one
//!   over the limit gets a `Busy` refusal (at most [`REFUSALS_MAX`] being written at a
//!   time; beyond that the socket is just closed) and costs nothing that stays.
//! - A connection that has not finished TLS and authentication within
//!   `handshake_timeout` is closed (a peer that sends nothing holds a slot that long and
//!   no longer).
//! - Plain TCP happens only when the configuration says so explicitly.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use blazedb_sync::Wire;
use blazedb_sync::relay::{BoxFuture, Listener, Relay};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::error::NetError;
use crate::frame::{Bytes32, RefuseCode};
use crate::handshake::{self, Credentials, ServerAuth};
use crate::pump::{self, Liveness};
use crate::tls::{EXPORTER_LABEL, ServerIdentity, ServerTrust};

/// Default limit on a listener's connections.
pub const CONNECTIONS_MAX_DEFAULT: usize = 1024;
/// Default time a connection has to finish TLS and authentication.
pub const HANDSHAKE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Refusals written concurrently at most (a flood beyond it is closed unanswered).
pub const REFUSALS_MAX: usize = 64;
/// Authenticated connections waiting for the server to take them.
const ACCEPTED_QUEUE: usize = 64;

/// How a TCP client secures its connection.
#[derive(Clone, Debug)]
pub enum Security {
    /// TLS 1.3, trusting the server as given.
    Tls(ServerTrust),
    /// No encryption: credentials are still never sent (only proofs), but the data is
    /// readable on the wire and the server is authenticated only by the shared secret.
    /// For loopback tests and trusted local links; must be asked for by name.
    PlainTcpInsecure,
}

/// Settings shared by the dialing relays.
#[derive(Clone, Debug)]
pub struct DialOptions {
    pub connect_timeout: Duration,
    pub handshake_timeout: Duration,
    pub liveness: Liveness,
}

impl Default for DialOptions {
    fn default() -> Self {
        DialOptions {
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: HANDSHAKE_TIMEOUT_DEFAULT,
            liveness: Liveness::default(),
        }
    }
}

/// Dials a sync server over TCP (TLS unless explicitly not).
#[derive(Clone, Debug)]
pub struct TcpRelay {
    host: String,
    port: u16,
    database: String,
    creds: Credentials,
    security: Security,
    opts: DialOptions,
}

impl TcpRelay {
    /// A relay to `database` on `host:port`.
    #[must_use]
    pub fn new(
        host: &str,
        port: u16,
        database: &str,
        security: Security,
        creds: Credentials,
    ) -> TcpRelay {
        TcpRelay {
            host: host.to_owned(),
            port,
            database: database.to_owned(),
            creds,
            security,
            opts: DialOptions::default(),
        }
    }

    /// With other timeouts.
    #[must_use]
    pub fn options(mut self, opts: DialOptions) -> TcpRelay {
        self.opts = opts;
        self
    }

    async fn dial(&self) -> Result<Wire, NetError> {
        let addr = format!("{}:{}", self.host, self.port);
        let tcp = tokio::time::timeout(
            self.opts.connect_timeout,
            tokio::net::TcpStream::connect(&addr),
        )
        .await
        .map_err(|_| NetError::Timeout("the TCP connection"))??;
        tcp.set_nodelay(true)?;
        let peer = tcp
            .peer_addr()
            .map_or_else(|_| addr.clone(), |a| a.to_string());
        let work = async {
            match &self.security {
                Security::Tls(trust) => {
                    let cfg = trust.client_config()?;
                    // A pinned certificate is checked by hash, not name; roots check the
                    // name dialed.
                    let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                        .map_err(|e| NetError::Config(format!("host name {:?}: {e}", self.host)))?;
                    let tls = tokio_rustls::TlsConnector::from(cfg)
                        .connect(name, tcp)
                        .await
                        .map_err(|e| NetError::Tls(e.to_string()))?;
                    let channel = exporter(tls.get_ref().1.export_keying_material(
                        [0u8; 32],
                        EXPORTER_LABEL,
                        None,
                    ))?;
                    let conn =
                        handshake::client(tls, Some(channel), &self.database, &self.creds).await?;
                    Ok(pump::spawn(conn, peer.clone(), self.opts.liveness, ()))
                }
                Security::PlainTcpInsecure => {
                    let conn = handshake::client(tcp, None, &self.database, &self.creds).await?;
                    Ok(pump::spawn(conn, peer.clone(), self.opts.liveness, ()))
                }
            }
        };
        tokio::time::timeout(self.opts.handshake_timeout, work)
            .await
            .map_err(|_| NetError::Timeout("the handshake"))?
    }
}

fn exporter(r: Result<[u8; 32], rustls::Error>) -> Result<Bytes32, NetError> {
    r.map_err(|e| NetError::Tls(format!("exporting the channel binding: {e}")))
}

impl Relay for TcpRelay {
    fn connect(&self) -> BoxFuture<'_, io::Result<Wire>> {
        Box::pin(async move { self.dial().await.map_err(io::Error::from) })
    }

    fn describe(&self) -> String {
        let scheme = match self.security {
            Security::Tls(_) => "tls",
            Security::PlainTcpInsecure => "tcp",
        };
        format!("{scheme}://{}:{}/{}", self.host, self.port, self.database)
    }
}

/// Dials a sync server on a Unix-domain socket (local; no TLS, proofs as over TCP).
#[cfg(unix)]
#[derive(Clone, Debug)]
pub struct UnixRelay {
    path: PathBuf,
    database: String,
    creds: Credentials,
    opts: DialOptions,
}

#[cfg(unix)]
impl UnixRelay {
    #[must_use]
    pub fn new(path: &Path, database: &str, creds: Credentials) -> UnixRelay {
        UnixRelay {
            path: path.to_owned(),
            database: database.to_owned(),
            creds,
            opts: DialOptions::default(),
        }
    }

    async fn dial(&self) -> Result<Wire, NetError> {
        let work = async {
            let s = tokio::net::UnixStream::connect(&self.path).await?;
            let conn = handshake::client(s, None, &self.database, &self.creds).await?;
            Ok(pump::spawn(
                conn,
                format!("unix:{}", self.path.display()),
                self.opts.liveness,
                (),
            ))
        };
        tokio::time::timeout(self.opts.handshake_timeout, work)
            .await
            .map_err(|_| NetError::Timeout("the handshake"))?
    }
}

#[cfg(unix)]
impl Relay for UnixRelay {
    fn connect(&self) -> BoxFuture<'_, io::Result<Wire>> {
        Box::pin(async move { self.dial().await.map_err(io::Error::from) })
    }

    fn describe(&self) -> String {
        format!("unix://{}/{}", self.path.display(), self.database)
    }
}

/// What a listener accepts.
pub struct ListenOptions {
    /// The database served (clients name it in their hello).
    pub database: String,
    pub auth_token: Option<String>,
    pub shared_secret: Option<String>,
    /// `None`: plain TCP (only if [`ListenOptions::plain_tcp_insecure`] said so).
    pub identity: Option<Arc<ServerIdentity>>,
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub liveness: Liveness,
}

impl std::fmt::Debug for ListenOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenOptions")
            .field("database", &self.database)
            .field("auth_token", &self.auth_token.as_ref().map(|_| ".."))
            .field("shared_secret", &self.shared_secret.as_ref().map(|_| ".."))
            .field("identity", &self.identity)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl ListenOptions {
    /// Serving `database` over TLS with `identity`, requiring the given credentials.
    #[must_use]
    pub fn tls(
        database: &str,
        identity: Arc<ServerIdentity>,
        auth_token: Option<&str>,
        shared_secret: Option<&str>,
    ) -> ListenOptions {
        ListenOptions::base(database, Some(identity), auth_token, shared_secret)
    }

    /// Serving without TLS (loopback tests, Unix sockets).
    #[must_use]
    pub fn plain_tcp_insecure(
        database: &str,
        auth_token: Option<&str>,
        shared_secret: Option<&str>,
    ) -> ListenOptions {
        ListenOptions::base(database, None, auth_token, shared_secret)
    }

    fn base(
        database: &str,
        identity: Option<Arc<ServerIdentity>>,
        auth_token: Option<&str>,
        shared_secret: Option<&str>,
    ) -> ListenOptions {
        ListenOptions {
            database: database.to_owned(),
            auth_token: auth_token.map(str::to_owned),
            shared_secret: shared_secret.map(str::to_owned),
            identity,
            max_connections: CONNECTIONS_MAX_DEFAULT,
            handshake_timeout: HANDSHAKE_TIMEOUT_DEFAULT,
            liveness: Liveness::default(),
        }
    }
}

/// Counters of a listener (for metrics).
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections that completed the handshake.
    pub accepted: AtomicU64,
    /// Refused for wrong or missing credentials.
    pub refused_auth: AtomicU64,
    /// Refused at the connection limit.
    pub refused_busy: AtomicU64,
    /// Failed otherwise during TLS or the handshake (protocol, timeout, I/O).
    pub handshake_failed: AtomicU64,
    /// Connections open now (handshaking ones included).
    pub open: AtomicU64,
}

/// Accepts authenticated sync connections on TCP or a Unix socket. Dropping it stops
/// accepting (established connections go on until the server ends them).
pub struct NetListener {
    incoming: mpsc::Receiver<Wire>,
    describe: String,
    local_addr: Option<SocketAddr>,
    stats: Arc<ListenerStats>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for NetListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetListener")
            .field("listening", &self.describe)
            .finish_non_exhaustive()
    }
}

impl Drop for NetListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    auth: ServerAuth,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    handshake_timeout: Duration,
    liveness: Liveness,
    slots: Arc<Semaphore>,
    refusals: Arc<Semaphore>,
    stats: Arc<ListenerStats>,
    out: mpsc::Sender<Wire>,
}

/// What the accept loop shares, the listener's queue, its counters.
type Parts = (Arc<Shared>, mpsc::Receiver<Wire>, Arc<ListenerStats>);

/// Holds a connection slot and counts the connection open until dropped.
struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    stats: Arc<ListenerStats>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl NetListener {
    /// Listens on `addr` (port 0 picks a free one; see [`NetListener::local_addr`]).
    ///
    /// # Errors
    /// [`NetError::Config`] without credentials, or plain TCP without a TLS identity not
    /// asked for; bind errors.
    pub async fn bind_tcp(addr: SocketAddr, opts: ListenOptions) -> Result<NetListener, NetError> {
        let tcp = tokio::net::TcpListener::bind(addr).await?;
        let local = tcp.local_addr()?;
        let scheme = if opts.identity.is_some() {
            "tls"
        } else {
            "tcp"
        };
        let (shared, rx, stats) = Self::shared(&opts)?;
        let task = tokio::spawn(async move {
            loop {
                match tcp.accept().await {
                    Ok((s, peer)) => {
                        let _ = s.set_nodelay(true);
                        admit(&shared, s, peer.to_string());
                    }
                    Err(e) => accept_error(e).await,
                }
            }
        });
        Ok(NetListener {
            incoming: rx,
            describe: format!("{scheme}://{local}/{}", opts.database),
            local_addr: Some(local),
            stats,
            task,
        })
    }

    /// Listens on the Unix socket `path` (created; it must not exist).
    ///
    /// # Errors
    /// As [`NetListener::bind_tcp`].
    #[cfg(unix)]
    pub fn bind_unix(path: &Path, opts: ListenOptions) -> Result<NetListener, NetError> {
        let unix = tokio::net::UnixListener::bind(path)?;
        let opts = ListenOptions {
            identity: None,
            ..opts
        };
        let (shared, rx, stats) = Self::shared(&opts)?;
        let task = tokio::spawn(async move {
            loop {
                match unix.accept().await {
                    Ok((s, _)) => admit(&shared, s, "unix".to_owned()),
                    Err(e) => accept_error(e).await,
                }
            }
        });
        Ok(NetListener {
            incoming: rx,
            describe: format!("unix://{}/{}", path.display(), opts.database),
            local_addr: None,
            stats,
            task,
        })
    }

    fn shared(opts: &ListenOptions) -> Result<Parts, NetError> {
        if opts.auth_token.is_none() && opts.shared_secret.is_none() {
            return Err(NetError::Config(
                "a sync server needs an auth token or a shared secret (or both)".into(),
            ));
        }
        if opts.auth_token.as_deref() == Some("") || opts.shared_secret.as_deref() == Some("") {
            return Err(NetError::Config(
                "an empty auth token or shared secret protects nothing".into(),
            ));
        }
        let acceptor = match &opts.identity {
            Some(id) => Some(tokio_rustls::TlsAcceptor::from(id.server_config()?)),
            None => None,
        };
        let (tx, rx) = mpsc::channel(ACCEPTED_QUEUE);
        let stats = Arc::new(ListenerStats::default());
        let shared = Arc::new(Shared {
            auth: ServerAuth::new(
                &opts.database,
                opts.auth_token.as_deref(),
                opts.shared_secret.as_deref(),
            ),
            acceptor,
            handshake_timeout: opts.handshake_timeout,
            liveness: opts.liveness,
            slots: Arc::new(Semaphore::new(opts.max_connections.max(1))),
            refusals: Arc::new(Semaphore::new(REFUSALS_MAX)),
            stats: Arc::clone(&stats),
            out: tx,
        });
        Ok((shared, rx, stats))
    }

    /// The TCP address listened on.
    #[must_use]
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// The listener's counters.
    #[must_use]
    pub fn stats(&self) -> Arc<ListenerStats> {
        Arc::clone(&self.stats)
    }
}

/// Out of file descriptors and the like: wait a little instead of spinning.
async fn accept_error(e: io::Error) {
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn admit<S>(shared: &Arc<Shared>, s: S, peer: String)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Ok(permit) = Arc::clone(&shared.slots).try_acquire_owned() else {
        shared.stats.refused_busy.fetch_add(1, Ordering::Relaxed);
        if let Ok(r) = Arc::clone(&shared.refusals).try_acquire_owned() {
            tokio::spawn(async move {
                let _r = r;
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    handshake::refuse_raw(
                        s,
                        RefuseCode::Busy,
                        "the server is at its connection limit",
                    ),
                )
                .await;
            });
        }
        return;
    };
    shared.stats.open.fetch_add(1, Ordering::Relaxed);
    let slot = Slot {
        _permit: permit,
        stats: Arc::clone(&shared.stats),
    };
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        let work = handshake_one(&shared, s, peer.clone(), slot);
        let r = tokio::time::timeout(shared.handshake_timeout, work).await;
        let r = r.unwrap_or(Err(NetError::Timeout("the handshake")));
        match r {
            Ok(wire) => {
                shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
                let _ = shared.out.send(wire).await;
            }
            Err(e) => {
                let counter = if e.refused() == Some(RefuseCode::Auth) {
                    &shared.stats.refused_auth
                } else {
                    &shared.stats.handshake_failed
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tracing::info!(peer = %peer, error = %e, "sync connection refused");
            }
        }
    });
}

async fn handshake_one<S>(shared: &Shared, s: S, peer: String, slot: Slot) -> Result<Wire, NetError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match &shared.acceptor {
        Some(acceptor) => {
            let tls = acceptor
                .accept(s)
                .await
                .map_err(|e| NetError::Tls(e.to_string()))?;
            let channel = exporter(tls.get_ref().1.export_keying_material(
                [0u8; 32],
                EXPORTER_LABEL,
                None,
            ))?;
            let conn = handshake::server(tls, Some(channel), &shared.auth).await?;
            Ok(pump::spawn(conn, peer, shared.liveness, slot))
        }
        None => {
            let conn = handshake::server(s, None, &shared.auth).await?;
            Ok(pump::spawn(conn, peer, shared.liveness, slot))
        }
    }
}

impl Listener for NetListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<Wire>> {
        Box::pin(async move {
            self.incoming
                .recv()
                .await
                .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "the listener stopped"))
        })
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}
