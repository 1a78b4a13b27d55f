//! The health and metrics endpoint: `GET /health` answers `ok`, `GET /metrics` the
//! server's counters in the Prometheus text format; another path is 404, another method
//! 405. Served by hyper's HTTP/1 server, since anyone who reaches the address can talk
//! to it, and it defends itself:
//!
//! - At most [`CONNECTIONS_MAX`] connections at once. One over the limit is closed at
//!   once rather than queued: a queued connection holds its descriptor all the same, so
//!   queueing would not bound descriptors (the resource the sync listener shares), and a
//!   scraper or health check retries a fast failure sooner than it would get a late
//!   answer. The limit is far above what scrapers need, so idle connections that an
//!   attacker opens do not shut out `/health` unless they are that many.
//! - [`HEADER_READ_TIMEOUT`] to send the request head, so an idle or slow connection
//!   frees its slot; [`CONNECTION_DEADLINE`] for the whole exchange, so a client that
//!   never reads the answer does not keep one either.
//! - One request per connection (no keep-alive); a request body is never read; a head
//!   larger than [`HEAD_BYTES_MAX`] is refused by hyper.
//! - A failing accept (out of descriptors — EMFILE, ENFILE — or anything else) backs off
//!   from [`ACCEPT_BACKOFF_MIN`], doubling up to [`ACCEPT_BACKOFF_MAX`], reset by the
//!   next accepted connection: the listener stays readable while the error lasts, so
//!   retrying at once would spin a core.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Result;
use blazedb::net::Server;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connections served at once.
pub const CONNECTIONS_MAX: usize = 256;
/// Time from accepting a connection to the end of its request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time from accepting a connection to closing it, answer sent or not.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);
/// Largest request head read (hyper's smallest read buffer; a scrape's head is a few
/// hundred bytes).
pub const HEAD_BYTES_MAX: usize = 8192;
/// First wait after a failed accept.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Longest wait between accepts while they keep failing.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// The Prometheus text format's content type (also used for `/health`'s plain text).
const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4";

/// Binds the endpoint and serves it until the task is dropped; returns the address.
///
/// # Errors
/// Bind errors.
pub async fn spawn(
    addr: SocketAddr,
    server: Arc<Server>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((local, tokio::spawn(accept_loop(listener, server))))
}

async fn accept_loop(listener: TcpListener, server: Arc<Server>) {
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(false)
        .max_buf_size(HEAD_BYTES_MAX);
    let mut backoff = Backoff::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff.reset();
                stream
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, ?delay, "metrics endpoint: accept failed, backing off");
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            continue; // over the limit: dropped, so closed (see the module docs)
        };
        let server = Arc::clone(&server);
        let served = http.serve_connection(
            TokioIo::new(stream),
            service_fn(move |req| {
                let resp = answer(&req, &server);
                async move { Ok::<_, Infallible>(resp) }
            }),
        );
        tokio::spawn(async move {
            let _permit = permit;
            // Timed out, a malformed request, a client gone: nothing to report back.
            let _ = tokio::time::timeout(CONNECTION_DEADLINE, served).await;
        });
    }
}

/// The answer to one request (its body, if any, is never read).
fn answer(req: &Request<Incoming>, server: &Server) -> Response<Full<Bytes>> {
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/health") => (StatusCode::OK, Bytes::from_static(b"ok\n")),
        (&Method::GET, "/metrics") => (StatusCode::OK, Bytes::from(render(server))),
        (&Method::GET, _) => (StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n")),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            Bytes::from_static(b"only GET\n"),
        ),
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_TEXT));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(ALLOW, HeaderValue::from_static("GET"));
    }
    resp
}

/// The wait after each failed accept in a row: doubling from [`ACCEPT_BACKOFF_MIN`] up
/// to [`ACCEPT_BACKOFF_MAX`].
#[derive(Debug, Default)]
struct Backoff {
    /// The last wait; `None` after a success.
    last: Option<Duration>,
}

impl Backoff {
    fn next_delay(&mut self) -> Duration {
        let delay = self
            .last
            .map_or(ACCEPT_BACKOFF_MIN, |d| (d * 2).min(ACCEPT_BACKOFF_MAX));
        self.last = Some(delay);
        delay
    }

    fn reset(&mut self) {
        self.last = None;
    }
}

/// The metrics, Prometheus text format.
fn render(server: &Server) -> String {
    let mut out = String::new();
    render_listener(&mut out, server);
    render_sessions(&mut out, server);
    out
}

/// One metric without labels: help, type and value.
fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// The listener's counters and budgets (absent while the server is starting).
fn render_listener(out: &mut String, server: &Server) {
    if let Some(st) = server.stats() {
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        for (name, kind, help, value) in [
            (
                "blazedb_connections_open",
                "gauge",
                "Connections open now, handshaking ones included.",
                load(&st.open),
            ),
            (
                "blazedb_connections_accepted_total",
                "counter",
                "Connections that authenticated.",
                load(&st.accepted),
            ),
            (
                "blazedb_connections_refused_auth_total",
                "counter",
                "Connections refused for wrong or missing credentials.",
                load(&st.refused_auth),
            ),
            (
                "blazedb_connections_refused_busy_total",
                "counter",
                "Connections refused at the connection limit.",
                load(&st.refused_busy),
            ),
            (
                "blazedb_handshakes_failed_total",
                "counter",
                "Connections that failed TLS or the handshake otherwise.",
                load(&st.handshake_failed),
            ),
            (
                "blazedb_connections_handshaking",
                "gauge",
                "Connections in TLS or the handshake now (they hold no client slot).",
                load(&st.handshaking),
            ),
        ] {
            metric(out, name, kind, help, value);
        }
    }
    if let Some(c) = server.control() {
        metric(
            out,
            "blazedb_read_budget_free_bytes",
            "gauge",
            "Bytes of the budget for received messages free now.",
            c.read_budget_available() as u64,
        );
        metric(
            out,
            "blazedb_send_budget_free_bytes",
            "gauge",
            "Bytes of the budget for messages to send free now.",
            c.send_budget_available() as u64,
        );
    }
}

/// The open sync sessions: sums over them, and each client's lag.
fn render_sessions(out: &mut String, server: &Server) {
    let conns = server.connections();
    let sum = |f: fn(&blazedb::sync::SyncStatus) -> u64| conns.iter().map(f).sum::<u64>();
    metric(
        out,
        "blazedb_sessions",
        "gauge",
        "Sync sessions running.",
        conns.len() as u64,
    );
    for (name, help, value) in [
        (
            "blazedb_writes_received_open_sessions",
            "Writes received over the open sessions.",
            sum(|s| s.writes_received),
        ),
        (
            "blazedb_writes_rejected_open_sessions",
            "Writes received over the open sessions that lost a conflict here on arrival.",
            sum(|s| s.writes_rejected),
        ),
        (
            "blazedb_writes_sent_open_sessions",
            "Writes sent over the open sessions.",
            sum(|s| s.writes_sent),
        ),
        (
            "blazedb_bytes_received_open_sessions",
            "Bytes received over the open sessions.",
            sum(|s| s.bytes_received),
        ),
        (
            "blazedb_bytes_sent_open_sessions",
            "Bytes sent over the open sessions.",
            sum(|s| s.bytes_sent),
        ),
        (
            "blazedb_conflicts_open_sessions",
            "Conflicts recorded through the open sessions.",
            sum(|s| s.conflicts),
        ),
    ] {
        metric(out, name, "gauge", help, value);
    }
    let last = server
        .node()
        .and_then(|n| n.log_last().ok())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "# HELP blazedb_client_lag_writes Log positions of this server a client has not confirmed.\n# TYPE blazedb_client_lag_writes gauge"
    );
    for s in &conns {
        let peer = s
            .peer
            .as_ref()
            .map_or_else(|| "unknown".to_owned(), |p| p.node.to_string());
        let _ = writeln!(
            out,
            "blazedb_client_lag_writes{{client=\"{peer}\"}} {}",
            last.entries_since(s.acked)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_backoff_doubles_up_to_its_cap_and_restarts_after_a_success() {
        let mut b = Backoff::default();
        let waits: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert_eq!(waits[0], ACCEPT_BACKOFF_MIN);
        assert_eq!(waits[1], ACCEPT_BACKOFF_MIN * 2);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
        assert_eq!(waits[9], ACCEPT_BACKOFF_MAX, "{waits:?}");
        assert_eq!(b.next_delay(), ACCEPT_BACKOFF_MAX, "stays at the cap");
        b.reset();
        assert_eq!(b.next_delay(), ACCEPT_BACKOFF_MIN);
    }
}
