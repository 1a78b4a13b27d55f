//! `blazedb-bench net`: sync over real TLS connections on loopback, against baselines
//! measured in the same run (issue 6's goals):
//!
//! 1. Initial sync of N documents to a fresh client, against bulk-loading the same
//!    documents into a local database (one transaction), each the median of three
//!    rounds into fresh databases (`--only initial` runs this figure alone). Goal: ≤ 1.5×.
//! 2. A change at client A visible at client B through the server (live sync), over
//!    200 changes: p50 and p99. Goals: ≤ 2 ms, ≤ 10 ms.
//! 3. Resync after 10 changes on the N-document database: bytes B receives and the
//!    time its "sync now" takes. Goals: ≤ 10 KB, ≤ 5 ms.
//! 4. Aggregate throughput of 10 clients writing at once (transactions of 100), until
//!    the server has everything. Goal: ≥ 50,000 writes/s. The writers also pull each
//!    other's writes, as live clients do; 4b is the same with push-only writers, so
//!    the difference is what pulling costs on the shared cores (`net_burst.rs`).
//! 5. 10,000 connected clients (100 with `--quick`, any number with `--clients N`),
//!    against a server in its own process (`net-server`, see `net_fanout.rs`): the
//!    server's RSS per client (idle with no client → all connected and through their
//!    initial sync, ÷ N), goal ≤ 50 KB; its threads (no thread per session); and
//!    the time from one client's write to the moment the last of the other N − 1
//!    clients has committed it, over several rounds: p50 and max, goal ≤ 1 s.

#![cfg_attr(not(feature = "net"), allow(unused_imports, dead_code))]

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// Problem sizes of one run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NetSizes {
    /// Documents of the initial sync and resync database.
    pub docs: usize,
    /// Changes timed from A to B.
    pub changes: usize,
    /// Writes per client in the throughput figure.
    pub per_client: usize,
    /// Connected clients of the RSS and fan-out figure.
    pub clients: usize,
    /// Fan-out rounds (one write each).
    pub fanout_rounds: usize,
    /// Run figures 1–4 (`--only sync`), or figure 1 alone (`--only initial`).
    pub sync_figures: bool,
    /// With `sync_figures`: run figures 2–4 too (not with `--only initial`).
    pub later_figures: bool,
    /// Run figure 5 (`--only fanout`).
    pub fanout_figure: bool,
}

impl NetSizes {
    pub(crate) fn new(quick: bool) -> Self {
        if quick {
            Self {
                docs: 5_000,
                changes: 50,
                per_client: 500,
                clients: 100,
                fanout_rounds: 5,
                sync_figures: true,
                later_figures: true,
                fanout_figure: true,
            }
        } else {
            Self {
                docs: 100_000,
                changes: 200,
                per_client: 5_000,
                clients: 10_000,
                fanout_rounds: 10,
                sync_figures: true,
                later_figures: true,
                fanout_figure: true,
            }
        }
    }
}

#[cfg(feature = "net")]
pub(crate) fn run(dir: &Path, sizes: NetSizes) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run_async(dir, sizes))
}

#[cfg(not(feature = "net"))]
pub(crate) fn run(_dir: &Path, sizes: NetSizes) -> Result<()> {
    bail!("this build has no network layer (asked for {sizes:?}): run it with the default features")
}

/// Resyncs measured (figure 3); the figure is their median.
#[cfg(feature = "net")]
const RESYNC_ROUNDS: usize = 9;

/// What one run measured of figures 1–4.
#[cfg(feature = "net")]
struct Measured {
    /// Medians of [`INITIAL_ROUNDS`].
    bulk: Duration,
    initial: Duration,
    /// Figures 2–4, unless only figure 1 ran.
    later: Option<Later>,
}

/// Figures 2–4.
struct Later {
    lat: crate::report::Latency,
    resync: Duration,
    resync_bytes: u64,
    /// Writes of the burst, and the time until the server held them all.
    burst_writes: usize,
    burst: Duration,
    /// The same with push-only writers.
    burst_push: Duration,
}

/// Rounds of figure 1 (each into fresh databases), of which the median is reported:
/// one round varies by ±15 % from run to run on the bench machine.
#[cfg(feature = "net")]
const INITIAL_ROUNDS: usize = 3;

/// Longest wait for any one sync in the run.
#[cfg(feature = "net")]
const T: Duration = Duration::from_secs(1_200);

/// The run's databases (in one directory) and the server they sync with.
#[cfg(feature = "net")]
struct Rig<'a> {
    dir: &'a Path,
    remote: blazedb_net::RemoteNode,
}

#[cfg(feature = "net")]
impl Rig<'_> {
    fn open(&self, name: &str) -> Result<blazedb_engine::Database> {
        open(self.dir, name)
    }

    async fn connect(&self, db: blazedb_engine::Database) -> Result<blazedb_sync::SyncHandle> {
        use blazedb_sync::{EnableSync, Role};
        Ok(db.enable_sync(self.remote.relay(), Role::Client).await?)
    }
}

/// Opens (creating) the database `name` of the run.
#[cfg(feature = "net")]
fn open(dir: &Path, name: &str) -> Result<blazedb_engine::Database> {
    Ok(blazedb_engine::Database::builder()
        .kdf(blazedb_engine::KdfParams::INSECURE_FAST)
        .open(dir, name, "bench")?)
}

/// Inserts `docs` into `db` in one transaction; returns how long it took.
#[cfg(feature = "net")]
pub(crate) fn bulk_load(
    db: &blazedb_engine::Database,
    docs: &[crate::docgen::DocSpec],
) -> Result<Duration> {
    let t = Instant::now();
    let mut tx = db.begin_write()?;
    for d in docs {
        tx.insert("docs", d.to_document())?;
    }
    tx.commit()?;
    Ok(t.elapsed())
}

#[cfg(feature = "net")]
async fn run_async(dir: &Path, sizes: NetSizes) -> Result<()> {
    let measured = if sizes.sync_figures {
        Some(sync_figures(dir, sizes).await?)
    } else {
        None
    };
    let fan = if sizes.fanout_figure {
        println!(
            "  running: 5. {} connected clients: server RSS per client (server in its own process), fan-out of one write to all, {} rounds",
            sizes.clients, sizes.fanout_rounds
        );
        Some(crate::net_fanout::run(dir, sizes.clients, sizes.fanout_rounds).await?)
    } else {
        None
    };
    println!();
    println!("| figure | measured | baseline / goal | verdict |");
    println!("| --- | --- | --- | --- |");
    if let Some(m) = &measured {
        print_sync_figures(sizes, m);
    }
    if let Some(fan) = &fan {
        print_fanout_figures(fan);
        println!();
        print_fanout_details(fan);
    }
    Ok(())
}

/// Figures 1–4, against one server in this process.
#[cfg(feature = "net")]
async fn sync_figures(dir: &Path, sizes: NetSizes) -> Result<Measured> {
    use blazedb_net::{Credentials, RemoteNode, Server, TlsSetup};

    use crate::docgen::DocGen;

    let docs = DocGen::new(11).take(sizes.docs);
    let server_db = open(dir, "server")?;
    bulk_load(&server_db, &docs)?;
    let mut server = Server::new(0, &server_db, "main", Some("bench-token"), None)
        .tls(TlsSetup::SelfSigned(dir.join("tls")));
    let addr = server.start().await?;
    let fp = server.fingerprint().expect("TLS is on");
    let rig = Rig {
        dir,
        remote: RemoteNode::pinned(
            "localhost",
            addr.port(),
            "main",
            fp,
            Credentials::none().token("bench-token"),
        ),
    };

    let (bulks, initials, b, hb) = initial_rounds(&rig, sizes, &docs).await?;
    let (bulk, initial) = (median(bulks), median(initials));
    if !sizes.later_figures {
        hb.stop().await;
        server.stop().await?;
        return Ok(Measured {
            bulk,
            initial,
            later: None,
        });
    }

    println!(
        "  running: 2. change at A visible at B, {} changes",
        sizes.changes
    );
    let a = rig.open("a")?;
    let ha = rig.connect(a.clone()).await?;
    ha.sync_now(T).await?;
    let lat = a_to_b(&a, &b, sizes.changes).await?;

    println!(
        "  running: 3. resync after 10 changes on the {}-document database",
        sizes.docs
    );
    // The median of several rounds: one reconnection is a few milliseconds, and a
    // single sample of it varies by a third from run to run.
    let mut rounds = Vec::with_capacity(RESYNC_ROUNDS);
    for round in 0..RESYNC_ROUNDS {
        hb.stop().await;
        for i in 0..10i64 {
            a.collection("docs").insert(
                blazedb_engine::Document::new()
                    .with("resync", i)
                    .with("round", round as i64),
            )?;
        }
        ha.sync_now(T).await?;
        let before = hb.status().bytes_received;
        hb.start();
        let t = Instant::now();
        let st = hb.sync_now(T).await?;
        rounds.push((t.elapsed(), st.bytes_received.saturating_sub(before)));
    }
    rounds.sort();
    let (resync, resync_bytes) = rounds[rounds.len() / 2];
    println!(
        "  resync rounds (ms): {}",
        rounds
            .iter()
            .map(|(d, _)| format!("{:.2}", d.as_secs_f64() * 1000.0))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let mut bursts = Vec::new();
    for (figure, mode) in [
        ("4.", blazedb_sync::ConnectionMode::Bidirectional),
        ("4b. push-only:", blazedb_sync::ConnectionMode::PushOnly),
    ] {
        println!(
            "  running: {figure} 10 clients writing {} documents each",
            sizes.per_client
        );
        bursts.push(
            crate::net_burst::burst(
                &rig.remote,
                |name| rig.open(name),
                &server_db,
                sizes.per_client,
                mode,
                T,
            )
            .await?,
        );
    }
    let (burst_both, burst_push) = (bursts[0], bursts[1]);
    ha.stop().await;
    hb.stop().await;
    server.stop().await?;
    Ok(Measured {
        bulk,
        initial,
        later: Some(Later {
            lat,
            resync,
            resync_bytes,
            burst_writes: 10 * sizes.per_client,
            burst: burst_both,
            burst_push,
        }),
    })
}

/// The median of `d` (not empty).
#[cfg(feature = "net")]
fn median(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[d.len() / 2]
}

/// `d` in milliseconds, comma-separated.
#[cfg(feature = "net")]
fn join_ms(d: &[Duration]) -> String {
    d.iter()
        .map(|d| format!("{:.0}", d.as_secs_f64() * 1000.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Figure 1's rounds: bulk loads (the baseline) and initial syncs into fresh
/// databases; returns their times and the last round's client, still connected.
#[cfg(feature = "net")]
async fn initial_rounds(
    rig: &Rig<'_>,
    sizes: NetSizes,
    docs: &[crate::docgen::DocSpec],
) -> Result<(
    Vec<Duration>,
    Vec<Duration>,
    blazedb_engine::Database,
    blazedb_sync::SyncHandle,
)> {
    let mut bulks = Vec::with_capacity(INITIAL_ROUNDS);
    let mut initials = Vec::with_capacity(INITIAL_ROUNDS);
    let mut clients = Vec::with_capacity(INITIAL_ROUNDS);
    for round in 0..INITIAL_ROUNDS {
        println!(
            "  running: 1. bulk load of {} documents (baseline), round {}",
            sizes.docs,
            round + 1
        );
        bulks.push(bulk_load(&rig.open(&format!("local{round}"))?, docs)?);
        println!(
            "  running: 1. initial sync of {} documents over TLS, round {}",
            sizes.docs,
            round + 1
        );
        let b = rig.open(&format!("b{round}"))?;
        let t = Instant::now();
        let hb = rig.connect(b.clone()).await?;
        hb.sync_now(T).await?;
        initials.push(t.elapsed());
        if b.collection("docs").count()? != sizes.docs as u64 {
            bail!("the initial sync did not bring every document");
        }
        clients.push((b, hb));
    }
    println!(
        "  initial sync rounds (ms): {} (bulk load: {})",
        join_ms(&initials),
        join_ms(&bulks)
    );
    let (b, hb) = clients.pop().expect("at least one round");
    for (_, h) in clients {
        h.stop().await;
    }
    Ok((bulks, initials, b, hb))
}

/// Figure 2: for each of `changes` inserts at `a`, the time until `b` has it.
#[cfg(feature = "net")]
pub(crate) async fn a_to_b(
    a: &blazedb_engine::Database,
    b: &blazedb_engine::Database,
    changes: usize,
) -> Result<crate::report::Latency> {
    let (tx_seen, mut rx_seen) = tokio::sync::watch::channel(0u64);
    let _hook = b.on_commit(move |_| {
        tx_seen.send_modify(|n| *n += 1);
    })?;
    let mut times = Vec::with_capacity(changes);
    for i in 0..changes {
        let t = Instant::now();
        let id = a
            .collection("live")
            .insert(blazedb_engine::Document::new().with("i", i as i64))?;
        loop {
            if b.collection("live").get(id)?.is_some() {
                break;
            }
            tokio::time::timeout(Duration::from_secs(10), rx_seen.changed()).await??;
        }
        times.push(t.elapsed());
    }
    Ok(crate::report::Latency::of(&times))
}

pub(crate) fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// The rows of figures 1–4.
#[cfg(feature = "net")]
fn print_sync_figures(sizes: NetSizes, m: &Measured) {
    use crate::report::ms;

    let ratio = m.initial.as_secs_f64() / m.bulk.as_secs_f64().max(1e-9);
    println!(
        "| initial sync of {} docs over TLS | {:.0} ms | bulk load {:.0} ms → {ratio:.2}× (goal ≤ 1.5×) | {} |",
        sizes.docs,
        ms(m.initial),
        ms(m.bulk),
        verdict(ratio <= 1.5)
    );
    let Some(m) = &m.later else {
        return;
    };
    let lat = &m.lat;
    println!(
        "| A → B through the server, p50 | {:.2} ms | goal ≤ 2 ms | {} |",
        ms(lat.p50),
        verdict(ms(lat.p50) <= 2.0)
    );
    println!(
        "| A → B through the server, p99 | {:.2} ms | goal ≤ 10 ms | {} |",
        ms(lat.p99),
        verdict(ms(lat.p99) <= 10.0)
    );
    println!(
        "| resync after 10 changes ({} docs): bytes received | {} B | goal ≤ 10,240 B | {} |",
        sizes.docs,
        m.resync_bytes,
        verdict(m.resync_bytes <= 10_240)
    );
    println!(
        "| resync after 10 changes: time, median of 9 | {:.2} ms | goal ≤ 5 ms | {} |",
        ms(m.resync),
        verdict(ms(m.resync) <= 5.0)
    );
    let rate = m.burst_writes as f64 / m.burst.as_secs_f64().max(1e-9);
    println!(
        "| 10 clients writing at once, until the server has all | {rate:.0} writes/s | goal ≥ 50,000 | {} |",
        verdict(rate >= 50_000.0)
    );
    let rate = m.burst_writes as f64 / m.burst_push.as_secs_f64().max(1e-9);
    println!(
        "| 4b. the same, push-only writers (the server's ingest) | {rate:.0} writes/s | goal ≥ 50,000 | {} |",
        verdict(rate >= 50_000.0)
    );
}

/// Server threads beyond its idle count that figure 5 allows with every client
/// connected: the sessions' database workers and a margin, however many clients.
#[cfg(feature = "net")]
const EXTRA_THREADS_MAX: u64 = 32;

/// The rows of figure 5.
#[cfg(feature = "net")]
fn print_fanout_figures(fan: &crate::net_fanout::FanoutResult) {
    use crate::report::{Latency, ms};

    let per_client = fan.kb_per_client();
    println!(
        "| {} connected clients: server RSS per client | {per_client:.1} KB (VmRSS {} → {} KiB) | goal ≤ 50 KB → {:.2}× the goal | {} |",
        fan.clients,
        fan.rss_idle_kib,
        fan.rss_connected_kib,
        per_client / 50.0,
        verdict(per_client <= 50.0)
    );
    let extra = fan.server_threads.saturating_sub(fan.idle_threads);
    println!(
        "| {} connected clients: server threads | {} (idle {}) | goal: no thread per session, ≤ {EXTRA_THREADS_MAX} more than idle | {} |",
        fan.clients,
        fan.server_threads,
        fan.idle_threads,
        verdict(extra <= EXTRA_THREADS_MAX)
    );
    let all = Latency::of(&fan.fanout_all);
    let max = fan.fanout_all.iter().max().copied().unwrap_or_default();
    println!(
        "| one write fanned out to the other {} clients, p50 of {} rounds | {:.1} ms | goal ≤ 1,000 ms | {} |",
        fan.clients - 1,
        fan.fanout_all.len(),
        ms(all.p50),
        verdict(ms(all.p50) <= 1_000.0)
    );
    println!(
        "| one write fanned out to the other {} clients, max | {:.1} ms | goal ≤ 1,000 ms | {} |",
        fan.clients - 1,
        ms(max),
        verdict(ms(max) <= 1_000.0)
    );
}

/// Figure 5's details: setup times, threads, memory, every round.
#[cfg(feature = "net")]
fn print_fanout_details(fan: &crate::net_fanout::FanoutResult) {
    use crate::report::{Latency, ms};

    let median_client = Latency::of(&fan.fanout_median);
    println!(
        "figure 5 details: {} client databases created in {:.1} s, connected and synced in {:.1} s \
         ({} at a time); settling between rounds (every client syncs now, untimed) {:.1} s in \
         all; server threads with all connected: {}; server VmRSS after the fan-out: {} KiB; \
         median client reached after {:.1} ms (p50 of rounds); CPU per round (the write \
         until its last arrival): server {:.0} ms, receiving clients {:.0} ms, on {} cores; \
         CPU with every client connected and idle, over {} s: server {:.0} ms, clients {:.0} ms; \
         all rounds (ms): {}",
        fan.clients,
        fan.open_time.as_secs_f64(),
        fan.connect_time.as_secs_f64(),
        crate::net_fanout::CONNECTING,
        fan.settle_time.as_secs_f64(),
        fan.server_threads,
        fan.rss_after_fanout_kib,
        ms(median_client.p50),
        ms(fan.server_cpu_per_round),
        ms(fan.clients_cpu_per_round),
        std::thread::available_parallelism().map_or(0, usize::from),
        crate::net_fanout::IDLE_WINDOW.as_secs(),
        ms(fan.server_idle_cpu),
        ms(fan.clients_idle_cpu),
        fan.fanout_all
            .iter()
            .map(|d| format!("{:.0}", ms(*d)))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
