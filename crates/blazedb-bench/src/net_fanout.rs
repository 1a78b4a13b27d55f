//! Figure 5 of `blazedb-bench net`: many connected clients. The server runs in a child
//! process (this binary re-executed as `net-server`), so its resident memory can be read
//! from `/proc/<pid>/status` without counting the clients, which all live in the bench
//! process.
//!
//! - Server RSS per client: `VmRSS` with the server started and idle and no client, then
//!   with N clients connected, each through its initial sync (all idle):
//!   (after − before) / N.
//! - Fan-out: one write at one client; the time from just before its commit until the
//!   last of the other N − 1 clients has committed it (applied through sync). Arrival is
//!   observed, not polled: each receiving client has a live subscription to the
//!   collection and a commit hook that takes the subscription's events as soon as the
//!   applying commit publishes them and stamps them with the time. Between rounds every
//!   client syncs now (untimed), so each round starts from a settled system instead of
//!   overlapping the previous write's trailing acknowledgments.
//!
//! All clients share the bench process and the machine's cores with the server, so on
//! a small machine the fan-out time includes the clients' own work of applying the
//! write.

#![cfg_attr(not(feature = "net"), allow(unused_imports, dead_code))]

use std::io::{BufRead as _, Read as _, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Database name, password and token shared by the server child and the clients.
const DB_NAME: &str = "main";
const PASSWORD: &str = "bench";
const TOKEN: &str = "bench-token";

/// Raises the soft file-descriptor limit to the hard one; fails if that leaves fewer
/// than `needed`.
#[cfg(feature = "net")]
fn raise_fd_limit(needed: u64) -> Result<()> {
    let (soft, hard) = rlimit::Resource::NOFILE
        .get()
        .context("reading RLIMIT_NOFILE")?;
    if soft < hard {
        rlimit::Resource::NOFILE
            .set(hard, hard)
            .context("raising RLIMIT_NOFILE")?;
    }
    if hard < needed {
        bail!("this figure needs {needed} file descriptors; the hard limit is {hard}");
    }
    Ok(())
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`) or as a count (`Threads`).
pub(crate) fn proc_status(pid: u32, field: &str) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// The child side: `net-server --dir DIR --max-connections N`. Opens (or creates) the
/// server database in DIR, serves it over TLS on 127.0.0.1 (a free port), prints
/// `ready listen=<addr> fingerprint=<hex>` and serves until its stdin closes (the parent
/// holds the other end, so the child never outlives it), then stops cleanly.
#[cfg(feature = "net")]
pub(crate) fn server_child(dir: &Path, max_connections: usize) -> Result<()> {
    raise_fd_limit(max_connections as u64 + 64)?;
    // The same runtime as `blazedb-server` (one worker per CPU).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use blazedb_engine::{Database, KdfParams};
        use blazedb_net::{Server, TlsSetup};

        std::fs::create_dir_all(dir)?;
        let d = dir.to_owned();
        let db = tokio::task::spawn_blocking(move || {
            Database::builder()
                .kdf(KdfParams::INSECURE_FAST)
                .open(&d, "server", PASSWORD)
        })
        .await??;
        let mut server = Server::new(0, &db, DB_NAME, Some(TOKEN), None)
            .tls(TlsSetup::SelfSigned(dir.join("tls")));
        server.max_connections = max_connections;
        let addr = server.start().await?;
        let fp = server.fingerprint().context("TLS is on")?;
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "ready listen={addr} fingerprint={fp}")?;
            out.flush()?;
        }
        // Until the parent closes our stdin (or exits).
        tokio::task::spawn_blocking(|| {
            let mut sink = [0u8; 256];
            let mut stdin = std::io::stdin().lock();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        })
        .await?;
        server.stop().await?;
        anyhow::Ok(())
    })
}

#[cfg(not(feature = "net"))]
pub(crate) fn server_child(_dir: &Path, _max_connections: usize) -> Result<()> {
    bail!("this build has no network layer: run it with the default features")
}

/// The server child process, seen from the parent. Dropping it closes the child's
/// stdin, which stops the child.
struct ServerProcess {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    addr: std::net::SocketAddr,
    fingerprint: String,
}

impl ServerProcess {
    fn spawn(dir: &Path, max_connections: usize) -> Result<ServerProcess> {
        let exe = std::env::current_exe().context("locating this benchmark's binary")?;
        let mut child = std::process::Command::new(exe)
            .arg("net-server")
            .arg("--dir")
            .arg(dir)
            .arg("--max-connections")
            .arg(max_connections.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .context("starting the server process")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("the child's stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        let ready = line.trim();
        let field = |name: &str| {
            ready
                .split_whitespace()
                .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
                .map(str::to_owned)
        };
        let (Some(addr), Some(fingerprint)) = (field("listen"), field("fingerprint")) else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the server process did not say it was ready (said {ready:?})");
        };
        Ok(ServerProcess {
            child,
            stdin,
            addr: addr.parse().context("the server's address")?,
            fingerprint,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes the child's stdin and waits for it to stop; fails unless it exits 0.
    fn stop(mut self) -> Result<()> {
        drop(self.stdin.take());
        let status = self.child.wait()?;
        if !status.success() {
            bail!("the server process exited with {status}");
        }
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Closing stdin stops it; wait so it is not left a zombie.
        if self.stdin.take().is_some() {
            let _ = self.child.wait();
        }
    }
}

/// Longest wait for one client's sync in figure 5.
#[cfg(feature = "net")]
const T: Duration = Duration::from_secs(600);

/// Connects every database to the server (at most [`CONNECTING`] at a time), each
/// through its initial sync.
#[cfg(feature = "net")]
async fn connect_all(
    dbs: &[blazedb_engine::Database],
    remote: &blazedb_net::RemoteNode,
) -> Result<Vec<std::sync::Arc<blazedb_sync::SyncHandle>>> {
    use blazedb_sync::{EnableSync, Role, SyncHandle};

    let mut handles: Vec<Option<SyncHandle>> = (0..dbs.len()).map(|_| None).collect();
    let mut connecting = tokio::task::JoinSet::new();
    for (i, db) in dbs.iter().enumerate() {
        if connecting.len() >= CONNECTING {
            let (i, h) = connecting
                .join_next()
                .await
                .context("a connecting task")???;
            handles[i] = Some(h);
        }
        let (db, relay) = (db.clone(), remote.relay());
        connecting.spawn(async move {
            let h = db.enable_sync(relay, Role::Client).await?;
            h.sync_now(T).await?;
            anyhow::Ok((i, h))
        });
    }
    while let Some(r) = connecting.join_next().await {
        let (i, h) = r??;
        handles[i] = Some(h);
    }
    Ok(handles
        .into_iter()
        .flatten()
        .map(std::sync::Arc::new)
        .collect())
}

/// One fan-out round: `writer` inserts the round's document; returns, per other
/// client, the time from the write's commit to its arrival there.
#[cfg(feature = "net")]
async fn one_round(
    writer: &blazedb_engine::Database,
    round: usize,
    clients: usize,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(usize, i64, Instant)>,
) -> Result<Vec<Duration>> {
    let mut seen = vec![false; clients];
    let mut arrivals = Vec::with_capacity(clients - 1);
    let w = writer.clone();
    let round_no = round as i64;
    let t0 = Instant::now();
    tokio::task::spawn_blocking(move || {
        w.collection("fan")
            .insert(blazedb_engine::Document::new().with("round", round_no))
    })
    .await??;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while arrivals.len() < clients - 1 {
        let Ok(got) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            bail!(
                "fan-out round {round}: {} of {} clients had the write after 120 s",
                arrivals.len(),
                clients - 1
            );
        };
        let (i, r, at) = got.context("the arrival channel closed")?;
        if r == round_no && !seen[i] {
            seen[i] = true;
            arrivals.push(at.saturating_duration_since(t0));
        }
    }
    Ok(arrivals)
}

/// Every client syncs now, at once; returns when all are done.
#[cfg(feature = "net")]
async fn settle(handles: &[std::sync::Arc<blazedb_sync::SyncHandle>]) -> Result<()> {
    let mut settling = tokio::task::JoinSet::new();
    for h in handles {
        let h = std::sync::Arc::clone(h);
        settling.spawn(async move { h.sync_now(T).await });
    }
    while let Some(r) = settling.join_next().await {
        r??;
    }
    Ok(())
}

/// Clients connecting at once (each does a TLS handshake and its initial sync).
pub(crate) const CONNECTING: usize = 32;

/// What figure 5 measured.
#[derive(Clone, Debug)]
pub(crate) struct FanoutResult {
    pub clients: usize,
    /// Server `VmRSS` (KiB): idle with no client, then with every client connected and
    /// synced, then after the fan-out rounds.
    pub rss_idle_kib: u64,
    pub rss_connected_kib: u64,
    pub rss_after_fanout_kib: u64,
    /// Server threads with every client connected.
    pub server_threads: u64,
    /// Creating the client databases, connecting them all (each through its initial
    /// sync).
    pub open_time: Duration,
    pub connect_time: Duration,
    /// Per round: the write's commit to the last of the N − 1 other clients.
    pub fanout_all: Vec<Duration>,
    /// Per round: the write's commit to the median receiving client.
    pub fanout_median: Vec<Duration>,
    /// Settling after the rounds (every client's "sync now"), in total; not timed.
    pub settle_time: Duration,
}

impl FanoutResult {
    /// Server memory per connected client, in KB (1,000 bytes).
    pub(crate) fn kb_per_client(&self) -> f64 {
        let delta = self.rss_connected_kib.saturating_sub(self.rss_idle_kib) as f64 * 1024.0;
        delta / self.clients.max(1) as f64 / 1000.0
    }
}

/// Runs figure 5 with `clients` clients and `rounds` fan-out writes; databases go
/// under `dir`.
#[cfg(feature = "net")]
pub(crate) async fn run(dir: &Path, clients: usize, rounds: usize) -> Result<FanoutResult> {
    use std::sync::Arc;

    use blazedb_engine::{Database, KdfParams, Value};
    use blazedb_net::{Credentials, Fingerprint, RemoteNode};
    use tokio::sync::mpsc;

    if clients < 2 {
        bail!("the fan-out needs at least 2 clients");
    }
    // In this process: per client its database's files (data file, lock) and a socket.
    raise_fd_limit(4 * clients as u64 + 256)?;
    let sdir = dir.join("fan-server");
    let server =
        tokio::task::spawn_blocking(move || ServerProcess::spawn(&sdir, clients + 64)).await??;
    let pid = server.pid();
    let rss_idle_kib = proc_status(pid, "VmRSS")?;

    let fp = Fingerprint::parse(&server.fingerprint)?;
    let remote = RemoteNode::pinned(
        "localhost",
        server.addr.port(),
        DB_NAME,
        fp,
        Credentials::none().token(TOKEN),
    );

    let t = Instant::now();
    let cdir = dir.join("fan-clients");
    std::fs::create_dir_all(&cdir)?;
    let dbs: Vec<Database> = {
        let cdir = cdir.clone();
        tokio::task::spawn_blocking(move || {
            (0..clients)
                .map(|i| {
                    Ok(Database::builder().kdf(KdfParams::INSECURE_FAST).open(
                        &cdir,
                        &format!("c{i}"),
                        PASSWORD,
                    )?)
                })
                .collect::<Result<Vec<_>>>()
        })
        .await??
    };
    let open_time = t.elapsed();

    let t = Instant::now();
    let handles = connect_all(&dbs, &remote).await?;
    let connect_time = t.elapsed();
    if handles.len() != clients || handles.iter().any(|h| !h.status().connected) {
        bail!("not every client is connected");
    }
    let rss_connected_kib = proc_status(pid, "VmRSS")?;
    let server_threads = proc_status(pid, "Threads")?;

    // Arrival at each receiving client: the commit hook runs right after the applying
    // commit has published its events to the subscription, on the committing thread.
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, i64, Instant)>();
    let mut hooks = Vec::with_capacity(clients);
    for (i, db) in dbs.iter().enumerate().skip(1) {
        let sub = Arc::new(db.subscribe("fan", 64)?);
        let tx = tx.clone();
        hooks.push(db.on_commit(move || {
            while let Ok(ev) = sub.try_recv() {
                if let Some(Value::Int(round)) = ev.doc.as_ref().and_then(|d| d.get("round")) {
                    let _ = tx.send((i, *round, Instant::now()));
                }
            }
        })?);
    }
    drop(tx);

    let writer = dbs[0].clone();
    let mut fanout_all = Vec::with_capacity(rounds);
    let mut fanout_median = Vec::with_capacity(rounds);
    let mut settle_time = Duration::ZERO;
    for round in 0..rounds {
        let mut arrivals = one_round(&writer, round, clients, &mut rx).await?;
        arrivals.sort_unstable();
        fanout_all.push(arrivals.last().copied().unwrap_or_default());
        fanout_median.push(arrivals[arrivals.len() / 2]);
        // Settle before the next round, outside the timed window: the write's trailing
        // work (acknowledgments, each client's confirmation of its new log position)
        // would otherwise overlap the next round. Every client syncing now returns once
        // its side is confirmed and it has everything the server had.
        let t = Instant::now();
        settle(&handles).await?;
        settle_time += t.elapsed();
    }
    let rss_after_fanout_kib = proc_status(pid, "VmRSS")?;

    drop(hooks);
    for h in &handles {
        h.stop().await;
    }
    drop(handles);
    drop(dbs);
    tokio::task::spawn_blocking(move || server.stop()).await??;
    Ok(FanoutResult {
        clients,
        rss_idle_kib,
        rss_connected_kib,
        rss_after_fanout_kib,
        server_threads,
        open_time,
        connect_time,
        fanout_all,
        fanout_median,
        settle_time,
    })
}
