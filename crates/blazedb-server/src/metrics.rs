//! The health and metrics endpoint: `GET /health` answers `ok`, `GET /metrics` the
//! server's counters in the Prometheus text format. A deliberately tiny HTTP/1.0
//! responder (one request per connection, request head ≤ 4 KiB, 5 s to send it, at
//! most 16 requests at once) — a scrape target needs no more, and an HTTP stack would
//! cost more compile time than the whole server.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Result;
use blazedb::net::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

const HEAD_MAX: usize = 4096;
const CONCURRENT_MAX: usize = 16;

/// Binds the endpoint and serves it until the task is dropped; returns the address.
///
/// # Errors
/// Bind errors.
pub async fn spawn(
    addr: SocketAddr,
    server: Arc<Server>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let slots = Arc::new(Semaphore::new(CONCURRENT_MAX));
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                continue; // dropped: closed
            };
            let server = Arc::clone(&server);
            tokio::spawn(async move {
                let _permit = permit;
                let _ = tokio::time::timeout(Duration::from_secs(5), answer(&mut s, &server)).await;
            });
        }
    });
    Ok((local, task))
}

async fn answer(s: &mut tokio::net::TcpStream, server: &Server) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = s.read(&mut buf).await?;
        if n == 0 || head.len() + n > HEAD_MAX {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = match (method, path) {
        ("GET", "/health") => ("200 OK", "ok\n".to_owned()),
        ("GET", "/metrics") => ("200 OK", render(server)),
        ("GET", _) => ("404 Not Found", "not found\n".to_owned()),
        _ => ("405 Method Not Allowed", "only GET\n".to_owned()),
    };
    let resp = format!(
        "HTTP/1.0 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(resp.as_bytes()).await?;
    s.shutdown().await
}

/// The metrics, Prometheus text format.
fn render(server: &Server) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    if let Some(st) = server.stats() {
        metric(
            "blazedb_connections_open",
            "gauge",
            "Connections open now, handshaking ones included.",
            st.open.load(Ordering::Relaxed),
        );
        metric(
            "blazedb_connections_accepted_total",
            "counter",
            "Connections that authenticated.",
            st.accepted.load(Ordering::Relaxed),
        );
        metric(
            "blazedb_connections_refused_auth_total",
            "counter",
            "Connections refused for wrong or missing credentials.",
            st.refused_auth.load(Ordering::Relaxed),
        );
        metric(
            "blazedb_connections_refused_busy_total",
            "counter",
            "Connections refused at the connection limit.",
            st.refused_busy.load(Ordering::Relaxed),
        );
        metric(
            "blazedb_handshakes_failed_total",
            "counter",
            "Connections that failed TLS or the handshake otherwise.",
            st.handshake_failed.load(Ordering::Relaxed),
        );
    }
    let conns = server.connections();
    let sum = |f: fn(&blazedb::sync::SyncStatus) -> u64| conns.iter().map(f).sum::<u64>();
    metric(
        "blazedb_sessions",
        "gauge",
        "Sync sessions running.",
        conns.len() as u64,
    );
    metric(
        "blazedb_writes_received_open_sessions",
        "gauge",
        "Writes received over the open sessions.",
        sum(|s| s.writes_received),
    );
    metric(
        "blazedb_writes_rejected_open_sessions",
        "gauge",
        "Writes received over the open sessions that lost a conflict here on arrival.",
        sum(|s| s.writes_rejected),
    );
    metric(
        "blazedb_writes_sent_open_sessions",
        "gauge",
        "Writes sent over the open sessions.",
        sum(|s| s.writes_sent),
    );
    metric(
        "blazedb_bytes_received_open_sessions",
        "gauge",
        "Bytes received over the open sessions.",
        sum(|s| s.bytes_received),
    );
    metric(
        "blazedb_bytes_sent_open_sessions",
        "gauge",
        "Bytes sent over the open sessions.",
        sum(|s| s.bytes_sent),
    );
    metric(
        "blazedb_conflicts_open_sessions",
        "gauge",
        "Conflicts recorded through the open sessions.",
        sum(|s| s.conflicts),
    );
    let last = server.node().and_then(|n| n.log_last().ok()).unwrap_or(0);
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
            last.saturating_sub(s.acked)
        );
    }
    out
}
