//! Building the indexed databases of the `query` command (the same documents in BlazeDB
//! and SQLite) and timing operations one by one.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use blazedb_engine::{Database, DocId, Document};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rusqlite::Connection;

use crate::docgen::{DocGen, DocSpec};
use crate::sqlite::Row;
use crate::{blaze_idx, sqlite_idx};

/// Documents per load transaction, for both databases.
pub(crate) const LOAD_BATCH: usize = 100_000;

/// A pair of loaded databases holding the same documents, and what loading them cost.
pub(crate) struct Loaded {
    pub db: Database,
    pub conn: Connection,
    /// Every document id, in insertion order.
    pub ids: Vec<DocId>,
    /// Distinct values of `group` (drawn uniformly from `0..groups`).
    pub groups: i64,
    /// BlazeDB: load transactions, then index build + flush.
    pub blaze_load: Duration,
    pub blaze_index: Duration,
    /// SQLite: load transactions, then index build + `ANALYZE`.
    pub sqlite_load: Duration,
    pub sqlite_index: Duration,
}

/// Creates database `name` in both engines and loads `n` generated documents (seeded
/// by `seed`), each with a uniformly drawn `group` in `0..groups`, in transactions of
/// [`LOAD_BATCH`] documents; then builds the `group` index in each (after the load,
/// the fastest path for both). Times the load and the index build separately.
pub(crate) fn load(dir: &Path, name: &str, n: usize, groups: i64, seed: u64) -> Result<Loaded> {
    let db = blaze_idx::open(dir, name)?;
    let mut conn = sqlite_idx::open(dir, name)?;
    let mut gen_docs = DocGen::new(seed);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x5eed);
    let mut ids = Vec::with_capacity(n);
    let (mut blaze_load, mut sqlite_load) = (Duration::ZERO, Duration::ZERO);
    let mut left = n;
    while left > 0 {
        let take = left.min(LOAD_BATCH);
        left -= take;
        let specs = gen_docs.take(take);
        let group: Vec<i64> = (0..take).map(|_| rng.random_range(0..groups)).collect();
        ids.extend(specs.iter().map(|s| s.id));
        let docs: Vec<Document> = specs
            .iter()
            .zip(&group)
            .map(|(s, g)| s.to_document_in(*g))
            .collect();
        blaze_load += blaze_idx::load_batch(&db, docs)?;
        let rows: Vec<Row> = specs
            .iter()
            .zip(&group)
            .map(|(s, g)| Row {
                id: s.id_text(),
                doc: s.to_json_in(*g),
            })
            .collect();
        sqlite_load += sqlite_idx::load_batch(&mut conn, &rows)?;
    }
    let blaze_index = blaze_idx::finish_load(&db)?;
    let sqlite_index = sqlite_idx::finish_load(&conn)?;
    Ok(Loaded {
        db,
        conn,
        ids,
        groups,
        blaze_load,
        blaze_index,
        sqlite_load,
        sqlite_index,
    })
}

/// `count` group values drawn uniformly from `0..groups`, the same for both engines.
pub(crate) fn pick_groups(groups: i64, count: usize, seed: u64) -> Vec<i64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..count).map(|_| rng.random_range(0..groups)).collect()
}

/// `count` ids drawn uniformly (with repetition) from `ids`.
pub(crate) fn pick_ids(ids: &[DocId], count: usize, seed: u64) -> Vec<DocId> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..count)
        .filter_map(|_| ids.get(rng.random_range(0..ids.len().max(1))).copied())
        .collect()
}

/// Replacement documents for `targets`: fresh generated content and a new random
/// `group`, keeping each target's id. Returned in both engines' forms.
pub(crate) fn replacements(targets: &[DocId], groups: i64, seed: u64) -> (Vec<Document>, Vec<Row>) {
    let mut gen_docs = DocGen::new(seed);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x9e37);
    let mut docs = Vec::with_capacity(targets.len());
    let mut rows = Vec::with_capacity(targets.len());
    for id in targets {
        let spec = DocSpec {
            id: *id,
            ..gen_docs.next_doc()
        };
        let g = rng.random_range(0..groups);
        docs.push(spec.to_document_in(g));
        rows.push(Row {
            id: spec.id_text(),
            doc: spec.to_json_in(g),
        });
    }
    (docs, rows)
}

/// Runs `op` on each item in turn, timing each call on its own. Returns the per-call
/// times and the sum of what the calls returned (documents found or written).
pub(crate) fn time_each<T>(
    items: impl IntoIterator<Item = T>,
    mut op: impl FnMut(T) -> Result<usize>,
) -> Result<(Vec<Duration>, usize)> {
    let items = items.into_iter();
    let mut times = Vec::with_capacity(items.size_hint().0);
    let mut total = 0;
    for item in items {
        let start = Instant::now();
        total += op(item)?;
        times.push(start.elapsed());
    }
    Ok((times, total))
}

/// Runs `op` on every item, timing the whole series. Returns the total time and the
/// sum of what the calls returned.
pub(crate) fn time_all<T>(
    items: impl IntoIterator<Item = T>,
    mut op: impl FnMut(T) -> Result<usize>,
) -> Result<(Duration, usize)> {
    let start = Instant::now();
    let mut total = 0;
    for item in items {
        total += op(item)?;
    }
    Ok((start.elapsed(), total))
}

/// Deletes database `name` of both engines from `dir` (their handles must be closed).
pub(crate) fn remove(dir: &Path, name: &str) -> Result<()> {
    std::fs::remove_dir_all(blazedb_engine::database_path(dir, name))?;
    let base = crate::sqlite::db_path(dir, name);
    for suffix in ["", "-wal", "-shm"] {
        let p = std::path::PathBuf::from(format!("{}{suffix}", base.display()));
        if p.exists() {
            std::fs::remove_file(&p)?;
        }
    }
    Ok(())
}

/// Latencies of one fsync on the disk of `dir`: `count` times, a 4 KiB write at offset 0
/// of a scratch file then `fdatasync` (the floor under every durable commit).
pub(crate) fn fsync_probe(dir: &Path, count: usize) -> Result<Vec<Duration>> {
    use std::io::{Seek, SeekFrom, Write};
    let path = dir.join("fsync-probe");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    let page = [0x5au8; 4096];
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        f.seek(SeekFrom::Start(0))?;
        f.write_all(&page)?;
        f.sync_data()?;
        times.push(start.elapsed());
    }
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(times)
}
