//! The document index: every merge state this node holds has a slot, in creation
//! order, and snapshots (`snapshot.rs`) page over the slots, so a page boundary is a
//! number that survives new documents being created meanwhile.
//!
//! Stored as runs (log [`INDEX_RUNS`]): a transaction that creates states appends
//! records of at most [`RUN_SLOTS_MAX`] slots, each keyed by the last slot it assigns,
//! holding its `(slot, document key)` pairs in slot order. Few records per transaction
//! instead of one per document: a first sync creates thousands of states per
//! transaction, and a sealed, inserted record per state cost ~10 % of applying a write
//! (`blazedb-bench sync`, docs/net-performance.md). Bounded, because a page of a
//! snapshot opens every run it reads whole: enabling sync on 100,000 documents made one
//! run of 100,000 slots (~4 MB), opened again for each page of 256 documents.
//! Databases from before sync metadata version 2 hold one record per slot in log
//! [`INDEX`]; slots only grow, so all of those are below every run's, and a walk reads
//! that log first.
//!
//! Invariants:
//! - `Meta::index_last` is the highest slot ever assigned; slots are never reused.
//! - A run keyed `k` holds only slots in `(k', k]`, `k'` being the key of the run
//!   before it, in increasing order. Removing pairs from a run (a wipe) keeps this, so
//!   the run holding slot `s` is always the first run keyed `>= s`.
//! - Every slot is in exactly one of the two logs.

use serde::{Deserialize, Serialize};

use crate::backend::Tx;
use crate::error::Result;
use crate::record::{self, Aux, INDEX, INDEX_RUNS, Meta};

/// Runs read at once while walking the index (a page of a snapshot takes up to
/// `BATCH_WRITES_MAX` slots, so two runs usually cover it).
const RUNS_PER_READ: usize = 2;

/// Most slots in one run record (~40 KB of document keys).
pub(super) const RUN_SLOTS_MAX: usize = 1_024;

/// One transaction's new slots (see the module docs).
#[derive(Debug, Default, Serialize, Deserialize)]
struct IndexRun {
    slots: Vec<(u64, Vec<u8>)>,
}

/// Gives each of `keys` (document keys of states created in `tx`, in the order given)
/// the next slot, in run records of at most [`RUN_SLOTS_MAX`] slots.
pub(super) fn append_run(tx: &mut Tx<'_>, meta: &mut Meta, keys: Vec<Vec<u8>>) -> Result<()> {
    let mut keys = keys.into_iter().peekable();
    while keys.peek().is_some() {
        let mut run = IndexRun {
            slots: Vec::with_capacity(keys.len().min(RUN_SLOTS_MAX)),
        };
        for key in keys.by_ref().take(RUN_SLOTS_MAX) {
            meta.index_last += 1;
            run.slots.push((meta.index_last, key));
        }
        tx.aux_log_put(
            INDEX_RUNS,
            meta.index_last,
            &record::encode("index run", &run)?,
        )?;
    }
    Ok(())
}

/// Up to `limit` `(slot, document key)` pairs of the index after slot `after`, in slot
/// order.
pub(super) fn index_range(
    tx: &mut (impl Aux + ?Sized),
    after: u64,
    limit: usize,
) -> Result<Vec<(u64, Vec<u8>)>> {
    let limit = limit.max(1);
    let mut out = tx.log_range(INDEX, after, limit)?;
    let floor = out.last().map_or(after, |e| e.0);
    // The first run keyed above `floor` is the one that may hold `floor + 1`.
    let mut at = floor;
    while out.len() < limit {
        let runs = tx.log_range(INDEX_RUNS, at, RUNS_PER_READ)?;
        let Some(last) = runs.last().map(|r| r.0) else {
            break;
        };
        for (_, bytes) in runs {
            let run: IndexRun = record::decode("index run", &bytes)?;
            let wanted = limit - out.len();
            out.extend(
                run.slots
                    .into_iter()
                    .filter(|(slot, _)| *slot > floor)
                    .take(wanted),
            );
            if out.len() >= limit {
                break;
            }
        }
        at = last;
    }
    Ok(out)
}

/// The number of slots in each run record, in slot order (introspection and tests).
pub(super) fn run_lengths(tx: &mut (impl Aux + ?Sized)) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let runs = tx.log_range(INDEX_RUNS, at, RUNS_PER_READ)?;
        let Some(last) = runs.last().map(|r| r.0) else {
            return Ok(out);
        };
        for (_, bytes) in runs {
            out.push(record::decode::<IndexRun>("index run", &bytes)?.slots.len());
        }
        at = last;
    }
}

/// Removes `slots` (in increasing order) from the index.
pub(super) fn remove_slots(tx: &mut Tx<'_>, slots: &[u64]) -> Result<()> {
    let (Some(&first), Some(&last)) = (slots.first(), slots.last()) else {
        return Ok(());
    };
    for &s in slots {
        tx.aux_log_remove(INDEX, s, s)?;
    }
    let mut at = first.saturating_sub(1);
    loop {
        let runs = tx.aux_log_range(INDEX_RUNS, at, RUNS_PER_READ)?;
        let Some(end) = runs.last().map(|r| r.0) else {
            return Ok(());
        };
        for (key, bytes) in runs {
            let mut run: IndexRun = record::decode("index run", &bytes)?;
            let before = run.slots.len();
            run.slots.retain(|(s, _)| slots.binary_search(s).is_err());
            if run.slots.len() != before {
                if run.slots.is_empty() {
                    tx.aux_log_remove(INDEX_RUNS, key, key)?;
                } else {
                    tx.aux_log_put(INDEX_RUNS, key, &record::encode("index run", &run)?)?;
                }
            }
            if key >= last {
                return Ok(());
            }
        }
        at = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_encodes_as_its_pairs() {
        let run = IndexRun {
            slots: vec![(1, b"a\0k".to_vec()), (300, vec![])],
        };
        let bytes = record::encode("index run", &run).expect("encode");
        // count, then each slot (varint) and key (length, bytes)
        assert_eq!(bytes, [2, 1, 3, b'a', 0, b'k', 0xac, 0x02, 0]);
        let back: IndexRun = record::decode("index run", &bytes).expect("decode");
        assert_eq!(back.slots, run.slots);
    }
}
