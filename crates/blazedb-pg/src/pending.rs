//! A write transaction's writes, kept until they are needed: sent to Postgres in bulk
//! (one statement per table and kind, arrays `unnest`ed) before a read that could see
//! them and at commit. A transaction applying a batch writes a merge state, a document
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

    /// Sends every pending write to Postgres (inside the open transaction).
    pub(crate) fn flush(
        &mut self,
        c: &mut Lent<'_>,
        db: &str,
    ) -> std::result::Result<(), postgres::Error> {
        if self.is_empty() {
            return Ok(());
        }
        let records = std::mem::take(&mut self.records);
        write_table(
            c,
            db,
            records
                .into_values()
                .map(|r| (r.tags.0.to_vec(), Key::Bytes(r.tags.1.to_vec()), r.sealed)),
            "INSERT INTO blazedb_records (db, ns, key, value) \
             SELECT $1, * FROM unnest($2::bytea[], $3::bytea[], $4::bytea[]) \
             ON CONFLICT (db, ns, key) DO UPDATE SET value = EXCLUDED.value",
            "DELETE FROM blazedb_records WHERE db = $1 AND (ns, key) IN \
             (SELECT * FROM unnest($2::bytea[], $3::bytea[]))",
        )?;
        let logs = std::mem::take(&mut self.logs);
        write_table(
            c,
            db,
            logs.into_iter()
                .map(|((_, seq), r)| (r.tags.0.to_vec(), Key::Seq(i64_of(seq)), r.sealed)),
            "INSERT INTO blazedb_logs (db, ns, seq, value) \
             SELECT $1, * FROM unnest($2::bytea[], $3::bigint[], $4::bytea[]) \
             ON CONFLICT (db, ns, seq) DO UPDATE SET value = EXCLUDED.value",
            "DELETE FROM blazedb_logs WHERE db = $1 AND (ns, seq) IN \
             (SELECT * FROM unnest($2::bytea[], $3::bigint[]))",
        )?;
        let docs = std::mem::take(&mut self.docs);
        write_table(
            c,
            db,
            docs.into_values()
                .map(|r| (r.tags.0.to_vec(), Key::Bytes(r.tags.1.to_vec()), r.sealed)),
            "INSERT INTO blazedb_docs (db, coll, id, value) \
             SELECT $1, * FROM unnest($2::bytea[], $3::bytea[], $4::bytea[]) \
             ON CONFLICT (db, coll, id) DO UPDATE SET value = EXCLUDED.value",
            "DELETE FROM blazedb_docs WHERE db = $1 AND (coll, id) IN \
             (SELECT * FROM unnest($2::bytea[], $3::bytea[]))",
        )
    }
}

/// A row's second key: a tag, or a log position.
enum Key {
    Bytes(Vec<u8>),
    Seq(i64),
}

/// One bulk upsert and one bulk delete for `rows` of one table.
fn write_table(
    c: &mut Lent<'_>,
    db: &str,
    rows: impl Iterator<Item = (Vec<u8>, Key, Option<Vec<u8>>)>,
    upsert: &'static str,
    delete: &'static str,
) -> std::result::Result<(), postgres::Error> {
    let (mut put_a, mut put_b, mut put_s, mut put_v) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut del_a, mut del_b, mut del_s) = (Vec::new(), Vec::new(), Vec::new());
    for (a, b, v) in rows {
        match (v, b) {
            (Some(v), Key::Bytes(b)) => {
                put_a.push(a);
                put_b.push(b);
                put_v.push(v);
            }
            (Some(v), Key::Seq(s)) => {
                put_a.push(a);
                put_s.push(s);
                put_v.push(v);
            }
            (None, Key::Bytes(b)) => {
                del_a.push(a);
                del_b.push(b);
            }
            (None, Key::Seq(s)) => {
                del_a.push(a);
                del_s.push(s);
            }
        }
    }
    let seq_keys = !put_s.is_empty() || !del_s.is_empty();
    if !put_a.is_empty() {
        if seq_keys {
            c.execute(upsert, &[&db, &put_a, &put_s, &put_v])?;
        } else {
            c.execute(upsert, &[&db, &put_a, &put_b, &put_v])?;
        }
    }
    if !del_a.is_empty() {
        if seq_keys {
            c.execute(delete, &[&db, &del_a, &del_s])?;
        } else {
            c.execute(delete, &[&db, &del_a, &del_b])?;
        }
    }
    Ok(())
}
