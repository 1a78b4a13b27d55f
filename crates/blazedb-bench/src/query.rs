//! The `query` command: indexed equality queries (figure 1) and per-operation latency as
//! the database grows (figure 2, in [`crate::scale`]), BlazeDB against SQLite.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::indexed::{self, Loaded, time_all};
use crate::report::{Goal, Row, table};
use crate::sizes::{QuerySizes, progress};
use crate::{blaze_idx, scale, sqlite_idx};

/// Which figures of the `query` command to run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QuerySelection {
    /// Figure 1: indexed equality queries returning ~100 documents.
    pub indexed: bool,
    /// Figure 2: per-operation latency at three collection sizes.
    pub latency: bool,
}

/// Runs the selected figures of the `query` command in `dir` and prints them.
pub(crate) fn run(dir: &Path, sizes: &QuerySizes, sel: QuerySelection) -> Result<()> {
    if sel.indexed {
        indexed_queries(dir, sizes)?;
    }
    if sel.latency {
        scale::run(dir, sizes)?;
    }
    Ok(())
}

/// Splits `items` into `n` nearly equal consecutive chunks.
fn chunks<T>(items: &[T], n: usize) -> Vec<&[T]> {
    let size = items.len().div_ceil(n.max(1)).max(1);
    items.chunks(size).collect()
}

/// Figure 1: throughput of indexed equality queries (`group == g`, random `g`) that
/// return ~docs/groups full documents, (a) each in its own read snapshot and (b) all in
/// one read transaction. The queries are split into rounds alternating BlazeDB and
/// SQLite; both must return the same number of documents.
fn indexed_queries(dir: &Path, sizes: &QuerySizes) -> Result<()> {
    progress(&format!(
        "1. loading {} docs, {} groups",
        sizes.docs, sizes.groups
    ));
    let l = indexed::load(dir, "q1", sizes.docs, sizes.groups, 11)?;
    let picks = indexed::pick_groups(l.groups, sizes.queries, 12);
    let warm = indexed::pick_groups(l.groups, sizes.queries / 4, 13);
    let probe = picks.first().copied().unwrap_or(0);
    println!("Figure 1 plans for group == {probe}:");
    println!("  BlazeDB explain: {}", blaze_idx::explain(&l.db, probe)?);
    println!(
        "  SQLite EXPLAIN QUERY PLAN: {}",
        sqlite_idx::explain(&l.conn, probe)?
    );
    println!();

    progress("1. warm-up (both)");
    blaze_idx::warm(&l.db)?;
    sqlite_idx::warm(&l.conn)?;
    time_all(&warm, |g| blaze_idx::query_group(&l.db, *g))?;
    time_all(&warm, |g| sqlite_idx::query_group(&l.conn, *g))?;

    let mut t = Times::default();
    for (i, chunk) in chunks(&picks, sizes.rounds).into_iter().enumerate() {
        progress(&format!("1. indexed queries, round {} (BlazeDB)", i + 1));
        t.add(0, time_all(chunk, |g| blaze_idx::query_group(&l.db, *g))?);
        t.add(1, blaze_one_txn(&l, chunk)?);
        progress(&format!("1. indexed queries, round {} (SQLite)", i + 1));
        t.add(
            2,
            time_all(chunk, |g| sqlite_idx::query_group(&l.conn, *g))?,
        );
        let start = Instant::now();
        let (_, n) = sqlite_idx::in_read_txn(&l.conn, || {
            time_all(chunk, |g| sqlite_idx::query_group(&l.conn, *g))
        })?;
        t.add(3, (start.elapsed(), n));
    }
    if t.found.iter().any(|f| *f != t.found[0]) {
        bail!(
            "the engines returned different document counts: {:?}",
            t.found
        );
    }
    let q = sizes.queries;
    let rows = [
        Row::rate(
            format!("1a. indexed eq query, own snapshot each ({q})"),
            "queries/s",
            q,
            t.time[0],
            t.time[2],
            Goal::RatioAtLeast(1.0),
        ),
        Row::rate(
            format!("1b. indexed eq query, one read txn ({q})"),
            "queries/s",
            q,
            t.time[1],
            t.time[3],
            Goal::RatioAtLeast(1.0),
        ),
    ];
    println!("{}", table(&rows));
    println!("Figure 1 notes:");
    println!(
        "- {} documents (the engine figures' 6 fields plus an integer `group` drawn uniformly \
         from 0..{}); each query matched {:.1} documents on average (identical counts in \
         both engines, checked)",
        sizes.docs,
        l.groups,
        t.found[0] as f64 / q as f64
    );
    println!(
        "- BlazeDB: IndexSpec::new(\"by_group\", \"docs\", &[\"group\"]); Database::query \
         (1a) / ReadTxn::query (1b) with Filter::eq(\"group\", g), building the Query inside \
         the timed loop; full documents returned, decrypted and decoded."
    );
    println!(
        "- SQLite: expression index `{}` (the fair equivalent: derived from the JSON \
         document and maintained by SQLite, as BlazeDB's index is; no extra column), then \
         ANALYZE; prepared `SELECT id, doc … WHERE json_extract(doc, '$.group') = ?1`, \
         autocommit (1a) or BEGIN…COMMIT (1b); every row's id is read and its JSON parsed \
         into a serde_json::Value.",
        sqlite_idx::INDEX_DDL
    );
    println!(
        "- both warmed first (a full read of the collection, then {} untimed queries); \
         {} rounds alternate the engines; KdfParams::INSECURE_FAST (the KDF runs only at \
         open); load {:.0} ms + index {:.0} ms (BlazeDB, Eventual load txns of {} docs, \
         then create_index + flush) vs {:.0} ms + {:.0} ms (SQLite, durable load txns)",
        warm.len(),
        sizes.rounds,
        crate::report::ms(l.blaze_load),
        crate::report::ms(l.blaze_index),
        indexed::LOAD_BATCH,
        crate::report::ms(l.sqlite_load),
        crate::report::ms(l.sqlite_index),
    );
    println!();
    drop(l);
    indexed::remove(dir, "q1")
}

/// Summed times and result counts of the four figure-1 series (BlazeDB own snapshot,
/// BlazeDB one txn, SQLite autocommit, SQLite one txn).
#[derive(Default)]
struct Times {
    time: [Duration; 4],
    found: [usize; 4],
}

impl Times {
    /// Adds one round's time and result count to `series`.
    fn add(&mut self, series: usize, (t, n): (Duration, usize)) {
        self.time[series] += t;
        self.found[series] += n;
    }
}

/// Time of `groups` queries run in one BlazeDB read snapshot (`begin_read` included).
fn blaze_one_txn(l: &Loaded, groups: &[i64]) -> Result<(Duration, usize)> {
    let start = Instant::now();
    let tx = l.db.begin_read()?;
    let (_, n) = time_all(groups, |g| blaze_idx::query_group_in(&tx, *g))?;
    drop(tx);
    Ok((start.elapsed(), n))
}
