//! The health and metrics endpoint: `GET /health` answers `ok` (plain text),
//! `GET /metrics` the server's and the process's figures in the OpenMetrics text format
//! (`collect`, `process`); another path is 404, another method 405. Served by hyper's HTTP/1 server, since anyone who reaches the address can talk
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

mod collect;
mod process;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
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
use prometheus_client::registry::Registry;
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
/// The content type of `/metrics` (what `prometheus-client` writes).
const CONTENT_TYPE_METRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of every other answer.
const CONTENT_TYPE_TEXT: &str = "text/plain; charset=utf-8";

/// Binds the endpoint and serves it until the task is dropped; returns the address.
///
/// # Errors
/// Bind errors.
pub async fn spawn(
    addr: SocketAddr,
    server: Arc<Server>,
    health: Health,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let registry = Arc::new(collect::registry(server));
    Ok((local, tokio::spawn(accept_loop(listener, registry, health))))
}

/// Whether the served state answers (a query to the store, when there is one).
pub type Health = Arc<dyn Fn() -> bool + Send + Sync>;

async fn accept_loop(listener: TcpListener, registry: Arc<Registry>, health: Health) {
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
        let (registry, health) = (Arc::clone(&registry), Arc::clone(&health));
        let served = http.serve_connection(
            TokioIo::new(stream),
            service_fn(move |req: Request<Incoming>| {
                let (registry, health) = (Arc::clone(&registry), Arc::clone(&health));
                let (method, path) = (req.method().clone(), req.uri().path().to_owned());
                async move {
                    // The figures and the health check may read the served state,
                    // which blocks with a store (Postgres): never on the async threads.
                    let resp = tokio::task::spawn_blocking(move || {
                        answer(&method, &path, &registry, health.as_ref())
                    })
                    .await
                    .unwrap_or_else(|_| failed());
                    Ok::<_, Infallible>(resp)
                }
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
fn answer(
    method: &Method,
    path: &str,
    registry: &Registry,
    healthy: &(dyn Fn() -> bool + Send + Sync),
) -> Response<Full<Bytes>> {
    let mut content_type = CONTENT_TYPE_TEXT;
    let (status, body) = match (method, path) {
        (&Method::GET, "/health") if healthy() => (StatusCode::OK, Bytes::from_static(b"ok\n")),
        (&Method::GET, "/health") => (
            StatusCode::SERVICE_UNAVAILABLE,
            Bytes::from_static(b"unhealthy: the store does not answer\n"),
        ),
        (&Method::GET, "/metrics") => {
            let mut text = String::new();
            match prometheus_client::encoding::text::encode(&mut text, registry) {
                Ok(()) => {
                    content_type = CONTENT_TYPE_METRICS;
                    (StatusCode::OK, Bytes::from(text))
                }
                Err(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Bytes::from_static(b"the metrics could not be written\n"),
                ),
            }
        }
        (&Method::GET, _) => (StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n")),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            Bytes::from_static(b"only GET\n"),
        ),
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(ALLOW, HeaderValue::from_static("GET"));
    }
    resp
}

/// The answer when computing one failed (a panic in the metrics or the check).
fn failed() -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(b"internal error\n")));
    *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
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
