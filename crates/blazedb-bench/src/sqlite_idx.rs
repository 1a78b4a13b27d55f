//! The SQLite side of the `query` command: `docs(id TEXT PRIMARY KEY, doc TEXT)` with JSON
//! text documents and an expression index on `json_extract(doc, '$.group')`, the
//! equivalent of a BlazeDB secondary index on the document field `group` (derived from
//! the document and maintained by the database, no extra column in the schema).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use rusqlite::{Connection, params};

use crate::sqlite::Row;

/// The SQLite page cache of these connections, in KiB: 1 GiB, as BlazeDB's in this
/// command (`blaze_idx::CACHE_BYTES`), so that the largest database fits in both.
const CACHE_KIB: i64 = 1024 * 1024;

const UPDATE: &str = "UPDATE docs SET doc = ?2 WHERE id = ?1";
const BY_GROUP: &str = "SELECT id, doc FROM docs WHERE json_extract(doc, '$.group') = ?1";

/// How the SQLite index is defined, for the notes.
pub(crate) const INDEX_DDL: &str =
    "CREATE INDEX docs_by_group ON docs(json_extract(doc, '$.group'))";

/// Opens (creating) a connection with the benchmark settings of [`crate::sqlite::open`]
/// (WAL, `synchronous=FULL`) and a 1 GiB page cache.
pub(crate) fn open(dir: &Path, name: &str) -> Result<Connection> {
    let conn = crate::sqlite::open(dir, name)?;
    conn.execute_batch(&format!("PRAGMA cache_size=-{CACHE_KIB};"))?;
    Ok(conn)
}

/// Time to insert `rows` in one transaction: the same load as the `engine` bulk figure.
pub(crate) fn load_batch(conn: &mut Connection, rows: &[Row]) -> Result<Duration> {
    crate::sqlite::bulk_insert(conn, rows)
}

/// Time to build the expression index on `group` ([`INDEX_DDL`]) and run `ANALYZE`.
pub(crate) fn finish_load(conn: &Connection) -> Result<Duration> {
    let start = Instant::now();
    conn.execute_batch(&format!("{INDEX_DDL}; ANALYZE;"))?;
    Ok(start.elapsed())
}

/// Time to read every document's text (`sum(length(doc))`): brings the whole table into
/// SQLite's page cache before the latency measurements.
pub(crate) fn warm(conn: &Connection) -> Result<Duration> {
    let start = Instant::now();
    let total: i64 = conn.query_row("SELECT sum(length(doc)) FROM docs", [], |r| r.get(0))?;
    if total == 0 {
        bail!("SQLite table is empty");
    }
    Ok(start.elapsed())
}

/// Time to read every row whole: its id, and its JSON parsed into a `serde_json::Value`
/// (the same work as BlazeDB's scan handing out every document decoded).
pub(crate) fn scan_parsed(conn: &Connection) -> Result<Duration> {
    let start = Instant::now();
    let mut stmt = conn.prepare_cached("SELECT id, doc FROM docs")?;
    let mut rows = stmt.query([])?;
    let mut n = 0u64;
    while let Some(row) = rows.next()? {
        let id: String = row.get(0)?;
        let doc: serde_json::Value = serde_json::from_str(row.get_ref(1)?.as_str()?)?;
        n += u64::from(!id.is_empty() && doc.is_object());
    }
    if n == 0 {
        bail!("SQLite table is empty");
    }
    Ok(start.elapsed())
}

/// SQLite's `EXPLAIN QUERY PLAN` of the group query, one line per plan step.
pub(crate) fn explain(conn: &Connection, g: i64) -> Result<String> {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {BY_GROUP}"))?;
    let steps: Vec<String> = stmt
        .query_map([g], |r| r.get::<_, String>(3))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(steps.join("; "))
}

/// Runs `json_extract(doc, '$.group') = g` with a prepared statement (its own implicit
/// read transaction unless one is open) and returns full documents: the id and the JSON
/// parsed into a `serde_json::Value`. Returns how many matched.
pub(crate) fn query_group(conn: &Connection, g: i64) -> Result<usize> {
    let mut stmt = conn.prepare_cached(BY_GROUP)?;
    let mut rows = stmt.query([g])?;
    let mut docs: Vec<(String, serde_json::Value)> = Vec::new();
    while let Some(row) = rows.next()? {
        let id: String = row.get(0)?;
        let doc: serde_json::Value = serde_json::from_str(row.get_ref(1)?.as_str()?)?;
        docs.push((id, doc));
    }
    Ok(docs.len())
}

/// One point get by id (prepared SELECT, JSON parsed); fails if `id` is missing.
pub(crate) fn get(conn: &Connection, id: &str) -> Result<usize> {
    if !crate::sqlite::get_one(conn, id)? {
        bail!("SQLite document {id} missing");
    }
    Ok(1)
}

/// One replacing write: an autocommit `UPDATE … WHERE id = ?` of the whole JSON text
/// (serialised here), durable (`synchronous=FULL`); SQLite maintains the expression
/// index. Fails unless exactly one row changed.
pub(crate) fn put(conn: &Connection, row: &Row) -> Result<usize> {
    let text = serde_json::to_string(&row.doc)?;
    let changed = conn
        .prepare_cached(UPDATE)?
        .execute(params![row.id, text])?;
    if changed != 1 {
        bail!("SQLite update changed {changed} rows");
    }
    Ok(1)
}

/// Sets `synchronous` to FULL (every commit fsyncs the WAL) or NORMAL (commits do not
/// fsync; checkpoints do), the counterpart of BlazeDB's `Durability::Eventual`.
pub(crate) fn set_synchronous(conn: &Connection, full: bool) -> Result<()> {
    let mode = if full { "FULL" } else { "NORMAL" };
    conn.execute_batch(&format!("PRAGMA synchronous={mode};"))?;
    Ok(())
}

/// Runs `body` inside one explicit read transaction (`BEGIN` … `COMMIT`).
pub(crate) fn in_read_txn<T>(conn: &Connection, body: impl FnOnce() -> Result<T>) -> Result<T> {
    conn.execute_batch("BEGIN")?;
    let out = body();
    conn.execute_batch("COMMIT")?;
    out
}

/// Total size in bytes of the database file and its WAL and shared-memory files.
pub(crate) fn size(dir: &Path, name: &str) -> Result<u64> {
    crate::sqlite::db_size(dir, name)
}
