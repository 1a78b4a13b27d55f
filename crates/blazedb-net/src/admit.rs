//! Admission: taking sockets from an OS listener, holding each to the handshake pools,
//! running TLS and the authenticating handshake, and handing each authenticated peer to
//! the listener's queue as a [`Wire`] with its pump running.
//!
//! Invariants:
//! - A socket holds a handshake slot (and one of its address's) from the moment it is
//!   taken until its handshake ends, whatever way it ends (`IpSlot` and the semaphore
//!   permit are dropped on every path, the timeout included).
//! - Authenticated-connection slots are taken only after the proofs (inside
//!   `handshake::server`), so an anonymous socket never holds one.
//! - The accept loop never spins: an accept error pauses it, longer each time up to
//!   [`ACCEPT_BACKOFF_MAX`].
//! - Every counter a connection raised (`open`, `handshaking`) is lowered when it ends
//!   (`Open` counts until dropped).

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use blazedb_sync::log_limit::LogLimit;
use blazedb_sync::{Budget, Wire};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use crate::error::NetError;
use crate::frame::{FRAME_MAX, RefuseCode, TRUSTED_FRAME_MAX};
use crate::handshake::{self, ServerAuth};
use crate::pump::{self, Liveness, PumpOptions, Revocation};
use crate::tls::{EXPORTER_LABEL, exporter};
use crate::users::USERS_POLL;

/// Longest pause of the accept loop after an error (out of descriptors, say).
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);

/// Counters of a listener (for metrics).
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections that completed the handshake.
    pub accepted: AtomicU64,
    /// Refused for wrong or missing credentials.
    pub refused_auth: AtomicU64,
    /// Refused or closed at a connection limit (handshakes, per address, authenticated).
    pub refused_busy: AtomicU64,
    /// Failed otherwise during TLS or the handshake (protocol, timeout, I/O).
    pub handshake_failed: AtomicU64,
    /// Connections open now (handshaking ones included).
    pub open: AtomicU64,
    /// Connections in TLS or the handshake now.
    pub handshaking: AtomicU64,
}

/// Connections in the handshake per address.
#[derive(Default)]
pub(crate) struct PerIp(Mutex<HashMap<IpAddr, usize>>);

/// One connection's place in the per-address count.
struct IpSlot {
    ip: IpAddr,
    shared: Arc<Shared>,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut m = self
            .shared
            .per_ip
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// What every connection of one listener shares: credentials, TLS, pools, budgets, the
/// shutdown signal, counters and the queue of authenticated wires.
pub(crate) struct Shared {
    pub(crate) auth: ServerAuth,
    pub(crate) acceptor: Option<tokio_rustls::TlsAcceptor>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) liveness: Liveness,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) handshakes: Arc<Semaphore>,
    pub(crate) per_ip: PerIp,
    pub(crate) per_ip_max: usize,
    pub(crate) read_budget: Budget,
    pub(crate) send_budget: Budget,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) stats: Arc<ListenerStats>,
    pub(crate) out: mpsc::Sender<Wire>,
}

impl Shared {
    fn ip_slot(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut m = self.per_ip.0.lock().unwrap_or_else(PoisonError::into_inner);
        let n = m.entry(ip).or_insert(0);
        if *n >= self.per_ip_max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            ip,
            shared: Arc::clone(self),
        })
    }
}

/// Counts a connection open until dropped (and handshaking until `done`).
struct Open {
    stats: Arc<ListenerStats>,
    handshaking: bool,
}

impl Open {
    fn new(stats: &Arc<ListenerStats>) -> Open {
        stats.open.fetch_add(1, Ordering::Relaxed);
        stats.handshaking.fetch_add(1, Ordering::Relaxed);
        Open {
            stats: Arc::clone(stats),
            handshaking: true,
        }
    }

    fn done(&mut self) {
        if std::mem::take(&mut self.handshaking) {
            self.stats.handshaking.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.done();
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Rereads the named users (their file, or the store's list) every [`USERS_POLL`], so a
/// revocation ends live sessions.
pub(crate) fn watch_users(shared: &Arc<Shared>) -> Option<JoinHandle<()>> {
    let users = shared.auth.users.clone()?;
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(USERS_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Logged when reading starts failing and when it works again, not every poll
        // (a store that is down fails every second).
        let mut failing = false;
        loop {
            tick.tick().await;
            let u = Arc::clone(&users);
            match tokio::task::spawn_blocking(move || u.refresh()).await {
                Ok(Ok(changed)) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!("the named users read again");
                    }
                    if changed {
                        tracing::info!("the named users changed: reloaded");
                    }
                }
                Ok(Err(e)) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(error = %e, "the named users no longer read or open; the users read before stay in force");
                    }
                }
                Err(_) => {}
            }
        }
    }))
}

/// A socket listener the accept loop takes connections from.
pub(crate) trait Accept: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The next connection, its peer's description and address (for the per-address
    /// limit).
    fn next(&self) -> impl Future<Output = io::Result<(Self::Io, String, IpAddr)>> + Send;
}

impl Accept for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    async fn next(&self) -> io::Result<(Self::Io, String, IpAddr)> {
        let (s, peer) = self.accept().await?;
        let _ = s.set_nodelay(true);
        Ok((s, peer.to_string(), peer.ip()))
    }
}

#[cfg(unix)]
impl Accept for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    async fn next(&self) -> io::Result<(Self::Io, String, IpAddr)> {
        let (s, _) = self.accept().await?;
        // Local peers share one address for the per-address limit.
        Ok((s, "unix".to_owned(), IpAddr::from([0, 0, 0, 0])))
    }
}

/// Takes connections from `listener` until aborted, admitting each.
pub(crate) fn accept_loop(listener: impl Accept, shared: &Arc<Shared>) -> JoinHandle<()> {
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        let mut backoff = ACCEPT_BACKOFF_MIN;
        loop {
            match listener.next().await {
                Ok((s, peer, ip)) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    admit(&shared, s, peer, ip);
                }
                Err(e) => backoff = accept_error(e, backoff).await,
            }
        }
    })
}

/// Out of file descriptors and the like: wait, longer each time, instead of spinning.
async fn accept_error(e: io::Error, backoff: Duration) -> Duration {
    tracing::warn!(error = %e, pause = ?backoff, "accept failed");
    tokio::time::sleep(backoff).await;
    (backoff * 2).min(ACCEPT_BACKOFF_MAX)
}

/// Refused connections are logged at WARN with the peer's address, at most one per
/// second of each kind (`LogLimit`): a flood of them must not fill the operator's disk,
/// and one kind must not hide another. Wrong or missing credentials:
static LOG_AUTH: LogLimit = LogLimit::new();
/// At a limit (connections, handshakes, handshakes from one address):
static LOG_BUSY: LogLimit = LogLimit::new();
/// TLS failures, timeouts, broken handshakes:
static LOG_FAILED: LogLimit = LogLimit::new();

fn admit<S>(shared: &Arc<Shared>, s: S, peer: String, ip: IpAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let busy = || {
        shared.stats.refused_busy.fetch_add(1, Ordering::Relaxed);
    };
    let Some(ip_slot) = shared.ip_slot(ip) else {
        busy();
        if let Some(left_out) = LOG_BUSY.allow() {
            tracing::warn!(peer = %peer, max = shared.per_ip_max, left_out, "connection refused: too many handshakes from this address");
        }
        return;
    };
    let Ok(handshake) = Arc::clone(&shared.handshakes).try_acquire_owned() else {
        busy();
        if let Some(left_out) = LOG_BUSY.allow() {
            tracing::warn!(peer = %peer, left_out, "connection refused: at the handshake limit");
        }
        return;
    };
    let open = Open::new(&shared.stats);
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        let work = handshake_one(&shared, s, peer.clone(), open);
        let r = tokio::time::timeout(shared.handshake_timeout, work).await;
        drop((handshake, ip_slot));
        match r.unwrap_or(Err(NetError::Timeout("the handshake"))) {
            Ok(wire) => {
                shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
                let _ = shared.out.send(wire).await;
            }
            Err(e) => {
                let (counter, limit) = match e.refused() {
                    Some(RefuseCode::Auth) => (&shared.stats.refused_auth, &LOG_AUTH),
                    Some(RefuseCode::Busy) => (&shared.stats.refused_busy, &LOG_BUSY),
                    _ => (&shared.stats.handshake_failed, &LOG_FAILED),
                };
                counter.fetch_add(1, Ordering::Relaxed);
                if let Some(left_out) = limit.allow() {
                    tracing::warn!(peer = %peer, error = %e, left_out, "sync connection refused");
                }
            }
        }
    });
}

/// The handshake's proofs over `io` (TLS or not), then the connection's pump; the
/// authenticated slot is taken only once the proofs verified.
async fn authenticate<S>(
    shared: &Arc<Shared>,
    io: S,
    channel: Option<crate::frame::Bytes32>,
    peer: String,
    mut open: Open,
) -> Result<Wire, NetError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let slots = Arc::clone(&shared.slots);
    let take = move || slots.try_acquire_owned().ok();
    let (conn, admitted, slot) = handshake::server(io, channel, &shared.auth, take).await?;
    open.done();
    Ok(pump::spawn(
        conn,
        peer,
        options(shared, admitted),
        (slot, open),
    ))
}

async fn handshake_one<S>(
    shared: &Arc<Shared>,
    s: S,
    peer: String,
    open: Open,
) -> Result<Wire, NetError>
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
            authenticate(shared, tls, Some(channel), peer, open).await
        }
        None => authenticate(shared, s, None, peer, open).await,
    }
}

fn options(shared: &Shared, admitted: handshake::Admitted) -> PumpOptions {
    let revocation = match (&shared.auth.users, admitted.user) {
        (Some(users), Some((name, id))) => Some(Revocation {
            changed: users.subscribe(),
            users: Arc::clone(users),
            name,
            id,
        }),
        _ => None,
    };
    PumpOptions {
        live: shared.liveness,
        frame_max: if admitted.grant.relay {
            TRUSTED_FRAME_MAX
        } else {
            FRAME_MAX
        },
        grant: admitted.grant,
        read_budget: Some(shared.read_budget.clone()),
        send_budget: Some(shared.send_budget.clone()),
        shutdown: Some(shared.shutdown.clone()),
        revocation,
    }
}
