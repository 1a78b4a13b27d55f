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

/// The index against a map of slot → key, over appends (several runs each), removes,
/// commits and range reads, on top of both older layouts (per-slot records, and one run
/// larger than today's bound).
#[cfg(test)]
mod model {
    use std::collections::BTreeMap;

    use blazedb_engine::{Database, KdfParams};
    use proptest::prelude::*;

    use super::*;
    use crate::backend::{EngineDb, NodeDb};
    use crate::clock::{NodeId, Role};

    #[derive(Clone, Debug)]
    enum Op {
        Append(usize),
        /// Remove each present slot whose (index * 7919 + seed) % 100 < pct.
        Remove(u64, u8),
        Check(u64, usize),
        Commit,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0usize..2_600).prop_map(Op::Append),
            2 => (any::<u64>(), 0u8..101).prop_map(|(s, p)| Op::Remove(s, p)),
            4 => (any::<u64>(), 1usize..2_100).prop_map(|(a, l)| Op::Check(a, l)),
            1 => Just(Op::Commit),
        ]
    }

    fn key(n: u64) -> Vec<u8> {
        format!("k{n}").into_bytes()
    }

    fn meta() -> Meta {
        Meta::fresh(NodeId(1), Role::Server, 0)
    }

    fn check(
        tx: &mut Tx<'_>,
        model: &BTreeMap<u64, Vec<u8>>,
        after: u64,
        limit: usize,
    ) -> std::result::Result<(), TestCaseError> {
        // One call from `after`.
        let got = index_range(tx, after, limit).expect("range");
        let want: Vec<_> = model
            .range(after.saturating_add(1)..)
            .take(limit)
            .map(|(s, k)| (*s, k.clone()))
            .collect();
        prop_assert_eq!(&got, &want, "index_range({}, {})", after, limit);
        // A full walk in pages of `limit`.
        let mut at = 0;
        let mut all = Vec::new();
        loop {
            let page = index_range(tx, at, limit).expect("range");
            prop_assert!(page.len() <= limit);
            let Some(last) = page.last().map(|e| e.0) else {
                break;
            };
            all.extend(page);
            at = last;
        }
        let want: Vec<_> = model.iter().map(|(s, k)| (*s, k.clone())).collect();
        prop_assert_eq!(all, want, "walk with limit {}", limit);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(48),
            ..ProptestConfig::default()
        })]
        #[test]
        fn index_ranges_and_walks_agree_with_a_model_over_appends_removes_and_old_layouts(
            legacy in 0u64..40,
            big_run in prop_oneof![Just(0u64), 1u64..3_000],
            ops in proptest::collection::vec(op(), 1..25),
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let db = Database::builder()
                .kdf(KdfParams::INSECURE_FAST)
                .open(dir.path(), "db", "pw")
                .expect("open");
            let edb = EngineDb(db);
            let mut model = BTreeMap::new();
            let mut meta = meta();
            let mut tx = edb.begin_apply().expect("tx");
            // A version-1 database: one INDEX record per slot.
            for _ in 0..legacy {
                meta.index_last += 1;
                let s = meta.index_last;
                tx.aux_log_put(INDEX, s, &key(s)).expect("put");
                model.insert(s, key(s));
            }
            // A database from before the bound: one large run.
            if big_run > 0 {
                let mut run = IndexRun::default();
                for _ in 0..big_run {
                    meta.index_last += 1;
                    let s = meta.index_last;
                    run.slots.push((s, key(s)));
                    model.insert(s, key(s));
                }
                tx.aux_log_put(INDEX_RUNS, meta.index_last, &record::encode("index run", &run).expect("enc")).expect("put");
            }
            for op in ops {
                match op {
                    Op::Append(n) => {
                        let keys: Vec<_> = (1..=n as u64).map(|i| key(meta.index_last + i)).collect();
                        append_run(&mut *tx, &mut meta, keys).expect("append");
                        let first = meta.index_last + 1 - n as u64;
                        for s in first..=meta.index_last {
                            model.insert(s, key(s));
                        }
                    }
                    Op::Remove(seed, pct) => {
                        let slots: Vec<u64> = model
                            .keys()
                            .copied()
                            .filter(|s| (s.wrapping_mul(7919).wrapping_add(seed)) % 100 < u64::from(pct))
                            .collect();
                        remove_slots(&mut *tx, &slots).expect("remove");
                        for s in &slots {
                            model.remove(s);
                        }
                    }
                    Op::Check(after, limit) => {
                        let after = if meta.index_last == 0 { after % 3 } else { after % (meta.index_last + 2) };
                        check(&mut *tx, &model, after, limit)?;
                    }
                    Op::Commit => {
                        tx.commit().expect("commit");
                        tx = edb.begin_apply().expect("tx");
                    }
                }
            }
            for limit in [1, 2, 999, 1_024, 1_025, 5_000] {
                check(&mut *tx, &model, 0, limit)?;
            }
            // The run invariants: keys increasing, each run non-empty, its slots ascending
            // and in (the previous run's key, its key].
            let mut prev = 0;
            let mut at = 0;
            loop {
                let runs = tx.aux_log_range(INDEX_RUNS, at, 16).expect("runs");
                let Some(last) = runs.last().map(|r| r.0) else { break };
                for (k, bytes) in runs {
                    let run: IndexRun = record::decode("index run", &bytes).expect("dec");
                    prop_assert!(!run.slots.is_empty(), "empty run {}", k);
                    prop_assert!(run.slots.windows(2).all(|w| w[0].0 < w[1].0));
                    prop_assert!(run.slots.iter().all(|(s, _)| *s > prev && *s <= k), "run {} after {}", k, prev);
                    prev = k;
                }
                at = last;
            }
            drop(tx);
        }
    }
}
