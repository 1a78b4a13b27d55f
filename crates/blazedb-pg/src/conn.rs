//! What both kinds of transaction share: one connection lent by the pool, the reads
//! every transaction makes (a record, a namespace, a log range, a document), and the
//! failure flag that refuses a commit after a failed statement.

use std::cell::RefCell;

use blazedb_core::{DocId, Document, Fields, Result};
use serde::{Deserialize, Serialize};

use crate::pool::Lent;
use crate::{Inner, pg_error};

/// A merged document as sealed in `blazedb_docs`.
#[derive(Serialize, Deserialize)]
pub(crate) struct DocRecord {
    pub collection: String,
    pub id: [u8; 16],
    #[serde(with = "blazedb_engine::internal::serde_fields")]
    pub fields: Fields,
}

pub(crate) fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Reads shared by both kinds of transaction (a `RefCell` because `NodeRead` reads
/// through `&self` while a query needs the client mutably; one thread uses it).
pub(crate) struct Conn<'a> {
    pub inner: &'a Inner,
    pub client: RefCell<Lent<'a>>,
    /// A statement failed: Postgres aborted the transaction, so a `COMMIT` would
    /// silently roll back; it is refused instead.
    pub failed: std::cell::Cell<bool>,
}

impl Conn<'_> {
    pub(crate) fn record(&self, ns: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let s = &self.inner.sealer;
        let (nt, kt) = (s.name_tag(ns), s.key_tag(ns, key));
        let row = self.row(
            "reading a record",
            "SELECT value FROM blazedb_records WHERE db = $1 AND ns = $2 AND key = $3",
            &[&self.inner.name, &nt.as_slice(), &kt.as_slice()],
        )?;
        row.map(|r| {
            s.open_record(&nt, &kt, r.get::<_, &[u8]>(0))
                .map(|(_, v)| v)
        })
        .transpose()
    }

    pub(crate) fn scan(&self, ns: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let s = &self.inner.sealer;
        let nt = s.name_tag(ns);
        let rows = self.rows(
            "scanning records",
            "SELECT key, value FROM blazedb_records WHERE db = $1 AND ns = $2",
            &[&self.inner.name, &nt.as_slice()],
        )?;
        let mut out = rows
            .iter()
            .map(|r| s.open_record(&nt, r.get::<_, &[u8]>(0), r.get::<_, &[u8]>(1)))
            .collect::<Result<Vec<_>>>()?;
        out.sort();
        Ok(out)
    }

    pub(crate) fn log_range(
        &self,
        ns: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>> {
        let s = &self.inner.sealer;
        let nt = s.name_tag(ns);
        let rows = self.rows(
            "reading a log",
            "SELECT seq, value FROM blazedb_logs WHERE db = $1 AND ns = $2 AND seq > $3 \
                 ORDER BY seq LIMIT $4",
            &[
                &self.inner.name,
                &nt.as_slice(),
                &i64_of(after),
                &i64_of(limit as u64),
            ],
        )?;
        rows.iter()
            .map(|r| {
                let seq: i64 = r.get(0);
                Ok((u64_of(seq), s.open_log(&nt, seq, r.get::<_, &[u8]>(1))?))
            })
            .collect()
    }

    pub(crate) fn doc(&self, collection: &str, id: DocId) -> Result<Option<Document>> {
        let s = &self.inner.sealer;
        let (ct, it) = (s.name_tag(collection), s.key_tag(collection, id.as_bytes()));
        let row = self.row(
            "reading a document",
            "SELECT value FROM blazedb_docs WHERE db = $1 AND coll = $2 AND id = $3",
            &[&self.inner.name, &ct.as_slice(), &it.as_slice()],
        )?;
        row.map(|r| self.open_doc(&ct, &it, r.get::<_, &[u8]>(0)))
            .transpose()
    }

    pub(crate) fn open_doc(&self, coll: &[u8], id: &[u8], sealed: &[u8]) -> Result<Document> {
        let d = self.open_doc_record(coll, id, sealed)?;
        Ok(Document {
            id: DocId::from_bytes(d.id),
            fields: d.fields,
        })
    }

    pub(crate) fn open_doc_record(
        &self,
        coll: &[u8],
        id: &[u8],
        sealed: &[u8],
    ) -> Result<DocRecord> {
        let plain = self.inner.sealer.open_doc(coll, id, sealed)?;
        postcard::from_bytes(&plain).map_err(|_| blazedb_core::Error::Corruption {
            site: blazedb_core::CorruptionSite::Record { table: "postgres" },
            detail: "a document's layout".into(),
        })
    }

    pub(crate) fn exec(
        &self,
        context: &'static str,
        sql: &'static str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<u64> {
        let r = self.client.borrow_mut().execute(sql, params);
        self.check(context, r)
    }

    /// The rows of a query, recording a failure (see [`Conn::failed`]).
    pub(crate) fn rows(
        &self,
        context: &'static str,
        sql: &'static str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>> {
        let r = self.client.borrow_mut().query(sql, params);
        self.check(context, r)
    }

    /// The row of a query that returns at most one, recording a failure.
    pub(crate) fn row(
        &self,
        context: &'static str,
        sql: &'static str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Option<postgres::Row>> {
        let r = self.client.borrow_mut().query_opt(sql, params);
        self.check(context, r)
    }

    /// `r`, recording a failure (see [`Conn::failed`]).
    pub(crate) fn check<T>(
        &self,
        context: &'static str,
        r: std::result::Result<T, postgres::Error>,
    ) -> Result<T> {
        r.map_err(|e| {
            self.failed.set(true);
            pg_error(context, e)
        })
    }

    /// Ends the transaction without committing; a connection whose rollback failed
    /// does not go back to the pool (it may still be inside the transaction).
    pub(crate) fn rollback(&self) {
        let mut c = self.client.borrow_mut();
        if c.batch_execute("ROLLBACK").is_err() {
            c.discard();
        }
    }
}
