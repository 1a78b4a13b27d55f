//! The hub: a node serving many peers (the server of hub-and-spoke), its accept loop
//! and registry of connections, one session per connection, all sharing the node.
//!
//! Invariants:
//! - At most `max_connections` sessions run; further connections are closed at once
//!   (a semaphore, not a queue, so a flood costs nothing that grows).
//! - Stopping stops accepting and ends every session within [`STOP_GRACE`], whatever
//!   peers do: sessions hear the stop even while waiting on a peer that does not read;
//!   one still running after the grace is aborted (an apply it started still commits
//!   or not as a whole: it is one transaction on its own thread).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinHandle;

use crate::config::SyncConfig;
use crate::conn::{ConnStatus, Control};
use crate::error::Result;
use crate::handle::{SyncStatus, status_of};
use crate::node::SyncNode;
use crate::relay::Listener;
use crate::session::SessionStats;
use crate::store::{CommitSignal, SyncStore};

/// Connections refused at the limit are logged at most once a second (see
/// `log_limit.rs`).
static LOG_AT_LIMIT: crate::log_limit::LogLimit = crate::log_limit::LogLimit::new();

/// Default connection limit of a server.
pub const CONNECTIONS_MAX_DEFAULT: usize = 1024;
/// How long stopping waits for sessions to end by themselves before aborting them.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

struct Registry {
    next: AtomicU64,
    conns: Mutex<Conns>,
}

/// The open connections, and the counters of those that ended: one lock, so a reader
/// of [`ServeHandle::totals`] sees an ending session either still open or already
/// counted as ended, never both or neither (the totals never go back).
#[derive(Default)]
struct Conns {
    open: BTreeMap<u64, (String, watch::Receiver<ConnStatus>)>,
    ended: SessionStats,
}

/// A running server. Dropping it stops it.
pub struct ServeHandle {
    node: Arc<dyn SyncStore>,
    registry: Arc<Registry>,
    stop_tx: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
    describe: String,
}

impl Drop for ServeHandle {
    fn drop(&mut self) {
        self.stop_tx.send_replace(true);
    }
}

impl std::fmt::Debug for ServeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeHandle")
            .field("listening", &self.describe)
            .finish_non_exhaustive()
    }
}

impl ServeHandle {
    /// Serves `node` to every peer that connects through `listener`.
    ///
    /// # Errors
    /// Database errors (registering the commit hook).
    pub fn start(
        node: SyncNode,
        listener: impl Listener,
        config: &SyncConfig,
        max_connections: usize,
    ) -> Result<ServeHandle> {
        ServeHandle::start_store(Arc::new(node), listener, config, max_connections)
    }

    /// Serves the node `store` keeps to every peer that connects through `listener`.
    ///
    /// # Errors
    /// Database errors (registering the commit hook).
    pub fn start_store(
        node: Arc<dyn SyncStore>,
        listener: impl Listener,
        config: &SyncConfig,
        max_connections: usize,
    ) -> Result<ServeHandle> {
        let registry = Arc::new(Registry {
            next: AtomicU64::new(1),
            conns: Mutex::new(Conns::default()),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let signal = Arc::new(node.commit_signal()?);
        let describe = listener.describe();
        let task = tokio::spawn(accept_loop(
            Arc::clone(&node),
            listener,
            config.clone(),
            max_connections.max(1),
            Arc::clone(&registry),
            stop_rx,
            signal,
        ));
        Ok(ServeHandle {
            node,
            registry,
            stop_tx,
            task: Mutex::new(Some(task)),
            describe,
        })
    }

    /// The served node's state.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn SyncStore> {
        &self.node
    }

    /// Where it listens.
    #[must_use]
    pub fn listening(&self) -> &str {
        &self.describe
    }

    /// The status of every open connection. Each reads the node's state; the
    /// registry's lock is held only to copy the sessions' own figures, so accepting
    /// and ending sessions never wait on those reads.
    #[must_use]
    pub fn connections(&self) -> Vec<SyncStatus> {
        let open: Vec<(String, ConnStatus)> = self
            .registry
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .open
            .values()
            .map(|(addr, rx)| (addr.clone(), rx.borrow().clone()))
            .collect();
        open.into_iter()
            .map(|(addr, st)| status_of(self.node.as_ref(), addr, &st, &SessionStats::default()))
            .collect()
    }

    /// Each open session's own figures (peer, cursor, acknowledged position,
    /// counters), read without touching the node's state: cheap enough for every
    /// metrics scrape of a server with many clients.
    #[must_use]
    pub fn sessions(&self) -> Vec<ConnStatus> {
        self.registry
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .open
            .values()
            .map(|(_, rx)| rx.borrow().clone())
            .collect()
    }

    /// Counters summed over every session since the start, ended ones included: they
    /// only grow (Prometheus counters). `last_sync_us`, `skew_us`, `peer_log_last` and
    /// `last_error` are left empty.
    #[must_use]
    pub fn totals(&self) -> SessionStats {
        let conns = self
            .registry
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut total = conns.ended.clone();
        for (_, rx) in conns.open.values() {
            total.add_counts(&rx.borrow().stats);
        }
        total
    }

    /// Stops accepting, ends every session and waits for them.
    pub async fn stop(&self) {
        crate::conn::stop_task(&self.stop_tx, &self.task).await;
    }
}

async fn accept_loop(
    node: Arc<dyn SyncStore>,
    mut listener: impl Listener,
    config: SyncConfig,
    max: usize,
    registry: Arc<Registry>,
    mut stop: watch::Receiver<bool>,
    signal: Arc<CommitSignal>,
) {
    let slots = Arc::new(Semaphore::new(max));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let wire = tokio::select! {
            _ = stop.changed() => break,
            w = listener.accept() => w,
        };
        let wire = match wire {
            Ok(w) => w,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            if let Some(left_out) = LOG_AT_LIMIT.allow() {
                tracing::warn!(peer = %wire.peer_addr, max, left_out, "connection refused: at the connection limit");
            }
            drop(wire);
            continue;
        };
        let id = registry.next.fetch_add(1, Ordering::Relaxed);
        let (status_tx, status_rx) = watch::channel(ConnStatus::default());
        registry
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .open
            .insert(id, (wire.peer_addr.clone(), status_rx));
        let mut ctl = Control {
            stop: stop.clone(),
            commits: config.live.then(|| signal.subscribe()),
            period: config.interval,
            wake: Arc::new(Notify::new()),
            ping: Arc::new(AtomicU64::new(0)),
            remember_as: None,
        };
        let (node, cfg, registry) = (
            Arc::clone(&node),
            crate::session::SessionConfig::of(&config),
            Arc::clone(&registry),
        );
        tasks.spawn(async move {
            let addr = wire.peer_addr.clone();
            let (end, _, stats) =
                crate::conn::run(node, cfg, wire, None, true, &mut ctl, &status_tx).await;
            tracing::info!(peer = %addr, end = ?end, "sync connection ended");
            let mut conns = registry
                .conns
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            conns.open.remove(&id);
            // The session's final counters; never below what was published while it
            // ran, so the totals never go back.
            let mut last = stats;
            last.raise_counts_to(&status_tx.borrow().stats);
            conns.ended.add_counts(&last);
            drop(conns);
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    let ended = tokio::time::timeout(STOP_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if ended.is_err() {
        tracing::warn!(
            sessions = tasks.len(),
            "sessions still running after the stop grace: aborting them"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}
