//! [`SyncHandle`]: a database syncing with one peer it dials (a client with its
//! server, or a peer), reconnecting with backoff.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use blazedb_core::Timestamp;
use blazedb_engine::Database;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::clock::{NodeId, Role};
use crate::config::SyncConfig;
use crate::conn::{ConnStatus, Control, End};
use crate::error::{Result, SyncError};
use crate::node::SyncNode;
use crate::position::LogPos;
use crate::record::ConflictEntry;
use crate::relay::Relay;
use crate::session::{PeerInfo, SessionStats};
use crate::store::{CommitSignal, SyncStore};

/// First reconnect delay.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Sync status of one connection (docs/semantics.md, "Status").
#[derive(Clone, Debug, PartialEq)]
pub struct SyncStatus {
    pub node: NodeId,
    pub role: Role,
    /// What this connection reaches (relay description).
    pub target: String,
    pub connected: bool,
    pub peer: Option<PeerInfo>,
    /// Local writes the peer has not confirmed yet.
    pub pending_local_writes: u64,
    /// When a batch was last applied or confirmed.
    pub last_sync: Option<Timestamp>,
    /// The peer's log position applied here (the server cursor, for a client).
    pub cursor: LogPos,
    /// Our log position the peer confirmed.
    pub acked: LogPos,
    pub writes_sent: u64,
    pub writes_received: u64,
    /// Received writes that lost a conflict here on arrival.
    pub writes_rejected: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Losses of this node's writes recorded through this connection.
    pub conflicts: u64,
    pub last_error: Option<String>,
    /// Why the peer refuses this side's writes, while it does (a permission this
    /// node's credential lacks; they stay pending, see [`crate::SyncError::Forbidden`]):
    /// an upload error, apart from the connection's.
    pub upload_refused: Option<String>,
    /// The peer's clock minus ours, measured at the handshake (µs).
    pub clock_skew_us: Option<i64>,
    /// The newest position of the peer's log it told us of (with `cursor`: how much
    /// of it is still to come).
    pub peer_log_last: Option<LogPos>,
}

/// How far the receiving side of the current connection is: figures for a progress
/// display, read without touching the database (see [`SyncHandle::progress`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncProgress {
    pub connected: bool,
    /// The peer, once it said hello.
    pub peer: Option<PeerInfo>,
    /// The peer's log position applied here.
    pub cursor: LogPos,
    /// The newest position of the peer's log it told us of.
    pub peer_log_last: Option<LogPos>,
    /// Writes applied from the peer on this connection.
    pub writes_received: u64,
    /// Bytes received on this connection.
    pub bytes_received: u64,
}

pub(crate) fn add_stats(total: &mut SessionStats, s: &SessionStats) {
    total.add_counts(s);
    if s.last_sync_us.is_some() {
        total.last_sync_us = s.last_sync_us;
    }
    if s.skew_us.is_some() {
        total.skew_us = s.skew_us;
    }
    if s.last_error.is_some() {
        total.last_error.clone_from(&s.last_error);
    }
}

pub(crate) fn status_of(
    node: &dyn SyncStore,
    target: String,
    conn: &ConnStatus,
    base: &SessionStats,
) -> SyncStatus {
    let mut t = base.clone();
    add_stats(&mut t, &conn.stats);
    let peer_node = conn.peer.map(|p| p.node);
    let acked = peer_node
        .and_then(|p| node.acked_by(p).ok())
        .unwrap_or(conn.acked);
    SyncStatus {
        node: node.node_id(),
        role: node.role(),
        target,
        connected: conn.connected,
        peer: conn.peer,
        pending_local_writes: node.own_writes_pending(acked).unwrap_or(0),
        last_sync: t
            .last_sync_us
            .map(|us| Timestamp(i64::try_from(us).unwrap_or(i64::MAX))),
        cursor: conn.cursor,
        acked,
        writes_sent: t.writes_sent,
        writes_received: t.writes_received,
        writes_rejected: t.writes_rejected,
        bytes_sent: t.bytes_sent,
        bytes_received: t.bytes_received,
        conflicts: t.conflicts,
        // While connected, the error that describes the sync is this session's; an
        // older session's (a disconnect since recovered from) is history.
        last_error: if conn.connected {
            conn.stats.last_error.clone()
        } else {
            t.last_error
        },
        upload_refused: conn.refused.clone(),
        clock_skew_us: t.skew_us,
        peer_log_last: conn.stats.peer_log_last,
    }
}

struct Inner {
    node: SyncNode,
    relay: Arc<dyn Relay>,
    config: SyncConfig,
    status_tx: watch::Sender<ConnStatus>,
    status_rx: watch::Receiver<ConnStatus>,
    /// Counters of sessions that ended.
    base: Mutex<SessionStats>,
    last_error: Mutex<Option<String>>,
    wake: Arc<Notify>,
    ping: Arc<AtomicU64>,
    signal: CommitSignal,
}

/// A database syncing with the peer its relay reaches. Dropping the handle stops it.
pub struct SyncHandle {
    inner: Arc<Inner>,
    stop_tx: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for SyncHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncHandle")
            .field("node", &self.inner.node)
            .field("target", &self.inner.relay.describe())
            .finish_non_exhaustive()
    }
}

impl Drop for SyncHandle {
    fn drop(&mut self) {
        self.stop_tx.send_replace(true);
    }
}

/// A small deterministic jitter source (per node), so reconnecting clients spread out.
fn jitter(d: Duration, seed: &mut u64) -> Duration {
    *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    // Between 50 % and 150 % of d.
    let frac = 0.5 + (z % 1000) as f64 / 1000.0;
    d.mul_f64(frac)
}

impl SyncHandle {
    /// Enables sync on `db` with `role` and `config` and starts syncing through `relay`.
    ///
    /// # Errors
    /// [`SyncError::RoleMismatch`]; database errors.
    pub async fn enable(
        db: &Database,
        relay: impl Relay,
        role: Role,
        config: SyncConfig,
    ) -> Result<SyncHandle> {
        let (db2, node_config) = (db.clone(), config.clone());
        let node = tokio::task::spawn_blocking(move || SyncNode::enable(&db2, role, &node_config))
            .await
            .map_err(SyncError::Stopped)??;
        Self::start_with(node, Arc::new(relay), &config)
    }

    /// Starts syncing an enabled node through `relay`, with the connection knobs of
    /// `config` (the node keeps the database-wide ones it was enabled with).
    ///
    /// # Errors
    /// Database errors (registering the commit hook).
    pub fn start_with(
        node: SyncNode,
        relay: Arc<dyn Relay>,
        config: &SyncConfig,
    ) -> Result<SyncHandle> {
        let (status_tx, status_rx) = watch::channel(ConnStatus::default());
        let signal = SyncStore::commit_signal(&node)?;
        let inner = Arc::new(Inner {
            node,
            relay,
            config: config.clone(),
            status_tx,
            status_rx,
            base: Mutex::new(SessionStats::default()),
            last_error: Mutex::new(None),
            wake: Arc::new(Notify::new()),
            ping: Arc::new(AtomicU64::new(0)),
            signal,
        });
        let (stop_tx, _) = watch::channel(false);
        let handle = SyncHandle {
            inner,
            stop_tx,
            task: Mutex::new(None),
        };
        handle.start();
        Ok(handle)
    }

    /// Starts (again) after [`SyncHandle::stop`]; does nothing if running.
    pub fn start(&self) {
        let mut task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        self.stop_tx.send_replace(false);
        let inner = Arc::clone(&self.inner);
        let stop = self.stop_tx.subscribe();
        *task = Some(tokio::spawn(dial_loop(inner, stop)));
    }

    /// Stops syncing (the connection closes; local writes go on and sync later).
    pub async fn stop(&self) {
        crate::conn::stop_task(&self.stop_tx, &self.task).await;
    }

    /// The node.
    #[must_use]
    pub fn node(&self) -> &SyncNode {
        &self.inner.node
    }

    /// The receiving side's progress on the current connection: cheap enough to
    /// poll for a progress display ([`SyncHandle::status`] reads the database).
    #[must_use]
    pub fn progress(&self) -> SyncProgress {
        let conn = self.inner.status_rx.borrow();
        SyncProgress {
            connected: conn.connected,
            peer: conn.peer,
            cursor: conn.cursor,
            peer_log_last: conn.stats.peer_log_last,
            writes_received: conn.stats.writes_received,
            bytes_received: conn.stats.bytes_received,
        }
    }

    /// The connection's status now.
    #[must_use]
    pub fn status(&self) -> SyncStatus {
        let conn = self.inner.status_rx.borrow().clone();
        let base = self
            .inner
            .base
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut s = status_of(&self.inner.node, self.inner.relay.describe(), &conn, &base);
        if !conn.connected
            && let Some(e) = self
                .inner
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        {
            s.last_error = Some(e);
        }
        s
    }

    /// Syncs now and waits until this side's writes are confirmed and everything the
    /// peer held when asked has arrived.
    ///
    /// # Errors
    /// [`SyncError::Forbidden`] once everything the peer held has arrived but it
    /// refused this side's writes (a permission this node's credential lacks; they stay
    /// pending); [`SyncError::TimedOut`] if sync does not complete within `timeout`
    /// (offline, or the peer refuses the connection); the status says why.
    pub async fn sync_now(&self, timeout: Duration) -> Result<SyncStatus> {
        let token = self.inner.ping.fetch_add(1, Ordering::AcqRel) + 1;
        self.inner.wake.notify_one();
        let mut rx = self.inner.status_rx.clone();
        let done = tokio::time::timeout(timeout, async {
            loop {
                {
                    let s = rx.borrow_and_update();
                    // Refused with the session ended (a role or identity this node's
                    // credential does not allow): asking again changes nothing.
                    if !s.connected
                        && let Some(why) = &s.refused
                    {
                        return Some(why.clone());
                    }
                    if s.connected && s.pulled_token >= token {
                        if let Some(why) = &s.refused {
                            return Some(why.clone());
                        }
                        if s.pushed {
                            return None;
                        }
                    }
                }
                // A connection that came up after the request asks again.
                self.inner.wake.notify_one();
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        match done {
            Ok(Some(why)) => Err(SyncError::Forbidden(why)),
            Ok(None) => Ok(self.status()),
            Err(_) => Err(SyncError::TimedOut {
                after: timeout,
                last_error: self.status().last_error,
            }),
        }
    }

    /// Up to `limit` entries of the conflict log after position `after`.
    ///
    /// # Errors
    /// Database errors.
    pub fn conflicts(&self, after: u64, limit: usize) -> Result<Vec<ConflictEntry>> {
        self.inner.node.conflicts(after, limit)
    }
}

async fn dial_loop(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let mut backoff = BACKOFF_MIN;
    let mut seed = inner.node.node_id().0;
    let target = inner.relay.target();
    let mut hint: Option<NodeId> = {
        let (node, target) = (inner.node.clone(), target.clone());
        tokio::task::spawn_blocking(move || node.peer_at(&target).ok().flatten())
            .await
            .ok()
            .flatten()
    };
    loop {
        if *stop.borrow() {
            break;
        }
        match inner.relay.connect().await {
            Ok(wire) => {
                // A refusal belongs to the session that heard it.
                inner.status_tx.send_modify(|s| s.refused = None);
                let mut ctl = Control {
                    stop: stop.clone(),
                    commits: inner.config.live.then(|| inner.signal.subscribe()),
                    period: inner.config.interval,
                    wake: Arc::clone(&inner.wake),
                    ping: Arc::clone(&inner.ping),
                    remember_as: Some(target.clone()),
                };
                let (end, peer, stats) = crate::conn::run(
                    Arc::new(inner.node.clone()),
                    crate::session::SessionConfig::of(&inner.config),
                    wire,
                    hint,
                    false,
                    &mut ctl,
                    &inner.status_tx,
                )
                .await;
                add_stats(
                    &mut inner.base.lock().unwrap_or_else(PoisonError::into_inner),
                    &stats,
                );
                inner.status_tx.send_modify(|s| {
                    s.connected = false;
                    s.stats = SessionStats::default();
                });
                if let Some(p) = peer {
                    hint = Some(p.node);
                    backoff = BACKOFF_MIN;
                }
                let why = match end {
                    End::Stopped => break,
                    End::Disconnected => "disconnected".to_owned(),
                    End::Closed(r) => r,
                };
                tracing::info!(target = %inner.relay.describe(), reason = %why, "sync connection ended");
                *inner
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(why);
            }
            Err(e) => {
                tracing::debug!(target = %inner.relay.describe(), error = %e, "sync connect failed");
                *inner
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(format!("connect: {e}"));
            }
        }
        let wait = jitter(backoff, &mut seed);
        backoff = (backoff * 2).min(BACKOFF_MAX);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
            () = inner.wake.notified() => {}
        }
    }
    inner.status_tx.send_modify(|s| s.connected = false);
}
