//! Turns an authenticated connection into a [`Wire`] for the sync layer: one task reads
//! frames and hands their messages over, one writes what the sync layer sends and keeps
//! the connection alive with heartbeats.
//!
//! Invariants:
//! - Reading and writing are separate tasks, so a peer that does not read cannot stop
//!   this side from reading, and the reverse (no deadlock between two full queues).
//! - Memory per connection is bounded: the reader holds one frame at most
//!   ([`FRAME_MAX`](crate::frame::FRAME_MAX)) and waits while the wire's bounded queue is
//!   full, which stops reading from the socket, so TCP flow control pushes back on the
//!   sender. The writer takes one message at a time from a bounded queue.
//! - A connection silent for longer than the idle timeout is closed with a typed
//!   refusal; a side with nothing to say sends a heartbeat every heartbeat interval.
//! - When either task ends, both end and the wire closes (the sync layer sees a
//!   disconnect and reconnects or forgets the connection).

use std::time::Duration;

use blazedb_sync::Wire;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::frame::{Frame, RefuseCode};
use crate::handshake::{Conn, frame_error};

/// Timers of an established connection.
#[derive(Clone, Copy, Debug)]
pub struct Liveness {
    /// Send a heartbeat after this long without sending anything.
    pub heartbeat: Duration,
    /// Close after this long without receiving anything.
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

/// Why the reader stopped (the writer sends the refusal, if any, before closing).
enum Stop {
    Refuse(RefuseCode, String),
    Quiet,
}

/// Starts the two tasks for `conn`; the returned wire is the sync layer's end. `guard`
/// is held until both tasks end (a connection-limit permit, for instance).
pub(crate) fn spawn<S>(
    conn: Conn<S>,
    peer_addr: String,
    live: Liveness,
    guard: impl Send + 'static,
) -> Wire
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = Wire::pair("local", &peer_addr);
    let Wire {
        tx: to_sync,
        rx: mut from_sync,
        ..
    } = theirs;
    let parts = conn.into_parts();
    let codec = parts.codec;
    let (r, w) = tokio::io::split(parts.io);
    let mut reader = FramedRead::new(r, codec.clone());
    reader.read_buffer_mut().extend_from_slice(&parts.read_buf);
    let mut writer = FramedWrite::new(w, codec);
    let addr = peer_addr.clone();
    // The reader's verdict reaches the writer before the wire closes: the sync side may
    // end (closing `from_sync`) as soon as the reader drops `to_sync`, and the refusal
    // must still be written then.
    let (verdict_tx, mut verdict) = tokio::sync::oneshot::channel::<Stop>();
    let read_task = tokio::spawn(async move {
        let stop = loop {
            let next = tokio::time::timeout(live.idle_timeout, reader.next()).await;
            let body = match next {
                Err(_) => {
                    break Stop::Refuse(
                        RefuseCode::Timeout,
                        "nothing received for too long".into(),
                    );
                }
                Ok(None) => break Stop::Quiet,
                Ok(Some(Err(e))) => match frame_error(e) {
                    crate::NetError::Protocol(m) => break Stop::Refuse(RefuseCode::Protocol, m),
                    e => {
                        tracing::debug!(peer = %addr, error = %e, "connection read failed");
                        break Stop::Quiet;
                    }
                },
                Ok(Some(Ok(body))) => body,
            };
            match Frame::decode(&body) {
                Ok(Frame::Sync(m)) => {
                    if to_sync.send(m).await.is_err() {
                        break Stop::Quiet;
                    }
                }
                Ok(Frame::Heartbeat) => {}
                Ok(Frame::Refused { code, message }) => {
                    tracing::info!(peer = %addr, code = code.as_str(), %message, "peer closed the connection");
                    break Stop::Quiet;
                }
                Ok(other) => {
                    break Stop::Refuse(
                        RefuseCode::Protocol,
                        format!("unexpected {} frame after the handshake", other.kind()),
                    );
                }
                Err(e) => break Stop::Refuse(RefuseCode::Protocol, e.to_string()),
            }
        };
        if let Stop::Refuse(code, m) = &stop {
            tracing::warn!(peer = %addr, code = code.as_str(), reason = %m, "closing a sync connection");
        }
        let _ = verdict_tx.send(stop);
        drop(to_sync);
    });
    let abort = read_task.abort_handle();
    tokio::spawn(async move {
        let _guard = guard;
        let mut read_task = read_task;
        let mut beat = tokio::time::interval(live.heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        beat.reset();
        loop {
            tokio::select! {
                _ = &mut read_task => break,
                m = from_sync.recv() => match m {
                    None => break,
                    Some(m) => {
                        if writer.send(Frame::Sync(m).encode()).await.is_err() {
                            break;
                        }
                        beat.reset();
                    }
                },
                _ = beat.tick() => {
                    if writer.send(Frame::Heartbeat.encode()).await.is_err() {
                        break;
                    }
                }
            }
        }
        if let Ok(Stop::Refuse(code, message)) = verdict.try_recv() {
            let _ = writer.send(Frame::Refused { code, message }.encode()).await;
        }
        abort.abort();
        let _ = SinkExt::<Bytes>::close(&mut writer).await;
    });
    ours
}
