//! `blazedb-bench net --store postgres`: sync servers whose state lives in PostgreSQL
//! (several server processes over one store), against a server over the embedded
//! store, in the same run. Every server runs in its own process (this binary
//! re-executed as `net-server` for the embedded store, `net-pg-server` for
//! PostgreSQL); the clients run in the bench process, each with its own embedded
//! database, over TLS on loopback. PostgreSQL is a throwaway cluster on 127.0.0.1
//! (`blazedb-testpg`), its files in the run's data directory, with its default settings: `fsync` and `synchronous_commit` on,
//! so a commit there is as durable as one of the embedded store.
//!
//! 1. **Initial sync** of N documents to a fresh client: the documents are loaded
//!    through one server process (untimed), then a fresh client syncs them from the
//!    other process (embedded: the same server). Baseline: the local bulk load.
//! 2. **Ingest**: 10 clients write `per_client` documents each at once (transactions
//!    of 100) until every writer's writes are acknowledged (a server acknowledges a
//!    batch only after its durable commit, Postgres's for the store; each writer polls
//!    its status every [`POLL`]): embedded; PostgreSQL through one process;
//!    PostgreSQL through two processes, five clients on each. Goal: PostgreSQL through
//!    one process ≥ 0.5× the embedded store.
//! 3. **A → B**: a change at client A until client B has committed it, over `changes`
//!    changes: A and B on one embedded server; A on PostgreSQL process 1 and B on
//!    process 2 (process 2 learns of the commit from Postgres's LISTEN/NOTIFY).
//!    Goal: cross-process p50 ≤ 10 ms.
//!
//! Each figure serves its own database (a name of its own in the store, a directory of
//! its own for the embedded server), so no figure starts with another's documents.

#![cfg_attr(not(feature = "net"), allow(unused_imports, dead_code))]

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::net_bench::NetSizes;
use crate::net_fanout::{PASSWORD, ServerProcess, TOKEN};

/// How often an ingest writer reads its status (pending writes) once it has written.
const POLL: Duration = Duration::from_millis(2);

/// Longest wait for any one sync of the run.
const T: Duration = Duration::from_secs(1_200);

/// Clients writing at once in figure 2.
const WRITERS: usize = 10;

/// The environment variable that hands the PostgreSQL password to the server children
/// (never on their command line, which other users can read).
const PG_PASSWORD_ENV: &str = "BLAZEDB_BENCH_PG_PASSWORD";

/// The figures to run (`--only initial,ingest,live`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Only {
    initial: bool,
    ingest: bool,
    live: bool,
}

impl Only {
    pub(crate) fn parse(list: &str) -> Result<Only> {
        let mut only = Only {
            initial: false,
            ingest: false,
            live: false,
        };
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "initial" => only.initial = true,
                "ingest" => only.ingest = true,
                "live" => only.live = true,
                other => {
                    bail!("--only with --store postgres takes initial, ingest, live; not '{other}'")
                }
            }
        }
        if !(only.initial || only.ingest || only.live) {
            bail!("--only with --store postgres needs one of initial, ingest, live");
        }
        Ok(only)
    }
}

#[cfg(feature = "net")]
pub(crate) fn run(dir: &Path, sizes: NetSizes, only: Only) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run_async(dir, sizes, only))
}

#[cfg(not(feature = "net"))]
pub(crate) fn run(_dir: &Path, sizes: NetSizes, _only: Only) -> Result<()> {
    bail!("this build has no network layer (asked for {sizes:?}): run it with the default features")
}

/// The run's servers: a throwaway PostgreSQL, and the shared TLS identity of the
/// PostgreSQL-backed processes (clients pin one fingerprint whichever they reach).
#[cfg(feature = "net")]
struct Rig<'a> {
    dir: &'a Path,
    cluster: blazedb_testpg::Cluster,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

/// A server process and the database name it serves.
#[cfg(feature = "net")]
struct Served {
    process: ServerProcess,
    name: String,
}

#[cfg(feature = "net")]
impl Served {
    fn remote(&self) -> Result<blazedb_net::RemoteNode> {
        use blazedb_net::{Credentials, Fingerprint, RemoteNode};
        Ok(RemoteNode::pinned(
            "localhost",
            self.process.addr.port(),
            &self.name,
            Fingerprint::parse(&self.process.fingerprint)?,
            Credentials::none().token(TOKEN),
        ))
    }

    fn stop(self) -> Result<()> {
        self.process.process.stop()
    }
}

#[cfg(feature = "net")]
impl Rig<'_> {
    /// An embedded server over a fresh database in `dir/<name>`.
    async fn embedded(&self, name: &str) -> Result<Served> {
        let args = [
            "net-server".to_owned(),
            "--dir".to_owned(),
            self.dir.join(name).to_string_lossy().into_owned(),
        ];
        let process = tokio::task::spawn_blocking(move || {
            ServerProcess::spawn_with(&args, &[], "the embedded server process")
        })
        .await??;
        Ok(Served {
            process,
            name: crate::net_fanout::DB_NAME.to_owned(),
        })
    }

    /// A server process over the store's database `name`.
    async fn pg(&self, name: &str) -> Result<Served> {
        let args = [
            "net-pg-server".to_owned(),
            "--url".to_owned(),
            self.cluster.url("postgres"),
            "--name".to_owned(),
            name.to_owned(),
            "--cert".to_owned(),
            self.cert.to_string_lossy().into_owned(),
            "--key".to_owned(),
            self.key.to_string_lossy().into_owned(),
        ];
        let password = self.cluster.password().to_owned();
        let process = tokio::task::spawn_blocking(move || {
            ServerProcess::spawn_with(
                &args,
                &[(PG_PASSWORD_ENV, &password)],
                "a PostgreSQL-backed server process",
            )
        })
        .await??;
        Ok(Served {
            process,
            name: name.to_owned(),
        })
    }

    fn open(&self, name: &str) -> Result<blazedb_engine::Database> {
        Ok(blazedb_engine::Database::builder()
            .kdf(blazedb_engine::KdfParams::INSECURE_FAST)
            .open(self.dir, name, PASSWORD)?)
    }

    async fn connect(
        &self,
        name: &str,
        server: &Served,
    ) -> Result<(blazedb_engine::Database, blazedb_sync::SyncHandle)> {
        use blazedb_sync::{EnableSync, Role};
        let db = self.open(name)?;
        let h = db
            .enable_sync(server.remote()?.relay(), Role::Client)
            .await?;
        Ok((db, h))
    }
}

/// What the run measured, per figure (`None`: not run).
#[cfg(feature = "net")]
#[derive(Default)]
struct Measured {
    /// Bulk load, initial sync embedded, initial sync PostgreSQL.
    initial: Option<(Duration, Duration, Duration)>,
    /// Embedded, PostgreSQL through 1 process, through 2.
    ingest: Option<(Duration, Duration, Duration)>,
    /// Embedded (one server), PostgreSQL with A and B on one process, on two.
    live: Option<(
        crate::report::Latency,
        crate::report::Latency,
        crate::report::Latency,
    )>,
}

#[cfg(feature = "net")]
async fn run_async(dir: &Path, sizes: NetSizes, only: Only) -> Result<()> {
    println!("  starting a throwaway PostgreSQL cluster (initdb, 127.0.0.1, a free port)");
    // Its files on the disk the run measures, beside the embedded databases.
    let d = dir.to_owned();
    let cluster = tokio::task::spawn_blocking(move || blazedb_testpg::Cluster::start_in(&d))
        .await?
        .context(
            "starting PostgreSQL in the data directory (is the `postgresql` package \
             installed? as root, the user `nobody` must be able to reach the directory)",
        )?;
    let (cert, key) = blazedb_net::ServerIdentity::self_signed_pem()?;
    let tls = dir.join("pg-tls");
    std::fs::create_dir_all(&tls)?;
    std::fs::write(tls.join("cert.pem"), cert)?;
    std::fs::write(tls.join("key.pem"), key.as_bytes())?;
    let rig = Rig {
        dir,
        cluster,
        cert: tls.join("cert.pem"),
        key: tls.join("key.pem"),
    };
    let mut m = Measured::default();
    if only.initial {
        m.initial = Some(initial_figure(&rig, sizes).await?);
    }
    if only.ingest {
        m.ingest = Some(ingest_figure(&rig, sizes).await?);
    }
    if only.live {
        m.live = Some(live_figure(&rig, sizes).await?);
    }
    print(sizes, &m);
    Ok(())
}

/// Figure 1: bulk load, initial sync from the embedded store, from PostgreSQL.
#[cfg(feature = "net")]
async fn initial_figure(rig: &Rig<'_>, sizes: NetSizes) -> Result<(Duration, Duration, Duration)> {
    let docs = crate::docgen::DocGen::new(11).take(sizes.docs);
    println!(
        "  running: 1. bulk load of {} documents (baseline)",
        sizes.docs
    );
    let bulk = crate::net_bench::bulk_load(&rig.open("local")?, &docs)?;
    println!(
        "  running: 1. initial sync of {} documents, embedded",
        sizes.docs
    );
    let e = rig.embedded("initial").await?;
    let embedded = initial(rig, "e", &docs, &e, &e).await?;
    e.stop()?;
    println!(
        "  running: 1. initial sync of {} documents, PostgreSQL (loaded through process 1, synced from process 2)",
        sizes.docs
    );
    let (p1, p2) = (rig.pg("initial").await?, rig.pg("initial").await?);
    let pg = initial(rig, "p", &docs, &p1, &p2).await?;
    p1.stop()?;
    p2.stop()?;
    Ok((bulk, embedded, pg))
}

/// Figure 2: ingest through the embedded store, PostgreSQL with 1 and 2 processes.
#[cfg(feature = "net")]
async fn ingest_figure(rig: &Rig<'_>, sizes: NetSizes) -> Result<(Duration, Duration, Duration)> {
    let n = sizes.per_client;
    println!("  running: 2. {WRITERS} clients writing {n} documents each, embedded");
    let e = rig.embedded("ingest").await?;
    let embedded = ingest(rig, "ie", &[&e], n).await?;
    e.stop()?;
    println!("  running: 2. {WRITERS} clients writing {n} documents each, PostgreSQL, 1 process");
    let p1 = rig.pg("ingest1").await?;
    let pg1 = ingest(rig, "i1", &[&p1], n).await?;
    p1.stop()?;
    println!("  running: 2. {WRITERS} clients writing {n} documents each, PostgreSQL, 2 processes");
    let (p1, p2) = (rig.pg("ingest2").await?, rig.pg("ingest2").await?);
    let pg2 = ingest(rig, "i2", &[&p1, &p2], n).await?;
    p1.stop()?;
    p2.stop()?;
    Ok((embedded, pg1, pg2))
}

/// Figure 3: A → B on one embedded server, on one PostgreSQL process, and across two.
#[cfg(feature = "net")]
async fn live_figure(
    rig: &Rig<'_>,
    sizes: NetSizes,
) -> Result<(
    crate::report::Latency,
    crate::report::Latency,
    crate::report::Latency,
)> {
    println!("  running: 3. A -> B, {} changes, embedded", sizes.changes);
    let e = rig.embedded("live").await?;
    let embedded = a_to_b(rig, "le", &e, &e, sizes.changes).await?;
    e.stop()?;
    let (p1, p2) = (rig.pg("live").await?, rig.pg("live").await?);
    println!(
        "  running: 3. A -> B, {} changes, PostgreSQL, A and B on process 1",
        sizes.changes
    );
    let same = a_to_b(rig, "ls", &p1, &p1, sizes.changes).await?;
    println!(
        "  running: 3. A -> B, {} changes, PostgreSQL, A on process 1, B on process 2",
        sizes.changes
    );
    let cross = a_to_b(rig, "lp", &p1, &p2, sizes.changes).await?;
    p1.stop()?;
    p2.stop()?;
    Ok((embedded, same, cross))
}

/// Figure 1: `docs` pushed through `load` by a client (untimed), then the time a fresh
/// client takes to sync them all from `from`.
#[cfg(feature = "net")]
async fn initial(
    rig: &Rig<'_>,
    tag: &str,
    docs: &[crate::docgen::DocSpec],
    load: &Served,
    from: &Served,
) -> Result<Duration> {
    let loader = rig.open(&format!("{tag}-loader"))?;
    crate::net_bench::bulk_load(&loader, docs)?;
    let (_, h) = {
        use blazedb_sync::{EnableSync, Role};
        let h = loader
            .enable_sync(load.remote()?.relay(), Role::Client)
            .await?;
        ((), h)
    };
    h.sync_now(T).await?;
    h.stop().await;

    let t = Instant::now();
    let (db, h) = rig.connect(&format!("{tag}-fresh"), from).await?;
    h.sync_now(T).await?;
    let took = t.elapsed();
    h.stop().await;
    if db.collection("docs").count()? != docs.len() as u64 {
        bail!("the initial sync did not bring every document");
    }
    Ok(took)
}

/// Figure 2: [`WRITERS`] clients, the k-th on `servers[k % len]`, each through its
/// initial sync first; then all write `per_client` documents at once; the time until
/// the last writer's writes are all acknowledged.
#[cfg(feature = "net")]
async fn ingest(
    rig: &Rig<'_>,
    tag: &str,
    servers: &[&Served],
    per_client: usize,
) -> Result<Duration> {
    let mut clients = Vec::with_capacity(WRITERS);
    for k in 0..WRITERS {
        let (db, h) = rig
            .connect(&format!("{tag}-w{k}"), servers[k % servers.len()])
            .await?;
        h.sync_now(T).await?;
        clients.push((db, std::sync::Arc::new(h)));
    }
    let t = Instant::now();
    let mut tasks = Vec::with_capacity(WRITERS);
    for (k, (db, h)) in clients.iter().enumerate() {
        let (db, h) = (db.clone(), std::sync::Arc::clone(h));
        tasks.push(tokio::task::spawn_blocking(move || -> Result<()> {
            crate::net_burst::write_burst(&db, k, per_client)?;
            let deadline = Instant::now() + T;
            while h.status().pending_local_writes > 0 {
                if Instant::now() > deadline {
                    bail!("writer {k}'s writes are not all acknowledged after {T:?}");
                }
                std::thread::sleep(POLL);
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let took = t.elapsed();
    for (_, h) in clients {
        h.stop().await;
    }
    Ok(took)
}

/// Figure 3: a change at a client of `a_server` until a client of `b_server` has it.
#[cfg(feature = "net")]
async fn a_to_b(
    rig: &Rig<'_>,
    tag: &str,
    a_server: &Served,
    b_server: &Served,
    changes: usize,
) -> Result<crate::report::Latency> {
    let (a, ha) = rig.connect(&format!("{tag}-a"), a_server).await?;
    let (b, hb) = rig.connect(&format!("{tag}-b"), b_server).await?;
    ha.sync_now(T).await?;
    hb.sync_now(T).await?;
    let lat = crate::net_bench::a_to_b(&a, &b, changes).await?;
    ha.stop().await;
    hb.stop().await;
    Ok(lat)
}

#[cfg(feature = "net")]
fn print(sizes: NetSizes, m: &Measured) {
    use crate::net_bench::verdict;
    use crate::report::ms;

    println!();
    println!("| figure | embedded store | PostgreSQL store | ratio / goal | verdict |");
    println!("| --- | --- | --- | --- | --- |");
    if let Some((bulk, e, p)) = m.initial {
        let bulk = ms(bulk).max(1e-9);
        println!(
            "| initial sync of {} docs (bulk load {bulk:.0} ms) | {:.0} ms ({:.2}× bulk) | {:.0} ms ({:.2}× bulk) | PostgreSQL {:.2}× embedded | – |",
            sizes.docs,
            ms(e),
            ms(e) / bulk,
            ms(p),
            ms(p) / bulk,
            ms(p) / ms(e).max(1e-9)
        );
    }
    if let Some((e, p1, p2)) = m.ingest {
        let rate = |d: Duration| (WRITERS * sizes.per_client) as f64 / d.as_secs_f64().max(1e-9);
        let (e, p1, p2) = (rate(e), rate(p1), rate(p2));
        println!(
            "| ingest, {WRITERS} clients × {} writes, until acknowledged: 1 process | {e:.0} writes/s | {p1:.0} writes/s | {:.2}× (goal ≥ 0.5×) | {} |",
            sizes.per_client,
            p1 / e.max(1e-9),
            verdict(p1 >= 0.5 * e)
        );
        println!(
            "| ingest, {WRITERS} clients: 2 PostgreSQL processes (5 clients each) | – | {p2:.0} writes/s | {:.2}× one process | – |",
            p2 / p1.max(1e-9)
        );
    }
    if let Some((e, same, p)) = &m.live {
        println!(
            "| A → B, p50 (PostgreSQL: A on process 1, B on process 2) | {:.2} ms | {:.2} ms | goal ≤ 10 ms | {} |",
            ms(e.p50),
            ms(p.p50),
            verdict(ms(p.p50) <= 10.0)
        );
        println!(
            "| A → B, p99 (the same) | {:.2} ms | {:.2} ms | – | – |",
            ms(e.p99),
            ms(p.p99)
        );
        println!(
            "| A → B with A and B on one PostgreSQL process, p50 / p99 | – | {:.2} / {:.2} ms | – | – |",
            ms(same.p50),
            ms(same.p99)
        );
    }
}

/// The child side: `net-pg-server --url URL --name NAME --cert FILE --key FILE`, the
/// PostgreSQL password in [`PG_PASSWORD_ENV`]. Opens the store's database NAME (making
/// it the first time), serves it over TLS with the given identity on 127.0.0.1 (a
/// free port), prints `ready listen=<addr> fingerprint=<hex>` and serves until its
/// stdin closes, then stops cleanly.
#[cfg(feature = "net")]
pub(crate) fn pg_server_child(args: &[String]) -> Result<()> {
    use std::sync::Arc;

    let arg = |flag: &str| -> Result<String> {
        let i = args
            .iter()
            .position(|a| a == flag)
            .with_context(|| format!("net-pg-server needs {flag}"))?;
        args.get(i + 1)
            .cloned()
            .with_context(|| format!("{flag} needs a value"))
    };
    let (url, name, cert, key) = (arg("--url")?, arg("--name")?, arg("--cert")?, arg("--key")?);
    let password = std::env::var(PG_PASSWORD_ENV)
        .with_context(|| format!("net-pg-server needs {PG_PASSWORD_ENV}"))?;
    // The same runtime as `blazedb-server` (one worker per CPU).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use blazedb_net::{Server, ServerIdentity, TlsSetup};

        let cfg = blazedb_pg::config_from_url(&url, Some(&password))?;
        let n = name.clone();
        let store = tokio::task::spawn_blocking(move || {
            blazedb_pg::PgStore::open(
                cfg,
                &n,
                PASSWORD.as_bytes(),
                blazedb_engine::KdfParams::INSECURE_FAST,
                blazedb_pg::PoolOptions::default(),
            )
        })
        .await??;
        let id = ServerIdentity::from_pem_files(Path::new(&cert), Path::new(&key))?;
        let server = Server::with_store(0, Arc::new(store), &name, Some(TOKEN), None)
            .tls(TlsSetup::Identity(Arc::new(id)));
        crate::net_fanout::serve_until_stdin_closes(server).await
    })
}

#[cfg(not(feature = "net"))]
pub(crate) fn pg_server_child(_args: &[String]) -> Result<()> {
    bail!("this build has no network layer: run it with the default features")
}
