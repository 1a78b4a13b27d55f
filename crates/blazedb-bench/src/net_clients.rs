//! Figure 5's receiving clients, in child processes (this binary re-executed as
//! `net-clients`): a client database holds three descriptors (data file, journal,
//! lock) and a socket, so ten thousand of them do not fit one process under a common
//! descriptor limit (20,000 on the bench machine, which an unprivileged process cannot
//! raise). Each child holds up to [`PER_CHILD`] clients; the parent keeps the writing
//! client itself.
//!
//! The child speaks lines: it prints `opened` once its databases exist, `ready` once
//! every one is connected and through its initial sync, `arrival <client> <round>
//! <unix µs>` for each round's write committed at one of its clients (taken from a live
//! subscription by a commit hook, as it happens), and `settled` after each `settle`
//! read on its stdin (every client syncs now). It stops its clients and exits when its
//! stdin closes. Arrival times are wall-clock microseconds because they are compared
//! across processes; on one machine over a second they are exact to the clock's tick.

#![cfg_attr(not(feature = "net"), allow(unused_imports, dead_code))]

use std::io::{BufRead as _, Write as _};
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Most clients in one child process (four descriptors each).
pub(crate) const PER_CHILD: usize = 2_500;

/// Wall-clock microseconds since the Unix epoch.
pub(crate) fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Where the children find the server.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub addr: std::net::SocketAddr,
    pub fingerprint: String,
}

/// What a child said, as the parent reads it.
#[derive(Debug)]
pub(crate) enum Said {
    Opened,
    Ready,
    Settled,
    Arrival {
        client: usize,
        round: i64,
        at_us: u64,
    },
    /// Its stdout closed (it exited).
    Gone,
}

/// One child, seen from the parent (stopped by closing its stdin).
#[cfg(feature = "net")]
pub(crate) struct ClientProcess {
    process: crate::child::StdinChild,
}

#[cfg(feature = "net")]
impl ClientProcess {
    /// Starts a child for clients `first .. first + count`; what it says goes to `said`
    /// (with its index `me`).
    pub(crate) fn spawn(
        dir: &Path,
        target: &Target,
        first: usize,
        count: usize,
        me: usize,
        said: tokio::sync::mpsc::UnboundedSender<(usize, Said)>,
    ) -> Result<ClientProcess> {
        let args = [
            "net-clients".to_owned(),
            dir.to_string_lossy().into_owned(),
            target.addr.to_string(),
            target.fingerprint.clone(),
            first.to_string(),
            count.to_string(),
        ];
        let (process, stdout) = crate::child::StdinChild::spawn(&args, "a client process")?;
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Some(msg) = parse(&line) else { continue };
                if said.send((me, msg)).is_err() {
                    return;
                }
            }
            let _ = said.send((me, Said::Gone));
        });
        Ok(ClientProcess { process })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Asks every client of the child to sync now (answered by `settled`).
    pub(crate) fn settle(&mut self) -> Result<()> {
        self.process.say("settle")
    }

    /// Closes the child's stdin and waits for it; fails unless it exits 0.
    pub(crate) fn stop(self) -> Result<()> {
        self.process.stop()
    }
}

/// One line a child said.
fn parse(line: &str) -> Option<Said> {
    let mut w = line.split_whitespace();
    Some(match w.next()? {
        "opened" => Said::Opened,
        "ready" => Said::Ready,
        "settled" => Said::Settled,
        "arrival" => {
            let mut num = || w.next().and_then(|v| v.parse::<u64>().ok());
            let (client, round, at_us) = (num()?, num()?, num()?);
            Said::Arrival {
                client: usize::try_from(client).ok()?,
                round: i64::try_from(round).ok()?,
                at_us,
            }
        }
        _ => return None,
    })
}

/// The child side: `net-clients DIR ADDR FINGERPRINT FIRST COUNT`.
#[cfg(feature = "net")]
pub(crate) fn child(args: &[String]) -> Result<()> {
    let [dir, addr, fp, first, count] = args else {
        bail!("net-clients DIR ADDR FINGERPRINT FIRST COUNT");
    };
    let target = Target {
        addr: addr.parse().context("the server's address")?,
        fingerprint: fp.clone(),
    };
    let (first, count): (usize, usize) = (first.parse()?, count.parse()?);
    crate::net_fanout::raise_fd_limit(4 * count as u64 + 256)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(serve_clients(Path::new(dir), &target, first, count))
}

#[cfg(not(feature = "net"))]
pub(crate) fn child(_args: &[String]) -> Result<()> {
    bail!("this build has no network layer: run it with the default features")
}

/// Prints one line to stdout (the parent reads it).
fn say(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

#[cfg(feature = "net")]
async fn serve_clients(dir: &Path, target: &Target, first: usize, count: usize) -> Result<()> {
    use std::sync::Arc;

    use blazedb_engine::{Database, KdfParams, Value};

    let dbs: Vec<Database> = {
        let dir = dir.to_owned();
        tokio::task::spawn_blocking(move || {
            (first..first + count)
                .map(|i| {
                    Ok(Database::builder().kdf(KdfParams::INSECURE_FAST).open(
                        &dir,
                        &format!("c{i}"),
                        crate::net_fanout::PASSWORD,
                    )?)
                })
                .collect::<Result<Vec<_>>>()
        })
        .await??
    };
    say("opened")?;
    let remote = crate::net_fanout::remote(target)?;
    let handles = crate::net_fanout::connect_all(&dbs, &remote).await?;
    if handles.iter().any(|h| !h.status().connected) {
        bail!("not every client is connected");
    }

    // Arrivals: the commit hook runs right after the applying commit has published its
    // events to the subscription, on the committing thread; a printer task writes them.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, i64, u64)>();
    let mut hooks = Vec::with_capacity(count);
    for (k, db) in dbs.iter().enumerate() {
        let sub = Arc::new(db.subscribe("fan", 64)?);
        let tx = tx.clone();
        let client = first + k;
        hooks.push(db.on_commit(move |_| {
            while let Ok(ev) = sub.try_recv() {
                if let Some(Value::Int(round)) = ev.doc.as_ref().and_then(|d| d.get("round")) {
                    let _ = tx.send((client, *round, unix_us()));
                }
            }
        })?);
    }
    drop(tx);
    let printer = tokio::spawn(async move {
        while let Some((client, round, at)) = rx.recv().await {
            if say(&format!("arrival {client} {round} {at}")).is_err() {
                return;
            }
        }
    });
    say("ready")?;

    // Commands until the parent closes our stdin.
    let (cmd_tx, mut cmd_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if cmd_tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(cmd) = cmd_rx.recv().await {
        match cmd.trim() {
            "settle" => {
                crate::net_fanout::settle(&handles).await?;
                say("settled")?;
            }
            other => bail!("net-clients: unknown command {other:?}"),
        }
    }
    drop(hooks);
    for h in &handles {
        h.stop().await;
    }
    drop(handles);
    drop(dbs);
    printer.abort();
    Ok(())
}
