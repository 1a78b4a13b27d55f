//! Compaction under SIGKILL: a crash at any instant of `Database::compact` loses nothing.
//!
//! A child process (this test binary re-executed, running only
//! `child_compactor_when_spawned_by_the_kill_test`) opens the database and repeats: one
//! durable insert (it prints `ACK <i>` after the commit returned), then a compaction (it
//! prints `COMPACTED`). The parent kills it with SIGKILL at a random instant, mostly
//! inside a compaction (the copy, the rename, the reopen), reopens the database and
//! checks: the documents it wrote itself between rounds are exactly as it left them,
//! every acknowledged insert is there, at most the one insert in flight besides, the
//! index answers as before, and no partial copy is left. It then churns the documents
//! (replace, delete, insert) so the next round compacts a changed file.
//!
//! - Fast mode (CI, 30 kills): `cargo test -p blazedb-engine --test crash_compact`
//! - Long mode: `BLAZEDB_COMPACT_KILLS=500 cargo test -p blazedb-engine --test
//!   crash_compact -- --nocapture`; replay with `BLAZEDB_COMPACT_SEED=<seed>`.
//!
//! Scope as in `crash_sigkill.rs`: process crashes, not power loss.
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::{Duration, Instant};

use blazedb_engine::{Database, DocId, Document, Filter, IndexSpec, Query, Result};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

const DB: &str = "compact";
/// Written by the parent between rounds; the child only compacts it.
const NOTES: &str = "notes";
/// Written by the child, one acknowledged insert before each compaction.
const ACKED: &str = "acked";
const CHILD_TEST: &str = "child_compactor_when_spawned_by_the_kill_test";
const ENV_DIR: &str = "BLAZEDB_COMPACT_CHILD_DIR";
const ENV_START: &str = "BLAZEDB_COMPACT_START";
const ENV_KILLS: &str = "BLAZEDB_COMPACT_KILLS";
const ENV_SEED: &str = "BLAZEDB_COMPACT_SEED";

fn acked_id(i: u64) -> DocId {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&i.to_be_bytes());
    DocId::from_bytes(b)
}

fn acked_index(id: &DocId) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.as_bytes()[..8]);
    u64::from_be_bytes(b)
}

#[test]
fn child_compactor_when_spawned_by_the_kill_test() -> Result<()> {
    let (Some(dir), Ok(start)) = (std::env::var_os(ENV_DIR), std::env::var(ENV_START)) else {
        return Ok(());
    };
    let start: u64 = start.parse().expect("BLAZEDB_COMPACT_START is an index");
    let mut db = common::open(Path::new(&dir), DB)?;
    for i in start.. {
        db.collection(ACKED)
            .insert(Document::with_id(acked_id(i)).with("i", i as i64))?;
        println!("ACK {i}");
        db.compact()?;
        println!("COMPACTED");
    }
    Ok(())
}

/// What a child printed before it was killed.
#[derive(Default)]
struct ChildRun {
    acks: Vec<u64>,
    compactions: usize,
}

/// Runs a child that inserts from `start`, waits for `compactions` completed compactions
/// (and the ACK after the last of them, so the kill lands in a compaction or the insert
/// before one), spins `delay`, and SIGKILLs it.
fn run_child_and_kill(dir: &Path, start: u64, compactions: usize, delay: Duration) -> ChildRun {
    let mut child = common::spawn_child_test(
        CHILD_TEST,
        &[
            (ENV_DIR, dir.display().to_string()),
            (ENV_START, start.to_string()),
        ],
    );
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut run = ChildRun::default();
    let mut line = String::new();
    let record = |run: &mut ChildRun, line: &str| {
        if let Some(at) = line.find("ACK ") {
            run.acks
                .push(line[at + 4..].trim().parse().expect("an ACK index"));
        }
        run.compactions += usize::from(line.contains("COMPACTED"));
    };
    while run.compactions < compactions || run.acks.len() <= compactions {
        line.clear();
        if out.read_line(&mut line).expect("read the child's stdout") == 0 {
            break;
        }
        record(&mut run, &line);
    }
    let t = Instant::now();
    while t.elapsed() < delay {
        std::hint::spin_loop();
    }
    for l in common::kill_and_drain(&mut child, &mut out).lines() {
        record(&mut run, l);
    }
    run
}

/// Replaces, deletes and inserts some of the parent's documents.
fn churn(db: &Database, rng: &mut Xoshiro256PlusPlus, round: u64) -> Result<()> {
    let notes = db.collection(NOTES);
    let all = notes.all()?;
    let mut tx = db.begin_write()?;
    for doc in &all {
        let id = doc.id;
        match rng.random_range(0..10) {
            0 | 1 => tx.delete(NOTES, id)?,
            2..=4 => {
                let n: i64 = rng.random_range(0..50);
                tx.put(
                    NOTES,
                    Document::with_id(id)
                        .with("n", n)
                        .with("round", round as i64),
                )?;
            }
            _ => {}
        }
    }
    for _ in 0..rng.random_range(50..400) {
        let n: i64 = rng.random_range(0..50);
        let len = rng.random_range(20..400);
        tx.insert(
            NOTES,
            Document::new().with("n", n).with("text", "z".repeat(len)),
        )?;
    }
    tx.commit()
}

/// Everything the parent wrote, read in one snapshot, with what the index answers.
fn parent_view(db: &Database) -> Result<(Vec<Document>, Vec<Document>)> {
    let by_index = db.query(&Query::new(NOTES).filter(Filter::eq("n", 7_i64)?))?;
    Ok((db.collection(NOTES).all()?, by_index))
}

#[test]
fn a_sigkill_at_any_instant_of_a_compaction_loses_no_document_and_leaves_no_partial_copy()
-> Result<()> {
    let env_u64 = |name: &str| std::env::var(name).ok().map(|v| v.parse::<u64>());
    let kills = env_u64(ENV_KILLS)
        .unwrap_or(Ok(30))
        .expect("BLAZEDB_COMPACT_KILLS: a count");
    let seed = env_u64(ENV_SEED)
        .unwrap_or_else(|| Ok(rand::random()))
        .expect("BLAZEDB_COMPACT_SEED: a u64");
    println!("crash_compact: {kills} kills, seed {seed} (replay: {ENV_SEED}={seed})");
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = blazedb_engine::database_path(dir.path(), DB);
    let scratch = path.join("data.redb.compacting");
    {
        let db = common::open_capturing(dir.path(), DB)?;
        db.create_index(&IndexSpec::new("by_n", NOTES, &["n"]))?;
        churn(&db, &mut rng, 0)?;
        churn(&db, &mut rng, 0)?;
    }
    let (mut next, mut acked) = (0u64, 0u64);
    let (mut mid_copy, mut compactions) = (0u64, 0usize);
    // A decaying maximum of one insert + compaction: the window kills are spread over.
    let mut cycle = Duration::from_millis(30);

    for round in 1..=kills {
        let ctx = format!("kill {round} (seed {seed})");
        let expected = parent_view(&common::open(dir.path(), DB)?)?;
        let want = rng.random_range(0..3);
        let delay = cycle.mul_f64(rng.random_range(0.0..1.0));
        let started = Instant::now();
        let run = run_child_and_kill(dir.path(), next, want, delay);
        if run.compactions > 0 {
            let per = started.elapsed().div_f64(run.compactions as f64 + 1.0);
            cycle = cycle.mul_f64(0.8).max(per);
        }
        compactions += run.compactions;
        let expect: Vec<u64> = (next..).take(run.acks.len()).collect();
        assert_eq!(run.acks, expect, "{ctx}: ACKs are consecutive");
        mid_copy += u64::from(scratch.exists());

        let db = match common::open(dir.path(), DB) {
            Ok(db) => db,
            Err(e) => panic!("{ctx}: the database does not open after the kill: {e}"),
        };
        assert!(
            !scratch.exists(),
            "{ctx}: the partial copy is removed at open"
        );
        assert_eq!(
            parent_view(&db)?,
            expected,
            "{ctx}: the parent's documents changed"
        );
        let present: Vec<u64> = db
            .collection(ACKED)
            .all()?
            .iter()
            .map(|d| acked_index(&d.id))
            .collect();
        let last_acked = next + run.acks.len() as u64;
        let in_flight_ran = present.len() as u64 == last_acked + 1;
        assert!(
            present.iter().copied().eq(0..present.len() as u64)
                && (present.len() as u64 == last_acked || in_flight_ran),
            "{ctx}: inserts 0..{last_acked} were acknowledged (and one may have been in \
             flight), found {} documents",
            present.len()
        );
        acked += run.acks.len() as u64;
        next = present.len() as u64;
        churn(&db, &mut rng, round)?;
    }
    println!(
        "crash_compact: {kills} kills, {compactions} compactions completed, {mid_copy} kills \
         left a partial copy, {acked} inserts acknowledged, seed {seed}"
    );
    assert!(
        mid_copy > 0,
        "no kill landed while a copy was being built: the test did not reach its window"
    );
    Ok(())
}
