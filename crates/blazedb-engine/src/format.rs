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
    if old_format < DOCS_REWRITTEN_BELOW {
        let all = (Bound::Unbounded, Bound::Unbounded);
        move_records(vault, &mut w, Table::Docs, all, &err, |old, plain| {
            let doc = decode_doc(plain)?;
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
            // Sealed again even under the same key: format 3 may compress it.
            let resealed = vault.seal_record_in(RECORD_VERSION, Table::Docs, &new, plain);
            Ok(Some((new.to_vec(), resealed)))
        })?;
    }
    let tag = vault.doc_ns_tag();
    let upper = blazedb_storage::prefix_upper(&tag);
    let hi = upper.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
    let range = (Bound::Included(&tag[..]), hi);
    move_records(vault, &mut w, Table::Aux, range, &err, |old, plain| {
        let rec: AuxRecord<'_> = decode("aux", plain)?;
        if vault.aux_key_in(old_format, &tag, rec.key)[..] != old[..] {
            return Err(Error::corrupt_record(
                "aux",
                "record stored under another key's tag",
            ));
        }
        let new = vault.aux_key_in(RECORD_VERSION, &tag, rec.key);
        Ok((new[..] != old[..]).then(|| (new.to_vec(), vault.seal(Table::Aux, &new, plain))))
    })?;
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

/// Rewrites the records of `range` in `table`: each is opened under its key and given to
/// `rekey` (its key and plaintext), which checks it and returns its new key and sealed
/// value, or `None` to leave it as it is. The keys are collected first, so the moves do
/// not disturb the scan.
fn move_records(
    vault: &Vault,
    w: &mut blazedb_storage::WriteTx,
    table: Table,
    range: (Bound<&[u8]>, Bound<&[u8]>),
    err: &impl Fn(StorageError) -> Error,
    mut rekey: impl FnMut(&[u8], &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>>,
) -> Result<()> {
    let mut keys = Vec::new();
    w.scan(table, range, |k, _| {
        keys.push(k.to_vec());
        Ok::<_, StorageError>(ControlFlow::Continue(()))
    })
    .map_err(err)?;
    for old in keys {
        let sealed = w.get(table, &old).map_err(err)?.ok_or_else(|| {
            Error::corrupt_record(table.name(), "a record vanished during the upgrade")
        })?;
        let plain = vault.open_vec(table, &old, sealed)?;
        let Some((new, resealed)) = rekey(&old, &plain)? else {
            continue;
        };
        if new != old {
            w.remove(table, &old).map_err(err)?;
        }
        w.insert(table, &new, &resealed).map_err(err)?;
    }
    Ok(())
}
