//! Reading sealed records, shared by read and write transactions.

use std::any::Any;
use std::ops::{Bound, ControlFlow};
use std::path::Path;
use std::sync::Arc;

use blazedb_core::{CorruptionSite, DocId, Document, Error, Result};
use blazedb_storage::{ReadTx, StorageError, Table, WriteTx, prefix_upper};

use crate::codec::{CatalogRecord, decode, decode_doc};
use crate::vault::{CollTag, Vault};

/// Maps a storage error to the public error type.
pub(crate) fn storage_err(e: StorageError, path: &Path) -> Error {
    match e {
        StorageError::AlreadyOpen => Error::AlreadyOpen {
            path: path.to_owned(),
        },
        StorageError::Corrupted(detail) => Error::Corruption {
            site: CorruptionSite::Storage,
            detail,
        },
        StorageError::ValueTooLarge(size) => Error::TooLarge {
            what: "stored value",
            size,
            max: u32::MAX as usize,
        },
        StorageError::Failed(reason) => Error::Failed { reason },
        StorageError::NestedWrite => Error::TransactionInProgress,
        StorageError::ReadOnly => Error::ReadOnly {
            path: path.to_owned(),
        },
        StorageError::NeedsRecovery => Error::Failed {
            reason: "the data file needs crash recovery".into(),
        },
        StorageError::Io(source) => Error::Io {
            context: "accessing the data file",
            source,
        },
        other => Error::Failed {
            reason: other.to_string(),
        },
    }
}

/// A scan visitor over raw `(key, sealed value)` pairs.
pub(crate) type Visitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<ControlFlow<()>> + 'a;

/// Byte-level access to the tables, for either kind of transaction.
pub(crate) trait Raw: RawCached {
    fn raw_get(&mut self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// Runs `f` on the sealed value under `key` (in place where the transaction allows);
    /// `false` if there is none. Storage errors name `path`.
    fn raw_get_with(
        &mut self,
        t: Table,
        key: &[u8],
        path: &Path,
        f: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<bool>;
    fn raw_scan(
        &mut self,
        t: Table,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        f: &mut Visitor<'_>,
    ) -> Result<()>;
    /// The largest key inside the range, if any (no value is decrypted).
    fn raw_last_key(
        &mut self,
        t: Table,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
    ) -> Result<Option<Vec<u8>>, StorageError>;
}

/// Lets `Error` carry storage errors out of a scan callback.
pub(crate) struct ScanErr(pub Error);

impl From<StorageError> for ScanErr {
    fn from(e: StorageError) -> Self {
        ScanErr(storage_err(e, Path::new("")))
    }
}

/// Both transaction kinds expose the same `get` and `scan`; one implementation serves.
macro_rules! impl_raw {
    ($($t:ty),*) => {$(
        impl Raw for $t {
            fn raw_get(&mut self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
                self.get(t, key)
            }
            fn raw_get_with(&mut self, t: Table, key: &[u8], path: &Path, f: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<bool> {
                match self.get_with(t, key, f).map_err(|e| storage_err(e, path))? {
                    Some(r) => r.map(|()| true),
                    None => Ok(false),
                }
            }
            fn raw_scan(&mut self, t: Table, lo: Bound<&[u8]>, hi: Bound<&[u8]>, f: &mut Visitor<'_>) -> Result<()> {
                self.scan(t, (lo, hi), |k, v| f(k, v).map_err(ScanErr)).map_err(|e| e.0)
            }
            fn raw_last_key(&mut self, t: Table, lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> Result<Option<Vec<u8>>, StorageError> {
                Ok(self.last_in(t, (lo, hi))?.map(|(k, _)| k))
            }
        }
    )*};
}

impl_raw!(&ReadTx, WriteTx<'_>);

/// Cached reads, for each transaction kind (part of [`Raw`]; apart from it because the
/// two kinds differ here).
pub(crate) trait RawCached {
    /// What `decode` makes of the sealed value under `key`: from the store's cache of
    /// decoded values in a read transaction (`ReadTx::get_cached`: index nodes), decoded
    /// now in a write transaction (which sees its own writes). `decode` returns the value
    /// and about how many bytes it holds; it must depend on the sealed bytes alone.
    /// Storage errors name no path: a lookup's cannot be one that does (see
    /// `storage_err`), as in `raw_scan`.
    fn raw_get_cached<T: Any + Send + Sync>(
        &mut self,
        t: Table,
        key: &[u8],
        decode: impl FnOnce(&[u8]) -> Result<(T, usize)>,
    ) -> Result<Option<Arc<T>>>;
}

impl RawCached for &ReadTx {
    fn raw_get_cached<T: Any + Send + Sync>(
        &mut self,
        t: Table,
        key: &[u8],
        decode: impl FnOnce(&[u8]) -> Result<(T, usize)>,
    ) -> Result<Option<Arc<T>>> {
        self.get_cached(t, key, |v| decode(v).map_err(ScanErr))
            .map_err(|e| e.0)
    }
}

impl RawCached for WriteTx<'_> {
    fn raw_get_cached<T: Any + Send + Sync>(
        &mut self,
        t: Table,
        key: &[u8],
        decode: impl FnOnce(&[u8]) -> Result<(T, usize)>,
    ) -> Result<Option<Arc<T>>> {
        match self
            .get_with(t, key, decode)
            .map_err(|e| storage_err(e, Path::new("")))?
        {
            Some(decoded) => Ok(Some(Arc::new(decoded?.0))),
            None => Ok(None),
        }
    }
}

/// Reads and authenticates document `id` of the collection tagged `coll`.
pub(crate) fn get_doc(
    raw: &mut impl Raw,
    vault: &Vault,
    coll: &CollTag,
    id: DocId,
    path: &Path,
) -> Result<Option<Document>> {
    let key = vault.doc_key(coll, id);
    let mut plain = Vec::new();
    let found = raw.raw_get_with(Table::Docs, &key, path, &mut |sealed| {
        vault.open_into(Table::Docs, &key, sealed, &mut plain)
    })?;
    if !found {
        return Ok(None);
    }
    let doc = decode_doc(&plain)?;
    if doc.id != id {
        return Err(Error::corrupt_record(
            "docs",
            "document stored under another id's key",
        ));
    }
    Ok(Some(doc))
}

/// Visits every document of the collection tagged `coll` in storage order until `f`
/// breaks: by creation time for UUIDv7 ids in format 2, random in format 1 (see
/// `KeyLayout`); callers that need an order sort.
pub(crate) fn scan_docs(
    raw: &mut impl Raw,
    vault: &Vault,
    coll: &CollTag,
    f: &mut dyn FnMut(Document) -> Result<ControlFlow<()>>,
) -> Result<()> {
    scan_doc_records(raw, vault, coll, &mut |plain| f(decode_doc(plain)?))
}

/// Like [`scan_docs`], handing `f` each document's record opened but not decoded (for
/// `codec::decode_doc_only`: a caller that needs a few fields decodes only those).
pub(crate) fn scan_doc_records(
    raw: &mut impl Raw,
    vault: &Vault,
    coll: &CollTag,
    f: &mut dyn FnMut(&[u8]) -> Result<ControlFlow<()>>,
) -> Result<()> {
    let upper = prefix_upper(coll);
    let hi = upper.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
    // No id check as `get_doc` makes: recomputing each key (an HMAC) cost 8 % of a scan,
    // and it cannot fail for a value that opens. The value is authenticated with its key
    // as associated data, and only the engine, which stores a document under its own
    // id's key alone, can seal one (docs/format.md, *Sealed values*).
    let mut plain = Vec::new();
    raw.raw_scan(Table::Docs, Bound::Included(coll), hi, &mut |k, v| {
        vault.open_into(Table::Docs, k, v, &mut plain)?;
        f(&plain)
    })
}

/// Names of every collection in the catalog, sorted.
pub(crate) fn collection_names(raw: &mut impl Raw, vault: &Vault) -> Result<Vec<String>> {
    let mut names = Vec::new();
    raw.raw_scan(
        Table::Catalog,
        Bound::Unbounded,
        Bound::Unbounded,
        &mut |k, v| {
            let rec: CatalogRecord = decode("catalog", &vault.open(Table::Catalog, k, v)?)?;
            if vault.coll_tag(&rec.name) != k {
                return Err(Error::corrupt_record(
                    "catalog",
                    "collection stored under another name's tag",
                ));
            }
            names.push(rec.name);
            Ok(ControlFlow::Continue(()))
        },
    )?;
    names.sort();
    Ok(names)
}

/// Number of stored documents of the collection tagged `coll`, counted by key without
/// decrypting (for estimates only: keys are not authenticated).
pub(crate) fn count_doc_keys(raw: &mut impl Raw, coll: &CollTag) -> Result<u64> {
    let upper = prefix_upper(coll);
    let hi = upper.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
    let mut n = 0;
    raw.raw_scan(Table::Docs, Bound::Included(coll), hi, &mut |_, _| {
        n += 1;
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(n)
}
