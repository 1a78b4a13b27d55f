//! A write transaction's writes, kept until they are needed: sent to Postgres in bulk
//! (every upsert in one statement, arrays `unnest`ed; removals per table) before a read
//! that could see them and at commit. A transaction applying a batch writes a merge state, a document
//! and a log entry per write; one round trip each made the store ~40× slower than the
//! embedded engine.
//!
//! Invariant: a read inside the transaction sees its own writes — a point read looks
//! here first (latest write of a key wins, a removal is remembered as `None`), and a
//! read of a range (scan, log range, collections) sends everything pending first.

use std::collections::{BTreeMap, HashMap};

use blazedb_core::{DocId, Fields};

use crate::pool::Lent;

/// A sealed row to write (`Some`) or delete (`None`), with what reads inside the
/// transaction return for it.
pub(crate) struct Row<T> {
    pub tags: ([u8; 16], [u8; 16]),
    pub sealed: Option<Vec<u8>>,
    pub plain: Option<T>,
}

#[derive(Default)]
pub(crate) struct Pending {
    /// (namespace, key) → the record's row.
    pub records: HashMap<(String, Vec<u8>), Row<Vec<u8>>>,
    /// (log, position) → the entry's row (the second tag is unused).
    pub logs: BTreeMap<(String, u64), Row<Vec<u8>>>,
    /// (collection, id) → the document's row.
    pub docs: HashMap<(String, DocId), Row<Fields>>,
}

/// `Some(value)` when the pending writes decide a point read (`Some(None)`: removed).
pub(crate) fn lookup<K: std::hash::Hash + Eq, T: Clone>(
    map: &HashMap<K, Row<T>>,
    key: &K,
) -> Option<Option<T>> {
    map.get(key).map(|r| r.plain.clone())
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Pending {
    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty() && self.logs.is_empty() && self.docs.is_empty()
    }

    /// Sends every pending write to Postgres (inside the open transaction): every
    /// upsert of the three tables in one statement (one round trip), then the removals
    /// of each table that has any (rare: garbage collection, log pruning).
    pub(crate) fn flush(
        &mut self,
        c: &mut Lent<'_>,
        db: &str,
    ) -> std::result::Result<(), postgres::Error> {
        if self.is_empty() {
            return Ok(());
        }
        let mut records = Split::default();
        for r in std::mem::take(&mut self.records).into_values() {
            records.add(r.tags.0.to_vec(), r.tags.1.to_vec(), r.sealed);
        }
        let mut logs = Split::default();
        for ((_, seq), r) in std::mem::take(&mut self.logs) {
            logs.add(r.tags.0.to_vec(), i64_of(seq), r.sealed);
        }
        let mut docs = Split::default();
        for r in std::mem::take(&mut self.docs).into_values() {
            docs.add(r.tags.0.to_vec(), r.tags.1.to_vec(), r.sealed);
        }
        if !(records.put_a.is_empty() && logs.put_a.is_empty() && docs.put_a.is_empty()) {
            c.execute(
                // Data-modifying CTEs all run, whichever arrays are empty. A key appears
                // once per table (the pending maps hold one row per key).
                "WITH r AS (\
                   INSERT INTO blazedb_records (db, ns, key, value) \
                   SELECT $1, * FROM unnest($2::bytea[], $3::bytea[], $4::bytea[]) \
                   ON CONFLICT (db, ns, key) DO UPDATE SET value = EXCLUDED.value), \
                 l AS (\
                   INSERT INTO blazedb_logs (db, ns, seq, value) \
                   SELECT $1, * FROM unnest($5::bytea[], $6::bigint[], $7::bytea[]) \
                   ON CONFLICT (db, ns, seq) DO UPDATE SET value = EXCLUDED.value) \
                 INSERT INTO blazedb_docs (db, coll, id, value) \
                 SELECT $1, * FROM unnest($8::bytea[], $9::bytea[], $10::bytea[]) \
                 ON CONFLICT (db, coll, id) DO UPDATE SET value = EXCLUDED.value",
                &[
                    &db,
                    &records.put_a,
                    &records.put_b,
                    &records.put_v,
                    &logs.put_a,
                    &logs.put_b,
                    &logs.put_v,
                    &docs.put_a,
                    &docs.put_b,
                    &docs.put_v,
                ],
            )?;
        }
        if !records.del_a.is_empty() {
            c.execute(
                "DELETE FROM blazedb_records WHERE db = $1 AND (ns, key) IN \
                 (SELECT * FROM unnest($2::bytea[], $3::bytea[]))",
                &[&db, &records.del_a, &records.del_b],
            )?;
        }
        if !logs.del_a.is_empty() {
            c.execute(
                "DELETE FROM blazedb_logs WHERE db = $1 AND (ns, seq) IN \
                 (SELECT * FROM unnest($2::bytea[], $3::bigint[]))",
                &[&db, &logs.del_a, &logs.del_b],
            )?;
        }
        if !docs.del_a.is_empty() {
            c.execute(
                "DELETE FROM blazedb_docs WHERE db = $1 AND (coll, id) IN \
                 (SELECT * FROM unnest($2::bytea[], $3::bytea[]))",
                &[&db, &docs.del_a, &docs.del_b],
            )?;
        }
        Ok(())
    }
}

/// One table's pending rows as the statements' arrays: the first key part, the second
/// (a tag, or a log position), the sealed value; removals apart.
struct Split<B> {
    put_a: Vec<Vec<u8>>,
    put_b: Vec<B>,
    put_v: Vec<Vec<u8>>,
    del_a: Vec<Vec<u8>>,
    del_b: Vec<B>,
}

impl<B> Default for Split<B> {
    fn default() -> Self {
        Split {
            put_a: Vec::new(),
            put_b: Vec::new(),
            put_v: Vec::new(),
            del_a: Vec::new(),
            del_b: Vec::new(),
        }
    }
}

impl<B> Split<B> {
    fn add(&mut self, a: Vec<u8>, b: B, sealed: Option<Vec<u8>>) {
        match sealed {
            Some(v) => {
                self.put_a.push(a);
                self.put_b.push(b);
                self.put_v.push(v);
            }
            None => {
                self.del_a.push(a);
                self.del_b.push(b);
            }
        }
    }
}
