//! The change log: every committed local write, in commit order, for the sync layer.
//!
//! Invariants:
//! - An entry is written in the same storage transaction as the write it describes, so
//!   a commit has all of its entries and a rollback none.
//! - Sequence numbers are assigned consecutively from 1, in commit order, and never
//!   reused (the next number is persisted with each commit).
//! - Writes applied through [`crate::internal::SyncDatabase::begin_apply`] (remote changes) are not
//!   captured.

use std::ops::{Bound, ControlFlow};

use blazedb_core::limits::CHANGE_BATCH_MAX;
use blazedb_core::{DocId, Error, Fields, Result, Timestamp};
use blazedb_storage::Table;

use crate::codec::{ChangeRecord, OpRecord, decode};
use crate::decode::FieldsDe;
use crate::raw::Raw;
use crate::vault::Vault;

/// What a captured write did to its document.
#[derive(Clone, Debug, PartialEq)]
pub enum ChangeOp {
    /// The document came into existence with these fields (insert, or put of a new id).
    Insert { fields: Fields },
    /// Fields were set and/or removed (patch).
    Update { set: Fields, unset: Vec<String> },
    /// An existing document was replaced whole (put of an existing id): `fields` is the
    /// whole new content; fields not in it were removed.
    Replace { fields: Fields },
    /// The document was deleted.
    Delete,
}

/// One entry of the change log.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// Position in the log, from 1, consecutive in commit order.
    pub seq: u64,
    /// `seq` of the first change of the same transaction: entries with equal `txn`
    /// committed together.
    pub txn: u64,
    pub collection: String,
    pub id: DocId,
    pub op: ChangeOp,
    /// When the write was made (wall clock of the writing process).
    pub at: Timestamp,
}

fn decode_change(seq: u64, plain: &[u8]) -> Result<Change> {
    let rec: ChangeRecord<String, FieldsDe> = decode("changes", plain)?;
    let op = match rec.op {
        OpRecord::Insert(f) => ChangeOp::Insert { fields: f.0 },
        OpRecord::Update { set, unset } => ChangeOp::Update { set: set.0, unset },
        OpRecord::Delete => ChangeOp::Delete,
        OpRecord::Replace(f) => ChangeOp::Replace { fields: f.0 },
    };
    Ok(Change {
        seq,
        txn: rec.txn,
        collection: rec.collection,
        id: DocId::from_bytes(rec.id),
        op,
        at: Timestamp(rec.at),
    })
}

/// Reads up to `limit` (at most [`CHANGE_BATCH_MAX`]) changes with `seq > after`.
pub(crate) fn changes_after(
    raw: &mut impl Raw,
    vault: &Vault,
    after: u64,
    limit: usize,
) -> Result<Vec<Change>> {
    let limit = limit.min(CHANGE_BATCH_MAX);
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let lo = after.saturating_add(1).to_be_bytes();
    let mut expected = after.saturating_add(1);
    raw.raw_scan(
        Table::Changes,
        Bound::Included(&lo),
        Bound::Unbounded,
        &mut |k, v| {
            let seq =
                u64::from_be_bytes(k.try_into().map_err(|_| {
                    Error::corrupt_record("changes", "key is not a sequence number")
                })?);
            // Gaps are only legitimate below a pruned horizon, never inside the live log.
            if !out.is_empty() && seq != expected {
                return Err(Error::corrupt_record(
                    "changes",
                    format!("gap in change log: expected {expected}, found {seq}"),
                ));
            }
            let change = decode_change(seq, &vault.open(Table::Changes, k, v)?)?;
            expected = seq + 1;
            out.push(change);
            Ok(if out.len() >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        },
    )?;
    Ok(out)
}
