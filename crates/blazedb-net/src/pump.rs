//! Turns an authenticated connection into a [`Wire`] for the sync layer: one task reads
//! frames and hands their messages over, one writes what the sync layer sends and keeps
//! the connection honest with beats.
//!
//! Invariants:
//! - Reading and writing are separate tasks, so a peer that does not read cannot stop
//!   this side from reading, and the reverse (no deadlock between two full queues).
//! - Memory is bounded by budgets, not by announced lengths: a frame's bytes are taken
//!   from the listener's read budget before its body is read (a reader waiting for
//!   budget reads nothing) and held until the sync layer has handled the message; the
//!   memory it occupies grows with the bytes received (a first chunk, then the rest of
//!   the budgeted length, whose pages fill as bytes arrive); the sync layer
//!   takes a message's bytes from the send budget before queueing it, released once
//!   it is written. A reader waiting for budget stops reading the socket, so TCP flow
//!   control pushes back on the sender.
//! - Liveness is proven, not assumed: each side sends a `Beat` with a fresh nonce every
//!   heartbeat interval, and answers each beat it reads at once with an echo of its
//!   nonce. A connection whose peer has not echoed anything we sent within the idle
//!   timeout is closed — however many frames it sends, a peer that does not read gets
//!   closed — whatever heartbeat interval the peer itself uses. Every write has the
//!   same deadline, so a peer that stops reading holds nothing past it.
//! - A listener's shutdown or the revocation of the connection's user ends both tasks
//!   promptly with a typed refusal (written within [`CLOSE_GRACE`] or not at all).
//! - When either task ends, both end and the wire closes (the sync layer sees a
//!   disconnect and reconnects or forgets the connection).

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use blazedb_sync::{Budget, Delivery, Grant, Wire};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::frame::{Frame, RefuseCode};
use crate::handshake::Conn;
use crate::users::UserDirectory;

/// Timers of an established connection.
#[derive(Clone, Copy, Debug)]
pub struct Liveness {
    /// Send a beat this often.
    pub heartbeat: Duration,
    /// Close when the peer has proven nothing read for this long; also the deadline
    /// of every write.
    pub idle_timeout: Duration,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            heartbeat: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(35),
        }
    }
}

impl Liveness {
    /// Checks that the peer can prove liveness in time: an echo arrives up to two
    /// heartbeats after the beat it answers.
    ///
    /// # Errors
    /// A description of what is wrong.
    pub fn check(&self) -> Result<(), String> {
        if self.heartbeat.is_zero() || self.idle_timeout < self.heartbeat * 3 {
            return Err(format!(
                "the idle timeout ({:?}) must be at least three heartbeats ({:?} each)",
                self.idle_timeout, self.heartbeat
            ));
        }
        Ok(())
    }
}

/// Longest wait for a farewell (a refusal, the TLS close) on a closing connection.
pub const CLOSE_GRACE: Duration = Duration::from_millis(500);
/// A frame's first buffer: the rest of its length is taken once this much has arrived.
const READ_CHUNK: usize = 64 * 1024;
/// Own beats remembered for matching echoes.
const BEATS_KEPT: usize = 8;

/// Ends a user's connection when its record is revoked.
pub(crate) struct Revocation {
    pub users: Arc<UserDirectory>,
    pub changed: watch::Receiver<u64>,
    pub name: String,
    pub id: u64,
}

/// What a connection runs under.
pub(crate) struct PumpOptions {
    pub live: Liveness,
    /// The largest frame accepted.
    pub frame_max: usize,
    pub grant: Grant,
    pub read_budget: Option<Budget>,
    pub send_budget: Option<Budget>,
    /// The listener is shutting down (when it turns true).
    pub shutdown: Option<watch::Receiver<bool>>,
    pub revocation: Option<Revocation>,
}

impl PumpOptions {
    /// A dialer's connection: the server it dialed is trusted as a peer; no budgets.
    pub(crate) fn dialer(live: Liveness) -> PumpOptions {
        PumpOptions {
            live,
            frame_max: crate::frame::TRUSTED_FRAME_MAX,
            grant: Grant::peer(),
            read_budget: None,
            send_budget: None,
            shutdown: None,
            revocation: None,
        }
    }
}

/// Why the reader stopped (the writer sends the refusal, if any, before closing).
enum Stop {
    Refuse(RefuseCode, String),
    Quiet,
}

/// What the two tasks share about liveness.
struct Live {
    /// The newest nonce read from the peer, to echo.
    peer_nonce: AtomicU64,
    /// Wakes the writer to echo `peer_nonce` at once.
    answer: tokio::sync::Notify,
    /// Our recent beats: (nonce, sent at).
    sent: Mutex<VecDeque<(u64, Instant)>>,
    /// When we sent the newest beat the peer has echoed (or the connection began).
    proven: Mutex<Instant>,
}

impl Live {
    fn saw(&self, nonce: u64, echo: u64) {
        if nonce != 0 {
            self.peer_nonce.store(nonce, Ordering::Release);
            self.answer.notify_one();
        }
        if echo == 0 {
            return;
        }
        let sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(&(_, at)) = sent.iter().find(|(n, _)| *n == echo) {
            let mut p = self.proven.lock().unwrap_or_else(PoisonError::into_inner);
            *p = (*p).max(at);
        }
    }

    fn beat(&self) -> Frame {
        let mut n = [0u8; 8];
        // A failing random source only makes nonces guessable; 0 is never echoed.
        let _ = getrandom::fill(&mut n);
        let nonce = u64::from_le_bytes(n).max(1);
        let mut sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
        if sent.len() == BEATS_KEPT {
            sent.pop_front();
        }
        sent.push_back((nonce, Instant::now()));
        Frame::Beat {
            nonce,
            echo: self.peer_nonce.load(Ordering::Acquire),
        }
    }

    /// The answer to the peer's newest beat (itself never answered).
    fn echo(&self) -> Frame {
        Frame::Beat {
            nonce: 0,
            echo: self.peer_nonce.load(Ordering::Acquire),
        }
    }

    fn unproven_for(&self) -> Duration {
        self.proven
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed()
    }
}

/// Writes one frame (length prefix included) and flushes it.
async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &Frame) -> io::Result<()> {
    w.write_all(&frame.encode_prefixed()).await?;
    w.flush().await
}

/// Reads one frame body of `len` bytes. The buffer starts at one chunk; once the first
/// chunk has arrived (the peer is really sending) it takes the whole announced length at
/// once — already counted in the read budget — so a large frame is never copied from a
/// smaller buffer to a larger one (which held both for a moment). Its pages are only
/// backed by memory as bytes arrive into them.
async fn read_body<R: AsyncRead + Unpin>(r: &mut R, len: usize) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    while body.len() < len {
        if body.len() == body.capacity() {
            let want = if body.is_empty() {
                READ_CHUNK
            } else {
                len - body.len()
            };
            body.reserve_exact(want.min(len - body.len()));
        }
        let room = (body.capacity() - body.len()).min(len - body.len());
        let got = (&mut *r).take(room as u64).read_buf(&mut body).await?;
        if got == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(body)
}

async fn changed_or_never(rx: &mut Option<watch::Receiver<bool>>) -> bool {
    match rx {
        Some(rx) => {
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
            *rx.borrow()
        }
        None => std::future::pending().await,
    }
}

/// Resolves when the connection's user is no longer in force.
async fn revoked(r: &mut Option<Revocation>) {
    match r {
        Some(r) => loop {
            if !r.users.is_current(&r.name, r.id) {
                return;
            }
            if r.changed.changed().await.is_err() {
                return std::future::pending().await;
            }
        },
        None => std::future::pending().await,
    }
}

/// Starts the two tasks for `conn`; the returned wire is the sync layer's end. `guard`
/// is held until both tasks end (connection-limit permits, for instance).
pub(crate) fn spawn<S>(
    conn: Conn<S>,
    peer_addr: String,
    opts: PumpOptions,
    guard: impl Send + 'static,
) -> Wire
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut ours, theirs) = Wire::pair("local", &peer_addr);
    ours.grant = opts.grant;
    ours.send_budget = opts.send_budget;
    let Wire {
        tx: to_sync,
        rx: from_sync,
        ..
    } = theirs;
    let parts = conn.into_parts();
    let (r, w) = tokio::io::split(parts.io);
    // Bytes the handshake's codec read past the welcome come first.
    let mut reader = std::io::Cursor::new(parts.read_buf.to_vec()).chain(r);
    let live = Arc::new(Live {
        peer_nonce: AtomicU64::new(0),
        answer: tokio::sync::Notify::new(),
        sent: Mutex::new(VecDeque::new()),
        proven: Mutex::new(Instant::now()),
    });
    let addr = peer_addr.clone();
    // The reader's verdict reaches the writer before the wire closes: the sync side may
    // end (closing `from_sync`) as soon as the reader drops `to_sync`, and the refusal
    // must still be written then.
    let (verdict_tx, verdict) = tokio::sync::oneshot::channel::<Stop>();
    let reading = ReadSide {
        frame_max: opts.frame_max,
        read_budget: opts.read_budget,
        live: Arc::clone(&live),
    };
    let read_task = tokio::spawn(async move {
        let stop = reading.run(&mut reader, &to_sync, &addr).await;
        if let Stop::Refuse(code, m) = &stop {
            tracing::warn!(peer = %addr, code = code.as_str(), reason = %m, "closing a sync connection");
        }
        let _ = verdict_tx.send(stop);
        drop(to_sync);
    });
    let writing = WriteSide {
        shutdown: opts.shutdown,
        revocation: opts.revocation,
        heartbeat: opts.live.heartbeat,
        idle: opts.live.idle_timeout,
        live,
        peer_addr,
    };
    tokio::spawn(async move {
        let _guard = guard;
        writing.run(w, from_sync, read_task, verdict).await;
    });
    ours
}

/// The reading task's part: frames in, messages handed to the sync layer.
struct ReadSide {
    frame_max: usize,
    read_budget: Option<Budget>,
    live: Arc<Live>,
}

impl ReadSide {
    /// Reads frames until the connection ends or the peer breaks the protocol, and
    /// says which ([`Stop`]).
    async fn run<R>(&self, reader: &mut R, to_sync: &mpsc::Sender<Delivery>, addr: &str) -> Stop
    where
        R: AsyncRead + Unpin,
    {
        loop {
            let mut len = [0u8; 4];
            if let Err(e) = reader.read_exact(&mut len).await {
                tracing::debug!(peer = %addr, error = %e, "connection read ended");
                return Stop::Quiet;
            }
            let len = u32::from_be_bytes(len) as usize;
            if len > self.frame_max {
                return Stop::Refuse(
                    RefuseCode::Protocol,
                    format!(
                        "a frame of {len} bytes is over the limit of {}",
                        self.frame_max
                    ),
                );
            }
            let permit = match &self.read_budget {
                None => None,
                Some(b) => match b.take(len).await {
                    Some(p) => Some(p),
                    None => return Stop::Quiet,
                },
            };
            let body = match read_body(reader, len).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::debug!(peer = %addr, error = %e, "connection read ended mid-frame");
                    return Stop::Quiet;
                }
            };
            match Frame::decode(&body) {
                Ok(Frame::Sync(msg)) => {
                    drop(body);
                    if to_sync.send(Delivery { msg, permit }).await.is_err() {
                        return Stop::Quiet;
                    }
                }
                Ok(Frame::Beat { nonce, echo }) => self.live.saw(nonce, echo),
                Ok(Frame::Refused { code, message }) => {
                    tracing::info!(peer = %addr, code = code.as_str(), %message, "peer closed the connection");
                    return Stop::Quiet;
                }
                Ok(other) => {
                    return Stop::Refuse(
                        RefuseCode::Protocol,
                        format!("unexpected {} frame after the handshake", other.kind()),
                    );
                }
                Err(e) => return Stop::Refuse(RefuseCode::Protocol, e.to_string()),
            }
        }
    }
}

/// The writing task's part: the sync layer's messages out, beats and echoes, and the
/// farewell when either side ends.
struct WriteSide {
    shutdown: Option<watch::Receiver<bool>>,
    revocation: Option<Revocation>,
    heartbeat: Duration,
    idle: Duration,
    live: Arc<Live>,
    peer_addr: String,
}

impl WriteSide {
    /// Writes until the reader ends, the sync layer closes, the listener shuts down,
    /// the user is revoked, or the peer stops reading; then says why (when it still
    /// can) and stops the reader.
    async fn run<W>(
        mut self,
        mut w: W,
        mut from_sync: mpsc::Receiver<Delivery>,
        mut read_task: tokio::task::JoinHandle<()>,
        mut verdict: tokio::sync::oneshot::Receiver<Stop>,
    ) where
        W: AsyncWrite + Unpin,
    {
        let abort = read_task.abort_handle();
        let (idle, live) = (self.idle, Arc::clone(&self.live));
        // The first beat goes out at once, so the peer can echo it soon.
        let mut beat = tokio::time::interval(self.heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ours: Option<(RefuseCode, String)> = None;
        let mut writable = true;
        loop {
            tokio::select! {
                biased;
                down = changed_or_never(&mut self.shutdown) => if down {
                    ours = Some((RefuseCode::ShuttingDown, "the server is shutting down".into()));
                    break;
                },
                () = revoked(&mut self.revocation) => {
                    ours = Some((RefuseCode::Auth, "this user's credential was revoked".into()));
                    break;
                }
                _ = &mut read_task => break,
                d = from_sync.recv() => {
                    let Some(Delivery { msg, permit }) = d else { break };
                    let frame = Frame::Sync(msg);
                    let written = tokio::time::timeout(idle, write_frame(&mut w, &frame)).await;
                    drop(permit);
                    match written {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => { writable = false; break; }
                        Err(_) => {
                            tracing::warn!(peer = %self.peer_addr, "closing a sync connection: the peer does not read");
                            writable = false;
                            break;
                        }
                    }
                }
                () = live.answer.notified() => {
                    let frame = live.echo();
                    if !matches!(tokio::time::timeout(idle, write_frame(&mut w, &frame)).await, Ok(Ok(()))) {
                        writable = false;
                        break;
                    }
                }
                _ = beat.tick() => {
                    if live.unproven_for() > idle {
                        tracing::warn!(peer = %self.peer_addr, "closing a sync connection: the peer has read nothing we sent for too long");
                        ours = Some((RefuseCode::Timeout, "nothing we sent was read for too long".into()));
                        break;
                    }
                    let frame = live.beat();
                    if !matches!(tokio::time::timeout(idle, write_frame(&mut w, &frame)).await, Ok(Ok(()))) {
                        writable = false;
                        break;
                    }
                }
            }
        }
        let farewell = ours.or_else(|| match verdict.try_recv() {
            Ok(Stop::Refuse(code, message)) => Some((code, message)),
            _ => None,
        });
        if writable {
            if let Some((code, message)) = farewell {
                let frame = Frame::Refused { code, message };
                let _ = tokio::time::timeout(CLOSE_GRACE, write_frame(&mut w, &frame)).await;
            }
            let _ = tokio::time::timeout(CLOSE_GRACE, w.shutdown()).await;
        }
        abort.abort();
    }
}
