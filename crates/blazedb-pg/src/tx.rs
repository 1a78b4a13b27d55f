//! The node's transactions over Postgres. A write transaction ([`PgTx`]) holds one
//! connection, begins, and takes its database's writer lock (a transaction-scoped
//! advisory lock: released by its commit or rollback, and by Postgres if the process
//! dies), so writes of all processes are one at a time; a read ([`PgRead`]) is a
//! `REPEATABLE READ READ ONLY` transaction, one committed state for as long as it lives.
//! Dropped without a commit, either rolls back.

use std::cell::RefCell;
use std::collections::HashMap;

use blazedb_core::{DocId, Document, Result};
use blazedb_engine::{Change, Durability, IndexNote};
use blazedb_sync::backend::{NodeRead, NodeTx};

use crate::Inner;
use crate::conn::{Conn, DocRecord, i64_of};
use crate::pending::{self, Pending, Row};

/// The channel commits that grow the log notify (payload: the database's lock key).
pub(crate) const CHANNEL: &str = "blazedb_log";

/// A read snapshot.
pub(crate) struct PgRead<'a> {
    conn: Conn<'a>,
}

impl<'a> PgRead<'a> {
    pub(crate) fn begin(inner: &'a Inner) -> Result<PgRead<'a>> {
        let client = inner.pool.get_with(
            "beginning a read",
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        )?;
        Ok(PgRead {
            conn: Conn {
                inner,
                client: RefCell::new(client),
                failed: std::cell::Cell::new(false),
            },
        })
    }
}

impl Drop for PgRead<'_> {
    fn drop(&mut self) {
        // A read commits nothing; ending it returns the connection clean.
        self.conn.rollback();
    }
}

impl NodeRead for PgRead<'_> {
    fn aux_get(&self, ns: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.conn.record(ns, key)
    }
    fn aux_scan(&self, ns: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.conn.scan(ns)
    }
    fn aux_log_range(&self, ns: &str, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        self.conn.log_range(ns, after, limit)
    }
    fn last_seq(&self) -> Result<u64> {
        Ok(0) // no local writes: the change log is always empty
    }
}

/// A record's namespace tag and key tag.
type RowTags = ([u8; 16], [u8; 16]);

/// The write transaction.
pub(crate) struct PgTx<'a> {
    conn: Conn<'a>,
    /// Writes not yet sent (see `pending.rs`).
    pending: Pending,
    /// Records read in this transaction, present or not. Under the writer lock no
    /// other transaction writes them, and this one's writes are in `pending`, looked at
    /// first: so they stay what Postgres holds.
    read: HashMap<(String, Vec<u8>), Option<Vec<u8>>>,
    durability: Durability,
    signal: bool,
    done: bool,
}

impl<'a> PgTx<'a> {
    pub(crate) fn begin(inner: &'a Inner) -> Result<PgTx<'a>> {
        // READ COMMITTED, whatever the database's default: each statement after the
        // lock then sees every commit made before the lock was granted (under a
        // snapshot taken before the wait, the node would read a stale clock and log
        // end).
        // The writer lock, in the same round trip: every process's writes to this
        // database, one at a time. (The key is our own number, not text from outside.)
        let client = inner.pool.get_with(
            "beginning a write (taking the writer lock)",
            &format!(
                "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock({})",
                inner.lock_key
            ),
        )?;
        let tx = PgTx {
            conn: Conn {
                inner,
                client: RefCell::new(client),
                failed: std::cell::Cell::new(false),
            },
            pending: Pending::default(),
            read: HashMap::new(),
            durability: Durability::Immediate,
            signal: false,
            done: false,
        };
        Ok(tx)
    }
}

impl Drop for PgTx<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.conn.rollback();
        }
    }
}

impl PgTx<'_> {
    /// Record `key` of `ns` as this transaction sees it.
    fn read_record(&mut self, ns: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let k = (ns.to_owned(), key.to_vec());
        if let Some(decided) = pending::lookup(&self.pending.records, &k) {
            return Ok(decided);
        }
        if let Some(known) = self.read.get(&k) {
            return Ok(known.clone());
        }
        let v = self.conn.record(ns, key)?;
        self.read.insert(k, v.clone());
        Ok(v)
    }

    /// Sends the pending writes (before a read of a range, and at commit).
    fn flush(&mut self) -> Result<()> {
        let r = {
            let mut c = self.conn.client.borrow_mut();
            self.pending.flush(&mut c, &self.conn.inner.name)
        };
        self.conn.check("writing", r)
    }
}

impl NodeTx for PgTx<'_> {
    fn set_durability(&mut self, durability: Durability) {
        self.durability = durability;
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        if !self.conn.failed.get() {
            self.flush()?;
        }
        if self.conn.failed.get() {
            return Err(blazedb_core::Error::Failed {
                reason: "a statement of this transaction failed: it was rolled back".into(),
            });
        }
        // One round trip: what the commit needs, then the commit.
        let mut end = String::new();
        if self.durability == Durability::Eventual {
            // As the embedded engine's eventual commits: durable with the next
            // durable one, lost at most with a crash of Postgres itself.
            end.push_str("SET LOCAL synchronous_commit = off; ");
        }
        if self.signal {
            // Delivered to every listening process when the commit is visible; the
            // payload is the database's lock key (our own number: nothing to quote).
            end.push_str(&format!(
                "NOTIFY {CHANNEL}, '{}'; ",
                self.conn.inner.lock_key
            ));
        }
        end.push_str("COMMIT");
        let r = self.conn.client.borrow_mut().batch_execute(&end);
        self.conn.check("committing", r)?;
        self.done = true;
        Ok(())
    }

    fn aux_get(&mut self, ns: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.read_record(ns, key)
    }

    fn prefetch(&mut self, wanted: &[(&str, Vec<u8>)]) -> Result<()> {
        let s = &self.conn.inner.sealer;
        // (namespace tag, key tag) → the namespace asked for.
        let mut asked: HashMap<RowTags, &str> = HashMap::new();
        for (ns, key) in wanted {
            let k = ((*ns).to_owned(), key.clone());
            if !self.pending.records.contains_key(&k) && !self.read.contains_key(&k) {
                asked.insert((s.name_tag(ns), s.key_tag(ns, key)), ns);
            }
        }
        if asked.is_empty() {
            return Ok(());
        }
        let (nss, keys): (Vec<Vec<u8>>, Vec<Vec<u8>>) =
            asked.keys().map(|(n, k)| (n.to_vec(), k.to_vec())).unzip();
        let rows = self.conn.rows(
            "reading records",
            // One index probe per record, whatever plan the prepared statement gets
            // (a generic plan of `key = ANY(..)` scanned the namespace and compared
            // every row with every key).
            "SELECT r.ns, r.key, r.value FROM unnest($2::bytea[], $3::bytea[]) AS k(ns, key) \
                 JOIN blazedb_records r ON r.db = $1 AND r.ns = k.ns AND r.key = k.key",
            &[&self.conn.inner.name, &nss, &keys],
        )?;
        for r in &rows {
            let (nt, kt): (&[u8], &[u8]) = (r.get(0), r.get(1));
            // The join matched the tags asked for, so they are the asked ones.
            let found = <[u8; 16]>::try_from(nt)
                .ok()
                .zip(<[u8; 16]>::try_from(kt).ok())
                .and_then(|tags| Some((tags.0, *asked.get(&tags)?)));
            let Some((nt, ns)) = found else {
                return Err(blazedb_core::Error::Corruption {
                    site: blazedb_core::CorruptionSite::Record { table: "postgres" },
                    detail: "a record's tags".into(),
                });
            };
            let (key, value) = s.open_record(&nt, kt, r.get::<_, &[u8]>(2))?;
            self.read.insert((ns.to_owned(), key), Some(value));
        }
        for (ns, key) in wanted {
            self.read
                .entry(((*ns).to_owned(), key.clone()))
                .or_insert(None);
        }
        Ok(())
    }

    fn aux_scan(&mut self, ns: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.flush()?;
        self.conn.scan(ns)
    }

    fn aux_put(&mut self, ns: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let s = &self.conn.inner.sealer;
        let (nt, kt) = (s.name_tag(ns), s.key_tag(ns, key));
        let sealed = s.seal_record(&nt, &kt, key, value)?;
        self.pending.records.insert(
            (ns.to_owned(), key.to_vec()),
            Row {
                tags: (nt, kt),
                sealed: Some(sealed),
                plain: Some(value.to_vec()),
            },
        );
        Ok(())
    }

    fn aux_remove(&mut self, ns: &str, key: &[u8]) -> Result<bool> {
        let present = self.read_record(ns, key)?.is_some();
        let s = &self.conn.inner.sealer;
        let tags = (s.name_tag(ns), s.key_tag(ns, key));
        self.pending.records.insert(
            (ns.to_owned(), key.to_vec()),
            Row {
                tags,
                sealed: None,
                plain: None,
            },
        );
        Ok(present)
    }

    fn aux_log_put(&mut self, ns: &str, seq: u64, value: &[u8]) -> Result<()> {
        let s = &self.conn.inner.sealer;
        let nt = s.name_tag(ns);
        let sealed = s.seal_log(&nt, i64_of(seq), value);
        self.pending.logs.insert(
            (ns.to_owned(), seq),
            Row {
                tags: (nt, [0; 16]),
                sealed: Some(sealed),
                plain: Some(value.to_vec()),
            },
        );
        Ok(())
    }

    fn aux_log_remove(&mut self, ns: &str, from: u64, upto: u64) -> Result<u64> {
        self.flush()?;
        let nt = self.conn.inner.sealer.name_tag(ns);
        self.conn.exec(
            "pruning a log",
            "DELETE FROM blazedb_logs WHERE db = $1 AND ns = $2 AND seq BETWEEN $3 AND $4",
            &[
                &self.conn.inner.name,
                &nt.as_slice(),
                &i64_of(from),
                &i64_of(upto),
            ],
        )
    }

    fn aux_log_range(&mut self, ns: &str, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        self.flush()?;
        self.conn.log_range(ns, after, limit)
    }

    fn signal_listeners(&mut self) {
        self.signal = true;
    }

    fn last_seq(&self) -> u64 {
        0
    }

    fn changes_after(&mut self, _after: u64, _limit: usize) -> Result<Vec<Change>> {
        Ok(Vec::new())
    }

    fn prune_changes(&mut self, _upto: u64, _max: usize) -> Result<u64> {
        Ok(0)
    }

    fn enable_change_capture(&mut self) -> Result<()> {
        Ok(()) // no local writes to capture
    }

    fn collections(&mut self) -> Result<Vec<String>> {
        self.flush()?;
        let rows = self.conn.rows(
            "listing collections",
            "SELECT DISTINCT ON (coll) coll, id, value FROM blazedb_docs WHERE db = $1",
            &[&self.conn.inner.name],
        )?;
        let mut names = Vec::with_capacity(rows.len());
        for r in &rows {
            let d = self.conn.open_doc_record(
                r.get::<_, &[u8]>(0),
                r.get::<_, &[u8]>(1),
                r.get::<_, &[u8]>(2),
            )?;
            names.push(d.collection);
        }
        names.sort();
        Ok(names)
    }

    fn all(&mut self, collection: &str) -> Result<Vec<Document>> {
        self.flush()?;
        let ct = self.conn.inner.sealer.name_tag(collection);
        let rows = self.conn.rows(
            "reading a collection",
            "SELECT id, value FROM blazedb_docs WHERE db = $1 AND coll = $2",
            &[&self.conn.inner.name, &ct.as_slice()],
        )?;
        let mut docs = rows
            .iter()
            .map(|r| {
                self.conn
                    .open_doc(&ct, r.get::<_, &[u8]>(0), r.get::<_, &[u8]>(1))
            })
            .collect::<Result<Vec<_>>>()?;
        docs.sort_by_key(|d| d.id);
        Ok(docs)
    }

    fn get(&mut self, collection: &str, id: DocId) -> Result<Option<Document>> {
        match pending::lookup(&self.pending.docs, &(collection.to_owned(), id)) {
            Some(decided) => Ok(decided.map(|fields| Document { id, fields })),
            None => self.conn.doc(collection, id),
        }
    }

    fn delete(&mut self, collection: &str, id: DocId) -> Result<()> {
        let s = &self.conn.inner.sealer;
        let tags = (s.name_tag(collection), s.key_tag(collection, id.as_bytes()));
        self.pending.docs.insert(
            (collection.to_owned(), id),
            Row {
                tags,
                sealed: None,
                plain: None,
            },
        );
        Ok(())
    }

    fn put_merged(&mut self, collection: &str, doc: Document) -> Result<Vec<IndexNote>> {
        let s = &self.conn.inner.sealer;
        let (ct, it) = (
            s.name_tag(collection),
            s.key_tag(collection, doc.id.as_bytes()),
        );
        let plain = postcard::to_allocvec(&DocRecord {
            collection: collection.to_owned(),
            id: *doc.id.as_bytes(),
            fields: doc.fields.clone(),
        })
        .map_err(|e| blazedb_core::Error::InvalidValue {
            reason: format!("encoding a document: {e}"),
        })?;
        let sealed = s.seal_doc(&ct, &it, &plain);
        self.pending.docs.insert(
            (collection.to_owned(), doc.id),
            Row {
                tags: (ct, it),
                sealed: Some(sealed),
                plain: Some(doc.fields),
            },
        );
        // No indexes here: a merged document never needs an index note.
        Ok(Vec::new())
    }
}
