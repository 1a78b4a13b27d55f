//! Figure 2 of the `query` command: per-operation latency of point gets, durable
//! replacing puts and indexed equality queries (~10 documents) at three collection
//! sizes, and how much each grows from the smallest size to the largest.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use blazedb_engine::DocId;

use crate::indexed::{self, Loaded, time_all, time_each};
use crate::report::{Goal, Latency, Row, grid, ms, table, us};
use crate::sizes::{QuerySizes, progress};
use crate::{blaze_idx, sqlite_idx};

/// Most growth (largest-size mean ÷ smallest-size mean) the goal allows BlazeDB.
const GROWTH_GOAL: f64 = 1.5;
/// The operations measured, in table order, and whether the growth goal applies.
const OPS: [(&str, bool); 4] = [
    ("get", true),
    ("query", true),
    ("put", true),
    ("put-nosync", false),
];
/// Alternating BlazeDB/SQLite rounds each series is split into.
const ROUNDS: usize = 4;
/// fsync probes per size (see [`indexed::fsync_probe`]).
const PROBES: usize = 200;

/// The latencies of one operation at one size in both engines.
struct OpResult {
    blaze: Latency,
    sqlite: Latency,
    /// Mean documents returned per call (queries) or 1 (gets, puts).
    per_call: f64,
}

/// Everything measured at one size.
struct SizeResult {
    docs: usize,
    ops: Vec<OpResult>,
    totals: Totals,
    /// 4 KiB write + fdatasync on the same disk, just before the puts.
    fsync: Latency,
    note: String,
}

/// Whole-database figures of one size, both engines: (BlazeDB, SQLite).
struct Totals {
    /// Files' lengths after load, index and puts.
    files: (u64, u64),
    /// The same files' lengths, then allocated blocks, once both databases are closed
    /// (`None` until then).
    closed: Option<((u64, u64), (u64, u64))>,
    /// The same files' allocated blocks.
    disk: (u64, u64),
    load: (Duration, Duration),
    index: (Duration, Duration),
    /// The warm-up scan: BlazeDB whole documents, SQLite `sum(length(doc))`.
    scan: (Duration, Duration),
    /// Every record read, nothing built: BlazeDB `count`, SQLite `sum(length(doc))`.
    scan_records: (Duration, Duration),
    /// Every document whole: BlazeDB scan, SQLite rows with their JSON parsed.
    scan_docs: (Duration, Duration),
}

/// Runs figure 2: for each size, builds both databases, warms them, measures the
/// operations and deletes them; then prints the latency and growth tables.
pub(crate) fn run(dir: &Path, sizes: &QuerySizes) -> Result<()> {
    let mut results = Vec::new();
    for (i, &n) in sizes.scale.iter().enumerate() {
        let name = format!("scale{n}");
        let groups = i64::try_from((n / 10).max(1))?;
        progress(&format!("2. loading {n} docs, {groups} groups (both)"));
        let l = indexed::load(dir, &name, n, groups, 20 + i as u64)?;
        let mut result = measure_size(dir, &name, &l, sizes, 100 * (i as u64 + 1))?;
        drop(l);
        // Closed, redb gives back the unused tail it grew ahead of need, and SQLite
        // checkpoints its WAL into the database and removes it.
        result.totals.closed = Some((
            (blaze_idx::size(dir, &name)?, sqlite_idx::size(dir, &name)?),
            (
                crate::measure::dir_disk_bytes(&blazedb_engine::database_path(dir, &name))?,
                crate::sqlite::db_disk_bytes(dir, &name)?,
            ),
        ));
        progress(&format!("2. {n} docs: compaction (BlazeDB)"));
        result.note = format!(
            "{}; {}",
            result.note,
            crate::blaze::compaction_note(dir, &name, n)?
        );
        results.push(result);
        indexed::remove(dir, &name)?;
    }
    print_tables(&results, sizes);
    Ok(())
}

/// Splits `items` into `n` nearly equal consecutive chunks, by value.
fn split<T>(items: Vec<T>, n: usize) -> Vec<Vec<T>> {
    let size = items.len().div_ceil(n.max(1)).max(1);
    let mut out = Vec::new();
    let mut it = items.into_iter().peekable();
    while it.peek().is_some() {
        out.push(it.by_ref().take(size).collect());
    }
    out
}

/// Per-call times and result totals of one operation in both engines.
#[derive(Default)]
struct Series {
    blaze: Vec<Duration>,
    blaze_found: usize,
    sqlite: Vec<Duration>,
    sqlite_found: usize,
}

impl Series {
    /// The latency statistics of both engines and the mean results per BlazeDB call.
    fn result(&self) -> OpResult {
        OpResult {
            blaze: Latency::of(&self.blaze),
            sqlite: Latency::of(&self.sqlite),
            per_call: self.blaze_found as f64 / self.blaze.len().max(1) as f64,
        }
    }
}

/// Times `b` on every BlazeDB item and `s` on every SQLite item, one call at a time,
/// in [`ROUNDS`] rounds that alternate the engines (so that load from other processes
/// and disk state drift hit both alike).
fn alternate<B, S>(
    b_items: Vec<B>,
    s_items: Vec<S>,
    mut b: impl FnMut(B) -> Result<usize>,
    mut s: impl FnMut(S) -> Result<usize>,
) -> Result<Series> {
    let mut out = Series::default();
    for (bc, sc) in split(b_items, ROUNDS)
        .into_iter()
        .zip(split(s_items, ROUNDS))
    {
        let (t, n) = time_each(bc, &mut b)?;
        out.blaze.extend(t);
        out.blaze_found += n;
        let (t, n) = time_each(sc, &mut s)?;
        out.sqlite.extend(t);
        out.sqlite_found += n;
    }
    Ok(out)
}

/// Measures gets, queries, durable puts and no-fsync puts (in that order) on one loaded
/// pair of databases. Each series is preceded by an untimed warm-up series of a quarter
/// of its length (a tenth for puts) with other random arguments.
fn measure_size(
    dir: &Path,
    name: &str,
    l: &Loaded,
    sizes: &QuerySizes,
    seed: u64,
) -> Result<SizeResult> {
    let (db, conn) = (&l.db, &l.conn);
    let n = l.ids.len();
    progress(&format!("2. {n} docs: warm-up scans"));
    let warm_b = blaze_idx::warm(db)?;
    let warm_s = sqlite_idx::warm(conn)?;
    let scan_records = (blaze_idx::scan_records(db)?, sqlite_idx::warm(conn)?);
    let scan_docs = (blaze_idx::warm(db)?, sqlite_idx::scan_parsed(conn)?);

    progress(&format!("2. {n} docs: gets"));
    let texts = |ids: &[DocId]| ids.iter().map(DocId::to_string).collect::<Vec<_>>();
    let warm_ids = indexed::pick_ids(&l.ids, sizes.lat_gets / 4, seed + 1);
    time_all(&warm_ids, |id| blaze_idx::get(db, *id))?;
    time_all(&texts(&warm_ids), |id| sqlite_idx::get(conn, id))?;
    let ids = indexed::pick_ids(&l.ids, sizes.lat_gets, seed);
    let id_texts = texts(&ids);
    let gets = alternate(
        ids,
        id_texts,
        |id| blaze_idx::get(db, id),
        |id| sqlite_idx::get(conn, &id),
    )?;

    progress(&format!("2. {n} docs: indexed queries"));
    let warm_picks = indexed::pick_groups(l.groups, sizes.lat_queries / 4, seed + 3);
    time_all(&warm_picks, |g| blaze_idx::query_group(db, *g))?;
    time_all(&warm_picks, |g| sqlite_idx::query_group(conn, *g))?;
    let picks = indexed::pick_groups(l.groups, sizes.lat_queries, seed + 2);
    let queries = alternate(
        picks.clone(),
        picks,
        |g| blaze_idx::query_group(db, g),
        |g| sqlite_idx::query_group(conn, g),
    )?;
    if queries.blaze_found != queries.sqlite_found {
        bail!(
            "{n} docs: BlazeDB found {} documents, SQLite {}",
            queries.blaze_found,
            queries.sqlite_found
        );
    }

    progress(&format!(
        "2. {n} docs: fsync probe, durable puts, no-fsync puts"
    ));
    let fsync = Latency::of(&indexed::fsync_probe(dir, PROBES)?);
    let warm_targets = indexed::pick_ids(&l.ids, sizes.lat_puts / 10, seed + 4);
    let (warm_docs, warm_rows) = indexed::replacements(&warm_targets, l.groups, seed + 5);
    time_all(warm_docs, |d| blaze_idx::put(db, d))?;
    time_all(&warm_rows, |r| sqlite_idx::put(conn, r))?;
    let targets = indexed::pick_ids(&l.ids, sizes.lat_puts, seed + 6);
    let (docs, rows) = indexed::replacements(&targets, l.groups, seed + 7);
    let puts = alternate(
        docs,
        rows,
        |d| blaze_idx::put(db, d),
        |r| sqlite_idx::put(conn, &r),
    )?;
    let (docs, rows) = indexed::replacements(&targets, l.groups, seed + 8);
    sqlite_idx::set_synchronous(conn, false)?;
    let nosync = alternate(
        docs,
        rows,
        |d| blaze_idx::put_eventual(db, d),
        |r| sqlite_idx::put(conn, &r),
    );
    sqlite_idx::set_synchronous(conn, true)?;
    let nosync = nosync?;
    db.flush()?;

    let totals = Totals {
        files: (blaze_idx::size(dir, name)?, sqlite_idx::size(dir, name)?),
        closed: None,
        disk: (
            crate::measure::dir_disk_bytes(&blazedb_engine::database_path(dir, name))?,
            crate::sqlite::db_disk_bytes(dir, name)?,
        ),
        load: (l.blaze_load, l.sqlite_load),
        index: (l.blaze_index, l.sqlite_index),
        scan: (warm_b, warm_s),
        scan_records,
        scan_docs,
    };
    let note = format!(
        "{n} docs: load {:.0} ms + index {:.0} ms, warm scan {:.0} ms, files {:.1} MiB \
         (BlazeDB); load {:.0} ms + index {:.0} ms, warm scan {:.0} ms, files {:.1} MiB \
         (SQLite); file sizes after the puts; BlazeDB {}",
        ms(l.blaze_load),
        ms(l.blaze_index),
        ms(warm_b),
        blaze_idx::size(dir, name)? as f64 / 1_048_576.0,
        ms(l.sqlite_load),
        ms(l.sqlite_index),
        ms(warm_s),
        sqlite_idx::size(dir, name)? as f64 / 1_048_576.0,
        crate::blaze::space_note(db, n)?,
    );
    Ok(SizeResult {
        docs: n,
        totals,
        ops: vec![
            gets.result(),
            queries.result(),
            puts.result(),
            nosync.result(),
        ],
        fsync,
        note,
    })
}

/// Microseconds with two decimals below 10, one below 1000, none above.
fn fmt_us(d: Duration) -> String {
    let v = us(d);
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 1000.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// Prints the per-size latency table, the growth table and the notes of figure 2.
fn print_tables(results: &[SizeResult], sizes: &QuerySizes) {
    print_latency(results);
    print_growth(results);
    print_totals(results);
    print_notes(results, sizes);
}

/// Figure 3: files, load, index build and a warm full scan at each size; the goals
/// apply at the largest.
fn print_totals(results: &[SizeResult]) {
    let largest = results.iter().map(|r| r.docs).max().unwrap_or(0);
    let mut rows = Vec::new();
    for r in results
        .iter()
        .filter(|r| r.docs >= 100_000 || r.docs == largest)
    {
        let (n, t) = (r.docs, &r.totals);
        let goal = |g: f64| {
            if n == largest {
                Goal::RatioAtMost(g)
            } else {
                Goal::None
            }
        };
        rows.push(Row::size(
            format!("3. files after {n} docs + index + puts (length)"),
            t.files.0,
            t.files.1,
            goal(1.5),
        ));
        rows.push(Row::size(
            format!("3. the same files on disk (allocated blocks) ({n})"),
            t.disk.0,
            t.disk.1,
            Goal::None,
        ));
        if let Some((length, disk)) = t.closed {
            rows.push(Row::size(
                format!("3. the same files once closed (length) ({n})"),
                length.0,
                length.1,
                Goal::None,
            ));
            rows.push(Row::size(
                format!("3. the same files once closed, on disk ({n})"),
                disk.0,
                disk.1,
                Goal::None,
            ));
        }
        rows.push(Row::time(
            format!("3. load {n} docs"),
            t.load.0,
            Some(t.load.1),
            goal(1.0),
        ));
        rows.push(Row::time(
            format!("3. build the index ({n})"),
            t.index.0,
            Some(t.index.1),
            goal(1.0),
        ));
        rows.push(Row::time(
            format!("3. warm full scan ({n})"),
            t.scan.0,
            Some(t.scan.1),
            goal(2.0),
        ));
        rows.push(Row::time(
            format!("3. the same work both sides: every record read ({n})"),
            t.scan_records.0,
            Some(t.scan_records.1),
            Goal::None,
        ));
        rows.push(Row::time(
            format!("3. the same work both sides: every document whole ({n})"),
            t.scan_docs.0,
            Some(t.scan_docs.1),
            Goal::None,
        ));
    }
    println!("Figure 3: whole database (goals at {largest} documents)");
    println!("{}", table(&rows));
}

/// Figure 2's per-size latency table.
fn print_latency(results: &[SizeResult]) {
    let header = [
        "Docs",
        "Op",
        "Docs/op",
        "Blaze mean",
        "p50",
        "p99",
        "SQLite mean",
        "p50",
        "p99",
        "Blaze/SQLite",
    ];
    let mut cells = Vec::new();
    for r in results {
        for ((name, _), o) in OPS.iter().zip(&r.ops) {
            let ratio = o.blaze.mean.as_secs_f64() / o.sqlite.mean.as_secs_f64().max(1e-12);
            cells.push(vec![
                r.docs.to_string(),
                (*name).to_owned(),
                format!("{:.1}", o.per_call),
                fmt_us(o.blaze.mean),
                fmt_us(o.blaze.p50),
                fmt_us(o.blaze.p99),
                fmt_us(o.sqlite.mean),
                fmt_us(o.sqlite.p50),
                fmt_us(o.sqlite.p99),
                format!("{ratio:.2}x"),
            ]);
        }
        cells.push(vec![
            r.docs.to_string(),
            "(disk fsync)".to_owned(),
            "-".to_owned(),
            fmt_us(r.fsync.mean),
            fmt_us(r.fsync.p50),
            fmt_us(r.fsync.p99),
            "-".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
        ]);
    }
    println!(
        "Figure 2: per-operation latency (microseconds; Blaze/SQLite of the means, lower \
         favours BlazeDB)"
    );
    println!("{}", grid(&header, &cells, &[1]));
}

/// Figure 2's growth table: latency at the largest size over latency at the smallest.
fn print_growth(results: &[SizeResult]) {
    let (Some(first), Some(last)) = (results.first(), results.last()) else {
        return;
    };
    let growth = |a: Duration, b: Duration| b.as_secs_f64() / a.as_secs_f64().max(1e-12);
    let mut cells = Vec::new();
    for (i, (name, goal)) in OPS.iter().enumerate() {
        let (Some(a), Some(b)) = (first.ops.get(i), last.ops.get(i)) else {
            continue;
        };
        let gb = growth(a.blaze.mean, b.blaze.mean);
        let (goal, met) = if *goal {
            (
                format!("<= {GROWTH_GOAL:.1}x (BlazeDB mean)"),
                if gb <= GROWTH_GOAL { "yes" } else { "NO" },
            )
        } else {
            ("-".to_owned(), "-")
        };
        cells.push(vec![
            (*name).to_owned(),
            format!("{gb:.2}x"),
            format!("{:.2}x", growth(a.blaze.p50, b.blaze.p50)),
            format!("{:.2}x", growth(a.sqlite.mean, b.sqlite.mean)),
            format!("{:.2}x", growth(a.sqlite.p50, b.sqlite.p50)),
            goal,
            met.to_owned(),
        ]);
    }
    cells.push(vec![
        "(disk fsync)".to_owned(),
        format!("{:.2}x", growth(first.fsync.mean, last.fsync.mean)),
        format!("{:.2}x", growth(first.fsync.p50, last.fsync.p50)),
        "-".to_owned(),
        "-".to_owned(),
        "-".to_owned(),
        "-".to_owned(),
    ]);
    println!(
        "Figure 2 growth from {} to {} docs (latency at {} / latency at {}):",
        first.docs, last.docs, last.docs, first.docs
    );
    let header = [
        "Op",
        "Blaze mean",
        "Blaze p50",
        "SQLite mean",
        "SQLite p50",
        "Goal",
        "Met",
    ];
    println!("{}", grid(&header, &cells, &[0, 5, 6]));
}

/// Figure 2's notes: what was measured and how.
fn print_notes(results: &[SizeResult], sizes: &QuerySizes) {
    println!("Figure 2 notes:");
    println!(
        "- per size and engine: {} gets, {} queries, {} puts of each kind, each call timed \
         on its own, in {ROUNDS} rounds alternating the engines. get = random existing id, \
         own read snapshot (Collection::get / autocommit SELECT + JSON parse). query = \
         group == random g with docs/10 groups (~10 documents; full documents as in \
         figure 1). put = replace a random existing document by id with new content and \
         a new random group, so both engines also move its index entry: Collection::put \
         with Durability::Immediate / autocommit UPDATE with synchronous=FULL. put-nosync \
         = the same without the fsync: Durability::Eventual / synchronous=NORMAL (the \
         engines' own work; no goal).",
        sizes.lat_gets, sizes.lat_queries, sizes.lat_puts
    );
    println!(
        "- scans (figure 3): the warm full scan, which carries the goal, is BlazeDB's scan \
         handing out every document decoded against SQLite's `SELECT sum(length(doc))`, \
         which reads every row's text but parses none; the next two rows give both engines \
         the same work: every record read and nothing built (BlazeDB `count`: each record \
         decrypted, authenticated and walked), and every document whole (SQLite: each row's \
         id and its JSON parsed into a serde_json::Value)."
    );
    println!(
        "- (disk fsync) = {PROBES} times a 4 KiB write + fdatasync of a scratch file in the \
         same directory, just before the puts: the floor under a durable commit at that \
         moment (the disk may be shared with other processes)."
    );
    println!(
        "- loading: transactions of {} docs in both engines (BlazeDB \
         Durability::Eventual, then create_index and Database::flush; SQLite durable \
         commits, then CREATE INDEX and ANALYZE); KdfParams::INSECURE_FAST; a 1 GiB page \
         cache in both (BlazeDB cache_size, SQLite PRAGMA cache_size; BlazeDB's default \
         is 128 MiB); both warmed by a full read of the collection and an untimed \
         warm-up series before each measured one.",
        indexed::LOAD_BATCH
    );
    for r in results {
        println!("- {}", r.note);
    }
}
