//! Figure 5 of `blazedb-bench net`: many connected clients. The server runs in a child
//! process (this binary re-executed as `net-server`), so its resident memory and
//! threads can be read from `/proc/<pid>/status` without counting the clients; the
//! receiving clients run in further child processes (`net_clients.rs`, up to 2,500
//! each, for the descriptor limit), the writing client in the bench process.
//!
//! - Server RSS per client: `VmRSS` with the server started and idle and no client, then
//!   with N clients connected, each through its initial sync (all idle):
//!   (after − before) / N. Its threads likewise.
//! - Fan-out: one write at one client; the time from just before its commit until the
//!   last of the other N − 1 clients has committed it (applied through sync). Arrival is
//!   observed, not polled: each receiving client has a live subscription to the
//!   collection and a commit hook that takes the subscription's events as soon as the
//!   applying commit publishes them and stamps them with the time. Between rounds every
//!   client syncs now (untimed), so each round starts from a settled system instead of
//!   overlapping the previous write's trailing acknowledgments.
//!
//! All processes share the machine's cores, so on a small machine the fan-out time
//! includes the clients' own work of applying the write (one durable commit each, in
//! its own database file).

#![cfg_attr(not(feature = "net"), allow(unused_imports, dead_code))]

use std::io::{BufRead as _, Read as _, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Database name, password and token shared by the server child and the clients.
pub(crate) const DB_NAME: &str = "main";
pub(crate) const PASSWORD: &str = "bench";
pub(crate) const TOKEN: &str = "bench-token";

/// Raises the file-descriptor limit to at least `needed`: the soft limit up to the
/// hard one, and the hard one too where the process may (as root, up to the kernel's
/// `nr_open`); fails if the limit stays below `needed`.
#[cfg(feature = "net")]
pub(crate) fn raise_fd_limit(needed: u64) -> Result<()> {
    let (soft, hard) = rlimit::Resource::NOFILE
        .get()
        .context("reading RLIMIT_NOFILE")?;
    if hard < needed && rlimit::Resource::NOFILE.set(needed, needed).is_ok() {
        return Ok(());
    }
    if soft < hard {
        rlimit::Resource::NOFILE
            .set(hard, hard)
            .context("raising RLIMIT_NOFILE")?;
    }
    if hard < needed {
        bail!(
            "this figure needs {needed} file descriptors; the hard limit is {hard} \
             (raise it, e.g. `ulimit -Hn {needed}` as root, or run fewer --clients)"
        );
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

/// CPU time a process has used so far (user + system), from `/proc/<pid>/stat`
/// (in the kernel's clock ticks of 1/100 s: `USER_HZ` is 100 on Linux).
pub(crate) fn proc_cpu(pid: u32) -> Result<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces, inside parentheses).
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("no command name in /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let tick = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .context("no CPU times in /proc/<pid>/stat")
    };
    Ok(Duration::from_millis((tick(11)? + tick(12)?) * 10))
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
        serve_until_stdin_closes(server).await
    })
}

/// A server child's life: starts `server`, says `ready listen=<addr> fingerprint=<hex>`
/// on stdout, serves until the parent closes our stdin (or exits), then stops cleanly.
#[cfg(feature = "net")]
pub(crate) async fn serve_until_stdin_closes(mut server: blazedb_net::Server) -> Result<()> {
    let addr = server.start().await?;
    let fp = server.fingerprint().context("TLS is on")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready listen={addr} fingerprint={fp}")?;
        out.flush()?;
    }
    tokio::task::spawn_blocking(|| {
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin().lock();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
    })
    .await?;
    server.stop().await?;
    Ok(())
}

#[cfg(not(feature = "net"))]
pub(crate) fn server_child(_dir: &Path, _max_connections: usize) -> Result<()> {
    bail!("this build has no network layer: run it with the default features")
}

/// A server child process, seen from the parent (stopped by closing its stdin).
pub(crate) struct ServerProcess {
    pub process: crate::child::StdinChild,
    pub addr: std::net::SocketAddr,
    pub fingerprint: String,
}

impl ServerProcess {
    /// The embedded server (`net-server`) over the database in `dir`.
    fn spawn(dir: &Path, max_connections: usize) -> Result<ServerProcess> {
        let args = [
            "net-server".to_owned(),
            "--dir".to_owned(),
            dir.to_string_lossy().into_owned(),
            "--max-connections".to_owned(),
            max_connections.to_string(),
        ];
        Self::spawn_with(&args, &[], "the server process")
    }

    /// A server child started with `args`, once it has said where it listens
    /// (`ready listen=<addr> fingerprint=<hex>`), `env` added to its environment.
    pub(crate) fn spawn_with(
        args: &[String],
        env: &[(&str, &str)],
        what: &'static str,
    ) -> Result<ServerProcess> {
        let (process, stdout) = crate::child::StdinChild::spawn_env(args, env, what)?;
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
            process.kill();
            bail!("{what} did not say it was ready (said {ready:?})");
        };
        Ok(ServerProcess {
            process,
            addr: addr.parse().context("the server's address")?,
            fingerprint,
        })
    }
}

/// Longest wait for one client's sync in figure 5.
#[cfg(feature = "net")]
const T: Duration = Duration::from_secs(600);

/// The server as the clients dial it.
#[cfg(feature = "net")]
pub(crate) fn remote(target: &crate::net_clients::Target) -> Result<blazedb_net::RemoteNode> {
    use blazedb_net::{Credentials, Fingerprint, RemoteNode};
    Ok(RemoteNode::pinned(
        "localhost",
        target.addr.port(),
        DB_NAME,
        Fingerprint::parse(&target.fingerprint)?,
        Credentials::none().token(TOKEN),
    ))
}

/// Connects every database to the server (at most [`CONNECTING`] at a time), each
/// through its initial sync.
#[cfg(feature = "net")]
pub(crate) async fn connect_all(
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
/// client, the time from just before the write's commit to its arrival there (as the
/// client processes report it, in wall-clock microseconds).
#[cfg(feature = "net")]
async fn one_round(
    writer: &blazedb_engine::Database,
    round: usize,
    clients: usize,
    said: &mut tokio::sync::mpsc::UnboundedReceiver<(usize, crate::net_clients::Said)>,
) -> Result<Vec<Duration>> {
    use crate::net_clients::{Said, unix_us};

    let mut seen = vec![false; clients];
    let mut arrivals = Vec::with_capacity(clients - 1);
    let w = writer.clone();
    let round_no = round as i64;
    let t0 = unix_us();
    tokio::task::spawn_blocking(move || {
        w.collection("fan")
            .insert(blazedb_engine::Document::new().with("round", round_no))
    })
    .await??;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while arrivals.len() < clients - 1 {
        let Ok(got) = tokio::time::timeout_at(deadline, said.recv()).await else {
            bail!(
                "fan-out round {round}: {} of {} clients had the write after 120 s",
                arrivals.len(),
                clients - 1
            );
        };
        let (who, m) = got.context("every client process is gone")?;
        match m {
            Said::Arrival {
                client,
                round: r,
                at_us,
            } if r == round_no && client < clients && !seen[client] => {
                seen[client] = true;
                arrivals.push(Duration::from_micros(at_us.saturating_sub(t0)));
            }
            Said::Gone => bail!("client process {who} exited during round {round}"),
            _ => {}
        }
    }
    Ok(arrivals)
}

/// Every client syncs now, at once; returns when all are done.
#[cfg(feature = "net")]
pub(crate) async fn settle(handles: &[std::sync::Arc<blazedb_sync::SyncHandle>]) -> Result<()> {
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

/// The quiet window over which the idle CPU is measured.
pub(crate) const IDLE_WINDOW: Duration = Duration::from_secs(5);

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
    /// Server threads with every client connected, and idle with none.
    pub server_threads: u64,
    pub idle_threads: u64,
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
    /// CPU time per timed round (the write until its last arrival), of the server
    /// process and of the receiving clients' processes together: on a machine whose
    /// cores the clients share with the server, what the clients' own applying costs
    /// bounds the figure from below.
    pub server_cpu_per_round: Duration,
    /// CPU over [`IDLE_WINDOW`] with every client connected and nothing written.
    pub server_idle_cpu: Duration,
    pub clients_idle_cpu: Duration,
    pub clients_cpu_per_round: Duration,
}

impl FanoutResult {
    /// Server memory per connected client, in KB (1,000 bytes).
    pub(crate) fn kb_per_client(&self) -> f64 {
        let delta = self.rss_connected_kib.saturating_sub(self.rss_idle_kib) as f64 * 1024.0;
        delta / self.clients.max(1) as f64 / 1000.0
    }
}

/// Runs figure 5 with `clients` clients and `rounds` fan-out writes; databases go
/// under `dir`. The writing client lives in this process, the others in child
/// processes (`net_clients.rs`).
#[cfg(feature = "net")]
pub(crate) async fn run(dir: &Path, clients: usize, rounds: usize) -> Result<FanoutResult> {
    use crate::net_clients::{ClientProcess, PER_CHILD, Said, Target};

    if clients < 2 {
        bail!("the fan-out needs at least 2 clients");
    }
    let sdir = dir.join("fan-server");
    let server =
        tokio::task::spawn_blocking(move || ServerProcess::spawn(&sdir, clients + 64)).await??;
    let pid = server.process.pid();
    let rss_idle_kib = proc_status(pid, "VmRSS")?;
    let idle_threads = proc_status(pid, "Threads")?;
    let target = Target {
        addr: server.addr,
        fingerprint: server.fingerprint.clone(),
    };

    let cdir = dir.join("fan-clients");
    std::fs::create_dir_all(&cdir)?;
    let t = Instant::now();
    let (said_tx, mut said) = tokio::sync::mpsc::unbounded_channel();
    let mut children = Vec::new();
    let mut first = 1;
    while first < clients {
        let count = PER_CHILD.min(clients - first);
        children.push(ClientProcess::spawn(
            &cdir,
            &target,
            first,
            count,
            children.len(),
            said_tx.clone(),
        )?);
        first += count;
    }
    drop(said_tx);
    let writer = {
        let cdir = cdir.clone();
        tokio::task::spawn_blocking(move || {
            blazedb_engine::Database::builder()
                .kdf(blazedb_engine::KdfParams::INSECURE_FAST)
                .open(&cdir, "c0", PASSWORD)
        })
        .await??
    };
    let writer_handle = connect_all(std::slice::from_ref(&writer), &remote(&target)?).await?;
    let open_time = wait_all(&mut said, children.len(), |m| matches!(m, Said::Opened))
        .await
        .map(|()| t.elapsed())?;
    wait_all(&mut said, children.len(), |m| matches!(m, Said::Ready)).await?;
    let connect_time = t.elapsed().saturating_sub(open_time);
    let cpu_of_clients = |children: &[ClientProcess]| -> Result<Duration> {
        children.iter().map(|c| proc_cpu(c.pid())).sum()
    };
    let rss_connected_kib = proc_status(pid, "VmRSS")?;
    let server_threads = proc_status(pid, "Threads")?;
    // What the connected, idle clients cost the server: its CPU over a quiet window.
    let (s0, c0) = (proc_cpu(pid)?, cpu_of_clients(&children)?);
    tokio::time::sleep(IDLE_WINDOW).await;
    let server_idle_cpu = proc_cpu(pid)?.saturating_sub(s0);
    let clients_idle_cpu = cpu_of_clients(&children)?.saturating_sub(c0);

    let mut fanout_all = Vec::with_capacity(rounds);
    let mut fanout_median = Vec::with_capacity(rounds);
    let mut settle_time = Duration::ZERO;
    let (mut server_cpu, mut clients_cpu) = (Duration::ZERO, Duration::ZERO);
    for round in 0..rounds {
        let (s0, c0) = (proc_cpu(pid)?, cpu_of_clients(&children)?);
        let mut arrivals = one_round(&writer, round, clients, &mut said).await?;
        server_cpu += proc_cpu(pid)?.saturating_sub(s0);
        clients_cpu += cpu_of_clients(&children)?.saturating_sub(c0);
        arrivals.sort_unstable();
        fanout_all.push(arrivals.last().copied().unwrap_or_default());
        fanout_median.push(arrivals[arrivals.len() / 2]);
        // Settle before the next round, outside the timed window: the write's trailing
        // work (acknowledgments, each client's confirmation of its new log position)
        // would otherwise overlap the next round. Every client syncing now returns once
        // its side is confirmed and it has everything the server had.
        let t = Instant::now();
        for c in &mut children {
            c.settle()?;
        }
        settle(&writer_handle).await?;
        wait_all(&mut said, children.len(), |m| matches!(m, Said::Settled)).await?;
        settle_time += t.elapsed();
    }
    let rss_after_fanout_kib = proc_status(pid, "VmRSS")?;

    for h in &writer_handle {
        h.stop().await;
    }
    drop(writer_handle);
    drop(writer);
    tokio::task::spawn_blocking(move || {
        for c in children {
            c.stop()?;
        }
        server.process.stop()
    })
    .await??;
    Ok(FanoutResult {
        clients,
        rss_idle_kib,
        rss_connected_kib,
        rss_after_fanout_kib,
        server_threads,
        idle_threads,
        open_time,
        connect_time,
        fanout_all,
        fanout_median,
        settle_time,
        server_idle_cpu,
        clients_idle_cpu,
        server_cpu_per_round: server_cpu / rounds.max(1) as u32,
        clients_cpu_per_round: clients_cpu / rounds.max(1) as u32,
    })
}

/// Waits until each of `children` client processes said what `is` accepts (arrivals
/// in between are stale: a round's late copies).
#[cfg(feature = "net")]
async fn wait_all(
    said: &mut tokio::sync::mpsc::UnboundedReceiver<(usize, crate::net_clients::Said)>,
    children: usize,
    is: impl Fn(&crate::net_clients::Said) -> bool,
) -> Result<()> {
    use crate::net_clients::Said;
    let mut seen = vec![false; children];
    let mut left = children;
    while left > 0 {
        let got = tokio::time::timeout(T, said.recv()).await;
        let Ok(Some((who, m))) = got else {
            bail!("client processes stopped answering ({left} of {children} still to answer)");
        };
        if matches!(m, Said::Gone) {
            bail!("client process {who} exited early");
        }
        if is(&m) && !seen[who] {
            seen[who] = true;
            left -= 1;
        }
    }
    Ok(())
}
