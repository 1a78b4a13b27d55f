//! The SQLite side of every measurement: documents as JSON text in
//! `docs(id TEXT PRIMARY KEY, doc TEXT)`, WAL journal, `synchronous=FULL`.

use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rusqlite::{Connection, params};

use crate::measure::best;

/// SQLite page cache per connection, in KiB (negative `cache_size` means KiB). Large
/// enough to hold the whole bulk table, as BlazeDB's default 128 MiB cache holds its
/// (smaller) file.
const CACHE_KIB: i64 = 256 * 1024;
/// How long a writer waits for the write lock before failing with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

const INSERT: &str = "INSERT INTO docs(id, doc) VALUES (?1, ?2)";
const SELECT: &str = "SELECT doc FROM docs WHERE id = ?1";

/// One document ready for SQLite: id text and the JSON value (serialised when inserted,
/// inside the timed section, as BlazeDB encodes inside its insert).
pub(crate) struct Row {
    pub id: String,
    pub doc: serde_json::Value,
}

/// The path of the SQLite database `name` in `dir`.
pub(crate) fn db_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.sqlite"))
}

/// Opens (creating) a connection with the benchmark settings: WAL, `synchronous=FULL`
/// (every commit fsyncs the WAL), busy timeout, large page cache, the `docs` table.
pub(crate) fn open(dir: &Path, name: &str) -> Result<Connection> {
    let path = db_path(dir, name);
    let conn = Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        bail!("SQLite refused WAL mode (got {mode})");
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous=FULL; PRAGMA cache_size=-{CACHE_KIB};
         CREATE TABLE IF NOT EXISTS docs (id TEXT PRIMARY KEY, doc TEXT NOT NULL);"
    ))?;
    Ok(conn)
}

fn insert_one(conn: &Connection, row: &Row) -> Result<()> {
    let text = serde_json::to_string(&row.doc)?;
    conn.prepare_cached(INSERT)?
        .execute(params![row.id, text])?;
    Ok(())
}

/// Time for one connection to commit each row in its own transaction (autocommit
/// INSERT, `synchronous=FULL`).
pub(crate) fn commits_one_writer(conn: &Connection, rows: &[Row]) -> Result<Duration> {
    let start = Instant::now();
    for row in rows {
        insert_one(conn, row)?;
    }
    Ok(start.elapsed())
}

/// Time for `per_thread.len()` threads, each with its own connection (busy timeout
/// 60 s) to the database `name` (which must exist), to commit their rows, one
/// autocommit INSERT per row. The clock starts when every thread has its connection
/// and stops when the last one finishes.
pub(crate) fn commits_concurrent(
    dir: &Path,
    name: &str,
    per_thread: &[Vec<Row>],
) -> Result<Duration> {
    let barrier = Barrier::new(per_thread.len() + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = per_thread
            .iter()
            .map(|rows| {
                let barrier = &barrier;
                s.spawn(move || -> Result<()> {
                    let conn = open(dir, name);
                    barrier.wait();
                    let conn = conn?;
                    for row in rows {
                        insert_one(&conn, row)?;
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
                Err(_) => bail!("a SQLite writer thread panicked"),
            }
        }
        Ok(start.elapsed())
    })
}

/// Time to insert every row in one transaction (BEGIN, prepared INSERTs, COMMIT with
/// `synchronous=FULL`, including the WAL auto-checkpoint SQLite runs at that commit).
pub(crate) fn bulk_insert(conn: &mut Connection, rows: &[Row]) -> Result<Duration> {
    let start = Instant::now();
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(INSERT)?;
        for row in rows {
            let text = serde_json::to_string(&row.doc)?;
            stmt.execute(params![row.id, text])?;
        }
    }
    tx.commit()?;
    Ok(start.elapsed())
}

/// Looks `id` up with the prepared SELECT and parses the JSON document; returns whether
/// it was found.
pub(crate) fn get_one(conn: &Connection, id: &str) -> Result<bool> {
    let mut stmt = conn.prepare_cached(SELECT)?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(row) => {
            let text = row.get_ref(0)?.as_str()?;
            let doc: serde_json::Value = serde_json::from_str(text)?;
            Ok(!doc.is_null())
        }
        None => Ok(false),
    }
}

/// Time for point gets of `ids` with a prepared SELECT, each in its own (implicit) read
/// transaction; each result is parsed from JSON. Fails if any id is missing.
pub(crate) fn gets_each(conn: &Connection, ids: &[String]) -> Result<Duration> {
    let start = Instant::now();
    let mut found = 0usize;
    for id in ids {
        if get_one(conn, id)? {
            found += 1;
        }
    }
    let elapsed = start.elapsed();
    crate::measure::check_found("SQLite", found, ids.len())?;
    Ok(elapsed)
}

/// Time for point gets of `ids` inside one explicit read transaction (BEGIN … COMMIT).
/// Fails if any id is missing.
pub(crate) fn gets_one_txn(conn: &Connection, ids: &[String]) -> Result<Duration> {
    let start = Instant::now();
    conn.execute_batch("BEGIN")?;
    let mut found = 0usize;
    for id in ids {
        if get_one(conn, id)? {
            found += 1;
        }
    }
    conn.execute_batch("COMMIT")?;
    let elapsed = start.elapsed();
    crate::measure::check_found("SQLite", found, ids.len())?;
    Ok(elapsed)
}

/// Best-of-`repeats` time of opening the closed database `name` and running the first query (a
/// point get of `probe`, JSON parsed). SQLite has no password step.
pub(crate) fn open_first_query(
    dir: &Path,
    name: &str,
    probe: &str,
    repeats: usize,
) -> Result<Duration> {
    let path = db_path(dir, name);
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        let conn = Connection::open(&path)?;
        let found = get_one(&conn, probe)?;
        times.push(start.elapsed());
        if !found {
            bail!("SQLite probe document missing after reopen");
        }
        conn.close().map_err(|(_, e)| e)?;
    }
    Ok(best(&times))
}

/// Total size in bytes of the database file and its WAL and shared-memory files.
pub(crate) fn db_size(dir: &Path, name: &str) -> Result<u64> {
    files_total(dir, name, std::fs::Metadata::len)
}

/// Bytes those files occupy on disk (allocated blocks).
pub(crate) fn db_disk_bytes(dir: &Path, name: &str) -> Result<u64> {
    files_total(dir, name, crate::measure::disk_bytes)
}

fn files_total(dir: &Path, name: &str, f: impl Fn(&std::fs::Metadata) -> u64) -> Result<u64> {
    let mut total = 0;
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", db_path(dir, name).display()));
        if let Ok(m) = std::fs::metadata(&p) {
            total += f(&m);
        }
    }
    Ok(total)
}
