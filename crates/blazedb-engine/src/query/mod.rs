//! Queries: filters, sort, limit/offset, count and explain, run in a snapshot.
//!
//! - [`filter`]: [`FieldPath`], [`Filter`] and their semantics.
//! - [`order`]: the total order over values.
//!
//! Results are deterministic: ordered by the sort keys, then by document id.

pub mod filter;
pub(crate) mod keyenc;
pub mod order;
pub(crate) mod plan;

use std::cmp::Ordering;
use std::fmt;
use std::ops::ControlFlow;

use blazedb_core::name::check_name;
use blazedb_core::{Document, NameKind, Result};

pub use filter::{Cmp, FieldPath, Filter};

/// Sort direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

/// A query on one collection.
///
/// ```
/// # fn main() -> blazedb::Result<()> {
/// use blazedb::{Filter, Order, Query};
/// let q = Query::new("bugs")
///     .filter(Filter::and([Filter::eq("status", "open")?, Filter::ge("severity", 2i64)?]))
///     .sort("severity", Order::Desc)?
///     .limit(10);
/// # let _ = q; Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub(crate) collection: String,
    pub(crate) filter: Option<Filter>,
    pub(crate) sort: Vec<(FieldPath, Order)>,
    pub(crate) limit: Option<usize>,
    pub(crate) offset: usize,
}

impl Query {
    /// All documents of `collection`.
    #[must_use]
    pub fn new(collection: &str) -> Query {
        Query {
            collection: collection.to_owned(),
            filter: None,
            sort: Vec::new(),
            limit: None,
            offset: 0,
        }
    }

    /// Keeps only matching documents (replaces an earlier filter).
    #[must_use]
    pub fn filter(mut self, filter: Filter) -> Query {
        self.filter = Some(filter);
        self
    }

    /// Adds a sort key (earlier keys take precedence).
    ///
    /// # Errors
    /// [`blazedb_core::Error::InvalidName`] for a bad path.
    pub fn sort(mut self, path: &str, order: Order) -> Result<Query> {
        self.sort.push((FieldPath::parse(path)?, order));
        Ok(self)
    }

    /// Returns at most `n` documents.
    #[must_use]
    pub fn limit(mut self, n: usize) -> Query {
        self.limit = Some(n);
        self
    }

    /// Skips the first `n` documents of the ordered result.
    #[must_use]
    pub fn offset(mut self, n: usize) -> Query {
        self.offset = n;
        self
    }

    /// The collection queried.
    #[must_use]
    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// The filter the documents must match, if any (the last [`Query::filter`] given).
    #[must_use]
    pub fn current_filter(&self) -> Option<&Filter> {
        self.filter.as_ref()
    }

    pub(crate) fn validate(&self) -> Result<()> {
        check_name(NameKind::Collection, &self.collection)?;
        self.filter.as_ref().map_or(Ok(()), Filter::validate)
    }

    /// Orders two documents by the sort keys, then by id.
    pub(crate) fn cmp_docs(&self, a: &Document, b: &Document) -> Ordering {
        for (path, order) in &self.sort {
            let o = order::cmp_opt(path.lookup(a), path.lookup(b));
            let o = if *order == Order::Desc {
                o.reverse()
            } else {
                o
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        a.id.cmp(&b.id)
    }

    pub(crate) fn matches(&self, doc: &Document) -> bool {
        self.filter.as_ref().is_none_or(|f| f.matches(doc))
    }

    /// Orders `docs` and applies offset and limit.
    pub(crate) fn finish(&self, mut docs: Vec<Document>) -> Vec<Document> {
        let keep = self.limit.map(|l| self.offset.saturating_add(l));
        if let Some(k) = keep
            && k < docs.len()
        {
            if k == 0 {
                return Vec::new();
            }
            docs.select_nth_unstable_by(k - 1, |a, b| self.cmp_docs(a, b));
            docs.truncate(k);
        }
        docs.sort_by(|a, b| self.cmp_docs(a, b));
        docs.drain(..self.offset.min(docs.len()));
        docs
    }
}

/// How a query will be executed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Every document of the collection is read and filtered.
    FullScan,
    /// Documents are found through a secondary index; the rest of the filter is checked
    /// on each.
    Index { name: String, bounds: String },
}

/// The chosen plan and its estimate (see [`crate::ReadTxn::explain`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub collection: String,
    pub access: Access,
    /// Documents the access path is expected to read.
    pub estimated_reads: u64,
    /// Whether results are sorted after filtering (no index provides the order).
    pub sort_in_memory: bool,
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.access {
            Access::FullScan => write!(f, "full scan of '{}'", self.collection)?,
            Access::Index { name, bounds } => {
                write!(f, "index '{name}' on '{}' {bounds}", self.collection)?
            }
        }
        write!(f, ", ~{} documents read", self.estimated_reads)?;
        if self.sort_in_memory {
            f.write_str(", sorted in memory")?;
        }
        Ok(())
    }
}

/// Runs `q` as a full scan over `scan`, which visits the opened record of every document
/// of the collection.
pub(crate) fn run_scan(q: &Query, scan: RecordScan<'_>) -> Result<Vec<Document>> {
    let mut hits = Vec::new();
    scan_matches(q, scan, &mut |plain| {
        hits.push(crate::codec::decode_doc(plain)?);
        Ok(())
    })?;
    Ok(q.finish(hits))
}

/// What a full scan of `q` would return, counted: the matches, less the offset, at most
/// the limit. No document is decoded beyond the fields the filter reads.
pub(crate) fn count_scan(q: &Query, scan: RecordScan<'_>) -> Result<u64> {
    let mut n = 0u64;
    scan_matches(q, scan, &mut |_| {
        n += 1;
        Ok(())
    })?;
    let n = n.saturating_sub(q.offset as u64);
    Ok(q.limit.map_or(n, |l| n.min(l as u64)))
}

/// A visit of the opened record of every document of a collection.
pub(crate) type RecordScan<'a> =
    &'a mut dyn FnMut(&mut dyn FnMut(&[u8]) -> Result<ControlFlow<()>>) -> Result<()>;

/// Calls `hit` with the record of every document that matches `q`'s filter. With a
/// filter, each record is first decoded only as far as the fields the filter reads.
fn scan_matches(
    q: &Query,
    scan: RecordScan<'_>,
    hit: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let mut tops = Vec::new();
    if let Some(f) = &q.filter {
        f.top_fields(&mut tops);
    }
    tops.sort_unstable();
    tops.dedup();
    scan(&mut |plain| {
        let matched = match &q.filter {
            None => true,
            Some(f) => f.matches(&crate::codec::decode_doc_only(plain, Some(&tops))?),
        };
        if matched {
            hit(plain)?;
        }
        Ok(ControlFlow::Continue(()))
    })
}

impl crate::Database {
    /// Runs a query in a fresh snapshot. See [`crate::ReadTxn::query`].
    ///
    ///
    /// ```
    /// # fn main() -> blazedb::Result<()> {
    /// use blazedb::{Database, Document, Filter, KdfParams, Order, Query};
    ///
    /// let dir = tempfile::tempdir().expect("tempdir");
    /// let db = Database::builder()
    ///     .kdf(KdfParams::INSECURE_FAST)
    ///     .open(dir.path(), "tracker", "password")?;
    /// for severity in 0..10i64 {
    ///     db.collection("bugs").insert(Document::new().with("severity", severity))?;
    /// }
    /// let q = Query::new("bugs")
    ///     .filter(Filter::gt("severity", 6i64)?)
    ///     .sort("severity", Order::Desc)?;
    /// let worst = db.query(&q)?;
    /// assert_eq!(worst.len(), 3);
    /// assert_eq!(worst[0].get("severity"), Some(&9i64.into()));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`crate::ReadTxn::query`].
    pub fn query(&self, q: &Query) -> Result<Vec<Document>> {
        self.begin_read()?.query(q)
    }

    /// Counts what a query returns. See [`crate::ReadTxn::count_query`].
    ///
    /// # Errors
    /// As [`crate::ReadTxn::query`].
    pub fn count_query(&self, q: &Query) -> Result<u64> {
        self.begin_read()?.count_query(q)
    }

    /// The plan of a query. See [`crate::ReadTxn::explain`].
    ///
    /// # Errors
    /// As [`crate::ReadTxn::query`].
    pub fn explain(&self, q: &Query) -> Result<Plan> {
        self.begin_read()?.explain(q)
    }

    /// Creates and fills an index in its own transaction (all or nothing).
    ///
    ///
    /// ```
    /// # fn main() -> blazedb::Result<()> {
    /// use blazedb::{Database, Document, Filter, IndexSpec, KdfParams, Query};
    ///
    /// let dir = tempfile::tempdir().expect("tempdir");
    /// let db = Database::builder()
    ///     .kdf(KdfParams::INSECURE_FAST)
    ///     .open(dir.path(), "people", "password")?;
    /// db.collection("people").insert(Document::new().with("email", "ann@example.com"))?;
    /// db.create_index(&IndexSpec::new("by_email", "people", &["email"]).unique())?;
    /// // A second document with the same email is refused, and nothing is written.
    /// let dup = db.collection("people").insert(Document::new().with("email", "ann@example.com"));
    /// assert!(dup.is_err());
    /// // Equality on the indexed field is answered from the index.
    /// let q = Query::new("people").filter(Filter::eq("email", "ann@example.com")?);
    /// assert_eq!(db.count_query(&q)?, 1);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`crate::WriteTxn::create_index`].
    pub fn create_index(&self, spec: &crate::IndexSpec) -> Result<crate::IndexInfo> {
        let mut tx = self.begin_write()?;
        let info = tx.create_index(spec)?;
        tx.commit()?;
        Ok(info)
    }

    /// Drops an index; returns whether it existed.
    ///
    /// # Errors
    /// Storage errors.
    pub fn drop_index(&self, name: &str) -> Result<bool> {
        let mut tx = self.begin_write()?;
        let existed = tx.drop_index(name)?;
        tx.commit()?;
        Ok(existed)
    }
}
