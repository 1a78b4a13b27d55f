//! The format record (`meta/format`): making it, checking it at open, and moving a
//! database written in an earlier format to the current one (run by
//! [`Database::compact`](crate::Database::compact), which holds the only handle).
//!
//! Format 1 → 4: document keys go from hashed (random order) to ordered by the id's time
//! (`KeyLayout`). Format 2 → 4: documents are sealed again as format 3 and later write
//! them, compressed where that makes them smaller (`Vault::seal_record`). Every
//! document's value is sealed to its key, so each is opened under its old key, checked
//! (its id must give that key), sealed again under its new key, and moved. Format 3 → 4
//! (and the earlier ones): the per-document auxiliary records (`DOC_NS`) move from
//! hashed keys to keys ordered like their documents, each opened, checked and sealed
//! again the same way. Then the format record says 4. All in one transaction: after a
//! crash the database is wholly in its old format or wholly in format 4. Index entries,
//! change-log entries and auxiliary logs name documents by id, not by storage key, and
//! stay as they are (later formats read change entries of either kind).

use std::ops::{Bound, ControlFlow};

use blazedb_core::{CorruptionSite, Error, Result};
use blazedb_storage::{StorageError, Table};

use crate::codec::{FormatRecord, RECORD_VERSION, decode, decode_doc, encode};
use crate::handle::Inner;
use crate::raw::storage_err;
use crate::sync_records::AuxRecord;
use crate::vault::{COLL_TAG_LEN, CollTag, KeyLayout, Vault};

/// The format versions whose documents are rewritten by the upgrade (hashed keys, or
/// no compressed records).
const DOCS_REWRITTEN_BELOW: u32 = 3;

pub(crate) const META_FORMAT: &[u8] = b"format";

/// Rewrites every document into the current format and marks the format current. Does
/// nothing for a database already in it.
pub(crate) fn to_current_format(inner: &Inner) -> Result<()> {
    let vault = &inner.vault;
    if vault.format() == RECORD_VERSION {
        return Ok(());
    }
    let old_format = vault.format();
    let old_layout = vault.layout();
    let path = &inner.path;
    let err = |e: StorageError| storage_err(e, path);
    let mut w = inner.store.write().map_err(err)?;
    let mut keys = Vec::new();
    if old_format < DOCS_REWRITTEN_BELOW {
        w.scan(Table::Docs, (Bound::Unbounded, Bound::Unbounded), |k, _| {
            keys.push(k.to_vec());
            Ok::<_, StorageError>(ControlFlow::Continue(()))
        })
        .map_err(err)?;
    }
    for old in keys {
        let sealed = w.get(Table::Docs, &old).map_err(err)?.ok_or_else(|| {
            Error::corrupt_record("docs", "a document vanished during the upgrade")
        })?;
        let plain = vault.open_vec(Table::Docs, &old, sealed)?;
        let doc = decode_doc(&plain)?;
        let coll: CollTag = old
            .get(..COLL_TAG_LEN)
            .and_then(|c| c.try_into().ok())
            .ok_or_else(|| Error::corrupt_record("docs", "document key too short"))?;
        if vault.doc_key_in(old_layout, &coll, doc.id)[..] != old[..] {
            return Err(Error::corrupt_record(
                "docs",
                "document stored under another id's key",
            ));
        }
        let new = vault.doc_key_in(KeyLayout::Ordered, &coll, doc.id);
        let resealed = vault.seal_record_in(RECORD_VERSION, Table::Docs, &new, &plain);
        if new[..] != old[..] {
            w.remove(Table::Docs, &old).map_err(err)?;
        }
        w.insert(Table::Docs, &new, &resealed).map_err(err)?;
    }
    rekey_doc_aux(vault, &mut w, old_format, err)?;
    let db_id = inner
        .keyfile
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .db_id;
    w.insert(
        Table::Meta,
        META_FORMAT,
        &sealed_format_record(vault, db_id)?,
    )
    .map_err(err)?;
    w.commit(true).map_err(err)?;
    vault.set_format(RECORD_VERSION);
    Ok(())
}

/// The identity record of the current format, sealed for `meta/format`.
pub(crate) fn sealed_format_record(vault: &Vault, db_id: [u8; 16]) -> Result<Vec<u8>> {
    let rec = encode(
        "format record",
        &FormatRecord {
            version: RECORD_VERSION,
            db_id,
        },
    )?;
    Ok(vault.seal(Table::Meta, META_FORMAT, &rec))
}

/// Checks the identity record read from a data file against the key file's database id;
/// returns its format version.
pub(crate) fn verify_format(vault: &Vault, db_id: [u8; 16], sealed: Option<&[u8]>) -> Result<u32> {
    let sealed = sealed.ok_or_else(|| Error::Corruption {
        site: CorruptionSite::Record { table: "meta" },
        detail: "format record missing".into(),
    })?;
    let plain = vault
        .open(Table::Meta, META_FORMAT, sealed)
        .map_err(|_| Error::Corruption {
            site: CorruptionSite::KeyMismatch,
            detail: "the format record does not open with this key file's key".into(),
        })?;
    let rec: FormatRecord = decode("meta", &plain)?;
    if !(1..=RECORD_VERSION).contains(&rec.version) {
        return Err(Error::UnsupportedFormat {
            what: "data file",
            found: rec.version,
            supported: RECORD_VERSION,
        });
    }
    if rec.db_id != db_id {
        return Err(Error::Corruption {
            site: CorruptionSite::KeyMismatch,
            detail: "database ids of key file and data file differ".into(),
        });
    }
    Ok(rec.version)
}

/// Moves every per-document auxiliary record from its key in format `old_format` to
/// its key in the current one (a no-op where the two agree): opened under the old key,
/// checked (its record key must give that storage key), sealed again under the new.
fn rekey_doc_aux(
    vault: &Vault,
    w: &mut blazedb_storage::WriteTx,
    old_format: u32,
    err: impl Fn(StorageError) -> Error,
) -> Result<()> {
    let tag = vault.doc_ns_tag();
    let upper = blazedb_storage::prefix_upper(&tag);
    let hi = upper.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
    let mut keys = Vec::new();
    w.scan(Table::Aux, (Bound::Included(&tag[..]), hi), |k, _| {
        keys.push(k.to_vec());
        Ok::<_, StorageError>(ControlFlow::Continue(()))
    })
    .map_err(&err)?;
    for old in keys {
        let sealed = w
            .get(Table::Aux, &old)
            .map_err(&err)?
            .ok_or_else(|| Error::corrupt_record("aux", "a record vanished during the upgrade"))?;
        let plain = vault.open_vec(Table::Aux, &old, sealed)?;
        let rec: AuxRecord<'_> = decode("aux", &plain)?;
        if vault.aux_key_in(old_format, &tag, rec.key)[..] != old[..] {
            return Err(Error::corrupt_record(
                "aux",
                "record stored under another key's tag",
            ));
        }
        let new = vault.aux_key_in(RECORD_VERSION, &tag, rec.key);
        if new[..] == old[..] {
            continue;
        }
        let resealed = vault.seal(Table::Aux, &new, &plain);
        w.remove(Table::Aux, &old).map_err(&err)?;
        w.insert(Table::Aux, &new, &resealed).map_err(&err)?;
    }
    Ok(())
}
