//! The accepting side: [`NetListener`] takes TCP (TLS, or plain by explicit opt-in) or
//! Unix-socket connections, runs TLS and the authenticating handshake, and hands the
//! sync layer one [`Wire`] per authenticated peer, carrying the peer's grant.
//!
//! Invariants:
//! - Two pools: connections still in TLS or the handshake (at most `max_handshakes`,
//!   and `max_handshakes_per_ip` from one address) and authenticated connections (at
//!   most `max_connections`). Anonymous sockets only ever hold the first, each for at
//!   most `handshake_timeout`, so they cannot take an authenticated client's place.
//! - Over a handshake limit a socket is closed at once, before TLS (nothing we could
//!   send would be readable). An authenticated client over `max_connections` reads a
//!   typed `Busy` refusal inside TLS.
//! - Every connection's messages are held against the listener's read and send
//!   budgets (`pump.rs`), so memory is bounded by the budgets, not by connections.
//! - [`ListenerControl::shutdown`] ends every connection promptly with
//!   `ShuttingDown`; an accept error (out of descriptors) backs off instead of spinning.
//! - Plain TCP happens only when the configuration says so explicitly; a listener
//!   without any credential does not start.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use blazedb_crypto::auth::CredentialKey;
use blazedb_sync::relay::{BoxFuture, Listener};
use blazedb_sync::{Budget, Wire};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use crate::admit::{ListenerStats, PerIp, Shared, accept_loop, watch_users};
use crate::error::NetError;
use crate::frame::FRAME_MAX;
use crate::handshake::ServerAuth;
use crate::pump::Liveness;
use crate::tls::ServerIdentity;
use crate::users::UserDirectory;

/// Default limit on authenticated connections (the sync layer's serving default).
pub use blazedb_sync::hub::CONNECTIONS_MAX_DEFAULT;
/// Default limit on connections in TLS or the handshake.
pub const HANDSHAKES_MAX_DEFAULT: usize = 256;
/// Default limit on connections in TLS or the handshake from one address.
pub const HANDSHAKES_PER_IP_DEFAULT: usize = 64;
/// Accepted range of the connection limits.
pub const CONNECTIONS_LIMIT_RANGE: std::ops::RangeInclusive<usize> = 1..=100_000;
pub use crate::handshake::{HANDSHAKE_TIMEOUT_DEFAULT, HANDSHAKE_TIMEOUT_RANGE};
/// Default budget for received messages held in memory, all connections together.
pub const READ_BUDGET_DEFAULT: usize = 64 << 20;
/// Default budget for messages queued to send, all connections together.
pub const SEND_BUDGET_DEFAULT: usize = 64 << 20;
/// Authenticated connections waiting for the server to take them.
const ACCEPTED_QUEUE: usize = 64;

/// What a listener accepts.
pub struct ListenOptions {
    /// The database served (clients name it in their hello).
    pub database: String,
    /// The shared auth token (clients proving it sync as clients).
    pub auth_token: Option<String>,
    /// The shared secret (required of every client when set).
    pub shared_secret: Option<String>,
    /// The server-to-server token: a peer proving it may sync as a server.
    pub peer_token: Option<String>,
    /// Named users (each a client with its own token and permissions).
    pub users: Option<Arc<UserDirectory>>,
    /// `None`: plain TCP (only if [`ListenOptions::plain_tcp_insecure`] said so).
    pub identity: Option<Arc<ServerIdentity>>,
    /// Authenticated connections at once.
    pub max_connections: usize,
    /// Connections in TLS or the handshake at once.
    pub max_handshakes: usize,
    /// Connections in TLS or the handshake at once from one address.
    pub max_handshakes_per_ip: usize,
    pub handshake_timeout: Duration,
    pub liveness: Liveness,
    /// Bytes of received messages held in memory, all connections together.
    pub read_budget: usize,
    /// Bytes of messages queued to send, all connections together.
    pub send_budget: usize,
}

impl std::fmt::Debug for ListenOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenOptions")
            .field("database", &self.database)
            .field("auth_token", &self.auth_token.as_ref().map(|_| ".."))
            .field("shared_secret", &self.shared_secret.as_ref().map(|_| ".."))
            .field("peer_token", &self.peer_token.as_ref().map(|_| ".."))
            .field("users", &self.users.as_ref().map(|u| u.len()))
            .field("identity", &self.identity)
            .field("max_connections", &self.max_connections)
            .field("max_handshakes", &self.max_handshakes)
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
            peer_token: None,
            users: None,
            identity,
            max_connections: CONNECTIONS_MAX_DEFAULT,
            max_handshakes: HANDSHAKES_MAX_DEFAULT,
            max_handshakes_per_ip: HANDSHAKES_PER_IP_DEFAULT,
            handshake_timeout: HANDSHAKE_TIMEOUT_DEFAULT,
            liveness: Liveness::default(),
            read_budget: READ_BUDGET_DEFAULT,
            send_budget: SEND_BUDGET_DEFAULT,
        }
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// [`NetError::Config`] naming the setting, its value and what is accepted.
    pub fn check(&self) -> Result<(), NetError> {
        let bad = |m: String| Err(NetError::Config(m));
        let empty = |s: &Option<String>| s.as_deref() == Some("");
        if empty(&self.auth_token) || empty(&self.shared_secret) || empty(&self.peer_token) {
            return bad("an empty auth token, shared secret or peer token protects nothing".into());
        }
        if self.auth_token.is_none()
            && self.shared_secret.is_none()
            && self.peer_token.is_none()
            && self.users.is_none()
        {
            return bad(
                "a sync server needs an auth token, a shared secret, users or a peer token".into(),
            );
        }
        for (what, v) in [
            ("max_connections", self.max_connections),
            ("max_handshakes", self.max_handshakes),
            ("max_handshakes_per_ip", self.max_handshakes_per_ip),
        ] {
            if !CONNECTIONS_LIMIT_RANGE.contains(&v) {
                return bad(format!(
                    "{what} = {v} is outside {}..={}",
                    CONNECTIONS_LIMIT_RANGE.start(),
                    CONNECTIONS_LIMIT_RANGE.end()
                ));
            }
        }
        if !HANDSHAKE_TIMEOUT_RANGE.contains(&self.handshake_timeout) {
            return bad(format!(
                "handshake timeout {:?} is outside {:?}..={:?}",
                self.handshake_timeout,
                HANDSHAKE_TIMEOUT_RANGE.start(),
                HANDSHAKE_TIMEOUT_RANGE.end()
            ));
        }
        self.liveness.check().map_err(NetError::Config)?;
        for (what, v) in [
            ("read budget", self.read_budget),
            ("send budget", self.send_budget),
        ] {
            if v < FRAME_MAX || v > u32::MAX as usize {
                return bad(format!(
                    "the {what} of {v} bytes must hold one largest frame ({FRAME_MAX} bytes) and be at most 4 GiB"
                ));
            }
        }
        Ok(())
    }
}

/// a server).
#[derive(Clone, Debug)]
pub struct ListenerControl {
    shutdown: Arc<watch::Sender<bool>>,
    read_budget: Budget,
    send_budget: Budget,
}

impl ListenerControl {
    /// Ends every connection with a `ShuttingDown` refusal (written if the peer reads
    /// within [`CLOSE_GRACE`](crate::pump::CLOSE_GRACE)).
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Bytes of the read budget free now.
    #[must_use]
    pub fn read_budget_available(&self) -> usize {
        self.read_budget.available()
    }

    /// Bytes of the send budget free now.
    #[must_use]
    pub fn send_budget_available(&self) -> usize {
        self.send_budget.available()
    }
}

/// Accepts authenticated sync connections on TCP or a Unix socket. Dropping it stops
/// accepting (established connections go on until the server ends them).
pub struct NetListener {
    incoming: mpsc::Receiver<Wire>,
    describe: String,
    local_addr: Option<SocketAddr>,
    stats: Arc<ListenerStats>,
    control: ListenerControl,
    tasks: Vec<JoinHandle<()>>,
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
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl NetListener {
    /// Listens on `addr` (port 0 picks a free one; see [`NetListener::local_addr`]).
    ///
    /// # Errors
    /// [`NetError::Config`] for settings [`ListenOptions::check`] refuses; bind errors.
    pub async fn bind_tcp(addr: SocketAddr, opts: ListenOptions) -> Result<NetListener, NetError> {
        let (shared, rx, stats, control) = Self::shared(&opts)?;
        let tcp = tokio::net::TcpListener::bind(addr).await?;
        let local = tcp.local_addr()?;
        let scheme = if opts.identity.is_some() {
            "tls"
        } else {
            "tcp"
        };
        let mut tasks = vec![accept_loop(tcp, &shared)];
        tasks.extend(watch_users(&shared));
        Ok(NetListener {
            incoming: rx,
            describe: format!("{scheme}://{local}/{}", opts.database),
            local_addr: Some(local),
            stats,
            control,
            tasks,
        })
    }

    /// Listens on the Unix socket `path` (created; it must not exist).
    ///
    /// # Errors
    /// As [`NetListener::bind_tcp`].
    #[cfg(unix)]
    pub fn bind_unix(path: &Path, opts: ListenOptions) -> Result<NetListener, NetError> {
        let opts = ListenOptions {
            identity: None,
            ..opts
        };
        let (shared, rx, stats, control) = Self::shared(&opts)?;
        let unix = tokio::net::UnixListener::bind(path)?;
        let mut tasks = vec![accept_loop(unix, &shared)];
        tasks.extend(watch_users(&shared));
        Ok(NetListener {
            incoming: rx,
            describe: format!("unix://{}/{}", path.display(), opts.database),
            local_addr: None,
            stats,
            control,
            tasks,
        })
    }

    #[allow(clippy::type_complexity)]
    fn shared(
        opts: &ListenOptions,
    ) -> Result<
        (
            Arc<Shared>,
            mpsc::Receiver<Wire>,
            Arc<ListenerStats>,
            ListenerControl,
        ),
        NetError,
    > {
        opts.check()?;
        let acceptor = match &opts.identity {
            Some(id) => Some(tokio_rustls::TlsAcceptor::from(id.server_config()?)),
            None => None,
        };
        let (tx, rx) = mpsc::channel(ACCEPTED_QUEUE);
        let stats = Arc::new(ListenerStats::default());
        let (shutdown_tx, shutdown) = watch::channel(false);
        let (read_budget, send_budget) =
            (Budget::new(opts.read_budget), Budget::new(opts.send_budget));
        let control = ListenerControl {
            shutdown: Arc::new(shutdown_tx),
            read_budget: read_budget.clone(),
            send_budget: send_budget.clone(),
        };
        let db = &opts.database;
        let shared = Arc::new(Shared {
            auth: ServerAuth {
                database: db.clone(),
                token: opts.auth_token.as_deref().map(CredentialKey::from_token),
                secret: opts
                    .shared_secret
                    .as_deref()
                    .map(|s| CredentialKey::from_secret(s, db)),
                peer: opts
                    .peer_token
                    .as_deref()
                    .map(CredentialKey::from_peer_token),
                users: opts.users.clone(),
            },
            acceptor,
            handshake_timeout: opts.handshake_timeout,
            liveness: opts.liveness,
            slots: Arc::new(Semaphore::new(opts.max_connections)),
            handshakes: Arc::new(Semaphore::new(opts.max_handshakes)),
            per_ip: PerIp::default(),
            per_ip_max: opts.max_handshakes_per_ip,
            read_budget,
            send_budget,
            shutdown,
            stats: Arc::clone(&stats),
            out: tx,
        });
        Ok((shared, rx, stats, control))
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

    /// A handle that ends the listener's connections (kept by whoever serves it).
    #[must_use]
    pub fn control(&self) -> ListenerControl {
        self.control.clone()
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
