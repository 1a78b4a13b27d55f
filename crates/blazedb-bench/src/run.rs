//! Runs the selected figures on both databases and prints the table.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use blazedb_engine::{DocId, Document};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use crate::docgen::{DocGen, DocSpec, mean_json_len};
use crate::report::{Goal, Row, ms, table};
use crate::sqlite::Row as SqlRow;
use crate::{blaze, sqlite};

/// Problem sizes of one run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sizes {
    /// Single-writer durable commits.
    pub commits_one: usize,
    /// Concurrent writer threads.
    pub threads: usize,
    /// Durable commits per concurrent writer.
    pub commits_per_thread: usize,
    /// Documents in the bulk transaction (and the get/open database).
    pub bulk: usize,
    /// Random point gets per variant.
    pub gets: usize,
    /// Alternating BlazeDB/SQLite rounds the commit figures are split into.
    pub rounds: usize,
    /// Repetitions of each open/KDF timing (the best is reported).
    pub open_repeats: usize,
}

impl Sizes {
    pub(crate) fn new(quick: bool) -> Self {
        if quick {
            Sizes {
                commits_one: 200,
                threads: 8,
                commits_per_thread: 25,
                bulk: 10_000,
                gets: 20_000,
                rounds: 2,
                open_repeats: 3,
            }
        } else {
            Sizes {
                commits_one: 2_000,
                threads: 8,
                commits_per_thread: 250,
                bulk: 100_000,
                gets: 200_000,
                rounds: 4,
                open_repeats: 7,
            }
        }
    }
}

/// Which figures to run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Selection {
    pub commit1: bool,
    pub commit8: bool,
    pub bulk: bool,
    pub gets: bool,
    pub open: bool,
}

fn progress(what: &str) {
    eprintln!("  running: {what}");
}

fn blaze_docs(specs: &[DocSpec]) -> Vec<Document> {
    specs.iter().map(DocSpec::to_document).collect()
}

fn sql_rows(specs: &[DocSpec]) -> Vec<SqlRow> {
    specs
        .iter()
        .map(|d| SqlRow {
            id: d.id_text(),
            doc: d.to_json(),
        })
        .collect()
}

/// Runs every selected figure in `dir` and prints the results table and notes.
pub(crate) fn run(dir: &Path, sizes: Sizes, sel: Selection) -> Result<()> {
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let sample = DocGen::new(0).take(1_000);
    notes.push(format!(
        "documents: 6 fields (title, body, n, score, tags[1-3], done); mean JSON size {:.0} bytes",
        mean_json_len(&sample)?
    ));

    if sel.commit1 {
        commits_one(dir, sizes, &mut rows)?;
    }
    if sel.commit8 {
        commits_concurrent(dir, sizes, &mut rows)?;
    }

    if sel.bulk {
        bulk_gets_open(dir, sizes, sel, &mut rows, &mut notes)?;
    }

    println!("{}", table(&rows));
    println!("Ratio = BlazeDB / SQLite of the figure in that row. Throughput rows (per second):");
    println!("a higher ratio is better for BlazeDB. Time rows (ms): a lower ratio is better.");
    println!();
    println!("Notes:");
    for n in notes {
        println!("- {n}");
    }
    println!(
        "- KDF: figures 1-4 open their databases with KdfParams::INSECURE_FAST (the KDF runs \
         only at open, so it does not affect them); the bulk/get/open database is created \
         with KdfParams::DEFAULT, and figure 5 opens it with that real cost."
    );
    println!(
        "- BlazeDB: Durability::Immediate for every commit. SQLite: WAL, synchronous=FULL, \
         table docs(id TEXT PRIMARY KEY, doc TEXT), JSON text, cache_size 256 MiB per \
         connection, prepared statements; gets parse the JSON, BlazeDB gets decrypt and \
         decode the document."
    );
    println!(
        "- Group-commit statistics: not reachable from the benchmark; blazedb-storage has \
         Store::group_stats() but blazedb-engine's Database does not expose its Store."
    );
    println!("- Open is measured with the OS page cache warm (the process is cold, not the disk).");
    Ok(())
}

/// Splits `items` into `n` nearly equal consecutive chunks.
fn chunks<T: Clone>(items: &[T], n: usize) -> Vec<Vec<T>> {
    let size = items.len().div_ceil(n.max(1)).max(1);
    items.chunks(size).map(<[T]>::to_vec).collect()
}

/// Figure 1: durable single-insert commits from one writer. The work is split into
/// rounds that alternate BlazeDB and SQLite, so load from other processes and disk
/// state drift hit both alike; the times of the rounds are summed.
fn commits_one(dir: &Path, sizes: Sizes, rows: &mut Vec<Row>) -> Result<()> {
    let specs = DocGen::new(1).take(sizes.commits_one);
    let db = blaze::open_fast(dir, "commit1")?;
    let conn = sqlite::open(dir, "commit1")?;
    let (mut b, mut s) = (Duration::ZERO, Duration::ZERO);
    for (i, chunk) in chunks(&specs, sizes.rounds).iter().enumerate() {
        progress(&format!(
            "1. durable commits, one writer, round {} (BlazeDB)",
            i + 1
        ));
        b += blaze::commits_one_writer(&db, blaze_docs(chunk))?;
        progress(&format!(
            "1. durable commits, one writer, round {} (SQLite)",
            i + 1
        ));
        s += sqlite::commits_one_writer(&conn, &sql_rows(chunk))?;
    }
    rows.push(Row::rate(
        format!("1. durable commits, 1 writer ({})", sizes.commits_one),
        "commits/s",
        sizes.commits_one,
        b,
        s,
        Goal::RatioAtLeast(1.0),
    ));
    Ok(())
}

/// Figure 2: durable single-insert commits from concurrent writers, in alternating
/// rounds as figure 1.
fn commits_concurrent(dir: &Path, sizes: Sizes, rows: &mut Vec<Row>) -> Result<()> {
    let per_thread: Vec<Vec<Vec<DocSpec>>> = (0..sizes.threads)
        .map(|t| {
            chunks(
                &DocGen::new(100 + t as u64).take(sizes.commits_per_thread),
                sizes.rounds,
            )
        })
        .collect();
    let total = sizes.threads * sizes.commits_per_thread;
    let db = blaze::open_fast(dir, "commit8")?;
    drop(sqlite::open(dir, "commit8")?); // create the file and table before the race
    let (mut b, mut s) = (Duration::ZERO, Duration::ZERO);
    let rounds = per_thread.iter().map(Vec::len).max().unwrap_or(0);
    for round in 0..rounds {
        let specs: Vec<&[DocSpec]> = per_thread
            .iter()
            .map(|t| t.get(round).map_or(&[][..], Vec::as_slice))
            .collect();
        let label = format!(
            "2. durable commits, concurrent writers, round {}",
            round + 1
        );
        progress(&format!("{label} (BlazeDB)"));
        b += blaze::commits_concurrent(&db, specs.iter().map(|c| blaze_docs(c)).collect())?;
        let sql: Vec<Vec<SqlRow>> = specs.iter().map(|c| sql_rows(c)).collect();
        progress(&format!("{label} (SQLite)"));
        s += sqlite::commits_concurrent(dir, "commit8", &sql)?;
    }
    rows.push(Row::rate(
        format!("2. durable commits, {} writers ({total})", sizes.threads),
        "commits/s",
        total,
        b,
        s,
        Goal::RatioAtLeast(3.0),
    ));
    Ok(())
}

/// Figures 3-5: bulk insert, point gets over the bulk database, then cold open.
fn bulk_gets_open(
    dir: &Path,
    sizes: Sizes,
    sel: Selection,
    rows: &mut Vec<Row>,
    notes: &mut Vec<String>,
) -> Result<()> {
    let specs = DocGen::new(3).take(sizes.bulk);
    let db = blaze::create_bulk_db(dir, "bulk")?;
    progress("3. bulk insert, one transaction (BlazeDB)");
    let b = blaze::bulk_insert(&db, blaze_docs(&specs))?;
    let mut conn = sqlite::open(dir, "bulk")?;
    let sql = sql_rows(&specs);
    progress("3. bulk insert, one transaction (SQLite)");
    let s = sqlite::bulk_insert(&mut conn, &sql)?;
    rows.push(Row::rate(
        format!("3. bulk insert, 1 txn ({} docs)", sizes.bulk),
        "docs/s",
        sizes.bulk,
        b,
        s,
        Goal::RatioAtLeast(1.0),
    ));
    progress("3. bulk insert, one transaction, change capture on (BlazeDB)");
    let captured = blaze::create_capturing_db(dir, "bulk-capture")?;
    let c = blaze::bulk_insert(&captured, blaze_docs(&specs))?;
    let captured_space = blaze::space_note(&captured, sizes.bulk)?;
    drop(captured);
    rows.push(Row::rate(
        format!(
            "3b. bulk insert, 1 txn, change log on ({} docs)",
            sizes.bulk
        ),
        "docs/s",
        sizes.bulk,
        c,
        s,
        Goal::None,
    ));
    let mib = |bytes: u64| bytes as f64 / 1_048_576.0;
    notes.push(format!(
        "bulk insert of {} docs took {:.0} ms (BlazeDB, local-only: no change log) vs {:.0} \
         ms (SQLite); {:.0} ms with the change log on (as once sync is enabled); files after \
         it: BlazeDB {:.1} MiB local-only, {:.1} MiB with the change log, SQLite {:.1} MiB \
         (db+wal)",
        sizes.bulk,
        ms(b),
        ms(s),
        ms(c),
        mib(blaze::db_size(dir, "bulk")?),
        mib(blaze::db_size(dir, "bulk-capture")?),
        mib(sqlite::db_size(dir, "bulk")?),
    ));
    notes.push(format!(
        "bulk, local-only: {}",
        blaze::space_note(&db, sizes.bulk)?
    ));
    notes.push(format!("bulk, change log on: {captured_space}"));

    if sel.gets {
        gets(&db, &conn, &specs, sizes, rows)?;
    }

    drop(db);
    if sel.open {
        let probe = &specs[specs.len() / 2];
        conn.close().map_err(|(_, e)| e)?;
        let n = sizes.open_repeats;
        progress("5. KDF alone");
        let kdf = blaze::kdf_time(n)?;
        progress("5. open (BlazeDB, verify on)");
        let on = blaze::open_times(dir, "bulk", true, probe.id, n)?;
        progress("5. open (BlazeDB, verify off)");
        let off = blaze::open_times(dir, "bulk", false, probe.id, n)?;
        progress("5. open (SQLite)");
        let s_open = sqlite::open_first_query(dir, "bulk", &probe.id_text(), n)?;
        let docs = sizes.bulk;
        rows.push(Row::time(
            "5a. KDF alone (Argon2id DEFAULT)",
            kdf,
            None,
            Goal::None,
        ));
        for (ids, label, t) in [
            (["5b", "5c", "5d"], "verify on (default)", on),
            (["5e", "5f", "5g"], "verify off", off),
        ] {
            rows.push(Row::time(
                format!("{}. open, {label}", ids[0]),
                t.open,
                None,
                Goal::None,
            ));
            rows.push(Row::time(
                format!("{}. open - KDF, {label}", ids[1]),
                t.open.saturating_sub(kdf),
                None,
                Goal::BlazeAtMostMs(20.0),
            ));
            rows.push(Row::time(
                format!("{}. open + first get, {label}", ids[2]),
                t.open_get,
                Some(s_open),
                Goal::None,
            ));
        }
        notes.push(format!(
            "open figures: best of {n} runs (the KDF too; open - KDF is best open minus best \
             KDF) on the closed {docs}-document database; SQLite's figure is \
             Connection::open + the first point get (it has no password step)"
        ));
    }
    progress("3. compaction of the bulk database (BlazeDB)");
    notes.push(blaze::compaction_note(dir, "bulk", sizes.bulk)?);
    Ok(())
}

/// Figure 4: point gets over the bulk database, each in its own read transaction and all
/// in one.
fn gets(
    db: &blazedb_engine::Database,
    conn: &rusqlite::Connection,
    specs: &[DocSpec],
    sizes: Sizes,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(4);
    let pick: Vec<usize> = (0..sizes.gets)
        .map(|_| rng.random_range(0..specs.len()))
        .collect();
    let ids: Vec<DocId> = pick.iter().map(|&i| specs[i].id).collect();
    let texts: Vec<String> = pick.iter().map(|&i| specs[i].id_text()).collect();
    progress("4. point gets (BlazeDB)");
    blaze::gets_one_txn(db, &ids)?; // warm-up
    let b_each = blaze::gets_each(db, &ids)?;
    let b_txn = blaze::gets_one_txn(db, &ids)?;
    progress("4. point gets (SQLite)");
    sqlite::gets_one_txn(conn, &texts)?; // warm-up
    let s_each = sqlite::gets_each(conn, &texts)?;
    let s_txn = sqlite::gets_one_txn(conn, &texts)?;
    rows.push(Row::rate(
        format!("4a. random gets, own read txn each ({})", sizes.gets),
        "gets/s",
        sizes.gets,
        b_each,
        s_each,
        Goal::RatioAtLeast(2.0),
    ));
    rows.push(Row::rate(
        format!("4b. random gets, one read txn ({})", sizes.gets),
        "gets/s",
        sizes.gets,
        b_txn,
        s_txn,
        Goal::RatioAtLeast(2.0),
    ));
    Ok(())
}
