//! Runs one [`Session`] over one [`Wire`] until it ends; shared by dialing handles and
//! servers. Database work runs on the sync layer's database workers (`workers.rs`: a
//! fixed set of threads), never on the async workers.
//!
//! Invariants:
//! - Outgoing messages go through the wire's bounded queue (after taking their share
//!   of the wire's send budget): when the peer does not read, this task waits, and so
//!   does everything it would have sent — but it still hears a stop, so a stalled
//!   peer never holds up a shutdown.
//! - A received message keeps its share of the transport's read budget until the
//!   session has handled it.
//! - The session runs under the grant its wire carries (`authz.rs` checks each
//!   message against it).
//! - The status snapshot is published after every step, so observers (status APIs,
//!   "sync now") see the session as it is.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::clock::NodeId;
use crate::position::LogPos;
use crate::proto::Msg;
use crate::relay::{Delivery, RelayTarget, Wire};
use crate::session::{Closed, GROUP_BATCHES_MAX, PeerInfo, Session, SessionConfig, SessionStats};
use crate::store::SyncStore;

/// How often a session checks its timers (resends, hello retries).
pub const TICK: Duration = Duration::from_millis(200);

/// An idle live session still polls this often (a safety net: nothing is known to
/// need it).
pub const IDLE_POLL: Duration = Duration::from_secs(5);

/// A snapshot of one connection.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConnStatus {
    pub connected: bool,
    /// The other end's address (from the relay).
    pub peer_addr: String,
    pub peer: Option<PeerInfo>,
    pub stats: SessionStats,
    /// The peer's log position applied here.
    pub cursor: LogPos,
    /// Our log position the peer confirmed.
    pub acked: LogPos,
    /// Highest "sync now" token whose pull side is complete.
    pub pulled_token: u64,
    /// Everything we have is sent and confirmed.
    pub pushed: bool,
    /// The peer refused our writes for a permission this node lacks (they stay
    /// pending; see [`crate::SyncError::Forbidden`]).
    pub refused: Option<String>,
}

/// How a connection ended.
#[derive(Debug)]
pub(crate) enum End {
    /// Asked to stop.
    Stopped,
    /// The wire closed.
    Disconnected,
    /// The session refused to go on.
    Closed(String),
}

/// Signals `stop` and waits for the task in `task` (taken out) to end.
pub(crate) async fn stop_task(
    stop: &watch::Sender<bool>,
    task: &std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
) {
    stop.send_replace(true);
    let task = task
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(t) = task {
        let _ = t.await;
    }
}

/// Resolves once `stop` says stop (or its sender is gone).
pub(crate) async fn wait_stop(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// What a running connection listens to.
pub(crate) struct Control {
    pub stop: watch::Receiver<bool>,
    /// `None`: periodic mode (work only on ticks of `period`).
    pub commits: Option<watch::Receiver<u64>>,
    pub period: Duration,
    pub wake: Arc<Notify>,
    /// "Sync now" token requested (a `Ping` goes out when it grows).
    pub ping: Arc<AtomicU64>,
    /// A dialer's relay description: the peer is remembered under it as soon as it
    /// says hello (see `SyncNode::peer_at`), so a process killed mid-session still
    /// resumes from its cursors after a restart.
    pub remember_as: Option<RelayTarget>,
}

async fn blocking<T: Send + 'static>(
    session: Session,
    f: impl FnOnce(&mut Session) -> T + Send + 'static,
) -> (Option<Session>, Option<T>) {
    match crate::workers::run(move || {
        let mut s = session;
        let r = f(&mut s);
        (s, r)
    })
    .await
    {
        Some((s, r)) => (Some(s), Some(r)),
        None => {
            tracing::error!("sync session task failed (a panic in its database work)");
            (None, None)
        }
    }
}

/// Why a send did not happen.
enum NotSent {
    /// The wire closed.
    Closed,
    /// A stop came first.
    Stopped,
}

impl NotSent {
    fn end(self) -> End {
        match self {
            NotSent::Closed => End::Disconnected,
            NotSent::Stopped => End::Stopped,
        }
    }
}

/// Sends `m` on `wire`: takes its share of the send budget, then a place in the
/// queue, listening for a stop all along.
async fn send(wire: &Wire, m: Msg, stop: &mut watch::Receiver<bool>) -> Result<(), NotSent> {
    tracing::debug!(peer = %wire.peer_addr, msg = %m.summary(), "sending");
    let permit = match &wire.send_budget {
        None => None,
        Some(budget) => tokio::select! {
            biased;
            () = wait_stop(stop) => return Err(NotSent::Stopped),
            p = budget.take(m.encoded_len()) => Some(p.ok_or(NotSent::Closed)?),
        },
    };
    tokio::select! {
        biased;
        () = wait_stop(stop) => Err(NotSent::Stopped),
        r = wire.tx.send(Delivery { msg: m, permit }) => r.map_err(|_| NotSent::Closed),
    }
}

fn snapshot(s: &Session, peer_addr: &str, pushed: bool, asked: u64) -> ConnStatus {
    let pulled_token = if asked > 0 && s.pulled(asked) {
        asked
    } else {
        0
    };
    ConnStatus {
        connected: true,
        peer_addr: peer_addr.to_owned(),
        peer: s.peer(),
        stats: s.stats().clone(),
        cursor: s.cursor(),
        acked: s.acked(),
        pulled_token,
        pushed,
        refused: s.push_refused().map(str::to_owned),
    }
}

/// Runs a session of `node` over `wire` until it ends; returns how, and the peer if
/// one said hello. The accepting side (`hint: None`, `accepting`) waits for the
/// dialer's hello before sending its own, so its hello names its cursor for that peer
/// (sent blind, it would ask for everything and the dialer would resend it).
pub(crate) async fn run(
    node: Arc<dyn SyncStore>,
    mut cfg: SessionConfig,
    mut wire: Wire,
    hint: Option<NodeId>,
    accepting: bool,
    ctl: &mut Control,
    status: &watch::Sender<ConnStatus>,
) -> (End, Option<PeerInfo>, SessionStats) {
    let now = || (node.config().advanced.clock)();
    cfg.grant = wire.grant.clone();
    // Boxed: the opening's state would otherwise stay part of this future, so of every
    // connection's memory, for the whole session (measured: 3.6 KB unboxed, 2.7 KB).
    let opening = Box::pin(open(&node, cfg, &mut wire, hint, accepting, ctl));
    let (mut session, mut first) = match opening.await {
        Ok(opened) => opened,
        Err((end, stats)) => return (end, None, stats),
    };
    let mut last_period = tokio::time::Instant::now();
    let mut sent_ping = 0u64;
    let mut commits = ctl.commits.clone();
    loop {
        // A live session with no timer that can expire on its own (no hello, batch or
        // page unanswered) sleeps until its safety-net poll: commits and messages wake
        // it. Ten thousand sessions ticking every 200 ms were 50,000 wake-ups a second
        // on the server doing nothing.
        let nap = if commits.is_some() && !session.waiting_on_timers() {
            IDLE_POLL.saturating_sub(last_period.elapsed()).max(TICK)
        } else {
            ctl.period.min(TICK)
        };
        let step: Option<Delivery> = if let Some(m) = first.take() {
            Some(m)
        } else {
            tokio::select! {
                biased;
                changed = ctl.stop.changed() => {
                    if changed.is_err() || *ctl.stop.borrow() {
                        return (End::Stopped, session.peer(), session.stats().clone());
                    }
                    continue;
                }
                m = wire.rx.recv() => match m {
                    None => return (End::Disconnected, session.peer(), session.stats().clone()),
                    Some(m) => Some(m),
                },
                Some(()) = async { match commits.as_mut() { Some(c) => c.changed().await.ok(), None => std::future::pending().await } } => None,
                () = ctl.wake.notified() => None,
                () = tokio::time::sleep(nap) => {
                    let asked = ctl.ping.load(Ordering::Acquire) > sent_ping;
                    if commits.is_none() && last_period.elapsed() < ctl.period && !asked {
                        // Periodic mode between periods: timers only, no new data.
                        continue;
                    }
                    if commits.is_some()
                        && !asked
                        && !session.timers_due(now())
                        && last_period.elapsed() < IDLE_POLL
                    {
                        // Live and idle: commits and messages wake the session; a
                        // poll now would only read the database (on a blocking
                        // thread) to find nothing, a thousand times a second on a
                        // server with a thousand clients.
                        continue;
                    }
                    last_period = tokio::time::Instant::now();
                    None
                }
            }
        };
        // Messages already queued behind this one are handled with it: batches that
        // continue one another are applied in one transaction (`session/group.rs`).
        let mut step: Vec<Delivery> = step.into_iter().collect();
        while !step.is_empty() && step.len() < GROUP_BATCHES_MAX {
            match wire.rx.try_recv() {
                Ok(d) => step.push(d),
                Err(_) => break,
            }
        }
        let t = now();
        let asked = ctl.ping.load(Ordering::Acquire);
        let (s, r) = blocking(session, move |s| {
            let out = if step.is_empty() {
                s.poll(t)
            } else {
                // The deliveries' budgets are released once the messages are handled.
                let (msgs, permits): (Vec<Msg>, Vec<_>) =
                    step.into_iter().map(|d| (d.msg, d.permit)).unzip();
                let out = s.on_messages(msgs, t);
                drop(permits);
                out
            };
            let pushed = s.idle().unwrap_or(false);
            (out, pushed)
        })
        .await;
        let (Some(s), Some((out, pushed))) = (s, r) else {
            return (
                End::Closed("the session task failed".into()),
                None,
                SessionStats::default(),
            );
        };
        session = s;
        let mut out = match out {
            Ok(out) => out,
            Err(Closed { reason }) => {
                status.send_replace(ConnStatus {
                    connected: false,
                    ..snapshot(&session, &wire.peer_addr, pushed, asked)
                });
                return (End::Closed(reason), session.peer(), session.stats().clone());
            }
        };
        if asked > sent_ping && session.peer().is_some() {
            out.push(Msg::Ping { token: asked });
            sent_ping = asked;
        }
        for m in out {
            if let Err(e) = send(&wire, m, &mut ctl.stop).await {
                return (e.end(), session.peer(), session.stats().clone());
            }
        }
        remember_peer(&node, &session, ctl).await;
        status.send_replace(snapshot(&session, &wire.peer_addr, pushed, asked));
        if let Some(reason) = session.closed() {
            return (
                End::Closed(reason.to_owned()),
                session.peer(),
                session.stats().clone(),
            );
        }
    }
}

/// Opens the session: the accepting side first reads the dialer's hello (returned, to
/// be handled first), then our hello goes out. On failure, how the connection ended.
async fn open(
    node: &Arc<dyn SyncStore>,
    cfg: SessionConfig,
    wire: &mut Wire,
    hint: Option<NodeId>,
    accepting: bool,
    ctl: &mut Control,
) -> Result<(Session, Option<Delivery>), (End, SessionStats)> {
    // The first message (the accepting side reads it before starting the session)
    // keeps its budget until it has been handled, like every other.
    let mut first: Option<Delivery> = None;
    let hint = if accepting && hint.is_none() {
        let m = tokio::select! {
            biased;
            _ = wait_stop(&mut ctl.stop) => return Err((End::Stopped, SessionStats::default())),
            m = wire.rx.recv() => m,
        };
        let Some(m) = m else {
            return Err((End::Disconnected, SessionStats::default()));
        };
        let peer = match &m.msg {
            Msg::Hello { node, .. } => Some(*node),
            _ => None,
        };
        first = Some(m);
        peer
    } else {
        hint
    };
    let session = Session::with_store(Arc::clone(node), cfg);
    let t0 = (node.config().advanced.clock)();
    let (session, hello) = blocking(session, move |s| s.hello(hint, t0)).await;
    let (Some(session), Some(Ok(hello))) = (session, hello) else {
        return Err((
            End::Closed("could not start the session".into()),
            SessionStats::default(),
        ));
    };
    if let Err(e) = send(wire, hello, &mut ctl.stop).await {
        return Err((e.end(), session.stats().clone()));
    }
    Ok((session, first))
}

/// Once the peer is known, records it as the one this dialer's target reached (once
/// per connection).
async fn remember_peer(node: &Arc<dyn SyncStore>, session: &Session, ctl: &mut Control) {
    if let Some(p) = session.peer()
        && let Some(target) = ctl.remember_as.take()
    {
        let node = Arc::clone(node);
        let _ = tokio::task::spawn_blocking(move || node.remember_peer_at(&target, p.node)).await;
    }
}
