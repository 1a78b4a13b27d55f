//! `blazedb-bench sync`: what sync costs, and that a program which links the sync layer
//! but does not enable it pays nothing for it.
//!
//! 1. Local writes with the sync layer compiled in but not enabled, against the same
//!    loop in a build of this benchmark without the `sync` feature (run as a child
//!    process: `cargo run --release -p blazedb-bench --no-default-features -- local-writes`),
//!    rounds alternating in the same run. Goal: no measurable difference.
//! 2. Local writes on a database with sync enabled, taken over into the sync log.
//! 3. Applying remote writes: a node takes another node's log in batches, one durable
//!    transaction per batch (the receiving side of a sync); 3b/3c: several peers' logs
//!    at once (`sync_peers.rs`).

// Without the `sync` feature only the child side (`local-writes`) is used.
#![cfg_attr(not(feature = "sync"), allow(unused_imports, dead_code))]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use blazedb_engine::{Database, Durability, KdfParams};

use crate::docgen::DocGen;

/// Problem sizes of one run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SyncSizes {
    /// Documents per local-write round (each its own non-durable commit).
    pub writes: usize,
    /// Alternating rounds of the local-write comparison.
    pub rounds: usize,
    /// Remote writes applied.
    pub apply: usize,
    /// Writes per applied batch.
    pub batch: usize,
}

impl SyncSizes {
    pub(crate) fn new(quick: bool) -> Self {
        if quick {
            Self {
                writes: 2_000,
                rounds: 2,
                apply: 2_000,
                batch: 256,
            }
        } else {
            Self {
                writes: 20_000,
                rounds: 4,
                apply: 50_000,
                batch: 256,
            }
        }
    }
}

fn open(dir: &Path, name: &str) -> Result<Database> {
    Ok(Database::builder()
        .kdf(KdfParams::INSECURE_FAST)
        .durability(Durability::Eventual)
        .open(dir, name, "bench")?)
}

/// The local-write loop both builds run: `n` single-document commits (no fsync, so
/// the figure is the engine's own work, not the disk's).
pub(crate) fn local_writes(dir: &Path, n: usize, seed: u64) -> Result<Duration> {
    let db = open(dir, &format!("local-{seed}"))?;
    let docs = DocGen::new(seed).take(n);
    let c = db.collection("docs");
    let t = Instant::now();
    for d in &docs {
        c.insert(d.to_document())?;
    }
    let took = t.elapsed();
    db.flush()?;
    Ok(took)
}

/// Entry of the child process (`local-writes N DIR SEED`): prints the elapsed seconds.
pub(crate) fn child(n: usize, dir: &Path, seed: u64) -> Result<()> {
    let took = local_writes(dir, n, seed)?;
    println!("RESULT seconds={}", took.as_secs_f64());
    Ok(())
}

#[cfg(feature = "sync")]
fn run_child(n: usize, dir: &Path, seed: u64) -> Result<Duration> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Its own target directory: built into the shared one, the no-sync binary would
    // replace `target/release/blazedb-bench`, and running that file directly would then
    // run the build without sync.
    let exe = std::env::current_exe().context("finding this benchmark's binary")?;
    let target_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("this benchmark's binary is not in a cargo target directory")?
        .join("no-sync");
    let out = Command::new(cargo)
        .args([
            "run",
            "--release",
            "--quiet",
            "-p",
            "blazedb-bench",
            "--no-default-features",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        // From any working directory: the workspace is where this binary was built.
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .args(["--", "local-writes"])
        .arg(n.to_string())
        .arg(dir)
        .arg(seed.to_string())
        .output()
        .context("running the benchmark built without the sync feature")?;
    if !out.status.success() {
        bail!(
            "the no-sync build failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let secs: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT seconds="))
        .context("the no-sync build printed no result")?
        .trim()
        .parse()?;
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(feature = "sync")]
fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

#[cfg(feature = "sync")]
pub(crate) fn run(dir: &Path, sizes: SyncSizes) -> Result<()> {
    use blazedb_sync::{LogPos, Role, SyncConfig, SyncNode};

    println!("  building the benchmark without the sync feature (first run compiles it)...");
    run_child(10, dir, 0)?;
    let mut with = Duration::ZERO;
    let mut without = Duration::ZERO;
    for round in 0..sizes.rounds {
        println!(
            "  running: 1. local writes, round {} (sync compiled in, disabled)",
            round + 1
        );
        with += local_writes(dir, sizes.writes, 100 + round as u64)?;
        println!(
            "  running: 1. local writes, round {} (built without sync)",
            round + 1
        );
        without += run_child(sizes.writes, dir, 200 + round as u64)?;
    }
    let total = sizes.writes * sizes.rounds;
    let (w, wo) = (rate(total, with), rate(total, without));

    println!("  running: 2. local writes with sync enabled, taken over into the sync log");
    let db = open(dir, "enabled")?;
    let node = SyncNode::enable(&db, Role::Client, &SyncConfig::default())?;
    let docs = DocGen::new(7).take(sizes.writes);
    let c = db.collection("docs");
    let t = Instant::now();
    for d in &docs {
        c.insert(d.to_document())?;
    }
    let write_only = t.elapsed();
    let t = Instant::now();
    node.absorb()?;
    let absorb = t.elapsed();

    println!(
        "  running: 3. applying {} remote writes in batches of {}",
        sizes.apply, sizes.batch
    );
    let src_db = open(dir, "source")?;
    let src = SyncNode::enable(&src_db, Role::Server, &SyncConfig::default())?;
    let mut tx = src_db.begin_write()?;
    for d in DocGen::new(9).take(sizes.apply) {
        tx.insert("docs", d.to_document())?;
    }
    tx.commit()?;
    src.absorb()?;
    let dst_db = open(dir, "destination")?;
    let dst = SyncNode::enable(&dst_db, Role::Client, &SyncConfig::default())?;
    let mut batches = Vec::new();
    let mut after = LogPos::ZERO;
    loop {
        let (writes, upto) = src.read_log(dst.node_id(), after, sizes.batch, &|_| true)?;
        if upto <= after {
            break;
        }
        batches.push((writes, upto));
        after = upto;
    }
    let t = Instant::now();
    for (writes, upto) in &batches {
        dst.apply_batch(src.node_id(), Role::Server, writes, *upto)?;
    }
    let apply = t.elapsed();
    let applied = dst_db.collection("docs").count()? as usize;
    crate::measure::check_found("the receiving node", applied, sizes.apply)?;

    let per_peer = sizes.apply / crate::sync_peers::PEERS;
    println!(
        "  running: 3b. {} peers' logs ({per_peer} writes each) applied at once",
        crate::sync_peers::PEERS
    );
    let (each, combined) = crate::sync_peers::run(|name| open(dir, name), per_peer)?;
    let peers_total = 2 * per_peer * crate::sync_peers::PEERS;
    let (each, combined) = (rate(peers_total, each), rate(peers_total, combined));

    println!();
    println!("Figure                                                  | writes/s   | ratio | goal");
    println!(
        "--------------------------------------------------------+------------+-------+----------------------------"
    );
    println!(
        "1a. local writes, sync compiled in but disabled          | {w:>10.0} | {:>5.2} | no measurable difference",
        w / wo
    );
    println!(
        "1b. local writes, built without the sync feature         | {wo:>10.0} |  1.00 | (baseline, same run)"
    );
    println!(
        "2a. local writes on a sync-enabled database (write only)  | {:>10.0} |     - | -",
        rate(sizes.writes, write_only)
    );
    println!(
        "2b. taking those writes over into the sync log (absorb)   | {:>10.0} |     - | -",
        rate(sizes.writes, absorb)
    );
    println!(
        "3.  remote writes applied, durable batch of {:>4}          | {:>10.0} |     - | -",
        sizes.batch,
        rate(sizes.apply, apply)
    );
    let label = format!(
        "3b. {} peers at once, a transaction per batch of {}",
        crate::sync_peers::PEERS,
        crate::sync_peers::BATCH
    );
    println!("{label:<57} | {each:>10.0} |  1.00 | (baseline, same run)");
    println!(
        "{:<57} | {combined:>10.0} | {:>5.2} | -",
        "3c. the same, batches that meet applied together",
        combined / each
    );
    println!();
    println!("Notes:");
    println!(
        "- 1: {} rounds of {} single-document commits (Durability::Eventual: the engine's work, not the disk's), alternating between this binary and a child built with --no-default-features; ratio = 1a / 1b. Both run the same engine code: without the feature the sync crate is not linked, and with it but disabled the engine pays one atomic load per commit (no commit hook registered).",
        sizes.rounds, sizes.writes
    );
    println!(
        "- 3: each batch is one durable transaction on the receiving node (merge state read and written, document written, sync-log entry, cursor), as a session applies it; the batches were read from the sending node's log beforehand."
    );
    println!(
        "- 3b/3c: a thread per peer applies its batches in order, as a server's sessions do; 3c hands them to SyncNode::apply_combined (the server's sessions' path), which applies the batches handed in while a transaction runs in the next one. Two rounds of each, alternating, into fresh nodes."
    );
    Ok(())
}

#[cfg(not(feature = "sync"))]
pub(crate) fn run(_dir: &Path, sizes: SyncSizes) -> Result<()> {
    bail!(
        "this build has no sync layer (asked for {} writes x {} rounds, {} applied in batches of {}): run it with the default features",
        sizes.writes,
        sizes.rounds,
        sizes.apply,
        sizes.batch
    )
}
