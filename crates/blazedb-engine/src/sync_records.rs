//! The sync layer's own records beside the documents: auxiliary sealed records
//! (key-value namespaces and ordered logs, in storage table `aux`). The operations on
//! them are reached through the internal surface, [`crate::internal`].
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

use crate::codec::decode;
use crate::database::Database;
use crate::raw::Raw;
use crate::vault::Vault;

#[derive(Serialize, Deserialize)]
pub(crate) struct AuxRecord<'a> {
    #[serde(borrow)]
    pub(crate) key: &'a [u8],
    #[serde(borrow)]
    pub(crate) value: &'a [u8],
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
pub(crate) fn log_key(vault: &Vault, ns: &str, seq: u64) -> [u8; 24] {
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
