//! The BlazeDB side of the `query` command: a collection with a secondary index on the
//! integer field `group`, loaded in large transactions, then read and written one
//! operation at a time.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use blazedb_engine::{
    Database, DocId, Document, Durability, Filter, IndexSpec, KdfParams, Query, ReadTxn,
};

use crate::blaze::{COLLECTION, PASSWORD};

/// The name of the secondary index on `group`.
pub(crate) const INDEX: &str = "by_group";

/// BlazeDB's page cache in this command: 1 GiB, as SQLite's (`sqlite_idx`), so that the
/// 1M-document database fits in both (BlazeDB's default, 128 MiB, does not hold it).
pub(crate) const CACHE_BYTES: usize = 1 << 30;

/// Opens (creating) a database with the cheap KDF (`KdfParams::INSECURE_FAST`: the KDF
/// runs only at open, which no figure of this command measures), durable commits by
/// default and a [`CACHE_BYTES`] page cache.
pub(crate) fn open(dir: &Path, name: &str) -> Result<Database> {
    Database::builder()
        .kdf(KdfParams::INSECURE_FAST)
        .durability(Durability::Immediate)
        .cache_size(CACHE_BYTES)
        .open(dir, name, PASSWORD)
        .with_context(|| format!("opening BlazeDB database {name}"))
}

/// Time to insert `docs` in one write transaction committed with
/// `Durability::Eventual` (the load; [`finish_load`] makes it durable).
pub(crate) fn load_batch(db: &Database, docs: Vec<Document>) -> Result<Duration> {
    let start = Instant::now();
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Eventual);
    for doc in docs {
        tx.insert(COLLECTION, doc)?;
    }
    tx.commit()?;
    Ok(start.elapsed())
}

/// Time to build the `group` index over the loaded documents (`Database::create_index`,
/// one durable transaction) and flush every earlier eventual commit (`Database::flush`).
pub(crate) fn finish_load(db: &Database) -> Result<Duration> {
    let start = Instant::now();
    db.create_index(&IndexSpec::new(INDEX, COLLECTION, &["group"]))?;
    db.flush()?;
    Ok(start.elapsed())
}

/// Time of a full scan of the collection (decrypting every document): brings the
/// whole file into redb's page cache before the latency measurements.
pub(crate) fn warm(db: &Database) -> Result<Duration> {
    let start = Instant::now();
    // A scan handing out every document whole (not `count`, which decodes no field).
    let mut n = 0u64;
    db.begin_read()?.scan(COLLECTION, |d| {
        n += u64::from(!d.fields.is_empty());
        Ok(std::ops::ControlFlow::Continue(()))
    })?;
    if n == 0 {
        bail!("BlazeDB collection is empty");
    }
    Ok(start.elapsed())
}

/// Time to read every record without building documents (`ReadTxn::count`: each record
/// is decrypted, authenticated and walked; the same work as SQLite's
/// `sum(length(doc))`, which reads every row's text).
pub(crate) fn scan_records(db: &Database) -> Result<Duration> {
    let start = Instant::now();
    if db.begin_read()?.count(COLLECTION)? == 0 {
        bail!("BlazeDB collection is empty");
    }
    Ok(start.elapsed())
}

/// The query `group == g` on the benchmark collection.
pub(crate) fn group_query(g: i64) -> Result<Query> {
    Ok(Query::new(COLLECTION).filter(Filter::eq("group", g)?))
}

/// The plan `Database::explain` reports for `group == g`.
pub(crate) fn explain(db: &Database, g: i64) -> Result<String> {
    Ok(db.explain(&group_query(g)?)?.to_string())
}

/// Runs `group == g` in a fresh snapshot (`Database::query`): full documents, decrypted
/// and decoded. Returns how many matched.
pub(crate) fn query_group(db: &Database, g: i64) -> Result<usize> {
    Ok(db.query(&group_query(g)?)?.len())
}

/// Runs `group == g` in the given snapshot (`ReadTxn::query`). Returns how many matched.
pub(crate) fn query_group_in(tx: &ReadTxn, g: i64) -> Result<usize> {
    Ok(tx.query(&group_query(g)?)?.len())
}

/// One point get in its own snapshot (`Collection::get`); fails if `id` is missing.
pub(crate) fn get(db: &Database, id: DocId) -> Result<usize> {
    match db.collection(COLLECTION).get(id)? {
        Some(_) => Ok(1),
        None => bail!("BlazeDB document {id} missing"),
    }
}

/// One replacing put (`Collection::put`, its own transaction with the handle's
/// `Durability::Immediate`); fails if the document did not exist before.
pub(crate) fn put(db: &Database, doc: Document) -> Result<usize> {
    if db.collection(COLLECTION).put(doc)? {
        bail!("BlazeDB put created a document instead of replacing one");
    }
    Ok(1)
}

/// One replacing put in its own transaction committed with `Durability::Eventual`
/// (no fsync: the engine's own work without the disk flush); fails if the document did
/// not exist before.
pub(crate) fn put_eventual(db: &Database, doc: Document) -> Result<usize> {
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Eventual);
    if tx.put(COLLECTION, doc)? {
        bail!("BlazeDB put created a document instead of replacing one");
    }
    tx.commit()?;
    Ok(1)
}

/// Total size in bytes of the database's files.
pub(crate) fn size(dir: &Path, name: &str) -> Result<u64> {
    crate::blaze::db_size(dir, name)
}
