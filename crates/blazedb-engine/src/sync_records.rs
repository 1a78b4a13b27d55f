//! The sync layer's own records beside the documents: auxiliary sealed records
//! (key-value namespaces and ordered logs, in storage table `aux`) and transactions
//! whose writes are not captured.
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

use crate::codec::{decode, encode_within};
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

/// The storage key of entry `seq` of auxiliary log `ns`: namespace tag ‖ seq (u64
/// big-endian). Unlike other auxiliary keys the position is plaintext, like the change
/// log's, so a range of a log is a range of keys; it reveals only how many entries the
/// log has had.
fn log_key(vault: &Vault, ns: &str, seq: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..16].copy_from_slice(&vault.aux_log_tag(ns));
    k[16..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Up to `limit` entries of log `ns` with position > `after`, in order.
pub(crate) fn aux_log_range(
    raw: &mut impl Raw,
    vault: &Vault,
    ns: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<(u64, Vec<u8>)>> {
    check_name(NameKind::Collection, ns)?;
    let mut out = Vec::new();
    let Some(from) = after.checked_add(1) else {
        return Ok(out);
    };
    if limit == 0 {
        return Ok(out);
    }
    let lo = log_key(vault, ns, from);
    let hi = prefix_upper(&lo[..16]);
    let hi = hi.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
    raw.raw_scan(Table::Aux, Bound::Included(&lo), hi, &mut |k, v| {
        let seq = k
            .get(16..)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| blazedb_core::Error::corrupt_record("aux", "log key is malformed"))?;
        out.push((seq, vault.open(Table::Aux, k, v)?));
        Ok(if out.len() >= limit {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    })?;
    Ok(out)
}

/// The position of the newest entry of log `ns`, if any.
pub(crate) fn aux_log_last(raw: &mut impl Raw, vault: &Vault, ns: &str) -> Result<Option<u64>> {
    check_name(NameKind::Collection, ns)?;
    let lo = log_key(vault, ns, 0);
    let hi = prefix_upper(&lo[..16]);
    let hi = hi.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
    let last = raw
        .raw_last_key(Table::Aux, Bound::Included(&lo), hi)
        .map_err(|e| crate::raw::storage_err(e, std::path::Path::new("")))?;
    last.map(|k| {
        k.get(16..)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| blazedb_core::Error::corrupt_record("aux", "log key is malformed"))
    })
    .transpose()
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
    /// [`blazedb_core::Error::InvalidName`] for a bad namespace;
    /// [`blazedb_core::Error::TooLarge`] beyond
    /// [`blazedb_core::limits::AUX_RECORD_BYTES_MAX`]; storage errors.
    pub fn aux_put(&mut self, ns: &str, key: &[u8], value: &[u8]) -> Result<()> {
        check_name(NameKind::Collection, ns)?;
        let vault = &self.db().inner.vault;
        let k = vault.aux_key(&vault.aux_ns_tag(ns), key);
        let bytes = encode_within(
            "aux record",
            &AuxRecord { key, value },
            blazedb_core::limits::AUX_RECORD_BYTES_MAX,
        )?;
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

impl WriteTxn<'_> {
    /// Stores entry `seq` of auxiliary log `ns` (an ordered, sealed sequence of records,
    /// for the sync layer's logs). Replaces an entry already at `seq`.
    ///
    /// # Errors
    /// [`blazedb_core::Error::InvalidName`] for a bad namespace; storage errors.
    pub fn aux_log_put(&mut self, ns: &str, seq: u64, value: &[u8]) -> Result<()> {
        check_name(NameKind::Collection, ns)?;
        let vault = &self.db().inner.vault;
        let k = log_key(vault, ns, seq);
        let sealed = vault.seal(Table::Aux, &k, value);
        self.mutate_pub(|tx| tx.insert(Table::Aux, &k, &sealed))
    }

    /// Removes the entries of log `ns` with positions in `from..=upto`; returns how many
    /// were present. The caller bounds the range: each position is one removal.
    ///
    /// # Errors
    /// As [`WriteTxn::aux_log_put`].
    pub fn aux_log_remove(&mut self, ns: &str, from: u64, upto: u64) -> Result<u64> {
        check_name(NameKind::Collection, ns)?;
        let vault = &self.db().inner.vault;
        let keys: Vec<[u8; 24]> = (from..=upto).map(|s| log_key(vault, ns, s)).collect();
        let mut removed = 0;
        self.mutate_pub(|tx| {
            for k in &keys {
                if tx.remove(Table::Aux, k)? {
                    removed += 1;
                }
            }
            Ok(())
        })?;
        Ok(removed)
    }

    /// Up to `limit` entries of log `ns` after position `after`, as this transaction sees
    /// them.
    ///
    /// # Errors
    /// As [`WriteTxn::aux_log_put`]; [`blazedb_core::Error::Corruption`].
    pub fn aux_log_range(
        &mut self,
        ns: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>> {
        let vault = &self.db().inner.vault;
        aux_log_range(self.raw(), vault, ns, after, limit)
    }

    /// The newest position of log `ns`, as this transaction sees it.
    ///
    /// # Errors
    /// As [`WriteTxn::aux_log_range`].
    pub fn aux_log_last(&mut self, ns: &str) -> Result<Option<u64>> {
        let vault = &self.db().inner.vault;
        aux_log_last(self.raw(), vault, ns)
    }
}

impl ReadTxn {
    /// Up to `limit` entries of auxiliary log `ns` after position `after`, in order.
    ///
    /// # Errors
    /// As [`WriteTxn::aux_log_range`].
    pub fn aux_log_range(&self, ns: &str, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        aux_log_range(&mut self.raw(), &self.db().inner.vault, ns, after, limit)
    }

    /// The newest position of auxiliary log `ns`.
    ///
    /// # Errors
    /// As [`WriteTxn::aux_log_range`].
    pub fn aux_log_last(&self, ns: &str) -> Result<Option<u64>> {
        aux_log_last(&mut self.raw(), &self.db().inner.vault, ns)
    }

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
