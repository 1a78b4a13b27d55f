//! The BlazeDB side of every measurement.

use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use blazedb_engine::{Database, DocId, Document, Durability, KdfParams};

use crate::measure::best;

/// The collection every measurement writes to.
pub(crate) const COLLECTION: &str = "docs";
/// The password of every benchmark database.
pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// Opens (creating) a database for a throughput measurement: the cheap KDF, since the
/// KDF runs only at open and is measured separately, and durable commits.
pub(crate) fn open_fast(dir: &Path, name: &str) -> Result<Database> {
    Database::builder()
        .kdf(KdfParams::INSECURE_FAST)
        .durability(Durability::Immediate)
        .open(dir, name, PASSWORD)
        .with_context(|| format!("opening BlazeDB database {name}"))
}

/// Time for one writer to commit each document in its own durable transaction
/// (`Durability::Immediate`, one insert per transaction).
pub(crate) fn commits_one_writer(db: &Database, docs: Vec<Document>) -> Result<Duration> {
    let coll = db.collection(COLLECTION);
    let start = Instant::now();
    for doc in docs {
        coll.insert(doc)?;
    }
    Ok(start.elapsed())
}

/// Time for `per_thread.len()` threads sharing one database handle (cloned) to each
/// commit their documents, one durable single-insert transaction per document. The
/// clock starts when every thread is ready and stops when the last one finishes.
pub(crate) fn commits_concurrent(
    db: &Database,
    per_thread: Vec<Vec<Document>>,
) -> Result<Duration> {
    let barrier = Barrier::new(per_thread.len() + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = per_thread
            .into_iter()
            .map(|docs| {
                let db = db.clone();
                let barrier = &barrier;
                s.spawn(move || -> Result<()> {
                    let coll = db.collection(COLLECTION);
                    barrier.wait();
                    for doc in docs {
                        coll.insert(doc)?;
                    }
                    Ok(())
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for h in handles {
            match h.join() {
                Ok(r) => r?,
                Err(_) => bail!("a BlazeDB writer thread panicked"),
            }
        }
        Ok(start.elapsed())
    })
}

/// Creates the database used for the bulk, get and open measurements, with the default
/// (production) KDF so that the open measurement pays the real password-hashing cost.
pub(crate) fn create_bulk_db(dir: &Path, name: &str) -> Result<Database> {
    Database::builder()
        .kdf(KdfParams::DEFAULT)
        .durability(Durability::Immediate)
        .open(dir, name, PASSWORD)
        .with_context(|| format!("creating BlazeDB database {name}"))
}

/// A database that captures its local writes in the change log, as one with sync enabled
/// does (a new database is local-only and keeps none): what the change log costs.
pub(crate) fn create_capturing_db(dir: &Path, name: &str) -> Result<Database> {
    use blazedb_engine::internal::SyncWrite;
    let db = Database::builder()
        .kdf(KdfParams::INSECURE_FAST)
        .durability(Durability::Immediate)
        .open(dir, name, PASSWORD)
        .with_context(|| format!("creating BlazeDB database {name}"))?;
    let mut tx = db.begin_write()?;
    tx.enable_change_capture()?;
    tx.commit()?;
    Ok(db)
}

/// Time to insert every document in one durable write transaction (begin, inserts,
/// commit).
pub(crate) fn bulk_insert(db: &Database, docs: Vec<Document>) -> Result<Duration> {
    let start = Instant::now();
    let mut tx = db.begin_write()?;
    for doc in docs {
        tx.insert(COLLECTION, doc)?;
    }
    tx.commit()?;
    Ok(start.elapsed())
}

/// Time for point gets of `ids` through `Collection::get`: each get is its own read
/// transaction. Fails if any id is missing.
pub(crate) fn gets_each(db: &Database, ids: &[DocId]) -> Result<Duration> {
    let coll = db.collection(COLLECTION);
    let start = Instant::now();
    let mut found = 0usize;
    for id in ids {
        if coll.get(*id)?.is_some() {
            found += 1;
        }
    }
    let elapsed = start.elapsed();
    crate::measure::check_found("BlazeDB", found, ids.len())?;
    Ok(elapsed)
}

/// Time for point gets of `ids` all inside one read transaction (`ReadTxn::get`).
/// Fails if any id is missing.
pub(crate) fn gets_one_txn(db: &Database, ids: &[DocId]) -> Result<Duration> {
    let start = Instant::now();
    let tx = db.begin_read()?;
    let mut found = 0usize;
    for id in ids {
        if tx.get(COLLECTION, *id)?.is_some() {
            found += 1;
        }
    }
    drop(tx);
    let elapsed = start.elapsed();
    crate::measure::check_found("BlazeDB", found, ids.len())?;
    Ok(elapsed)
}

/// Best-of-`repeats` times of opening the existing (closed) database `name`: `open` is the time of
/// `Database::open` alone (KDF, key unwrap, redb open, page verification when `verify`),
/// `open_get` the time of open plus the first get of `probe`. Each repetition closes
/// the database before the next.
pub(crate) fn open_times(
    dir: &Path,
    name: &str,
    verify: bool,
    probe: DocId,
    repeats: usize,
) -> Result<OpenTimes> {
    let mut open = Vec::with_capacity(repeats);
    let mut open_get = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        let db = Database::builder()
            .verify_on_open(verify)
            .open(dir, name, PASSWORD)
            .with_context(|| format!("reopening BlazeDB database {name}"))?;
        open.push(start.elapsed());
        let doc = db.collection(COLLECTION).get(probe)?;
        open_get.push(start.elapsed());
        if doc.is_none() {
            bail!("BlazeDB probe document missing after reopen");
        }
        drop(db);
    }
    Ok(OpenTimes {
        open: best(&open),
        open_get: best(&open_get),
    })
}

/// Best open times (see [`open_times`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct OpenTimes {
    pub open: Duration,
    pub open_get: Duration,
}

/// Best-of-`repeats` time of the default KDF alone (Argon2id at `KdfParams::DEFAULT`) on the
/// benchmark password and a fixed salt.
pub(crate) fn kdf_time(repeats: usize) -> Result<Duration> {
    let salt = [7u8; 16];
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        let key = KdfParams::DEFAULT
            .derive(PASSWORD.as_bytes(), &salt)
            .map_err(|e| anyhow::anyhow!("KDF failed: {e}"))?;
        times.push(start.elapsed());
        drop(key);
    }
    Ok(best(&times))
}

/// Total size in bytes of the files in the database directory of `name` in `dir`.
pub(crate) fn db_size(dir: &Path, name: &str) -> Result<u64> {
    crate::measure::dir_size(&blazedb_engine::database_path(dir, name))
}

/// Where the database's bytes go, per document: each table's pages (and how much of them
/// is the records themselves), then the file bytes no table uses.
pub(crate) fn space_note(db: &Database, docs: usize) -> Result<String> {
    let report = db.space()?;
    let per_doc = |bytes: u64| bytes as f64 / docs.max(1) as f64;
    let mut parts = Vec::new();
    for (name, t) in &report.tables {
        let pages = (t.leaf_pages + t.branch_pages) * report.page_bytes;
        if pages == 0 {
            continue;
        }
        parts.push(format!(
            "{name} {:.0} B ({:.0} B records, {:.0}% full)",
            per_doc(pages),
            per_doc(t.stored_bytes),
            100.0 * t.stored_bytes as f64 / pages as f64
        ));
    }
    parts.push(format!("unused {:.0} B", per_doc(report.unused_bytes())));
    Ok(format!(
        "{:.0} B per document in the data file: {}",
        per_doc(report.file_bytes),
        parts.join(", ")
    ))
}

/// Compacts database `name` (closed) and says what it gave back, how long it took and
/// where the bytes go afterwards.
pub(crate) fn compaction_note(dir: &Path, name: &str, docs: usize) -> Result<String> {
    let mut db = Database::builder()
        .open(dir, name, PASSWORD)
        .with_context(|| format!("opening BlazeDB database {name}"))?;
    let t = Instant::now();
    let r = db.compact()?;
    let took = t.elapsed();
    let mib = |b: u64| b as f64 / 1_048_576.0;
    Ok(format!(
        "compaction of {name} ({docs} docs): {:.1} MiB -> {:.1} MiB in {:.0} ms; after it, {}",
        mib(r.before_bytes),
        mib(r.after_bytes),
        took.as_secs_f64() * 1000.0,
        space_note(&db, docs)?
    ))
}
