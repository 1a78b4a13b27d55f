//! Hooks for the layers above the engine (sync, indexes): auxiliary sealed records and
//! transactions whose writes are not captured.
//!
//! Auxiliary records live in named namespaces. Their keys are stored as keyed tags and
//! their keys and values sealed together, so like everything else they reveal nothing
//! but their count and size bucket. They commit atomically with the documents written in
//! the same transaction: a remote change and the sync state it advances (stamps,
//! cursors) are applied together or not at all.

use std::ops::{Bound, ControlFlow};

use blazedb_core::name::check_name;
use blazedb_core::{NameKind, Result};
use blazedb_storage::{Table, prefix_upper};
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::database::Database;
use crate::raw::Raw;
use crate::txn::{ReadTxn, WriteTxn};
use crate::vault::Vault;

#[derive(Serialize, Deserialize)]
struct AuxRecord<'a> {
    #[serde(borrow)]
    key: &'a [u8],
    #[serde(borrow)]
    value: &'a [u8],
}

pub(crate) fn aux_get(
    raw: &mut impl Raw,
    vault: &Vault,
    ns: &str,
    key: &[u8],
    db: &Database,
) -> Result<Option<Vec<u8>>> {
    check_name(NameKind::Collection, ns)?;
    let k = vault.aux_key(&vault.aux_ns_tag(ns), key);
    let Some(sealed) = raw.raw_get(Table::Aux, &k).map_err(|e| db.storage_err(e))? else {
        return Ok(None);
    };
    let plain = vault.open(Table::Aux, &k, &sealed)?;
    let rec: AuxRecord<'_> = decode("aux", &plain)?;
    if rec.key != key {
        return Err(blazedb_core::Error::corrupt_record(
            "aux",
            "record stored under another key's tag",
        ));
    }
    Ok(Some(rec.value.to_vec()))
}

pub(crate) fn aux_scan(
    raw: &mut impl Raw,
    vault: &Vault,
    ns: &str,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    check_name(NameKind::Collection, ns)?;
    let tag = vault.aux_ns_tag(ns);
    let upper = prefix_upper(&tag);
    let hi = upper.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
    let mut out = Vec::new();
    raw.raw_scan(Table::Aux, Bound::Included(&tag), hi, &mut |k, v| {
        let plain = vault.open(Table::Aux, k, v)?;
        let rec: AuxRecord<'_> = decode("aux", &plain)?;
        if vault.aux_key(&tag, rec.key) != k {
            return Err(blazedb_core::Error::corrupt_record(
                "aux",
                "record stored under another key's tag",
            ));
        }
        out.push((rec.key.to_vec(), rec.value.to_vec()));
        Ok(ControlFlow::Continue(()))
    })?;
    out.sort();
    Ok(out)
}

impl Database {
    /// For the sync layer: a write transaction whose document writes are **not** captured
    /// in the change log (they are remote changes being applied, and must not echo).
    ///
    /// # Errors
    /// As [`Database::begin_write`].
    pub fn begin_apply(&self) -> Result<WriteTxn<'_>> {
        WriteTxn::begin(self, false)
    }
}

impl WriteTxn<'_> {
    /// Stores `value` under `key` in auxiliary namespace `ns` (a collection-style name).
    ///
    /// # Errors
    /// [`blazedb_core::Error::InvalidName`] for a bad namespace; storage errors.
    pub fn aux_put(&mut self, ns: &str, key: &[u8], value: &[u8]) -> Result<()> {
        check_name(NameKind::Collection, ns)?;
        let vault = &self.db().inner.vault;
        let k = vault.aux_key(&vault.aux_ns_tag(ns), key);
        let bytes = encode("aux record", &AuxRecord { key, value })?;
        let sealed = vault.seal(Table::Aux, &k, &bytes);
        self.mutate_pub(|tx| tx.insert(Table::Aux, &k, &sealed))
    }

    /// Removes `key` from namespace `ns`; returns whether it was present.
    ///
    /// # Errors
    /// As [`WriteTxn::aux_put`].
    pub fn aux_remove(&mut self, ns: &str, key: &[u8]) -> Result<bool> {
        check_name(NameKind::Collection, ns)?;
        let vault = &self.db().inner.vault;
        let k = vault.aux_key(&vault.aux_ns_tag(ns), key);
        let mut present = false;
        self.mutate_pub(|tx| {
            present = tx.remove(Table::Aux, &k)?;
            Ok(())
        })?;
        Ok(present)
    }

    /// The value under `key` in namespace `ns`, as this transaction sees it.
    ///
    /// # Errors
    /// As [`WriteTxn::aux_put`]; [`blazedb_core::Error::Corruption`].
    pub fn aux_get(&mut self, ns: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let db = self.db();
        aux_get(self.raw(), &db.inner.vault, ns, key, db)
    }

    /// Every `(key, value)` of namespace `ns`, sorted by key.
    ///
    /// # Errors
    /// As [`WriteTxn::aux_get`].
    pub fn aux_scan(&mut self, ns: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let db = self.db();
        aux_scan(self.raw(), &db.inner.vault, ns)
    }
}

impl ReadTxn {
    /// The value under `key` in auxiliary namespace `ns`.
    ///
    /// # Errors
    /// As [`WriteTxn::aux_get`].
    pub fn aux_get(&self, ns: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let db = self.db();
        aux_get(&mut self.raw(), &db.inner.vault, ns, key, db)
    }

    /// Every `(key, value)` of namespace `ns`, sorted by key.
    ///
    /// # Errors
    /// As [`WriteTxn::aux_get`].
    pub fn aux_scan(&self, ns: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        aux_scan(&mut self.raw(), &self.db().inner.vault, ns)
    }
}
